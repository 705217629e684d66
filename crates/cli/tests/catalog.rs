//! `streamspace templates`: the committed catalog/schema.json is what
//! `templates schema` prints, and `templates import` / `export` drive a real
//! control plane (the binary) from a file, a URL and standard input, with
//! a readable preview and a non-zero exit naming the line of a broken entry.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use streamspace_testkit::{Api, ControlPlane, Mode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_streamspace"))
}

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// Runs `streamspace templates ARGS` against `cp` as the admin.
async fn templates(cp: &ControlPlane, token: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut command = Command::new(bin());
    command
        .arg("templates")
        .args(args)
        .args(["--server", cp.url.as_str()])
        .env("STREAMSPACE_TOKEN", token)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let input = stdin.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().expect("streamspace runs");
        if let (Some(text), Some(mut pipe)) = (input, child.stdin.take()) {
            std::io::Write::write_all(&mut pipe, text.as_bytes()).expect("stdin");
        }
        child.wait_with_output().expect("streamspace ends")
    })
    .await
    .expect("joined")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_committed_schema_is_the_printed_one() {
    let output = Command::new(bin())
        .args(["templates", "schema"])
        .output()
        .expect("streamspace templates schema");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let committed =
        std::fs::read_to_string(repo("catalog/schema.json")).expect("catalog/schema.json");
    assert!(
        text(&output.stdout) == committed,
        "catalog/schema.json is not what the server accepts: run \
         `streamspace templates schema > catalog/schema.json` and commit it"
    );
}

const CATALOG: &str = "\
version: 1
templates:
  - name: alpha
    image: streamspace/desktop:local
  - name: beta
    display_name: Beta
    image: streamspace/desktop:local
";

/// Serves `body` once over HTTP on loopback, as a catalog host would.
async fn serve_once(body: Vec<u8>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let Ok((mut socket, _)) = listener.accept().await else {
            return;
        };
        let mut request = [0u8; 4096];
        let _ = socket.read(&mut request).await;
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/yaml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        let _ = socket.write_all(head.as_bytes()).await;
        let _ = socket.write_all(&body).await;
    });
    format!("http://{address}/catalog")
}

#[tokio::test]
async fn import_previews_applies_and_exports() -> anyhow::Result<()> {
    let cp = ControlPlane::start(bin(), Mode::Server, None).await?;
    let admin = Api::admin(&cp.url).await?;
    let token = admin.token.clone().unwrap_or_default();
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("catalog.yaml");
    std::fs::write(&file, CATALOG)?;
    let file = file.to_str().unwrap_or_default();

    let preview = templates(&cp, &token, &["import", file, "--dry-run"], None).await;
    assert!(preview.status.success(), "{}", text(&preview.stderr));
    let table = text(&preview.stdout);
    assert!(table.contains("create     alpha"), "{table}");
    assert!(table.contains("(dry run: nothing was written)"), "{table}");
    let listed = admin
        .call(reqwest::Method::GET, "/api/v1/templates", None)
        .await?;
    assert_eq!(
        listed.body,
        serde_json::json!([]),
        "a dry run writes nothing"
    );

    // From a URL, fetched by the CLI.
    let url = serve_once(CATALOG.as_bytes().to_vec()).await;
    let applied = templates(&cp, &token, &["import", &url], None).await;
    assert!(applied.status.success(), "{}", text(&applied.stderr));
    assert!(
        text(&applied.stdout).contains("2 templates: 2 created"),
        "{}",
        text(&applied.stdout)
    );

    // The export, through standard input, imports back unchanged.
    let exported = templates(&cp, &token, &["export", "--format", "json"], None).await;
    assert!(exported.status.success(), "{}", text(&exported.stderr));
    let again = templates(
        &cp,
        &token,
        &["import", "-", "--output", "json"],
        Some(&text(&exported.stdout)),
    )
    .await;
    assert!(again.status.success(), "{}", text(&again.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&again.stdout)?;
    assert_eq!(summary["unchanged"], 2, "{summary}");

    // A broken entry: a non-zero exit that names the entry, line and field.
    let broken = CATALOG.replace(
        "display_name: Beta",
        "display_name: Beta\n    idle_timeout: whenever",
    );
    std::fs::write(file, broken)?;
    let refused = templates(&cp, &token, &["import", file], None).await;
    assert!(!refused.status.success());
    let message = text(&refused.stderr);
    assert!(
        message.contains("templates[1] (\"beta\"), line 7")
            && message.contains("templates[1].idle_timeout"),
        "{message}"
    );

    // A URL that answers more than the server takes is cut off.
    let huge = serve_once(vec![b'#'; 5 << 20]).await;
    let cut = templates(&cp, &token, &["import", &huge], None).await;
    assert!(!cut.status.success());
    assert!(
        text(&cut.stderr).contains("larger than 4 MiB"),
        "{}",
        text(&cut.stderr)
    );
    Ok(())
}
