//! Who is asking: users by bearer token or login cookie, agents by their
//! secret; and keeping that safe: throttled logins (`login`, `throttle`),
//! bounded password hashing (`password`), revocation of open streams
//! (`revoke`) and purging expired tokens (`purge`).

mod argon2id;
pub mod client_addr;
pub mod login;
pub mod login_guard;
pub mod oidc;
pub mod password;
pub mod purge;
pub mod revocations;
pub mod revoke;
pub mod secrets;
pub mod throttle;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::{SessionRecord, User};
use axum::extract::FromRequestParts;
use http::request::Parts;
use http::{HeaderMap, header};
use streamspace_protocol::{SessionId, UserId};

/// Name of the HttpOnly cookie the browser UI logs in with.
pub const COOKIE: &str = "streamspace_token";

/// The bearer token of a request: `Authorization: Bearer …`, else the cookie.
/// The flag says whether it came from the cookie (a browser).
pub fn request_token(headers: &HeaderMap) -> Option<(String, bool)> {
    if let Some(bearer) = bearer_token(headers) {
        return Some((bearer, false));
    }
    cookie(headers, COOKIE).map(|value| (value, true))
}

/// The value of the cookie `name`, if the request carries it.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(found, _)| *found == name)
        .map(|(_, value)| value.to_owned())
}

pub fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
        .filter(|t| !t.is_empty())
}

/// The logged-in user of a request.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub user: User,
    pub token_hash: String,
    /// Authenticated by the browser's cookie rather than a bearer header.
    pub via_cookie: bool,
}

impl CurrentUser {
    /// Who asked, as the audit trail names them (`user:alice`).
    pub fn actor(&self) -> String {
        format!("user:{}", self.user.username)
    }

    /// Whether this user may see and act on something owned by `owner_id`.
    pub fn may_access(&self, owner_id: &UserId) -> bool {
        self.user.is_admin() || self.user.id == *owner_id
    }
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // The access layer (`api/access.rs`) authenticated this request
        // already; only server code writes extensions.
        if let Some(user) = parts.extensions.get::<CurrentUser>() {
            return Ok(user.clone());
        }
        let Some((token, via_cookie)) = request_token(&parts.headers) else {
            return Err(ApiError::Unauthorized(
                "log in first: POST /api/v1/auth/login, then send Authorization: Bearer <token>"
                    .into(),
            ));
        };
        let token_hash = secrets::hash(&token);
        match state.store.user_for_token(&token_hash).await? {
            Some(user) => Ok(CurrentUser {
                user,
                token_hash,
                via_cookie,
            }),
            None => Err(ApiError::Unauthorized(
                "the token is invalid or expired: log in again".into(),
            )),
        }
    }
}

/// The session if this user may see it. Others get the same 404 as for a
/// session that does not exist, so ids cannot be probed.
pub async fn visible_session(
    state: &AppState,
    user: &CurrentUser,
    id: &SessionId,
) -> ApiResult<SessionRecord> {
    state
        .store
        .get_session(id)
        .await?
        .filter(|s| user.may_access(&s.user_id))
        .ok_or_else(|| ApiError::not_found("session"))
}

/// A logged-in admin.
#[derive(Debug, Clone)]
pub struct AdminUser(pub CurrentUser);

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let current = CurrentUser::from_request_parts(parts, state).await?;
        if current.user.is_admin() {
            Ok(AdminUser(current))
        } else {
            Err(ApiError::Forbidden("this needs an admin".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn bearer_wins_over_cookie() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; streamspace_token=fromcookie"),
        );
        assert_eq!(request_token(&headers), Some(("fromcookie".into(), true)));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer frombearer"),
        );
        assert_eq!(request_token(&headers), Some(("frombearer".into(), false)));
    }

    #[test]
    fn malformed_authorization_is_ignored() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer_token(&headers), None);
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer_token(&headers), None);
    }
}
