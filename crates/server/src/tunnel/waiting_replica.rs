//! Reaching the replica that waits for a tunnel (the one whose id the
//! tunnel id starts with) at its internal endpoint (`internal.rs` there):
//! to relay the agent's data channel to it (`forward.rs`), or to pass on
//! the agent's report that it could not open the tunnel, so the viewer
//! waiting there hears why at once rather than at the time limit.
//!
//! Every call proves this replica with its secret and names the agent it
//! authenticated (its data channel's secret, or its control channel here).

use super::broker::waiting_replica;
use super::handoff::{AGENT_HEADER, REPLICA_HEADER};
use crate::cluster::registry::SILENCE;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::{ReplicaRecord, duration_ms, now_ms};
use bytes::Bytes;
use http::{Method, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use std::time::Duration;
use streamspace_protocol::tunnel::UPGRADE_PROTOCOL;
use streamspace_protocol::{AgentId, TunnelId};
use tokio::net::TcpStream;

/// Path prefix of the internal endpoint; the tunnel id follows it.
pub const INTERNAL_TUNNEL_PREFIX: &str = "/internal/v1/tunnels/";

/// How long reaching the waiting replica may take (connect and answer):
/// it is on the private network, and the viewer is waiting.
const DIAL_LIMIT: Duration = Duration::from_secs(5);

/// Bytes of a refusal's body read for its message.
const REFUSAL_LIMIT: usize = 4 * 1024;

/// The live replica `tunnel_id` names; a 404 when it is gone (its viewer
/// went with it).
pub async fn find(state: &AppState, tunnel_id: &TunnelId) -> ApiResult<ReplicaRecord> {
    let gone = || {
        ApiError::NotFound(format!(
            "no viewer is waiting for tunnel {tunnel_id}: the replica that asked for it is gone"
        ))
    };
    let replica_id = waiting_replica(tunnel_id).ok_or_else(gone)?;
    let replica = state.store.replica(replica_id).await?.ok_or_else(gone)?;
    if replica.heartbeat_at < now_ms() - duration_ms(SILENCE) {
        return Err(gone());
    }
    Ok(replica)
}

/// Opens the upgraded connection to the waiting replica, for the agent's
/// data channel. Its 404 (nobody waits any more) stays a 404.
pub async fn dial(
    state: &AppState,
    waiting: &ReplicaRecord,
    tunnel_id: &TunnelId,
    agent_id: &AgentId,
) -> ApiResult<Upgraded> {
    let call = Call {
        state,
        waiting,
        tunnel_id,
        agent_id,
    };
    let request = call
        .request(Method::GET)?
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, UPGRADE_PROTOCOL)
        .body(Full::new(Bytes::new()))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let response = call.send(request).await?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(call.refused(response).await);
    }
    hyper::upgrade::on(response)
        .await
        .map_err(|e| call.unreachable(e.to_string()))
}

/// Tells the waiting replica the agent could not open the tunnel, and why.
/// A `tunnel_failed` report reaches the replica holding the agent's control
/// channel; the viewer may be waiting on another.
pub async fn report_failure(
    state: &AppState,
    tunnel_id: &TunnelId,
    agent_id: &AgentId,
    error: &str,
) -> ApiResult<()> {
    let waiting = find(state, tunnel_id).await?;
    let call = Call {
        state,
        waiting: &waiting,
        tunnel_id,
        agent_id,
    };
    // The message is the agent's, bounded below what the endpoint takes.
    let error: String = error.chars().take(super::handoff::FAILURE_CHARS).collect();
    let request = call
        .request(Method::POST)?
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(error)))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let response = call.send(request).await?;
    match response.status() {
        StatusCode::NO_CONTENT => Ok(()),
        _ => Err(call.refused(response).await),
    }
}

/// One call to the waiting replica's internal endpoint.
struct Call<'a> {
    state: &'a AppState,
    waiting: &'a ReplicaRecord,
    tunnel_id: &'a TunnelId,
    agent_id: &'a AgentId,
}

impl Call<'_> {
    fn unreachable(&self, why: String) -> ApiError {
        let waiting = self.waiting;
        tracing::warn!(replica = %waiting.id, url = %waiting.internal_url, "{why}");
        ApiError::BadGateway(format!(
            "the replica waiting for tunnel {} cannot be reached: {why}",
            self.tunnel_id
        ))
    }

    /// Where the waiting replica listens: plain HTTP on the private network.
    fn address(&self) -> ApiResult<(String, u16)> {
        let internal_url = &self.waiting.internal_url;
        let url = url::Url::parse(internal_url)
            .map_err(|e| self.unreachable(format!("its internal URL is not a URL: {e}")))?;
        if url.scheme() != "http" {
            return Err(self.unreachable(format!(
                "its internal URL {url} is not http:// (replicas relay over the private \
                 network in plain HTTP: set --internal-url to http://ADDRESS:PORT)"
            )));
        }
        match (url.host_str(), url.port_or_known_default()) {
            (Some(host), Some(port)) => Ok((host.to_owned(), port)),
            _ => Err(self.unreachable(format!("its internal URL {url} has no host"))),
        }
    }

    /// A request with this replica's credentials and the agent's id.
    fn request(&self, method: Method) -> ApiResult<http::request::Builder> {
        let (host, port) = self.address()?;
        let replica = &self.state.replica;
        Ok(http::Request::builder()
            .method(method)
            .uri(format!("{INTERNAL_TUNNEL_PREFIX}{}", self.tunnel_id))
            .header(header::HOST, format!("{host}:{port}"))
            .header(header::AUTHORIZATION, format!("Bearer {}", replica.secret))
            .header(REPLICA_HEADER, replica.id.as_str())
            .header(AGENT_HEADER, self.agent_id.as_str()))
    }

    async fn send(
        &self,
        request: http::Request<Full<Bytes>>,
    ) -> ApiResult<http::Response<hyper::body::Incoming>> {
        let (host, port) = self.address()?;
        let sent = tokio::time::timeout(DIAL_LIMIT, send(&host, port, request)).await;
        match sent {
            Err(_) => Err(self.unreachable(format!("no answer within {DIAL_LIMIT:?}"))),
            Ok(Err(err)) => Err(self.unreachable(err.to_string())),
            Ok(Ok(response)) => Ok(response),
        }
    }

    /// The waiting replica's refusal as ours: its 404 (nobody waits for
    /// this tunnel from this agent) stays a 404, anything else is a 502.
    async fn refused(&self, response: http::Response<hyper::body::Incoming>) -> ApiError {
        let status = response.status();
        let body = Limited::new(response.into_body(), REFUSAL_LIMIT)
            .collect()
            .await;
        let message = error_message(&body.map(|b| b.to_bytes()).unwrap_or_default());
        match status {
            StatusCode::NOT_FOUND => {
                ApiError::NotFound(format!("the replica waiting for it says: {message}"))
            }
            _ => self.unreachable(format!("it answered {status}: {message}")),
        }
    }
}

/// Sends `request` on a new connection, kept open for an upgrade.
async fn send(
    host: &str,
    port: u16,
    request: http::Request<Full<Bytes>>,
) -> Result<http::Response<hyper::body::Incoming>, Box<dyn std::error::Error + Send + Sync>> {
    let tcp = TcpStream::connect((host, port)).await?;
    tcp.set_nodelay(true)?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(connection.with_upgrades());
    Ok(sender.send_request(request).await?)
}

/// The `error` of an API error body, or the body itself.
fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
}
