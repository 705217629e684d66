//! `ui/openapi.json` is exactly what `streamspace openapi` prints. The web
//! UI's TypeScript types are generated from that file and its build
//! type-checks against them, so a stale copy would let the UI drift from the
//! API unnoticed.

use std::path::Path;
use std::process::Command;

const REGENERATE: &str = "run scripts/openapi.sh (it writes `streamspace openapi` to \
    ui/openapi.json and regenerates ui/src/api-schema.ts from it), then commit both";

#[test]
fn the_ui_copy_of_the_openapi_document_is_current() {
    let output = Command::new(env!("CARGO_BIN_EXE_streamspace"))
        .arg("openapi")
        .output()
        .expect("run streamspace openapi");
    assert!(
        output.status.success(),
        "streamspace openapi failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8(output.stdout).expect("the document is UTF-8");
    assert!(printed.starts_with('{'), "not JSON: {printed:.200}");

    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ui/openapi.json");
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}: {REGENERATE}", path.display()));
    if printed != committed {
        // The first line that differs, not two 130 KB documents.
        let (line, ours, theirs) = printed
            .lines()
            .zip(committed.lines())
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .map(|(i, (a, b))| (i + 1, a, b))
            .unwrap_or((
                printed.lines().count().min(committed.lines().count()) + 1,
                "(end or line endings)",
                "(end or line endings)",
            ));
        panic!(
            "ui/openapi.json is not what the server produces: {REGENERATE}.\n\
             First difference, line {line}:\n  server:          {ours}\n  ui/openapi.json: {theirs}"
        );
    }
}
