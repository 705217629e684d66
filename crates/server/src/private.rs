//! The data directory and the SQLite database hold password hashes, token
//! hashes, the seal key and session specs (with template secrets): only the
//! user the control plane runs as may read them, whatever the umask.

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and missing parents) as 0700, or narrows an existing one
/// that others could read.
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    narrow(dir, DIR_MODE)
}

/// Creates `file` empty as 0600 if it does not exist, or narrows it. SQLite
/// gives its -wal and -shm files the database file's mode.
pub fn ensure_private_file(file: &Path) -> io::Result<()> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(FILE_MODE)
        .open(file)?;
    narrow(file, FILE_MODE)
}

fn narrow(path: &Path, mode: u32) -> io::Result<()> {
    let current = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if current & !mode != 0 {
        tracing::warn!(
            path = %path.display(),
            from = format!("{current:o}"),
            to = format!("{mode:o}"),
            "narrowing permissions: others could read StreamSpace's data"
        );
        std::fs::set_permissions(path, Permissions::from_mode(mode))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn created_private_and_narrowed_when_open() {
        let root = tempfile::tempdir().expect("dir");
        let dir = root.path().join("data/nested");
        ensure_private_dir(&dir).expect("created");
        assert_eq!(mode(&dir), 0o700);
        let file = dir.join("db");
        ensure_private_file(&file).expect("created");
        assert_eq!(mode(&file), 0o600);

        std::fs::set_permissions(&dir, Permissions::from_mode(0o755)).expect("chmod");
        std::fs::set_permissions(&file, Permissions::from_mode(0o644)).expect("chmod");
        std::fs::write(&file, b"kept").expect("write");
        ensure_private_dir(&dir).expect("narrowed");
        ensure_private_file(&file).expect("narrowed");
        assert_eq!((mode(&dir), mode(&file)), (0o700, 0o600));
        assert_eq!(
            std::fs::read(&file).expect("read"),
            b"kept",
            "contents kept"
        );
    }
}
