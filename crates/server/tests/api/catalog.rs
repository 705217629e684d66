//! Catalog import and export: the repository's own catalog imports cleanly
//! and re-imports unchanged, exports import back unchanged, a broken entry
//! is refused with its line and field and writes nothing, dry runs write
//! nothing, and secret values survive imports without `secret_env`.

use crate::{TestApp, on_both_engines};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

const REPO_CATALOG: &str = include_str!("../../../../catalog/catalog.yaml");

struct Reply {
    status: StatusCode,
    body: Value,
}

/// A catalog import as the CLI and the admin page send it.
async fn import(app: &TestApp, text: &str, content_type: &str, dry_run: bool) -> Reply {
    let mut url = app.url.join("/api/v1/templates/import").expect("url");
    if dry_run {
        url.set_query(Some("dry_run=true"));
    }
    let response = reqwest::Client::new()
        .post(url)
        .bearer_auth(app.admin.token.as_deref().unwrap_or_default())
        .header("content-type", content_type)
        .body(text.to_owned())
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("import sent");
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    Reply { status, body }
}

async fn export(app: &TestApp, format: &str) -> String {
    let url = app
        .url
        .join(&format!("/api/v1/templates/export?format={format}"))
        .expect("url");
    let response = reqwest::Client::new()
        .get(url)
        .bearer_auth(app.admin.token.as_deref().unwrap_or_default())
        .send()
        .await
        .expect("export sent");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap_or("")
        .to_owned();
    assert!(content_type.contains(format), "{content_type}");
    response.text().await.expect("export text")
}

async fn template_count(app: &TestApp) -> anyhow::Result<usize> {
    let list = app
        .admin
        .expect(Method::GET, "/api/v1/templates", None, StatusCode::OK)
        .await?;
    Ok(list.as_array().map_or(0, Vec::len))
}

fn actions(summary: &Value) -> Vec<String> {
    summary["templates"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|t| t["action"].as_str().unwrap_or("?").to_owned())
        .collect()
}

fn all(action: &str, summary: &Value) -> bool {
    let listed = actions(summary);
    !listed.is_empty() && listed.iter().all(|a| a == action)
}

async fn the_repo_catalog_imports_and_reimports_unchanged(app: TestApp) -> anyhow::Result<()> {
    let preview = import(&app, REPO_CATALOG, "application/yaml", true).await;
    assert_eq!(preview.status, StatusCode::OK, "{}", preview.body);
    assert!(all("create", &preview.body), "{}", preview.body);
    assert_eq!(preview.body["dry_run"], true);
    let count = actions(&preview.body).len();
    assert!(count >= 20, "the repo catalog has {count} templates");
    assert_eq!(template_count(&app).await?, 0, "a dry run writes nothing");

    let applied = import(&app, REPO_CATALOG, "application/yaml", false).await;
    assert_eq!(applied.status, StatusCode::OK, "{}", applied.body);
    assert_eq!(applied.body["created"], count);
    assert_eq!(template_count(&app).await?, count);

    let again = import(&app, REPO_CATALOG, "application/yaml", false).await;
    assert!(all("unchanged", &again.body), "{}", again.body);

    // Exports import back unchanged, in both formats.
    for (format, content_type) in [("yaml", "application/yaml"), ("json", "application/json")] {
        let text = export(&app, format).await;
        let back = import(&app, &text, content_type, false).await;
        assert_eq!(back.status, StatusCode::OK, "{format}: {}", back.body);
        assert!(all("unchanged", &back.body), "{format}: {}", back.body);
        assert_eq!(actions(&back.body).len(), count);
    }
    Ok(())
}

const SMALL: &str = "\
version: 1
templates:
  - name: alpha
    image: streamspace/desktop:local
  - name: beta
    image: streamspace/desktop:local
    ports:
      - name: vnc
        port: 70000
        protocol: vnc
";

async fn a_broken_entry_is_refused_with_line_and_field(app: TestApp) -> anyhow::Result<()> {
    let refused = import(&app, SMALL, "application/yaml", false).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let problem = &refused.body["problems"][0];
    assert_eq!(problem["index"], 1, "{}", refused.body);
    assert_eq!(problem["name"], "beta");
    assert_eq!(problem["field"], "templates[1].ports[0].port");
    assert_eq!(problem["line"], 9);
    assert_eq!(refused.body["field"], "templates[1].ports[0].port");
    let error = refused.body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("line 9") && error.contains("beta"),
        "{error}"
    );
    assert_eq!(
        template_count(&app).await?,
        0,
        "nothing of a broken catalog is written"
    );

    // A field no template has, in JSON: its name and line.
    let json_text = "{\"version\": 1, \"templates\": [\n  {\"name\": \"alpha\", \"image\": \"a:1\"},\n  {\"name\": \"beta\", \"image\": \"a:1\", \"colour\": \"blue\"}\n]}";
    let refused = import(&app, json_text, "application/json", true).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let problem = &refused.body["problems"][0];
    assert_eq!(problem["field"], "templates[1].colour", "{}", refused.body);
    assert_eq!(problem["line"], 3);
    assert_eq!(problem["name"], "beta");

    let not_yaml = import(
        &app,
        "version: 1\ntemplates: [\n",
        "application/yaml",
        false,
    )
    .await;
    assert_eq!(not_yaml.status, StatusCode::BAD_REQUEST);
    assert!(
        not_yaml.body["problems"][0]["line"].is_u64(),
        "{}",
        not_yaml.body
    );
    Ok(())
}

async fn updates_name_fields_and_keep_secrets(app: TestApp) -> anyhow::Result<()> {
    app.admin
        .create_template(json!({
            "name": "alpha", "image": "streamspace/desktop:local",
            "secret_env": {"API_KEY": "hunter2"}
        }))
        .await?;
    let catalog = "version: 1\ntemplates:\n  - name: alpha\n    image: other/image:2\n  - name: gamma\n    image: streamspace/desktop:local\n";
    let preview = import(&app, catalog, "application/yaml; charset=utf-8", true).await;
    assert_eq!(
        actions(&preview.body),
        ["update", "create"],
        "{}",
        preview.body
    );
    assert_eq!(preview.body["templates"][0]["changed"], json!(["image"]));

    let applied = import(&app, catalog, "application/yaml", false).await;
    assert_eq!(applied.status, StatusCode::OK, "{}", applied.body);
    let alpha = app
        .admin
        .expect(Method::GET, "/api/v1/templates/alpha", None, StatusCode::OK)
        .await?;
    assert_eq!(alpha["image"], "other/image:2");
    assert_eq!(alpha["secret_env"]["API_KEY"], "hunter2", "{alpha}");

    let exported = export(&app, "yaml").await;
    assert!(!exported.contains("hunter2"), "{exported}");
    assert!(exported.contains("other/image:2"), "{exported}");

    // An entry with secret_env replaces the values; the summary names the
    // field, never the values.
    let replace = format!("{catalog}    secret_env: {{TOKEN: s3cret}}\n");
    let replaced = import(&app, &replace, "application/yaml", false).await;
    assert_eq!(
        replaced.body["templates"][1]["changed"],
        json!(["secret_env"])
    );
    assert!(!replaced.body.to_string().contains("s3cret"));
    Ok(())
}

async fn imports_are_for_admins_and_bounded(app: TestApp) -> anyhow::Result<()> {
    app.admin.create_user("bob", "bob-password-123").await?;
    let bob = streamspace_testkit::Api::login(&app.url, "bob", "bob-password-123").await?;
    let url = app.url.join("/api/v1/templates/import")?;
    let client = reqwest::Client::new();
    let as_bob = client
        .post(url.clone())
        .bearer_auth(bob.token.as_deref().unwrap_or_default())
        .header("content-type", "application/yaml")
        .body(SMALL)
        .send()
        .await?;
    assert_eq!(as_bob.status(), StatusCode::FORBIDDEN);
    let export = bob
        .call(Method::GET, "/api/v1/templates/export", None)
        .await?;
    assert_eq!(export.status, StatusCode::FORBIDDEN);

    let plain = import(&app, SMALL, "text/plain", false).await;
    assert_eq!(plain.status, StatusCode::BAD_REQUEST);
    assert!(
        plain.body["error"]
            .as_str()
            .unwrap_or("")
            .contains("application/yaml")
    );

    // 4 MiB is the most; a larger catalog is refused before it is read.
    let huge = format!("version: 1\ntemplates: []\n#{}\n", "x".repeat(5 << 20));
    let too_large = import(&app, &huge, "application/yaml", false).await;
    assert_eq!(
        too_large.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        too_large.body
    );
    // 1.5 MiB, above other routes' 1 MiB, is taken here.
    let large = format!("version: 1\ntemplates: []\n#{}\n", "x".repeat(3 << 19));
    let taken = import(&app, &large, "application/yaml", true).await;
    assert_eq!(taken.status, StatusCode::OK, "{}", taken.body);
    Ok(())
}

on_both_engines!(
    the_repo_catalog_imports_and_reimports_unchanged,
    a_broken_entry_is_refused_with_line_and_field,
    updates_name_fields_and_keep_secrets,
    imports_are_for_admins_and_bounded,
);
