//! Who may open a viewer (screen or sound) on a session, and as what: the
//! owner and admins with everything the template allows; guests (sessions
//! shared with them) with what their share allows.

use super::rfb_input::{InputFilter, InputRules};
use crate::auth::CurrentUser;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::SessionRecord;
use streamspace_protocol::SessionId;

/// Why the viewer may see the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewerRole {
    Owner,
    /// An admin looking at someone else's session.
    Admin,
}

impl ViewerRole {
    /// What the viewer's RFB messages may do on a session with this policy.
    pub fn input_rules(&self, session: &SessionRecord) -> InputRules {
        InputRules {
            clipboard: session.spec.desktop.clipboard.to_session(),
            ..InputRules::ALL
        }
    }

    /// The filter for the viewer's stream, or none when everything is
    /// allowed (the stream is then not parsed at all).
    pub fn input_filter(&self, session: &SessionRecord) -> Option<InputFilter> {
        let rules = self.input_rules(session);
        (!rules.allows_all()).then(|| InputFilter::new(rules))
    }
}

/// The session, if `user` may view it; 404 otherwise, so a session's
/// existence is not revealed to those who may not see it.
pub async fn viewable(
    state: &AppState,
    user: &CurrentUser,
    id: &SessionId,
) -> ApiResult<(SessionRecord, ViewerRole)> {
    let session = state
        .store
        .get_session(id)
        .await?
        .ok_or_else(|| ApiError::not_found("session"))?;
    if session.user_id == user.user.id {
        return Ok((session, ViewerRole::Owner));
    }
    if user.user.is_admin() {
        return Ok((session, ViewerRole::Admin));
    }
    Err(ApiError::not_found("session"))
}
