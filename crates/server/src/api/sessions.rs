use super::views::SessionView;
use crate::auth::CurrentUser;
use crate::error::{ApiError, ApiJson, ApiQuery, ApiResult};
use crate::hub::dispatch;
use crate::scheduler::{self, Placement};
use crate::state::AppState;
use crate::store::{NewSession, SessionRecord, TemplateRecord, new_id};
use crate::template::PLATFORMS;
use crate::validate::{FieldError, check_env};
use axum::Json;
use axum::extract::{Path, State};
use http::StatusCode;
use serde::Deserialize;
use std::collections::BTreeMap;
use streamspace_protocol::{
    Action, Command, DesiredState, HomeVolume, Phase, Resources, SessionSpec,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSessionInput {
    /// Template name or id.
    template: String,
    #[serde(default)]
    platform: Option<String>,
    #[serde(default)]
    agent_id: Option<String>,
    #[serde(default)]
    resources: Option<Resources>,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

pub async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(input): ApiJson<NewSessionInput>,
) -> ApiResult<(StatusCode, Json<SessionView>)> {
    check_env("env", &input.env)?;
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
    let platforms = allowed_platforms(&template, input.platform.as_deref())?;
    let spec = session_spec(&user, &template, input.resources, input.env);
    let placement = Placement {
        platforms: &platforms,
        agent_id: input.agent_id.as_deref(),
        resources: spec.resources,
    };
    let agent = scheduler::choose(&state, &placement).await?;
    let start = Command {
        id: new_id(),
        session_id: spec.session_id.clone(),
        action: Action::Start {
            spec: Box::new(spec.clone()),
        },
    };
    let new = NewSession {
        user_id: user.user.id.clone(),
        template_id: template.id.clone(),
        template_name: template.spec.name.clone(),
        agent_id: agent.id.clone(),
        platform: agent.platform.clone(),
        spec,
    };
    let session = state.store.create_session(&new, &start).await?;
    tracing::info!(session_id = %session.id, agent = %agent.name, "session created");
    dispatch(&state, &agent.id, start).await?;
    state.events.session_changed(&session.id, &session.user_id);
    Ok((StatusCode::CREATED, Json(SessionView::new(&state, session))))
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
                template.spec.name, template.spec.platforms
            ),
        )
        .into()),
        Some(p) => Ok(vec![p.to_owned()]),
    }
}

/// Resolves the template for this user: per-session resources and env
/// override the template's.
fn session_spec(
    user: &CurrentUser,
    template: &TemplateRecord,
    resources: Option<Resources>,
    env: BTreeMap<String, String>,
) -> SessionSpec {
    let t = &template.spec;
    let resources = resources.unwrap_or_default();
    let mut merged_env = t.env.clone();
    merged_env.extend(env);
    SessionSpec {
        session_id: new_id(),
        user: user.user.username.clone(),
        template: t.name.clone(),
        image: t.image.clone(),
        env: merged_env,
        ports: t.ports.clone(),
        resources: Resources {
            cpu: resources.cpu.or(t.resources.cpu),
            memory: resources.memory.or(t.resources.memory),
        },
        home: t.persistent_home.then(|| HomeVolume {
            volume: format!("streamspace-home-{}-{}", user.user.username, t.name),
            path: t.home_path.clone(),
        }),
    }
}

#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    all: bool,
    #[serde(default)]
    include_terminated: bool,
}

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
    let owner = (!query.all).then_some(user.user.id.as_str());
    let sessions = state
        .store
        .list_sessions(owner, query.include_terminated)
        .await?;
    Ok(Json(
        sessions
            .into_iter()
            .map(|s| SessionView::new(&state, s))
            .collect(),
    ))
}

/// The session if this user may see it. Others get the same 404 as for a
/// session that does not exist, so ids cannot be probed.
pub async fn visible_session(
    state: &AppState,
    user: &CurrentUser,
    id: &str,
) -> ApiResult<SessionRecord> {
    state
        .store
        .get_session(id)
        .await?
        .filter(|s| user.may_access(&s.user_id))
        .ok_or_else(|| ApiError::not_found("session"))
}

pub async fn get(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> ApiResult<Json<SessionView>> {
    let session = visible_session(&state, &user, &id).await?;
    Ok(Json(SessionView::new(&state, session)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateInput {
    state: String,
}

pub async fn set_state(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
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
    let session = change_state(&state, session, desired).await?;
    Ok(Json(SessionView::new(&state, session)))
}

pub async fn delete(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> ApiResult<Json<SessionView>> {
    let session = visible_session(&state, &user, &id).await?;
    let session = change_state(&state, session, DesiredState::Terminated).await?;
    Ok(Json(SessionView::new(&state, session)))
}

/// Records the new desired state with the command that moves the session
/// toward it. Asking for what is already the case changes nothing.
pub async fn change_state(
    state: &AppState,
    session: SessionRecord,
    desired: DesiredState,
) -> ApiResult<SessionRecord> {
    let Some(agent_id) = session.agent_id.clone() else {
        return Err(ApiError::Conflict("the session has no agent".into()));
    };
    let Some((phase, action)) = transition(&session, desired)? else {
        return Ok(session);
    };
    if action == Action::Hibernate && !agent_supports_hibernation(state, &agent_id).await? {
        return Err(ApiError::Conflict(
            "this session's platform cannot hibernate sessions".into(),
        ));
    }
    let command = Command {
        id: new_id(),
        session_id: session.id.clone(),
        action,
    };
    let updated = state
        .store
        .set_desired_state(&session.id, desired, phase, Some((&agent_id, &command)))
        .await?
        .ok_or_else(|| ApiError::not_found("session"))?;
    tracing::info!(session_id = %session.id, state = desired.as_str(), "desired state set");
    dispatch(state, &agent_id, command).await?;
    state.events.session_changed(&updated.id, &updated.user_id);
    Ok(updated)
}

/// The phase to show and the command to send to move `session` toward
/// `desired`; `None` when it is already there (or on its way).
fn transition(
    session: &SessionRecord,
    desired: DesiredState,
) -> ApiResult<Option<(Phase, Action)>> {
    use Phase::*;
    if session.phase == Terminated {
        return match desired {
            DesiredState::Terminated => Ok(None),
            _ => Err(ApiError::Conflict(
                "the session is terminated: start a new one from its template".into(),
            )),
        };
    }
    if session.state == desired && session.phase != Failed {
        return Ok(None);
    }
    Ok(Some(match desired {
        DesiredState::Terminated => (Stopping, Action::Terminate),
        DesiredState::Hibernated => (Hibernating, Action::Hibernate),
        // A failed session may have lost its container: start recreates it.
        DesiredState::Running if session.phase == Failed => (
            Starting,
            Action::Start {
                spec: Box::new(session.spec.clone()),
            },
        ),
        DesiredState::Running => (
            Waking,
            Action::Wake {
                vnc_port: session.spec.vnc_port().unwrap_or_default(),
            },
        ),
    }))
}

async fn agent_supports_hibernation(state: &AppState, agent_id: &str) -> ApiResult<bool> {
    let agent = state.store.get_agent(agent_id).await?;
    Ok(agent.is_some_and(|a| a.capabilities.hibernation))
}
