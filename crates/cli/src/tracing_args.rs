//! `--otlp-endpoint`, which `server`, `up` and every agent take: where to
//! export OpenTelemetry traces (docs/OPERATIONS.md, "Tracing"). Off unless
//! given.

use clap::Args;
use url::Url;

#[derive(Args, Debug, Clone, Default)]
pub struct TracingArgs {
    /// Export OpenTelemetry traces (OTLP/HTTP, JSON encoding) to this
    /// receiver, e.g. http://otel-collector:4318; spans are posted to
    /// /v1/traces under it. Off by default.
    #[arg(long, env = "STREAMSPACE_OTLP_ENDPOINT", value_parser = streamspace_telemetry::parse_endpoint)]
    pub otlp_endpoint: Option<Url>,
}

impl TracingArgs {
    /// What the process exports its traces as.
    pub fn settings(&self, service_name: &'static str) -> streamspace_telemetry::Settings {
        streamspace_telemetry::Settings {
            otlp_endpoint: self.otlp_endpoint.clone(),
            service_name,
        }
    }
}
