//! TLS built in: the control plane serving HTTPS with a certificate from a
//! private CA, a separate agent and `streamspace connect` trusting that CA
//! by `--ca-cert`, `up` over HTTPS, and certificate reloads on SIGHUP.

use crate::connect::{capture_colours, start_connect};
use crate::{RUNNING_LIMIT, assert_vnc_works, bin, desktop_template, require_desktop_image};
use anyhow::Context;
use serde_json::json;
use std::ffi::OsStr;
use std::net::SocketAddr;
use std::time::Duration;
use streamspace_testkit::docker::Cleanup;
use streamspace_testkit::tls::{ServerCert, TestCa, presented_certificate};
use streamspace_testkit::{AgentProcess, Api, ControlPlane, Mode, Options, eventually};

fn serving(cert: &ServerCert) -> Options {
    Options {
        args: vec![
            "--tls-cert".into(),
            cert.cert.display().to_string(),
            "--tls-key".into(),
            cert.key.display().to_string(),
        ],
        ..Options::default()
    }
}

fn trusting(ca: &TestCa) -> Options {
    Options {
        args: vec!["--ca-cert".into(), ca.ca_pem.display().to_string()],
        ..Options::default()
    }
}

fn addr(cp: &ControlPlane) -> anyhow::Result<SocketAddr> {
    let host = cp.url.host_str().context("no host")?;
    Ok(SocketAddr::new(
        host.parse()?,
        cp.url.port().context("no port")?,
    ))
}

/// A control plane serving HTTPS with a certificate from a fresh CA, and
/// its admin on a client that trusts that CA.
async fn https_control_plane(
    mode: Mode,
    name: &str,
) -> anyhow::Result<(ControlPlane, Api, TestCa)> {
    let ca = TestCa::new(name)?;
    let cert = ca.server_cert("server")?;
    let cp = ControlPlane::start_with(bin(), mode, None, serving(&cert)).await?;
    anyhow::ensure!(
        cp.url.scheme() == "https",
        "the default public URL is {}",
        cp.url
    );
    let admin = Api::with_tls(&cp.url, ca.client_config()?)?
        .as_admin()
        .await?;
    Ok((cp, admin, ca))
}

#[tokio::test]
async fn vnc_works_over_https_with_a_private_ca() -> anyhow::Result<()> {
    require_desktop_image();
    let (cp, admin, ca) = https_control_plane(Mode::Server, "e2e").await?;
    let token = admin.enrollment_token().await?;
    let agent =
        AgentProcess::start_with(bin(), &cp.url, &token, "tls-agent", trusting(&ca)).await?;
    let agent_id = admin
        .wait_for_agent("tls-agent", Duration::from_secs(30))
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}\nagent log:\n{}", agent.process.log()))?;
    let _cleanup = Cleanup(vec![agent_id]);
    admin.create_template(desktop_template("desktop")).await?;
    let session = admin.create_session(json!({"template": "desktop"})).await?;
    let id = session["id"].as_str().unwrap_or_default().to_owned();
    admin.wait_for_phase(&id, "Running", RUNNING_LIMIT).await?;

    // RFB handshake and a framebuffer update through wss:// /vnc.
    assert_vnc_works(&admin, &id).await?;

    // A real VNC client through `streamspace connect --ca-cert`.
    let ca_args = [OsStr::new("--ca-cert"), ca.ca_pem.as_os_str()];
    let (_connect, port) = start_connect(&admin, &id, &ca_args).await?;
    let dir = tempfile::tempdir()?;
    let colours = capture_colours(port, &dir.path().join("screen.png")).await?;
    assert!(colours >= 2, "the screen is one flat colour ({colours})");

    // Both hops are TLS, so the tunnels copy: none is zero-copy.
    assert!(admin.metric("streamspace_tunnels_opened_total").await? >= 2.0);
    assert_eq!(
        admin.metric("streamspace_tunnels_zero_copy_total").await?,
        0.0
    );
    Ok(())
}

#[tokio::test]
async fn an_agent_without_the_ca_refuses_the_certificate() -> anyhow::Result<()> {
    let (cp, admin, _ca) = https_control_plane(Mode::Server, "e2e-untrusted").await?;
    let token = admin.enrollment_token().await?;
    let mut agent = AgentProcess::start(bin(), &cp.url, &token, "untrusting").await?;
    let status = agent.process.exited(Duration::from_secs(60)).await?;
    assert!(!status.success(), "the agent must not run: {status}");
    let log = agent.process.log();
    assert!(
        log.contains("certificate is not trusted") && log.contains("--ca-cert"),
        "a clear error: {log}"
    );
    assert!(admin.agents().await?.is_empty(), "nothing was enrolled");
    Ok(())
}

#[tokio::test]
async fn sighup_reloads_the_certificate_and_keeps_it_when_the_new_one_is_bad() -> anyhow::Result<()>
{
    let ca = TestCa::new("e2e-reload")?;
    let first = ca.server_cert("first")?;
    let cp = ControlPlane::start_with(bin(), Mode::Server, None, serving(&first)).await?;
    let client = ca.client_config()?;
    let admin = Api::with_tls(&cp.url, client.clone())?;
    let addr = addr(&cp)?;
    assert_eq!(
        presented_certificate(addr, client.clone()).await?,
        first.der
    );

    // A renewal written over the same files, then SIGHUP.
    let second = ca.server_cert("second")?;
    std::fs::copy(&second.cert, &first.cert)?;
    std::fs::copy(&second.key, &first.key)?;
    cp.process.signal("HUP")?;
    eventually(Duration::from_secs(20), "the new certificate", || async {
        let seen = presented_certificate(addr, client.clone()).await?;
        Ok((seen == second.der).then_some(()))
    })
    .await?;

    // A broken renewal is logged; the server keeps serving the last good one.
    std::fs::write(&first.cert, "-----BEGIN CERTIFICATE-----\nbroken\n")?;
    cp.process.signal("HUP")?;
    let failed = "streamspace_tls_reloads_total{outcome=\"failed\"}";
    eventually(Duration::from_secs(20), "a failed reload", || async {
        Ok((admin.metric(failed).await? >= 1.0).then_some(()))
    })
    .await?;
    assert!(
        cp.process
            .log()
            .contains("cannot reload the TLS certificate"),
        "{}",
        cp.process.log()
    );
    assert_eq!(presented_certificate(addr, client).await?, second.der);
    let ok = "streamspace_tls_reloads_total{outcome=\"ok\"}";
    assert_eq!(admin.metric(ok).await?, 1.0);
    Ok(())
}

#[tokio::test]
async fn up_over_https_runs_a_desktop_with_its_embedded_agent() -> anyhow::Result<()> {
    require_desktop_image();
    let (cp, admin, _ca) = https_control_plane(Mode::Up, "e2e-up").await?;
    let agent_id = admin
        .wait_for_agent("local", Duration::from_secs(30))
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}\nlog:\n{}", cp.process.log()))?;
    let _cleanup = Cleanup(vec![agent_id]);
    let session = admin.create_session(json!({"template": "desktop"})).await?;
    let id = session["id"].as_str().unwrap_or_default().to_owned();
    admin.wait_for_phase(&id, "Running", RUNNING_LIMIT).await?;
    assert_vnc_works(&admin, &id).await?;
    Ok(())
}
