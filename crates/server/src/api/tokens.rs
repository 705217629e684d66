//! `/api/v1/users/me/tokens`: named API tokens for scripts and the CLI.
//! The secret is answered once, at creation; lists show names and times.

use super::views::time;
use crate::audit_log::{self, AuditEvent, Outcome};
use crate::auth::client_addr::ClientAddr;
use crate::auth::{CurrentUser, secrets};
use crate::error::{ApiError, ApiJson, ApiPath, ApiResult, ErrorBody};
use crate::state::AppState;
use crate::store::{ApiTokenRecord, NewTokenRefusal, now_ms};
use crate::validate::FieldError;
use axum::Json;
use axum::extract::State;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;
use utoipa::ToSchema;

/// Most live API tokens one user may hold.
pub const MAX_TOKENS_PER_USER: u32 = 50;
/// Longest name, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// How long a token lives when `expires_in` is not given.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(90 * 24 * 3600);
/// The longest `expires_in`: a forgotten token dies within a year.
pub const MAX_LIFETIME: Duration = Duration::from_secs(366 * 24 * 3600);
/// The shortest `expires_in`.
pub const MIN_LIFETIME: Duration = Duration::from_secs(60);

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "ci deploys", "expires_in": "30d"}))]
pub struct NewToken {
    /// What it is for, unique among your tokens (1–64 characters).
    #[schema(min_length = 1, max_length = 64)]
    name: String,
    /// How long it stays usable, from 1 minute to 366 days (default 90d).
    #[serde(default)]
    #[schema(pattern = r"^[0-9]+(s|m|h|d|w)$", example = "30d")]
    expires_in: Option<String>,
}

/// An API token, without its secret.
#[derive(Serialize, ToSchema)]
pub struct ApiToken {
    id: String,
    name: String,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    expires_at: String,
    /// Within a minute; `null` if never used.
    #[schema(format = DateTime)]
    last_used_at: Option<String>,
}

impl From<ApiTokenRecord> for ApiToken {
    fn from(record: ApiTokenRecord) -> Self {
        Self {
            id: record.id,
            name: record.name,
            created_at: time(record.created_at),
            expires_at: time(record.expires_at),
            last_used_at: record.last_used_at.map(time),
        }
    }
}

/// A new API token, with its secret (shown this once).
#[derive(Serialize, ToSchema)]
pub struct CreatedToken {
    id: String,
    name: String,
    /// Send as `Authorization: Bearer <token>`. Not shown again.
    token: String,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    expires_at: String,
}

/// Create an API token
///
/// For scripts and the CLI: it acts as you, with your role, until it
/// expires or you revoke it (or log out everywhere, or change your
/// password). Needs a login (password, SSO): an API token cannot create
/// another.
#[utoipa::path(
    post,
    operation_id = "createApiToken",
    path = "/api/v1/users/me/tokens",
    tag = "users",
    security(("bearer" = []), ("cookie" = [])),
    request_body = NewToken,
    responses(
        (status = 201, description = "Created; `token` is shown only now", body = CreatedToken),
        (status = 400, description = "`name` or `expires_in` is not valid", body = ErrorBody),
        (status = 403, description = "The request came with an API token", body = ErrorBody),
        (status = 409, description = "You have a token of this name, or the most tokens allowed", body = ErrorBody),
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    me: CurrentUser,
    client: ClientAddr,
    ApiJson(input): ApiJson<NewToken>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    let name = check_name(&input.name)?;
    let lifetime = check_lifetime(input.expires_in.as_deref())?;
    if state.store.is_named_token(&me.token_hash).await? {
        return Err(ApiError::Forbidden(
            "an API token cannot create API tokens: log in (POST /api/v1/auth/login) and \
             create it with that login"
                .into(),
        ));
    }
    let token = secrets::generate(secrets::SecretKind::ApiToken);
    let expires_at = now_ms() + lifetime.as_millis() as i64;
    let created = state
        .store
        .create_named_token(
            &me.user.id,
            &secrets::hash(&token),
            name,
            expires_at,
            MAX_TOKENS_PER_USER,
        )
        .await?
        .map_err(|refusal| refused(refusal, name))?;
    tracing::info!(user = %me.user.username, token = %created.id, "API token created");
    let event = AuditEvent::new(me.actor(), "token.create")
        .target(format!("token:{}", created.id))
        .outcome(Outcome::Success)
        .client(client.0)
        .detail(json!({"name": created.name, "expires_at": time(created.expires_at)}));
    audit_log::record(&state, event).await;
    let answer = CreatedToken {
        id: created.id,
        name: created.name,
        token,
        created_at: time(created.created_at),
        expires_at: time(created.expires_at),
    };
    Ok((StatusCode::CREATED, Json(answer)))
}

fn refused(refusal: NewTokenRefusal, name: &str) -> ApiError {
    match refusal {
        NewTokenRefusal::TooMany { limit } => ApiError::Conflict(format!(
            "you have {limit} API tokens, the most allowed: revoke one you no longer use first"
        )),
        NewTokenRefusal::NameTaken => ApiError::Conflict(format!(
            "you already have an API token named {name:?}: choose another name, or revoke it first"
        )),
        NewTokenRefusal::NoSuchUser => {
            ApiError::Unauthorized("your account no longer exists".into())
        }
    }
}

/// The name, trimmed: 1 to 64 printable characters.
fn check_name(name: &str) -> Result<&str, FieldError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(FieldError::new(
            "name",
            "give the token a name that says what it is for",
        ));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(FieldError::new(
            "name",
            format!("at most {MAX_NAME_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(FieldError::new(
            "name",
            "no control characters (tabs, newlines)",
        ));
    }
    Ok(name)
}

/// `expires_in` as a duration within the bounds (default 90 days).
fn check_lifetime(text: Option<&str>) -> Result<Duration, FieldError> {
    let Some(text) = text else {
        return Ok(DEFAULT_LIFETIME);
    };
    let lifetime = humantime::parse_duration(text).map_err(|_| {
        FieldError::new(
            "expires_in",
            format!("{text:?} is not a duration such as \"30d\" or \"12h\""),
        )
    })?;
    if !(MIN_LIFETIME..=MAX_LIFETIME).contains(&lifetime) {
        return Err(FieldError::new(
            "expires_in",
            "from 1 minute (\"1m\") to 366 days (\"366d\")",
        ));
    }
    Ok(lifetime)
}

/// List your API tokens
///
/// Live ones, newest first; never their secrets.
#[utoipa::path(
    get,
    operation_id = "listApiTokens",
    path = "/api/v1/users/me/tokens",
    tag = "users",
    security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, description = "Your API tokens", body = Vec<ApiToken>)),
)]
pub async fn list(
    State(state): State<AppState>,
    me: CurrentUser,
) -> ApiResult<Json<Vec<ApiToken>>> {
    let tokens = state.store.list_named_tokens(&me.user.id).await?;
    Ok(Json(tokens.into_iter().map(ApiToken::from).collect()))
}

/// Revoke an API token
///
/// It stops working at once, and the event, log and VNC streams opened
/// with it close.
#[utoipa::path(
    delete,
    operation_id = "revokeApiToken",
    path = "/api/v1/users/me/tokens/{id}",
    tag = "users",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The token's id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "You have no API token with this id", body = ErrorBody),
    ),
)]
pub async fn revoke(
    State(state): State<AppState>,
    me: CurrentUser,
    client: ClientAddr,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    if id.len() > 64 {
        return Err(ApiError::not_found("API token"));
    }
    let Some(revoked) = state.store.revoke_named_token(&me.user.id, &id).await? else {
        return Err(ApiError::not_found("API token"));
    };
    state.revocations.user_changed(&me.user.id);
    tracing::info!(user = %me.user.username, token = %revoked.id, "API token revoked");
    let event = AuditEvent::new(me.actor(), "token.revoke")
        .target(format!("token:{}", revoked.id))
        .outcome(Outcome::Success)
        .client(client.0)
        .detail(json!({"name": revoked.name}));
    audit_log::record(&state, event).await;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(check_name("  ci  ").map_err(|e| e.message), Ok("ci"));
        assert_eq!(check_name(" ").map_err(|e| e.field), Err("name".into()));
        assert!(check_name(&"x".repeat(65)).is_err());
        assert!(check_name(&"é".repeat(64)).is_ok());
        assert!(check_name("a\nb").is_err());
    }

    #[test]
    fn lifetimes_are_bounded() {
        assert_eq!(check_lifetime(None), Ok(DEFAULT_LIFETIME));
        assert_eq!(check_lifetime(Some("1m")), Ok(MIN_LIFETIME));
        assert_eq!(check_lifetime(Some("366d")), Ok(MAX_LIFETIME));
        for bad in ["59s", "367d", "soon", "", "-1d"] {
            let err = check_lifetime(Some(bad)).expect_err(bad);
            assert_eq!(err.field, "expires_in", "{bad}");
        }
    }
}
