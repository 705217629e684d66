//! Phase changes as they happen, from the control plane's server-sent
//! events (`GET /api/v1/events`): when a session first reached a phase,
//! without polling.

use anyhow::{Context, bail};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use streamspace_testkit::Api;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

type Seen = HashMap<(String, String), Instant>;

/// Records the first time each (session, phase) was seen.
pub struct PhaseWatch {
    seen: Arc<Mutex<Seen>>,
    changed: Arc<Notify>,
    task: JoinHandle<()>,
}

impl PhaseWatch {
    /// Subscribes and returns once the stream is open.
    pub async fn start(api: &Api) -> anyhow::Result<Self> {
        let url = api.base.join("/api/v1/events")?;
        let response = reqwest::Client::new()
            .get(url)
            .bearer_auth(api.token.as_deref().unwrap_or_default())
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("GET /api/v1/events: {}", response.status());
        }
        let seen = Arc::new(Mutex::new(Seen::new()));
        let changed = Arc::new(Notify::new());
        let task = tokio::spawn(read_events(response, seen.clone(), changed.clone()));
        Ok(Self {
            seen,
            changed,
            task,
        })
    }

    fn lookup(&self, id: &str, phase: &str) -> Option<Instant> {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(&(id.to_owned(), phase.to_owned())).copied()
    }

    /// Forgets what was seen of a session (before measuring it again).
    pub fn forget(&self, id: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.retain(|(sid, _), _| sid != id);
    }

    /// When `id` was first seen in `phase`; waits up to `limit`.
    pub async fn wait(&self, id: &str, phase: &str, limit: Duration) -> anyhow::Result<Instant> {
        let deadline = Instant::now() + limit;
        loop {
            let notified = self.changed.notified();
            if let Some(at) = self.lookup(id, phase) {
                return Ok(at);
            }
            if self.task.is_finished() {
                bail!("the event stream ended");
            }
            tokio::time::timeout_at(deadline, notified)
                .await
                .with_context(|| format!("session {id} not {phase} within {limit:?}"))?;
        }
    }
}

impl Drop for PhaseWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_events(
    mut response: reqwest::Response,
    seen: Arc<Mutex<Seen>>,
    changed: Arc<Notify>,
) {
    let mut buffer = String::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let now = Instant::now();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            if let Some((id, phase)) = session_phase(&event) {
                let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                seen.entry((id, phase)).or_insert(now);
            }
        }
        changed.notify_waiters();
    }
}

/// `(id, phase)` of an `event: session` block.
fn session_phase(event: &str) -> Option<(String, String)> {
    let mut kind = "";
    let mut data = String::new();
    for line in event.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            kind = v.trim();
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push_str(v.trim_start());
        }
    }
    if kind != "session" {
        return None;
    }
    let view: Value = serde_json::from_str(&data).ok()?;
    Some((
        view["id"].as_str()?.to_owned(),
        view["phase"].as_str()?.to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_session_events_only() {
        let block = "event: session\ndata: {\"id\":\"s1\",\"phase\":\"Running\"}\n\n";
        assert_eq!(
            session_phase(block),
            Some(("s1".to_owned(), "Running".to_owned()))
        );
        assert_eq!(
            session_phase("event: agent\ndata: {\"id\":\"a\"}\n\n"),
            None
        );
        assert_eq!(session_phase(": keep-alive\n\n"), None);
    }
}
