//! `/api/v1/sessions`: start a session from a template, list and read them,
//! change what they should be, end them, their audit trail and heartbeats.

use super::ForceQuery;
use super::views::SessionView;
use crate::audit_log::sessions;
use crate::auth::client_addr::ClientAddr;
use crate::auth::{CurrentUser, visible_session};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, ErrorBody};
use crate::lifecycle::{self, Placed, audit, change_state, force_terminate};
use crate::presence::{self, status as agent_status};
use crate::quota;
use crate::scheduler::Placement;
use crate::state::AppState;
use crate::store::{AgentRecord, AuditEntry, SessionRecord, TemplateRecord};
use crate::template::{PLATFORMS, ResourcesInput, SessionRequest};
use crate::tenancy::Membership;
use crate::validate::FieldError;
use axum::Json;
use axum::extract::State;
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use streamspace_protocol::{AgentId, DesiredState, Resources, SessionId, SessionSpec};
use utoipa::{IntoParams, ToSchema};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"template": "desktop"}))]
pub struct NewSessionInput {
    /// Template name or id.
    template: String,
    /// `docker` or `kubernetes`, if the template allows it.
    #[serde(default)]
    platform: Option<String>,
    /// Run on this agent.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    agent_id: Option<AgentId>,
    /// Only agents carrying all these labels (`region` matches the agent's
    /// region too).
    #[serde(default)]
    agent_selector: BTreeMap<String, String>,
    /// Override the template's, up to its `max_resources` (by default its
    /// own `resources`).
    #[serde(default)]
    resources: Option<ResourcesInput>,
    /// Added to the template's; only the variables its `user_env` lists.
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Overrides the template's idle timeout (`"0"` = never), if its
    /// `user_idle_timeout` allows.
    #[serde(default)]
    #[schema(pattern = r"^(0|[0-9]+(ms|s|m|h|d|w|y))?$", example = "30m")]
    idle_timeout: Option<String>,
}

/// Start a session
#[utoipa::path(
    post,
    operation_id = "createSession",
    path = "/api/v1/sessions",
    tag = "sessions",
    security(("bearer" = []), ("cookie" = [])),
    request_body = NewSessionInput,
    responses(
        (status = 201, description = "Placed on an agent; its phase is `Pending`", body = SessionView),
        (status = 403, description = "Quota exceeded; the template is limited to groups you are not in; or the agent (or every agent that matches) is in a pool your groups may not use", body = ErrorBody),
        (status = 503, description = "No agent fits, with the reasons", body = ErrorBody),
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    client: ClientAddr,
    ApiJson(input): ApiJson<NewSessionInput>,
) -> ApiResult<(StatusCode, Json<SessionView>)> {
    let template = state
        .store
        .find_template(&input.template)
        .await?
        .ok_or_else(|| {
            FieldError::new(
                "template",
                format!(
                    "no template named {:?}: see GET /api/v1/templates",
                    input.template
                ),
            )
        })?;
    let membership = Membership::of(&state, &user.user).await?;
    if !membership.may_use(&template.spec) {
        return Err(ApiError::Forbidden(format!(
            "template {} is limited to groups you are not in: ask an admin to add you to one \
             of them (see GET /api/v1/templates for yours)",
            template.spec.name
        )));
    }
    let pools = membership.pools();
    let platforms = allowed_platforms(&template, input.platform.as_deref())?;
    // A launch that asks for nothing of its own may take a warm session.
    let poolable = input.resources.is_none()
        && input.env.is_empty()
        && input.idle_timeout.is_none()
        && input.platform.is_none()
        && input.agent_id.is_none()
        && input.agent_selector.is_empty();
    let granted = template.spec.grant(SessionRequest {
        resources: input.resources.map(Resources::from),
        env: input.env,
        idle_timeout: input.idle_timeout,
    })?;
    let spec = template
        .spec
        .session_spec(&template.id, &SessionId::new(), &user.user, &granted);
    let idle = granted.idle_timeout;
    let placement = Placement {
        platforms: &platforms,
        agent_id: input.agent_id.as_ref(),
        selector: &input.agent_selector,
        resources: spec.resources,
        pools: &pools,
    };
    // One admission at a time, on every replica, so two requests cannot
    // both pass a quota or capacity check that only one of them fits.
    let admission = state.store.admission().await?;
    let pooled = match poolable {
        true => take_pooled(&state, (&user, &membership), &template, &spec, idle).await,
        false => Ok(None),
    };
    let admitted = match pooled {
        Ok(Some(session)) => {
            admission.release().await;
            return pooled_launch(&state, (&user, client), session).await;
        }
        Ok(None) => {
            admit(
                &state,
                (&user, &membership),
                &placement,
                spec,
                &template,
                idle,
            )
            .await
        }
        Err(err) => Err(err),
    };
    admission.release().await;
    let placed = admitted?;
    placed.dispatch(&state).await?;
    let Placed { session, agent, .. } = placed;
    tracing::info!(session_id = %session.id, agent = %agent.name, "session created");
    let detail = json!({"template": template.spec.name, "agent": agent.name});
    sessions::created(&state, &user.actor(), &session.id, client.0, detail).await;
    state.changes.session_changed(&session.id, &session.user_id);
    Ok((StatusCode::CREATED, Json(view(&state, session).await?)))
}

/// A warm session of `template` for `user`, within their quota; called
/// with the admission turn held.
async fn take_pooled(
    state: &AppState,
    (user, membership): (&CurrentUser, &Membership),
    template: &TemplateRecord,
    spec: &SessionSpec,
    idle: Option<std::time::Duration>,
) -> ApiResult<Option<SessionRecord>> {
    if template.spec.warm_pool == 0 {
        return Ok(None);
    }
    let groups = &membership.groups;
    quota::check_create(state, &user.user.id, groups, &spec.resources).await?;
    let pools = membership.pools();
    Ok(crate::pool::take(state, &user.user, template, idle, &pools).await?)
}

/// A launch served from the warm pool: the session runs already.
async fn pooled_launch(
    state: &AppState,
    (user, client): (&CurrentUser, ClientAddr),
    session: SessionRecord,
) -> ApiResult<(StatusCode, Json<SessionView>)> {
    tracing::info!(session_id = %session.id, "session taken from the warm pool");
    let event = AuditEntry::new(user.actor(), "created")
        .state("running")
        .phase(session.phase.as_str())
        .message(Some("taken from the template's warm pool"));
    audit(state, &session.id, &event).await;
    let detail = json!({"template": session.template_name, "from_pool": true});
    sessions::created(state, &user.actor(), &session.id, client.0, detail).await;
    state.changes.session_changed(&session.id, &session.user_id);
    Ok((StatusCode::CREATED, Json(view(state, session).await?)))
}

/// Checks the quota, places the session and stores it with its start
/// command and first event; called with the admission turn held.
async fn admit(
    state: &AppState,
    (user, membership): (&CurrentUser, &Membership),
    placement: &Placement<'_>,
    spec: SessionSpec,
    template: &TemplateRecord,
    idle: Option<std::time::Duration>,
) -> ApiResult<Placed> {
    let groups = &membership.groups;
    quota::check_create(state, &user.user.id, groups, &spec.resources).await?;
    let created = |agent: &AgentRecord| {
        AuditEntry::new(user.actor(), "created")
            .state("running")
            .phase("Pending")
            .message(Some(&format!("placed on agent {}", agent.name)))
    };
    Ok(lifecycle::place_new(state, placement, spec, (template, idle), created).await?)
}

/// The platforms this session may use: the requested one, if the template
/// allows it, else whatever the template allows.
fn allowed_platforms(template: &TemplateRecord, requested: Option<&str>) -> ApiResult<Vec<String>> {
    match requested {
        None => Ok(template.spec.platforms.clone()),
        Some(p) if !PLATFORMS.contains(&p) => Err(FieldError::new(
            "platform",
            format!("unknown platform {p:?}: use one of {PLATFORMS:?}"),
        )
        .into()),
        Some(p) if !template.spec.allows_platform(p) => Err(FieldError::new(
            "platform",
            format!(
                "template {} runs only on {:?}",
                template.spec.name,
                template.spec.runs_on()
            ),
        )
        .into()),
        Some(p) => Ok(vec![p.to_owned()]),
    }
}

/// An agent as a session's view shows it: its status, its name, and what
/// is wrong with its platform.
type AgentSeen = (&'static str, String, Option<String>);

fn seen(state: &AppState, agent: AgentRecord) -> AgentSeen {
    let problem = presence::problem(state, &agent);
    (agent_status(state, &agent), agent.name, problem)
}

/// The session's view; one waiting on a degraded agent says so, whatever
/// its agent last reported (nothing, while a hung engine holds its start).
fn view_with(state: &AppState, s: SessionRecord, agent: Option<AgentSeen>) -> SessionView {
    let waiting = presence::waits_on_platform(s.phase);
    let (status, name, problem) = match agent {
        Some((status, name, problem)) => (Some(status), Some(name), problem),
        None => (None, None, None),
    };
    let mut view = SessionView::new(state, s, status.zip(name.clone()));
    if let (Some("degraded"), true, Some(name), Some(problem)) = (status, waiting, name, problem) {
        view.message = Some(presence::waiting_message(&name, &problem));
    }
    view
}

/// Views of sessions, with their agents' reachability looked up once.
pub async fn views(state: &AppState, sessions: Vec<SessionRecord>) -> ApiResult<Vec<SessionView>> {
    let agents: HashMap<AgentId, AgentSeen> = state
        .store
        .list_agents()
        .await?
        .into_iter()
        .map(|a| (a.id.clone(), seen(state, a)))
        .collect();
    Ok(sessions
        .into_iter()
        .map(|s| {
            let agent = s.agent_id.as_ref().and_then(|id| agents.get(id).cloned());
            view_with(state, s, agent)
        })
        .collect())
}

pub async fn view(state: &AppState, session: SessionRecord) -> ApiResult<SessionView> {
    let agent = match &session.agent_id {
        Some(id) => state.store.get_agent(id).await?.map(|a| seen(state, a)),
        None => None,
    };
    let recorded = crate::recording::policy::required(state, &session).await?;
    let mut view = view_with(state, session, agent);
    view.recorded = recorded;
    Ok(view)
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Everyone's sessions (admins only).
    #[serde(default)]
    all: bool,
    /// Terminated sessions too.
    #[serde(default)]
    include_terminated: bool,
}

/// List sessions
///
/// Your own sessions, or everyone's for an admin with `all=true`.
#[utoipa::path(
    get,
    operation_id = "listSessions",
    path = "/api/v1/sessions",
    tag = "sessions",
    security(("bearer" = []), ("cookie" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "The sessions", body = Vec<SessionView>),
        (status = 400, description = "A query parameter is not valid", body = ErrorBody),
        (status = 403, description = "`all=true` from someone who is not an admin", body = ErrorBody),
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<Vec<SessionView>>> {
    if query.all && !user.user.is_admin() {
        return Err(ApiError::Forbidden(
            "only admins can list everyone's sessions".into(),
        ));
    }
    let owner = (!query.all).then_some(&user.user.id);
    let sessions = state
        .store
        .list_sessions(owner, query.include_terminated)
        .await?;
    Ok(Json(views(&state, sessions).await?))
}

/// Get a session
#[utoipa::path(
    get,
    operation_id = "getSession",
    path = "/api/v1/sessions/{id}",
    tag = "sessions",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The session's id")),
    responses(
        (status = 200, description = "The session", body = SessionView),
        (status = 404, description = "No such session, or neither yours nor shared with you", body = ErrorBody),
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<SessionId>,
) -> ApiResult<Json<SessionView>> {
    // Guests of a live share see it too (read only: every other session
    // route is the owner's).
    let (session, _) = crate::tunnel::access::viewable(&state, &user, &id).await?;
    Ok(Json(view(&state, session).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StateInput {
    #[schema(value_type = DesiredState)]
    state: String,
}

/// Hibernate, wake or terminate a session
#[utoipa::path(
    put,
    operation_id = "setSessionState",
    path = "/api/v1/sessions/{id}/state",
    tag = "sessions",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The session's id")),
    request_body = StateInput,
    responses(
        (status = 200, description = "The session, on its way", body = SessionView),
        (status = 403, description = "Waking it would exceed the quota", body = ErrorBody),
        (status = 404, description = "No such session, or not yours", body = ErrorBody),
        (status = 409, description = "It is terminated, or its platform cannot hibernate", body = ErrorBody),
    ),
)]
pub async fn set_state(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<SessionId>,
    ApiJson(input): ApiJson<StateInput>,
) -> ApiResult<Json<SessionView>> {
    let desired = DesiredState::parse(&input.state).ok_or_else(|| {
        FieldError::new(
            "state",
            format!(
                "unknown state {:?}: use \"running\", \"hibernated\" or \"terminated\"",
                input.state
            ),
        )
    })?;
    let session = visible_session(&state, &user, &id).await?;
    let session = change_state(&state, session, desired, &user.actor(), None).await?;
    Ok(Json(view(&state, session).await?))
}

/// Terminate a session
///
/// Asks its agent to remove it; the session shows `Stopping` until the agent
/// confirms. With `force=true` (admins) it is `Terminated` at once.
#[utoipa::path(
    delete,
    operation_id = "terminateSession",
    path = "/api/v1/sessions/{id}",
    tag = "sessions",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The session's id"), ForceQuery),
    responses(
        (status = 200, description = "The session, on its way to `Terminated` (or there, forced)", body = SessionView),
        (status = 400, description = "A query parameter is not valid", body = ErrorBody),
        (status = 403, description = "`force=true` from someone who is not an admin", body = ErrorBody),
        (status = 404, description = "No such session, or not yours", body = ErrorBody),
        (status = 409, description = "The session has no agent, or (forced) is already terminated", body = ErrorBody),
    ),
)]
pub async fn delete(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<SessionId>,
    ApiQuery(query): ApiQuery<ForceQuery>,
) -> ApiResult<Json<SessionView>> {
    let session = visible_session(&state, &user, &id).await?;
    if query.force {
        if !user.user.is_admin() {
            return Err(ApiError::Forbidden(
                "only admins can force-terminate a session".into(),
            ));
        }
        let ended = force_terminate(&state, &session, &user.actor()).await?;
        return Ok(Json(view(&state, ended).await?));
    }
    let session = change_state(
        &state,
        session,
        DesiredState::Terminated,
        &user.actor(),
        None,
    )
    .await?;
    Ok(Json(view(&state, session).await?))
}

/// Mark a session as in use
///
/// `POST /sessions/{id}/heartbeat`: the user is active (for clients that
/// do not send input through the VNC proxy); it postpones idle hibernation.
#[utoipa::path(
    post,
    operation_id = "sessionHeartbeat",
    path = "/api/v1/sessions/{id}/heartbeat",
    tag = "sessions",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The session's id")),
    responses(
        (status = 204, description = "Noted"),
        (status = 404, description = "No such session, or not yours", body = ErrorBody),
    ),
)]
pub async fn heartbeat(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<SessionId>,
) -> ApiResult<StatusCode> {
    let session = visible_session(&state, &user, &id).await?;
    state.store.touch_session(&session.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A session's audit trail
///
/// `GET /sessions/{id}/events`: the audit trail, oldest first.
#[utoipa::path(
    get,
    operation_id = "getSessionEvents",
    path = "/api/v1/sessions/{id}/events",
    tag = "sessions",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The session's id")),
    responses(
        (status = 200, description = "Oldest first", body = Vec<AuditEntry>),
        (status = 404, description = "No such session, or not yours", body = ErrorBody),
    ),
)]
pub async fn events(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<SessionId>,
) -> ApiResult<Json<Vec<serde_json::Value>>> {
    let session = visible_session(&state, &user, &id).await?;
    let events = state.store.audit_trail(&session.id).await?;
    let shaped = events
        .into_iter()
        .map(|e| {
            let at = super::views::time(e.at);
            let mut value = serde_json::to_value(e).unwrap_or_default();
            value["at"] = serde_json::Value::String(at);
            value
        })
        .collect();
    Ok(Json(shaped))
}
