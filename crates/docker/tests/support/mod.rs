//! Helpers for tests against the real Docker engine: the demo image, unique
//! names, cleanup that runs even when a test panics, and polling with
//! deadlines instead of sleeps.

// Each test binary compiles this module and uses a part of it.
#![allow(dead_code)]

use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::{
    ListNetworksOptionsBuilder, RemoveContainerOptionsBuilder, RemoveVolumeOptions,
};
use futures::StreamExt;
use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};
use streamspace_agent::{Platform, PlatformResult};
use streamspace_docker::{DockerOptions, DockerPlatform, container_name};
use streamspace_protocol::{AgentId, HomeVolume, SessionId, SessionSpec};
use tokio::io::AsyncReadExt;

pub const IMAGE: &str = "streamspace/desktop:local";
pub const VNC_PORT: u16 = 5901;
pub const RFB_BANNER: &[u8; 12] = b"RFB 003.008\n";

/// A test's own client for the engine, to look behind the platform's back.
pub async fn docker() -> Docker {
    Docker::connect_with_defaults()
        .expect("Docker client")
        .negotiate_version()
        .await
        .expect("the Docker engine answers (start it with `dockerd >/tmp/dockerd.log 2>&1 &`)")
}

/// Fails the test (never skips it) when the demo image is missing.
pub async fn require_image(docker: &Docker) {
    if let Err(e) = docker.inspect_image(IMAGE).await {
        panic!(
            "the demo image {IMAGE} is not on this Docker host ({e}): build it with images/desktop/build.sh"
        );
    }
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..12])
}

/// A session id no other test uses.
pub fn unique_session(prefix: &str) -> SessionId {
    unique(prefix).into()
}

/// An agent id no other test uses.
pub fn unique_agent(prefix: &str) -> AgentId {
    unique(prefix).into()
}

/// A platform whose sessions join `network` (a test's own, so that
/// pruning or racing for it touches no one else's sessions).
pub async fn platform_on(agent_id: &AgentId, network: &str) -> PlatformResult<DockerPlatform> {
    let options = DockerOptions {
        network: network.to_owned(),
        ..DockerOptions::default()
    };
    DockerPlatform::connect(agent_id, options).await
}

pub async fn platform(agent_id: &AgentId) -> DockerPlatform {
    DockerPlatform::connect(agent_id, DockerOptions::default())
        .await
        .expect("DockerPlatform connects")
}

pub fn desktop_spec(session_id: &SessionId) -> SessionSpec {
    SessionSpec::fixture(session_id)
        .with_image(IMAGE)
        .with_vnc_port(VNC_PORT)
        .with_env("VNC_GEOMETRY", "1024x768")
        .with_limits("500m", "256Mi")
}

pub fn with_home(mut spec: SessionSpec, volume: &str) -> SessionSpec {
    spec.home = Some(HomeVolume {
        volume: volume.to_owned(),
        path: "/home/user".into(),
        ..Default::default()
    });
    spec
}

/// Removes a test's containers, then its volumes and networks (which
/// cannot go while a container uses them), when dropped, also on panic.
#[derive(Default)]
pub struct Cleanup {
    sessions: Vec<SessionId>,
    volumes: Vec<String>,
    networks: Vec<String>,
}

impl Cleanup {
    pub fn session(&mut self, session_id: &SessionId) {
        self.sessions.push(session_id.clone());
    }

    pub fn volume(&mut self, volume: &str) {
        self.volumes.push(volume.to_owned());
    }

    pub fn network(&mut self, network: &str) {
        self.networks.push(network.to_owned());
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let sessions = std::mem::take(&mut self.sessions);
        let volumes = std::mem::take(&mut self.volumes);
        let networks = std::mem::take(&mut self.networks);
        // Drop cannot await inside the test's runtime: clean up from a thread
        // with a runtime of its own, and wait for it.
        let cleaner = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            runtime.block_on(async move {
                let docker = docker().await;
                let force = RemoveContainerOptionsBuilder::new().force(true).build();
                for session in sessions {
                    let name = container_name(&session);
                    let _ = docker.remove_container(&name, Some(force.clone())).await;
                }
                for volume in volumes {
                    let _ = docker
                        .remove_volume(&volume, None::<RemoveVolumeOptions>)
                        .await;
                }
                for network in networks {
                    let _ = docker.remove_network(&network).await;
                }
            });
        });
        let _ = cleaner.join();
    }
}

/// Polls `probe` until it returns `Some`, failing the test with `what` after
/// `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Connects through the platform until the session's VNC server sends its
/// banner (Docker's port proxy accepts before Xvnc listens).
pub async fn wait_for_banner(platform: &DockerPlatform, session_id: &SessionId) -> [u8; 12] {
    eventually("the RFB banner", Duration::from_secs(30), || async {
        let mut stream = platform.connect(session_id, VNC_PORT).await.ok()?;
        let mut banner = [0u8; 12];
        tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut banner))
            .await
            .ok()?
            .ok()?;
        Some(banner)
    })
    .await
}

pub async fn inspect(docker: &Docker, session_id: &SessionId) -> Option<ContainerInspectResponse> {
    docker
        .inspect_container(&container_name(session_id), None)
        .await
        .ok()
}

/// Runs `sh -c script` in a session's container and returns its output.
pub async fn exec(docker: &Docker, session_id: &SessionId, script: &str) -> String {
    let exec = docker
        .create_exec(
            &container_name(session_id),
            CreateExecOptions {
                cmd: Some(vec!["sh", "-c", script]),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .expect("create exec");
    let StartExecResults::Attached { mut output, .. } =
        docker.start_exec(&exec.id, None).await.expect("start exec")
    else {
        panic!("exec started detached");
    };
    let mut text = String::new();
    while let Some(chunk) = output.next().await {
        text.push_str(&chunk.expect("exec output").to_string());
    }
    text
}

/// Ids of the networks called exactly `name`.
pub async fn networks_named(docker: &Docker, name: &str) -> Vec<String> {
    let filters = HashMap::from([("name", vec![name.to_owned()])]);
    let options = ListNetworksOptionsBuilder::new().filters(&filters).build();
    docker
        .list_networks(Some(options))
        .await
        .expect("list networks")
        .into_iter()
        .filter(|n| n.name.as_deref() == Some(name))
        .filter_map(|n| n.id)
        .collect()
}

/// The ids of the networks a session's container is attached to.
pub async fn attached(docker: &Docker, session_id: &SessionId) -> Vec<String> {
    let container = inspect(docker, session_id).await.expect("container");
    let networks = container
        .network_settings
        .and_then(|n| n.networks)
        .unwrap_or_default();
    networks
        .into_values()
        .filter_map(|n| n.network_id)
        .collect()
}
