//! argon2id hashes computed in memory we keep, rather than 19 MiB allocated
//! and freed per hash.
//!
//! Why: glibc keeps freed blocks of that size in per-thread arenas that it
//! rarely gives back, so allocating one per hash on tokio's blocking pool
//! grew the server by ~640 MiB after a few hundred logins, even with only
//! two hashes at a time. Reusing a buffer per worker keeps it at
//! (workers × 19 MiB). The argon2 crate supports this directly
//! (`hash_password_into_with_memory`); the PHC strings are the crate's own,
//! and tests check both ways that its verifier agrees with ours.

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};

/// The largest memory cost a stored hash may ask for (in 1 KiB blocks): the
/// default is 19 MiB; this allows for stronger parameters later without
/// letting a corrupt row make one check allocate gigabytes.
const MAX_BLOCKS: usize = 256 * 1024;

/// The memory our own hashes need (in 1 KiB blocks), which a worker keeps.
const KEPT_BLOCKS: usize = Params::DEFAULT_M_COST as usize;

/// One worker's argon2 memory, reused from hash to hash.
#[derive(Default)]
pub struct Memory {
    blocks: Vec<Block>,
}

impl Memory {
    /// The first `count` blocks, growing the buffer if this hash needs more.
    fn blocks(&mut self, count: usize) -> Result<&mut [Block], String> {
        if count > MAX_BLOCKS {
            return Err(format!(
                "the hash asks for {count} KiB of memory, more than {MAX_BLOCKS} KiB"
            ));
        }
        if self.blocks.len() < count {
            self.blocks.resize(count, Block::new());
        }
        Ok(&mut self.blocks[..count])
    }

    /// Hashes `password` with a fresh salt and the crate's default
    /// parameters (argon2id, 19 MiB, 2 passes), as a PHC string.
    pub fn hash(&mut self, password: &str) -> Result<String, String> {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|e| format!("no random salt: {e}"))?;
        let salt = Salt::new(&salt).map_err(|e| e.to_string())?;
        let params = Params::default();
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        let blocks = self.blocks(params.block_count())?;
        argon
            .hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, blocks)
            .map_err(|e| format!("cannot hash password: {e}"))?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&params).map_err(|e| e.to_string())?,
            salt: Some(salt),
            hash: Some(Output::new(&out).map_err(|e| e.to_string())?),
        };
        Ok(phc.to_string())
    }

    /// Whether `password` matches the PHC string `stored`; anything that
    /// cannot be read as an argon2 hash matches nothing.
    pub fn verify(&mut self, password: &str, stored: &str) -> bool {
        let verified = self.try_verify(password, stored);
        // A hash with a larger memory cost (up to 256 MiB) must not leave
        // its worker holding that much for good.
        if self.blocks.len() > KEPT_BLOCKS {
            self.blocks.truncate(KEPT_BLOCKS);
            self.blocks.shrink_to_fit();
        }
        match verified {
            Ok(matches) => matches,
            Err(err) => {
                tracing::warn!(error = %err, "a stored password hash cannot be checked");
                false
            }
        }
    }

    fn try_verify(&mut self, password: &str, stored: &str) -> Result<bool, String> {
        let phc = PasswordHash::new(stored).map_err(|e| e.to_string())?;
        let (Some(salt), Some(expected)) = (&phc.salt, &phc.hash) else {
            return Err("the hash has no salt or output".into());
        };
        let algorithm = Algorithm::try_from(phc.algorithm.as_str()).map_err(|e| e.to_string())?;
        let version = match phc.version {
            Some(v) => Version::try_from(v).map_err(|e| e.to_string())?,
            None => Version::default(),
        };
        let params = Params::try_from(&phc).map_err(|e| e.to_string())?;
        let argon = Argon2::new(algorithm, version, params.clone());
        let mut out = vec![0u8; expected.len()];
        let blocks = self.blocks(params.block_count())?;
        argon
            .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, blocks)
            .map_err(|e| e.to_string())?;
        let computed = Output::new(&out).map_err(|e| e.to_string())?;
        // `Output`'s equality takes the same time wherever they differ.
        Ok(computed == *expected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::{PasswordHasher, PasswordVerifier};

    #[test]
    fn our_hashes_and_the_crates_agree_both_ways() {
        let mut memory = Memory::default();
        let ours = memory.hash("correct horse").expect("hashes");
        assert!(
            ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{ours}"
        );
        let parsed = PasswordHash::new(&ours).expect("a PHC string");
        assert!(
            Argon2::default()
                .verify_password(b"correct horse", &parsed)
                .is_ok()
        );
        let theirs = Argon2::default()
            .hash_password(b"battery staple")
            .expect("hashes")
            .to_string();
        assert!(memory.verify("battery staple", &theirs));
        assert!(!memory.verify("battery stapler", &theirs));
        assert!(memory.verify("correct horse", &ours));
        assert!(!memory.verify("correct horse ", &ours));
        assert_ne!(
            memory.hash("correct horse").expect("hashes"),
            ours,
            "salted"
        );
    }

    #[test]
    fn memory_grows_for_a_larger_hash_and_shrinks_back() {
        let params = Params::new(4 * Params::DEFAULT_M_COST, 1, 1, None).expect("params");
        let larger = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(b"correct horse")
            .expect("hashes")
            .to_string();
        let mut memory = Memory::default();
        assert!(memory.verify("correct horse", &larger));
        assert!(
            memory.blocks.capacity() <= KEPT_BLOCKS,
            "{}",
            memory.blocks.capacity()
        );
        let ours = memory.hash("correct horse").expect("hashes");
        assert!(memory.verify("correct horse", &ours), "still works");
    }

    #[test]
    fn unreadable_or_greedy_hashes_match_nothing() {
        let mut memory = Memory::default();
        assert!(!memory.verify("x", "not a hash"));
        assert!(!memory.verify("x", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ"));
        let greedy = "$argon2id$v=19$m=4194304,t=2,p=1$c2FsdHNhbHRzYWx0$\
                      AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        assert!(!memory.verify("x", greedy));
        assert!(memory.blocks.len() <= MAX_BLOCKS);
    }
}
