//! `DockerPlatform` against the real Docker engine and the demo desktop image
//! (`images/desktop/build.sh`). Every test uses its own agent and session
//! ids and removes what it created, also when it fails.

mod support;

use bollard::models::ContainerStateStatusEnum;
use bollard::query_parameters::RemoveContainerOptionsBuilder;
use futures::StreamExt;
use std::time::Duration;
use streamspace_agent::{Platform, PlatformError};
use streamspace_docker::{DockerOptions, DockerPlatform, SessionRoute, container_name};
use streamspace_protocol::{Phase, SessionId, SessionOrigin, SessionReport, labels};
use support::*;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn session_lifecycle_on_a_real_engine() {
    let docker = docker().await;
    require_image(&docker).await;
    let agent = unique_agent("agent");
    let session = unique_session("life");
    let mut cleanup = Cleanup::default();
    cleanup.session(&session);
    let platform = platform(&agent).await;

    let report = platform
        .start(&desktop_spec(&session))
        .await
        .expect("start");
    assert_eq!(report, SessionReport::new(&session, Phase::Starting));

    // The container carries our labels, limits and a loopback port.
    let container = inspect(&docker, &session).await.expect("container exists");
    let container_labels = container
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .expect("labels");
    assert_eq!(container_labels[labels::SESSION_ID], session);
    assert_eq!(container_labels[labels::USER], "alice");
    assert_eq!(container_labels[labels::TEMPLATE], "desktop");
    assert_eq!(container_labels[labels::AGENT], agent);
    let host_config = container.host_config.clone().expect("host config");
    assert_eq!(host_config.nano_cpus, Some(500_000_000));
    assert_eq!(host_config.memory, Some(256 << 20));
    let env = container.config.as_ref().and_then(|c| c.env.clone());
    assert!(
        env.unwrap_or_default()
            .contains(&"VNC_GEOMETRY=1024x768".to_owned())
    );
    let bindings = eventually("a published VNC port", WAIT, || async {
        let c = inspect(&docker, &session).await?;
        c.network_settings?.ports?.get("5901/tcp")?.clone()
    })
    .await;
    assert!(
        bindings
            .iter()
            .all(|b| b.host_ip.as_deref() == Some("127.0.0.1")),
        "{bindings:?}"
    );
    assert!(bindings.iter().all(|b| b.host_port.as_deref() != Some("")));

    assert_eq!(&wait_for_banner(&platform, &session).await, RFB_BANNER);
    assert_eq!(
        platform.status(&session).await.expect("status").phase,
        Phase::Running
    );
    // Start is idempotent: a running session stays as it is.
    let again = platform
        .start(&desktop_spec(&session))
        .await
        .expect("start again");
    assert_eq!(again.phase, Phase::Running);

    // Hibernate stops the container and keeps it.
    let report = platform.hibernate(&session).await.expect("hibernate");
    assert_eq!(report.phase, Phase::Hibernated);
    let state = inspect(&docker, &session)
        .await
        .and_then(|c| c.state)
        .expect("hibernated container is kept");
    assert_eq!(state.status, Some(ContainerStateStatusEnum::EXITED));
    assert_eq!(
        platform.status(&session).await.expect("status").phase,
        Phase::Hibernated
    );
    let refused = match platform.connect(&session, VNC_PORT).await {
        Err(e) => e,
        Ok(_) => panic!("connect to a hibernated session must fail"),
    };
    assert!(
        matches!(&refused, PlatformError::Invalid(m) if m.contains("is not running (phase Hibernated)")),
        "{refused:?}"
    );
    // Hibernating twice is fine.
    let report = platform.hibernate(&session).await.expect("hibernate again");
    assert_eq!(report.phase, Phase::Hibernated);

    // Wake brings the desktop back.
    let report = platform.wake(&session).await.expect("wake");
    assert_eq!(report.phase, Phase::Waking);
    assert_eq!(&wait_for_banner(&platform, &session).await, RFB_BANNER);

    // Removed behind our back: the watcher says so, status no longer finds it.
    let mut watch = platform.watch();
    docker
        .remove_container(
            &container_name(&session),
            Some(RemoveContainerOptionsBuilder::new().force(true).build()),
        )
        .await
        .expect("docker rm -f");
    let removed = next_report(&mut watch, &session, |r| r.phase == Phase::Failed).await;
    let message = removed.message.expect("failure message");
    assert!(message.contains("removed outside StreamSpace"), "{message}");
    assert!(matches!(
        platform.status(&session).await,
        Err(PlatformError::NotFound(_))
    ));
    assert!(matches!(
        platform.wake(&session).await,
        Err(PlatformError::NotFound(_))
    ));
    assert!(matches!(
        platform.connect(&session, VNC_PORT).await,
        Err(PlatformError::NotFound(_))
    ));

    // Terminate of a missing session is idempotent.
    for _ in 0..2 {
        let report = platform.terminate(&session).await.expect("terminate");
        assert_eq!(report, SessionReport::new(&session, Phase::Terminated));
    }
}

/// Both routes to a session's port reach its server: the container's own
/// address (the default on a local engine), and the published port when
/// direct dialing is off (as where container addresses are unreachable).
#[tokio::test]
async fn sessions_are_reached_at_their_container_address_or_published_port() {
    let docker = docker().await;
    require_image(&docker).await;
    let agent = unique_agent("agent");
    let session = unique_session("route");
    let mut cleanup = Cleanup::default();
    cleanup.session(&session);
    let direct = platform(&agent).await;
    assert_eq!(direct.session_route(), SessionRoute::Undecided);
    direct.start(&desktop_spec(&session)).await.expect("start");
    assert_eq!(&wait_for_banner(&direct, &session).await, RFB_BANNER);
    assert_eq!(direct.session_route(), SessionRoute::ContainerAddress);

    let options = DockerOptions {
        dial_container_address: false,
        ..DockerOptions::default()
    };
    let published = DockerPlatform::connect(&agent, options)
        .await
        .expect("connects");
    assert_eq!(published.session_route(), SessionRoute::PublishedPort);
    assert_eq!(&wait_for_banner(&published, &session).await, RFB_BANNER);
    assert_eq!(published.session_route(), SessionRoute::PublishedPort);
}

#[tokio::test]
async fn terminate_removes_the_container_and_the_watcher_reports_it() {
    let docker = docker().await;
    require_image(&docker).await;
    let agent = unique_agent("agent");
    let session = unique_session("term");
    let mut cleanup = Cleanup::default();
    cleanup.session(&session);
    let platform = platform(&agent).await;

    platform
        .start(&desktop_spec(&session))
        .await
        .expect("start");
    let mut watch = platform.watch();
    let report = platform.terminate(&session).await.expect("terminate");
    assert_eq!(report.phase, Phase::Terminated);
    assert!(inspect(&docker, &session).await.is_none());
    next_report(&mut watch, &session, |r| r.phase == Phase::Terminated).await;
    let report = platform.terminate(&session).await.expect("terminate again");
    assert_eq!(report.phase, Phase::Terminated);
}

#[tokio::test]
async fn a_crashing_session_fails_with_its_exit_code_and_logs() {
    let docker = docker().await;
    require_image(&docker).await;
    let agent = unique_agent("agent");
    let session = unique_session("crash");
    let mut cleanup = Cleanup::default();
    cleanup.session(&session);
    let platform = platform(&agent).await;

    let mut spec = desktop_spec(&session);
    // Xvnc refuses this geometry and exits with code 1 at once.
    spec.env.insert("VNC_GEOMETRY".into(), "garbage".into());
    let mut watch = platform.watch();
    platform.start(&spec).await.expect("start");

    let failed = next_report(&mut watch, &session, |r| r.phase == Phase::Failed).await;
    let message = failed.message.expect("failure message");
    assert!(
        message.contains("exited by itself with exit code 1"),
        "{message}"
    );
    assert!(message.contains("Invalid geometry"), "{message}");
    let status = platform.status(&session).await.expect("status");
    assert_eq!(status.phase, Phase::Failed);
}

#[tokio::test]
async fn a_missing_image_is_invalid_and_says_how_to_fix_it() {
    let agent = unique_agent("agent");
    let session = unique_session("noimg");
    let mut cleanup = Cleanup::default();
    cleanup.session(&session);
    let platform = platform(&agent).await;

    let mut spec = desktop_spec(&session);
    spec.image = "streamspace/not-built:nope".into();
    let err = platform.start(&spec).await.expect_err("missing image");
    let PlatformError::Invalid(message) = err else {
        panic!("expected Invalid, got {err:?}");
    };
    assert!(
        message.starts_with("image \"streamspace/not-built:nope\" is not present on docker host "),
        "{message}"
    );
    assert!(message.contains("build or load it there"), "{message}");
    assert!(
        message.contains("no registry pull is attempted"),
        "{message}"
    );
    assert!(matches!(
        platform.status(&session).await,
        Err(PlatformError::NotFound(_))
    ));
}

#[tokio::test]
async fn a_restarted_agent_finds_its_sessions_and_only_its_own() {
    let docker = docker().await;
    require_image(&docker).await;
    let agent = unique_agent("agent");
    let other_agent = unique_agent("other");
    let (running, hibernated, foreign) = (
        unique_session("inv"),
        unique_session("inv"),
        unique_session("inv"),
    );
    let mut cleanup = Cleanup::default();
    for session in [&running, &hibernated, &foreign] {
        cleanup.session(session);
    }

    {
        let platform = platform(&agent).await;
        platform
            .start(&desktop_spec(&running))
            .await
            .expect("start");
        platform
            .start(&desktop_spec(&hibernated))
            .await
            .expect("start");
        wait_for_banner(&platform, &hibernated).await;
        platform.hibernate(&hibernated).await.expect("hibernate");
        let other = support::platform(&other_agent).await;
        other
            .start(&desktop_spec(&foreign))
            .await
            .expect("start foreign");
    }

    // A new platform with the same agent id has no memory of the stop: the
    // container's exit decides, and a clean stop is hibernation. Each report
    // names the user and template from the labels, for adoption.
    let restarted = platform(&agent).await;
    let inventory = restarted.inventory().await.expect("inventory");
    let mut expected = vec![
        SessionReport::new(&running, Phase::Running)
            .with_origin(SessionOrigin::named("alice", "desktop")),
        SessionReport::new(&hibernated, Phase::Hibernated)
            .with_message("container stopped (exit code 0)")
            .with_origin(SessionOrigin::named("alice", "desktop")),
    ];
    expected.sort_by(|a, b| a.session_id.cmp(&b.session_id));
    assert_eq!(inventory, expected);

    // Another agent's session with our naming is not ours to touch.
    assert!(matches!(
        restarted.status(&foreign).await,
        Err(PlatformError::NotFound(_))
    ));
    restarted.terminate(&foreign).await.expect("terminate");
    assert!(
        inspect(&docker, &foreign).await.is_some(),
        "terminate must not remove another agent's container"
    );
    let err = restarted
        .start(&desktop_spec(&foreign))
        .await
        .expect_err("start over another agent's container");
    assert!(
        matches!(&err, PlatformError::Invalid(m) if m.contains(other_agent.as_str())),
        "{err:?}"
    );

    let metrics = restarted.metrics().await.expect("metrics");
    assert_eq!(metrics.sessions_running, 1);
    assert!(metrics.memory_total_bytes > 0);
    let capacity = restarted.capacity().await.expect("capacity");
    assert_eq!(capacity.max_sessions, 50);
    assert!(capacity.cpu.is_some_and(|c| c.millicores() >= 1000));
    assert!(capacity.memory.is_some());
}

#[tokio::test]
async fn the_home_volume_survives_terminate_and_is_reused() {
    let docker = docker().await;
    require_image(&docker).await;
    let agent = unique_agent("agent");
    let volume = unique("streamspace-home");
    let (first, second) = (unique_session("home"), unique_session("home"));
    let mut cleanup = Cleanup::default();
    cleanup.session(&first);
    cleanup.session(&second);
    cleanup.volume(&volume);
    let platform = platform(&agent).await;

    platform
        .start(&with_home(desktop_spec(&first), &volume))
        .await
        .expect("start");
    let volume_info = docker
        .inspect_volume(&volume)
        .await
        .expect("volume created");
    assert_eq!(volume_info.labels[labels::USER], "alice");
    assert_eq!(volume_info.labels[labels::AGENT], agent);
    exec(&docker, &first, "echo kept > /home/user/note.txt").await;
    platform.terminate(&first).await.expect("terminate");
    assert!(inspect(&docker, &first).await.is_none());
    docker
        .inspect_volume(&volume)
        .await
        .expect("volume kept after terminate");

    platform
        .start(&with_home(desktop_spec(&second), &volume))
        .await
        .expect("start again");
    let text = exec(&docker, &second, "cat /home/user/note.txt").await;
    assert_eq!(text.trim(), "kept");
    platform.terminate(&second).await.expect("terminate");
}

/// The next report for `session` that satisfies `wanted`, skipping others.
async fn next_report(
    watch: &mut futures::stream::BoxStream<'static, SessionReport>,
    session: &SessionId,
    wanted: impl Fn(&SessionReport) -> bool,
) -> SessionReport {
    let find = async {
        while let Some(report) = watch.next().await {
            if report.session_id == *session && wanted(&report) {
                return report;
            }
        }
        panic!("the watch stream ended before the expected report for {session}");
    };
    tokio::time::timeout(WAIT, find)
        .await
        .unwrap_or_else(|_| panic!("no matching watch report for {session} within {WAIT:?}"))
}
