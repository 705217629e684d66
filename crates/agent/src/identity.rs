//! Who this agent is: enrolled once with a single-use token, then known by
//! its own secret, kept in the state directory (mode 0600).

use crate::tls::ClientTls;
use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use streamspace_protocol::tunnel::REGISTER_PATH;
use streamspace_protocol::{AgentId, Capabilities, Capacity};
use url::Url;

const FILE: &str = "agent.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Identity {
    pub agent_id: AgentId,
    pub name: String,
    pub secret: String,
    pub control_plane: Url,
    /// What to trust on an `https://` control plane: given on the command
    /// line each start, never saved.
    #[serde(skip)]
    pub tls: ClientTls,
}

/// What an agent says about itself when enrolling.
#[derive(Debug, Clone)]
pub struct Enrollment {
    pub control_plane: Url,
    pub token: Option<String>,
    pub name: String,
    pub platform: String,
    pub region: Option<String>,
    pub capacity: Capacity,
    pub capabilities: Capabilities,
    /// What to trust on an `https://` control plane (`--ca-cert`).
    pub tls: ClientTls,
}

impl Identity {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(FILE)
    }

    /// The saved identity, or a new one from enrolling with the token.
    /// A saved identity wins: the token is only needed the first time.
    pub async fn load_or_enroll(state_dir: &Path, enrollment: &Enrollment) -> anyhow::Result<Self> {
        let path = Self::path(state_dir);
        if path.exists() {
            let identity = Self::load(&path)?;
            if identity.control_plane != enrollment.control_plane {
                tracing::warn!(
                    saved = %identity.control_plane,
                    given = %enrollment.control_plane,
                    "using the control plane given on the command line, not the saved one"
                );
            }
            return Ok(Identity {
                control_plane: enrollment.control_plane.clone(),
                tls: enrollment.tls.clone(),
                ..identity
            });
        }
        let Some(token) = &enrollment.token else {
            bail!(
                "this agent is not enrolled yet ({} does not exist): pass --enrollment-token \
                 (an admin creates one with POST /api/v1/agents/enrollment-tokens)",
                path.display()
            );
        };
        let identity = enroll(enrollment, token).await?;
        std::fs::create_dir_all(state_dir)
            .with_context(|| format!("cannot create state directory {}", state_dir.display()))?;
        identity.save(&path)?;
        tracing::info!(agent_id = %identity.agent_id, path = %path.display(), "enrolled");
        Ok(identity)
    }

    fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is damaged: delete it and enroll again", path.display()))
    }

    fn save(&self, path: &Path) -> anyhow::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let tmp = path.with_extension("json.tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        file.write_all(serde_json::to_string_pretty(self)?.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }
}

#[derive(Deserialize)]
struct Registered {
    agent_id: AgentId,
    secret: String,
}

async fn enroll(enrollment: &Enrollment, token: &str) -> anyhow::Result<Identity> {
    let url = crate::endpoint(&enrollment.control_plane, REGISTER_PATH, false);
    let body = serde_json::json!({
        "enrollment_token": token,
        "name": enrollment.name,
        "platform": enrollment.platform,
        "region": enrollment.region,
        "capacity": enrollment.capacity,
        "capabilities": enrollment.capabilities,
    });
    let response = enrollment
        .tls
        .http_client()?
        .post(url.clone())
        .json(&body)
        .send()
        .await
        .with_context(|| format!("cannot reach the control plane at {url}"))
        .map_err(crate::tls::explain)?;
    let status = response.status();
    if !status.is_success() {
        let message = crate::error_message(&response.text().await.unwrap_or_default());
        bail!("enrollment refused ({status}): {message}");
    }
    let registered: Registered = response
        .json()
        .await
        .context("unexpected enrollment answer")?;
    Ok(Identity {
        agent_id: registered.agent_id,
        name: enrollment.name.clone(),
        secret: registered.secret,
        control_plane: enrollment.control_plane.clone(),
        tls: enrollment.tls.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn saved_identity_is_private_and_reused_without_token() {
        let dir = tempfile::tempdir().expect("tempdir");
        let identity = Identity {
            agent_id: "a1".into(),
            name: "n".into(),
            secret: "ssa_x".into(),
            control_plane: Url::parse("http://127.0.0.1:1").expect("url"),
            tls: ClientTls::default(),
        };
        let path = Identity::path(dir.path());
        identity.save(&path).expect("saves");
        let mode = std::fs::metadata(&path)
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let enrollment = Enrollment {
            control_plane: Url::parse("http://127.0.0.1:2").expect("url"),
            token: None,
            name: "n".into(),
            platform: "docker".into(),
            region: None,
            capacity: Capacity::default(),
            capabilities: Capabilities::default(),
            tls: ClientTls::default(),
        };
        let loaded = Identity::load_or_enroll(dir.path(), &enrollment)
            .await
            .expect("loads without a token");
        assert_eq!(loaded.secret, "ssa_x");
        assert_eq!(loaded.control_plane.as_str(), "http://127.0.0.1:2/");
    }

    #[tokio::test]
    async fn unenrolled_agent_without_token_says_what_to_do() {
        let dir = tempfile::tempdir().expect("tempdir");
        let enrollment = Enrollment {
            control_plane: Url::parse("http://127.0.0.1:2").expect("url"),
            token: None,
            name: "n".into(),
            platform: "docker".into(),
            region: None,
            capacity: Capacity::default(),
            capabilities: Capabilities::default(),
            tls: ClientTls::default(),
        };
        let err = Identity::load_or_enroll(dir.path(), &enrollment)
            .await
            .expect_err("needs a token");
        assert!(err.to_string().contains("--enrollment-token"), "{err}");
    }
}
