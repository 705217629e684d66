//! Sessions of different users on one Docker host, tried from inside a
//! desktop as its user's own code would: no desktop can open a connection
//! to another, each is confined, each user has their own home; and
//! create-then-terminate churn leaves nothing behind.

use crate::{Cluster, RUNNING_LIMIT, assert_vnc_works, desktop_template};
use anyhow::Context;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use streamspace_testkit::{Api, docker};

const VNC_PORT: u16 = 5901;
const RFB_BANNER: &str = "RFB 003.008";

fn container(session_id: &str) -> String {
    format!("streamspace-{session_id}")
}

fn inspect(session_id: &str, format: &str) -> anyhow::Result<String> {
    Ok(
        docker::docker(&["inspect", "-f", format, &container(session_id)])?
            .trim()
            .to_owned(),
    )
}

/// What a TCP client inside session `from` reads from `host:port` within
/// two seconds (busybox's nc; the desktop image has busybox-static).
fn read_from_inside(from: &str, host: &str, port: u16) -> anyhow::Result<String> {
    let script = format!("busybox nc -w 2 {host} {port} </dev/null 2>&1; true");
    docker::docker(&["exec", &container(from), "sh", "-c", &script])
}

/// A user of their own, logged in.
async fn user(admin: &Api, username: &str) -> anyhow::Result<(Api, String)> {
    let password = "a-password-of-their-own";
    let created = admin.create_user(username, password).await?;
    let id = created["id"].as_str().context("user id")?.to_owned();
    Ok((Api::login(&admin.base, username, password).await?, id))
}

/// A desktop template with a persistent home; returns its id.
async fn home_template(admin: &Api, name: &str) -> anyhow::Result<String> {
    let mut template = desktop_template(name);
    template["persistent_home"] = json!(true);
    let created = admin.create_template(template).await?;
    Ok(created["id"].as_str().context("template id")?.to_owned())
}

/// Removes the agent's containers, then the volumes they used (a volume in
/// use cannot be removed), also when the test fails.
struct VolumeCleanup {
    agent_id: String,
    volumes: Vec<String>,
}

impl Drop for VolumeCleanup {
    fn drop(&mut self) {
        docker::remove_agent_containers(&self.agent_id);
        for volume in &self.volumes {
            docker::remove_volume(volume);
        }
    }
}

/// `alice` on `dev-desktop` and `alice-dev` on `desktop`: their old home
/// names were the same (`streamspace-home-alice-dev-desktop`), and their
/// desktops shared Docker's default bridge with no VNC password.
#[tokio::test]
async fn desktops_of_two_users_cannot_reach_each_other() -> anyhow::Result<()> {
    let c = Cluster::start("isolation-agent").await?;
    let (alice, alice_id) = user(&c.admin, "alice").await?;
    let (alice_dev, alice_dev_id) = user(&c.admin, "alice-dev").await?;
    let dev_desktop = home_template(&c.admin, "dev-desktop").await?;
    let desktop = home_template(&c.admin, "desktop-home").await?;
    let cleanup = VolumeCleanup {
        agent_id: c.agent_id.clone(),
        volumes: vec![
            format!("streamspace-home-{alice_id}-{dev_desktop}"),
            format!("streamspace-home-{alice_dev_id}-{desktop}"),
        ],
    };
    let a = c
        .running_session(&alice, json!({"template": "dev-desktop"}))
        .await?;
    let b = c
        .running_session(&alice_dev, json!({"template": "desktop-home"}))
        .await?;

    let address = |id: &str| {
        inspect(
            id,
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        )
    };
    let (a_ip, b_ip) = (address(&a)?, address(&b)?);
    let gateway = inspect(&a, "{{range .NetworkSettings.Networks}}{{.Gateway}}{{end}}")?;
    let b_published = docker::docker(&["port", &container(&b), &VNC_PORT.to_string()])?;
    let b_host_port = b_published
        .lines()
        .next()
        .and_then(|l| l.rsplit(':').next())
        .context("b's published port")?
        .to_owned();
    // The control: the same client reaches a VNC server it may reach (its
    // own, at its own address), so silence below means blocked, not broken.
    let own = read_from_inside(&a, &a_ip, VNC_PORT)?;
    assert!(own.starts_with(RFB_BANNER), "own VNC server: {own:?}");
    for (what, host, port) in [
        ("b's container address", b_ip.as_str(), VNC_PORT.to_string()),
        (
            "b's published port through the gateway",
            gateway.as_str(),
            b_host_port.clone(),
        ),
        (
            "b's published port on loopback",
            "127.0.0.1",
            b_host_port.clone(),
        ),
    ] {
        let port: u16 = port.parse()?;
        let read = read_from_inside(&a, host, port)?;
        assert!(
            !read.contains("RFB"),
            "a reached {what} ({host}:{port}): {read:?}"
        );
    }
    let read = read_from_inside(&b, &a_ip, VNC_PORT)?;
    assert!(!read.contains("RFB"), "b reached a: {read:?}");

    // Both still work through the control plane, for their own users.
    assert_vnc_works(&alice, &a).await?;
    assert_vnc_works(&alice_dev, &b).await?;

    for id in [&a, &b] {
        let host: Value = serde_json::from_str(&inspect(id, "{{json .HostConfig}}")?)?;
        let security = host["SecurityOpt"].to_string();
        assert!(security.contains("no-new-privileges"), "{id}: {security}");
        assert!(
            host["PidsLimit"].as_i64().is_some_and(|n| n > 0),
            "{id}: {}",
            host["PidsLimit"]
        );
        assert_eq!(host["CapDrop"], json!(["ALL"]), "{id}");
    }

    // Distinct homes, named by ids: a file in one is not in the other.
    let home = |id: &str| inspect(id, "{{range .Mounts}}{{.Name}}{{end}}");
    let (a_home, b_home) = (home(&a)?, home(&b)?);
    assert_eq!(a_home, cleanup.volumes[0]);
    assert_eq!(b_home, cleanup.volumes[1]);
    docker::docker(&[
        "exec",
        &container(&a),
        "sh",
        "-c",
        "echo alice > /home/user/mine",
    ])?;
    let other = docker::docker(&["exec", &container(&b), "ls", "/home/user"])?;
    assert!(
        !other.contains("mine"),
        "alice-dev sees alice's home: {other}"
    );
    Ok(())
}

/// Sessions created and at once terminated, many at a time: every one ends
/// `Terminated` and no container is left (a terminate that overtook its
/// start used to leave one running).
#[tokio::test]
async fn create_then_terminate_churn_leaves_no_container() -> anyhow::Result<()> {
    const SESSIONS: usize = 24;
    let c = Cluster::start("churn-agent").await?;
    let mut template = desktop_template("churn");
    template["resources"] = json!({"cpu": "50m", "memory": "64Mi"});
    c.admin.create_template(template).await?;
    let churn = |_| async {
        let session = c.admin.create_session(json!({"template": "churn"})).await?;
        let id = session["id"].as_str().context("session id")?.to_owned();
        c.admin
            .expect(
                Method::DELETE,
                &format!("/api/v1/sessions/{id}"),
                None,
                StatusCode::OK,
            )
            .await?;
        anyhow::Ok(id)
    };
    let ids = futures::future::try_join_all((0..SESSIONS).map(churn)).await?;
    for id in &ids {
        c.admin
            .wait_for_phase(id, "Terminated", RUNNING_LIMIT)
            .await?;
    }
    // A start that ran after its terminate creates its container later:
    // watch for a while that none appears.
    let deadline = Instant::now() + Duration::from_secs(4);
    while Instant::now() < deadline {
        let left = docker::agent_containers(&c.agent_id)?;
        assert!(left.is_empty(), "containers left behind: {left:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}
