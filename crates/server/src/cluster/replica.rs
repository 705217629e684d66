//! Who this replica is among the control plane's replicas: its id, where
//! the others reach it, and the secret it proves itself with. A leaf, so
//! the application state can hold it.

use url::Url;

/// A replica's id: 16 hex digits, short because tunnel ids carry it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct ReplicaId(String);

impl ReplicaId {
    /// Hex digits in an id.
    pub const LEN: usize = 16;

    pub fn new() -> Self {
        let uuid = uuid::Uuid::new_v4().simple().to_string();
        Self(uuid[..Self::LEN].to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for ReplicaId {
    fn default() -> Self {
        Self::new()
    }
}

impl From<String> for ReplicaId {
    fn from(id: String) -> Self {
        Self(id)
    }
}

impl std::fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// This process as a replica. A new id and secret on every start: a
/// restarted replica is a new one, and the old row expires.
#[derive(Debug)]
pub struct Replica {
    pub id: ReplicaId,
    /// Proves this replica to the others (stored only as its SHA-256).
    pub secret: String,
    /// Where the other replicas reach this one (`--internal-url`).
    pub internal_url: Url,
    /// Whether other replicas can exist: only on PostgreSQL.
    pub shared: bool,
}
