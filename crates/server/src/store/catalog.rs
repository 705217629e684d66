//! A catalog import in one transaction: every template it creates or
//! replaces is written, or none is (a name taken meanwhile by another
//! admin rolls the whole import back).

use super::{Store, StoreResult, conflict, now_ms};
use crate::template::TemplateSpec;
use streamspace_protocol::TemplateId;

/// One write of an import: a new template (`id: None`) or a replacement.
pub struct TemplateWrite<'a> {
    pub id: Option<&'a TemplateId>,
    pub spec: &'a TemplateSpec,
}

impl Store {
    /// Creates and replaces templates, all or nothing. False (and nothing
    /// written) when a template to replace was deleted meanwhile: the admin
    /// previewed something else.
    pub async fn write_templates(&self, writes: &[TemplateWrite<'_>]) -> StoreResult<bool> {
        let _turn = self.write_turn().await;
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        for write in writes {
            let id = write.id.cloned().unwrap_or_else(TemplateId::new);
            let sealed = self.seal_template(&id, write.spec)?;
            let done = match write.id {
                None => sqlx::query(
                    "INSERT INTO templates (id, name, spec, secrets, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $5)",
                )
                .bind(&id)
                .bind(&write.spec.name)
                .bind(&sealed.json)
                .bind(&sealed.secrets)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(conflict("a template with this name"))?,
                Some(_) => sqlx::query(
                    "UPDATE templates SET name = $1, spec = $2, secrets = $3, updated_at = $4 \
                     WHERE id = $5",
                )
                .bind(&write.spec.name)
                .bind(&sealed.json)
                .bind(&sealed.secrets)
                .bind(now)
                .bind(&id)
                .execute(&mut *tx)
                .await
                .map_err(conflict("a template with this name"))?,
            };
            if done.rows_affected() != 1 {
                // Dropping the transaction rolls it back.
                return Ok(false);
            }
        }
        tx.commit().await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::TemplateInput;

    fn spec(name: &str) -> TemplateSpec {
        let input: TemplateInput =
            serde_json::from_value(serde_json::json!({"name": name, "image": "app:1"}))
                .expect("input");
        input.validate().expect("valid")
    }

    async fn names(store: &Store) -> Vec<String> {
        let list = store.list_templates().await.expect("list");
        list.into_iter().map(|t| t.spec.name).collect()
    }

    /// A write that fails takes the writes before it back with it.
    async fn imports_are_all_or_nothing(url: &str) {
        let store = Store::connect(url).await.expect("store");
        let taken = store.create_template(&spec("taken")).await.expect("create");
        let (fresh, clash) = (spec("fresh"), spec("taken"));
        let writes = [
            TemplateWrite {
                id: None,
                spec: &fresh,
            },
            TemplateWrite {
                id: None,
                spec: &clash,
            },
        ];
        let failed = store.write_templates(&writes).await;
        assert!(
            matches!(failed, Err(super::super::StoreError::Conflict(_))),
            "{failed:?}"
        );
        assert_eq!(names(&store).await, ["taken"]);

        // A template deleted since the preview: nothing written, and said so.
        let gone = TemplateId::new();
        let renamed = spec("renamed");
        let writes = [
            TemplateWrite {
                id: None,
                spec: &fresh,
            },
            TemplateWrite {
                id: Some(&gone),
                spec: &renamed,
            },
        ];
        assert!(!store.write_templates(&writes).await.expect("no error"));
        assert_eq!(names(&store).await, ["taken"]);

        let writes = [
            TemplateWrite {
                id: None,
                spec: &fresh,
            },
            TemplateWrite {
                id: Some(&taken.id),
                spec: &renamed,
            },
        ];
        assert!(store.write_templates(&writes).await.expect("written"));
        assert_eq!(names(&store).await, ["fresh", "renamed"]);
    }

    on_both_engines!(imports_are_all_or_nothing);
}
