//! `GET /api/v1/templates/{id}/pool`: a template's warm pool as it is now
//! (`pool.rs` keeps it filled), for admins.

use crate::auth::AdminUser;
use crate::error::{ApiError, ApiPath, ApiResult, ErrorBody};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use serde::Serialize;
use std::collections::BTreeMap;
use streamspace_protocol::{DesiredState, Phase};
use utoipa::ToSchema;

/// A template's warm pool.
#[derive(Debug, Serialize, ToSchema)]
pub struct PoolView {
    /// Sessions kept ready on each agent that may run the template.
    pub size: u32,
    /// Running and waiting for a launch.
    pub ready: usize,
    /// On their way to running.
    pub starting: usize,
    /// Ready sessions per agent id.
    pub ready_by_agent: BTreeMap<String, usize>,
}

/// A template's warm pool
#[utoipa::path(
    get,
    operation_id = "getTemplatePool",
    path = "/api/v1/templates/{id}/pool",
    tag = "templates",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The template's id or name")),
    responses(
        (status = 200, description = "The pool", body = PoolView),
        (status = 403, description = "Admins only", body = ErrorBody),
        (status = 404, description = "No such template", body = ErrorBody),
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    _: AdminUser,
) -> ApiResult<Json<PoolView>> {
    let template = state
        .store
        .find_template(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("template"))?;
    let mut view = PoolView {
        size: template.spec.warm_pool,
        ready: 0,
        starting: 0,
        ready_by_agent: BTreeMap::new(),
    };
    for session in state.store.pool_sessions(Some(&template.id)).await? {
        match (session.state, session.phase) {
            (DesiredState::Running, Phase::Running) => {
                view.ready += 1;
                let agent = session.agent_id.map(|a| a.to_string()).unwrap_or_default();
                *view.ready_by_agent.entry(agent).or_default() += 1;
            }
            (DesiredState::Running, Phase::Pending | Phase::Starting) => view.starting += 1,
            _ => {}
        }
    }
    Ok(Json(view))
}
