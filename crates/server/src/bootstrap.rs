//! First start: create the `admin` user so someone can log in.

use crate::auth::{password, secrets};
use crate::store::{Role, Store};
use crate::validate::check_password;
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
        Some(p) => {
            check_password(p).map_err(|e| {
                anyhow::anyhow!(
                    "STREAMSPACE_ADMIN_PASSWORD is not a usable password: it {}",
                    e.message
                )
            })?;
            (p.to_owned(), false)
        }
        None => (secrets::generate_password(), true),
    };
    // The file first: if it cannot be written, no admin exists whose
    // password nobody knows.
    let generated = if generated {
        let file = data_dir.join("admin-password");
        write_private(&file, &password)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", file.display()))?;
        Some((password.clone(), file))
    } else {
        None
    };
    let hash = password::hash(password).await.map_err(anyhow::Error::msg)?;
    store.create_user(ADMIN, &hash, Role::Admin).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    async fn store(dir: &Path) -> Store {
        Store::connect(&Store::sqlite_url(dir))
            .await
            .expect("store")
    }

    #[tokio::test]
    async fn a_short_configured_password_creates_no_admin() {
        let dir = tempfile::tempdir().expect("dir");
        let store = store(dir.path()).await;
        let err = ensure_admin(&store, dir.path(), Some("short"))
            .await
            .expect_err("refused");
        assert!(err.to_string().contains("at least 8"), "{err}");
        assert_eq!(store.count_users().await.expect("count"), 0);
    }

    #[tokio::test]
    async fn the_generated_password_is_written_before_the_admin_exists() {
        let dir = tempfile::tempdir().expect("dir");
        let store = store(dir.path()).await;
        // A directory where the file should be: the file cannot be written.
        std::fs::create_dir(dir.path().join("admin-password")).expect("blocker");
        assert!(ensure_admin(&store, dir.path(), None).await.is_err());
        assert_eq!(
            store.count_users().await.expect("count"),
            0,
            "no unreachable admin"
        );
        std::fs::remove_dir(dir.path().join("admin-password")).expect("unblock");
        let made = ensure_admin(&store, dir.path(), None).await.expect("admin");
        let (password, file) = made.and_then(|m| m.generated).expect("generated");
        let saved = std::fs::read_to_string(file).expect("saved");
        assert_eq!(saved.trim(), password);
    }
}
