//! File transfer (docs/FILES.md) with a real desktop session on the real
//! Docker engine: uploads land in the container (checked with `docker
//! exec`) owned by the session's user, files made in the container
//! download byte-identical, `..` and symbolic links never leave the files
//! folder, an upload over the template's limit or broken off leaves
//! nothing behind, and the template's policy holds.

use crate::{Cluster, desktop_template};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::process::Command;
use streamspace_testkit::Api;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FOLDER: &str = "/home/user/Downloads";

/// `docker exec` in the session's container, as its user; stdout's bytes.
fn exec(session_id: &str, script: &str) -> Vec<u8> {
    let output = Command::new("docker")
        .args([
            "exec",
            &format!("streamspace-{session_id}"),
            "sh",
            "-c",
            script,
        ])
        .output()
        .expect("docker exec runs");
    assert!(
        output.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

fn exists(session_id: &str, path: &str) -> bool {
    let script = format!("test -e '{path}' && echo yes || echo no");
    exec(session_id, &script) == b"yes\n"
}

/// Bytes no one would type: every value, in an order that shows shifts.
pub(crate) fn sample(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn files_url(api: &Api, session_id: &str, path: &str) -> String {
    let path = path.replace('/', "%2F");
    format!("{}api/v1/sessions/{session_id}/files/{path}", api.base)
}

pub(crate) async fn put(
    api: &Api,
    session_id: &str,
    path: &str,
    bytes: Vec<u8>,
) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .put(files_url(api, session_id, path))
        .bearer_auth(api.token.as_deref().unwrap_or_default())
        .body(bytes)
        .send()
        .await
        .expect("upload sent");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

pub(crate) async fn get(api: &Api, session_id: &str, path: &str) -> (StatusCode, Vec<u8>) {
    let response = reqwest::Client::new()
        .get(files_url(api, session_id, path))
        .bearer_auth(api.token.as_deref().unwrap_or_default())
        .send()
        .await
        .expect("download sent");
    let status = response.status();
    (status, response.bytes().await.expect("body").to_vec())
}

async fn list(api: &Api, session_id: &str, path: &str) -> (StatusCode, Value) {
    let answer = api
        .call(
            Method::GET,
            &format!("/api/v1/sessions/{session_id}/files?path={path}"),
            None,
        )
        .await
        .expect("listed");
    (answer.status, answer.body)
}

fn names(listing: &Value) -> Vec<(String, String)> {
    listing["entries"]
        .as_array()
        .map(|entries| {
            let entry = |e: &Value| {
                (
                    e["name"].as_str().unwrap_or_default().to_owned(),
                    e["kind"].as_str().unwrap_or_default().to_owned(),
                )
            };
            entries.iter().map(entry).collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn files_go_into_and_out_of_a_docker_session() -> anyhow::Result<()> {
    let cluster = Cluster::start("files-agent").await?;
    let admin = &cluster.admin;
    let id = cluster
        .running_session(admin, json!({"template": "desktop"}))
        .await?;

    let (status, listing) = list(admin, &id, "").await;
    assert_eq!(
        (status, names(&listing)),
        (StatusCode::OK, vec![]),
        "no folder yet: empty"
    );

    let upload = sample(300_000);
    let (status, body) = put(admin, &id, "report.bin", upload.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["size"], 300_000);
    assert_eq!(
        exec(&id, &format!("cat {FOLDER}/report.bin")),
        upload,
        "arrived whole"
    );
    let owner = exec(&id, &format!("stat -c %u:%g {FOLDER} {FOLDER}/report.bin"));
    assert_eq!(
        owner, b"1000:1000\n1000:1000\n",
        "the session's user owns folder and file"
    );

    let (status, _) = put(admin, &id, "nested/deeper/note.txt", b"hi".to_vec()).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        exec(&id, &format!("cat {FOLDER}/nested/deeper/note.txt")),
        b"hi"
    );

    exec(
        &id,
        &format!("head -c 1000000 /dev/urandom > {FOLDER}/made-inside.bin"),
    );
    let inside = exec(&id, &format!("cat {FOLDER}/made-inside.bin"));
    let (status, downloaded) = get(admin, &id, "made-inside.bin").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        downloaded == inside,
        "downloaded {} bytes, not the container's {}",
        downloaded.len(),
        inside.len()
    );

    let (_, listing) = list(admin, &id, "").await;
    let expected = [
        ("made-inside.bin", "file"),
        ("nested", "directory"),
        ("report.bin", "file"),
    ];
    assert_eq!(
        names(&listing),
        expected.map(|(n, k)| (n.to_owned(), k.to_owned()))
    );
    assert_eq!(listing["entries"][2]["size"], 300_000);
    let (_, listing) = list(admin, &id, "nested").await;
    assert_eq!(
        names(&listing),
        vec![("deeper".to_owned(), "directory".to_owned())]
    );

    let (status, _) = get(admin, &id, "nested").await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a directory is not downloaded"
    );
    let (status, _) = get(admin, &id, "missing.txt").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let audit = admin
        .expect(
            Method::GET,
            "/api/v1/audit?kind=file.upload",
            None,
            StatusCode::OK,
        )
        .await?;
    assert_eq!(
        audit["events"][0]["target"],
        format!("session:{id}"),
        "{audit}"
    );
    let audit = admin
        .expect(
            Method::GET,
            "/api/v1/audit?kind=file.download",
            None,
            StatusCode::OK,
        )
        .await?;
    assert_eq!(
        audit["events"][0]["detail"]["path"], "made-inside.bin",
        "{audit}"
    );
    Ok(())
}

#[tokio::test]
async fn dot_dot_and_symbolic_links_never_leave_the_folder() -> anyhow::Result<()> {
    let cluster = Cluster::start("files-escape-agent").await?;
    let admin = &cluster.admin;
    let id = cluster
        .running_session(admin, json!({"template": "desktop"}))
        .await?;
    exec(
        &id,
        &format!(
            "mkdir -p {FOLDER} && ln -s /etc {FOLDER}/etc && ln -s /etc/passwd {FOLDER}/passwd"
        ),
    );

    for path in ["../.profile", "a/../../x", "/etc/passwd"] {
        let (status, body) = put(admin, &id, path, b"x".to_vec()).await;
        assert_eq!(
            (status, body["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some("path")),
            "{path}: {body}"
        );
        let (status, _) = get(admin, &id, path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
    }
    let (status, body) = list(admin, &id, "..").await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("path"))
    );

    // Links inside the folder are listed, never followed.
    let (_, listing) = list(admin, &id, "").await;
    assert_eq!(
        names(&listing),
        [("etc", "symlink"), ("passwd", "symlink")].map(|(n, k)| (n.to_owned(), k.to_owned()))
    );
    for path in ["etc/passwd", "passwd"] {
        let (status, body) = get(admin, &id, path).await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "{path}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let (status, _) = list(admin, &id, "etc").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = put(admin, &id, "etc/evil", b"x".to_vec()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!exists(&id, "/etc/evil"), "written through the link");

    // The whole folder a link: nothing is read or written through it.
    exec(&id, &format!("rm -rf {FOLDER} && ln -s /etc {FOLDER}"));
    let (status, _) = list(admin, &id, "").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = get(admin, &id, "passwd").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = put(admin, &id, "evil", b"x".to_vec()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!exists(&id, "/etc/evil"), "written through the link");
    Ok(())
}

#[tokio::test]
async fn uploads_over_the_limit_or_broken_off_leave_nothing() -> anyhow::Result<()> {
    let cluster = Cluster::start("files-limit-agent").await?;
    let admin = &cluster.admin;
    let mut template = desktop_template("small");
    template["desktop"] = json!({"max_upload": "64Ki"});
    admin.create_template(template).await?;
    let id = cluster
        .running_session(admin, json!({"template": "small"}))
        .await?;

    let (status, body) = put(admin, &id, "big.bin", sample(64 * 1024 + 1)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("max_upload")),
        "{body}"
    );
    assert!(!exists(&id, &format!("{FOLDER}/big.bin")));
    let (status, _) = put(admin, &id, "fits.bin", sample(64 * 1024)).await;
    assert_eq!(status, StatusCode::CREATED);

    // A client that announces 60000 bytes, sends 30000 and goes away.
    let status = broken_upload(admin, &id, "half.bin", 60_000, 30_000).await?;
    assert!(
        status.is_empty() || status.starts_with("HTTP/1.1 4"),
        "{status}"
    );
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert!(
        !exists(&id, &format!("{FOLDER}/half.bin")),
        "half an upload was written"
    );
    let leftovers = exec(&id, &format!("ls -A {FOLDER}"));
    assert_eq!(leftovers, b"fits.bin\n", "nothing else in the folder");

    let status = unsized_upload(admin, &id).await?;
    assert!(status.starts_with("HTTP/1.1 411"), "{status}");
    Ok(())
}

/// Sends `sent` of `announced` bytes on a raw connection, then closes its
/// writing half; returns the status line, if any came.
async fn broken_upload(
    api: &Api,
    id: &str,
    path: &str,
    announced: usize,
    sent: usize,
) -> anyhow::Result<String> {
    let length = format!("Content-Length: {announced}");
    raw_put(api, id, path, &length, &sample(sent)).await
}

/// An upload without a size, chunked as `curl -T -` sends one.
async fn unsized_upload(api: &Api, id: &str) -> anyhow::Result<String> {
    raw_put(
        api,
        id,
        "chunked.bin",
        "Transfer-Encoding: chunked",
        b"3\r\nabc\r\n0\r\n\r\n",
    )
    .await
}

/// A PUT with `header` and `body` written as they are on a raw connection,
/// whose writing half is then closed; the status line that came back.
async fn raw_put(
    api: &Api,
    id: &str,
    path: &str,
    header: &str,
    body: &[u8],
) -> anyhow::Result<String> {
    let host = api.base.host_str().unwrap_or("127.0.0.1");
    let port = api.base.port().unwrap_or(80);
    let mut tcp = tokio::net::TcpStream::connect((host, port)).await?;
    let token = api.token.as_deref().unwrap_or_default();
    let head = format!(
        "PUT /api/v1/sessions/{id}/files/{path} HTTP/1.1\r\nHost: {host}:{port}\r\n\
         Authorization: Bearer {token}\r\n{header}\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await?;
    tcp.write_all(body).await?;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    tcp.shutdown().await?;
    let mut answer = Vec::new();
    let limit = std::time::Duration::from_secs(10);
    let _ = tokio::time::timeout(limit, tcp.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    Ok(answer.lines().next().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn the_template_policy_and_ownership_hold() -> anyhow::Result<()> {
    let cluster = Cluster::start("files-policy-agent").await?;
    let admin = &cluster.admin;
    for (name, policy) in [
        ("down-only", "download"),
        ("up-only", "upload"),
        ("no-files", "none"),
    ] {
        let mut template = desktop_template(name);
        template["desktop"] = json!({"file_transfer": policy});
        admin.create_template(template).await?;
    }
    admin.create_user("alice", "alice-password-1").await?;
    admin.create_user("bob", "bob-password-12").await?;
    let alice = Api::login(&cluster.cp.url, "alice", "alice-password-1").await?;
    let bob = Api::login(&cluster.cp.url, "bob", "bob-password-12").await?;

    let down = cluster
        .running_session(&alice, json!({"template": "down-only"}))
        .await?;
    exec(
        &down,
        &format!("mkdir -p {FOLDER} && echo inside > {FOLDER}/a.txt"),
    );
    assert_eq!(
        put(&alice, &down, "b.txt", b"x".to_vec()).await.0,
        StatusCode::FORBIDDEN
    );
    assert!(!exists(&down, &format!("{FOLDER}/b.txt")));
    assert_eq!(
        get(&alice, &down, "a.txt").await,
        (StatusCode::OK, b"inside\n".to_vec())
    );
    assert_eq!(
        get(&bob, &down, "a.txt").await.0,
        StatusCode::NOT_FOUND,
        "not bob's session"
    );
    assert_eq!(list(&bob, &down, "").await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        get(admin, &down, "a.txt").await.0,
        StatusCode::OK,
        "admins may"
    );

    let up = cluster
        .running_session(&alice, json!({"template": "up-only"}))
        .await?;
    assert_eq!(
        put(&alice, &up, "c.txt", b"x".to_vec()).await.0,
        StatusCode::CREATED
    );
    assert_eq!(get(&alice, &up, "c.txt").await.0, StatusCode::FORBIDDEN);
    assert_eq!(
        put(&bob, &up, "d.txt", b"x".to_vec()).await.0,
        StatusCode::NOT_FOUND
    );
    assert!(!exists(&up, &format!("{FOLDER}/d.txt")));

    let none = cluster
        .running_session(&alice, json!({"template": "no-files"}))
        .await?;
    assert_eq!(list(&alice, &none, "").await.0, StatusCode::FORBIDDEN);
    assert_eq!(
        put(&alice, &none, "e.txt", b"x".to_vec()).await.0,
        StatusCode::FORBIDDEN
    );

    // Refusals by the policy are audited; bob's 404s concern no session of his.
    assert_eq!(
        denied_paths(admin, "file.upload").await?,
        ["e.txt", "b.txt"]
    );
    assert_eq!(denied_paths(admin, "file.download").await?, ["c.txt"]);
    Ok(())
}

/// The paths of the refused transfers of `kind` in the audit log, newest first.
async fn denied_paths(admin: &Api, kind: &str) -> anyhow::Result<Vec<String>> {
    let path = format!("/api/v1/audit?kind={kind}");
    let audit = admin
        .expect(Method::GET, &path, None, StatusCode::OK)
        .await?;
    let events = audit["events"].as_array().cloned().unwrap_or_default();
    Ok(events
        .iter()
        .filter(|e| e["outcome"] == "denied")
        .map(|e| e["detail"]["path"].as_str().unwrap_or_default().to_owned())
        .collect())
}
