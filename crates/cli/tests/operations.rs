//! What docs/OPERATIONS.md tells an operator to do, done with the real
//! binary and the real tools: the Grafana dashboard queries only metrics a
//! running server exports; the HAProxy example is a configuration HAProxy
//! accepts and runs in front of three replicas; the Prometheus example and
//! its alert rules are what promtool accepts, on exported metrics; and
//! backups of SQLite (`.backup`, `VACUUM INTO`) and PostgreSQL
//! (`pg_dump`) restore into a database the binary starts on, with the data
//! of the moment of the backup and nothing later.

use anyhow::{Context, bail, ensure};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use streamspace_testkit::fleet::Fleet;
use streamspace_testkit::{ADMIN_PASSWORD, Api, ControlPlane, Mode, Options, postgres};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_streamspace"))
}

/// A file of the repository (deploy/, docs/).
fn repository_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
}

/// Runs a tool; its standard output, or an error with everything it said.
fn run(program: &str, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<String> {
    let output = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .with_context(|| format!("cannot run {program} (scripts/install-deps.sh installs it)"))?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    ensure!(
        output.status.success(),
        "{program} {args:?}: {}\n{said}",
        output.status
    );
    Ok(said)
}

// ---------------------------------------------------------------------------
// The Grafana dashboard

/// Prometheus' own series about each scrape, not the server's.
const PROMETHEUS_OWN: &[&str] = &["up"];

/// What every selector in a panel's query must filter on: the dashboard's
/// replica variable, so each panel shows the replicas chosen.
const INSTANCE_FILTER: &str = "instance=~\"$instance\"";

/// The sample names a server exports, from its text exposition: a counter
/// `x` is sampled as `x_total`, a histogram as `x_bucket`, `x_sum` and
/// `x_count`, an info metric as `x_info`.
fn exported_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        if let Some(declared) = line.strip_prefix("# TYPE ") {
            let mut words = declared.split_whitespace();
            let (Some(name), Some(kind)) = (words.next(), words.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                "info" => &["_info"],
                _ => &[""],
            };
            names.extend(suffixes.iter().map(|s| format!("{name}{s}")));
        } else if !line.starts_with('#') {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            if end > 0 {
                names.insert(line[..end].to_owned());
            }
        }
    }
    names
}

/// A metric a PromQL expression reads, and its label matchers (None when
/// it has none, as in `label_values(name, label)`).
#[derive(Debug)]
struct MetricRef {
    name: String,
    matchers: Option<String>,
}

/// The metrics a PromQL expression reads: names followed by `{…}`, and any
/// `streamspace_` name. Strings and range durations (`[5m]`) are skipped.
fn metric_refs(expr: &str) -> anyhow::Result<Vec<MetricRef>> {
    let chars: Vec<char> = expr.chars().collect();
    let mut refs = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            i = closing(&chars, i, '"')? + 1;
        } else if c == '[' {
            i = closing(&chars, i, ']')? + 1;
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let name: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next] == ' ' {
                next += 1;
            }
            if next < chars.len() && chars[next] == '{' {
                let end = closing(&chars, next, '}')?;
                let matchers = chars[next + 1..end].iter().collect();
                refs.push(MetricRef {
                    name,
                    matchers: Some(matchers),
                });
                i = end + 1;
            } else if name.starts_with("streamspace_") {
                refs.push(MetricRef {
                    name,
                    matchers: None,
                });
            }
        } else {
            i += 1;
        }
    }
    Ok(refs)
}

/// The index of the `close` that ends what opens at `open`.
fn closing(chars: &[char], open: usize, close: char) -> anyhow::Result<usize> {
    let mut i = open + 1;
    while i < chars.len() {
        if chars[i] == close {
            return Ok(i);
        }
        // Inside a selector, strings may hold `}`.
        if chars[i] == '"' && close != '"' {
            i = closing(chars, i, '"')?;
        }
        i += 1;
    }
    bail!(
        "unclosed {:?} in {:?}",
        chars[open],
        chars.iter().collect::<String>()
    )
}

/// Every query in the dashboard, by where it is: panels' targets and the
/// template variables' queries.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String, bool)> {
    let mut queries = Vec::new();
    for panel in panels(dashboard) {
        let title = panel["title"].as_str().unwrap_or_default();
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap_or_default();
            queries.push((format!("panel {title:?}"), expr.to_owned(), true));
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(query) = variable["query"]["query"].as_str() {
            let name = variable["name"].as_str().unwrap_or_default();
            queries.push((format!("variable {name}"), query.to_owned(), false));
        }
    }
    queries
}

/// Top-level panels and the panels of collapsed rows.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        all.push(panel);
        all.extend(panel["panels"].as_array().into_iter().flatten());
    }
    all
}

/// What Grafana needs to import the file, and what makes it a dashboard
/// of replicas: a Prometheus datasource variable every panel uses, a
/// replica variable, panels laid out on the 24-column grid without overlap.
fn dashboard_shape_problems(dashboard: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let uid = dashboard["uid"].as_str().unwrap_or_default();
    if uid.is_empty()
        || uid.len() > 40
        || !uid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
    {
        problems.push(format!("uid {uid:?}: 1–40 letters, digits, - or _"));
    }
    if dashboard["title"].as_str().unwrap_or_default().is_empty() {
        problems.push("no title".into());
    }
    if dashboard["schemaVersion"].as_u64().unwrap_or_default() < 36 {
        problems.push("schemaVersion below 36 (Grafana 9)".into());
    }
    let variables: HashMap<&str, &Value> = dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| Some((v["name"].as_str()?, v)))
        .collect();
    match variables.get("datasource") {
        Some(v) if v["type"] == "datasource" && v["query"] == "prometheus" => {}
        _ => problems.push("no variable `datasource` of type datasource, query prometheus".into()),
    }
    match variables.get("instance") {
        Some(v) if v["type"] == "query" && v["datasource"]["uid"] == "${datasource}" => {}
        _ => problems.push("no query variable `instance` on ${datasource}".into()),
    }
    problems.extend(panel_problems(dashboard));
    problems
}

fn panel_problems(dashboard: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let mut ids = BTreeSet::new();
    let mut cells = BTreeSet::new();
    for panel in panels(dashboard) {
        let title = panel["title"].as_str().unwrap_or_default();
        let at = format!("panel {title:?}");
        if !ids.insert(panel["id"].as_u64().unwrap_or_default()) {
            problems.push(format!("{at}: id {} used twice", panel["id"]));
        }
        let grid = &panel["gridPos"];
        let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| grid[k].as_u64().unwrap_or(u64::MAX));
        if w == 0 || h == 0 || x.saturating_add(w) > 24 || y == u64::MAX {
            problems.push(format!("{at}: gridPos {grid} is not on the 24-column grid"));
            continue;
        }
        for cell in (x..x + w).flat_map(|cx| (y..y + h).map(move |cy| (cx, cy))) {
            if !cells.insert(cell) {
                problems.push(format!("{at}: overlaps another panel at {cell:?}"));
                break;
            }
        }
        let kind = panel["type"].as_str().unwrap_or_default();
        if kind == "row" {
            continue;
        }
        if !["timeseries", "stat", "table", "gauge"].contains(&kind) {
            problems.push(format!("{at}: panel type {kind:?}"));
        }
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        let ref_ids: BTreeSet<_> = targets.iter().map(|t| t["refId"].to_string()).collect();
        if targets.is_empty() || ref_ids.len() != targets.len() {
            problems.push(format!("{at}: no targets, or two with one refId"));
        }
        for source in
            std::iter::once(&panel["datasource"]).chain(targets.iter().map(|t| &t["datasource"]))
        {
            if source["type"] != "prometheus" || source["uid"] != "${datasource}" {
                problems.push(format!("{at}: datasource {source} is not ${{datasource}}"));
            }
        }
    }
    problems
}

/// What the dashboard queries against what a real server exports.
fn query_problems(dashboard: &Value, exported: &BTreeSet<String>) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    let mut queried = BTreeSet::new();
    for (at, query, in_panel) in dashboard_queries(dashboard) {
        let refs = metric_refs(&query).with_context(|| format!("{at}: {query}"))?;
        if refs.is_empty() {
            problems.push(format!("{at}: {query:?} reads no metric"));
        }
        for metric in refs {
            let name = metric.name.as_str();
            if !exported.contains(name) && !PROMETHEUS_OWN.contains(&name) {
                problems.push(format!("{at}: {name} is not a metric the server exports"));
            }
            let filtered = metric
                .matchers
                .as_deref()
                .is_some_and(|m| m.contains(INSTANCE_FILTER));
            if in_panel && !filtered {
                problems.push(format!("{at}: {name} is not filtered by {INSTANCE_FILTER}"));
            }
            queried.insert(metric.name);
        }
    }
    // Every family the server exports has a panel (a histogram counts by
    // its buckets).
    for name in exported {
        let family_shown = queried.contains(name)
            || [("_sum", "_bucket"), ("_count", "_bucket")]
                .iter()
                .any(|(suffix, shown)| {
                    name.strip_suffix(suffix)
                        .is_some_and(|base| queried.contains(&format!("{base}{shown}")))
                });
        if name.starts_with("streamspace_") && !family_shown {
            problems.push(format!("{name} is exported but no panel shows it: add one"));
        }
    }
    Ok(problems)
}

#[tokio::test]
async fn the_grafana_dashboard_queries_what_a_server_exports() -> anyhow::Result<()> {
    let file = repository_file("deploy/grafana/streamspace.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&file)?)
        .with_context(|| format!("{} is not JSON", file.display()))?;
    let server = ControlPlane::start(bin(), Mode::Server, None).await?;
    let exposition = Api::new(&server.url).text("/metrics").await?;
    let exported = exported_names(&exposition);
    // The parser must see what is there, or every name would look missing.
    ensure!(
        exported.contains("streamspace_agents_connected")
            && exported.contains("streamspace_tunnels_opened_total"),
        "no metrics read from:\n{exposition}"
    );

    let mut problems = dashboard_shape_problems(&dashboard);
    problems.extend(query_problems(&dashboard, &exported)?);
    ensure!(
        problems.is_empty(),
        "{}:\n  {}",
        file.display(),
        problems.join("\n  ")
    );
    check_promql(&dashboard)?;

    // The example Prometheus configuration and its alert rules load, and
    // the rules name only metrics the server (or Prometheus) has, of the
    // job the configuration scrapes.
    let config = repository_file("deploy/prometheus/prometheus.yml");
    run("promtool", &["check", "config", path_str(&config)?], &[])?;
    let config: Value = serde_saphyr::from_str(&std::fs::read_to_string(&config)?)?;
    let job = format!(
        "job=\"{}\"",
        config["scrape_configs"][0]["job_name"]
            .as_str()
            .unwrap_or_default()
    );
    let rules = repository_file("deploy/prometheus/alerts.yaml");
    let mut unknown = Vec::new();
    for expr in alert_expressions(&std::fs::read_to_string(&rules)?)? {
        for metric in metric_refs(&expr)? {
            let name = metric.name.as_str();
            if !exported.contains(name) && !PROMETHEUS_OWN.contains(&name) {
                unknown.push(format!("{name} in {expr}"));
            }
            if !metric.matchers.as_deref().is_some_and(|m| m.contains(&job)) {
                unknown.push(format!("{name} without {job} in {expr}"));
            }
        }
    }
    ensure!(unknown.is_empty(), "{}: {unknown:#?}", rules.display());
    Ok(())
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str().context("a UTF-8 path")
}

/// Every `expr` of a Prometheus rules file.
fn alert_expressions(rules: &str) -> anyhow::Result<Vec<String>> {
    let rules: Value = serde_saphyr::from_str(rules)?;
    let exprs: Vec<String> = rules["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|group| group["rules"].as_array().cloned().unwrap_or_default())
        .filter_map(|rule| rule["expr"].as_str().map(str::to_owned))
        .collect();
    ensure!(!exprs.is_empty(), "no rules");
    Ok(exprs)
}

/// The panels' queries are PromQL Prometheus parses: promtool checks them as
/// recording rules, with Grafana's variables replaced by what they become.
fn check_promql(dashboard: &Value) -> anyhow::Result<()> {
    let rules: Vec<Value> = dashboard_queries(dashboard)
        .into_iter()
        .filter(|(_, _, in_panel)| *in_panel)
        .enumerate()
        .map(|(i, (_, expr, _))| {
            let expr = expr
                .replace("$__rate_interval", "5m")
                .replace("$instance", ".+");
            json!({"record": format!("dashboard:query_{i}"), "expr": expr})
        })
        .collect();
    let file = tempfile::NamedTempFile::with_suffix(".json")?;
    let groups = json!({"groups": [{"name": "dashboard", "rules": rules}]});
    std::fs::write(file.path(), serde_json::to_vec(&groups)?)?;
    run("promtool", &["check", "rules", path_str(file.path())?], &[])?;
    Ok(())
}

/// The checks can fail: a query of a name no server exports, a panel that
/// ignores the replica variable, overlapping panels and a foreign
/// datasource are each reported.
#[test]
fn the_dashboard_checks_catch_what_they_are_for() -> anyhow::Result<()> {
    let source = json!({"type": "prometheus", "uid": "${datasource}"});
    let dashboard = json!({
        "uid": "x", "title": "x", "schemaVersion": 39,
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus"},
            {"name": "instance", "type": "query", "datasource": source,
             "query": {"query": "label_values(streamspace_nonexistent, instance)"}},
        ]},
        "panels": [
            {"id": 1, "type": "timeseries", "title": "a", "datasource": source,
             "gridPos": {"x": 0, "y": 0, "w": 12, "h": 8},
             "targets": [{"refId": "A", "datasource": source,
                          "expr": "rate(streamspace_logins_total{job=\"x\"}[5m])"}]},
            {"id": 2, "type": "timeseries", "title": "b", "datasource": {"type": "loki", "uid": "l"},
             "gridPos": {"x": 6, "y": 4, "w": 12, "h": 8},
             "targets": [{"refId": "A", "datasource": source,
                          "expr": "sum(streamspace_tunnels_open{instance=~\"$instance\", x=\"}\"}) + up"}]},
        ],
    });
    let exported: BTreeSet<String> = [
        "streamspace_logins_total",
        "streamspace_tunnels_open",
        "streamspace_sessions",
    ]
    .map(String::from)
    .into();
    let mut problems = dashboard_shape_problems(&dashboard);
    problems.extend(query_problems(&dashboard, &exported)?);
    for expected in [
        "variable instance: streamspace_nonexistent is not a metric the server exports",
        "panel \"a\": streamspace_logins_total is not filtered by",
        "panel \"b\": overlaps another panel",
        "panel \"b\": datasource",
        "streamspace_sessions is exported but no panel shows it",
    ] {
        ensure!(
            problems.iter().any(|p| p.contains(expected)),
            "no problem says {expected:?}: {problems:#?}"
        );
    }
    // `up` (bare, no selector) is Prometheus' own and needs none; the `}`
    // inside a string does not end the selector.
    ensure!(
        !problems.iter().any(|p| p.contains("tunnels_open")),
        "{problems:#?}"
    );
    Ok(())
}

/// The alert rules fire on series like a fleet's, and only then
/// (tests/prometheus/alerts_test.yaml: promtool's rule unit tests).
#[test]
fn the_alert_rules_fire_when_they_should() -> anyhow::Result<()> {
    let cases = repository_file("tests/prometheus/alerts_test.yaml");
    let said = run("promtool", &["test", "rules", path_str(&cases)?], &[])?;
    ensure!(said.contains("SUCCESS"), "{said}");
    Ok(())
}

// ---------------------------------------------------------------------------
// The HAProxy example

#[test]
fn haproxy_accepts_the_example_with_addresses_from_the_environment() -> anyhow::Result<()> {
    let file = repository_file("deploy/haproxy/haproxy.cfg");
    let file = file.to_str().context("a UTF-8 path")?;
    let addresses = [
        ("STREAMSPACE_LB_BIND", "127.0.0.1:18080"),
        ("STREAMSPACE_REPLICA_1", "127.0.0.1:18081"),
        ("STREAMSPACE_REPLICA_2", "127.0.0.1:18082"),
        ("STREAMSPACE_REPLICA_3", "127.0.0.1:18083"),
    ];
    let said = run("haproxy", &["-c", "-f", file], &addresses)?;
    ensure!(said.contains("Configuration file is valid"), "{said}");
    ensure!(
        !said.contains("[WARNING]"),
        "haproxy warns about the example:\n{said}"
    );
    // The addresses really come from the environment: without one, the
    // file names no server there.
    let refused = run("haproxy", &["-c", "-f", file], &addresses[..3]);
    ensure!(
        refused.is_err(),
        "haproxy accepted a missing STREAMSPACE_REPLICA_3"
    );

    // What the 3-replica behaviour rests on (docs/OPERATIONS.md).
    let text = std::fs::read_to_string(file)?;
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    for wanted in [
        "http-check send meth GET uri /readyz",
        "option redispatch 1",
        "retries 3",
        "timeout tunnel 1h",
    ] {
        ensure!(lines.contains(&wanted), "{file} has no line {wanted:?}");
    }
    Ok(())
}

async fn status(url: &url::Url, path: &str) -> anyhow::Result<StatusCode> {
    Ok(Api::new(url).call(Method::GET, path, None).await?.status)
}

/// The example in front of three real replicas on one PostgreSQL: it sends
/// requests only to replicas whose `/readyz` says 200, and a replica killed
/// with -9 costs no request (retries on another replica), before the
/// health checks even notice.
#[tokio::test]
async fn haproxy_routes_to_ready_replicas_and_survives_a_kill() -> anyhow::Result<()> {
    // testkit's fleet runs deploy/haproxy/haproxy.cfg as it is.
    let mut fleet = Fleet::start(bin(), 3, Options::default()).await?;
    for replica in &fleet.replicas {
        let ready = status(&replica.url, "/readyz").await?;
        ensure!(ready == StatusCode::OK, "a fresh replica answers {ready}");
    }
    let admin = Api::admin(fleet.url()).await?;
    make_data(&admin, "through-the-balancer").await?;
    fleet.replicas[0].process.kill9().await?;
    // At once, before any health check: every request still answers.
    for _ in 0..30 {
        let users = usernames(&admin).await?;
        ensure!(users.contains("through-the-balancer"), "{users:?}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Backups and restores

/// What a restore must bring back, and what it must not.
struct Expect<'a> {
    present: &'a [&'a str],
    absent: &'a [&'a str],
}

fn password(user: &str) -> String {
    format!("{user}-password-long-enough")
}

async fn usernames(admin: &Api) -> anyhow::Result<BTreeSet<String>> {
    let users = admin
        .expect(Method::GET, "/api/v1/users", None, StatusCode::OK)
        .await?;
    Ok(users
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u["username"].as_str().map(str::to_owned))
        .collect())
}

/// A user and a template the backup must hold.
async fn make_data(admin: &Api, user: &str) -> anyhow::Result<()> {
    admin.create_user(user, &password(user)).await?;
    admin
        .create_template(
            json!({"name": format!("{user}-desktop"), "image": "streamspace/desktop:local"}),
        )
        .await?;
    Ok(())
}

/// The restored server has the users (who can log in with their
/// passwords) and templates of the backup, and none made after it.
async fn check_restored(server: &ControlPlane, expect: Expect<'_>) -> anyhow::Result<()> {
    let admin = Api::login(&server.url, "admin", ADMIN_PASSWORD).await?;
    let users = usernames(&admin).await?;
    let templates = admin
        .expect(Method::GET, "/api/v1/templates", None, StatusCode::OK)
        .await?;
    let template_names: BTreeSet<&str> = templates
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for user in expect.present {
        ensure!(
            users.contains(*user),
            "{user} is not in the restored users {users:?}"
        );
        Api::login(&server.url, user, &password(user))
            .await
            .with_context(|| format!("{user} cannot log in after the restore"))?;
        let template = format!("{user}-desktop");
        ensure!(
            template_names.contains(template.as_str()),
            "{template} is not in the restored templates {template_names:?}"
        );
    }
    for user in expect.absent {
        ensure!(
            !users.contains(*user),
            "{user}, made after the backup, is there: {users:?}"
        );
    }
    Ok(())
}

/// Puts `backup` in place of the data directory's database, as
/// docs/OPERATIONS.md says: the server stopped, the WAL files gone with
/// the database they belonged to.
fn restore_sqlite(data_dir: &Path, backup: &Path) -> anyhow::Result<()> {
    let database = data_dir.join("streamspace.db");
    for stale in ["streamspace.db", "streamspace.db-wal", "streamspace.db-shm"] {
        let path = data_dir.join(stale);
        if path.exists() {
            std::fs::remove_file(&path)?;
        }
    }
    std::fs::copy(backup, &database)?;
    Ok(())
}

#[tokio::test]
async fn sqlite_online_backups_restore() -> anyhow::Result<()> {
    let mut server = ControlPlane::start(bin(), Mode::Server, None).await?;
    let admin = Api::admin(&server.url).await?;
    let database = server.data_dir.join("streamspace.db");
    let database = database.to_str().context("a UTF-8 path")?.to_owned();
    let backups = tempfile::tempdir()?;
    let dot_backup = backups.path().join("dot-backup.db");
    let vacuumed = backups.path().join("vacuum-into.db");

    // Both while the server runs and writes.
    make_data(&admin, "first").await?;
    let command = format!(".backup '{}'", dot_backup.display());
    run("sqlite3", &[&database, &command], &[])?;
    make_data(&admin, "second").await?;
    let command = format!("VACUUM INTO '{}'", vacuumed.display());
    run("sqlite3", &[&database, &command], &[])?;
    make_data(&admin, "third").await?;
    for backup in [&dot_backup, &vacuumed] {
        let path = backup.to_str().context("a UTF-8 path")?;
        let integrity = run("sqlite3", &[path, "PRAGMA integrity_check"], &[])?;
        ensure!(integrity.trim() == "ok", "{path}: {integrity}");
    }
    server.process.stop().await?;

    restore_sqlite(&server.data_dir, &dot_backup)?;
    server.restart().await?;
    let expect = Expect {
        present: &["first"],
        absent: &["second", "third"],
    };
    check_restored(&server, expect).await?;
    server.process.stop().await?;

    restore_sqlite(&server.data_dir, &vacuumed)?;
    server.restart().await?;
    let expect = Expect {
        present: &["first", "second"],
        absent: &["third"],
    };
    check_restored(&server, expect).await
}

#[tokio::test]
async fn postgres_dump_restores_into_a_new_database() -> anyhow::Result<()> {
    let database = postgres::fresh_database().await?;
    let mut server = ControlPlane::start(bin(), Mode::Server, Some(&database)).await?;
    let admin = Api::admin(&server.url).await?;
    let backups = tempfile::tempdir()?;
    let dump = backups.path().join("streamspace.dump");
    let dump = dump.to_str().context("a UTF-8 path")?;

    make_data(&admin, "first").await?;
    // Online: pg_dump reads one consistent snapshot while the server writes.
    run(
        "pg_dump",
        &["--format=custom", "--file", dump, "--dbname", &database],
        &[],
    )?;
    make_data(&admin, "second").await?;
    server.process.stop().await?;

    let restored = postgres::fresh_database().await?;
    run(
        "pg_restore",
        &[
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            "--single-transaction",
            "--dbname",
            &restored,
            dump,
        ],
        &[],
    )?;
    let server = ControlPlane::start(bin(), Mode::Server, Some(&restored)).await?;
    let expect = Expect {
        present: &["first"],
        absent: &["second"],
    };
    check_restored(&server, expect).await
}
