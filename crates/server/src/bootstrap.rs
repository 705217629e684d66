//! First start: create the `admin` user so someone can log in.

use crate::auth::{password, secrets};
use crate::store::{Role, Store};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const ADMIN: &str = "admin";

/// How the first admin was created, for the CLI to tell the operator.
#[derive(Debug, Clone)]
pub struct AdminBootstrap {
    pub username: String,
    /// The generated password and the file holding it; `None` when the
    /// password came from `STREAMSPACE_ADMIN_PASSWORD`.
    pub generated: Option<(String, PathBuf)>,
}

/// Creates `admin` if there are no users yet.
pub async fn ensure_admin(
    store: &Store,
    data_dir: &Path,
    configured: Option<&str>,
) -> anyhow::Result<Option<AdminBootstrap>> {
    if store.count_users().await? > 0 {
        return Ok(None);
    }
    let (password, generated) = match configured {
        Some(p) => (p.to_owned(), false),
        None => (secrets::generate_password(), true),
    };
    let hash = password::hash(password.clone())
        .await
        .map_err(anyhow::Error::msg)?;
    store.create_user(ADMIN, &hash, Role::Admin).await?;
    let generated = if generated {
        let file = data_dir.join("admin-password");
        write_private(&file, &password)?;
        Some((password, file))
    } else {
        None
    };
    Ok(Some(AdminBootstrap {
        username: ADMIN.to_owned(),
        generated,
    }))
}

/// Writes a file only its owner can read (0600), replacing any old one.
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())?;
    file.write_all(b"\n")
}
