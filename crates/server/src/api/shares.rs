//! Session sharing: an owner invites a user of the deployment (view only or
//! with control) or makes a link with an expiry that any signed-in user can
//! open; lists the shares and who is watching now; ends a share, which
//! closes its guests' viewers at once (`tunnel/guests.rs`). Guests list the
//! sessions shared with them and open links here. What a guest's viewer may
//! send is decided in `tunnel/viewer.rs`. docs/SHARING.md describes it all.

use super::sessions::view;
use super::views::{SessionView, time};
use crate::audit_log::shares::{ShareEvent, recorded};
use crate::auth::client_addr::ClientAddr;
use crate::auth::{CurrentUser, secrets, visible_session};
use crate::error::{ApiError, ApiJson, ApiPath, ApiResult, ErrorBody};
use crate::state::AppState;
use crate::store::{
    MAX_GUESTS_PER_LINK, MAX_LINKS_PER_SESSION, MAX_SHARES_PER_SESSION, NewShare, SessionRecord,
    ShareRecord, ShareRefusal, now_ms,
};
use crate::tunnel::guests::sharing_allowed;
use crate::validate::FieldError;
use axum::Json;
use axum::extract::State;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use streamspace_protocol::{Phase, SessionId};
use utoipa::ToSchema;

/// How long a link lasts when `expires_in` is not given.
pub const DEFAULT_LINK_LIFETIME: Duration = Duration::from_secs(3600);
/// The longest `expires_in`: a link is a bearer secret, so it dies within a week.
pub const MAX_SHARE_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
/// The shortest `expires_in`.
pub const MIN_SHARE_LIFETIME: Duration = Duration::from_secs(60);
/// Longest username accepted in an invite (longer names do not exist).
const MAX_USERNAME: usize = 256;

/// What a guest may do: `view` (the picture only) or `control` (keyboard
/// and mouse too, and the clipboard as the template allows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ShareMode {
    View,
    Control,
}

impl ShareMode {
    fn of(control: bool) -> Self {
        if control {
            ShareMode::Control
        } else {
            ShareMode::View
        }
    }
}

/// An invite (`username`) or a link (`link: true`), not both.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"username": "bob", "mode": "view"}))]
pub struct ShareInput {
    /// The user to invite.
    #[serde(default)]
    #[schema(max_length = 256)]
    username: Option<String>,
    /// Make a link that any signed-in user of this deployment can open.
    #[serde(default)]
    link: bool,
    /// `view` (default) or `control`.
    #[serde(default)]
    mode: Option<ShareMode>,
    /// How long the share lasts, from 1 minute to 7 days ("30m", "8h").
    /// Links: default 1 hour. Invites: until ended, unless given.
    #[serde(default)]
    #[schema(pattern = r"^[0-9]+(s|m|h|d|w)$", example = "1h")]
    expires_in: Option<String>,
}

/// The kind of a share.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ShareKind {
    /// A named user was invited.
    Invite,
    /// A link.
    Link,
    /// A user who opened a link; ends with it.
    LinkGuest,
}

/// A live share of a session.
#[derive(Serialize, ToSchema)]
pub struct Share {
    id: String,
    kind: ShareKind,
    /// The invited user, or who came through a link; `null` for a link.
    guest: Option<String>,
    mode: ShareMode,
    /// For a link's guest: the link.
    link_id: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    /// `null`: until ended.
    #[schema(format = DateTime)]
    expires_at: Option<String>,
}

impl From<ShareRecord> for Share {
    fn from(share: ShareRecord) -> Self {
        let kind = match (share.is_link, &share.link_id) {
            (true, _) => ShareKind::Link,
            (false, Some(_)) => ShareKind::LinkGuest,
            (false, None) => ShareKind::Invite,
        };
        Share {
            id: share.id,
            kind,
            guest: share.guest_username,
            mode: ShareMode::of(share.control),
            link_id: share.link_id,
            created_at: time(share.created_at),
            expires_at: share.expires_at.map(time),
        }
    }
}

/// A new share; for a link, its secret URL, shown only now.
#[derive(Serialize, ToSchema)]
pub struct CreatedShare {
    #[serde(flatten)]
    share: Share,
    /// The link to hand out (links only). Not shown again: only its hash is kept.
    url: Option<String>,
}

/// A guest's viewer open now.
#[derive(Serialize, ToSchema)]
pub struct ShareWatcher {
    username: String,
    /// The share they came through.
    share_id: String,
    #[schema(format = DateTime)]
    since: String,
}

/// A session's live shares and who is watching through them now.
#[derive(Serialize, ToSchema)]
pub struct SessionShares {
    /// Whether the session's template lets it be shared (`desktop.sharing`).
    sharing_allowed: bool,
    shares: Vec<Share>,
    watchers: Vec<ShareWatcher>,
}

/// A session someone shared with you.
#[derive(Serialize, ToSchema)]
pub struct SharedSession {
    session: SessionView,
    share_id: String,
    mode: ShareMode,
    #[schema(format = DateTime)]
    expires_at: Option<String>,
}

/// A link's secret, from the fragment of the URL it came in.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinLink {
    #[schema(max_length = 64)]
    token: String,
}

/// What a link opened.
#[derive(Serialize, ToSchema)]
pub struct JoinedSession {
    session_id: String,
    mode: ShareMode,
    /// Your share (`null` when the link is to your own session).
    share_id: Option<String>,
}

/// List a session's shares and watchers
///
/// The owner's (or an admin's) view of who may watch the session and who
/// is watching now; poll it for a live list.
#[utoipa::path(
    get,
    operation_id = "listSessionShares",
    path = "/api/v1/sessions/{id}/shares",
    tag = "sharing",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The session's id")),
    responses(
        (status = 200, description = "Live shares and watchers", body = SessionShares),
        (status = 404, description = "No such session, or not yours", body = ErrorBody),
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<SessionId>,
) -> ApiResult<Json<SessionShares>> {
    let session = visible_session(&state, &user, &id).await?;
    let shares = state.store.live_shares(&session.id).await?;
    let watchers = state.store.watchers(&session.id).await?;
    Ok(Json(SessionShares {
        sharing_allowed: sharing_allowed(&session),
        shares: shares.into_iter().map(Share::from).collect(),
        watchers: watchers
            .into_iter()
            .map(|w| ShareWatcher {
                username: w.username,
                share_id: w.share_id,
                since: time(w.joined_at),
            })
            .collect(),
    }))
}

/// Share a session
///
/// Invite a user by name, or make a link (its URL is in the answer, once).
/// Guests see the same desktop as you; with `view` the control plane drops
/// everything they type or click.
#[utoipa::path(
    post,
    operation_id = "createSessionShare",
    path = "/api/v1/sessions/{id}/shares",
    tag = "sharing",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The session's id")),
    request_body = ShareInput,
    responses(
        (status = 201, description = "Shared; a link's `url` is shown only now", body = CreatedShare),
        (status = 400, description = "A field is not valid, with which and why", body = ErrorBody),
        (status = 403, description = "The session's template does not allow sharing", body = ErrorBody),
        (status = 404, description = "No such session, or not yours", body = ErrorBody),
        (status = 409, description = "The session has ended, the user is invited already, or the session has the most shares allowed", body = ErrorBody),
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    client: ClientAddr,
    ApiPath(id): ApiPath<SessionId>,
    ApiJson(input): ApiJson<ShareInput>,
) -> ApiResult<(StatusCode, Json<CreatedShare>)> {
    let session = visible_session(&state, &user, &id).await?;
    let wanted = check_input(&state, &session, &input).await?;
    shareable(&session)?;
    let secret = wanted
        .link
        .then(|| secrets::generate(secrets::SecretKind::ShareLink));
    let token_hash = secret.as_deref().map(secrets::hash);
    let new = NewShare {
        session_id: &session.id,
        created_by: &user.user.id,
        guest: wanted.guest.as_ref().map(|g| &g.id),
        token_hash: token_hash.as_deref(),
        control: wanted.control,
        expires_at: wanted.lifetime.map(|l| now_ms() + l.as_millis() as i64),
    };
    let share = state
        .store
        .create_share(new)
        .await?
        .map_err(|refusal| refused(refusal, input.username.as_deref()))?;
    let event = ShareEvent {
        actor: user.actor(),
        kind: "share.create",
        share: &share,
        client: client.0,
    };
    recorded(&state, event).await;
    let url = secret.map(|secret| link_url(&state, &secret));
    let answer = CreatedShare {
        share: share.into(),
        url,
    };
    Ok((StatusCode::CREATED, Json(answer)))
}

/// The link to hand out: the secret rides in the fragment, which browsers
/// never send to a server, so it stays out of access logs and `Referer`.
fn link_url(state: &AppState, secret: &str) -> String {
    let mut url = (*state.public_url).clone();
    url.set_path("/join");
    url.set_fragment(Some(secret));
    url.to_string()
}

/// A share request, checked.
struct Wanted {
    guest: Option<crate::store::User>,
    link: bool,
    control: bool,
    lifetime: Option<Duration>,
}

async fn check_input(
    state: &AppState,
    session: &SessionRecord,
    input: &ShareInput,
) -> ApiResult<Wanted> {
    let guest = match (input.username.as_deref().map(str::trim), input.link) {
        (Some(_), true) => {
            return Err(FieldError::new(
                "link",
                "give either `username` (an invite) or `link: true`, not both",
            )
            .into());
        }
        (None, false) => {
            return Err(FieldError::new(
                "username",
                "name the user to invite, or ask for a link with `link: true`",
            )
            .into());
        }
        (Some(name), false) => Some(check_guest(state, session, name).await?),
        (None, true) => None,
    };
    let lifetime = match (input.expires_in.as_deref(), input.link) {
        (Some(text), _) => Some(check_lifetime(text)?),
        (None, true) => Some(DEFAULT_LINK_LIFETIME),
        (None, false) => None,
    };
    Ok(Wanted {
        guest,
        link: input.link,
        control: input.mode == Some(ShareMode::Control),
        lifetime,
    })
}

/// The invited user: an account of this deployment, not the owner.
async fn check_guest(
    state: &AppState,
    session: &SessionRecord,
    name: &str,
) -> ApiResult<crate::store::User> {
    if name.is_empty() || name.chars().count() > MAX_USERNAME {
        return Err(FieldError::new("username", "give the username of the user to invite").into());
    }
    let found = state.store.user_credentials(name).await?;
    let Some((guest, _)) = found else {
        return Err(FieldError::new("username", format!("there is no user named {name:?}")).into());
    };
    if guest.id == session.user_id {
        return Err(FieldError::new(
            "username",
            "that is the session's owner, who can open it anyway",
        )
        .into());
    }
    Ok(guest)
}

/// `expires_in` as a duration within the bounds.
fn check_lifetime(text: &str) -> Result<Duration, FieldError> {
    let lifetime = humantime::parse_duration(text).map_err(|_| {
        FieldError::new(
            "expires_in",
            format!("{text:?} is not a duration such as \"30m\" or \"8h\""),
        )
    })?;
    if !(MIN_SHARE_LIFETIME..=MAX_SHARE_LIFETIME).contains(&lifetime) {
        return Err(FieldError::new(
            "expires_in",
            "from 1 minute (\"1m\") to 7 days (\"7d\")",
        ));
    }
    Ok(lifetime)
}

/// Sharing is allowed by the template and the session has not ended.
fn shareable(session: &SessionRecord) -> ApiResult<()> {
    if !sharing_allowed(session) {
        return Err(ApiError::Forbidden(format!(
            "the template {:?} does not allow sharing its sessions (desktop.sharing is false)",
            session.template_name
        )));
    }
    if matches!(session.phase, Phase::Terminated | Phase::Stopping) {
        return Err(ApiError::Conflict(format!(
            "the session is {}: there is nothing to share",
            session.phase
        )));
    }
    Ok(())
}

fn refused(refusal: ShareRefusal, username: Option<&str>) -> ApiError {
    match refusal {
        ShareRefusal::AlreadyInvited => ApiError::Conflict(format!(
            "{} is invited already: end that share first to change it",
            username.unwrap_or_default().trim()
        )),
        ShareRefusal::TooMany => ApiError::Conflict(format!(
            "the session has the most shares allowed ({MAX_SHARES_PER_SESSION}, of which at most \
             {MAX_LINKS_PER_SESSION} links): end one first"
        )),
        ShareRefusal::LinkFull => ApiError::Conflict(format!(
            "the link has let in {MAX_GUESTS_PER_LINK} users, the most allowed"
        )),
    }
}

/// End a share
///
/// The guest's viewers close at once (a link's: everyone who came through
/// it), and the share no longer opens the session.
#[utoipa::path(
    delete,
    operation_id = "endSessionShare",
    path = "/api/v1/sessions/{id}/shares/{share_id}",
    tag = "sharing",
    security(("bearer" = []), ("cookie" = [])),
    params(
        ("id" = String, Path, description = "The session's id"),
        ("share_id" = String, Path, description = "The share's id"),
    ),
    responses(
        (status = 204, description = "Ended; its viewers are closed"),
        (status = 404, description = "No such session or live share, or not yours", body = ErrorBody),
    ),
)]
pub async fn end(
    State(state): State<AppState>,
    user: CurrentUser,
    client: ClientAddr,
    ApiPath((id, share_id)): ApiPath<(SessionId, String)>,
) -> ApiResult<StatusCode> {
    let session = visible_session(&state, &user, &id).await?;
    let share = state.store.share(&share_id).await?;
    let ended = state.store.end_share(&session.id, &share_id).await?;
    let Some(share) = share.filter(|_| !ended.is_empty()) else {
        return Err(ApiError::not_found("share"));
    };
    for id in &ended {
        state.share_ends.ended(id);
    }
    let event = ShareEvent {
        actor: user.actor(),
        kind: "share.end",
        share: &share,
        client: client.0,
    };
    recorded(&state, event).await;
    Ok(StatusCode::NO_CONTENT)
}

/// List sessions shared with you
#[utoipa::path(
    get,
    operation_id = "listSharedSessions",
    path = "/api/v1/shared-sessions",
    tag = "sharing",
    security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, description = "Sessions you may view, newest share first", body = [SharedSession])),
)]
pub async fn shared_with_me(
    State(state): State<AppState>,
    user: CurrentUser,
) -> ApiResult<Json<Vec<SharedSession>>> {
    let mut shared = Vec::new();
    for (session, share) in state.store.shared_with(&user.user.id).await? {
        if !sharing_allowed(&session) {
            continue;
        }
        shared.push(SharedSession {
            session: view(&state, session).await?,
            share_id: share.id,
            mode: ShareMode::of(share.control),
            expires_at: share.expires_at.map(time),
        });
    }
    Ok(Json(shared))
}

/// Open a share link
///
/// Lets you (a signed-in user) into the session the link shares, for as
/// long as the link lasts; then open the viewer (`/vnc/{session_id}`).
#[utoipa::path(
    post,
    operation_id = "joinShareLink",
    path = "/api/v1/share-links/join",
    tag = "sharing",
    security(("bearer" = []), ("cookie" = [])),
    request_body = JoinLink,
    responses(
        (status = 200, description = "You may view the session", body = JoinedSession),
        (status = 404, description = "No such link: it expired, was ended, or never existed", body = ErrorBody),
        (status = 409, description = "The link has let in the most users allowed", body = ErrorBody),
    ),
)]
pub async fn join(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(input): ApiJson<JoinLink>,
) -> ApiResult<Json<JoinedSession>> {
    let gone = || {
        ApiError::NotFound(
            "this link has expired, was ended, or never existed: ask the session's owner for a \
             new one"
                .into(),
        )
    };
    if !secrets::well_formed(secrets::SecretKind::ShareLink, input.token.trim()) {
        return Err(gone());
    }
    let hash = secrets::hash(input.token.trim());
    let link = state.store.share_link(&hash).await?.ok_or_else(gone)?;
    let session = state.store.get_session(&link.session_id).await?;
    let session = session
        .filter(|s| sharing_allowed(s) && s.phase != Phase::Terminated)
        .ok_or_else(gone)?;
    if session.user_id == user.user.id {
        return Ok(Json(JoinedSession {
            session_id: session.id.to_string(),
            mode: ShareMode::Control,
            share_id: None,
        }));
    }
    let share = state
        .store
        .join_link(&link, &user.user.id)
        .await?
        .map_err(|refusal| refused(refusal, None))?;
    Ok(Json(JoinedSession {
        session_id: session.id.to_string(),
        mode: ShareMode::of(share.control),
        share_id: Some(share.id),
    }))
}
