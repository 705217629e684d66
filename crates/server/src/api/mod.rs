//! The public HTTP API. Handlers are thin: parse, check who may do it, call
//! the store (and the hub), shape the answer.

mod agents;
mod auth;
mod events;
mod openapi;
mod sessions;
mod templates;
mod users;
mod views;

pub use crate::presence::status as agent_status;
pub use sessions::view as session_view;

/// The OpenAPI document as pretty-printed JSON, without a running server:
/// what `streamspace openapi` prints and `ui/openapi.json` holds, from which
/// the web UI's types are generated.
pub fn openapi_json() -> Result<String, serde_json::Error> {
    openapi::document().to_pretty_json()
}

use crate::error::{ApiError, BODY_LIMIT, BodyLimit};
use crate::state::AppState;
use crate::{hub, tunnel};
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use axum::{Extension, Router};

/// `?force=true` on a removal: end what an absent agent cannot (admins
/// only), recorded in the audit trail.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ForceQuery {
    /// End the session (or the agent's sessions) at once, without the
    /// agent: for an agent that is gone for good. Admins only.
    #[serde(default)]
    force: bool,
}

/// The body limit of the routes anyone may call (logins, agent enrollment):
/// ample for what they take, and all a client that has proven nothing can
/// make the server hold per connection.
const PUBLIC_BODY_LIMIT: BodyLimit = BodyLimit(16 * 1024);

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route(
            "/auth/login",
            post(auth::login).layer(Extension(PUBLIC_BODY_LIMIT)),
        )
        .route("/auth/logout", post(auth::logout))
        .route("/auth/logout-all", post(auth::logout_all))
        .route("/users/me", get(users::me))
        .route("/users/me/password", put(users::change_my_password))
        .route("/users/me/quota", get(users::my_quota))
        .route(
            "/users/{id}/quota",
            get(users::get_quota).put(users::set_quota),
        )
        .route("/users", get(users::list).post(users::create))
        .route(
            "/users/{id}",
            get(users::get).put(users::update).delete(users::delete),
        )
        .route("/templates", get(templates::list).post(templates::create))
        .route(
            "/templates/{id}",
            get(templates::get)
                .put(templates::update)
                .delete(templates::delete),
        )
        .route("/agents", get(agents::list))
        .route(
            "/agents/enrollment-tokens",
            post(agents::create_enrollment_token),
        )
        .route(
            "/agents/register",
            post(agents::register).layer(Extension(PUBLIC_BODY_LIMIT)),
        )
        .route("/agents/connect", get(hub::connect))
        .route("/agents/tunnels/{id}", get(tunnel::accept))
        .route("/agents/{id}", get(agents::get).delete(agents::delete))
        .route("/agents/{id}/drain", post(agents::drain))
        .route("/agents/{id}/undrain", post(agents::undrain))
        .route("/sessions", get(sessions::list).post(sessions::create))
        .route(
            "/sessions/{id}",
            get(sessions::get).delete(sessions::delete),
        )
        .route("/sessions/{id}/state", put(sessions::set_state))
        .route("/sessions/{id}/logs", get(tunnel::logs))
        .route("/sessions/{id}/events", get(sessions::events))
        .route("/sessions/{id}/heartbeat", post(sessions::heartbeat))
        .route("/events", get(events::stream))
        .route("/openapi.json", get(openapi::serve))
        .fallback(api_not_found);

    Router::new()
        .nest("/api/v1", api)
        .route("/vnc/{id}", get(tunnel::vnc))
        .route("/healthz", get(healthz))
        .route("/metrics", get(crate::metrics::serve))
        .fallback(crate::ui::serve)
        // For axum's own extractors; `ApiJson` and `ApiBytes` apply the
        // same limit, or a route's `BodyLimit`.
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// Liveness
#[utoipa::path(
    get,
    operation_id = "healthz",
    path = "/healthz",
    tag = "system",
    responses((status = 200, description = "`ok`", content_type = "text/plain", body = String)),
)]
async fn healthz() -> &'static str {
    "ok"
}

async fn api_not_found() -> ApiError {
    ApiError::NotFound("no such API endpoint: see docs/API.md".into())
}
