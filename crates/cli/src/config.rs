//! The stored login of `streamspace login`: `{server, token}` as YAML in
//! `$STREAMSPACE_CONFIG`, else `~/.config/streamspace/config.yaml`
//! (`$XDG_CONFIG_HOME` if set), readable by its owner only (0600).

use crate::failure::{AUTH, Failure, USAGE};
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use url::Url;

/// The largest config file read: it holds a URL and a token.
const MAX_CONFIG_BYTES: u64 = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredLogin {
    pub server: Url,
    pub token: String,
}

/// Where the stored login lives.
pub fn path() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("STREAMSPACE_CONFIG").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|p| !p.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => std::env::var_os("HOME")
            .filter(|p| !p.is_empty())
            .map(|home| PathBuf::from(home).join(".config"))
            .ok_or_else(|| {
                Failure::new(
                    USAGE,
                    "neither STREAMSPACE_CONFIG nor HOME is set: cannot tell where the login is stored",
                )
            })?,
    };
    Ok(base.join("streamspace").join("config.yaml"))
}

/// The stored login, or `None` if there is none.
pub fn load() -> anyhow::Result<Option<StoredLogin>> {
    let path = path()?;
    let metadata = match std::fs::metadata(&path) {
        Ok(metadata) => metadata,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).with_context(|| format!("cannot read {}", path.display())),
    };
    if metadata.len() > MAX_CONFIG_BYTES {
        anyhow::bail!("{} is too large to be a StreamSpace login", path.display());
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let login = serde_saphyr::from_str(&text).map_err(|err| {
        Failure::new(
            AUTH,
            format!(
                "{} is not a StreamSpace login ({err}): run `streamspace login --server URL` again",
                path.display()
            ),
        )
    })?;
    Ok(Some(login))
}

/// Stores `login`, replacing any other, readable by the owner only. The
/// file is written beside the old one and renamed over it, so a reader
/// never sees half a file, and it is 0600 from its first byte.
pub fn save(login: &StoredLogin) -> anyhow::Result<PathBuf> {
    let path = path()?;
    let dir = path.parent().unwrap_or(Path::new("."));
    create_private_dir(dir)?;
    let text = serde_saphyr::to_string(login).context("cannot write the login as YAML")?;
    let temporary = dir.join(format!(".config.yaml.{}", std::process::id()));
    let mut file = private_file(&temporary)?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    std::fs::rename(&temporary, &path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Forgets the stored login; whether there was one.
pub fn remove() -> anyhow::Result<bool> {
    let path = path()?;
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(err).with_context(|| format!("cannot remove {}", path.display())),
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

#[cfg(unix)]
fn private_file(path: &Path) -> anyhow::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))
}

#[cfg(not(unix))]
fn private_file(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))
}
