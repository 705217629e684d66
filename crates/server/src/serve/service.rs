//! The router as hyper's per-connection service: it marks the connection
//! busy from the request head until the response body is gone (so the
//! connection limits never cut a request in progress), and adds
//! Strict-Transport-Security on HTTPS.

use super::watch::Watch;
use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::ConnectInfo;
use http::header::STRICT_TRANSPORT_SECURITY;
use http::{HeaderValue, Request, Response};
use hyper::body::{Frame, Incoming, SizeHint};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::ServiceExt;

/// One year; no `includeSubDomains`, since other hosts under the same
/// domain are not ours to commit to HTTPS.
const HSTS: HeaderValue = HeaderValue::from_static("max-age=31536000");

#[derive(Clone)]
pub struct Service {
    pub router: Router,
    pub watch: Arc<Watch>,
    /// Whether this connection is HTTPS.
    pub https: bool,
    /// The TCP peer, for handlers (login throttling) as `ConnectInfo`.
    pub peer: SocketAddr,
}

impl hyper::service::Service<Request<Incoming>> for Service {
    type Response = Response<Tracked>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        self.watch.request_started();
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
