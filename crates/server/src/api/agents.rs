//! `/api/v1/agents`: the hosts sessions run on (list, get, drain, remove),
//! enrollment tokens, and an agent's own registration.

use super::ForceQuery;
use super::views::{AgentView, LATEST_TIME_MS, time};
use crate::audit_log::admin::{Change, changed};
use crate::audit_log::flood::ANONYMOUS;
use crate::audit_log::{self, AuditEvent, Outcome};
use crate::auth::client_addr::ClientAddr;
use crate::auth::{AdminUser, CurrentUser, secrets};
use crate::error::{
    ApiBytes, ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, ErrorBody, parse_json,
};
use crate::lifecycle::force_terminate;
use crate::presence::{status, with_latest_beat};
use crate::session_error::SessionError;
use crate::state::AppState;
use crate::store::{DEFAULT_POOL, EnrollError, MAX_AGENT_GPUS, MAX_GPU_MODEL, NewAgent, now_ms};
use crate::template::PLATFORMS;
use crate::validate::{FieldError, check_slug};
use axum::Json;
use axum::extract::State;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use streamspace_protocol::{AgentId, Capabilities, Capacity, ServerMessage};
use utoipa::ToSchema;

/// List agents (admin)
#[utoipa::path(
    get,
    operation_id = "listAgents",
    path = "/api/v1/agents",
    tag = "agents",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Every agent", body = Vec<AgentView>),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ),
)]
pub async fn list(State(state): State<AppState>, _: AdminUser) -> ApiResult<Json<Vec<AgentView>>> {
    let loads = state.store.agent_loads().await?;
    let agents = state.store.list_agents().await?;
    let views = agents
        .into_iter()
        .map(|a| {
            let load = loads.get(&a.id).copied().unwrap_or_default();
            AgentView::new(status(&state, &a), with_latest_beat(&state, a), load)
        })
        .collect();
    Ok(Json(views))
}

/// Get an agent (admin)
#[utoipa::path(
    get,
    operation_id = "getAgent",
    path = "/api/v1/agents/{id}",
    tag = "agents",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The agent's id")),
    responses(
        (status = 200, description = "The agent", body = AgentView),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such agent", body = ErrorBody),
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    _: AdminUser,
    ApiPath(id): ApiPath<AgentId>,
) -> ApiResult<Json<AgentView>> {
    let agent = state
        .store
        .get_agent(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("agent"))?;
    let load = state.store.agent_load(&agent.id).await?;
    Ok(Json(AgentView::new(
        status(&state, &agent),
        with_latest_beat(&state, agent),
        load,
    )))
}

/// Remove an agent (admin)
///
/// Its secret stops working and its connection is closed. An agent with
/// sessions is refused unless `force=true`, which ends them first.
#[utoipa::path(
    delete,
    operation_id = "deleteAgent",
    path = "/api/v1/agents/{id}",
    tag = "agents",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The agent's id"), ForceQuery),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "A query parameter is not valid", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such agent", body = ErrorBody),
        (status = 409, description = "It still has sessions (and `force` was not given)", body = ErrorBody),
    ),
)]
pub async fn delete(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    client: ClientAddr,
    ApiPath(id): ApiPath<AgentId>,
    ApiQuery(query): ApiQuery<ForceQuery>,
) -> ApiResult<StatusCode> {
    let name = agent_name(&state, &id).await?;
    let sessions = state.store.agent_sessions(&id).await?;
    if !sessions.is_empty() && !query.force {
        return Err(ApiError::Conflict(format!(
            "the agent still has {} session(s): terminate them first, or remove it with \
             ?force=true to end them without the agent",
            sessions.len()
        )));
    }
    let actor = admin.actor();
    for session in &sessions {
        // One that ended meanwhile is fine: it is what was asked.
        match force_terminate(&state, session, &actor).await {
            Ok(_) | Err(SessionError::AlreadyTerminated) => {}
            Err(err) => return Err(err.into()),
        }
    }
    if !state.store.delete_agent(&id).await? {
        return Err(ApiError::not_found("agent"));
    }
    let reason = "this agent was removed by an admin".to_owned();
    // The replica holding its control channel (maybe not this one) says it.
    let goodbye = ServerMessage::Goodbye { reason };
    state.bus.to_agent(&state.hub, &id, goodbye).await;
    state.hub.disconnect(&id);
    state.hub.forget(&id);
    state.changes.agent_changed(&id);
    let detail = json!({"id": id, "force": query.force, "sessions_ended": sessions.len()});
    let change = agent_change(&admin, client, "agent.delete", &name, detail);
    changed(&state, change).await;
    Ok(StatusCode::NO_CONTENT)
}

/// The agent's name, for the audit log (404 if there is no such agent).
async fn agent_name(state: &AppState, id: &AgentId) -> ApiResult<String> {
    let agent = state.store.get_agent(id).await?;
    agent
        .map(|a| a.name)
        .ok_or_else(|| ApiError::not_found("agent"))
}

/// A change to one agent, named by its name (its id in the detail).
fn agent_change<'a>(
    admin: &'a CurrentUser,
    client: ClientAddr,
    kind: &'static str,
    name: &str,
    detail: serde_json::Value,
) -> Change<'a> {
    Change {
        by: admin,
        client,
        kind,
        target: format!("agent:{name}"),
        detail,
    }
}

/// Drain an agent (admin)
///
/// `POST /agents/{id}/drain`: keep the agent's sessions, place no new ones.
#[utoipa::path(
    post,
    operation_id = "drainAgent",
    path = "/api/v1/agents/{id}/drain",
    tag = "agents",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The agent's id")),
    responses(
        (status = 200, description = "The agent", body = AgentView),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such agent", body = ErrorBody),
    ),
)]
pub async fn drain(
    state: State<AppState>,
    admin: AdminUser,
    client: ClientAddr,
    id: ApiPath<AgentId>,
) -> ApiResult<Json<AgentView>> {
    set_draining(state, (admin, client), id, true).await
}

/// Undrain an agent (admin)
///
/// New sessions may be placed on it again.
#[utoipa::path(
    post,
    operation_id = "undrainAgent",
    path = "/api/v1/agents/{id}/undrain",
    tag = "agents",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The agent's id")),
    responses(
        (status = 200, description = "The agent", body = AgentView),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such agent", body = ErrorBody),
    ),
)]
pub async fn undrain(
    state: State<AppState>,
    admin: AdminUser,
    client: ClientAddr,
    id: ApiPath<AgentId>,
) -> ApiResult<Json<AgentView>> {
    set_draining(state, (admin, client), id, false).await
}

async fn set_draining(
    State(state): State<AppState>,
    (admin, client): (AdminUser, ClientAddr),
    ApiPath(id): ApiPath<AgentId>,
    draining: bool,
) -> ApiResult<Json<AgentView>> {
    if !state.store.set_agent_draining(&id, draining).await? {
        return Err(ApiError::not_found("agent"));
    }
    tracing::info!(agent_id = %id, draining, "agent drain state changed");
    state.changes.agent_changed(&id);
    let kind = if draining {
        "agent.drain"
    } else {
        "agent.undrain"
    };
    let name = agent_name(&state, &id).await?;
    let change = agent_change(&admin.0, client, kind, &name, json!({"id": id}));
    changed(&state, change).await;
    get(State(state), admin, ApiPath(id)).await
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    /// How long the token stays usable, e.g. "1h" (default 24h).
    #[serde(default)]
    #[schema(pattern = r"^[0-9]+(ms|s|m|h|d|w|y)$", example = "1h")]
    ttl: Option<String>,
    /// The agent pool the enrolled agent joins (default `default`).
    #[serde(default)]
    #[schema(pattern = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", example = "team-a")]
    pool: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct EnrollmentToken {
    /// Single use: an agent trades it for its own secret.
    token: String,
    #[schema(format = DateTime)]
    expires_at: String,
    /// The agent pool the enrolled agent joins.
    pool: String,
    /// A command that starts a Docker agent with this token.
    command: String,
}

/// Create an enrollment token (admin)
///
/// The body is optional.
#[utoipa::path(
    post,
    operation_id = "createEnrollmentToken",
    path = "/api/v1/agents/enrollment-tokens",
    tag = "agents",
    security(("bearer" = []), ("cookie" = [])),
    request_body(content = Option<TokenRequest>, content_type = "application/json"),
    responses(
        (status = 201, description = "A new single-use token", body = EnrollmentToken),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ),
)]
pub async fn create_enrollment_token(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    client: ClientAddr,
    ApiBytes(body): ApiBytes,
) -> ApiResult<(StatusCode, Json<EnrollmentToken>)> {
    let request: TokenRequest = if body.iter().all(u8::is_ascii_whitespace) {
        TokenRequest::default()
    } else {
        parse_json(&body)?
    };
    let ttl = match request.ttl {
        None => state.config.enrollment_ttl,
        Some(text) => humantime::parse_duration(&text)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                FieldError::new("ttl", format!("{text:?} is not a duration such as \"1h\""))
            })?,
    };
    let expires_at = i64::try_from(ttl.as_millis())
        .ok()
        .and_then(|ttl| now_ms().checked_add(ttl))
        .filter(|&at| at <= LATEST_TIME_MS)
        .ok_or_else(|| {
            FieldError::new(
                "ttl",
                "too long: the token must expire before the year 10000",
            )
        })?;
    let pool = request.pool.unwrap_or_else(|| DEFAULT_POOL.to_owned());
    check_slug("pool", &pool)?;
    let token = secrets::generate(secrets::SecretKind::Enrollment);
    let hash = secrets::hash(&token);
    let by = admin.user.id.as_str();
    state
        .store
        .create_pool_enrollment_token(&hash, by, expires_at, &pool)
        .await?;
    let command = format!(
        "streamspace agent docker --control-plane {} --enrollment-token {token}",
        state.public_url.as_str().trim_end_matches('/')
    );
    let change = Change {
        by: &admin,
        client,
        kind: "agent.enrollment_token",
        target: "agents".into(),
        detail: json!({"expires_at": time(expires_at)}),
    };
    changed(&state, change).await;
    let answer = EnrollmentToken {
        token,
        expires_at: time(expires_at),
        pool,
        command,
    };
    Ok((StatusCode::CREATED, Json(answer)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    enrollment_token: String,
    #[schema(pattern = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
    name: String,
    /// `docker` or `kubernetes`.
    platform: String,
    #[serde(default)]
    region: Option<String>,
    /// Keys and values: up to 63 letters, digits, `-`, `_`, `.` or `/`.
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    capacity: Capacity,
    #[serde(default)]
    capabilities: Capabilities,
}

#[derive(Serialize, ToSchema)]
pub struct Registered {
    #[schema(value_type = String)]
    agent_id: AgentId,
    /// The agent's own secret, shown this once.
    secret: String,
}

/// Enroll an agent
///
/// `POST /api/v1/agents/register`: an agent trades a single-use enrollment
/// token for its own secret, which is shown this once and stored hashed.
#[utoipa::path(
    post,
    operation_id = "registerAgent",
    path = "/api/v1/agents/register",
    tag = "agents",
    request_body = Registration,
    responses(
        (status = 201, description = "Enrolled", body = Registered),
        (status = 401, description = "The enrollment token is unknown, used or expired", body = ErrorBody),
        (status = 409, description = "An agent with this name exists", body = ErrorBody),
    ),
)]
pub async fn register(
    State(state): State<AppState>,
    client: ClientAddr,
    ApiJson(input): ApiJson<Registration>,
) -> ApiResult<(StatusCode, Json<Registered>)> {
    check_slug("name", &input.name)?;
    if !PLATFORMS.contains(&input.platform.as_str()) {
        return Err(FieldError::new(
            "platform",
            format!(
                "unknown platform {:?}: use one of {PLATFORMS:?}",
                input.platform
            ),
        )
        .into());
    }
    check_labels(&input.labels)?;
    check_region(input.region.as_deref())?;
    check_capacity(&input.capacity)?;
    let secret = secrets::generate(secrets::SecretKind::Agent);
    let agent = NewAgent {
        name: input.name,
        platform: input.platform,
        region: input.region,
        labels: input.labels,
        capacity: input.capacity,
        capabilities: input.capabilities,
    };
    let token_hash = secrets::hash(&input.enrollment_token);
    let registered = state
        .store
        .register_agent(&token_hash, &agent, &secrets::hash(&secret))
        .await;
    let agent_id = match registered {
        Ok(id) => id,
        Err(EnrollError::BadToken) => {
            registration(&state, ANONYMOUS.into(), &agent, client, None).await;
            return Err(ApiError::Unauthorized(EnrollError::BadToken.to_string()));
        }
        Err(EnrollError::Store(store)) => return Err(store.into()),
    };
    tracing::info!(%agent_id, name = %agent.name, platform = %agent.platform, "agent enrolled");
    let actor = format!("agent:{}", agent.name);
    registration(&state, actor, &agent, client, Some(&agent_id)).await;
    state.changes.agent_changed(&agent_id);
    Ok((StatusCode::CREATED, Json(Registered { agent_id, secret })))
}

/// `agent.register`: an agent enrolled (`id` set), or a host tried to with a
/// token that is unknown, used or expired (by `anonymous`, a failure).
async fn registration(
    state: &AppState,
    actor: String,
    agent: &NewAgent,
    client: ClientAddr,
    id: Option<&AgentId>,
) {
    let outcome = match id {
        Some(_) => Outcome::Success,
        None => Outcome::Failure,
    };
    let event = AuditEvent::new(actor, "agent.register")
        .target(format!("agent:{}", agent.name))
        .outcome(outcome)
        .client(client.0)
        .detail(json!({"id": id, "platform": agent.platform}));
    audit_log::record(state, event).await;
}

/// Labels an agent may carry: enough to describe a host, bounded so an
/// enrolling host cannot make the control plane store much.
const MAX_LABELS: usize = 64;

fn label_ok(s: &str) -> bool {
    s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
}

/// What an enrolling host says it has; its hellos are bounded the same way
/// (`store::agents::bounded`) without refusing the connection.
fn check_capacity(capacity: &Capacity) -> Result<(), FieldError> {
    if capacity.gpus > MAX_AGENT_GPUS {
        return Err(FieldError::new(
            "capacity.gpus",
            format!(
                "{}: an agent has at most {MAX_AGENT_GPUS} GPUs",
                capacity.gpus
            ),
        ));
    }
    match capacity.gpu_model.as_deref() {
        Some(model)
            if model.trim().is_empty()
                || model.chars().count() > MAX_GPU_MODEL
                || model.chars().any(char::is_control) =>
        {
            Err(FieldError::new(
                "capacity.gpu_model",
                format!("1 to {MAX_GPU_MODEL} printable characters, e.g. \"NVIDIA A10\""),
            ))
        }
        _ => Ok(()),
    }
}

fn check_region(region: Option<&str>) -> Result<(), FieldError> {
    match region {
        Some(r) if r.is_empty() || !label_ok(r) => Err(FieldError::new(
            "region",
            format!("{r:?}: a region is up to 63 letters, digits, '-', '_', '.' or '/'"),
        )),
        _ => Ok(()),
    }
}

fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), FieldError> {
    if labels.len() > MAX_LABELS {
        return Err(FieldError::new(
            "labels",
            format!(
                "{} labels: an agent may carry at most {MAX_LABELS}",
                labels.len()
            ),
        ));
    }
    for (key, value) in labels {
        if key.is_empty() || !label_ok(key) || !label_ok(value) {
            return Err(FieldError::new(
                "labels",
                format!(
                    "{key:?}={value:?}: keys and values are up to 63 letters, digits, '-', '_', '.' or '/'"
                ),
            ));
        }
    }
    Ok(())
}
