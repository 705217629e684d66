//! The web UI (`ui/dist`, built by `npm run build` in `ui/`) is embedded into
//! the binary. When it has not been built, an empty directory lets the server
//! compile; it then answers `/` with a message saying how to build the UI.

fn main() {
    let dist = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ui/dist");
    if !dist.exists() {
        let _ = std::fs::create_dir_all(&dist);
    }
    println!("cargo:rerun-if-changed=../../ui/dist");
}
