//! Secrets sealed at rest: what the control plane must read back in clear,
//! so cannot hash like a password or a token, but a database dump must not
//! reveal. Today: TOTP secrets (`auth/mfa`) and templates' secrets (their
//! `secret_env` values and registry passwords, `store/secrets.rs`), also
//! where they are copied into sessions and start commands.
//!
//! Each value is encrypted (ChaCha20-Poly1305, a random nonce each time)
//! under a 256-bit key that lives in a file of its own and never in the
//! database: `DATA_DIR/mfa-key` (0600; the name is older than its second
//! use and stays, so existing installations keep their key), or the file
//! `--mfa-key-file` (alias `--secrets-key-file`) names. A database dump, a
//! backup or a read-only SQL injection then yields no usable secret; only
//! someone who also reads the control plane's data directory can open them.
//!
//! Every value is sealed for a *binding*, the associated data: a string
//! naming what it belongs to (`streamspace-totp:{user id}`,
//! `streamspace-template-secrets:{template id}`, …). A sealed value copied
//! onto another row does not open.
//!
//! Each sealed value names the key it was sealed under (the first bytes of
//! the key's SHA-256), so a replica started with another key says so
//! instead of failing obscurely. PostgreSQL replicas must share the file
//! (docs/MFA.md, docs/SECURITY.md).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The key file's name in the data directory.
pub const KEY_FILE: &str = "mfa-key";
/// The format of sealed values: `v1.<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>`.
const VERSION: &str = "v1";

/// Why a sealed secret could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(
        "it was sealed under key {sealed}, but this control plane has key {ours} ({file}): \
         start every replica with the key file it was sealed under (the data directory's \
         {KEY_FILE}, or --mfa-key-file), e.g. restored from the backup"
    )]
    OtherKey {
        sealed: String,
        ours: String,
        file: String,
    },
    #[error(
        "it is corrupt, was tampered with, or was copied from another record: \
         it cannot be opened under any key"
    )]
    Corrupt,
}

/// The key that seals secrets at rest.
pub struct Vault {
    key: LessSafeKey,
    key_id: String,
    file: PathBuf,
}

impl Vault {
    /// The key in `key_file` (`--mfa-key-file`, which must exist: replicas
    /// share one key, so none may make its own), else in
    /// `data_dir/mfa-key`, created (random, 0600) if missing.
    pub fn load(data_dir: &Path, key_file: Option<&Path>) -> anyhow::Result<Self> {
        let file = match key_file {
            Some(given) => given.to_owned(),
            None => {
                let file = data_dir.join(KEY_FILE);
                if !file.exists() {
                    create_key_file(&file)?;
                }
                crate::private::ensure_private_file(&file)?;
                file
            }
        };
        let text = std::fs::read_to_string(&file)
            .map_err(|e| anyhow::anyhow!("cannot read the secrets key {}: {e}", file.display()))?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut bytes).map_err(|e| {
            anyhow::anyhow!(
                "{} must hold 64 hex digits (a 256-bit key, e.g. from `openssl rand -hex 32`): {e}",
                file.display()
            )
        })?;
        Ok(Self::from_key(bytes, file))
    }

    fn from_key(bytes: [u8; 32], file: PathBuf) -> Self {
        let key_id = hex::encode(&Sha256::digest(bytes)[..4]);
        // A 32-byte key is always a valid ChaCha20-Poly1305 key.
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, &bytes).expect("a 256-bit key");
        Vault {
            key: LessSafeKey::new(unbound),
            key_id,
            file,
        }
    }

    /// `secret` sealed for `binding` (what it belongs to).
    pub fn seal(&self, binding: &str, secret: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("the operating system's random source failed");
        let mut data = secret.to_vec();
        // Sealing into a Vec cannot fail but for absurd lengths.
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(binding.as_bytes()),
                &mut data,
            )
            .expect("sealing a short secret");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        format!("{VERSION}.{}.{}", self.key_id, URL_SAFE_NO_PAD.encode(out))
    }

    /// The secret `sealed` holds, if it was sealed for `binding` under this
    /// key.
    pub fn open(&self, binding: &str, sealed: &str) -> Result<Vec<u8>, VaultError> {
        let mut parts = sealed.splitn(3, '.');
        let (Some(VERSION), Some(key_id), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(VaultError::Corrupt);
        };
        if key_id != self.key_id {
            return Err(VaultError::OtherKey {
                sealed: key_id.to_owned(),
                ours: self.key_id.clone(),
                file: self.file.display().to_string(),
            });
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| VaultError::Corrupt)?;
        if bytes.len() < NONCE_LEN {
            return Err(VaultError::Corrupt);
        }
        let (nonce, rest) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| VaultError::Corrupt)?;
        let mut data = rest.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(binding.as_bytes()), &mut data)
            .map_err(|_| VaultError::Corrupt)?;
        Ok(plain.to_vec())
    }
}

/// Writes a new random key, failing rather than overwriting one.
fn create_key_file(file: &Path) -> anyhow::Result<()> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).expect("the operating system's random source failed");
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)?;
    writeln!(out, "{}", hex::encode(key))?;
    out.sync_all()?;
    tracing::info!(file = %file.display(), "created the key that seals secrets at rest");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault(byte: u8) -> Vault {
        Vault::from_key([byte; 32], PathBuf::from("/data/mfa-key"))
    }

    #[test]
    fn sealed_secrets_open_only_for_their_binding_and_key() {
        let alice = "streamspace-totp:alice-id";
        let sealed = vault(1).seal(alice, b"twenty bytes secret!");
        assert!(!sealed.contains("twenty"), "{sealed}");
        assert_eq!(
            vault(1).open(alice, &sealed).expect("opens"),
            b"twenty bytes secret!"
        );
        assert!(matches!(
            vault(1).open("streamspace-totp:bob-id", &sealed),
            Err(VaultError::Corrupt)
        ));
        let other = vault(2).open(alice, &sealed).expect_err("another key");
        assert!(matches!(other, VaultError::OtherKey { .. }));
        assert!(other.to_string().contains("mfa-key"), "{other}");
    }

    #[test]
    fn each_seal_is_fresh_and_tampering_is_caught() {
        let alice = "streamspace-totp:alice-id";
        let v = vault(3);
        let (a, b) = (v.seal(alice, b"same"), v.seal(alice, b"same"));
        assert_ne!(a, b, "a fresh nonce each time");
        let mut tampered = a.clone().into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).expect("ascii");
        assert!(matches!(v.open(alice, &tampered), Err(VaultError::Corrupt)));
        assert!(matches!(v.open(alice, "v1"), Err(VaultError::Corrupt)));
        assert!(matches!(v.open(alice, "plain"), Err(VaultError::Corrupt)));
    }

    #[test]
    fn the_key_file_is_created_once_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("dir");
        let alice = "streamspace-totp:alice-id";
        let sealed = Vault::load(dir.path(), None)
            .expect("created")
            .seal(alice, b"x");
        let file = dir.path().join(KEY_FILE);
        let mode = std::fs::metadata(&file).expect("file").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = Vault::load(dir.path(), None).expect("loaded");
        assert_eq!(again.open(alice, &sealed).expect("same key"), b"x");
        std::fs::write(&file, "not hex").expect("write");
        let err = Vault::load(dir.path(), None).err().expect("refused");
        assert!(err.to_string().contains("64 hex digits"), "{err}");
    }

    /// A given key file is what replicas share: read, never made, and its
    /// key opens what another data directory's vault sealed with it.
    #[test]
    fn a_given_key_file_is_shared_and_never_made() {
        let (one, two, keys) = (
            tempfile::tempdir(),
            tempfile::tempdir(),
            tempfile::tempdir(),
        );
        let (one, two, keys) = (one.expect("dir"), two.expect("dir"), keys.expect("dir"));
        let file = keys.path().join("shared-key");
        let missing = Vault::load(one.path(), Some(&file)).err().expect("refused");
        assert!(
            missing.to_string().contains("cannot read the secrets key"),
            "{missing}"
        );
        assert!(!file.exists(), "a given key file is never made");
        std::fs::write(&file, format!("{}\n", "ab".repeat(32))).expect("write");
        let alice = "streamspace-totp:alice-id";
        let sealed = Vault::load(one.path(), Some(&file))
            .expect("loaded")
            .seal(alice, b"x");
        let other = Vault::load(two.path(), Some(&file)).expect("loaded");
        assert_eq!(other.open(alice, &sealed).expect("the same key"), b"x");
        assert!(!one.path().join(KEY_FILE).exists(), "no key of its own");
    }
}
