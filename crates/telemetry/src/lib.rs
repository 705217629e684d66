//! Logging and OpenTelemetry tracing for the `streamspace` binary: the
//! subscriber every command installs, the OTLP/HTTP trace exporter that
//! `--otlp-endpoint` turns on, and the W3C trace context a command carries
//! from the API request that issued it to the agent that runs it.

pub mod context;
pub mod export;
mod http_client;

pub use export::{Settings, Telemetry, TelemetryError, init, parse_endpoint};
