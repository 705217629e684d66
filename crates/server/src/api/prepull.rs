//! `/api/v1/templates/{id}/prepull`: an admin asks every connected agent
//! that may run a template to pull its image now, so the first session
//! does not wait for it, and sees where each stands.

use crate::auth::AdminUser;
use crate::error::{ApiError, ApiPath, ApiResult, ErrorBody};
use crate::hub::prepulls::Entry;
use crate::state::AppState;
use crate::store::TemplateRecord;
use axum::Json;
use axum::extract::State;
use http::StatusCode;
use serde::Serialize;
use streamspace_protocol::AgentId;
use utoipa::ToSchema;

/// A template's pre-pull on each agent asked.
#[derive(Serialize, ToSchema)]
pub struct Prepull {
    #[schema(value_type = String)]
    pub template_id: streamspace_protocol::TemplateId,
    pub image: String,
    pub agents: Vec<PrepullAgent>,
}

/// Where one agent's pre-pull stands.
#[derive(Serialize, ToSchema)]
pub struct PrepullAgent {
    #[schema(value_type = String)]
    pub agent_id: AgentId,
    pub name: String,
    #[serde(flatten)]
    pub entry: Entry,
}

/// Pre-pull a template's image (admin)
///
/// Asks every connected agent that may run the template (its platform is
/// allowed, it is not draining) to pull the image now, with the template's
/// registry credentials. Answers at once with the agents asked; `GET`
/// shows how their pulls go. Kubernetes agents answer `done` at once:
/// their nodes pull when a pod needs the image.
#[utoipa::path(
    post,
    operation_id = "prepullTemplate",
    path = "/api/v1/templates/{id}/prepull",
    tag = "templates",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The template's id or name")),
    responses(
        (status = 202, description = "The agents asked", body = Prepull),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such template", body = ErrorBody),
        (status = 409, description = "No connected agent may run the template", body = ErrorBody),
    ),
)]
pub async fn start(
    State(state): State<AppState>,
    _: AdminUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<(StatusCode, Json<Prepull>)> {
    let template = find(&state, &id).await?;
    let spec = &template.spec;
    let mut asked = Vec::new();
    for agent in state.store.list_agents().await? {
        if agent.draining || !spec.allows_platform(&agent.platform) {
            continue;
        }
        // Wherever its control channel is: the bus carries it there.
        if agent.connected && crate::hub::prepull(&state, &agent.id, &template).await {
            asked.push(agent.id);
        }
    }
    if asked.is_empty() {
        return Err(ApiError::Conflict(format!(
            "no connected agent may run template {:?}: start an agent of a platform it allows \
             ({}), or end an agent's draining",
            spec.name,
            if spec.platforms.is_empty() {
                "any".to_owned()
            } else {
                spec.platforms.join(", ")
            }
        )));
    }
    state
        .hub
        .prepulls
        .requested(&template.id, &spec.image, &asked);
    tracing::info!(template = %spec.name, image = %spec.image, agents = asked.len(), "pre-pull asked");
    Ok((StatusCode::ACCEPTED, Json(view(&state, &template).await?)))
}

/// See a template's pre-pull (admin)
///
/// Where each agent asked by the last `POST` stands: `requested`,
/// `pulling` (with progress in `message`), `done` or `failed` (with why).
/// Kept in memory: empty after the control plane restarts.
#[utoipa::path(
    get,
    operation_id = "getTemplatePrepull",
    path = "/api/v1/templates/{id}/prepull",
    tag = "templates",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The template's id or name")),
    responses(
        (status = 200, description = "Each agent asked", body = Prepull),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such template", body = ErrorBody),
    ),
)]
pub async fn status(
    State(state): State<AppState>,
    _: AdminUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Prepull>> {
    let template = find(&state, &id).await?;
    Ok(Json(view(&state, &template).await?))
}

async fn find(state: &AppState, id: &str) -> ApiResult<TemplateRecord> {
    state
        .store
        .find_template(id)
        .await?
        .ok_or_else(|| ApiError::not_found("template"))
}

async fn view(state: &AppState, template: &TemplateRecord) -> ApiResult<Prepull> {
    let entries = state.hub.prepulls.of(&template.id);
    let names: std::collections::HashMap<AgentId, String> = state
        .store
        .list_agents()
        .await?
        .into_iter()
        .map(|a| (a.id, a.name))
        .collect();
    let agents = entries
        .into_iter()
        .map(|(agent_id, entry)| PrepullAgent {
            name: names.get(&agent_id).cloned().unwrap_or_default(),
            agent_id,
            entry,
        })
        .collect();
    Ok(Prepull {
        template_id: template.id.clone(),
        image: template.spec.image.clone(),
        agents,
    })
}
