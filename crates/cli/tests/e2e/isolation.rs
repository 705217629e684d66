//! Sessions of different users on one Docker host, tried from inside a
//! desktop as its user's own code would: no desktop can open a connection
//! to another (with controls that show the same client and addresses do
//! work where they may), each is confined, each user has their own home;
//! and create-then-terminate churn leaves nothing behind.

use crate::{Cluster, RUNNING_LIMIT, assert_vnc_works, desktop_template};
use anyhow::Context;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::io::Write;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};
use streamspace_testkit::{Api, docker};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

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
/// two seconds, or what it says when it cannot connect (busybox's nc; the
/// desktop image has busybox-static): "timed out" when nothing answers,
/// "Connection refused" when a host answers that nothing listens.
fn read_from_inside(from: &str, host: impl std::fmt::Display, port: u16) -> anyhow::Result<String> {
    let script = format!("busybox nc -w 2 {host} {port} </dev/null 2>&1; true");
    docker::docker(&["exec", &container(from), "sh", "-c", &script])
}

/// A session container's place on its one network.
struct Attachment {
    network: String,
    ip: Ipv4Addr,
    prefix: u32,
    gateway: Ipv4Addr,
}

impl Attachment {
    fn of(session_id: &str) -> anyhow::Result<Self> {
        let text = inspect(session_id, "{{json .NetworkSettings.Networks}}")?;
        let networks: serde_json::Map<String, Value> = serde_json::from_str(&text)?;
        anyhow::ensure!(
            networks.len() == 1,
            "{session_id} is on exactly one network: {text}"
        );
        let (network, endpoint) = networks.into_iter().next().context("a network")?;
        let address = |key: &str| -> anyhow::Result<Ipv4Addr> {
            let text = endpoint[key].as_str().unwrap_or_default();
            text.parse()
                .with_context(|| format!("{session_id}'s {key} {text:?} is an IPv4 address"))
        };
        let prefix = endpoint["IPPrefixLen"].as_u64().context("IPPrefixLen")?;
        Ok(Attachment {
            ip: address("IPAddress")?,
            gateway: address("Gateway")?,
            prefix: u32::try_from(prefix)
                .ok()
                .filter(|p| *p <= 32)
                .context("prefix")?,
            network,
        })
    }

    fn subnet(&self) -> u32 {
        let mask = u32::MAX.checked_shl(32 - self.prefix).unwrap_or(0);
        u32::from(self.ip) & mask
    }
}

/// The RFB banner of the VNC server at `ip`, read from this host, where
/// the agent dials it.
async fn banner_from_the_host(ip: Ipv4Addr) -> anyhow::Result<String> {
    let read = async {
        let mut stream = TcpStream::connect((ip, VNC_PORT)).await?;
        let mut banner = [0u8; 12];
        stream.read_exact(&mut banner).await?;
        anyhow::Ok(String::from_utf8_lossy(&banner).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .with_context(|| format!("no banner from {ip}:{VNC_PORT} within 10 s"))?
}

/// A one-shot listener on the host at the sessions network's gateway, for
/// a session to prove its packets cross the bridge and answers come back.
/// On a thread of its own: `read_from_inside` blocks the test's runtime
/// while the session connects.
fn host_listener(gateway: Ipv4Addr) -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind((gateway, 0))?;
    let port = listener.local_addr()?.port();
    listener.set_nonblocking(true)?;
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    let _ = stream.write_all(b"HOST-HELLO\n");
                    return;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    Ok(port)
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

/// `alice` on `dev-desktop` and `alice-dev` on `desktop`: their old home
/// names were the same (`streamspace-home-alice-dev-desktop`), and their
/// desktops shared Docker's default bridge with no VNC password. (The
/// cluster's cleanup removes the agent's containers and homes.)
#[tokio::test]
async fn desktops_of_two_users_cannot_reach_each_other() -> anyhow::Result<()> {
    let c = Cluster::start("isolation-agent").await?;
    let (alice, alice_id) = user(&c.admin, "alice").await?;
    let (alice_dev, alice_dev_id) = user(&c.admin, "alice-dev").await?;
    let dev_desktop = home_template(&c.admin, "dev-desktop").await?;
    let desktop = home_template(&c.admin, "desktop-home").await?;
    let a = c
        .running_session(&alice, json!({"template": "dev-desktop"}))
        .await?;
    let b = c
        .running_session(&alice_dev, json!({"template": "desktop-home"}))
        .await?;

    // Real addresses on one subnet, so that silence below means blocked,
    // not a wrong address.
    let (a_net, b_net) = (Attachment::of(&a)?, Attachment::of(&b)?);
    assert_eq!(a_net.network, b_net.network);
    assert_eq!(a_net.prefix, b_net.prefix);
    assert_eq!(
        a_net.subnet(),
        b_net.subnet(),
        "{} and {}",
        a_net.ip,
        b_net.ip
    );
    assert_ne!(a_net.ip, b_net.ip);
    // The controls: the host (as the agent) reaches both VNC servers at
    // their addresses, and a's client crosses the bridge to the host.
    for net in [&a_net, &b_net] {
        let banner = banner_from_the_host(net.ip).await?;
        assert!(banner.starts_with(RFB_BANNER), "{}: {banner:?}", net.ip);
    }
    let port = host_listener(a_net.gateway)?;
    let hello = read_from_inside(&a, a_net.gateway, port)?;
    assert!(
        hello.contains("HOST-HELLO"),
        "a reaches the host: {hello:?}"
    );

    // a cannot reach b at its address (dropped: nothing answers) ...
    let read = read_from_inside(&a, b_net.ip, VNC_PORT)?;
    assert!(
        read.contains("timed out"),
        "a reached b's address: {read:?}"
    );
    let read = read_from_inside(&b, a_net.ip, VNC_PORT)?;
    assert!(
        read.contains("timed out"),
        "b reached a's address: {read:?}"
    );
    // ... nor at its published port through the gateway: ports are
    // published on the host's 127.0.0.1 only, so the host refuses. (Inside
    // a session, 127.0.0.1 is the session's own loopback, never the host's:
    // trying b's port there could not fail, so it is not tried.)
    let published = docker::docker(&["port", &container(&b), &VNC_PORT.to_string()])?;
    let b_host_port: u16 = published
        .lines()
        .next()
        .and_then(|l| l.rsplit(':').next())
        .context("b's published port")?
        .trim()
        .parse()?;
    let read = read_from_inside(&a, a_net.gateway, b_host_port)?;
    assert!(
        read.contains("Connection refused"),
        "a reached b's published port through the gateway: {read:?}"
    );

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
    assert_eq!(a_home, format!("streamspace-home-{alice_id}-{dev_desktop}"));
    assert_eq!(b_home, format!("streamspace-home-{alice_dev_id}-{desktop}"));
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
