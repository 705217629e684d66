//! Sessions that start again on a host that changed under them: the
//! sessions network pruned while they were stopped, or containers created
//! before sessions were isolated. Each test runs on a network of its own
//! (`DockerOptions::network`), never the shared one.

mod support;

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::CreateContainerOptionsBuilder;
use std::collections::HashMap;
use streamspace_agent::{Platform, PlatformError};
use streamspace_docker::container_name;
use streamspace_protocol::{AgentId, Phase, SessionId, labels};
use support::*;

/// After `docker network prune`, sessions started at once by one agent
/// share the one network it makes again: none is left on a copy that
/// another start removed.
#[tokio::test]
async fn starts_at_once_after_a_prune_share_one_network() {
    const SESSIONS: usize = 4;
    let docker = docker().await;
    require_image(&docker).await;
    let network = unique("streamspace-test-reprune");
    let sessions: Vec<SessionId> = (0..SESSIONS).map(|_| unique_session("again")).collect();
    let mut cleanup = Cleanup::default();
    for session in &sessions {
        cleanup.session(session);
    }
    cleanup.network(&network);
    let platform = platform_on(&unique_agent("agent"), &network)
        .await
        .expect("the platform connects");
    docker.remove_network(&network).await.expect("prune");

    let started = futures::future::join_all(
        sessions
            .iter()
            .map(|session| async { platform.start(&desktop_spec(session)).await }),
    )
    .await;
    for (session, result) in sessions.iter().zip(started) {
        result.unwrap_or_else(|e| panic!("{session} starts after the prune: {e}"));
    }
    let remaining = networks_named(&docker, &network).await;
    assert_eq!(remaining.len(), 1, "{remaining:?}");
    for session in &sessions {
        assert_eq!(attached(&docker, session).await, remaining, "{session}");
        let running = inspect(&docker, session)
            .await
            .and_then(|c| c.state)
            .and_then(|s| s.running);
        assert_eq!(running, Some(true), "{session}");
    }
}

/// A hibernated session whose network `docker network prune` removed (it
/// goes while only stopped containers use it) wakes on the network made
/// again; Docker alone would refuse to start it ("network … not found").
#[tokio::test]
async fn a_hibernated_session_wakes_after_its_network_is_pruned() {
    let docker = docker().await;
    require_image(&docker).await;
    let network = unique("streamspace-test-wake");
    let session = unique_session("pruned");
    let mut cleanup = Cleanup::default();
    cleanup.session(&session);
    cleanup.network(&network);
    let platform = platform_on(&unique_agent("agent"), &network)
        .await
        .expect("the platform connects");
    platform
        .start(&desktop_spec(&session))
        .await
        .expect("start");
    assert_eq!(&wait_for_banner(&platform, &session).await, RFB_BANNER);
    let hibernated = platform.hibernate(&session).await.expect("hibernate");
    assert_eq!(hibernated.phase, Phase::Hibernated);

    docker.remove_network(&network).await.expect("prune");
    let woken = platform.wake(&session).await.expect("wake after the prune");
    assert_eq!(woken.phase, Phase::Waking);
    assert_eq!(&wait_for_banner(&platform, &session).await, RFB_BANNER);
    let remaining = networks_named(&docker, &network).await;
    assert_eq!(remaining.len(), 1, "{remaining:?}");
    assert_eq!(attached(&docker, &session).await, remaining);
}

/// A container from before sessions were isolated: what a plain `docker
/// create` makes, on Docker's default bridge, unconfined, labelled as this
/// agent's session.
async fn create_unconfined(docker: &bollard::Docker, agent_id: &AgentId, session_id: &SessionId) {
    let labels = HashMap::from([
        (labels::SESSION_ID.to_owned(), session_id.to_string()),
        (labels::USER.to_owned(), "alice".to_owned()),
        (labels::TEMPLATE.to_owned(), "desktop".to_owned()),
        (labels::AGENT.to_owned(), agent_id.to_string()),
    ]);
    let body = ContainerCreateBody {
        image: Some(IMAGE.to_owned()),
        labels: Some(labels),
        ..Default::default()
    };
    let name = container_name(session_id);
    let options = CreateContainerOptionsBuilder::new().name(&name).build();
    docker
        .create_container(Some(options), body)
        .await
        .expect("create the old container");
}

/// Neither a wake nor a start runs an unconfined container from before
/// sessions were isolated: the session fails with what to do instead.
#[tokio::test]
async fn an_unconfined_container_from_before_is_not_started() {
    let docker = docker().await;
    require_image(&docker).await;
    let network = unique("streamspace-test-old");
    let (agent, session) = (unique_agent("agent"), unique_session("old"));
    let mut cleanup = Cleanup::default();
    cleanup.session(&session);
    cleanup.network(&network);
    let platform = platform_on(&agent, &network)
        .await
        .expect("the platform connects");
    create_unconfined(&docker, &agent, &session).await;

    let woken = platform.wake(&session).await;
    let started = platform.start(&desktop_spec(&session)).await;
    for (what, result) in [("wake", woken), ("start", started)] {
        let Err(PlatformError::Invalid(message)) = result else {
            panic!("{what} must refuse the old container: {result:?}");
        };
        assert!(
            message.contains("before sessions were isolated"),
            "{message}"
        );
        assert!(
            message.contains("start a new one; its home is kept"),
            "{message}"
        );
    }
    let state = inspect(&docker, &session).await.and_then(|c| c.state);
    let running = state.and_then(|s| s.running);
    assert_eq!(running, Some(false), "the old container stays stopped");
}
