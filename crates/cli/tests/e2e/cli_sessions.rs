//! `streamspace sessions` driving a real desktop on the real Docker engine,
//! with only the login that `streamspace login` stored: create follows the
//! session live until it runs, `open` runs the user's VNC viewer through a
//! local tunnel (here a script that reads the desktop's RFB greeting),
//! `open --browser` hands the viewer's URL to `xdg-open`, `connect`
//! reaches the desktop with the stored login alone,
//! hibernate, wake, logs and rm, with the exit code for opening a
//! hibernated session; without the event stream, create polls.

use crate::{RUNNING_LIMIT, bin, require_desktop_image};
use serde_json::Value;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;
use streamspace_testkit::docker::Cleanup;
use streamspace_testkit::{Api, ControlPlane, Mode, eventually};
use tokio::process::Command;

/// Runs `streamspace ARGS` with `config` as the stored login.
async fn cli(config: &Path, args: &[&str], envs: &[(&str, &str)], stdin: &str) -> Output {
    let mut child = Command::new(bin())
        .args(args)
        .env("STREAMSPACE_CONFIG", config)
        .env_remove("STREAMSPACE_TOKEN")
        .env_remove("STREAMSPACE_SERVER")
        .envs(envs.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("streamspace runs");
    if let Some(mut pipe) = child.stdin.take() {
        tokio::io::AsyncWriteExt::write_all(&mut pipe, stdin.as_bytes())
            .await
            .expect("stdin");
    }
    let waited = tokio::time::timeout(RUNNING_LIMIT * 2, child.wait_with_output()).await;
    waited.expect("streamspace ended in time").expect("output")
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn json(output: &Output) -> Value {
    assert!(output.status.success(), "{}", describe(output));
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", describe(output)))
}

/// A "VNC viewer" for `STREAMSPACE_VNC_VIEWER`: given `HOST::PORT`, as
/// vncviewer is, it reads the server's 12-byte RFB greeting into `banner`.
fn fake_viewer(dir: &Path, banner: &Path) -> anyhow::Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("viewer.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/bash\nexec 3<>\"/dev/tcp/${{1%%::*}}/${{1##*::}}\"\nhead -c 12 <&3 > {}\n",
            banner.display()
        ),
    )?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    Ok(script.display().to_string())
}

/// An `xdg-open` that writes the URL it was given to `opened`.
fn fake_opener(bin_dir: &Path, opened: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let script = bin_dir.join("xdg-open");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$1\" > {}\n", opened.display()),
    )?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// Starts `streamspace connect ID` with only the stored login and reads
/// the desktop's RFB greeting through the port it prints.
async fn greeting_through_connect(config: &Path, id: &str) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
    let mut connect = Command::new(bin())
        .args(["connect", id, "--listen", "127.0.0.1:0"])
        .env("STREAMSPACE_CONFIG", config)
        .env_remove("STREAMSPACE_TOKEN")
        .env_remove("STREAMSPACE_SERVER")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = connect.stdout.take().context("no stdout")?;
    let line = tokio::time::timeout(
        Duration::from_secs(20),
        BufReader::new(stdout).lines().next_line(),
    )
    .await
    .context("connect printed nothing")??
    .context("connect exited")?;
    let address = line
        .split_whitespace()
        .find_map(|word| {
            word.trim_end_matches(':')
                .parse::<std::net::SocketAddr>()
                .ok()
        })
        .with_context(|| format!("no address in {line:?}"))?;
    let mut socket = tokio::net::TcpStream::connect(address).await?;
    let mut greeting = vec![0u8; 12];
    tokio::time::timeout(Duration::from_secs(20), socket.read_exact(&mut greeting)).await??;
    Ok(greeting)
}

#[tokio::test]
async fn sessions_from_create_to_rm_with_the_stored_login() -> anyhow::Result<()> {
    require_desktop_image();
    let cp = ControlPlane::start(bin(), Mode::Up, None).await?;
    let admin = Api::admin(&cp.url).await?;
    let agent_id = admin
        .wait_for_agent("local", Duration::from_secs(30))
        .await?;
    let _cleanup = Cleanup(vec![agent_id]);
    admin.create_user("alice", "alice-password").await?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("config.yaml");
    let login = ["login", "--server", cp.url.as_str(), "-u", "alice"];
    let output = cli(&config, &login, &[], "alice-password\n").await;
    assert!(output.status.success(), "{}", describe(&output));

    // create follows the session (the event stream) until it runs.
    let output = cli(
        &config,
        &["sessions", "create", "desktop", "-o", "json"],
        &[],
        "",
    )
    .await;
    let session = json(&output);
    assert_eq!(session["phase"], "Running", "{session}");
    let progress = String::from_utf8_lossy(&output.stderr);
    assert!(progress.contains("placed on local"), "{progress}");
    assert!(progress.contains("  Running ("), "{progress}");
    assert!(
        !progress.contains("polling"),
        "the event stream was used: {progress}"
    );
    let id = session["id"].as_str().unwrap_or_default().to_owned();
    let listed = json(&cli(&config, &["sessions", "ls", "-o", "json"], &[], "").await);
    assert_eq!(listed[0]["id"], id.as_str());

    // open: the tunnel, and the viewer pointed at it.
    let banner = dir.path().join("banner");
    let viewer = fake_viewer(dir.path(), &banner)?;
    let env = [("STREAMSPACE_VNC_VIEWER", viewer.as_str())];
    let output = cli(&config, &["sessions", "open", &id], &env, "").await;
    assert!(output.status.success(), "{}", describe(&output));
    let greeting = std::fs::read_to_string(&banner)?;
    assert!(greeting.starts_with("RFB 003."), "{greeting:?}");

    // --browser hands the web UI's viewer URL to the desktop's opener.
    let opened = dir.path().join("opened");
    let bin_dir = dir.path().join("bin");
    std::fs::create_dir(&bin_dir)?;
    fake_opener(&bin_dir, &opened)?;
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = cli(
        &config,
        &["sessions", "open", &id, "--browser"],
        &[("PATH", &path)],
        "",
    )
    .await;
    assert!(output.status.success(), "{}", describe(&output));
    let url = format!("{}sessions/{id}", cp.url);
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), url);
    assert_eq!(std::fs::read_to_string(&opened)?.trim(), url);

    // connect alone takes the stored login too.
    let greeting = greeting_through_connect(&config, &id).await?;
    assert!(greeting.starts_with(b"RFB 003."), "{greeting:?}");

    let output = cli(&config, &["sessions", "logs", &id, "--tail", "20"], &[], "").await;
    assert!(output.status.success(), "{}", describe(&output));

    // Hibernated, it cannot be opened (4) until it wakes.
    let hibernating = json(
        &cli(
            &config,
            &["sessions", "hibernate", &id, "-o", "json"],
            &[],
            "",
        )
        .await,
    );
    assert_eq!(hibernating["state"], "hibernated");
    eventually(RUNNING_LIMIT, "the session to hibernate", || async {
        let got = json(&cli(&config, &["sessions", "get", &id, "-o", "json"], &[], "").await);
        Ok((got["phase"] == "Hibernated").then_some(()))
    })
    .await?;
    let output = cli(&config, &["sessions", "open", &id], &env, "").await;
    assert_eq!(output.status.code(), Some(4), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("sessions wake"));
    let waking = json(&cli(&config, &["sessions", "wake", &id, "-o", "json"], &[], "").await);
    assert_eq!(waking["state"], "running");

    let output = cli(&config, &["sessions", "rm", &id], &[], "").await;
    assert!(output.status.success(), "{}", describe(&output));
    eventually(RUNNING_LIMIT, "the session to end", || async {
        let got = json(&cli(&config, &["sessions", "get", &id, "-o", "json"], &[], "").await);
        Ok((got["phase"] == "Terminated").then_some(()))
    })
    .await?;

    // With every stream of hers in use (the per-user bound, 32), the event
    // stream cannot open: create says so and polls the session instead.
    let stored: Value = serde_saphyr::from_str(&std::fs::read_to_string(&config)?)?;
    let mut held = Vec::new();
    for _ in 0..32 {
        let response = reqwest::Client::new()
            .get(cp.url.join("/api/v1/events")?)
            .bearer_auth(stored["token"].as_str().unwrap_or_default())
            .send()
            .await?;
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        held.push(response);
    }
    let output = cli(
        &config,
        &["sessions", "create", "desktop", "-o", "json"],
        &[],
        "",
    )
    .await;
    let polled = json(&output);
    assert_eq!(polled["phase"], "Running", "{polled}");
    let progress = String::from_utf8_lossy(&output.stderr);
    assert!(progress.contains("polling the session"), "{progress}");
    assert!(progress.contains("  Running ("), "{progress}");
    drop(held);
    let id = polled["id"].as_str().unwrap_or_default();
    let output = cli(&config, &["sessions", "rm", id], &[], "").await;
    assert!(output.status.success(), "{}", describe(&output));
    Ok(())
}
