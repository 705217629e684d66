//! The script that runs in the pod, run here by the host's `sh` and `tar`
//! against a temporary home: the mock apiserver cannot carry an exec's
//! streams (a WebSocket upgrade), so `tests/mock/files.rs` checks only the
//! exec's request; everything the exec runs is checked here.

use super::*;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use streamspace_protocol::files::FilesFolder;

fn target(home: &Path, path: &str) -> FileTarget {
    let folder = FilesFolder {
        home: Some(home.to_string_lossy().into_owned()),
        folder: "Downloads".into(),
    };
    FileTarget::new(&folder, path).expect("a valid target")
}

/// Runs the script as the exec would: exit code, stdout, stderr.
fn run(op: &str, target: &FileTarget, stdin: &[u8]) -> (i32, Vec<u8>, String) {
    let args = command(op, target);
    let mut child = Command::new(&args[0])
        .args(&args[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sh runs");
    // The script may refuse before it reads: a broken pipe is its answer.
    let _ = child.stdin.take().expect("stdin").write_all(stdin);
    let out = child.wait_with_output().expect("sh ends");
    let code = out.status.code().unwrap_or(-1);
    (
        code,
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn tar_of(name: &str, data: &[u8]) -> Vec<u8> {
    let mut out = tar::entry_header(
        name,
        EntryKind::File,
        data.len() as u64,
        Owner::default(),
        1_700_000_000,
    );
    out.extend_from_slice(data);
    out.resize(out.len() + tar::padding(data.len() as u64), 0);
    out.extend_from_slice(&tar::end_of_archive());
    out
}

#[test]
fn uploads_make_the_folder_and_listings_show_kinds_and_sizes() {
    let home = tempfile::tempdir().expect("home");
    let (code, out, _) = run("list", &target(home.path(), ""), b"");
    assert_eq!(
        (code, out.len()),
        (0, 0),
        "a folder not made yet lists as empty"
    );

    let (code, _, err) = run(
        "upload",
        &target(home.path(), "a b.txt"),
        &tar_of("a b.txt", b"hello"),
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(
        "upload",
        &target(home.path(), "sub/deep.txt"),
        &tar_of("deep.txt", b"x"),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read(home.path().join("Downloads/a b.txt")).expect("written"),
        b"hello"
    );
    assert_eq!(
        std::fs::read(home.path().join("Downloads/sub/deep.txt")).expect("written"),
        b"x"
    );
    std::os::unix::fs::symlink("/etc", home.path().join("Downloads/etc")).expect("link");

    let (code, out, err) = run("list", &target(home.path(), ""), b"");
    assert_eq!(code, 0, "{err}");
    let listing = parse_listing(&out);
    let seen: Vec<_> = listing
        .entries
        .iter()
        .map(|e| (e.name.as_str(), e.kind, e.size))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("a b.txt", FileKind::File, 5),
            ("etc", FileKind::Symlink, 0),
            ("sub", FileKind::Directory, 0)
        ]
    );
    assert_eq!(
        listing.entries[0].modified, 1_700_000_000_000,
        "tar kept the time"
    );
}

#[tokio::test]
async fn downloads_are_tar_of_the_one_file() {
    let home = tempfile::tempdir().expect("home");
    std::fs::create_dir(home.path().join("Downloads")).expect("folder");
    std::fs::write(home.path().join("Downloads/report.bin"), vec![9u8; 3000]).expect("file");
    let (code, out, err) = run("download", &target(home.path(), "report.bin"), b"");
    assert_eq!(code, 0, "{err}");
    let mut reader = TarReader::new(&out[..]);
    let entry = reader.next().await.expect("reads").expect("an entry");
    assert_eq!((entry.name.as_str(), entry.size), ("report.bin", 3000));
    let (code, _, _) = run("download", &target(home.path(), "missing"), b"");
    assert_eq!(code, 11);
    let (code, _, _) = run("download", &target(home.path(), ""), b"");
    assert_eq!(code, 12, "the folder itself is a directory");
}

#[test]
fn symbolic_links_are_refused_on_the_way_and_at_the_end() {
    let home = tempfile::tempdir().expect("home");
    let outside = tempfile::tempdir().expect("outside");
    std::fs::write(outside.path().join("secret"), b"s").expect("secret");
    std::fs::create_dir(home.path().join("Downloads")).expect("folder");
    std::os::unix::fs::symlink(outside.path(), home.path().join("Downloads/out")).expect("link");
    std::os::unix::fs::symlink(
        outside.path().join("secret"),
        home.path().join("Downloads/s"),
    )
    .expect("link");
    for (op, path) in [
        ("download", "out/secret"),
        ("download", "s"),
        ("list", "out"),
        ("upload", "out/new"),
    ] {
        let (code, _, err) = run(op, &target(home.path(), path), &tar_of("new", b"x"));
        assert_eq!(code, 10, "{op} {path}: {err}");
        assert!(err.contains("symbolic link"), "{err}");
    }
    assert!(
        !outside.path().join("new").exists(),
        "written through the link"
    );

    // The whole folder a link.
    std::fs::remove_dir_all(home.path().join("Downloads")).expect("removed");
    std::os::unix::fs::symlink(outside.path(), home.path().join("Downloads")).expect("link");
    let (code, _, _) = run("upload", &target(home.path(), "new"), &tar_of("new", b"x"));
    assert_eq!(code, 10);
    let (code, _, _) = run("list", &target(home.path(), ""), b"");
    assert_eq!(code, 10);
    assert!(
        !outside.path().join("new").exists(),
        "written through the link"
    );
}

#[test]
fn exit_codes_become_refusals() {
    assert_eq!(
        refusal(10, "x is a symbolic link\n").reason,
        FileRefusal::Escapes
    );
    assert_eq!(refusal(11, "gone").reason, FileRefusal::NotFound);
    assert_eq!(refusal(12, "dir").reason, FileRefusal::WrongKind);
    let other = refusal(2, "tar: write error");
    assert_eq!(other.reason, FileRefusal::Unavailable);
    assert!(other.message.contains("exit code 2"), "{}", other.message);
    // As the apiserver reports a failed exec.
    let status: Status = serde_json::from_value(serde_json::json!({
        "status": "Failure",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "10"}]}
    }))
    .expect("a status");
    assert_eq!(exit_code(&status), 10);
    let ok: Status =
        serde_json::from_value(serde_json::json!({"status": "Success"})).expect("a status");
    assert_eq!(exit_code(&ok), 0);
}
