//! A small OTLP/HTTP trace receiver on loopback (JSON encoding, as
//! `--otlp-endpoint` exports): it keeps every span the real server and
//! agents post to `/v1/traces`, for tests to find traces in.

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use url::Url;

/// The largest export accepted (the SDK sends at most 512 spans a batch).
const MAX_BODY: usize = 16 << 20;

/// One received span.
#[derive(Debug, Clone)]
pub struct Span {
    /// The exporting process's `service.name`.
    pub service: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// Attribute values as text.
    pub attributes: HashMap<String, String>,
}

impl Span {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

type Spans = Arc<Mutex<Vec<Span>>>;

/// The receiver; it stops when dropped.
pub struct Receiver {
    /// What to pass as `--otlp-endpoint`.
    pub url: Url,
    spans: Spans,
    /// Exports that could not be read, for the failure message.
    refused: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = Url::parse(&format!("http://{}", listener.local_addr()?))?;
        let spans = Spans::default();
        let refused = Arc::new(Mutex::new(Vec::new()));
        let (kept, notes) = (spans.clone(), refused.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (kept, notes) = (kept.clone(), notes.clone());
                let service =
                    service_fn(move |request| receive(request, kept.clone(), notes.clone()));
                tokio::spawn(async move {
                    let connection = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    let _ = connection.await;
                });
            }
        });
        Ok(Self {
            url,
            spans,
            refused,
            task,
        })
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        self.spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits up to `limit` for `find` to find something in the spans
    /// received; the failure lists what arrived.
    pub async fn wait_for<T>(
        &self,
        limit: Duration,
        what: &str,
        find: impl Fn(&[Span]) -> Option<T>,
    ) -> anyhow::Result<T> {
        let found = crate::eventually(limit, what, || {
            let spans = self.spans();
            let found = find(&spans);
            async move { Ok(found) }
        })
        .await;
        found.with_context(|| {
            let names: Vec<String> = self
                .spans()
                .iter()
                .map(|s| format!("{}:{} {}", s.service, s.name, s.trace_id))
                .collect();
            let refused = self.refused.lock().unwrap_or_else(PoisonError::into_inner);
            format!("spans received: {names:?}; exports refused: {refused:?}")
        })
    }
}

async fn receive(
    request: Request<Incoming>,
    spans: Spans,
    refused: Arc<Mutex<Vec<String>>>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let status = match read(request).await {
        Ok(received) => {
            spans
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(received);
            StatusCode::OK
        }
        Err(err) => {
            refused
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(format!("{err:#}"));
            StatusCode::BAD_REQUEST
        }
    };
    let mut response = Response::new(Full::new(Bytes::from_static(b"{}")));
    *response.status_mut() = status;
    Ok(response)
}

/// The spans of one export (`ExportTraceServiceRequest` in JSON).
async fn read(request: Request<Incoming>) -> anyhow::Result<Vec<Span>> {
    anyhow::ensure!(
        request.uri().path() == "/v1/traces",
        "posted to {}",
        request.uri()
    );
    let json = request
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
    anyhow::ensure!(json, "not JSON: {:?}", request.headers());
    let body = Limited::new(request.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("cannot read the body: {e}"))?
        .to_bytes();
    let export: Value = serde_json::from_slice(&body)?;
    let mut spans = Vec::new();
    for resource in array(&export["resourceSpans"]) {
        let service = attributes(&resource["resource"]["attributes"])
            .remove("service.name")
            .unwrap_or_default();
        for scope in array(&resource["scopeSpans"]) {
            for span in array(&scope["spans"]) {
                spans.push(Span {
                    service: service.clone(),
                    trace_id: text(&span["traceId"]),
                    span_id: text(&span["spanId"]),
                    parent_span_id: text(&span["parentSpanId"]),
                    name: text(&span["name"]),
                    attributes: attributes(&span["attributes"]),
                });
            }
        }
    }
    Ok(spans)
}

fn array(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

/// OTLP `KeyValue`s as text: `{"key": k, "value": {"stringValue": v}}`.
fn attributes(list: &Value) -> HashMap<String, String> {
    array(list)
        .iter()
        .filter_map(|kv| {
            let value = kv["value"].as_object()?.values().next()?;
            let value = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Some((kv["key"].as_str()?.to_owned(), value))
        })
        .collect()
}
