//! The `mfa_required` setting (off, admins, everyone): a local user it
//! applies to who has not turned TOTP on can reach only what enrolling
//! needs (who they are, `/users/me/mfa…`, logging out); everything else
//! answers 403 saying to enrol first. Checked for every logged-in request,
//! in the `CurrentUser` extractor, so no route can forget it.
//!
//! TOTP here is the second factor of a password. An account with no
//! password (single sign-on only: its stored hash is no argon2 hash) signs
//! in through its identity provider, whose own MFA applies; the setting
//! does not hold it, and it cannot enrol.

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::{MfaRequired, User};
use argon2::password_hash::phc::PasswordHash;

/// What a user who must enrol may still reach.
fn allowed_before_enrolment(path: &str) -> bool {
    matches!(
        path,
        "/api/v1/users/me"
            | "/api/v1/users/me/mfa"
            | "/api/v1/auth/logout"
            | "/api/v1/auth/logout-all"
    ) || path.starts_with("/api/v1/users/me/mfa/")
}

/// Whether the setting asks `user` to have MFA.
pub async fn applies_to(state: &AppState, user: &User) -> ApiResult<bool> {
    let settings = state.settings.get().await?;
    let asked = match settings.mfa_required {
        MfaRequired::Off => false,
        MfaRequired::Admins => user.is_admin(),
        MfaRequired::Everyone => true,
    };
    Ok(asked && has_password(state, user).await?)
}

/// Whether `user` signs in with a password (their stored hash is a PHC
/// string, as every password hash is).
pub async fn has_password(state: &AppState, user: &User) -> ApiResult<bool> {
    let hash = state.store.password_hash(&user.id).await?;
    Ok(hash.is_some_and(|h| PasswordHash::new(&h).is_ok()))
}

/// Refuses a request to `path` from a user who must enrol first.
pub async fn check(state: &AppState, user: &User, path: &str) -> ApiResult<()> {
    if allowed_before_enrolment(path) || !applies_to(state, user).await? {
        return Ok(());
    }
    if state.store.has_totp(&user.id).await? {
        return Ok(());
    }
    Err(ApiError::Forbidden(
        "enrol MFA first: the administrator requires it for your account. Open your \
         account page in the web UI and add an authenticator app (or POST \
         /api/v1/users/me/mfa/totp, then confirm a code)"
            .into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_enrolment_paths_are_open() {
        for open in [
            "/api/v1/users/me",
            "/api/v1/users/me/mfa",
            "/api/v1/users/me/mfa/totp",
            "/api/v1/users/me/mfa/totp/confirm",
            "/api/v1/auth/logout",
            "/api/v1/auth/logout-all",
        ] {
            assert!(allowed_before_enrolment(open), "{open}");
        }
        for closed in [
            "/api/v1/sessions",
            "/api/v1/users/me/password",
            "/api/v1/users/me/mfaX",
            "/api/v1/users",
            "/api/v1/settings",
        ] {
            assert!(!allowed_before_enrolment(closed), "{closed}");
        }
    }
}
