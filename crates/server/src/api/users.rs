use crate::auth::{AdminUser, CurrentUser, password};
use crate::error::{ApiError, ApiJson, ApiResult};
use crate::quota::{self, LimitsView, QuotaView};
use crate::state::AppState;
use crate::store::{Role, User};
use crate::validate::{check_password, check_username};
use axum::Json;
use axum::extract::{Path, State};
use http::StatusCode;
use serde::Deserialize;

pub async fn me(user: CurrentUser) -> Json<User> {
    Json(user.user)
}

pub async fn list(State(state): State<AppState>, _: AdminUser) -> ApiResult<Json<Vec<User>>> {
    Ok(Json(state.store.list_users().await?))
}

pub async fn get(
    State(state): State<AppState>,
    _: AdminUser,
    Path(id): Path<String>,
) -> ApiResult<Json<User>> {
    let user = state.store.get_user(&id).await?;
    user.map(Json).ok_or_else(|| ApiError::not_found("user"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    username: String,
    password: String,
    #[serde(default = "default_role")]
    role: Role,
}

fn default_role() -> Role {
    Role::User
}

pub async fn create(
    State(state): State<AppState>,
    _: AdminUser,
    ApiJson(input): ApiJson<NewUser>,
) -> ApiResult<(StatusCode, Json<User>)> {
    check_username(&input.username)?;
    check_password(&input.password)?;
    let hash = password::hash(input.password)
        .await
        .map_err(ApiError::Internal)?;
    let user = state
        .store
        .create_user(&input.username, &hash, input.role)
        .await?;
    tracing::info!(username = %user.username, role = user.role.as_str(), "user created");
    Ok((StatusCode::CREATED, Json(user)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserUpdate {
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    role: Option<Role>,
}

pub async fn update(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<UserUpdate>,
) -> ApiResult<Json<User>> {
    let user = state
        .store
        .get_user(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    if input.role.is_some_and(|r| r != Role::Admin) && user.id == admin.user.id {
        return Err(ApiError::Conflict(
            "you cannot take away your own admin role: ask another admin".into(),
        ));
    }
    let hash = match input.password {
        Some(password) => {
            check_password(&password)?;
            Some(password::hash(password).await.map_err(ApiError::Internal)?)
        }
        None => None,
    };
    if let Some(hash) = hash {
        state.store.set_user_password(&id, &hash).await?;
    }
    if let Some(role) = input.role {
        state.store.set_user_role(&id, role).await?;
    }
    let user = state.store.get_user(&id).await?;
    user.map(Json).ok_or_else(|| ApiError::not_found("user"))
}

pub async fn delete(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if id == admin.user.id {
        return Err(ApiError::Conflict(
            "you cannot delete your own account".into(),
        ));
    }
    let active = state.store.list_sessions(Some(&id), false).await?.len();
    if active > 0 {
        return Err(ApiError::Conflict(format!(
            "the user still has {active} session(s): terminate them first"
        )));
    }
    if state.store.delete_user(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("user"))
    }
}

pub async fn my_quota(
    State(state): State<AppState>,
    user: CurrentUser,
) -> ApiResult<Json<QuotaView>> {
    Ok(Json(quota::view(&state, &user.user.id).await?))
}

pub async fn get_quota(
    State(state): State<AppState>,
    _: AdminUser,
    Path(id): Path<String>,
) -> ApiResult<Json<QuotaView>> {
    let user = state
        .store
        .get_user(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    Ok(Json(quota::view(&state, &user.id).await?))
}

/// Sets the user's own limits; `null` (or absent) means the server default.
pub async fn set_quota(
    State(state): State<AppState>,
    _: AdminUser,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<LimitsView>,
) -> ApiResult<Json<QuotaView>> {
    let user = state
        .store
        .get_user(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    state
        .store
        .set_quota_override(&user.id, &input.into())
        .await?;
    tracing::info!(user = %user.username, "quota set");
    Ok(Json(quota::view(&state, &user.id).await?))
}
