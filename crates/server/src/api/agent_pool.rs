//! `PATCH /api/v1/agents/{id}`: an admin moves an agent to another pool.
//! Only here and at enrollment (the token's pool) is an agent's pool set;
//! nothing an agent sends can change it (docs/GROUPS.md).

use super::agents;
use super::views::AgentView;
use crate::audit_log::{self, AuditEvent, Outcome};
use crate::auth::AdminUser;
use crate::auth::client_addr::ClientAddr;
use crate::error::{ApiError, ApiJson, ApiPath, ApiResult, ErrorBody};
use crate::state::AppState;
use crate::validate::check_slug;
use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::json;
use streamspace_protocol::AgentId;
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentUpdate {
    /// The agent pool: only users whose groups hold it get sessions on the
    /// agent from now on; sessions there now stay.
    #[schema(pattern = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", example = "team-a")]
    pool: String,
}

/// Change an agent (admin)
///
/// Moves the agent to another pool. Its sessions keep running; new ones
/// come only from users whose groups may use the new pool.
#[utoipa::path(
    patch,
    operation_id = "updateAgent",
    path = "/api/v1/agents/{id}",
    tag = "agents",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The agent's id")),
    request_body = AgentUpdate,
    responses(
        (status = 200, description = "The agent", body = AgentView),
        (status = 400, description = "The pool is not a valid name", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such agent", body = ErrorBody),
    ),
)]
pub async fn update(
    State(state): State<AppState>,
    admin: AdminUser,
    client: ClientAddr,
    ApiPath(id): ApiPath<AgentId>,
    ApiJson(input): ApiJson<AgentUpdate>,
) -> ApiResult<Json<AgentView>> {
    check_slug("pool", &input.pool)?;
    let before = state
        .store
        .get_agent(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("agent"))?;
    if !state.store.set_agent_pool(&id, &input.pool).await? {
        return Err(ApiError::not_found("agent"));
    }
    tracing::info!(agent_id = %id, pool = %input.pool, "agent pool changed");
    let event = AuditEvent::new(admin.0.actor(), "agent.update")
        .target(format!("agent:{}", before.name))
        .outcome(Outcome::Success)
        .client(client.0)
        .detail(json!({"pool": {"from": before.pool, "to": input.pool}}));
    audit_log::record(&state, event).await;
    state.changes.agent_changed(&id);
    agents::get(State(state), admin, ApiPath(id)).await
}
