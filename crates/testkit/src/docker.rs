//! The real Docker engine, through the `docker` CLI, to check what the
//! platform actually did.

use anyhow::bail;
use std::process::Command;

/// `docker ARGS…`: its stdout, or an error with its stderr.
pub fn docker(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("docker").args(args).output()?;
    if !output.status.success() {
        bail!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `(name, state)` of every container labelled with this session id.
pub fn session_containers(session_id: &str) -> anyhow::Result<Vec<(String, String)>> {
    let filter = format!("label=io.streamspace.session-id={session_id}");
    let out = docker(&[
        "ps",
        "-a",
        "--filter",
        &filter,
        "--format",
        "{{.Names}} {{.State}}",
    ])?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, s)| (n.to_owned(), s.to_owned()))
        .collect())
}

/// Names of the containers an agent owns.
pub fn agent_containers(agent_id: &str) -> anyhow::Result<Vec<String>> {
    let filter = format!("label=io.streamspace.agent={agent_id}");
    let out = docker(&["ps", "-a", "--filter", &filter, "--format", "{{.Names}}"])?;
    Ok(out.lines().map(str::to_owned).collect())
}

/// Removes an agent's containers (test cleanup).
pub fn remove_agent_containers(agent_id: &str) {
    if let Ok(names) = agent_containers(agent_id) {
        for name in names {
            let _ = docker(&["rm", "-f", &name]);
        }
    }
}

/// Names of the volumes an agent made (persistent homes carry its label).
pub fn agent_volumes(agent_id: &str) -> anyhow::Result<Vec<String>> {
    let filter = format!("label=io.streamspace.agent={agent_id}");
    let out = docker(&["volume", "ls", "-q", "--filter", &filter])?;
    Ok(out.lines().map(str::to_owned).collect())
}

/// Removes an agent's containers, then its volumes, which cannot go while
/// a container uses them (test cleanup).
pub fn remove_agent_objects(agent_id: &str) {
    remove_agent_containers(agent_id);
    if let Ok(names) = agent_volumes(agent_id) {
        for name in names {
            remove_volume(&name);
        }
    }
}

pub fn remove_container(name: &str) -> anyhow::Result<()> {
    docker(&["rm", "-f", name]).map(|_| ())
}

pub fn remove_volume(name: &str) {
    let _ = docker(&["volume", "rm", "-f", name]);
}

/// Fails with the fix when the demo image is missing.
pub fn require_image(tag: &str) -> anyhow::Result<()> {
    if docker(&["image", "inspect", tag]).is_err() {
        bail!("image {tag} is missing: run images/desktop/build.sh (scripts/test.sh does)");
    }
    Ok(())
}

/// Removes the containers and volumes (persistent homes) of every agent
/// whose id is in the list when dropped.
pub struct Cleanup(pub Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for agent in &self.0 {
            remove_agent_objects(agent);
        }
    }
}
