//! Viewer connections in the audit log: a VNC viewer, a web app's
//! WebSocket or a log stream is recorded as `viewer.open` when it starts
//! and `viewer.close` when it ends, with how long it lasted and how many
//! bytes crossed each way.
//!
//! The relays already know each chunk's size (they count it for the
//! metrics), so counting it here too is one relaxed atomic add per chunk:
//! the zero-copy path stays zero-copy. The close is recorded when the
//! connection's record is dropped, however the connection ended (either
//! side, logout, shutdown), so every open has its close.

use super::{AuditEvent, Outcome, record};
use crate::state::AppState;
use serde_json::json;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use streamspace_protocol::SessionId;

/// What kind of viewer connection this is, as `detail.kind` says.
#[derive(Debug, Clone, Copy)]
pub enum ViewerKind {
    /// `/vnc/{id}`.
    Vnc,
    /// A WebSocket of a session's web app.
    App,
    /// `GET /api/v1/sessions/{id}/logs`.
    Logs,
    /// `/audio/{id}`.
    Audio,
    /// `/audio/{id}/microphone`.
    Microphone,
}

impl ViewerKind {
    fn as_str(self) -> &'static str {
        match self {
            ViewerKind::Vnc => "vnc",
            ViewerKind::App => "app",
            ViewerKind::Logs => "logs",
            ViewerKind::Audio => "audio",
            ViewerKind::Microphone => "microphone",
        }
    }
}

/// Bytes one connection moved: `from_viewer` towards the session,
/// `to_viewer` back. Shared with the relay that moves them.
#[derive(Debug, Default)]
pub struct ViewerBytes {
    from_viewer: AtomicU64,
    to_viewer: AtomicU64,
}

impl ViewerBytes {
    pub fn add_from_viewer(&self, n: usize) {
        self.from_viewer.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn add_to_viewer(&self, n: usize) {
        self.to_viewer.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// (from the viewer, to the viewer) so far.
    pub fn totals(&self) -> (u64, u64) {
        (
            self.from_viewer.load(Ordering::Relaxed),
            self.to_viewer.load(Ordering::Relaxed),
        )
    }
}

/// Who opened which viewer connection, and from where.
pub struct ViewerOpen<'a> {
    /// `user:alice`.
    pub actor: String,
    pub session_id: &'a SessionId,
    pub kind: ViewerKind,
    /// The session's port, for VNC and apps.
    pub port: Option<u16>,
    pub client: Option<IpAddr>,
}

/// An open viewer connection: recorded as opened when made, as closed
/// (with its duration and bytes) when dropped.
pub struct ViewerRecord {
    state: AppState,
    event: AuditEvent,
    kind: ViewerKind,
    port: Option<u16>,
    started: Instant,
    pub bytes: Arc<ViewerBytes>,
}

impl ViewerRecord {
    /// Records `viewer.open` and starts counting.
    pub async fn open(state: &AppState, open: ViewerOpen<'_>) -> Self {
        let base = AuditEvent::new(open.actor, "viewer.open")
            .target(format!("session:{}", open.session_id))
            .outcome(Outcome::Success)
            .client(open.client);
        let detail = json!({"kind": open.kind.as_str(), "port": open.port});
        record(state, base.clone().detail(detail)).await;
        ViewerRecord {
            state: state.clone(),
            event: base,
            kind: open.kind,
            port: open.port,
            started: Instant::now(),
            bytes: Arc::default(),
        }
    }

    fn close_event(&self) -> AuditEvent {
        let (bytes_in, bytes_out) = self.bytes.totals();
        let mut event = self.event.clone();
        event.kind = "viewer.close".into();
        event.at = crate::store::now_ms();
        event.detail(json!({
            "kind": self.kind.as_str(),
            "port": self.port,
            "duration_ms": self.started.elapsed().as_millis() as u64,
            "bytes_in": bytes_in,
            "bytes_out": bytes_out,
        }))
    }
}

impl Drop for ViewerRecord {
    fn drop(&mut self) {
        let event = self.close_event();
        let state = self.state.clone();
        // Tracked, so a graceful shutdown waits for the record.
        self.state
            .tasks
            .spawn(async move { record(&state, event).await });
    }
}
