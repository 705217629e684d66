//! `streamspace connect` with a real VNC client (vncdotool) capturing the
//! screen through the local port.

use crate::{RUNNING_LIMIT, bin, require_desktop_image};
use anyhow::{Context, bail};
use serde_json::json;
use std::process::Stdio;
use std::time::Duration;
use streamspace_testkit::docker::Cleanup;
use streamspace_testkit::{Api, ControlPlane, Mode};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// Starts `streamspace connect` (with `extra` arguments) on a free port;
/// returns the process and port.
pub async fn start_connect(
    api: &Api,
    id: &str,
    extra: &[&std::ffi::OsStr],
) -> anyhow::Result<(tokio::process::Child, u16)> {
    let mut child = Command::new(bin())
        .args([
            "connect",
            id,
            "--listen",
            "127.0.0.1:0",
            "--server",
            api.base.as_str(),
        ])
        .args(extra)
        .env(
            "STREAMSPACE_TOKEN",
            api.token.as_deref().unwrap_or_default(),
        )
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .context("connect printed nothing")??
        .context("connect exited")?;
    let port = line
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("no port in {line:?}"))?;
    Ok((child, port))
}

/// Captures the screen with vncdotool and returns how many distinct colours
/// it holds: a desktop with an xterm has many, a blank or broken one few.
pub async fn capture_colours(port: u16, png: &std::path::Path) -> anyhow::Result<usize> {
    let server = format!("127.0.0.1::{port}");
    // vncdotool's first capture of a new connection may be incomplete, so
    // it captures twice on one connection and keeps the second.
    let status = Command::new("vncdotool")
        .args(["-s", &server, "capture"])
        .arg(png)
        .arg("capture")
        .arg(png)
        .status()
        .await
        .context("vncdotool is not installed: pip install vncdotool (scripts/test.sh does)")?;
    if !status.success() {
        bail!("vncdotool failed: {status}");
    }
    let script = "import sys; from PIL import Image; \
                  print(len(set(Image.open(sys.argv[1]).convert('RGB').getdata())))";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(png)
        .output()
        .await?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().parse().with_context(|| {
        format!(
            "cannot count colours: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[tokio::test]
async fn native_vnc_client_through_connect() -> anyhow::Result<()> {
    require_desktop_image();
    let cp = ControlPlane::start(bin(), Mode::Up, None).await?;
    let admin = Api::admin(&cp.url).await?;
    let agent_id = admin
        .wait_for_agent("local", Duration::from_secs(30))
        .await?;
    let _cleanup = Cleanup(vec![agent_id]);
    let session = admin.create_session(json!({"template": "desktop"})).await?;
    let id = session["id"].as_str().unwrap_or_default().to_owned();
    admin.wait_for_phase(&id, "Running", RUNNING_LIMIT).await?;

    let (_connect, port) = start_connect(&admin, &id, &[]).await?;
    let dir = tempfile::tempdir()?;
    let png = dir.path().join("screen.png");
    let colours = capture_colours(port, &png).await?;
    assert!(colours >= 2, "the screen is one flat colour ({colours})");

    // The desktop's xterm draws text: typing changes the picture.
    let server = format!("127.0.0.1::{port}");
    let typed = Command::new("vncdotool")
        .args(["-s", &server, "type", "echo streamspace", "key", "enter"])
        .status()
        .await?;
    assert!(typed.success());
    let after = dir.path().join("after.png");
    capture_colours(port, &after).await?;
    let before = std::fs::read(&png)?;
    let later = std::fs::read(&after)?;
    assert_ne!(
        before, later,
        "typing through the tunnel changed the screen"
    );
    Ok(())
}
