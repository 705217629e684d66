//! `/api/v1/templates`: the catalog sessions are made from (admins write it,
//! users see what they may start).

use super::views::TemplateView;
use crate::auth::{AdminUser, CurrentUser};
use crate::error::{ApiError, ApiJson, ApiPath, ApiResult, ErrorBody};
use crate::state::AppState;
use crate::template::TemplateInput;
use axum::Json;
use axum::extract::State;
use http::StatusCode;

/// List templates
///
/// Admins see each template whole; others see it without `env` and
/// `secret_env`, which may hold what only sessions should know.
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
    let admin = user.user.is_admin();
    Ok(Json(
        templates
            .into_iter()
            .map(|t| TemplateView::shown_to(t, admin))
            .collect(),
    ))
}

/// Get a template
///
/// Without `env` and `secret_env` for users who are not admins.
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
    let admin = user.user.is_admin();
    template
        .map(|t| Json(TemplateView::shown_to(t, admin)))
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
    _: AdminUser,
    ApiJson(input): ApiJson<TemplateInput>,
) -> ApiResult<(StatusCode, Json<TemplateView>)> {
    let mut spec = input.validate()?;
    spec.keep_registry_password(None)?;
    let record = state.store.create_template(&spec).await?;
    tracing::info!(template = %spec.name, "template created");
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
    _: AdminUser,
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
    let record = state.store.update_template(&existing.id, &spec).await?;
    record
        .map(|t| Json(t.into()))
        .ok_or_else(|| ApiError::not_found("template"))
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
    _: AdminUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let existing = state
        .store
        .find_template(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("template"))?;
    state.store.delete_template(&existing.id).await?;
    state.hub.prepulls.forget(&existing.id);
    Ok(StatusCode::NO_CONTENT)
}
