//! File transfer's requests to the apiserver: the session's pod is found,
//! then one exec of the files script in its `session` container, with
//! stdin only for an upload. The mock cannot upgrade a connection to the
//! exec's streams (a WebSocket), so it refuses the exec the way an
//! apiserver without `pods/exec` rights does, and the test checks that the
//! refusal reaches the user; the script itself is tested in
//! `src/files_tests.rs` with a real shell and tar.

use crate::apiserver::*;
use streamspace_agent::Platform;
use streamspace_agent::files::{FileTarget, Upload};
use streamspace_protocol::files::{FileRefusal, FilesFolder};

const DEPLOYMENT_PATH: &str = "/apis/apps/v1/namespaces/streamspace/deployments/streamspace-0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
const POD_EXEC: &str = "/api/v1/namespaces/streamspace/pods/streamspace-0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b-6d9f7c8b5-x7k2p/exec?";

fn target(path: &str) -> FileTarget {
    let folder = FilesFolder {
        home: Some("/home/user".into()),
        folder: "Downloads".into(),
    };
    FileTarget::new(&folder, path).expect("a valid target")
}

/// Answers the pod lookup, then returns the exec request's URI after
/// refusing it as an apiserver without `pods/exec` rights would.
async fn refuse_exec(server: &mut ApiServer) -> String {
    server
        .expect("GET", DEPLOYMENT_PATH)
        .await
        .respond(200, deployment_json(1, 1));
    server
        .expect("GET", &format!("{PODS}?{SESSION_SELECTOR}"))
        .await
        .respond(200, list("PodList", vec![pod("ready")]));
    let call = server.next().await;
    let uri = call.uri.clone();
    assert_eq!(call.method, "GET", "{uri}");
    call.fail(
        403,
        "Forbidden",
        "pods \"x\" is forbidden: cannot create resource \"pods/exec\"",
    );
    uri
}

#[tokio::test]
async fn a_listing_execs_the_script_in_the_session_container() {
    let (platform, mut server) = platform();
    let (listed, uri) = within(futures::future::join(
        platform.list_files(&session_id(), &target("sub")),
        refuse_exec(&mut server),
    ))
    .await;
    assert!(uri.starts_with(POD_EXEC), "{uri}");
    for part in [
        "command=sh",
        "command=-c",
        "command=list",
        "command=%2Fhome%2Fuser",
        "command=Downloads",
        "command=sub",
        "container=session",
        "stdout=true",
        "stderr=true",
    ] {
        assert!(uri.contains(part), "{part} missing from {uri}");
    }
    assert!(
        !uri.contains("stdin=true"),
        "a listing sends nothing: {uri}"
    );
    let refused = listed.expect_err("the exec was refused");
    assert_eq!(refused.reason, FileRefusal::Unavailable);
    assert!(refused.message.contains("exec"), "{}", refused.message);
}

#[tokio::test]
async fn an_upload_execs_with_stdin_and_a_download_without() {
    let (platform, mut server) = platform();
    let spool = tempfile::tempfile().expect("spool");
    let upload = Upload {
        size: 0,
        file: tokio::fs::File::from_std(spool),
    };
    let (written, uri) = within(futures::future::join(
        platform.write_file(&session_id(), &target("a.txt"), upload),
        refuse_exec(&mut server),
    ))
    .await;
    assert!(
        uri.contains("command=upload") && uri.contains("stdin=true"),
        "{uri}"
    );
    assert_eq!(
        written.expect_err("refused").reason,
        FileRefusal::Unavailable
    );

    let (read, uri) = within(futures::future::join(
        platform.read_file(&session_id(), &target("a.txt")),
        refuse_exec(&mut server),
    ))
    .await;
    assert!(
        uri.contains("command=download") && !uri.contains("stdin=true"),
        "{uri}"
    );
    assert!(read.is_err());
}
