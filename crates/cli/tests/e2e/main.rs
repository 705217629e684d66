//! End-to-end tests: the real `streamspace` binary, a real Docker engine, the
//! real demo desktop image, and RFB spoken through `/vnc`.

mod connect;
mod spine;
mod up;

use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use streamspace_testkit::{Api, docker};

pub const DESKTOP: &str = "streamspace/desktop:local";
pub const RUNNING_LIMIT: Duration = Duration::from_secs(90);

pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_streamspace"))
}

/// The demo desktop template, as an admin would post it.
pub fn desktop_template(name: &str) -> Value {
    json!({
        "name": name,
        "display_name": "Desktop",
        "image": DESKTOP,
        "ports": [{"name": "vnc", "port": 5901, "protocol": "vnc"}],
        "resources": {"cpu": "500m", "memory": "256Mi"},
        "platforms": ["docker"]
    })
}

/// The RFB handshake and one framebuffer update through `/vnc/{id}`.
pub async fn assert_vnc_works(api: &Api, session_id: &str) -> anyhow::Result<()> {
    let token = api.token.as_deref().unwrap_or_default();
    let mut vnc = streamspace_testkit::rfb::VncSocket::connect(&api.base, session_id, token, &[])
        .await
        .map_err(|r| anyhow::anyhow!("/vnc refused: {} {}", r.status, r.error))?;
    let init = vnc.handshake().await?;
    anyhow::ensure!(
        init.width > 0 && init.height > 0,
        "empty framebuffer {init:?}"
    );
    let rects = vnc.framebuffer_update(&init).await?;
    anyhow::ensure!(rects > 0, "framebuffer update without rectangles");
    vnc.close().await;
    Ok(())
}

pub fn require_desktop_image() {
    if let Err(err) = docker::require_image(DESKTOP) {
        panic!("{err:#}");
    }
}
