//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 document of this API, derived
//! from the handlers' `#[utoipa::path]` annotations (collected where the
//! routes are registered, `super::routes`) and the types they take and
//! answer, so it cannot drift from the code the way prose can.
//!
//! Responses that come from shared machinery rather than from one handler
//! are added here, once, so that no annotation can forget them: 401 wherever
//! a login or agent secret is needed (the auth extractors), 400, 408 and
//! 413 wherever a JSON body is read (`ApiJson`), and 500 wherever a handler can
//! fail at all (the store).

use crate::error::ErrorBody;
use axum::Json;
use std::sync::LazyLock;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "StreamSpace",
        description = "Stream containerised desktop applications to a web browser. \
            Errors are `{\"error\": \"…\", \"field\"?: \"…\"}`; times are RFC 3339 UTC; \
            unknown body fields are refused; bodies are limited to 1 MiB (16 KiB for \
            logins and agent enrollment) and must arrive within 30 s of their head \
            (file uploads excepted: docs/FILES.md).",
    ),
    components(schemas(ErrorBody)),
    tags(
        (name = "auth", description = "Logging in and out"),
        (name = "users", description = "Users and their quotas"),
        (name = "mfa", description = "Two-step verification: TOTP and recovery codes (docs/MFA.md)"),
        (name = "templates", description = "The catalog sessions are made from"),
        (name = "sessions", description = "Desktops: start, hibernate, wake, terminate"),
        (name = "sharing", description = "Letting other users watch or work in a session (docs/SHARING.md)"),
        (name = "agents", description = "The hosts sessions run on"),
        (name = "replicas", description = "The control plane's replicas (docs/ARCHITECTURE.md#replicas)"),
        (name = "agent protocol", description = "What agents themselves call (docs/PROTOCOL.md)"),
        (name = "events", description = "Live updates"),
        (name = "files", description = "A session's files folder: list, download, upload (docs/FILES.md)"),
        (name = "viewer", description = "VNC in the browser or through `streamspace connect`"),
        (name = "settings", description = "What admins change at run time"),
        (name = "recordings", description = "Session recordings and their playback (docs/RECORDING.md)"),
        (name = "audit", description = "Who did what, when, from where (docs/AUDIT.md)"),
        (name = "system", description = "Health, metrics and this document"),
    ),
)]
struct ApiDoc;

/// The document, built once: this header, the paths of every route
/// (`super::routes`), then the responses they share.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOCUMENT: LazyLock<utoipa::openapi::OpenApi> = LazyLock::new(|| {
        let mut document = ApiDoc::openapi().merge_from(super::routes().into_openapi());
        SharedResponses.modify(&mut document);
        document
    });
    &DOCUMENT
}

/// This document
#[utoipa::path(
    get,
    operation_id = "getOpenApi",
    path = "/api/v1/openapi.json",
    tag = "system",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = Object)),
)]
pub async fn serve() -> Json<&'static utoipa::openapi::OpenApi> {
    Json(document())
}

struct SharedResponses;

impl Modify for SharedResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "A login token from `POST /api/v1/auth/login` (`sst_…`)",
            ))
            .build();
        let cookie = ApiKeyValue::with_description(
            crate::auth::COOKIE,
            "The HttpOnly cookie `POST /api/v1/auth/login` sets, for browsers",
        );
        let agent = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "The agent's own secret (`ssa_…`) from `POST /api/v1/agents/register`",
            ))
            .build();
        components.add_security_scheme("bearer", SecurityScheme::Http(bearer));
        components.add_security_scheme("cookie", SecurityScheme::ApiKey(ApiKey::Cookie(cookie)));
        components.add_security_scheme("agent_secret", SecurityScheme::Http(agent));

        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                add_shared(operation);
            }
        }
    }
}

fn add_shared(operation: &mut Operation) {
    let secured = operation
        .security
        .as_ref()
        .is_some_and(|requirements| !requirements.is_empty());
    let reads_json = operation
        .request_body
        .as_ref()
        .is_some_and(|body| match body {
            RefOr::T(body) => body.content.contains_key("application/json"),
            RefOr::Ref(_) => true,
        });
    if secured {
        add_error(
            operation,
            "401",
            "Not logged in, or the token or secret is not valid",
        );
    }
    if secured_for_users(operation) {
        // Any user route: the `mfa_required` setting holds an account
        // that has not enrolled MFA to the enrolment routes.
        add_error(
            operation,
            "403",
            "Not allowed: admins only, or the account must enrol MFA first",
        );
    }
    let reads_query = operation.parameters.iter().flatten().any(|parameter| {
        matches!(parameter, RefOr::T(p) if p.parameter_in == utoipa::openapi::path::ParameterIn::Query)
    });
    if reads_query {
        add_error(
            operation,
            "400",
            "A query parameter is not valid: the message names it",
        );
    }
    if reads_json {
        add_error(
            operation,
            "400",
            "The body is not valid: `field` names the culprit",
        );
        add_error(
            operation,
            "408",
            "The body did not arrive within the body-read timeout (30 s by default)",
        );
        add_error(
            operation,
            "413",
            "The body is larger than 1 MiB (16 KiB for logins and agent enrollment)",
        );
    }
    let can_fail = operation
        .responses
        .responses
        .keys()
        .any(|status| status.starts_with('4'));
    if can_fail {
        add_error(operation, "500", "The control plane failed (see its log)");
    }
}

/// Called with a user's login (not an agent's secret).
fn secured_for_users(operation: &Operation) -> bool {
    let requirements = operation.security.iter().flatten();
    let text = serde_json::to_string(&requirements.collect::<Vec<_>>()).unwrap_or_default();
    text.contains("\"bearer\"")
}

fn add_error(operation: &mut Operation, status: &str, description: &str) {
    let error = Content::new(Some(Ref::from_schema_name("ErrorBody")));
    let response = ResponseBuilder::new()
        .description(description)
        .content("application/json", error)
        .build();
    operation
        .responses
        .responses
        .entry(status.to_owned())
        .or_insert(RefOr::T(response));
}
