//! The API client of the user and admin commands: the control plane's URL,
//! the bearer token, TLS trust, and refusals turned into messages with the
//! exit code their status means (`failure.rs`).

use crate::failure::Failure;
use crate::trust::CaCertArg;
use anyhow::Context;
use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;
use std::time::Duration;
use streamspace_agent::{ClientTls, explain_tls_error};
use url::Url;

/// How long a plain API call may take (streams have none).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct Client {
    pub server: Url,
    pub token: String,
    pub tls: ClientTls,
    http: reqwest::Client,
}

impl Client {
    pub fn new(server: Url, token: String, ca: &CaCertArg) -> anyhow::Result<Self> {
        let tls = ca.client_tls()?;
        let http = tls.http_client()?;
        Ok(Self {
            server,
            token,
            tls,
            http,
        })
    }

    /// A request to `path` (with its query) on the server, with the token.
    pub fn request(&self, method: Method, path: &str) -> anyhow::Result<RequestBuilder> {
        let url = self.server.join(path)?;
        Ok(self.http.request(method, url).bearer_auth(&self.token))
    }

    /// Sends `request`; an answer of any status, or the reason none came.
    pub async fn send(&self, request: RequestBuilder) -> anyhow::Result<Response> {
        request
            .send()
            .await
            .with_context(|| format!("cannot reach the control plane at {}", self.server))
            .map_err(explain_tls_error)
    }

    /// A JSON call that must succeed; its answer (`null` for 204).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self.request(method, path)?.timeout(CALL_TIMEOUT);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = checked(self.send(request).await?).await?;
        let text = response.text().await.context("the answer was cut off")?;
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).context("the control plane answered something that is not JSON")
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(Method::GET, path, None).await
    }
}

/// The response if it succeeded, else a `Failure` with the server's reason
/// and the exit code its status means.
pub async fn checked(response: Response) -> anyhow::Result<Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body: Value = response.json().await.unwrap_or_default();
    Err(refusal(status, &body).into())
}

/// A refusal as a message: `404 Not Found: session not found`, with the
/// field the server named.
pub fn refusal(status: reqwest::StatusCode, body: &Value) -> Failure {
    let reason = body["error"].as_str().unwrap_or("request refused");
    let message = match body["field"].as_str() {
        Some(field) if !reason.starts_with(field) => format!("{status}: {field}: {reason}"),
        _ => format!("{status}: {reason}"),
    };
    Failure::new(Failure::code_for(status), message)
}

/// A path segment from user input (an id or name), percent-encoded.
pub fn segment(text: &str) -> String {
    // Form encoding writes a space as `+`, which a path keeps literally;
    // a `+` of its own is `%2B` by then.
    url::form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
