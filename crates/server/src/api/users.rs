//! `/api/v1/users`: accounts (admins), one's own account and password, quotas.

use crate::audit_log::admin::{Change, changed};
use crate::audit_log::{self, AuditEvent, Outcome};
use crate::auth::client_addr::ClientAddr;
use crate::auth::login::{Denied, authenticate, hash_password};
use crate::auth::{AdminUser, CurrentUser};
use crate::error::{ApiError, ApiJson, ApiPath, ApiResult, ErrorBody};
use crate::quota::{self, LimitsView, QuotaView};
use crate::state::AppState;
use crate::store::{AdminChange, Role, User};
use crate::validate::{FieldError, check_password, check_username};
use axum::Json;
use axum::extract::State;
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use streamspace_protocol::UserId;
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
    ApiPath(id): ApiPath<UserId>,
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
    AdminUser(admin): AdminUser,
    client: ClientAddr,
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
    let change = Change {
        by: &admin,
        client,
        kind: "user.create",
        target: format!("user:{}", user.username),
        detail: json!({"id": user.id, "role": user.role.as_str()}),
    };
    changed(&state, change).await;
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
///
/// A new password ends all of the user's logins; a new password or role
/// closes their open event, VNC and log streams. Not for yourself: your own
/// password is changed with `PUT /api/v1/users/me/password`, which asks for
/// the current one, and your own role only by another admin.
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
        (status = 409, description = "It is your own password (use `PUT /api/v1/users/me/password`) or admin role, the last admin's role, or a password for a single sign-on account", body = ErrorBody),
    ),
)]
pub async fn update(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    client: ClientAddr,
    ApiPath(id): ApiPath<UserId>,
    ApiJson(input): ApiJson<UserUpdate>,
) -> ApiResult<Json<User>> {
    if id == admin.user.id {
        check_own_update(&input)?;
    }
    let user = state
        .store
        .get_user(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    let hash = match input.password {
        Some(_) if !state.store.is_local_user(&user.username).await? => {
            return Err(ApiError::Conflict(format!(
                "{} signs in through single sign-on: a password would open a second way in \
                 that the identity provider does not control",
                user.username
            )));
        }
        Some(password) => {
            check_password(&password)?;
            Some(hash_password(&state, password).await?)
        }
        None => None,
    };
    // The role first: it is what may be refused (the last admin).
    if let Some(role) = input.role {
        admin_change(state.store.set_user_role(&id, role).await?, &user)?;
    }
    let password_set = hash.is_some();
    if let Some(hash) = hash {
        state.store.set_user_password(&id, &hash).await?;
        let ended = state.store.delete_user_tokens(&id, None).await?;
        tracing::info!(user = %user.username, ended, "password set by an admin");
    }
    state.revocations.user_changed(&id);
    let change = Change {
        by: &admin,
        client,
        kind: "user.update",
        target: format!("user:{}", user.username),
        detail: json!({
            "id": id,
            "role": input.role.map(Role::as_str),
            "password_set": password_set,
        }),
    };
    changed(&state, change).await;
    let user = state.store.get_user(&id).await?;
    user.map(Json).ok_or_else(|| ApiError::not_found("user"))
}

/// What an admin may not change on their own account here. Their password
/// needs the current one, or a stolen admin cookie could change it, keep
/// its own login and end the real admin's; their role needs another admin.
fn check_own_update(input: &UserUpdate) -> ApiResult<()> {
    if input.password.is_some() {
        return Err(ApiError::Conflict(
            "to change your own password use PUT /api/v1/users/me/password, \
             which asks for your current one"
                .into(),
        ));
    }
    if input.role.is_some_and(|r| r != Role::Admin) {
        return Err(ApiError::Conflict(
            "you cannot take away your own admin role: ask another admin".into(),
        ));
    }
    Ok(())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    current_password: String,
    /// At least 8 characters.
    #[schema(min_length = 8)]
    new_password: String,
}

/// Change your password
///
/// Needs the current password, checked (and throttled) as a login is. Your
/// other logins end, with their open streams; the one making this request
/// stays logged in.
#[utoipa::path(
    put,
    operation_id = "changeMyPassword",
    path = "/api/v1/users/me/password",
    tag = "users",
    security(("bearer" = []), ("cookie" = [])),
    request_body = PasswordChange,
    responses(
        (status = 204, description = "Changed; your other logins ended"),
        (status = 400, description = "`current_password` is empty, or `new_password` too short", body = ErrorBody),
        (status = 403, description = "The current password is wrong", body = ErrorBody),
        (status = 429, description = "Too many wrong passwords; `Retry-After` says when to try again", body = ErrorBody,
            headers(("retry-after" = u64, description = "Seconds to wait"))),
        (status = 503, description = "Too many passwords are being checked; `Retry-After` says when to try again", body = ErrorBody,
            headers(("retry-after" = u64, description = "Seconds to wait"))),
    ),
)]
pub async fn change_my_password(
    State(state): State<AppState>,
    me: CurrentUser,
    client: ClientAddr,
    ApiJson(input): ApiJson<PasswordChange>,
) -> ApiResult<StatusCode> {
    // A blank field is a form left empty, not a guess to count.
    if input.current_password.is_empty() {
        return Err(FieldError::new("current_password", "enter your current password").into());
    }
    check_password(&input.new_password).map_err(|e| FieldError::new("new_password", e.message))?;
    let username = &me.user.username;
    match authenticate(&state, username, input.current_password, client).await {
        Ok(verified) if verified.user.id == me.user.id => {}
        Ok(_) | Err(Denied::Wrong) => {
            password_change(&state, &me, client, Outcome::Failure).await;
            return Err(ApiError::Forbidden(
                "the current password is wrong: enter the one you sign in with".into(),
            ));
        }
        Err(Denied::Refused(err)) => return Err(err),
    }
    let hash = hash_password(&state, input.new_password).await?;
    state.store.set_user_password(&me.user.id, &hash).await?;
    let ended = state
        .store
        .delete_user_tokens(&me.user.id, Some(&me.token_hash))
        .await?;
    state.revocations.user_changed(&me.user.id);
    tracing::info!(user = %username, ended, "password changed");
    password_change(&state, &me, client, Outcome::Success).await;
    Ok(StatusCode::NO_CONTENT)
}

/// `user.password`: a user changed their own password, or gave a wrong
/// current one (a failure, like a failed login).
async fn password_change(state: &AppState, me: &CurrentUser, client: ClientAddr, outcome: Outcome) {
    let event = AuditEvent::new(me.actor(), "user.password")
        .target(format!("user:{}", me.user.username))
        .outcome(outcome)
        .client(client.0);
    audit_log::record(state, event).await;
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
        (status = 409, description = "They still have sessions, it is you, or they are the last admin", body = ErrorBody),
    ),
)]
pub async fn delete(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    client: ClientAddr,
    ApiPath(id): ApiPath<UserId>,
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
    let user = state
        .store
        .get_user(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    admin_change(state.store.delete_user(&id).await?, &user)?;
    state.revocations.user_changed(&id);
    tracing::info!(user = %user.username, "user deleted");
    let change = Change {
        by: &admin,
        client,
        kind: "user.delete",
        target: format!("user:{}", user.username),
        detail: json!({"id": id}),
    };
    changed(&state, change).await;
    Ok(StatusCode::NO_CONTENT)
}

/// A demotion or deletion the store refused: two admins removing each other
/// at once would otherwise leave none.
fn admin_change(change: AdminChange, user: &User) -> ApiResult<()> {
    match change {
        AdminChange::Done => Ok(()),
        AdminChange::NoSuchUser => Err(ApiError::not_found("user")),
        AdminChange::LastAdmin => Err(ApiError::Conflict(format!(
            "{} is the last admin: make another user an admin first",
            user.username
        ))),
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
    ApiPath(id): ApiPath<UserId>,
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
    AdminUser(admin): AdminUser,
    client: ClientAddr,
    ApiPath(id): ApiPath<UserId>,
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
    let change = Change {
        by: &admin,
        client,
        kind: "user.quota",
        target: format!("user:{}", user.username),
        detail: json!({"id": user.id, "quota": input}),
    };
    changed(&state, change).await;
    Ok(Json(quota::view(&state, &user.id).await?))
}
