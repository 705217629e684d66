//! Isolation and homes on the real Docker engine: the sessions network is
//! created isolated (and again when pruned), a network that lets sessions
//! talk is refused, containers are confined, and a user's home from before
//! homes were keyed by ids is kept only when its labels prove it is theirs.

mod support;

use bollard::models::NetworkCreateRequest;
use futures::StreamExt;
use std::collections::HashMap;
use std::time::Duration;
use streamspace_agent::{Platform, PlatformError};
use streamspace_docker::{DockerPlatform, NETWORK_LABEL};
use streamspace_protocol::DEFAULT_PIDS_LIMIT;
use streamspace_protocol::{AgentId, SessionId, SessionSpec, labels};
use support::*;

#[tokio::test]
async fn a_network_that_lets_sessions_talk_is_refused() {
    let docker = docker().await;
    let name = unique("streamspace-test-icc");
    let mut cleanup = Cleanup::default();
    cleanup.network(&name);
    // What `docker network create NAME` makes: containers may talk.
    docker
        .create_network(NetworkCreateRequest {
            name: name.clone(),
            ..Default::default()
        })
        .await
        .expect("create network");
    let err = match platform_on(&unique_agent("agent"), &name).await {
        Err(err) => err,
        Ok(_) => panic!("an agent must refuse network {name}"),
    };
    let PlatformError::Invalid(message) = err else {
        panic!("expected Invalid, got {err:?}");
    };
    assert!(
        message.contains("inter-container traffic is on"),
        "{message}"
    );
    assert!(message.contains("enable_icc=false"), "{message}");
    for default in ["bridge", "host"] {
        let err = platform_on(&unique_agent("agent"), default)
            .await
            .err()
            .unwrap_or_else(|| panic!("Docker's {default} network must be refused"));
        assert!(matches!(err, PlatformError::Invalid(_)), "{err:?}");
    }
}

/// Agents that start together on a fresh host make one network between
/// them: two of the same name would make every container start by name
/// fail ("network … is ambiguous"), and an agent left holding a copy that
/// another removed could not start sessions. Which copy each agent chose
/// while they raced is not the point (under load one may choose before a
/// copy is removed, and find the survivor at its next start): after they
/// have connected, one network remains and every agent starts a session.
#[tokio::test]
async fn agents_starting_together_make_one_network() {
    const AGENTS: usize = 8;
    let docker = docker().await;
    require_image(&docker).await;
    let network = unique("streamspace-test-together");
    let sessions: Vec<SessionId> = (0..AGENTS).map(|_| unique_session("together")).collect();
    let mut cleanup = Cleanup::default();
    for session in &sessions {
        cleanup.session(session);
    }
    cleanup.network(&network);
    let agents: Vec<AgentId> = (0..AGENTS).map(|_| unique_agent("agent")).collect();
    let connected =
        futures::future::join_all(agents.iter().map(|agent| platform_on(agent, &network))).await;
    let platforms: Vec<DockerPlatform> = connected
        .into_iter()
        .map(|result| result.expect("every agent connects"))
        .collect();
    let named = networks_named(&docker, &network).await;
    assert_eq!(named.len(), 1, "{named:?}");
    for (platform, session) in platforms.iter().zip(&sessions) {
        platform
            .start(&desktop_spec(session))
            .await
            .unwrap_or_else(|e| panic!("agent {} starts a session: {e}", platform.agent_id()));
        assert_eq!(attached(&docker, session).await, named, "{session}");
        platform.terminate(session).await.expect("terminate");
    }
}

#[tokio::test]
async fn sessions_join_an_isolated_network_that_is_made_again_when_pruned() {
    let docker = docker().await;
    require_image(&docker).await;
    let network = unique("streamspace-test-sessions");
    let (first, second) = (unique_session("net"), unique_session("net"));
    let mut cleanup = Cleanup::default();
    cleanup.session(&first);
    cleanup.session(&second);
    cleanup.network(&network);
    let platform = platform_on(&unique_agent("agent"), &network)
        .await
        .expect("connects");

    let created = docker
        .inspect_network(&network, None)
        .await
        .expect("the agent created the network");
    let options = created.options.unwrap_or_default();
    assert_eq!(
        options.get("com.docker.network.bridge.enable_icc"),
        Some(&"false".to_owned())
    );
    assert_eq!(created.driver.as_deref(), Some("bridge"));
    assert_eq!(
        created.labels.unwrap_or_default().get(NETWORK_LABEL),
        Some(&"sessions".to_owned())
    );
    // A second agent on the same host uses it as it is.
    platform_on(&unique_agent("agent"), &network)
        .await
        .expect("a second agent connects");

    platform.start(&desktop_spec(&first)).await.expect("start");
    let container = inspect(&docker, &first).await.expect("container");
    let networks = container
        .network_settings
        .and_then(|n| n.networks)
        .unwrap_or_default();
    assert_eq!(networks.keys().collect::<Vec<_>>(), [&network]);
    let host = container.host_config.expect("host config");
    assert_eq!(
        host.security_opt,
        Some(vec!["no-new-privileges".to_owned()])
    );
    assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
    assert_eq!(host.pids_limit, Some(i64::from(DEFAULT_PIDS_LIMIT)));
    assert_eq!(&wait_for_banner(&platform, &first).await, RFB_BANNER);
    // no-new-privileges, as the kernel sees it inside the session.
    let status = exec(&docker, &first, "grep NoNewPrivs /proc/self/status").await;
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    platform.terminate(&first).await.expect("terminate");

    // `docker network prune` removes it while no session uses it.
    docker.remove_network(&network).await.expect("prune");
    platform
        .start(&desktop_spec(&second))
        .await
        .expect("start after prune");
    assert_eq!(&wait_for_banner(&platform, &second).await, RFB_BANNER);
    docker
        .inspect_network(&network, None)
        .await
        .expect("created again");
    platform.terminate(&second).await.expect("terminate");
}

#[tokio::test]
async fn the_template_sets_the_pids_limit_and_capabilities() {
    let docker = docker().await;
    require_image(&docker).await;
    let session = unique_session("caps");
    let mut cleanup = Cleanup::default();
    cleanup.session(&session);
    let platform = platform(&unique_agent("agent")).await;
    let mut spec = desktop_spec(&session);
    spec.security.pids_limit = Some(64);
    spec.security.capabilities = vec!["CHOWN".into(), "SETUID".into(), "SETGID".into()];
    platform.start(&spec).await.expect("start");
    let host = inspect(&docker, &session)
        .await
        .and_then(|c| c.host_config)
        .expect("host config");
    assert_eq!(host.pids_limit, Some(64));
    assert_eq!(host.cap_add, Some(spec.security.capabilities.clone()));
    // The limit bites: 80 sleepers cannot all start under a limit of 64
    // (busybox's shell says so and gives up).
    let forked = exec(
        &docker,
        &session,
        "n=0; while [ $n -lt 80 ]; do sleep 30 </dev/null >/dev/null 2>&1 & n=$((n+1)); done; \
         echo all started",
    )
    .await;
    assert!(forked.contains("can't fork"), "{forked:?}");
    assert!(!forked.contains("all started"), "{forked:?}");

    let mut bad = desktop_spec(&unique_session("caps"));
    bad.security.capabilities = vec!["CAP_SYS_ADMIN".into()];
    let err = platform.start(&bad).await.expect_err("prefixed name");
    assert!(
        matches!(&err, PlatformError::Invalid(m) if m.contains("write \"SYS_ADMIN\"")),
        "{err:?}"
    );
    assert!(inspect(&docker, &bad.session_id).await.is_none());

    // NET_RAW would let it answer ARP for its neighbours' addresses.
    let mut raw = desktop_spec(&unique_session("caps"));
    cleanup.session(&raw.session_id);
    raw.security.capabilities = vec!["NET_RAW".into()];
    let err = platform.start(&raw).await.expect_err("NET_RAW is refused");
    assert!(
        matches!(&err, PlatformError::Invalid(m) if m.contains("--allow-capability NET_RAW")),
        "{err:?}"
    );
    assert!(inspect(&docker, &raw.session_id).await.is_none());
}

/// A desktop that writes without end (`yes > /proc/1/fd/1`) cannot fill
/// the host's disk with its console output, which still reads as before.
#[tokio::test]
async fn a_sessions_console_output_on_disk_is_bounded() {
    let docker = docker().await;
    require_image(&docker).await;
    let session = unique_session("logs");
    let mut cleanup = Cleanup::default();
    cleanup.session(&session);
    let platform = platform(&unique_agent("agent")).await;
    platform
        .start(&desktop_spec(&session))
        .await
        .expect("start");
    let host = inspect(&docker, &session)
        .await
        .and_then(|c| c.host_config)
        .expect("host config");
    let logs = host.log_config.expect("log config");
    assert_eq!(
        logs.typ.as_deref(),
        Some("json-file"),
        "this engine's default"
    );
    let options = logs.config.unwrap_or_default();
    assert_eq!(options.get("max-size").map(String::as_str), Some("10m"));
    assert_eq!(options.get("max-file").map(String::as_str), Some("3"));

    exec(&docker, &session, "echo bounded-but-kept > /proc/1/fd/1").await;
    let read = eventually("the line in the logs", Duration::from_secs(10), || async {
        let stream = platform.logs(&session, None, false).await.ok()?;
        let chunks: Vec<_> = stream.collect().await;
        let text: String = chunks
            .into_iter()
            .filter_map(Result::ok)
            .map(|c| String::from_utf8_lossy(&c).into_owned())
            .collect();
        text.contains("bounded-but-kept").then_some(text)
    })
    .await;
    assert!(read.contains("bounded-but-kept"), "{read}");
}

/// Writes `text` to `file` in the home of a session of `spec` started by
/// `platform`, then terminates the session.
async fn leave_in_home(platform: &DockerPlatform, spec: &SessionSpec, file: &str, text: &str) {
    let docker = docker().await;
    platform.start(spec).await.expect("start");
    exec(
        &docker,
        &spec.session_id,
        &format!("echo {text} > /home/user/{file}"),
    )
    .await;
    platform
        .terminate(&spec.session_id)
        .await
        .expect("terminate");
}

fn with_legacy(mut spec: SessionSpec, volume: &str, legacy: &str) -> SessionSpec {
    spec = with_home(spec, volume);
    if let Some(home) = spec.home.as_mut() {
        home.legacy = Some(legacy.to_owned());
    }
    spec
}

/// After the upgrade, alice's home from before keeps her files; the same
/// old name made by another user is not taken for hers.
#[tokio::test]
async fn an_upgrade_keeps_the_home_whose_labels_name_the_user() {
    let docker = docker().await;
    require_image(&docker).await;
    let agent = unique_agent("agent");
    let old_home = unique("streamspace-home-alice-desktop");
    let new_home = unique("streamspace-home-u1-t1");
    let sessions = [
        unique_session("old"),
        unique_session("new"),
        unique_session("again"),
    ];
    let mut cleanup = Cleanup::default();
    for session in &sessions {
        cleanup.session(session);
    }
    cleanup.volume(&old_home);
    cleanup.volume(&new_home);
    let platform = platform(&agent).await;

    // Before: the home is named by user and template names, labelled so.
    let before = with_home(desktop_spec(&sessions[0]), &old_home);
    leave_in_home(&platform, &before, "kept.txt", "from-before").await;

    let after = with_legacy(desktop_spec(&sessions[1]), &new_home, &old_home);
    platform
        .start(&after)
        .await
        .expect("start after the upgrade");
    let text = exec(&docker, &sessions[1], "cat /home/user/kept.txt").await;
    assert_eq!(text.trim(), "from-before");
    assert!(
        docker.inspect_volume(&new_home).await.is_err(),
        "no new home is made while the old one is used"
    );
    platform.terminate(&sessions[1]).await.expect("terminate");

    // Once the new home exists it wins, whatever the old one holds.
    docker
        .create_volume(bollard::models::VolumeCreateRequest {
            name: Some(new_home.clone()),
            ..Default::default()
        })
        .await
        .expect("create the new home");
    let again = with_legacy(desktop_spec(&sessions[2]), &new_home, &old_home);
    platform.start(&again).await.expect("start");
    let listing = exec(&docker, &sessions[2], "ls /home/user").await;
    assert!(!listing.contains("kept.txt"), "{listing}");
}

#[tokio::test]
async fn an_old_home_of_another_user_is_not_taken() {
    let docker = docker().await;
    require_image(&docker).await;
    let agent = unique_agent("agent");
    // alice + dev-desktop and alice-dev + desktop had the same old name.
    let old_home = unique("streamspace-home-alice-dev-desktop");
    let new_home = unique("streamspace-home-u2-t2");
    let (alices, theirs) = (unique_session("alice"), unique_session("alicedev"));
    let mut cleanup = Cleanup::default();
    cleanup.session(&alices);
    cleanup.session(&theirs);
    cleanup.volume(&old_home);
    cleanup.volume(&new_home);
    let platform = platform(&agent).await;

    let mut alice = with_home(desktop_spec(&alices), &old_home);
    alice.template = "dev-desktop".into();
    leave_in_home(&platform, &alice, "secret.txt", "alice-only").await;
    let labels = docker
        .inspect_volume(&old_home)
        .await
        .expect("old home")
        .labels;
    assert_eq!(
        (labels.get(labels::USER), labels.get(labels::TEMPLATE)),
        (Some(&"alice".to_owned()), Some(&"dev-desktop".to_owned()))
    );

    let mut other = with_legacy(desktop_spec(&theirs), &new_home, &old_home);
    other.user = "alice-dev".into();
    other.template = "desktop".into();
    platform.start(&other).await.expect("start");
    let listing = exec(&docker, &theirs, "ls /home/user").await;
    assert!(!listing.contains("secret.txt"), "{listing}");
    let created = docker
        .inspect_volume(&new_home)
        .await
        .expect("new home made");
    let expected: HashMap<&str, &str> =
        HashMap::from([(labels::USER, "alice-dev"), (labels::TEMPLATE, "desktop")]);
    for (key, value) in expected {
        assert_eq!(created.labels.get(key).map(String::as_str), Some(value));
    }
}

/// The control plane adopts only what it sealed: the container keeps the
/// ids and the seal, and the inventory reports them.
#[tokio::test]
async fn the_inventory_reports_ids_and_the_seal() {
    let docker = docker().await;
    require_image(&docker).await;
    let session = unique_session("sealed");
    let mut cleanup = Cleanup::default();
    cleanup.session(&session);
    let platform = platform(&unique_agent("agent")).await;
    let mut spec = desktop_spec(&session);
    spec.user_id = "0190a1b2-0000-7000-8000-00000000000a".into();
    spec.template_id = "0190a1b2-0000-7000-8000-00000000000b".into();
    spec.seal = "0123456789abcdef0123456789abcdef".into();
    platform.start(&spec).await.expect("start");
    let inventory = platform.inventory().await.expect("inventory");
    let origin = inventory
        .iter()
        .find(|r| r.session_id == session)
        .and_then(|r| r.origin.clone())
        .expect("an origin");
    assert_eq!(origin.user, "alice");
    assert_eq!(origin.user_id.as_ref(), Some(&spec.user_id));
    assert_eq!(origin.template_id.as_ref(), Some(&spec.template_id));
    assert_eq!(origin.seal.as_deref(), Some(spec.seal.as_str()));
}
