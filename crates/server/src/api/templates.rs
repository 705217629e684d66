//! `/api/v1/templates`: the catalog sessions are made from (admins write it,
//! users see what they may start), and its import and export as catalog
//! files (`template::catalog`).

use super::views::TemplateView;
use crate::audit_log::admin::{Change, changed};
use crate::auth::client_addr::ClientAddr;
use crate::auth::{AdminUser, CurrentUser};
use crate::error::{ApiBytes, ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, ErrorBody};
use crate::state::AppState;
use crate::store::{TemplateRecord, TemplateWrite};
use crate::template::TemplateInput;
use crate::template::catalog::{
    self, CatalogFile, CatalogFormat, CatalogProblem, ExportFormat, ImportAction, ImportSummary,
    Planned,
};
use crate::tenancy::Membership;
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde_json::json;

/// List templates
///
/// Admins see each template whole; others see it without `env` and
/// `secret_env`, which may hold what only sessions should know, and only
/// the templates whose `allowed_groups` is empty or holds one of theirs.
#[utoipa::path(
    get,
    operation_id = "listTemplates",
    path = "/api/v1/templates",
    tag = "templates",
    security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, description = "The catalog", body = Vec<TemplateView>)),
)]
pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
) -> ApiResult<Json<Vec<TemplateView>>> {
    let templates = state.store.list_templates().await?;
    let membership = Membership::of(&state, &user.user).await?;
    Ok(Json(
        templates
            .into_iter()
            .filter(|t| membership.may_use(&t.spec))
            .map(|t| TemplateView::shown_to(t, membership.admin))
            .collect(),
    ))
}

/// Get a template
///
/// Without `env` and `secret_env` for users who are not admins; a template
/// limited to groups the user is not in is not found.
#[utoipa::path(
    get,
    operation_id = "getTemplate",
    path = "/api/v1/templates/{id}",
    tag = "templates",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The template's id or name")),
    responses(
        (status = 200, description = "The template", body = TemplateView),
        (status = 404, description = "No such template", body = ErrorBody),
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<TemplateView>> {
    let template = state.store.find_template(&id).await?;
    let membership = Membership::of(&state, &user.user).await?;
    template
        .filter(|t| membership.may_use(&t.spec))
        .map(|t| Json(TemplateView::shown_to(t, membership.admin)))
        .ok_or_else(|| ApiError::not_found("template"))
}

/// Create a template (admin)
#[utoipa::path(
    post,
    operation_id = "createTemplate",
    path = "/api/v1/templates",
    tag = "templates",
    security(("bearer" = []), ("cookie" = [])),
    request_body = TemplateInput,
    responses(
        (status = 201, description = "Created", body = TemplateView),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    client: ClientAddr,
    ApiJson(input): ApiJson<TemplateInput>,
) -> ApiResult<(StatusCode, Json<TemplateView>)> {
    let mut spec = input.validate()?;
    spec.keep_registry_password(None)?;
    let record = state.store.create_template(&spec).await?;
    tracing::info!(template = %spec.name, "template created");
    let change = template_change(&admin, client, "template.create", &record);
    changed(&state, change).await;
    Ok((StatusCode::CREATED, Json(record.into())))
}

/// Replace a template (admin)
///
/// Replaces the template. Running sessions keep the spec they started with.
#[utoipa::path(
    put,
    operation_id = "replaceTemplate",
    path = "/api/v1/templates/{id}",
    tag = "templates",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The template's id or name")),
    request_body = TemplateInput,
    responses(
        (status = 200, description = "The new template", body = TemplateView),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such template", body = ErrorBody),
        (status = 409, description = "The new name is taken", body = ErrorBody),
    ),
)]
pub async fn update(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    client: ClientAddr,
    ApiPath(id): ApiPath<String>,
    ApiJson(input): ApiJson<TemplateInput>,
) -> ApiResult<Json<TemplateView>> {
    let mut spec = input.validate()?;
    let existing = state
        .store
        .find_template(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("template"))?;
    spec.keep_registry_password(Some(&existing.spec))?;
    let record = state
        .store
        .update_template(&existing.id, &spec)
        .await?
        .ok_or_else(|| ApiError::not_found("template"))?;
    let mut change = template_change(&admin, client, "template.update", &record);
    if existing.spec.name != record.spec.name {
        change.detail["renamed_from"] = json!(existing.spec.name);
    }
    changed(&state, change).await;
    Ok(Json(record.into()))
}

/// A change to one template, named by its name (ids in the detail).
fn template_change<'a>(
    admin: &'a CurrentUser,
    client: ClientAddr,
    kind: &'static str,
    template: &TemplateRecord,
) -> Change<'a> {
    Change {
        by: admin,
        client,
        kind,
        target: format!("template:{}", template.spec.name),
        detail: json!({"id": template.id}),
    }
}

/// Delete a template (admin)
#[utoipa::path(
    delete,
    operation_id = "deleteTemplate",
    path = "/api/v1/templates/{id}",
    tag = "templates",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The template's id or name")),
    responses(
        (status = 204, description = "Deleted; its sessions keep running"),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such template", body = ErrorBody),
    ),
)]
pub async fn delete(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    client: ClientAddr,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let existing = state
        .store
        .find_template(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("template"))?;
    state.store.delete_template(&existing.id).await?;
    state.hub.prepulls.forget(&existing.id);
    let change = template_change(&admin, client, "template.delete", &existing);
    changed(&state, change).await;
    Ok(StatusCode::NO_CONTENT)
}

/// `?dry_run=true`: preview an import.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// Only say what the import would do; write nothing.
    #[serde(default)]
    dry_run: bool,
}

/// `?format=yaml|json` for an export (default `yaml`).
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    #[serde(default)]
    #[param(inline)]
    format: ExportFormat,
}

/// The answer to a catalog that cannot be imported: the first problem as
/// every error states one (`error`, `field`), and every problem found
/// (one per broken entry, with its line). Refusals of the request itself
/// (its query, its `Content-Type`) have no `problems`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct CatalogErrorBody {
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<CatalogProblem>,
}

/// Why an import was refused: as any API error, or with the catalog's
/// problems.
pub enum ImportError {
    Api(ApiError),
    Catalog(Vec<CatalogProblem>),
}

impl<E: Into<ApiError>> From<E> for ImportError {
    fn from(err: E) -> Self {
        ImportError::Api(err.into())
    }
}

impl IntoResponse for ImportError {
    fn into_response(self) -> Response {
        match self {
            ImportError::Api(err) => err.into_response(),
            ImportError::Catalog(problems) => {
                let first = problems.first();
                let body = CatalogErrorBody {
                    error: first.map_or_else(String::new, CatalogProblem::describe),
                    field: first.and_then(|p| p.field.clone()),
                    problems,
                };
                (StatusCode::BAD_REQUEST, Json(body)).into_response()
            }
        }
    }
}

/// Import a catalog (admin)
///
/// Creates and replaces templates from a catalog file (docs/CATALOG.md),
/// matched by `name`; templates not in the catalog are left alone. All or
/// nothing: one broken entry and nothing is written. An entry without
/// `secret_env` keeps the existing template's secret values. With
/// `?dry_run=true`, only says what it would do.
#[utoipa::path(
    post,
    operation_id = "importTemplates",
    path = "/api/v1/templates/import",
    tag = "templates",
    security(("bearer" = []), ("cookie" = [])),
    params(ImportQuery),
    request_body(
        description = "The catalog, as JSON or YAML (by Content-Type), at most 4 MiB",
        content(
            (CatalogFile = "application/json"),
            (CatalogFile = "application/yaml"),
        ),
    ),
    responses(
        (status = 200, description = "What was (or would be) created, updated and left unchanged", body = ImportSummary),
        (status = 400, description = "The catalog cannot be imported: every problem, with its entry, field and line", body = CatalogErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 409, description = "A template changed during the import; nothing was written", body = ErrorBody),
        (status = 413, description = "The catalog is larger than 4 MiB", body = ErrorBody),
    ),
)]
pub async fn import(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    client: ClientAddr,
    ApiQuery(query): ApiQuery<ImportQuery>,
    headers: HeaderMap,
    ApiBytes(body): ApiBytes,
) -> Result<Json<ImportSummary>, ImportError> {
    let format = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(CatalogFormat::from_content_type)
        .ok_or_else(|| {
            ApiError::BadRequest(
                "send the catalog with Content-Type: application/json or application/yaml".into(),
            )
        })?;
    let existing = state.store.list_templates().await?;
    // Parsing up to 4 MiB of YAML is CPU work: off the async threads.
    let planned = tokio::task::spawn_blocking(move || plan_import(&body, format, existing))
        .await
        .map_err(|e| ApiError::Internal(format!("the import's planning failed: {e}")))?
        .map_err(ImportError::Catalog)?;
    let summary = ImportSummary::of(&planned, query.dry_run);
    if !query.dry_run {
        write(&state, &planned).await?;
        changed(&state, import_change(&admin, client, &summary)).await;
    }
    Ok(Json(summary))
}

/// The most template names one import's audit event lists per action.
const IMPORT_NAMES: usize = 100;

/// `template.import`: how many templates an import created, updated and
/// left alone, and (the first hundred of) their names.
fn import_change<'a>(
    admin: &'a CurrentUser,
    client: ClientAddr,
    summary: &ImportSummary,
) -> Change<'a> {
    let names = |action: ImportAction| -> Vec<&str> {
        let items = summary.templates.iter().filter(|t| t.action == action);
        items.map(|t| t.name.as_str()).take(IMPORT_NAMES).collect()
    };
    Change {
        by: admin,
        client,
        kind: "template.import",
        target: "templates".into(),
        detail: json!({
            "created": summary.created,
            "updated": summary.updated,
            "unchanged": summary.unchanged,
            "created_names": names(ImportAction::Create),
            "updated_names": names(ImportAction::Update),
        }),
    }
}

fn plan_import(
    body: &[u8],
    format: CatalogFormat,
    existing: Vec<TemplateRecord>,
) -> Result<Vec<Planned>, Vec<CatalogProblem>> {
    let text = std::str::from_utf8(body).map_err(|e| {
        vec![CatalogProblem::new(format!(
            "the catalog is not UTF-8 text (invalid byte at offset {})",
            e.valid_up_to()
        ))]
    })?;
    let parsed = catalog::parse(text, format).map_err(|p| vec![p])?;
    catalog::plan(parsed, existing)
}

/// Writes what changes, in one transaction.
async fn write(state: &AppState, planned: &[Planned]) -> ApiResult<()> {
    let writes: Vec<TemplateWrite<'_>> = planned
        .iter()
        .filter(|p| p.item.action != ImportAction::Unchanged)
        .map(|p| TemplateWrite {
            id: p.existing.as_ref(),
            spec: &p.spec,
        })
        .collect();
    if writes.is_empty() {
        return Ok(());
    }
    if !state.store.write_templates(&writes).await? {
        return Err(ApiError::Conflict(
            "a template of the catalog was deleted during the import; nothing was written: \
             preview the import again"
                .into(),
        ));
    }
    tracing::info!(templates = writes.len(), "catalog imported");
    Ok(())
}

/// Export the templates as a catalog (admin)
///
/// Every template, in the format imports read, without `secret_env`
/// values (importing the file back keeps the server's).
#[utoipa::path(
    get,
    operation_id = "exportTemplates",
    path = "/api/v1/templates/export",
    tag = "templates",
    security(("bearer" = []), ("cookie" = [])),
    params(ExportQuery),
    responses(
        (status = 200, description = "The catalog file", content(
            (CatalogFile = "application/json"),
            (CatalogFile = "application/yaml"),
        )),
        (status = 400, description = "An unknown format", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ),
)]
pub async fn export(
    State(state): State<AppState>,
    _: AdminUser,
    ApiQuery(query): ApiQuery<ExportQuery>,
) -> ApiResult<Response> {
    let templates = state.store.list_templates().await?;
    let specs: Vec<_> = templates.into_iter().map(|t| t.spec).collect();
    let text = catalog::export(&specs, query.format).map_err(ApiError::Internal)?;
    let disposition = format!(
        "attachment; filename=\"streamspace-catalog.{}\"",
        query.format.extension()
    );
    Ok((
        [
            (
                http::header::CONTENT_TYPE,
                query.format.content_type().to_owned(),
            ),
            (http::header::CONTENT_DISPOSITION, disposition),
        ],
        text,
    )
        .into_response())
}
