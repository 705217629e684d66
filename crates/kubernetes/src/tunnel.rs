//! A byte stream to a session's port: straight to the pod's IP when the
//! agent runs in the cluster, through the apiserver's port-forward when it
//! does not.

use crate::phase::{current_pod, observe};
use crate::{Shared, TunnelMode};
use kube::api::Portforwarder;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use streamspace_agent::{OrNotFound, PlatformError, PlatformResult, SessionStream};
use streamspace_protocol::{Phase, SessionId};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::net::TcpStream;

/// Bound on dialing a session, so a black-holed pod IP or a stuck apiserver
/// cannot stall a tunnel.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

impl Shared {
    /// A connection to `port` of a running session. Readiness probes call
    /// this every 50 ms while a session starts; with the watch running, the
    /// pod comes from its cache and no apiserver request is made until the
    /// pod is ready.
    #[tracing::instrument(skip(self), fields(agent_id = %self.agent_id))]
    pub(crate) async fn dial(
        &self,
        session_id: &SessionId,
        port: u16,
    ) -> PlatformResult<Box<dyn SessionStream>> {
        let objects = self
            .session_objects(session_id)
            .await
            .or_not_found(session_id)?;
        let phase = observe(&objects.deployment, &objects.pods).phase;
        let pod = current_pod(&objects.pods).filter(|_| phase == Phase::Running);
        let Some(pod) = pod else {
            return Err(PlatformError::Invalid(format!(
                "session {session_id} is not running (phase {phase})"
            )));
        };
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let unreachable = |how: &str, cause: String| {
            PlatformError::Unavailable(format!(
                "cannot connect to port {port} of session {session_id} ({how} pod {pod_name}): {cause}"
            ))
        };
        match self.options.tunnel {
            TunnelMode::PodIp => {
                let ip: IpAddr = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.pod_ip.as_deref())
                    .and_then(|ip| ip.parse().ok())
                    .ok_or_else(|| unreachable("via the IP of", "the pod has no IP yet".into()))?;
                let how = format!("via {ip}, the IP of");
                let stream = tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect((ip, port)))
                    .await
                    .map_err(|_| unreachable(&how, format!("no answer within {DIAL_TIMEOUT:?}")))?
                    .map_err(|e| unreachable(&how, e.to_string()))?;
                // VNC is chatty with small messages; Nagle would add latency to each.
                stream
                    .set_nodelay(true)
                    .map_err(|e| unreachable(&how, e.to_string()))?;
                tracing::debug!(%ip, port, "connected to session pod");
                Ok(Box::new(stream))
            }
            TunnelMode::PortForward => {
                let how = "port-forwarding to";
                let mut forwarder =
                    tokio::time::timeout(DIAL_TIMEOUT, self.pods.portforward(&pod_name, &[port]))
                        .await
                        .map_err(|_| {
                            unreachable(how, format!("no answer within {DIAL_TIMEOUT:?}"))
                        })?
                        .map_err(|e| unreachable(how, self.error("port-forward", e).to_string()))?;
                let stream = forwarder
                    .take_stream(port)
                    .ok_or_else(|| unreachable(how, "the port-forward has no stream".into()))?;
                tracing::debug!(pod = %pod_name, port, "port-forwarding to session pod");
                Ok(Box::new(Forwarded { stream, forwarder }))
            }
        }
    }
}

/// A port-forward stream that owns its forwarder: dropping it (the tunnel
/// closed) ends the apiserver connection too.
struct Forwarded {
    stream: DuplexStream,
    forwarder: Portforwarder,
}

impl Drop for Forwarded {
    fn drop(&mut self) {
        self.forwarder.abort();
    }
}

impl AsyncRead for Forwarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Forwarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
