use super::*;
use crate::store::TemplateRecord;
use serde_json::json;
use streamspace_protocol::TemplateId;

fn yaml_problem(text: &str) -> CatalogProblem {
    match parse(text, CatalogFormat::Yaml) {
        Ok(parsed) => plan(parsed, Vec::new()).expect_err("a problem").remove(0),
        Err(problem) => problem,
    }
}

fn record(input: serde_json::Value) -> TemplateRecord {
    let input: TemplateInput = serde_json::from_value(input).expect("input");
    TemplateRecord {
        id: TemplateId::new(),
        spec: input.validate().expect("valid"),
        created_at: 0,
        updated_at: 0,
    }
}

const TWO: &str = "\
version: 1
templates:
  - name: firefox
    image: lscr.io/linuxserver/firefox:latest
  - name: code
    image: lscr.io/linuxserver/code-server:latest
    ports:
      - name: web
        port: 70000
        protocol: vnc
";

#[test]
fn a_validation_problem_names_entry_field_and_line() {
    let problem = yaml_problem(TWO);
    assert_eq!(problem.index, Some(1));
    assert_eq!(problem.name.as_deref(), Some("code"));
    assert_eq!(problem.field.as_deref(), Some("templates[1].ports[0].port"));
    assert_eq!(problem.line, Some(9));
    assert!(problem.message.contains("1 to 65535"), "{problem:?}");
    let described = problem.describe();
    assert!(
        described.starts_with("templates[1] (\"code\"), line 9"),
        "{described}"
    );
}

#[test]
fn a_type_problem_in_yaml_has_the_parsers_line() {
    let text = TWO.replace("port: 70000", "port: lots");
    let problem = yaml_problem(&text);
    assert_eq!(problem.field.as_deref(), Some("templates[1].ports[0].port"));
    assert_eq!(problem.line, Some(9));
    assert_eq!(problem.name.as_deref(), Some("code"));
}

#[test]
fn an_unknown_field_is_named_with_its_line() {
    let text = TWO.replace(
        "    image: lscr.io/linuxserver/firefox",
        "    colour: blue\n    image: lscr.io/linuxserver/firefox",
    );
    let problem = yaml_problem(&text);
    assert_eq!(
        problem.field.as_deref(),
        Some("templates[0].colour"),
        "{problem:?}"
    );
    assert_eq!(problem.line, Some(4));
    assert_eq!(problem.index, Some(0));
    assert_eq!(problem.name.as_deref(), Some("firefox"));
}

#[test]
fn json_problems_have_lines_too() {
    let text = "{\n  \"version\": 1,\n  \"templates\": [\n    {\"name\": \"a\", \"image\": \"x:1\"},\n    {\"name\": \"b\", \"image\": \"x:1\",\n     \"resources\": {\"memory\": 5}}\n  ]\n}\n";
    let problem = parse(text, CatalogFormat::Json).err().expect("refused");
    assert_eq!(
        problem.field.as_deref(),
        Some("templates[1].resources.memory")
    );
    assert_eq!(problem.line, Some(6));
    assert_eq!(problem.name.as_deref(), Some("b"));

    let broken = parse(
        "{\n  \"version\": 1,\n  \"templates\": [\n",
        CatalogFormat::Json,
    )
    .err()
    .expect("refused");
    assert!(broken.message.contains("not valid JSON"), "{broken:?}");
    assert!(broken.line.is_some(), "{broken:?}");

    let unknown = text.replace("\"memory\": 5", "\"memroy\": \"1Gi\"");
    let problem = parse(&unknown, CatalogFormat::Json).err().expect("refused");
    assert_eq!(
        problem.field.as_deref(),
        Some("templates[1].resources.memroy")
    );
    assert_eq!(problem.line, Some(6));

    let invalid = text.replace("\"memory\": 5", "\"memory\": \"2 gigs\"");
    let parsed = parse(&invalid, CatalogFormat::Json).err().expect("refused");
    assert_eq!(
        parsed.field.as_deref(),
        Some("templates[1].resources.memory")
    );
    assert_eq!(parsed.line, Some(6));
}

#[test]
fn the_version_and_the_size_are_checked() {
    let problem = parse("version: 2\ntemplates: []\n", CatalogFormat::Yaml)
        .err()
        .expect("refused");
    assert_eq!(problem.field.as_deref(), Some("version"));
    assert_eq!(problem.line, Some(1));
    let many: Vec<_> = (0..=MAX_CATALOG_TEMPLATES)
        .map(|i| json!({"name": format!("t{i}"), "image": "x:1"}))
        .collect();
    let text = json!({"version": 1, "templates": many}).to_string();
    let problem = parse(&text, CatalogFormat::Json).err().expect("refused");
    assert_eq!(problem.field.as_deref(), Some("templates"));
}

#[test]
fn names_are_unique_within_a_catalog() {
    let third = "  - name: firefox\n    image: lscr.io/linuxserver/firefox:latest\n";
    let text = TWO
        .replace("name: code", "name: firefox")
        .replace("70000", "5901")
        + third;
    let problems = plan(
        parse(&text, CatalogFormat::Yaml).expect("parses"),
        Vec::new(),
    )
    .expect_err("duplicate");
    assert_eq!(problems[0].field.as_deref(), Some("templates[1].name"));
    assert_eq!(problems[0].line, Some(5));
    assert!(problems[0].message.contains("templates[0]"));
    assert_eq!(problems[1].field.as_deref(), Some("templates[2].name"));
    assert!(problems[1].message.contains("templates[0]"), "{problems:?}");
}

#[test]
fn every_broken_entry_is_reported() {
    let text = TWO
        .replace("firefox:latest", "Firefox:latest")
        .replace("name: firefox", "name: fire-fox");
    let problems = plan(
        parse(&text, CatalogFormat::Yaml).expect("parses"),
        Vec::new(),
    )
    .expect_err("broken");
    let fields: Vec<_> = problems.iter().filter_map(|p| p.field.as_deref()).collect();
    assert_eq!(fields, ["templates[0].image", "templates[1].ports[0].port"]);
}

#[test]
fn plans_say_create_update_or_unchanged() {
    let existing = vec![
        record(json!({"name": "firefox", "image": "lscr.io/linuxserver/firefox:latest"})),
        record(json!({"name": "code", "image": "old:1"})),
    ];
    let text = TWO.replace("70000", "5901");
    let text = format!("{text}  - name: gimp\n    image: lscr.io/linuxserver/gimp:latest\n");
    let planned =
        plan(parse(&text, CatalogFormat::Yaml).expect("parses"), existing).expect("valid");
    let summary = ImportSummary::of(&planned, true);
    let actions: Vec<_> = summary.templates.iter().map(|t| t.action).collect();
    assert_eq!(
        actions,
        [
            ImportAction::Unchanged,
            ImportAction::Update,
            ImportAction::Create
        ]
    );
    assert_eq!(summary.templates[1].changed, ["image", "ports"]);
    assert_eq!(
        (summary.created, summary.updated, summary.unchanged),
        (1, 1, 1)
    );
}

#[test]
fn secret_values_are_kept_unless_the_entry_has_secret_env() {
    let existing = || {
        vec![record(json!({
            "name": "app", "image": "app:1", "secret_env": {"API_KEY": "hunter2"}
        }))]
    };
    let without = "version: 1\ntemplates:\n  - name: app\n    image: app:1\n";
    let planned = plan(
        parse(without, CatalogFormat::Yaml).expect("parses"),
        existing(),
    )
    .expect("valid");
    assert_eq!(planned[0].item.action, ImportAction::Unchanged);
    assert_eq!(planned[0].spec.secret_env.values()["API_KEY"], "hunter2");

    let emptied = format!("{without}    secret_env: {{}}\n");
    let planned = plan(
        parse(&emptied, CatalogFormat::Yaml).expect("parses"),
        existing(),
    )
    .expect("valid");
    assert_eq!(planned[0].item.changed, ["secret_env"]);
    assert!(planned[0].spec.secret_env.values().is_empty());

    // A kept secret still may not clash with the entry's env.
    let clash = format!("{without}    env:\n      API_KEY: plain\n");
    let problems = plan(
        parse(&clash, CatalogFormat::Yaml).expect("parses"),
        existing(),
    )
    .expect_err("clash");
    assert!(
        problems[0].message.contains("kept from the existing"),
        "{problems:?}"
    );
}

#[test]
fn an_export_imports_back_unchanged_in_both_formats() {
    let existing = vec![
        record(json!({
            "name": "full", "display_name": "Full", "description": "d", "category": "Office",
            "icon": "https://example.com/i.png", "image": "app:1",
            "ports": [{"name": "vnc", "port": 5901, "protocol": "vnc"},
                      {"name": "web", "port": 3000, "protocol": "http"}],
            "env": {"TZ": "Etc/UTC", "NUMBER": "1", "FLAG": "true"},
            "secret_env": {"TOKEN": "s3cret"},
            "resources": {"cpu": "1", "memory": "1Gi"},
            "max_resources": {"cpu": "2"},
            "user_env": ["LANG"], "user_idle_timeout": true, "pids_limit": 512,
            "capabilities": ["CHOWN", "SETUID"], "persistent_home": true,
            "home_path": "/config", "idle_timeout": "2h", "platforms": ["docker"],
            "shm_size": "1Gi", "user": "1000:1000", "read_only_root_filesystem": true,
            "volumes": [{"source": "datasets", "path": "/data"},
                        {"source": "scratch", "path": "/scratch", "read_only": false}]
        })),
        record(json!({
            "name": "gpu", "image": "gpu:1",
            "resources": {"gpu": 1}, "max_resources": {"gpu": 2}
        })),
        record(json!({"name": "bare", "image": "bare:1"})),
    ];
    let specs: Vec<_> = existing.iter().map(|r| r.spec.clone()).collect();
    for (format, export_format) in [
        (CatalogFormat::Yaml, ExportFormat::Yaml),
        (CatalogFormat::Json, ExportFormat::Json),
    ] {
        let text = export(&specs, export_format).expect("exports");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(!text.contains("null"), "{text}");
        let planned = plan(parse(&text, format).expect("parses"), existing.clone())
            .unwrap_or_else(|p| panic!("{p:?}\n{text}"));
        let actions: Vec<_> = planned.iter().map(|p| p.item.action).collect();
        assert_eq!(actions, [ImportAction::Unchanged; 3], "{text}");
        assert_eq!(planned[0].spec.secret_env.values()["TOKEN"], "s3cret");
    }
}

#[test]
fn content_types_choose_the_format() {
    let of = CatalogFormat::from_content_type;
    assert_eq!(of("application/json"), Some(CatalogFormat::Json));
    assert_eq!(
        of("application/yaml; charset=utf-8"),
        Some(CatalogFormat::Yaml)
    );
    assert_eq!(of("text/x-yaml"), Some(CatalogFormat::Yaml));
    assert_eq!(of("text/plain"), None);
}

#[test]
fn the_schema_is_template_input_from_the_openapi_document() {
    let doc: serde_json::Value =
        serde_json::from_str(&crate::api::openapi_json().expect("document")).expect("json");
    let schema = json_schema(&doc).expect("schema");
    let defs = schema["$defs"].as_object().expect("defs");
    assert_eq!(
        defs["TemplateInput"]["required"],
        doc["components"]["schemas"]["TemplateInput"]["required"]
    );
    assert!(defs.contains_key("PortInput") && defs.contains_key("ResourcesInput"));
    assert!(!schema.to_string().contains("#/components/"));
}

#[test]
fn alias_bombs_are_refused_quickly() {
    // "Billion laughs": nine levels of ten aliases each expand to 10^9
    // strings, in a field the strict parse refuses at once but the lenient
    // outline (which names the entry) and the locator would walk.
    let mut bomb = String::from("[&a0 [\"lol\"]");
    for level in 1..10 {
        let refs = vec![format!("*a{}", level - 1); 10].join(", ");
        bomb.push_str(&format!(", &a{level} [{refs}]"));
    }
    bomb.push(']');
    let text = format!("version: 1\ntemplates:\n  - name: x\n    image: x:1\n    bomb: {bomb}\n");
    let started = std::time::Instant::now();
    let problem = parse(&text, CatalogFormat::Yaml).err().expect("refused");
    assert_eq!(
        problem.field.as_deref(),
        Some("templates[0].bomb"),
        "{problem:?}"
    );
    let positions = locate::Positions::read(&text, CatalogFormat::Yaml);
    let position = locate::position(&positions, "templates[0].image");
    // Debug build, all three readers: ~0.6 s; at serde-saphyr's default
    // limits it was 4 s.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    // The locator gives up on such a text rather than expanding it.
    assert_eq!(position, None);
}

#[test]
fn a_registry_password_left_out_is_kept_only_for_the_same_username() {
    let existing = || {
        let mut stored = record(json!({
            "name": "private", "image": "registry.example.com/app:1",
            "registry_auth": {"username": "robot", "password": "s3cret"}
        }));
        stored
            .spec
            .keep_registry_password(None)
            .expect("a password");
        vec![stored]
    };
    let entry = |user: &str| {
        format!(
            "version: 1\ntemplates:\n  - name: private\n    image: registry.example.com/app:1\n    registry_auth:\n      username: {user}\n"
        )
    };
    let same = plan(
        parse(&entry("robot"), CatalogFormat::Yaml).expect("parses"),
        existing(),
    );
    let same = same.expect("the stored password stays");
    let kept = same[0].spec.registry_auth.as_ref().expect("credentials");
    assert_eq!(kept.password.as_deref(), Some("s3cret"));
    let other = plan(
        parse(&entry("other"), CatalogFormat::Yaml).expect("parses"),
        existing(),
    );
    let problems = other.expect_err("another username needs its password");
    let field = problems[0].field.as_deref().unwrap_or_default();
    assert!(field.ends_with("registry_auth.password"), "{problems:?}");
}

#[test]
fn every_problem_of_a_large_catalog_has_its_line() {
    let mut text = String::from("version: 1\ntemplates:\n");
    for i in 0..500 {
        text.push_str(&format!("- name: t{i}\n  image: ''\n"));
    }
    let started = std::time::Instant::now();
    let problems = plan(
        parse(&text, CatalogFormat::Yaml).expect("parses"),
        Vec::new(),
    )
    .expect_err("every image is empty");
    eprintln!("500 problems located in {:?}", started.elapsed());
    assert_eq!(problems.len(), 500);
    assert_eq!(
        problems[499].line,
        Some(2 + 2 * 499 + 2),
        "{:?}",
        problems[499]
    );
}
