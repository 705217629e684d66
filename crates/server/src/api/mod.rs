//! The public HTTP API. Handlers are thin: parse, check who may do it, call
//! the store (and the hub), shape the answer.

pub mod access;
mod agent_pool;
mod agents;
mod audit;
mod auth;
mod events;
mod files;
mod groups;
mod metrics;
mod mfa;
mod oidc;
mod openapi;
mod pools;
mod prepull;
mod recordings;
mod replicas;
mod request_trace;
mod sessions;
mod settings;
mod shares;
mod templates;
mod tokens;
mod users;
mod views;

pub use crate::presence::status as agent_status;
pub use sessions::view as session_view;
pub use tokens::MAX_TOKENS_PER_USER as MAX_API_TOKENS_PER_USER;

/// The OpenAPI document as pretty-printed JSON, without a running server:
/// what `streamspace openapi` prints and `ui/openapi.json` holds, from which
/// the web UI's types are generated.
pub fn openapi_json() -> Result<String, serde_json::Error> {
    openapi::document().to_pretty_json()
}

use crate::error::{ApiError, BODY_LIMIT, BodyLimit};
use crate::state::AppState;
use axum::extract::DefaultBodyLimit;
use axum::routing::any;
use axum::{Extension, Router};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;

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

/// Every route, each registered once: `routes!` gives axum the handler and
/// the OpenAPI document its `#[utoipa::path]`, so the document cannot miss a
/// route. Handlers that share a path share a `routes!`.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    use crate::{hub::connection, tunnel::agent_side, tunnel::logs, tunnel::viewer};
    OpenApiRouter::new()
        .routes(public(routes!(auth::login)))
        .routes(public(routes!(mfa::login)))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::logout_all))
        .routes(routes!(oidc::providers))
        .routes(routes!(oidc::login))
        .routes(routes!(oidc::callback))
        .routes(routes!(users::me))
        .routes(routes!(users::change_my_password))
        .routes(routes!(users::my_quota))
        .routes(routes!(tokens::list, tokens::create))
        .routes(routes!(tokens::revoke))
        .routes(routes!(mfa::status, mfa::disable))
        .routes(routes!(mfa::start))
        .routes(routes!(mfa::confirm))
        .routes(routes!(mfa::new_recovery_codes))
        .routes(routes!(mfa::reset))
        .routes(routes!(audit::my_logins))
        .routes(routes!(users::get_quota, users::set_quota))
        .routes(routes!(users::list, users::create))
        .routes(routes!(users::get, users::update, users::delete))
        .routes(routes!(groups::list, groups::create))
        .routes(routes!(groups::get, groups::update, groups::delete))
        .routes(routes!(groups::add_member, groups::remove_member))
        .routes(routes!(templates::list, templates::create))
        .routes(catalog_sized(routes!(templates::import)))
        .routes(routes!(templates::export))
        .routes(routes!(
            templates::get,
            templates::update,
            templates::delete
        ))
        .routes(routes!(prepull::start, prepull::status))
        .routes(routes!(agents::list))
        .routes(routes!(agents::create_enrollment_token))
        .routes(public(routes!(agents::register)))
        .routes(routes!(connection::connect))
        .routes(routes!(agent_side::accept))
        .routes(routes!(agents::get, agents::delete, agent_pool::update))
        .routes(routes!(agents::drain))
        .routes(routes!(agents::undrain))
        .routes(routes!(replicas::list))
        .routes(routes!(sessions::list, sessions::create))
        .routes(routes!(sessions::get, sessions::delete))
        .routes(routes!(sessions::set_state))
        .routes(routes!(shares::list, shares::create))
        .routes(routes!(shares::end))
        .routes(routes!(shares::shared_with_me))
        .routes(routes!(shares::join))
        .routes(routes!(logs::logs))
        .routes(routes!(files::list))
        .routes(routes!(files::download, files::upload))
        .routes(routes!(sessions::events))
        .routes(routes!(sessions::heartbeat))
        .routes(routes!(events::stream))
        .routes(routes!(openapi::serve))
        .routes(routes!(viewer::vnc))
        .routes(routes!(crate::tunnel::audio::audio))
        .routes(routes!(crate::tunnel::audio::microphone))
        .routes(routes!(crate::apps::grant::open))
        .routes(routes!(pools::get))
        .routes(routes!(settings::get, settings::put))
        .routes(routes!(recordings::list))
        .routes(routes!(recordings::get, recordings::delete))
        .routes(routes!(audit::list))
        .routes(routes!(audit::export))
        .routes(routes!(healthz))
        .routes(routes!(crate::cluster::drain::readyz))
        .routes(routes!(metrics::serve))
}

/// A route anyone may call gets the small body limit.
fn public(
    (schemas, paths, handlers): UtoipaMethodRouter<AppState>,
) -> UtoipaMethodRouter<AppState> {
    (schemas, paths, handlers.layer(Extension(PUBLIC_BODY_LIMIT)))
}

/// Catalog imports get a larger body limit than other routes: a catalog
/// holds hundreds of templates.
fn catalog_sized(
    (schemas, paths, handlers): UtoipaMethodRouter<AppState>,
) -> UtoipaMethodRouter<AppState> {
    let limit = BodyLimit(crate::template::catalog::CATALOG_BODY_LIMIT);
    (schemas, paths, handlers.layer(Extension(limit)))
}

pub fn router(state: AppState) -> Router {
    let (routes, _) = routes().split_for_parts();
    routes
        // Every documented route, and only those, passes its access rule.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::enforce,
        ))
        // Outside the access rule: the request's trace span covers it.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            request_trace::span,
        ))
        .merge(crate::apps::routes())
        // Replicas only, outside the public API and its access rules: the
        // handler checks the calling replica's secret.
        .route(
            "/internal/v1/tunnels/{id}",
            axum::routing::get(crate::tunnel::internal::accept)
                .post(crate::tunnel::internal::failed),
        )
        .route("/api/v1", any(api_not_found))
        .route("/api/v1/{*rest}", any(api_not_found))
        .fallback(crate::ui::serve)
        .method_not_allowed_fallback(method_not_allowed)
        // For axum's own extractors; `ApiJson` and `ApiBytes` apply the
        // same limit, or a route's `BodyLimit`.
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        // Before any route: on an app's own host every path is the app's.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::apps::by_host,
        ))
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

/// A path that is served, with a method it is not (axum's own answer has
/// no body).
async fn method_not_allowed(method: http::Method) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "this path does not take {method}: see docs/API.md for its methods"
    ))
}

async fn api_not_found() -> ApiError {
    ApiError::NotFound("no such API endpoint: see docs/API.md".into())
}
