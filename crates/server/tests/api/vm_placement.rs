//! Virtual-machine templates (the libvirt platform) beside container ones:
//! a template that names no platform never lands on a libvirt agent (a
//! container image cannot boot as a VM), a libvirt template never lands on
//! a container agent, and the VM's section reaches its agent; the agents
//! list shows what a VM platform says of itself.

use crate::fake_agent::{FakeAgent, enroll_on};
use crate::{TestApp, on_both_engines};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;
use streamspace_protocol::{Acceleration, Action, Capabilities, Firmware};

const DISK: &str = "/var/lib/streamspace/vm/demo.qcow2";

/// Enrolls and connects an agent of `platform`; returns it and its id.
async fn agent_on(
    app: &TestApp,
    name: &str,
    platform: &str,
    capabilities: Capabilities,
) -> anyhow::Result<(FakeAgent, String)> {
    let (id, secret) = enroll_on(&app.admin, name, platform).await?;
    let agent = FakeAgent::connect_on(&app.url, (&id, &secret), platform, capabilities).await?;
    app.admin
        .wait_for_agent(name, Duration::from_secs(10))
        .await?;
    Ok((agent, id))
}

async fn templates_go_only_to_their_kind_of_platform(app: TestApp) -> anyhow::Result<()> {
    let admin = &app.admin;
    admin
        .create_template(json!({"name": "desktop", "image": "streamspace/desktop:local"}))
        .await?;
    admin
        .create_template(json!({
            "name": "vm-demo", "image": DISK, "platforms": ["libvirt"],
            "resources": {"cpu": "1", "memory": "256Mi"}, "persistent_home": true,
            "vm": {"firmware": "uefi", "home_size": "256Mi"}
        }))
        .await?;
    let vm_capabilities = Capabilities {
        hibernation: true,
        hibernation_keeps_memory: true,
        persistent_storage: true,
        acceleration: Some(Acceleration::Tcg),
        ..Capabilities::default()
    };
    // The libvirt agent comes first and is as empty as the other: only the
    // platform rule keeps container sessions off it.
    let (mut kvm, kvm_id) = agent_on(&app, "kvm-host", "libvirt", vm_capabilities).await?;
    let (mut docker, docker_id) =
        agent_on(&app, "docker-host", "docker", Capabilities::default()).await?;

    for _ in 0..3 {
        let session = admin.create_session(json!({"template": "desktop"})).await?;
        assert_eq!(session["agent_id"], docker_id.as_str(), "{session}");
        let start = docker.expect_command().await?;
        docker.complete(&start).await?;
    }
    for body in [
        json!({"template": "desktop", "agent_id": kvm_id}),
        json!({"template": "desktop", "platform": "libvirt"}),
        json!({"template": "vm-demo", "agent_id": docker_id}),
        json!({"template": "vm-demo", "platform": "docker"}),
    ] {
        let answer = admin
            .call(Method::POST, "/api/v1/sessions", Some(body.clone()))
            .await?;
        assert!(
            answer.status.is_client_error(),
            "{body}: {} {}",
            answer.status,
            answer.body
        );
    }
    let refused = admin
        .refused(
            Method::POST,
            "/api/v1/sessions",
            json!({"template": "desktop", "platform": "libvirt"}),
            StatusCode::BAD_REQUEST,
        )
        .await?;
    let message = refused["error"].as_str().unwrap_or_default();
    assert!(
        message.contains("[\"docker\", \"kubernetes\"]"),
        "{message}"
    );

    let session = admin.create_session(json!({"template": "vm-demo"})).await?;
    assert_eq!(session["agent_id"], kvm_id.as_str(), "{session}");
    let start = kvm.expect_command().await?;
    let Action::Start { spec } = &start.action else {
        anyhow::bail!("expected a start, got {start:?}");
    };
    assert_eq!(spec.image, DISK);
    assert_eq!(spec.vm.firmware, Firmware::Uefi);
    assert_eq!(spec.vm.home_size().bytes(), 256 << 20);
    assert_eq!(spec.ports[0].port, 5900);
    assert!(spec.home.is_some());

    // What the VM platform says of itself is on the agents list.
    let agents = admin.agents().await?;
    let kvm = agents
        .iter()
        .find(|a| a["name"] == "kvm-host")
        .expect("listed");
    assert_eq!(kvm["platform"], "libvirt");
    assert_eq!(kvm["capabilities"]["acceleration"], "tcg");
    assert_eq!(kvm["capabilities"]["hibernation_keeps_memory"], true);
    Ok(())
}

async fn vm_templates_are_checked_through_the_api(app: TestApp) -> anyhow::Result<()> {
    let admin = &app.admin;
    for (template, field) in [
        (
            json!({"name": "mixed", "image": DISK, "platforms": ["libvirt", "docker"],
                   "resources": {"memory": "1Gi"}}),
            "platforms",
        ),
        (
            json!({"name": "escape", "image": "/var/lib/../../etc/shadow",
                   "platforms": ["libvirt"], "resources": {"memory": "1Gi"}}),
            "image",
        ),
        (
            json!({"name": "box", "image": "d:1", "vm": {"firmware": "bios"}}),
            "vm",
        ),
        (
            json!({"name": "shm", "image": DISK, "platforms": ["libvirt"],
                   "resources": {"memory": "1Gi"}, "shm_size": "1Gi"}),
            "shm_size",
        ),
    ] {
        let refused = admin
            .refused(
                Method::POST,
                "/api/v1/templates",
                template,
                StatusCode::BAD_REQUEST,
            )
            .await?;
        assert_eq!(refused["field"], field, "{refused}");
    }
    let created = admin
        .create_template(json!({"name": "pool-vm", "image": "default/win11.qcow2",
                                "platforms": ["libvirt"], "resources": {"memory": "4Gi"}}))
        .await?;
    assert_eq!(created["vm"]["firmware"], "bios", "{created}");
    assert_eq!(created["ports"][0]["port"], 5900, "{created}");
    Ok(())
}

on_both_engines!(
    templates_go_only_to_their_kind_of_platform,
    vm_templates_are_checked_through_the_api
);
