//! A small client for the public HTTP API, as a user would drive it.

use crate::ADMIN_PASSWORD;
use anyhow::{Context, bail};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use url::Url;

#[derive(Clone)]
pub struct Api {
    pub base: Url,
    pub token: Option<String>,
    /// The roots to trust for an `https://` base (a test CA); `None` means
    /// the system's.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    http: reqwest::Client,
}

/// A response's status and JSON body, for asserting on errors.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl Api {
    pub fn new(base: &Url) -> Self {
        crate::init();
        Self {
            base: base.clone(),
            token: None,
            tls: None,
            http: reqwest::Client::new(),
        }
    }

    /// A client that trusts what `tls` trusts (e.g. a test CA).
    pub fn with_tls(base: &Url, tls: Arc<rustls::ClientConfig>) -> anyhow::Result<Self> {
        crate::init();
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(rustls::ClientConfig::clone(&tls))
            .build()?;
        Ok(Self {
            base: base.clone(),
            token: None,
            tls: Some(tls),
            http,
        })
    }

    pub async fn login(base: &Url, username: &str, password: &str) -> anyhow::Result<Self> {
        Self::new(base).log_in(username, password).await
    }

    /// Logs this client in as `username`.
    pub async fn log_in(mut self, username: &str, password: &str) -> anyhow::Result<Self> {
        self.token = None;
        let answer = self
            .call(
                Method::POST,
                "/api/v1/auth/login",
                Some(json!({"username": username, "password": password})),
            )
            .await?;
        if answer.status != StatusCode::OK {
            bail!("login as {username} failed: {answer:?}");
        }
        self.token = answer.body["token"].as_str().map(str::to_owned);
        Ok(self)
    }

    pub async fn admin(base: &Url) -> anyhow::Result<Self> {
        Self::login(base, "admin", ADMIN_PASSWORD).await
    }

    /// Logs this client in as the bootstrap admin.
    pub async fn as_admin(self) -> anyhow::Result<Self> {
        self.log_in("admin", ADMIN_PASSWORD).await
    }

    /// Any request; never fails on an HTTP error status.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Answer> {
        let url = self.base.join(path)?;
        let mut request = self
            .http
            .request(method, url)
            .timeout(Duration::from_secs(30));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.context("request failed")?;
        let status = response.status();
        let text = response.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Answer { status, body })
    }

    /// A request that must answer with `expected`; returns the body.
    pub async fn expect(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        expected: StatusCode,
    ) -> anyhow::Result<Value> {
        let answer = self.call(method.clone(), path, body).await?;
        if answer.status != expected {
            bail!(
                "{method} {path}: expected {expected}, got {} {}",
                answer.status,
                answer.body
            );
        }
        Ok(answer.body)
    }

    /// A request that must be refused with `status` and an error message
    /// (`{"error": …}`); returns the body, for its `field`.
    pub async fn refused(
        &self,
        method: Method,
        path: &str,
        body: Value,
        status: StatusCode,
    ) -> anyhow::Result<Value> {
        let answer = self.call(method.clone(), path, Some(body)).await?;
        if answer.status != status || answer.body["error"].as_str().is_none_or(str::is_empty) {
            bail!(
                "{method} {path}: expected {status} with an error, got {} {}",
                answer.status,
                answer.body
            );
        }
        Ok(answer.body)
    }

    /// A plain-text GET that must succeed (logs).
    pub async fn text(&self, path: &str) -> anyhow::Result<String> {
        let answer = self.call(Method::GET, path, None).await?;
        match (answer.status, answer.body) {
            (StatusCode::OK, Value::String(text)) => Ok(text),
            (status, body) => bail!("GET {path}: {status} {body}"),
        }
    }

    /// A sample from `/metrics` by its full name (labels included); 0 when
    /// absent, as Prometheus reads a counter not yet created.
    pub async fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let text = self.text("/metrics").await?;
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0.0))
    }

    pub async fn create_user(&self, username: &str, password: &str) -> anyhow::Result<Value> {
        let body = json!({"username": username, "password": password, "role": "user"});
        self.expect(
            Method::POST,
            "/api/v1/users",
            Some(body),
            StatusCode::CREATED,
        )
        .await
    }

    pub async fn enrollment_token(&self) -> anyhow::Result<String> {
        let body = self
            .expect(
                Method::POST,
                "/api/v1/agents/enrollment-tokens",
                None,
                StatusCode::CREATED,
            )
            .await?;
        body["token"]
            .as_str()
            .map(str::to_owned)
            .context("no token in answer")
    }

    pub async fn agents(&self) -> anyhow::Result<Vec<Value>> {
        let body = self
            .expect(Method::GET, "/api/v1/agents", None, StatusCode::OK)
            .await?;
        Ok(body.as_array().cloned().unwrap_or_default())
    }

    /// Waits until an agent with this name is online; returns its id.
    pub async fn wait_for_agent(&self, name: &str, limit: Duration) -> anyhow::Result<String> {
        crate::eventually(limit, &format!("agent {name} online"), || async {
            let agents = self.agents().await?;
            Ok(agents
                .iter()
                .find(|a| a["name"] == name && a["status"] == "online")
                .and_then(|a| a["id"].as_str().map(str::to_owned)))
        })
        .await
    }

    pub async fn create_template(&self, template: Value) -> anyhow::Result<Value> {
        self.expect(
            Method::POST,
            "/api/v1/templates",
            Some(template),
            StatusCode::CREATED,
        )
        .await
    }

    pub async fn create_session(&self, body: Value) -> anyhow::Result<Value> {
        self.expect(
            Method::POST,
            "/api/v1/sessions",
            Some(body),
            StatusCode::CREATED,
        )
        .await
    }

    pub async fn session(&self, id: &str) -> anyhow::Result<Value> {
        self.expect(
            Method::GET,
            &format!("/api/v1/sessions/{id}"),
            None,
            StatusCode::OK,
        )
        .await
    }

    pub async fn set_state(&self, id: &str, state: &str) -> anyhow::Result<Value> {
        let path = format!("/api/v1/sessions/{id}/state");
        self.expect(
            Method::PUT,
            &path,
            Some(json!({"state": state})),
            StatusCode::OK,
        )
        .await
    }

    /// Waits for the session's observed phase; fails early if it fails.
    pub async fn wait_for_phase(
        &self,
        id: &str,
        phase: &str,
        limit: Duration,
    ) -> anyhow::Result<Value> {
        crate::eventually(limit, &format!("session {id} {phase}"), || async {
            let session = self.session(id).await?;
            if session["phase"] == phase {
                return Ok(Some(session));
            }
            if session["phase"] == "Failed" && phase != "Failed" {
                bail!("session failed: {}", session["message"]);
            }
            Ok(None)
        })
        .await
    }
}
