//! End-to-end tests: the real `streamspace` binary, a real Docker engine, the
//! real demo desktop image, and RFB spoken through `/vnc`.

mod apps;
mod cli_sessions;
mod connect;
mod drain;
mod faults;
mod files;
mod fleet;
mod front;
mod gpus;
mod isolation;
mod login_flood;
mod platform_health;
mod pool;
mod pulls;
mod replicas_relay;
mod spine;
mod tls;
mod traces;
mod up;
mod upgrade;
mod vm;

use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use streamspace_testkit::docker::Cleanup;
use streamspace_testkit::{AgentProcess, Api, ControlPlane, Mode, docker};

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
        "max_resources": {"cpu": "2", "memory": "1Gi"},
        "platforms": ["docker"]
    })
}

/// The RFB handshake and one framebuffer update through `/vnc/{id}`.
pub async fn assert_vnc_works(api: &Api, session_id: &str) -> anyhow::Result<()> {
    let token = api.token.as_deref().unwrap_or_default();
    let tls = api.tls.clone();
    let mut vnc =
        streamspace_testkit::rfb::VncSocket::connect_tls(&api.base, session_id, token, &[], tls)
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

/// A control plane and a separate Docker agent, with the desktop template.
pub struct Cluster {
    pub cp: ControlPlane,
    pub admin: Api,
    pub agent: AgentProcess,
    pub agent_id: String,
    _cleanup: Cleanup,
}

impl Cluster {
    pub async fn start(agent_name: &str) -> anyhow::Result<Self> {
        Self::start_with(agent_name, streamspace_testkit::Options::default()).await
    }

    /// The same, with `options` for both processes (extra flags).
    pub async fn start_with(
        agent_name: &str,
        options: streamspace_testkit::Options,
    ) -> anyhow::Result<Self> {
        require_desktop_image();
        let cp = ControlPlane::start_with(bin(), Mode::Server, None, options.clone()).await?;
        let admin = Api::admin(&cp.url).await?;
        let token = admin.enrollment_token().await?;
        let agent = AgentProcess::start_with(bin(), &cp.url, &token, agent_name, options).await?;
        let agent_id = admin
            .wait_for_agent(agent_name, Duration::from_secs(30))
            .await
            .map_err(|e| anyhow::anyhow!("{e:#}\nagent log:\n{}", agent.process.log()))?;
        admin.create_template(desktop_template("desktop")).await?;
        Ok(Self {
            cp,
            admin,
            agent,
            _cleanup: Cleanup(vec![agent_id.clone()]),
            agent_id,
        })
    }

    /// Starts a desktop session and waits until it runs; returns its id.
    pub async fn running_session(&self, api: &Api, body: Value) -> anyhow::Result<String> {
        let session = api.create_session(body).await?;
        let id = session["id"].as_str().unwrap_or_default().to_owned();
        api.wait_for_phase(&id, "Running", RUNNING_LIMIT).await?;
        Ok(id)
    }
}
