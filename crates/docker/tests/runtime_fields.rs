//! What real images need, on the real Docker engine: `/dev/shm` of the
//! template's size, the template's user, a read-only root with writable
//! scratch space and home, shared volumes (read-only by default, a missing
//! one named), and GPU sessions on an engine that cannot hand out GPUs
//! failing with a message instead of hanging.

mod support;

use bollard::models::VolumeCreateRequest;
use std::collections::HashMap;
use streamspace_agent::{Platform, PlatformError};
use streamspace_docker::{DockerOptions, DockerPlatform};
use streamspace_protocol::{Resources, SessionId, SessionSpec, SharedVolume, labels};
use support::*;

/// Starts `spec` and waits until its desktop answers, so that the checks
/// below run in a container that really started as configured.
async fn started(platform: &DockerPlatform, spec: &SessionSpec) {
    platform.start(spec).await.expect("start");
    assert_eq!(
        &wait_for_banner(platform, &spec.session_id).await,
        RFB_BANNER
    );
}

fn shared(source: &str, path: &str, read_only: bool) -> SharedVolume {
    SharedVolume {
        source: source.to_owned(),
        path: path.to_owned(),
        read_only,
    }
}

#[tokio::test]
async fn shm_user_and_a_read_only_root_are_applied() {
    let docker = docker().await;
    require_image(&docker).await;
    let session = unique_session("runtime");
    let home = unique("streamspace-test-home");
    let mut cleanup = Cleanup::default();
    cleanup.session(&session);
    cleanup.volume(&home);
    let platform = platform(&unique_agent("agent")).await;
    let mut spec = with_home(desktop_spec(&session), &home);
    spec.shm_size = Some("256Mi".parse().expect("memory"));
    // The image's uid (its home is that user's) with another group: both
    // show whether the platform set the user.
    spec.security.user = Some("1000:1234".into());
    spec.security.read_only_root_filesystem = true;
    started(&platform, &spec).await;

    let shm = exec(&docker, &session, "df -k /dev/shm | tail -n 1").await;
    assert!(shm.split_whitespace().nth(1) == Some("262144"), "{shm}");
    let gid = exec(&docker, &session, "grep Gid /proc/1/status").await;
    assert!(gid.split_whitespace().nth(1) == Some("1234"), "{gid}");
    let writes = exec(
        &docker,
        &session,
        "for p in /etc/x /usr/x /tmp/x /home/user/x; do touch $p 2>/dev/null && echo $p ok || echo $p refused; done",
    )
    .await;
    for expected in [
        "/etc/x refused",
        "/usr/x refused",
        "/tmp/x ok",
        "/home/user/x ok",
    ] {
        assert!(writes.contains(expected), "{expected}: {writes}");
    }
    platform.terminate(&session).await.expect("terminate");
}

#[tokio::test]
async fn shared_volumes_are_mounted_read_only_unless_said() {
    let docker = docker().await;
    require_image(&docker).await;
    let session = unique_session("shared");
    let (datasets, scratch) = (unique("datasets"), unique("scratch"));
    let mut cleanup = Cleanup::default();
    cleanup.session(&session);
    for volume in [&datasets, &scratch] {
        cleanup.volume(volume);
        docker
            .create_volume(VolumeCreateRequest {
                name: Some(volume.clone()),
                ..Default::default()
            })
            .await
            .expect("create volume");
    }
    let platform = platform(&unique_agent("agent")).await;
    let mut spec = desktop_spec(&session);
    spec.volumes = vec![
        shared(&datasets, "/data", true),
        shared(&scratch, "/scratch", false),
    ];
    started(&platform, &spec).await;
    // The mount options, not a write: a fresh volume is root's, and the
    // session's user could not write to it even read-write.
    let mount_options = |path: &'static str| {
        let (docker, session) = (docker.clone(), session.clone());
        async move {
            let script = format!("awk '$5 == \"{path}\" {{print $6}}' /proc/self/mountinfo");
            exec(&docker, &session, &script).await
        }
    };
    let data = mount_options("/data").await;
    assert!(data.starts_with("ro,"), "{data}");
    let scratch = mount_options("/scratch").await;
    assert!(scratch.starts_with("rw,"), "{scratch}");
    let write = exec(&docker, &session, "touch /data/x").await;
    assert!(write.contains("Read-only file system"), "{write}");
    platform.terminate(&session).await.expect("terminate");
}

#[tokio::test]
async fn a_missing_shared_volume_fails_with_its_name_and_is_not_created() {
    let docker = docker().await;
    require_image(&docker).await;
    let session = unique_session("missing");
    let missing = unique("no-such-datasets");
    let mut cleanup = Cleanup::default();
    cleanup.session(&session);
    cleanup.volume(&missing);
    let platform = platform(&unique_agent("agent")).await;
    let mut spec = desktop_spec(&session);
    spec.volumes = vec![shared(&missing, "/data", true)];
    let err = platform.start(&spec).await.expect_err("must fail");
    let PlatformError::Invalid(message) = err else {
        panic!("expected Invalid, got {err:?}");
    };
    assert!(message.contains(&missing), "{message}");
    assert!(message.contains("does not exist"), "{message}");
    assert!(
        docker.inspect_volume(&missing).await.is_err(),
        "not created"
    );
    assert!(inspect(&docker, &session).await.is_none(), "no container");
}

#[tokio::test]
async fn a_home_is_never_mounted_as_a_shared_volume() {
    let docker = docker().await;
    require_image(&docker).await;
    let session = unique_session("homes");
    let home = unique("someones-home");
    let mut cleanup = Cleanup::default();
    cleanup.session(&session);
    cleanup.volume(&home);
    docker
        .create_volume(VolumeCreateRequest {
            name: Some(home.clone()),
            labels: Some(HashMap::from([(labels::USER.to_owned(), "bob".to_owned())])),
            ..Default::default()
        })
        .await
        .expect("create volume");
    let platform = platform(&unique_agent("agent")).await;
    let mut spec = desktop_spec(&session);
    spec.volumes = vec![shared(&home, "/data", true)];
    let err = platform.start(&spec).await.expect_err("must be refused");
    assert!(err.to_string().contains("is a StreamSpace home"), "{err}");
}

fn gpu_spec(session: &SessionId, gpus: u32) -> SessionSpec {
    desktop_spec(session).with_resources(Resources {
        gpu: Some(gpus),
        ..Resources::default()
    })
}

/// This engine has no NVIDIA Container Toolkit (CI never has a GPU): an
/// agent told it has one reports it, and a session asking for it fails at
/// once with what to do, and again the same way if started again.
#[tokio::test]
async fn a_gpu_session_on_an_engine_without_the_toolkit_fails_with_a_reason() {
    let docker = docker().await;
    require_image(&docker).await;
    let runtimes = docker.info().await.expect("info").runtimes;
    assert!(
        !runtimes.unwrap_or_default().contains_key("nvidia"),
        "this test expects an engine without the nvidia runtime"
    );
    let options = DockerOptions {
        gpus: Some(1),
        gpu_model: Some("Fake GPU".into()),
        ..DockerOptions::default()
    };
    let gpu_agent = DockerPlatform::connect(&unique_agent("gpu-agent"), options)
        .await
        .expect("connects");
    let capacity = gpu_agent.capacity().await.expect("capacity");
    assert_eq!(capacity.gpus, 1);
    assert_eq!(capacity.gpu_model.as_deref(), Some("Fake GPU"));
    assert!(gpu_agent.capabilities().gpu);

    let (one, two) = (unique_session("gpu"), unique_session("gpu"));
    let mut cleanup = Cleanup::default();
    cleanup.session(&one);
    cleanup.session(&two);
    let err = gpu_agent
        .start(&gpu_spec(&one, 1))
        .await
        .expect_err("no toolkit");
    let PlatformError::Invalid(message) = err else {
        panic!("expected Invalid (not worth retrying), got {err:?}");
    };
    assert!(message.contains("cannot give containers GPUs"), "{message}");
    assert!(message.contains("NVIDIA Container Toolkit"), "{message}");
    // Its container stays, as one that could not start, and says why.
    let status = gpu_agent.status(&one).await.expect("status");
    assert_eq!(status.phase, streamspace_protocol::Phase::Failed);
    let message = status.message.unwrap_or_default();
    assert!(message.contains("NVIDIA Container Toolkit"), "{message}");
    // Started again, it fails the same way, not as an engine outage.
    let again = gpu_agent
        .start(&gpu_spec(&one, 1))
        .await
        .expect_err("again");
    assert!(matches!(again, PlatformError::Invalid(_)), "{again:?}");
    gpu_agent.terminate(&one).await.expect("terminate");

    let err = gpu_agent
        .start(&gpu_spec(&two, 2))
        .await
        .expect_err("too many");
    assert!(err.to_string().contains("this agent has 1"), "{err}");
    let plain = platform(&unique_agent("agent")).await;
    assert_eq!(plain.capacity().await.expect("capacity").gpus, 0);
    let err = plain.start(&gpu_spec(&two, 1)).await.expect_err("no GPUs");
    assert!(err.to_string().contains("this agent has 0"), "{err}");
}
