//! Sessions that start again on a host that changed under them: the
//! sessions network pruned. Each test runs on a network of its own
//! (`DockerOptions::network`), never the shared one.

mod support;

use streamspace_agent::Platform;
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
    let sessions: Vec<String> = (0..SESSIONS).map(|_| unique("again")).collect();
    let mut cleanup = Cleanup::default();
    for session in &sessions {
        cleanup.session(session);
    }
    cleanup.network(&network);
    let platform = platform_on(&unique("agent"), &network)
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
