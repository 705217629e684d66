//! Warm-pool sessions in the store: sessions owned by the pool's own row in
//! `users` (`POOL_USER`, made by migration 0009) until a launch takes one.
//! Every user-facing query leaves them out (`users.rs`, `sessions.rs`).

use super::sessions::SELECT as SELECT_SESSION;
use super::users::POOL_USER;
use super::{SessionRecord, Store, StoreResult, now_ms, sql};
use streamspace_protocol::{AgentId, SessionSpec, TemplateId, UserId};

impl Store {
    /// The pool's sessions (of `template_id`, or of every template) that
    /// are not over (any phase but `Terminated`), oldest first.
    pub async fn pool_sessions(
        &self,
        template_id: Option<&TemplateId>,
    ) -> StoreResult<Vec<SessionRecord>> {
        let rows = sqlx::query(sql(format!(
            "{SELECT_SESSION} WHERE s.user_id = '{POOL_USER}' \
             AND ($1 = '' OR s.template_id = $1) AND s.phase <> 'Terminated' ORDER BY s.id"
        )))
        .bind(template_id.map_or("", TemplateId::as_str))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| self.session_from_row(r)).collect()
    }

    /// Gives pooled session `id` to `user_id` with its new `spec`, if it is
    /// still the pool's and running: two launches racing for one session
    /// cannot both get it. Its activity clock starts now.
    pub async fn assign_pool_session(
        &self,
        id: &streamspace_protocol::SessionId,
        user_id: &UserId,
        spec: &SessionSpec,
        idle_timeout_ms: Option<i64>,
    ) -> StoreResult<bool> {
        let sealed = self.seal_session_spec(spec)?;
        let _turn = self.write_turn().await;
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE sessions SET user_id = $1, spec = $2, secrets = $3, idle_timeout_ms = $4, \
             last_activity = $5, updated_at = $5 \
             WHERE id = $6 AND user_id = $7 AND phase = 'Running' AND state = 'running'",
        )
        .bind(user_id)
        .bind(&sealed.json)
        .bind(&sealed.secrets)
        .bind(idle_timeout_ms)
        .bind(now)
        .bind(id)
        .bind(POOL_USER)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// How many of the pool's live sessions of `template_id` are on each
    /// agent, failed ones aside (they are ended and replaced).
    pub async fn pool_sizes(
        &self,
        template_id: &TemplateId,
    ) -> StoreResult<std::collections::HashMap<AgentId, usize>> {
        let mut sizes = std::collections::HashMap::new();
        for s in self.pool_sessions(Some(template_id)).await? {
            if let (Some(agent), false) =
                (s.agent_id, s.phase == streamspace_protocol::Phase::Failed)
            {
                *sizes.entry(agent).or_default() += 1;
            }
        }
        Ok(sizes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewSession, Role};
    use streamspace_protocol::{DesiredState, Phase, SessionId};

    /// The pool's owner is no account: not listed, counted, found or able
    /// to log in; and a pooled session goes to one launch only.
    async fn the_pool_is_nobody_and_gives_each_session_once(url: &str) {
        let store = Store::connect(url).await.expect("store");
        assert_eq!(
            store.count_users().await.expect("count"),
            0,
            "a fresh store has no users"
        );
        let alice = store
            .create_user("alice", "h", Role::User)
            .await
            .expect("user");
        let bob = store
            .create_user("bob", "h", Role::User)
            .await
            .expect("user");
        let names: Vec<_> = store
            .list_users()
            .await
            .expect("list")
            .into_iter()
            .map(|u| u.username)
            .collect();
        assert_eq!(names, ["alice", "bob"]);
        assert!(
            store
                .get_user(&POOL_USER.into())
                .await
                .expect("read")
                .is_none()
        );
        assert!(
            store
                .user_credentials("_pool")
                .await
                .expect("read")
                .is_none()
        );

        let new = NewSession {
            user_id: POOL_USER.into(),
            template_id: "t".into(),
            template_name: "desktop".into(),
            agent_id: "a1".into(),
            platform: "docker".into(),
            spec: SessionSpec::fixture(SessionId::new()),
            idle_timeout_ms: None,
        };
        let pooled = store.adopt_session(&new, DesiredState::Running, Phase::Running, "test");
        let pooled = pooled.await.expect("session");
        assert!(
            store
                .list_sessions(None, false)
                .await
                .expect("list")
                .is_empty()
        );
        assert_eq!(
            store
                .pool_sessions(Some(&"t".into()))
                .await
                .expect("pool")
                .len(),
            1
        );
        let spec = pooled.spec.clone();
        let first = store.assign_pool_session(&pooled.id, &alice.id, &spec, None);
        assert!(first.await.expect("write"));
        let second = store.assign_pool_session(&pooled.id, &bob.id, &spec, None);
        assert!(!second.await.expect("write"), "taken already");
        let mine = store
            .list_sessions(Some(&alice.id), false)
            .await
            .expect("list");
        assert_eq!(mine.len(), 1);
        assert!(store.pool_sessions(None).await.expect("pool").is_empty());
    }

    on_both_engines!(the_pool_is_nobody_and_gives_each_session_once);
}
