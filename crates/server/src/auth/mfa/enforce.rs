//! The `mfa_required` setting (off, admins, everyone): a local user it
//! applies to who has not turned TOTP on can reach only what enrolling
//! needs (who they are, `/users/me/mfa…`, logging out); everything else
//! answers 403 saying to enrol first. Checked for every logged-in request,
//! in the `CurrentUser` extractor, so no route can forget it.

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::{MfaRequired, User};

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
    let settings = state.store.settings().await?;
    Ok(match settings.mfa_required {
        MfaRequired::Off => false,
        MfaRequired::Admins => user.is_admin(),
        MfaRequired::Everyone => true,
    })
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
