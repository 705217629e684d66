//! The StreamSpace control plane: REST API, agent hub, VNC proxy and store.
//!
//! Where each concern lives (docs/ARCHITECTURE.md has the whole picture):
//!
//! | concern | module |
//! |---|---|
//! | starting up, shutting down | `startup` ([`Application`]), [`config`], [`bootstrap`] (the first admin), `private` (data-dir permissions) |
//! | HTTP connections, their limits, TLS | `serve` (hyper's HTTP/1 loop, timeouts, caps), `tls` |
//! | the REST API, its routes and OpenAPI document | [`api`] (handlers, `api::routes`), `error` (the HTTP error and body readers) |
//! | who is asking | [`auth`]: tokens, cookies, agent secrets, logins, throttling, password hashing, revocation, MFA (`auth/mfa`), single sign-on (`auth/oidc`); API tokens in `api/tokens.rs` |
//! | groups: who may use which templates and agents | `tenancy` (a user's groups → agent pools and templates), `api/groups.rs`, `api/pools.rs` |
//! | what a session should be, and the rules | `lifecycle` (every state change), `quota`, `scheduler` (placement), `session_error` (their refusals) |
//! | making sessions what they should be | `reconcile` (commands until desired = observed, idle hibernation), `pool` (warm pools: sessions started before a launch asks) |
//! | agents | `hub` (commands out, reports in, orphans; the live control channels in `hub/channels.rs`), `seal` (sessions we placed), `presence` (online or not) |
//! | several replicas on PostgreSQL | `cluster` (the registry of replicas, the `LISTEN/NOTIFY` bus between them) |
//! | viewers and logs through agents | `tunnel` (`/vnc` WebSocket ⇄ data channel relay, logs, files, sound; `tunnel/broker.rs` pairs the two ends) |
//! | sharing a desktop, recording it | `api/shares.rs` (invitations and links; view-only guests), [`recording`] (policy, the recorder, retention) |
//! | web apps through agents | `apps` (`/apps/…` and `{session}--{port}.{apps domain}`: grants, the HTTP proxy, pooled data channels) |
//! | live views | `changes` (in-process notice of a change), `api/events.rs` (the SSE stream), `streams` (each user's stream budget) |
//! | templates | [`template`]: the spec, admin input and its validation, what users may ask |
//! | the database | [`store`] (SQLite or PostgreSQL; a session's trail in `store/audit.rs`; secrets sealed in `store/secrets.rs`) |
//! | secrets at rest | [`vault`] (the key outside the database; TOTP and template secrets) |
//! | who did what, when, from where | `audit_log` (the system audit log; `store/audit_log.rs`), `api/settings.rs` (run-time settings) |
//! | field checks | [`validate`] |
//! | metrics | `metrics` (the counters, the HTTP server's too), `api/metrics.rs` (`GET /metrics`) |
//! | the web UI | `ui` (embedded `ui/dist`) |
//! | what every handler and job shares | `state` (`AppState`: the store, the hub, the bus, settings) |

pub mod api;
pub(crate) mod apps;
pub(crate) mod audit_log;
pub mod auth;
pub mod bootstrap;
pub(crate) mod changes;
pub(crate) mod cluster;
pub mod config;
pub(crate) mod error;
pub(crate) mod hub;
pub(crate) mod lifecycle;
pub(crate) mod metrics;
pub(crate) mod pool;
pub(crate) mod presence;
mod private;
pub(crate) mod quota;
pub(crate) mod reconcile;
pub mod recording;
pub(crate) mod scheduler;
pub(crate) mod seal;
mod serve;
pub(crate) mod session_error;
pub(crate) mod settings_cache;
mod startup;
pub(crate) mod state;
pub mod store;
pub(crate) mod streams;
pub mod template;
pub(crate) mod tenancy;
pub(crate) mod tls;
pub(crate) mod tunnel;
pub(crate) mod ui;
pub mod validate;
pub mod vault;

pub use config::Config;
pub use startup::Application;
