//! Web-app grants: what lets a browser into one port of one session
//! (`apps/`). Issued as a one-time ticket on the control plane's origin and
//! exchanged on the app's origin for a cookie; only SHA-256 hashes of both
//! are kept, and a grant ends with the login, the user or the session
//! behind it.

use super::{Store, StoreResult, User, now_ms};
use sqlx::Row;
use streamspace_protocol::{SessionId, UserId};
use uuid::Uuid;

/// A grant about to be issued.
#[derive(Debug, Clone)]
pub struct NewGrant<'a> {
    pub ticket_hash: &'a str,
    /// The login the grant comes from.
    pub token_hash: &'a str,
    pub user_id: &'a UserId,
    pub session_id: &'a SessionId,
    pub port: u16,
    pub ticket_expires_at: i64,
    pub expires_at: i64,
}

/// What a cookie grants: its user (as they are now) and the port of the
/// session it opens.
#[derive(Debug, Clone)]
pub struct Grant {
    pub user: User,
    /// The login it came from.
    pub token_hash: String,
    pub session_id: SessionId,
    pub port: u16,
    pub expires_at: i64,
}

/// Grants one login may hold: opening apps again and again replaces the
/// oldest, so a user (or a script with their token) cannot grow the table
/// without bound between hourly purges.
pub const GRANTS_PER_LOGIN: i64 = 64;

impl Store {
    pub async fn create_app_grant(&self, grant: NewGrant<'_>) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "INSERT INTO app_grants (id, ticket_hash, token_hash, user_id, session_id, port, \
             ticket_expires_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(Uuid::now_v7().to_string())
        .bind(grant.ticket_hash)
        .bind(grant.token_hash)
        .bind(grant.user_id)
        .bind(grant.session_id)
        .bind(i64::from(grant.port))
        .bind(grant.ticket_expires_at)
        .bind(grant.expires_at)
        .execute(&self.pool)
        .await?;
        sqlx::query(
            "DELETE FROM app_grants WHERE token_hash = $1 AND id NOT IN \
             (SELECT id FROM app_grants WHERE token_hash = $1 ORDER BY id DESC LIMIT $2)",
        )
        .bind(grant.token_hash)
        .bind(GRANTS_PER_LOGIN)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Spends a ticket for `session_id`'s `port`, binding the grant to
    /// `cookie_hash`; false if there is no such unspent, unexpired ticket
    /// for that port (spent, expired, or issued for another app).
    pub async fn redeem_app_ticket(
        &self,
        ticket_hash: &str,
        session_id: &SessionId,
        port: u16,
        cookie_hash: &str,
    ) -> StoreResult<bool> {
        let _turn = self.write_turn().await;
        let done = sqlx::query(
            "UPDATE app_grants SET ticket_hash = NULL, cookie_hash = $1 \
             WHERE ticket_hash = $2 AND session_id = $3 AND port = $4 AND ticket_expires_at > $5",
        )
        .bind(cookie_hash)
        .bind(ticket_hash)
        .bind(session_id)
        .bind(i64::from(port))
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The live grant behind a cookie: unexpired, and so is its login.
    pub async fn app_grant(&self, cookie_hash: &str) -> StoreResult<Option<Grant>> {
        let row = sqlx::query(
            "SELECT g.session_id, g.port, g.expires_at, g.token_hash, \
             u.id, u.username, u.role, u.legacy_home FROM app_grants g \
             JOIN api_tokens t ON t.token_hash = g.token_hash \
             JOIN users u ON u.id = g.user_id \
             WHERE g.cookie_hash = $1 AND g.expires_at > $2 AND t.expires_at > $2",
        )
        .bind(cookie_hash)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Grant {
            user: User::from_row(&row)?,
            token_hash: row.try_get("token_hash")?,
            session_id: row.try_get("session_id")?,
            port: u16::try_from(row.try_get::<i64, _>("port")?).unwrap_or_default(),
            expires_at: row.try_get("expires_at")?,
        }))
    }

    /// Deletes expired grants and tickets never redeemed; how many.
    pub async fn delete_expired_app_grants(&self) -> StoreResult<u64> {
        let _turn = self.write_turn().await;
        let now = now_ms();
        let done = sqlx::query(
            "DELETE FROM app_grants WHERE expires_at <= $1 \
             OR (cookie_hash IS NULL AND ticket_expires_at <= $1)",
        )
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::super::Role;
    use super::*;
    use crate::store::NewSession;
    use streamspace_protocol::{DesiredState, Phase, SessionSpec};

    const LATER: i64 = i64::MAX / 2;

    /// A ticket opens its own app once; the cookie then reads the grant
    /// until the login behind it ends.
    async fn a_ticket_is_spent_once_and_the_grant_dies_with_its_login(url: &str) {
        let store = Store::connect(url).await.expect("store");
        let alice = store
            .create_user("alice", "h", Role::User)
            .await
            .expect("user");
        assert!(
            store
                .create_api_token("login", &alice.id, "h", LATER)
                .await
                .expect("token")
        );
        let new = NewSession {
            user_id: alice.id.clone(),
            template_id: "t".into(),
            template_name: "web".into(),
            agent_id: "a1".into(),
            platform: "docker".into(),
            spec: SessionSpec::fixture(SessionId::new()),
            idle_timeout_ms: None,
        };
        let session = store.adopt_session(&new, DesiredState::Running, Phase::Running, "test");
        let session_id = session.await.expect("session").id;
        let grant = NewGrant {
            ticket_hash: "ticket",
            token_hash: "login",
            user_id: &alice.id,
            session_id: &session_id,
            port: 6080,
            ticket_expires_at: LATER,
            expires_at: LATER,
        };
        store.create_app_grant(grant).await.expect("grant");
        let redeem = |ticket: &'static str, port: u16, cookie: &'static str| {
            let (store, id) = (store.clone(), session_id.clone());
            async move { store.redeem_app_ticket(ticket, &id, port, cookie).await }
        };
        assert!(
            !redeem("ticket", 5901, "c0").await.expect("write"),
            "another port's ticket"
        );
        assert!(redeem("ticket", 6080, "c1").await.expect("write"));
        assert!(!redeem("ticket", 6080, "c2").await.expect("write"), "spent");
        let found = store.app_grant("c1").await.expect("read").expect("a grant");
        assert_eq!((found.user.id, found.port), (alice.id.clone(), 6080));
        assert!(store.app_grant("c2").await.expect("read").is_none());
        store.delete_api_token("login").await.expect("logout");
        assert!(
            store.app_grant("c1").await.expect("read").is_none(),
            "logged out"
        );
    }

    /// Opening apps without end keeps only the newest grants of a login.
    async fn a_login_holds_a_bounded_number_of_grants(url: &str) {
        let store = Store::connect(url).await.expect("store");
        let alice = store
            .create_user("alice", "h", Role::User)
            .await
            .expect("user");
        assert!(
            store
                .create_api_token("login", &alice.id, "h", LATER)
                .await
                .expect("token")
        );
        let new = NewSession {
            user_id: alice.id.clone(),
            template_id: "t".into(),
            template_name: "web".into(),
            agent_id: "a1".into(),
            platform: "docker".into(),
            spec: SessionSpec::fixture(SessionId::new()),
            idle_timeout_ms: None,
        };
        let session = store.adopt_session(&new, DesiredState::Running, Phase::Running, "test");
        let session_id = session.await.expect("session").id;
        let extra = 5;
        for i in 0..GRANTS_PER_LOGIN + extra {
            let ticket = format!("ticket-{i}");
            let grant = NewGrant {
                ticket_hash: &ticket,
                token_hash: "login",
                user_id: &alice.id,
                session_id: &session_id,
                port: 6080,
                ticket_expires_at: LATER,
                expires_at: LATER,
            };
            store.create_app_grant(grant).await.expect("grant");
        }
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM app_grants")
            .fetch_one(store.pool())
            .await
            .expect("count");
        assert_eq!(count, GRANTS_PER_LOGIN);
        let oldest = store.redeem_app_ticket("ticket-0", &session_id, 6080, "c0");
        assert!(!oldest.await.expect("write"), "the oldest was replaced");
        let newest = format!("ticket-{}", GRANTS_PER_LOGIN + extra - 1);
        let newest = store.redeem_app_ticket(&newest, &session_id, 6080, "c1");
        assert!(newest.await.expect("write"));
    }

    on_both_engines!(
        a_ticket_is_spent_once_and_the_grant_dies_with_its_login,
        a_login_holds_a_bounded_number_of_grants,
    );
}
