use super::views::TemplateView;
use crate::auth::{AdminUser, CurrentUser};
use crate::error::{ApiError, ApiJson, ApiResult};
use crate::state::AppState;
use crate::template::TemplateInput;
use axum::Json;
use axum::extract::{Path, State};
use http::StatusCode;

pub async fn list(
    State(state): State<AppState>,
    _: CurrentUser,
) -> ApiResult<Json<Vec<TemplateView>>> {
    let templates = state.store.list_templates().await?;
    Ok(Json(
        templates.into_iter().map(TemplateView::from).collect(),
    ))
}

pub async fn get(
    State(state): State<AppState>,
    _: CurrentUser,
    Path(id): Path<String>,
) -> ApiResult<Json<TemplateView>> {
    let template = state.store.find_template(&id).await?;
    template
        .map(|t| Json(t.into()))
        .ok_or_else(|| ApiError::not_found("template"))
}

pub async fn create(
    State(state): State<AppState>,
    _: AdminUser,
    ApiJson(input): ApiJson<TemplateInput>,
) -> ApiResult<(StatusCode, Json<TemplateView>)> {
    let spec = input.validate()?;
    let record = state.store.create_template(&spec).await?;
    tracing::info!(template = %spec.name, "template created");
    Ok((StatusCode::CREATED, Json(record.into())))
}

/// Replaces the template. Running sessions keep the spec they started with.
pub async fn update(
    State(state): State<AppState>,
    _: AdminUser,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<TemplateInput>,
) -> ApiResult<Json<TemplateView>> {
    let spec = input.validate()?;
    let existing = state
        .store
        .find_template(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("template"))?;
    let record = state.store.update_template(&existing.id, &spec).await?;
    record
        .map(|t| Json(t.into()))
        .ok_or_else(|| ApiError::not_found("template"))
}

pub async fn delete(
    State(state): State<AppState>,
    _: AdminUser,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let existing = state
        .store
        .find_template(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("template"))?;
    state.store.delete_template(&existing.id).await?;
    Ok(StatusCode::NO_CONTENT)
}
