//! The router as hyper's per-connection service: it marks the connection
//! as waiting for the request body until that has arrived, then busy until
//! the response body is gone (so the connection limits never cut a request
//! being served), gives the body a deadline, and adds
//! Strict-Transport-Security on HTTPS.

use super::Connections;
use super::watch::Watch;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::ConnectInfo;
use axum::{BoxError, Router};
use http::header::STRICT_TRANSPORT_SECURITY;
use http::{HeaderValue, Request, Response};
use hyper::body::{Frame, Incoming, SizeHint};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::Sleep;
use tower::ServiceExt;

/// One year; no `includeSubDomains`, since other hosts under the same
/// domain are not ours to commit to HTTPS.
const HSTS: HeaderValue = HeaderValue::from_static("max-age=31536000");

#[derive(Clone)]
pub struct Service {
    pub router: Router,
    pub watch: Arc<Watch>,
    /// The limits (the body-read timeout) and where to count a late body.
    pub connections: Arc<Connections>,
    /// Whether this connection is HTTPS.
    pub https: bool,
    /// The TCP peer, for handlers (login throttling) as `ConnectInfo`.
    pub peer: SocketAddr,
}

impl hyper::service::Service<Request<Incoming>> for Service {
    type Response = Response<Tracked>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let with_body = !request.body().is_end_stream();
        self.watch.request_started(with_body);
        let domain = self.connections.apps_domain.as_deref();
        let streamed =
            crate::apps::address::is_app_request(&request, domain) || is_file_upload(&request);
        let timing = match streamed {
            true => Timing::Gap,
            false => Timing::Total,
        };
        let mut request = request.map(|body| match with_body {
            true => Body::new(TimedBody::new(body, &self.watch, &self.connections, timing)),
            false => Body::new(body),
        });
        request.extensions_mut().insert(ConnectInfo(self.peer));
        let finished = Finished(self.watch.clone());
        let response = self.router.clone().oneshot(request);
        let https = self.https;
        Box::pin(async move {
            let mut response = response.await?;
            if https {
                response
                    .headers_mut()
                    .entry(STRICT_TRANSPORT_SECURITY)
                    .or_insert(HSTS);
            }
            Ok(response.map(|body| Tracked {
                body,
                _finished: finished,
            }))
        })
    }
}

/// Marks the connection idle when dropped: hyper drops a response body
/// once it is written (or the connection is gone).
struct Finished(Arc<Watch>);

impl Drop for Finished {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// A response body that marks the end of its request when it is dropped.
pub struct Tracked {
    body: Body,
    _finished: Finished,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A file upload (`PUT /api/v1/sessions/{id}/files/{path}`, docs/FILES.md):
/// as big as the template allows, so timed by its gaps like a web app's.
fn is_file_upload<B>(request: &Request<B>) -> bool {
    let mut parts = request.uri().path().split('/');
    request.method() == http::Method::PUT
        && parts.by_ref().take(4).eq(["", "api", "v1", "sessions"])
        && parts.nth(1) == Some("files")
        && parts.next().is_some()
        && parts.next().is_none()
}

/// Reading a request body took longer than the body-read timeout allows.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimedOut(pub Duration);

/// How a request body's deadline is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timing {
    /// The whole body within the limit: the API's bodies are small.
    Total,
    /// No more than the limit between two reads: a web app's upload may be
    /// any size and take as long as it keeps moving. The connection counts
    /// as busy, not as waiting for a body, so its own clock leaves it be.
    Gap,
}

/// A request body that must arrive whole within the body-read timeout,
/// counted from the end of the head: a total, so a body trickled a byte at
/// a time runs out too (tower-http's timeout only times the gaps); for web
/// apps, the gap between reads. At the deadline a read fails with
/// [`BodyTimedOut`], which handlers answer with 408 (`ApiJson`). Its end,
/// however it comes, tells the watch that the client owes nothing more.
struct TimedBody {
    body: Incoming,
    /// `None` once it has fired.
    deadline: Option<Pin<Box<Sleep>>>,
    timing: Timing,
    watch: Arc<Watch>,
    connections: Arc<Connections>,
}

impl TimedBody {
    fn new(
        body: Incoming,
        watch: &Arc<Watch>,
        connections: &Arc<Connections>,
        timing: Timing,
    ) -> Self {
        let limit = connections.limits.body_read_timeout;
        if timing == Timing::Gap {
            watch.body_finished();
        }
        TimedBody {
            body,
            deadline: Some(Box::pin(tokio::time::sleep(limit))),
            timing,
            watch: watch.clone(),
            connections: connections.clone(),
        }
    }
}

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let Some(deadline) = this.deadline.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(frame) => {
                let ended = !matches!(frame, Some(Ok(_))) || this.body.is_end_stream();
                if ended {
                    this.watch.body_finished();
                } else if this.timing == Timing::Gap {
                    let limit = this.connections.limits.body_read_timeout;
                    deadline.as_mut().reset(tokio::time::Instant::now() + limit);
                }
                Poll::Ready(frame.map(|frame| frame.map_err(BoxError::from)))
            }
            Poll::Pending => {
                ready!(deadline.as_mut().poll(cx));
                this.deadline = None;
                this.watch.body_finished();
                this.connections.metrics.dropped("body_timeout");
                let limit = this.connections.limits.body_read_timeout;
                Poll::Ready(Some(Err(BodyTimedOut(limit).into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.deadline.is_none() || self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for TimedBody {
    /// A body let go unread: the handler has what it wants from the client.
    fn drop(&mut self) {
        self.watch.body_finished();
    }
}

#[cfg(test)]
mod file_upload_tests {
    use super::*;

    fn request(method: http::Method, path: &str) -> Request<()> {
        Request::builder()
            .method(method)
            .uri(path)
            .body(())
            .expect("request")
    }

    #[test]
    fn only_file_uploads_are_timed_by_their_gaps() {
        let upload = request(http::Method::PUT, "/api/v1/sessions/abc/files/a%2Fb.bin");
        assert!(is_file_upload(&upload));
        for (method, path) in [
            (http::Method::GET, "/api/v1/sessions/abc/files/a.bin"),
            (http::Method::PUT, "/api/v1/sessions/abc/state"),
            (http::Method::PUT, "/api/v1/sessions/abc/files"),
            (http::Method::PUT, "/api/v1/sessions/abc/files/a/b"),
            (http::Method::PUT, "/api/v1/templates/abc/files/a"),
        ] {
            assert!(!is_file_upload(&request(method, path)), "{path}");
        }
    }
}
