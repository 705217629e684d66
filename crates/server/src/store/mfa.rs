//! MFA in the store: each user's sealed TOTP secret and last accepted time
//! step, their recovery code hashes, and the challenges of the two-step
//! login. The writes that must happen once (a time step, a recovery code, a
//! challenge) are single conditional statements, so two replicas (or two
//! requests) racing with the same code cannot both succeed.

use super::{Store, StoreResult, now_ms};
use sqlx::Row;
use streamspace_protocol::UserId;

/// A user's TOTP enrolment.
#[derive(Debug, Clone)]
pub struct TotpRecord {
    /// Sealed by `auth::mfa::vault`.
    pub sealed_secret: String,
    /// False while the enrolment waits for its first code.
    pub enabled: bool,
}

/// An open login challenge.
#[derive(Debug, Clone)]
pub struct MfaChallenge {
    pub user_id: UserId,
    /// The password hash the first step checked: the token is issued only
    /// while it is still the user's.
    pub password_hash: String,
    pub expires_at: i64,
}

impl Store {
    pub async fn totp(&self, user: &UserId) -> StoreResult<Option<TotpRecord>> {
        let row = sqlx::query("SELECT secret, enabled FROM user_totp WHERE user_id = $1")
            .bind(user)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(TotpRecord {
            sealed_secret: row.try_get("secret")?,
            enabled: row.try_get::<i64, _>("enabled")? != 0,
        }))
    }

    /// The user's stored password hash (which, for accounts that sign in
    /// only through single sign-on, is no password hash at all).
    pub async fn password_hash(&self, user: &UserId) -> StoreResult<Option<String>> {
        let row = sqlx::query("SELECT password_hash FROM users WHERE id = $1")
            .bind(user)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(row) => Some(row.try_get("password_hash")?),
            None => None,
        })
    }

    /// Whether the user has TOTP turned on.
    pub async fn has_totp(&self, user: &UserId) -> StoreResult<bool> {
        Ok(self.totp(user).await?.is_some_and(|t| t.enabled))
    }

    /// Starts (or restarts) an enrolment with a new sealed secret; false if
    /// TOTP is already on, which only turning it off may change.
    pub async fn start_totp(&self, user: &UserId, sealed_secret: &str) -> StoreResult<bool> {
        let _turn = self.write_turn().await;
        let done = sqlx::query(
            "INSERT INTO user_totp (user_id, secret, enabled, last_step, created_at) \
             VALUES ($1, $2, 0, 0, $3) \
             ON CONFLICT (user_id) DO UPDATE SET secret = $2, created_at = $3, last_step = 0 \
             WHERE user_totp.enabled = 0",
        )
        .bind(user)
        .bind(sealed_secret)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Turns a pending enrolment on, the first code's step remembered as
    /// used, with a fresh set of recovery codes; false if there was no
    /// pending enrolment (none started, or already on).
    pub async fn enable_totp(
        &self,
        user: &UserId,
        step: i64,
        recovery_hashes: &[String],
    ) -> StoreResult<bool> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE user_totp SET enabled = 1, last_step = $2, enabled_at = $3 \
             WHERE user_id = $1 AND enabled = 0",
        )
        .bind(user)
        .bind(step)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        replace_codes_in(&mut tx, user, recovery_hashes).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Records `step` as the user's last accepted time step, if it is later
    /// than the last one: false means the code was already used (or an
    /// earlier one was accepted since).
    pub async fn accept_totp_step(&self, user: &UserId, step: i64) -> StoreResult<bool> {
        let _turn = self.write_turn().await;
        let done = sqlx::query(
            "UPDATE user_totp SET last_step = $2 \
             WHERE user_id = $1 AND enabled = 1 AND last_step < $2",
        )
        .bind(user)
        .bind(step)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Uses up a recovery code: true if it was one of the user's, unused.
    pub async fn use_recovery_code(&self, user: &UserId, code_hash: &str) -> StoreResult<bool> {
        let _turn = self.write_turn().await;
        let done =
            sqlx::query("DELETE FROM mfa_recovery_codes WHERE user_id = $1 AND code_hash = $2")
                .bind(user)
                .bind(code_hash)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Replaces the user's recovery codes with a new set.
    pub async fn replace_recovery_codes(
        &self,
        user: &UserId,
        recovery_hashes: &[String],
    ) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        replace_codes_in(&mut tx, user, recovery_hashes).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn recovery_codes_left(&self, user: &UserId) -> StoreResult<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM mfa_recovery_codes WHERE user_id = $1")
            .bind(user)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// Turns TOTP off: the secret, the recovery codes and any open
    /// challenges go. False if the user had no enrolment at all.
    pub async fn disable_totp(&self, user: &UserId) -> StoreResult<bool> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("DELETE FROM user_totp WHERE user_id = $1")
            .bind(user)
            .execute(&mut *tx)
            .await?;
        for table in ["mfa_recovery_codes", "mfa_challenges"] {
            sqlx::query(super::sql(format!(
                "DELETE FROM {table} WHERE user_id = $1"
            )))
            .bind(user)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Opens a login challenge; the user keeps at most `max_open` (their
    /// oldest, and expired ones, are dropped), so a known password cannot
    /// pile up rows.
    pub async fn create_mfa_challenge(
        &self,
        challenge_hash: &str,
        challenge: &MfaChallenge,
        max_open: i64,
    ) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        let user = &challenge.user_id;
        sqlx::query(
            "DELETE FROM mfa_challenges WHERE user_id = $1 AND (expires_at <= $2 OR \
             challenge_hash NOT IN (SELECT challenge_hash FROM mfa_challenges \
             WHERE user_id = $1 ORDER BY created_at DESC, challenge_hash DESC LIMIT $3))",
        )
        .bind(user)
        .bind(now_ms())
        .bind(max_open - 1)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO mfa_challenges \
             (challenge_hash, user_id, password_hash, attempts, created_at, expires_at) \
             VALUES ($1, $2, $3, 0, $4, $5)",
        )
        .bind(challenge_hash)
        .bind(user)
        .bind(&challenge.password_hash)
        .bind(now_ms())
        .bind(challenge.expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The live challenge with this hash.
    pub async fn mfa_challenge(&self, challenge_hash: &str) -> StoreResult<Option<MfaChallenge>> {
        let row = sqlx::query(
            "SELECT user_id, password_hash, expires_at FROM mfa_challenges \
             WHERE challenge_hash = $1 AND expires_at > $2",
        )
        .bind(challenge_hash)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(MfaChallenge {
            user_id: row.try_get("user_id")?,
            password_hash: row.try_get("password_hash")?,
            expires_at: row.try_get("expires_at")?,
        }))
    }

    /// Counts a wrong code against a challenge; at `max_attempts` it is
    /// gone, and the password must be entered again.
    pub async fn mfa_challenge_failed(
        &self,
        challenge_hash: &str,
        max_attempts: i64,
    ) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        sqlx::query("UPDATE mfa_challenges SET attempts = attempts + 1 WHERE challenge_hash = $1")
            .bind(challenge_hash)
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM mfa_challenges WHERE challenge_hash = $1 AND attempts >= $2")
            .bind(challenge_hash)
            .bind(max_attempts)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Uses a challenge up: true for the one request that did.
    pub async fn consume_mfa_challenge(&self, challenge_hash: &str) -> StoreResult<bool> {
        let _turn = self.write_turn().await;
        let done =
            sqlx::query("DELETE FROM mfa_challenges WHERE challenge_hash = $1 AND expires_at > $2")
                .bind(challenge_hash)
                .bind(now_ms())
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes expired challenges (the periodic purge).
    pub async fn delete_expired_mfa_challenges(&self) -> StoreResult<u64> {
        let _turn = self.write_turn().await;
        let done = sqlx::query("DELETE FROM mfa_challenges WHERE expires_at <= $1")
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

async fn replace_codes_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    user: &UserId,
    recovery_hashes: &[String],
) -> StoreResult<()> {
    sqlx::query("DELETE FROM mfa_recovery_codes WHERE user_id = $1")
        .bind(user)
        .execute(&mut **tx)
        .await?;
    for hash in recovery_hashes {
        sqlx::query("INSERT INTO mfa_recovery_codes (user_id, code_hash) VALUES ($1, $2)")
            .bind(user)
            .bind(hash)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::Role;
    use super::*;

    const LATER: i64 = i64::MAX / 2;

    fn challenge(user: &UserId, expires_at: i64) -> MfaChallenge {
        MfaChallenge {
            user_id: user.clone(),
            password_hash: "h1".into(),
            expires_at,
        }
    }

    /// A time step is accepted once, and never an earlier one after it.
    async fn steps_and_codes_are_used_once(url: &str) {
        let store = Store::connect(url).await.expect("store");
        let alice = store.create_user("alice", "h1", Role::User).await;
        let alice = alice.expect("user").id;
        assert!(store.start_totp(&alice, "sealed-1").await.expect("write"));
        assert!(!store.has_totp(&alice).await.expect("read"), "pending");
        let hashes = vec!["c1".to_owned(), "c2".to_owned()];
        assert!(
            store
                .enable_totp(&alice, 100, &hashes)
                .await
                .expect("write")
        );
        assert!(
            !store
                .enable_totp(&alice, 101, &hashes)
                .await
                .expect("write")
        );
        assert!(
            !store.start_totp(&alice, "sealed-2").await.expect("write"),
            "on"
        );
        assert!(store.has_totp(&alice).await.expect("read"));
        assert!(!store.accept_totp_step(&alice, 100).await.expect("write"));
        assert!(store.accept_totp_step(&alice, 101).await.expect("write"));
        assert!(!store.accept_totp_step(&alice, 101).await.expect("write"));
        assert!(!store.accept_totp_step(&alice, 99).await.expect("write"));
        assert!(store.use_recovery_code(&alice, "c1").await.expect("write"));
        assert!(!store.use_recovery_code(&alice, "c1").await.expect("write"));
        assert_eq!(store.recovery_codes_left(&alice).await.expect("read"), 1);
        assert!(store.disable_totp(&alice).await.expect("write"));
        assert_eq!(store.recovery_codes_left(&alice).await.expect("read"), 0);
        assert!(store.totp(&alice).await.expect("read").is_none());
    }

    /// Challenges are single-use, expire, die after their attempts, and a
    /// user keeps only a few.
    async fn challenges_are_bounded_and_single_use(url: &str) {
        let store = Store::connect(url).await.expect("store");
        let alice = store.create_user("alice", "h1", Role::User).await;
        let alice = alice.expect("user").id;
        for i in 0..5 {
            let c = challenge(&alice, LATER);
            store
                .create_mfa_challenge(&format!("c{i}"), &c, 3)
                .await
                .expect("write");
        }
        let mut open = Vec::new();
        for i in 0..5 {
            let found = store.mfa_challenge(&format!("c{i}")).await.expect("read");
            open.push(found.is_some());
        }
        assert_eq!(open, [false, false, true, true, true], "the newest three");
        assert!(store.consume_mfa_challenge("c4").await.expect("write"));
        assert!(!store.consume_mfa_challenge("c4").await.expect("write"));
        store.mfa_challenge_failed("c3", 2).await.expect("write");
        assert!(store.mfa_challenge("c3").await.expect("read").is_some());
        store.mfa_challenge_failed("c3", 2).await.expect("write");
        assert!(store.mfa_challenge("c3").await.expect("read").is_none());
        let expired = challenge(&alice, now_ms() - 1);
        store
            .create_mfa_challenge("old", &expired, 3)
            .await
            .expect("write");
        assert!(store.mfa_challenge("old").await.expect("read").is_none());
        assert!(!store.consume_mfa_challenge("old").await.expect("write"));
        assert!(store.delete_expired_mfa_challenges().await.expect("write") >= 1);
    }

    on_both_engines!(
        steps_and_codes_are_used_once,
        challenges_are_bounded_and_single_use
    );
}
