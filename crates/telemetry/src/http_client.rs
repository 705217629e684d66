//! The HTTP client the OTLP exporter posts spans with: reqwest (the one the
//! rest of the binary uses), driven on the process's Tokio runtime.
//!
//! The SDK's batch processor exports from a thread of its own, outside the
//! runtime, where reqwest cannot run; each export is therefore spawned onto
//! the runtime and awaited from that thread.

use bytes::{Bytes, BytesMut};
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use std::time::Duration;

/// The most of a receiver's answer that is read: OTLP answers are a few
/// bytes (partial-success notes at most).
const MAX_ANSWER: usize = 64 * 1024;

#[derive(Debug)]
pub struct RuntimeClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

impl RuntimeClient {
    pub fn new(runtime: tokio::runtime::Handle, timeout: Duration) -> reqwest::Result<Self> {
        let client = reqwest::Client::builder().timeout(timeout).build()?;
        Ok(Self { client, runtime })
    }
}

#[async_trait::async_trait]
impl HttpClient for RuntimeClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        self.runtime.spawn(post(client, request)).await?
    }
}

async fn post(
    client: reqwest::Client,
    request: Request<Bytes>,
) -> Result<Response<Bytes>, HttpError> {
    let mut response = client.execute(request.try_into()?).await?;
    let status = response.status();
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(format!("the OTLP receiver answered more than {MAX_ANSWER} bytes").into());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Response::builder().status(status).body(body.freeze())?)
}
