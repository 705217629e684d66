use crate::auth::login::hash_password;
use crate::auth::{AdminUser, CurrentUser};
use crate::error::{ApiError, ApiJson, ApiResult, ErrorBody};
use crate::quota::{self, LimitsView, QuotaView};
use crate::state::AppState;
use crate::store::{Role, User};
use crate::validate::{check_password, check_username};
use axum::Json;
use axum::extract::{Path, State};
use http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;

/// Who you are
#[utoipa::path(
    get,
    operation_id = "getMe",
    path = "/api/v1/users/me",
    tag = "users",
    security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, description = "The logged-in user", body = User)),
)]
pub async fn me(user: CurrentUser) -> Json<User> {
    Json(user.user)
}

/// List users (admin)
#[utoipa::path(
    get,
    operation_id = "listUsers",
    path = "/api/v1/users",
    tag = "users",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Every user", body = Vec<User>),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ),
)]
pub async fn list(State(state): State<AppState>, _: AdminUser) -> ApiResult<Json<Vec<User>>> {
    Ok(Json(state.store.list_users().await?))
}

/// Get a user (admin)
#[utoipa::path(
    get,
    operation_id = "getUser",
    path = "/api/v1/users/{id}",
    tag = "users",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The user", body = User),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    _: AdminUser,
    Path(id): Path<String>,
) -> ApiResult<Json<User>> {
    let user = state.store.get_user(&id).await?;
    user.map(Json).ok_or_else(|| ApiError::not_found("user"))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    #[schema(pattern = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
    username: String,
    #[schema(min_length = 8)]
    password: String,
    /// Defaults to `user`.
    #[serde(default = "default_role")]
    role: Role,
}

fn default_role() -> Role {
    Role::User
}

/// Create a user (admin)
#[utoipa::path(
    post,
    operation_id = "createUser",
    path = "/api/v1/users",
    tag = "users",
    security(("bearer" = []), ("cookie" = [])),
    request_body = NewUser,
    responses(
        (status = 201, description = "Created", body = User),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 409, description = "The username is taken", body = ErrorBody),
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    _: AdminUser,
    ApiJson(input): ApiJson<NewUser>,
) -> ApiResult<(StatusCode, Json<User>)> {
    check_username(&input.username)?;
    check_password(&input.password)?;
    let hash = hash_password(&state, input.password).await?;
    let user = state
        .store
        .create_user(&input.username, &hash, input.role)
        .await?;
    tracing::info!(username = %user.username, role = user.role.as_str(), "user created");
    Ok((StatusCode::CREATED, Json(user)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserUpdate {
    /// At least 8 characters.
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    role: Option<Role>,
}

/// Change a user's role or password (admin)
#[utoipa::path(
    put,
    operation_id = "updateUser",
    path = "/api/v1/users/{id}",
    tag = "users",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The user's id")),
    request_body = UserUpdate,
    responses(
        (status = 200, description = "The changed user", body = User),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 409, description = "You cannot take away your own admin role", body = ErrorBody),
    ),
)]
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
            Some(hash_password(&state, password).await?)
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

/// Delete a user (admin)
#[utoipa::path(
    delete,
    operation_id = "deleteUser",
    path = "/api/v1/users/{id}",
    tag = "users",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The user's id")),
    responses(
        (status = 204, description = "Deleted, with their tokens and session history"),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 409, description = "They still have sessions, or it is you", body = ErrorBody),
    ),
)]
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

/// Your quota
#[utoipa::path(
    get,
    operation_id = "getMyQuota",
    path = "/api/v1/users/me/quota",
    tag = "users",
    security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, description = "Your limits and usage", body = QuotaView)),
)]
pub async fn my_quota(
    State(state): State<AppState>,
    user: CurrentUser,
) -> ApiResult<Json<QuotaView>> {
    Ok(Json(quota::view(&state, &user.user.id).await?))
}

/// A user's quota (admin)
#[utoipa::path(
    get,
    operation_id = "getUserQuota",
    path = "/api/v1/users/{id}/quota",
    tag = "users",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The user's id")),
    responses(
        (status = 200, description = "Their limits and usage", body = QuotaView),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    ),
)]
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

/// Set a user's quota (admin)
///
/// Sets the user's own limits; `null` (or absent) means the server default.
#[utoipa::path(
    put,
    operation_id = "setUserQuota",
    path = "/api/v1/users/{id}/quota",
    tag = "users",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The user's id")),
    request_body = LimitsView,
    responses(
        (status = 200, description = "Their limits and usage", body = QuotaView),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    ),
)]
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
