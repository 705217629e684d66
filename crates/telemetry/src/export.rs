//! The process's logging and, when an OTLP endpoint is given, its
//! OpenTelemetry trace export: spans go in batches to the endpoint's
//! `/v1/traces` as OTLP/HTTP with JSON encoding.
//!
//! Logs and traces are filtered apart: `STREAMSPACE_LOG` says what is
//! logged, while traces always get the spans at `info` and above (the
//! requests, commands and platform calls; not the database driver's), so
//! turning the log down does not blind the traces.

use crate::http_client::RuntimeClient;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::time::Duration;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use url::Url;

/// What is logged when `STREAMSPACE_LOG` does not say. (`streamspace::request`
/// is the request spans, for traces; the OpenTelemetry SDK's own warnings
/// say when exports fail.)
pub const DEFAULT_LOG: &str = "info,sqlx=warn,tower_http=warn,bollard=warn,opentelemetry=warn,\
                               streamspace::request=off";
/// What is traced: the spans at `info` of everything but the drivers and
/// the exporter itself.
const TRACED: &str = "info,sqlx=off,tower_http=off,bollard=off,hyper=off,h2=off,reqwest=off,\
                      kube=off,tower=off,opentelemetry=off";
/// How long one export may take before it is given up.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Where OTLP/HTTP receivers take spans, under the endpoint.
const TRACES_PATH: &str = "v1/traces";

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("--otlp-endpoint: {0}")]
    Endpoint(String),
    #[error("cannot set up the OTLP exporter: {0}")]
    Exporter(String),
    #[error("the OTLP exporter needs a Tokio runtime to send from")]
    NoRuntime,
}

/// How the process reports itself in traces.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The OTLP/HTTP receiver's base URL (`http://collector:4318`); no
    /// traces are exported without one.
    pub otlp_endpoint: Option<Url>,
    /// The `service.name` of the process's spans (`streamspace-server`,
    /// `streamspace-agent`).
    pub service_name: &'static str,
}

/// The installed logging and tracing; [`Telemetry::shutdown`] sends the
/// spans still buffered.
#[must_use = "shut it down on exit, or the last spans are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports what is buffered and stops the exporter. Blocks for at most
    /// the export timeout, off the async workers (the export itself runs
    /// on them).
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        let done = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(err)) = done {
            tracing::warn!(error = %err, "the last spans may not have been exported");
        }
    }
}

/// An endpoint as `--otlp-endpoint` takes it: an `http` or `https` URL
/// without credentials, query or fragment (headers for a collector that
/// wants authentication go in `OTEL_EXPORTER_OTLP_HEADERS`).
pub fn parse_endpoint(text: &str) -> Result<Url, String> {
    let url = Url::parse(text)
        .map_err(|e| format!("not a URL ({e}): write e.g. http://otel-collector:4318"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("use an http:// or https:// URL, e.g. http://otel-collector:4318".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL names no host, e.g. http://otel-collector:4318".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("put no credentials in the URL: set OTEL_EXPORTER_OTLP_HEADERS".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("the URL takes no query or fragment".into());
    }
    Ok(url)
}

/// Where spans are posted: `{endpoint}/v1/traces`, unless the endpoint
/// already ends there.
pub fn traces_url(endpoint: &Url) -> String {
    let base = endpoint.as_str().trim_end_matches('/');
    match base.ends_with(TRACES_PATH) {
        true => base.to_owned(),
        false => format!("{base}/{TRACES_PATH}"),
    }
}

/// Installs the process's logging, and its trace export when
/// `settings.otlp_endpoint` is set. Call once, inside the Tokio runtime.
pub fn init(settings: &Settings) -> Result<Telemetry, TelemetryError> {
    let log =
        EnvFilter::try_from_env("STREAMSPACE_LOG").unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG));
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_filter(log);
    let provider = settings
        .otlp_endpoint
        .as_ref()
        .map(|endpoint| provider(endpoint, settings.service_name))
        .transpose()?;
    let traces = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("streamspace"))
            .with_filter(EnvFilter::new(TRACED))
    });
    tracing_subscriber::registry().with(fmt).with(traces).init();
    if let Some(endpoint) = &settings.otlp_endpoint {
        tracing::info!(endpoint = %traces_url(endpoint), "exporting traces (OTLP/HTTP, JSON)");
    }
    Ok(Telemetry { provider })
}

/// A tracer provider that batches spans to `endpoint`; the batch interval
/// and queue follow the standard `OTEL_BSP_*` variables.
fn provider(
    endpoint: &Url,
    service_name: &'static str,
) -> Result<SdkTracerProvider, TelemetryError> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| TelemetryError::NoRuntime)?;
    let client = RuntimeClient::new(runtime, EXPORT_TIMEOUT)
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpJson)
        .with_endpoint(traces_url(endpoint))
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    let resource = Resource::builder()
        .with_service_name(service_name)
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_http_urls_without_secrets() {
        assert!(parse_endpoint("http://otel-collector:4318").is_ok());
        assert!(parse_endpoint("https://otlp.example.com/otlp").is_ok());
        for bad in [
            "otel-collector:4318",
            "ftp://collector",
            "http://user:pw@collector:4318",
            "http://collector:4318/?token=x",
            "http://collector:4318/#x",
            "not a url",
        ] {
            assert!(parse_endpoint(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn spans_go_to_v1_traces_under_the_endpoint() {
        let url = |text| traces_url(&parse_endpoint(text).expect("valid"));
        assert_eq!(url("http://c:4318"), "http://c:4318/v1/traces");
        assert_eq!(url("http://c:4318/otlp/"), "http://c:4318/otlp/v1/traces");
        assert_eq!(url("http://c:4318/v1/traces"), "http://c:4318/v1/traces");
    }
}
