//! The connection to libvirtd and the one way every call is made: on a
//! blocking thread (libvirt's API blocks on its RPC socket), through a
//! connection shared by all calls (libvirt's connections are thread-safe)
//! and opened again when libvirtd went away and came back.

use crate::error::LibvirtError;
use std::sync::{Arc, Mutex, PoisonError};
use streamspace_agent::{PlatformError, PlatformResult};
use virt::connect::Connect;

/// A connection closed when the last call using it is done (`Connect`
/// itself never closes).
struct Connection(Connect);

impl Drop for Connection {
    fn drop(&mut self) {
        if let Err(e) = self.0.close() {
            tracing::debug!(error = %e, "closing a libvirt connection");
        }
    }
}

#[derive(Clone)]
pub(crate) struct Hypervisor {
    uri: Arc<str>,
    current: Arc<Mutex<Option<Arc<Connection>>>>,
}

impl Hypervisor {
    /// Opens the first connection now, so a wrong URI is said at start.
    pub(crate) async fn open(uri: &str) -> PlatformResult<Self> {
        let hypervisor = Hypervisor {
            uri: uri.into(),
            current: Arc::default(),
        };
        hypervisor.call(|_| Ok(())).await?;
        Ok(hypervisor)
    }

    pub(crate) fn uri(&self) -> &str {
        &self.uri
    }

    /// The error for `action` failing with `cause`.
    pub(crate) fn error(
        &self,
        action: impl Into<String>,
        cause: &virt::error::Error,
    ) -> PlatformError {
        LibvirtError::new(&self.uri, action, cause).into()
    }

    /// Runs `f` with a live connection on a blocking thread.
    pub(crate) async fn call<T, F>(&self, f: F) -> PlatformResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connect) -> PlatformResult<T> + Send + 'static,
    {
        let this = self.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let connection = this.connection()?;
            let result = f(&connection.0);
            if result.is_err() && !connection.0.is_alive().unwrap_or(false) {
                this.forget(&connection);
            }
            result
        })
        .await;
        joined.map_err(|e| PlatformError::Unavailable(format!("a libvirt call failed: {e}")))?
    }

    /// The shared connection, opened again if it died.
    fn connection(&self) -> PlatformResult<Arc<Connection>> {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(connection) = current.as_ref()
            && connection.0.is_alive().unwrap_or(false)
        {
            return Ok(Arc::clone(connection));
        }
        let connect = Connect::open(Some(&self.uri)).map_err(|e| {
            PlatformError::from(LibvirtError::Unreachable {
                uri: self.uri.to_string(),
                message: e.message().trim().to_owned(),
            })
        })?;
        if current.is_some() {
            tracing::info!(uri = %self.uri, "reconnected to libvirt");
        }
        let connection = Arc::new(Connection(connect));
        *current = Some(Arc::clone(&connection));
        Ok(connection)
    }

    fn forget(&self, dead: &Arc<Connection>) {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, dead)) {
            tracing::warn!(uri = %self.uri, "the libvirt connection broke");
            *current = None;
        }
    }
}
