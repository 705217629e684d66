//! Seals: how the control plane recognises sessions it placed itself.
//!
//! An agent's inventory lists what it finds on its platform, with the
//! owner and template its labels name. Labels are whatever the host says,
//! so a compromised host could put a fake "Running" desktop (an attacker's
//! VNC server) into anyone's list just by labelling a container. When the
//! control plane places a session it therefore seals it: an HMAC-SHA256,
//! under a key only the control plane holds, over the session, user,
//! template and agent ids, which the platform keeps in a label. A session
//! with no record is adopted only if its seal verifies for the agent that
//! reports it: a host can repeat seals it was given, for its own sessions,
//! but cannot make new ones or move them to other agents.
//!
//! The key is generated on first start and kept in the `settings` table,
//! so every replica shares it and a restored database still recognises
//! what it placed.

use crate::store::{Store, StoreResult};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use streamspace_protocol::{AgentId, SessionId, TemplateId, UserId};

const KEY_SETTING: &str = "session_seal_key";
/// Seals are truncated to 128 bits (32 hex digits) so they fit a
/// Kubernetes label value (63 characters); 128 bits cannot be guessed.
const SEAL_BYTES: usize = 16;

#[derive(Clone)]
pub struct Sealer {
    key: [u8; 32],
}

/// What a seal vouches for.
pub struct SessionIds<'a> {
    pub session: &'a SessionId,
    pub user: &'a UserId,
    pub template: &'a TemplateId,
    pub agent: &'a AgentId,
}

impl Sealer {
    /// The control plane's key, created by whichever replica starts first.
    pub async fn load(store: &Store) -> StoreResult<Self> {
        let mut fresh = [0u8; 32];
        // The OS random source failing is not something to continue through.
        getrandom::fill(&mut fresh).expect("the operating system's random source failed");
        let stored = store
            .setting_or_insert(KEY_SETTING, &hex::encode(fresh))
            .await?;
        let mut key = [0u8; 32];
        hex::decode_to_slice(stored.trim(), &mut key).map_err(|e| {
            crate::store::StoreError::Corrupt(format!("setting {KEY_SETTING}: {e}"))
        })?;
        Ok(Sealer { key })
    }

    /// The seal of a session placed on an agent.
    pub fn seal(&self, ids: &SessionIds<'_>) -> String {
        let tag = self.mac(ids).finalize().into_bytes();
        hex::encode(&tag[..SEAL_BYTES])
    }

    /// Whether `seal` is this control plane's seal over `ids` (in constant
    /// time).
    pub fn verify(&self, ids: &SessionIds<'_>, seal: &str) -> bool {
        let mut tag = [0u8; SEAL_BYTES];
        if hex::decode_to_slice(seal, &mut tag).is_err() {
            return false;
        }
        self.mac(ids).verify_truncated_left(&tag).is_ok()
    }

    fn mac(&self, ids: &SessionIds<'_>) -> Hmac<Sha256> {
        // A 32-byte key is always a valid HMAC key.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .expect("HMAC takes keys of any length");
        // Length-prefixed, so no two different id lists read alike.
        let parts = [
            ids.session.as_str(),
            ids.user.as_str(),
            ids.template.as_str(),
            ids.agent.as_str(),
        ];
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Owned ids, lent out as `SessionIds` by `ids()`.
    struct Owned(SessionId, UserId, TemplateId, AgentId);

    impl Owned {
        fn ids(&self) -> SessionIds<'_> {
            SessionIds {
                session: &self.0,
                user: &self.1,
                template: &self.2,
                agent: &self.3,
            }
        }
    }

    fn ids(agent: &str, user: &str) -> Owned {
        Owned("s1".into(), user.into(), "t1".into(), agent.into())
    }

    #[test]
    fn seals_verify_only_for_what_they_sealed() {
        let sealer = Sealer { key: [7; 32] };
        let seal = sealer.seal(&ids("a1", "u1").ids());
        assert_eq!(seal.len(), 32);
        assert!(sealer.verify(&ids("a1", "u1").ids(), &seal));
        assert!(
            !sealer.verify(&ids("a2", "u1").ids(), &seal),
            "another agent"
        );
        assert!(
            !sealer.verify(&ids("a1", "u2").ids(), &seal),
            "another user"
        );
        assert!(!sealer.verify(&ids("a1", "u1").ids(), "00"), "too short");
        assert!(!sealer.verify(&ids("a1", "u1").ids(), "not hex at all, not hex at all!"));
        let other = Sealer { key: [8; 32] };
        assert!(
            !other.verify(&ids("a1", "u1").ids(), &seal),
            "another control plane"
        );
    }

    #[test]
    fn ids_cannot_be_shifted_between_fields() {
        let sealer = Sealer { key: [1; 32] };
        let a = Owned("ab".into(), "c".into(), "t".into(), "a".into());
        let b = Owned("a".into(), "bc".into(), "t".into(), "a".into());
        assert_ne!(sealer.seal(&a.ids()), sealer.seal(&b.ids()));
    }
}
