//! Groups and their members. Admins make 'local' groups and memberships;
//! an OIDC login replaces the user's 'oidc' memberships with the groups its
//! claim names (`replace_claimed_groups`).

use super::{Store, StoreResult, new_id, now_ms};
use sqlx::Row;
use streamspace_protocol::UserId;

impl Store {
    /// Makes `user_id`'s identity-provider memberships exactly `names`,
    /// creating groups that do not exist yet (as 'oidc' groups). Memberships
    /// an admin added ('local') stay, whatever the claim says.
    pub async fn replace_claimed_groups(
        &self,
        user_id: &UserId,
        names: &[String],
    ) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM group_members WHERE user_id = $1 AND source = 'oidc'")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        for name in names {
            sqlx::query(
                "INSERT INTO groups (id, name, source, created_at) VALUES ($1, $2, 'oidc', $3) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(new_id())
            .bind(name)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO group_members (group_id, user_id, source) \
                 SELECT id, $1, 'oidc' FROM groups WHERE name = $2 \
                 ON CONFLICT (group_id, user_id) DO NOTHING",
            )
            .bind(user_id)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The names of the groups `user_id` belongs to, sorted.
    pub async fn group_names_of(&self, user_id: &UserId) -> StoreResult<Vec<String>> {
        let rows = sqlx::query(
            "SELECT g.name FROM group_members m JOIN groups g ON g.id = m.group_id \
             WHERE m.user_id = $1 ORDER BY g.name",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<String, _>("name")?))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::Role;
    use super::*;

    /// The claim replaces the claimed memberships and keeps an admin's.
    async fn claims_replace_only_claimed_memberships(url: &str) {
        let store = Store::connect(url).await.expect("store");
        let alice = store.create_user("alice", "h", Role::User).await;
        let alice = alice.expect("user").id;
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        store
            .replace_claimed_groups(&alice, &names(&["eng", "ops"]))
            .await
            .expect("sync");
        assert_eq!(
            store.group_names_of(&alice).await.expect("read"),
            ["eng", "ops"]
        );
        sqlx::query(
            "INSERT INTO groups (id, name, source, created_at) VALUES ('g-local', 'lab', 'local', 0)",
        )
        .execute(store.pool())
        .await
        .expect("group");
        sqlx::query(
            "INSERT INTO group_members (group_id, user_id, source) VALUES ('g-local', $1, 'local')",
        )
        .bind(&alice)
        .execute(store.pool())
        .await
        .expect("member");
        store
            .replace_claimed_groups(&alice, &names(&["ops"]))
            .await
            .expect("sync");
        assert_eq!(
            store.group_names_of(&alice).await.expect("read"),
            ["lab", "ops"]
        );
        store
            .replace_claimed_groups(&alice, &[])
            .await
            .expect("sync");
        assert_eq!(store.group_names_of(&alice).await.expect("read"), ["lab"]);
    }

    on_both_engines!(claims_replace_only_claimed_memberships);
}
