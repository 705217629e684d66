//! Templates in the store, found by id or name. Their secrets are sealed
//! in the `secrets` column (`secrets.rs`).

use super::{Store, StoreResult, conflict, now_ms, sql};
use crate::template::TemplateSpec;
use sqlx::Row;
use sqlx::any::AnyRow;
use streamspace_protocol::TemplateId;

#[derive(Debug, Clone)]
pub struct TemplateRecord {
    pub id: TemplateId,
    pub spec: TemplateSpec,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Store {
    fn template_from_row(&self, row: &AnyRow) -> StoreResult<TemplateRecord> {
        let id: TemplateId = row.try_get("id")?;
        let secrets: Option<String> = row.try_get("secrets")?;
        let spec = row.try_get::<String, _>("spec")?;
        Ok(TemplateRecord {
            spec: self.open_template(&id, &spec, secrets.as_deref())?,
            id,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

const COLUMNS: &str = "id, spec, secrets, created_at, updated_at";
const NAME_CLASH: &str = "a template with this name";

impl Store {
    pub async fn create_template(&self, spec: &TemplateSpec) -> StoreResult<TemplateRecord> {
        let _turn = self.write_turn().await;
        let now = now_ms();
        let record = TemplateRecord {
            id: TemplateId::new(),
            spec: spec.clone(),
            created_at: now,
            updated_at: now,
        };
        let sealed = self.seal_template(&record.id, spec)?;
        sqlx::query(
            "INSERT INTO templates (id, name, spec, secrets, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(&record.id)
        .bind(&spec.name)
        .bind(&sealed.json)
        .bind(&sealed.secrets)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(conflict(NAME_CLASH))?;
        Ok(record)
    }

    pub async fn update_template(
        &self,
        id: &TemplateId,
        spec: &TemplateSpec,
    ) -> StoreResult<Option<TemplateRecord>> {
        let sealed = self.seal_template(id, spec)?;
        let _turn = self.write_turn().await;
        let done = sqlx::query(
            "UPDATE templates SET name = $1, spec = $2, secrets = $3, updated_at = $4 WHERE id = $5",
        )
        .bind(&spec.name)
        .bind(&sealed.json)
        .bind(&sealed.secrets)
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(conflict(NAME_CLASH))?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        self.get_template(id).await
    }

    pub async fn get_template(&self, id: &TemplateId) -> StoreResult<Option<TemplateRecord>> {
        let row = sqlx::query(sql(format!(
            "SELECT {COLUMNS} FROM templates WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(|r| self.template_from_row(r)).transpose()
    }

    /// A template by id or by name.
    pub async fn find_template(&self, id_or_name: &str) -> StoreResult<Option<TemplateRecord>> {
        let row = sqlx::query(sql(format!(
            "SELECT {COLUMNS} FROM templates WHERE id = $1 OR name = $1"
        )))
        .bind(id_or_name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(|r| self.template_from_row(r)).transpose()
    }

    pub async fn list_templates(&self) -> StoreResult<Vec<TemplateRecord>> {
        let rows = sqlx::query(sql(format!(
            "SELECT {COLUMNS} FROM templates ORDER BY name"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| self.template_from_row(r)).collect()
    }

    pub async fn delete_template(&self, id: &TemplateId) -> StoreResult<bool> {
        let _turn = self.write_turn().await;
        let done = sqlx::query("DELETE FROM templates WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
