//! Who may call each route, decided in one place: [`rule`] names the access
//! of every operation of the OpenAPI document, [`enforce`] checks it before
//! any handler runs, and [`table`] prints it for docs/API.md. A route without
//! a rule is refused, and a test holds every route to its rule.
//!
//! What depends on the record asked for (a session is its owner's; a
//! template may be limited to groups) is the `scope` of a rule, checked
//! where the record is read (`auth::visible_session`), the same for every
//! route that reads one.

use crate::auth::CurrentUser;
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::Method;
use std::collections::HashMap;
use std::sync::LazyLock;

/// Who may call a route at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, logged in or not.
    Public,
    /// An enrolled agent, by its secret (presented here, recognised by the
    /// handler, which knows the agents).
    Agent,
    /// Any logged-in user.
    User,
    /// Logged-in admins.
    Admin,
}

impl Access {
    fn as_str(self) -> &'static str {
        match self {
            Access::Public => "anyone",
            Access::Agent => "agent",
            Access::User => "user",
            Access::Admin => "admin",
        }
    }
}

/// A route's access and what further limits which records it reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub access: Access,
    pub scope: &'static str,
}

const ANYONE: Rule = rule_of(Access::Public, "");
const AGENT: Rule = rule_of(Access::Agent, "its own sessions and tunnels only");
const SELF: Rule = rule_of(Access::User, "the caller's own account");
const ADMIN: Rule = rule_of(Access::Admin, "");
/// Sessions: the owner's, and every session for admins; others get the
/// 404 of a session that does not exist (`auth::visible_session`).
const OWNER: Rule = rule_of(Access::User, "own sessions; admins all (404 to others)");

const fn rule_of(access: Access, scope: &'static str) -> Rule {
    Rule { access, scope }
}

/// The rule of every operation, by its OpenAPI `operationId`.
pub fn rule(operation_id: &str) -> Option<Rule> {
    Some(match operation_id {
        "healthz" | "readyz" | "getOpenApi" | "login" => ANYONE,
        "authProviders" => rule_of(Access::Public, "which ways to sign in: no names"),
        "oidcLogin" | "oidcCallback" => rule_of(
            Access::Public,
            "single sign-on; the callback needs this browser's signed login cookie",
        ),
        "metrics" => rule_of(Access::Public, "counts only: no names, ids or addresses"),
        "registerAgent" => rule_of(Access::Public, "with a one-time enrollment token"),
        "agentControlChannel" | "agentDataChannel" => AGENT,
        "logout" | "logoutAll" | "getMe" | "changeMyPassword" | "getMyQuota" => SELF,
        "listApiTokens" | "createApiToken" | "revokeApiToken" => {
            rule_of(Access::User, "the caller's own API tokens")
        }
        "streamEvents" => rule_of(
            Access::User,
            "changes to own sessions; admins all sessions and agents",
        ),
        "listSessions" => rule_of(Access::User, "own sessions; admins all (`?all=true`)"),
        "createSession" => rule_of(
            Access::User,
            "for oneself, within quota and the template's limits and groups, on agents of the caller's pools",
        ),
        "terminateSession" | "getSessionEvents" | "sessionHeartbeat" | "getSessionLogs"
        | "setSessionState" | "openSessionApp" => OWNER,
        "getSession" | "viewSession" | "hearSession" => rule_of(
            Access::User,
            "own sessions, and those shared with the caller (live share); admins all (404 to others)",
        ),
        "speakIntoSession" => rule_of(
            Access::User,
            "own sessions, and those shared with the caller with control (403 to view-only guests); admins all (404 to others)",
        ),
        "listSessionShares" | "createSessionShare" | "endSessionShare" => OWNER,
        "listSharedSessions" => rule_of(Access::User, "sessions shared with the caller"),
        "joinShareLink" => rule_of(
            Access::User,
            "with a live link's secret; lets the caller in for the link's life",
        ),
        "listSessionFiles" | "downloadSessionFile" | "uploadSessionFile" => rule_of(
            Access::User,
            "own sessions; admins all (404 to others); never share guests; as the template's desktop.file_transfer allows",
        ),
        "listTemplates" | "getTemplate" => rule_of(
            Access::User,
            "admins every template and field; users those allowed to their groups, without the environment or secrets",
        ),
        "createTemplate" | "replaceTemplate" | "deleteTemplate" | "importTemplates"
        | "exportTemplates" | "getTemplatePool" | "getTemplatePrepull" | "prepullTemplate" => ADMIN,
        "listAgents"
        | "getAgent"
        | "deleteAgent"
        | "drainAgent"
        | "undrainAgent"
        | "createEnrollmentToken"
        | "updateAgent" => ADMIN,
        "listReplicas" => ADMIN,
        "listGroups" | "createGroup" | "getGroup" | "updateGroup" | "deleteGroup"
        | "addGroupMember" | "removeGroupMember" => ADMIN,
        "listUsers" | "createUser" | "getUser" | "updateUser" | "deleteUser" | "getUserQuota"
        | "setUserQuota" => ADMIN,
        "getSettings" | "putSettings" => ADMIN,
        "listRecordings" | "getRecording" | "deleteRecording" => ADMIN,
        "loginMfa" => rule_of(
            Access::Public,
            "with a challenge the password step answered",
        ),
        "getMyMfa" | "startTotp" | "confirmTotp" | "newRecoveryCodes" | "disableMyMfa" => SELF,
        "resetUserMfa" => ADMIN,
        "listAuditEvents" | "exportAuditEvents" => ADMIN,
        "listMyLogins" => rule_of(
            Access::User,
            "the caller's own logins, since the account exists",
        ),
        _ => return None,
    })
}

/// Each route's rule by method and path template, from the OpenAPI
/// document (which every route is in: `api::routes`).
static RULES: LazyLock<HashMap<(Method, String), Rule>> = LazyLock::new(|| {
    operations()
        .into_iter()
        .filter_map(|(method, path, id)| Some(((method, path), rule(&id)?)))
        .collect()
});

/// Every operation of the document: method, path template, operation id.
pub fn operations() -> Vec<(Method, String, String)> {
    let document = super::openapi::document();
    let mut all = Vec::new();
    for (path, item) in &document.paths.paths {
        let methods = [
            (Method::GET, &item.get),
            (Method::POST, &item.post),
            (Method::PUT, &item.put),
            (Method::PATCH, &item.patch),
            (Method::DELETE, &item.delete),
        ];
        for (method, operation) in methods {
            if let Some(operation) = operation {
                let id = operation.operation_id.clone().unwrap_or_default();
                all.push((method, path.clone(), id));
            }
        }
    }
    all
}

/// The layer: finds the route's rule and checks it, so no handler runs for
/// a caller its rule does not admit. The user it authenticated rides along
/// in the request, for the handler's `CurrentUser` (one lookup, not two).
pub async fn enforce(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(rule) = rule_for(&request) else {
        // Fail closed: a route nobody wrote a rule for serves nobody.
        return ApiError::Forbidden("this route has no access rule yet".into()).into_response();
    };
    match rule.access {
        Access::Public => next.run(request).await,
        // The handler knows which agent a secret is (the control channel
        // asks the store, a data channel the connected agents); here, only
        // that a credential came at all.
        Access::Agent if crate::auth::bearer_token(request.headers()).is_none() => {
            ApiError::Unauthorized(
                "agents authenticate with Authorization: Bearer <agent secret>".into(),
            )
            .into_response()
        }
        Access::Agent => next.run(request).await,
        Access::User | Access::Admin => {
            let (mut parts, body) = request.into_parts();
            let user = match CurrentUser::from_request_parts(&mut parts, &state).await {
                Ok(user) => user,
                Err(refusal) => return refusal.into_response(),
            };
            if rule.access == Access::Admin && !user.user.is_admin() {
                return ApiError::Forbidden("this needs an admin".into()).into_response();
            }
            parts.extensions.insert(user);
            next.run(Request::from_parts(parts, body)).await
        }
    }
}

fn rule_for(request: &Request) -> Option<Rule> {
    let path = request.extensions().get::<MatchedPath>()?.as_str();
    // HEAD is answered by the GET route.
    let method = match request.method() {
        &Method::HEAD => Method::GET,
        other => other.clone(),
    };
    RULES.get(&(method, path.to_owned())).copied()
}

/// The rules as the Markdown table in docs/API.md.
pub fn table() -> String {
    let mut rows: Vec<_> = operations()
        .into_iter()
        .map(|(method, path, id)| {
            let rule = rule(&id);
            let access = rule.map_or("**none: refused**", |r| r.access.as_str());
            let scope = rule.map_or("", |r| r.scope);
            let row = format!("| `{method} {path}` | `{id}` | {access} | {scope} |");
            (path, method.to_string(), row)
        })
        .collect();
    rows.sort();
    let mut table =
        String::from("| route | operation | who | which records |\n|---|---|---|---|\n");
    for (_, _, row) in rows {
        table.push_str(&row);
        table.push('\n');
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: &str = "<!-- access-table:start (generated: see api/access.rs) -->\n";
    const END: &str = "<!-- access-table:end -->";

    #[test]
    fn every_route_has_a_rule() {
        let missing: Vec<_> = operations()
            .into_iter()
            .filter(|(_, _, id)| rule(id).is_none())
            .collect();
        assert!(
            missing.is_empty(),
            "routes without an access rule: {missing:?}"
        );
    }

    /// docs/API.md shows the rules as they are. `STREAMSPACE_BLESS=1`
    /// rewrites the table there.
    #[test]
    fn docs_show_the_rules() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/API.md");
        let doc = std::fs::read_to_string(path).expect("docs/API.md");
        let (head, rest) = doc.split_once(START).expect("the table's start marker");
        let (shown, tail) = rest.split_once(END).expect("the table's end marker");
        let wanted = table();
        if std::env::var_os("STREAMSPACE_BLESS").is_some() {
            std::fs::write(path, format!("{head}{START}{wanted}{END}{tail}")).expect("write");
            return;
        }
        assert_eq!(
            shown, wanted,
            "docs/API.md's access table is stale: run \
             STREAMSPACE_BLESS=1 cargo test -p streamspace-server docs_show_the_rules"
        );
    }
}
