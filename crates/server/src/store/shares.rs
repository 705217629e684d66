//! Session shares (migration 0014): invites of named users, links whose
//! secret is kept only as a SHA-256 hash, the users who came through a
//! link, and the guests' viewers open now ("who is watching").
//!
//! A share is live while it is not ended and not expired; every query here
//! asks that of the row itself, and ending a link ends the rows of the
//! users who came through it in the same statement, so nothing outlives
//! its link.

use super::sessions::SELECT as SELECT_SESSION;
use super::{SessionRecord, Store, StoreError, StoreResult, new_id, now_ms, sql};
use sqlx::Row;
use sqlx::any::AnyRow;
use streamspace_protocol::{SessionId, UserId};

/// Live invites and links one session may have at once: enough for a
/// class or a review, few enough that a session's share list stays short.
pub const MAX_SHARES_PER_SESSION: i64 = 32;
/// Live links one session may have at once (counted within the above):
/// each is a bearer secret in someone's chat history.
pub const MAX_LINKS_PER_SESSION: i64 = 8;
/// Users who may come through one link.
pub const MAX_GUESTS_PER_LINK: i64 = 64;
/// A watcher whose replica has not refreshed it for this long is gone (the
/// replica died); live ones are refreshed every few seconds.
pub const WATCHER_STALE_MS: i64 = 30_000;

/// The SQL condition of a live share row aliased `sh`, given now as `$N`.
fn live(now_param: &str) -> String {
    format!("sh.ended_at IS NULL AND (sh.expires_at IS NULL OR sh.expires_at > {now_param})")
}

fn vanished() -> StoreError {
    StoreError::Corrupt("a share vanished as it was read".into())
}

/// One share as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareRecord {
    pub id: String,
    pub session_id: SessionId,
    pub created_by: UserId,
    /// The invited user, or the one who came through a link.
    pub guest_id: Option<UserId>,
    pub guest_username: Option<String>,
    /// For a link's guest: the link.
    pub link_id: Option<String>,
    /// Whether this is a link (it has a secret).
    pub is_link: bool,
    /// Keyboard and mouse too, not only the picture.
    pub control: bool,
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

const SHARE_COLUMNS: &str = "sh.id, sh.session_id, sh.created_by, sh.guest_id, \
     g.username AS guest_username, sh.link_id, sh.token_hash, sh.control, sh.created_at, \
     sh.expires_at";
const SHARE_FROM: &str = "FROM session_shares sh LEFT JOIN users g ON g.id = sh.guest_id";

impl ShareRecord {
    fn from_row(row: &AnyRow) -> StoreResult<Self> {
        Ok(ShareRecord {
            id: row.try_get("id")?,
            session_id: row.try_get("session_id")?,
            created_by: row.try_get("created_by")?,
            guest_id: row.try_get("guest_id")?,
            guest_username: row.try_get("guest_username")?,
            link_id: row.try_get("link_id")?,
            is_link: row.try_get::<Option<String>, _>("token_hash")?.is_some(),
            control: row.try_get::<i64, _>("control")? != 0,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
        })
    }
}

/// A share about to be made: an invite (`guest`) or a link (`token_hash`).
#[derive(Debug, Clone)]
pub struct NewShare<'a> {
    pub session_id: &'a SessionId,
    pub created_by: &'a UserId,
    pub guest: Option<&'a UserId>,
    pub token_hash: Option<&'a str>,
    pub control: bool,
    pub expires_at: Option<i64>,
}

/// Why a share was not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareRefusal {
    /// The session has [`MAX_SHARES_PER_SESSION`] live shares, or
    /// [`MAX_LINKS_PER_SESSION`] live links.
    TooMany,
    /// The user already has a live invite to this session.
    AlreadyInvited,
    /// The link has [`MAX_GUESTS_PER_LINK`] guests.
    LinkFull,
}

/// A guest's viewer open now.
#[derive(Debug, Clone)]
pub struct Watcher {
    pub share_id: String,
    pub user_id: UserId,
    pub username: String,
    pub joined_at: i64,
}

impl Store {
    /// Makes an invite or a link, within the session's bounds.
    pub async fn create_share(
        &self,
        share: NewShare<'_>,
    ) -> StoreResult<Result<ShareRecord, ShareRefusal>> {
        let _turn = self.write_turn().await;
        let now = now_ms();
        let counts = sqlx::query(sql(format!(
            "SELECT COUNT(*) AS shares, \
             COALESCE(SUM(CASE WHEN sh.token_hash IS NOT NULL THEN 1 ELSE 0 END), 0) AS links, \
             COALESCE(SUM(CASE WHEN sh.guest_id = $3 THEN 1 ELSE 0 END), 0) AS mine \
             FROM session_shares sh WHERE sh.session_id = $1 AND sh.link_id IS NULL AND {}",
            live("$2")
        )))
        .bind(share.session_id)
        .bind(now)
        .bind(share.guest.map_or("", UserId::as_str))
        .fetch_one(&self.pool)
        .await?;
        let (shares, links, mine): (i64, i64, i64) = (
            counts.try_get("shares")?,
            counts.try_get("links")?,
            counts.try_get("mine")?,
        );
        if mine > 0 {
            return Ok(Err(ShareRefusal::AlreadyInvited));
        }
        let too_many_links = share.token_hash.is_some() && links >= MAX_LINKS_PER_SESSION;
        if shares >= MAX_SHARES_PER_SESSION || too_many_links {
            return Ok(Err(ShareRefusal::TooMany));
        }
        let id = new_id();
        self.insert_share(&id, &share, None, now).await?;
        Ok(Ok(self.share(&id).await?.ok_or_else(vanished)?))
    }

    async fn insert_share(
        &self,
        id: &str,
        share: &NewShare<'_>,
        link_id: Option<&str>,
        now: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO session_shares (id, session_id, created_by, guest_id, link_id, \
             token_hash, control, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(id)
        .bind(share.session_id)
        .bind(share.created_by)
        .bind(share.guest)
        .bind(link_id)
        .bind(share.token_hash)
        .bind(i64::from(share.control))
        .bind(now)
        .bind(share.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A share by id, live or not.
    pub async fn share(&self, id: &str) -> StoreResult<Option<ShareRecord>> {
        let row = sqlx::query(sql(format!(
            "SELECT {SHARE_COLUMNS} {SHARE_FROM} WHERE sh.id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(ShareRecord::from_row).transpose()
    }

    /// A session's live shares, oldest first: invites, links and the users
    /// who came through the links.
    pub async fn live_shares(&self, session_id: &SessionId) -> StoreResult<Vec<ShareRecord>> {
        let rows = sqlx::query(sql(format!(
            "SELECT {SHARE_COLUMNS} {SHARE_FROM} WHERE sh.session_id = $1 AND {} ORDER BY sh.id",
            live("$2")
        )))
        .bind(session_id)
        .bind(now_ms())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(ShareRecord::from_row).collect()
    }

    /// The live share that lets `user_id` see `session_id`, preferring one
    /// with control.
    pub async fn guest_share(
        &self,
        session_id: &SessionId,
        user_id: &UserId,
    ) -> StoreResult<Option<ShareRecord>> {
        let row = sqlx::query(sql(format!(
            "SELECT {SHARE_COLUMNS} {SHARE_FROM} WHERE sh.session_id = $1 AND sh.guest_id = $2 \
             AND {} ORDER BY sh.control DESC, sh.id LIMIT 1",
            live("$3")
        )))
        .bind(session_id)
        .bind(user_id)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(ShareRecord::from_row).transpose()
    }

    /// Whether the share is live (not ended, not expired).
    pub async fn share_is_live(&self, id: &str) -> StoreResult<bool> {
        let row = sqlx::query(sql(format!(
            "SELECT sh.id FROM session_shares sh WHERE sh.id = $1 AND {}",
            live("$2")
        )))
        .bind(id)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// The live link whose secret hashes to `token_hash`.
    pub async fn share_link(&self, token_hash: &str) -> StoreResult<Option<ShareRecord>> {
        let row = sqlx::query(sql(format!(
            "SELECT {SHARE_COLUMNS} {SHARE_FROM} WHERE sh.token_hash = $1 AND {}",
            live("$2")
        )))
        .bind(token_hash)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(ShareRecord::from_row).transpose()
    }

    /// `user_id` comes through `link`: their own share, lasting as long as
    /// the link (the one they have if they came before).
    pub async fn join_link(
        &self,
        link: &ShareRecord,
        user_id: &UserId,
    ) -> StoreResult<Result<ShareRecord, ShareRefusal>> {
        let _turn = self.write_turn().await;
        let now = now_ms();
        let row = sqlx::query(sql(format!(
            "SELECT sh.id, CASE WHEN sh.guest_id = $2 THEN 1 ELSE 0 END AS mine \
             FROM session_shares sh WHERE sh.link_id = $1 AND {} ORDER BY mine DESC",
            live("$3")
        )))
        .bind(&link.id)
        .bind(user_id)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        if let Some(first) = row.first()
            && first.try_get::<i64, _>("mine")? == 1
        {
            let id: String = first.try_get("id")?;
            return Ok(Ok(self.share(&id).await?.ok_or_else(vanished)?));
        }
        if row.len() as i64 >= MAX_GUESTS_PER_LINK {
            return Ok(Err(ShareRefusal::LinkFull));
        }
        let share = NewShare {
            session_id: &link.session_id,
            created_by: &link.created_by,
            guest: Some(user_id),
            token_hash: None,
            control: link.control,
            expires_at: link.expires_at,
        };
        let id = new_id();
        self.insert_share(&id, &share, Some(&link.id), now).await?;
        Ok(Ok(self.share(&id).await?.ok_or_else(vanished)?))
    }

    /// Ends a live share of `session_id` and, for a link, its guests' shares;
    /// the ids ended (empty if there was no such live share).
    pub async fn end_share(&self, session_id: &SessionId, id: &str) -> StoreResult<Vec<String>> {
        let _turn = self.write_turn().await;
        let now = now_ms();
        let rows = sqlx::query(sql(format!(
            "SELECT sh.id FROM session_shares sh WHERE sh.session_id = $1 \
             AND (sh.id = $2 OR sh.link_id = $2) AND {}",
            live("$3")
        )))
        .bind(session_id)
        .bind(id)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let ended: Vec<String> = rows
            .iter()
            .map(|r| r.try_get("id"))
            .collect::<Result<_, _>>()?;
        if !ended.iter().any(|e| e == id) {
            return Ok(Vec::new());
        }
        sqlx::query(
            "UPDATE session_shares SET ended_at = $3 WHERE session_id = $1 \
             AND (id = $2 OR link_id = $2) AND ended_at IS NULL",
        )
        .bind(session_id)
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(ended)
    }

    /// Sessions shared with `user_id` now (not terminated), each with the
    /// share that opens it, newest share first.
    pub async fn shared_with(
        &self,
        user_id: &UserId,
    ) -> StoreResult<Vec<(SessionRecord, ShareRecord)>> {
        let rows = sqlx::query(sql(format!(
            "SELECT {SHARE_COLUMNS} {SHARE_FROM} WHERE sh.guest_id = $1 AND {} ORDER BY sh.id DESC",
            live("$2")
        )))
        .bind(user_id)
        .bind(now_ms())
        .fetch_all(&self.pool)
        .await?;
        let mut shared: Vec<(SessionRecord, ShareRecord)> = Vec::new();
        for row in &rows {
            let share = ShareRecord::from_row(row)?;
            // One entry per session: the first (newest) share of each.
            if shared.iter().any(|(s, _)| s.id == share.session_id) {
                continue;
            }
            let session = sqlx::query(sql(format!(
                "{SELECT_SESSION} WHERE s.id = $1 AND s.phase <> 'Terminated'"
            )))
            .bind(&share.session_id)
            .fetch_optional(&self.pool)
            .await?;
            if let Some(session) = session {
                shared.push((self.session_from_row(&session)?, share));
            }
        }
        Ok(shared)
    }

    /// Notes a guest's viewer as open; its id, for [`Store::remove_watcher`].
    pub async fn add_watcher(&self, share_id: &str, user_id: &UserId) -> StoreResult<String> {
        let _turn = self.write_turn().await;
        let (id, now) = (new_id(), now_ms());
        sqlx::query(
            "INSERT INTO share_watchers (id, share_id, user_id, joined_at, seen_at) \
             VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(&id)
        .bind(share_id)
        .bind(user_id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    /// Refreshes an open viewer, so it does not age out.
    pub async fn touch_watcher(&self, id: &str) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        sqlx::query("UPDATE share_watchers SET seen_at = $2 WHERE id = $1")
            .bind(id)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A guest's viewer closed; also sweeps rows a dead replica left.
    pub async fn remove_watcher(&self, id: &str) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        sqlx::query("DELETE FROM share_watchers WHERE id = $1 OR seen_at < $2")
            .bind(id)
            .bind(now_ms() - WATCHER_STALE_MS)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The guests watching `session_id` now, by the live shares they came
    /// through, in the order they joined.
    pub async fn watchers(&self, session_id: &SessionId) -> StoreResult<Vec<Watcher>> {
        let now = now_ms();
        let rows = sqlx::query(sql(format!(
            "SELECT w.share_id, w.user_id, u.username, w.joined_at FROM share_watchers w \
             JOIN session_shares sh ON sh.id = w.share_id JOIN users u ON u.id = w.user_id \
             WHERE sh.session_id = $1 AND w.seen_at > $3 AND {} ORDER BY w.joined_at, w.id",
            live("$2")
        )))
        .bind(session_id)
        .bind(now)
        .bind(now - WATCHER_STALE_MS)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Watcher {
                    share_id: row.try_get("share_id")?,
                    user_id: row.try_get("user_id")?,
                    username: row.try_get("username")?,
                    joined_at: row.try_get("joined_at")?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
#[path = "shares_tests.rs"]
mod tests;
