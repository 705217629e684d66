//! The StreamSpace control plane: REST API, agent hub, VNC proxy and store.

pub mod api;
pub mod auth;
pub mod bootstrap;
pub mod config;
pub mod error;
pub mod events;
pub mod hub;
pub mod lifecycle;
pub mod metrics;
pub mod presence;
mod private;
pub mod quota;
pub mod reconcile;
pub mod scheduler;
pub mod seal;
mod serve;
pub mod session_error;
pub mod state;
pub mod store;
pub mod streams;
pub mod template;
pub mod tls;
pub mod tunnel;
pub mod ui;
pub mod validate;

pub use config::Config;
pub use startup::Application;

mod startup;
