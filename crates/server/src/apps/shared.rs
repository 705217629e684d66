//! What the web-app proxy keeps between requests, held by the application
//! state: the pooled client, and when each session's app activity was last
//! written.

use super::connector::{self, AppClient};
use crate::tunnel::opener::TunnelOpener;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use streamspace_protocol::SessionId;

/// The proxy's shared parts: the pooled client, and when each session's
/// app activity was last written.
pub struct Apps {
    pub client: AppClient,
    touched: Mutex<HashMap<SessionId, Instant>>,
}

/// Least time between two activity writes of one session from app
/// requests: a page load is dozens of requests, one write.
const TOUCH_GAP: Duration = Duration::from_secs(15);
/// Sessions remembered for that; beyond, the map is cleared (a write each).
const TOUCH_MEMORY: usize = 10_000;

impl Apps {
    pub fn new(opener: TunnelOpener) -> Self {
        Apps {
            client: connector::client(opener),
            touched: Mutex::default(),
        }
    }

    /// Whether this request's activity should be written now.
    pub(super) fn due(&self, session_id: &SessionId) -> bool {
        let mut touched = self.touched.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if touched.len() >= TOUCH_MEMORY {
            touched.clear();
        }
        match touched.get(session_id) {
            Some(last) if now.duration_since(*last) < TOUCH_GAP => false,
            _ => {
                touched.insert(session_id.clone(), now);
                true
            }
        }
    }
}
