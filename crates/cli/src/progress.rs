//! Live progress while a session starts: the control plane's event stream
//! (`GET /api/v1/events`, server-sent events), opened before the session is
//! created so no change is missed. When the stream cannot be opened, breaks,
//! or stays silent past two of its pings (a buffering proxy), progress
//! comes from polling the session once a second instead.

use crate::client::{Client, checked};
use crate::failure::{ERROR, Failure};
use reqwest::Method;
use serde_json::Value;
use std::time::{Duration, Instant};

/// The stream pings every 15 s; silence for longer than two pings means it
/// is broken.
const STREAM_SILENCE: Duration = Duration::from_secs(35);
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// An open event stream (or none: then the watch polls).
pub struct Events {
    response: Option<reqwest::Response>,
    buffer: Vec<u8>,
}

/// Opens the event stream; a failure to is not fatal, only slower.
pub async fn subscribe(client: &Client) -> Events {
    let request = client
        .request(Method::GET, "/api/v1/events")
        .map(|r| r.header(http::header::ACCEPT, "text/event-stream"));
    let response = match request {
        Ok(request) => match client.send(request).await {
            Ok(response) => checked(response).await.ok(),
            Err(_) => None,
        },
        Err(_) => None,
    };
    if response.is_none() {
        eprintln!("(the event stream is not available: polling the session instead)");
    }
    Events {
        response,
        buffer: Vec::new(),
    }
}

impl Events {
    /// The next `event: session` about session `id` (its view), `Ok(None)`
    /// on `resync`, or `Err` when the stream is broken or silent.
    async fn next_about(&mut self, id: &str) -> Result<Option<Value>, ()> {
        loop {
            while let Some((kind, data)) = self.take_event() {
                match kind.as_str() {
                    "session" => {
                        let view: Value = serde_json::from_str(&data).unwrap_or_default();
                        if view["id"] == id {
                            return Ok(Some(view));
                        }
                    }
                    "resync" => return Ok(None),
                    _ => {}
                }
            }
            let response = self.response.as_mut().ok_or(())?;
            match tokio::time::timeout(STREAM_SILENCE, response.chunk()).await {
                Ok(Ok(Some(chunk))) => self.buffer.extend_from_slice(&chunk),
                _ => {
                    self.response = None;
                    return Err(());
                }
            }
        }
    }

    /// The first complete event in the buffer: its `event` and `data`.
    /// Found in bytes, so a character split across chunks stays whole.
    fn take_event(&mut self) -> Option<(String, String)> {
        self.buffer.retain(|&b| b != b'\r');
        let end = self.buffer.windows(2).position(|w| w == b"\n\n")?;
        let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
        let block = String::from_utf8_lossy(&block[..end]).into_owned();
        let (mut kind, mut data) = ("message".to_owned(), String::new());
        for line in block.lines() {
            if let Some(value) = line.strip_prefix("event:") {
                kind = value.trim().to_owned();
            } else if let Some(value) = line.strip_prefix("data:") {
                data.push_str(value.strip_prefix(' ').unwrap_or(value));
            }
        }
        Some((kind, data))
    }
}

/// Follows session `session` (as created) until it is `Running`, printing
/// each phase on standard error; the final view. A session that fails,
/// ends, or is not running within `limit` is an error.
pub async fn until_running(
    client: &Client,
    mut events: Events,
    session: Value,
    limit: Duration,
) -> anyhow::Result<Value> {
    let id = session["id"].as_str().unwrap_or_default().to_owned();
    let started = Instant::now();
    let mut shown = String::new();
    let mut current = session;
    loop {
        report(&current, &mut shown, started);
        match current["phase"].as_str().unwrap_or_default() {
            "Running" => return Ok(current),
            "Failed" | "Terminated" | "Stopping" => {
                return Err(Failure::new(
                    ERROR,
                    format!(
                        "session {id} did not start: {}",
                        current["message"].as_str().unwrap_or("it failed")
                    ),
                )
                .into());
            }
            _ => {}
        }
        let left = limit.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(Failure::new(
                ERROR,
                format!("session {id} is still {shown} after {limit:?}; it keeps starting in the background"),
            )
            .into());
        }
        current = match tokio::time::timeout(left, next_view(client, &mut events, &id)).await {
            Ok(view) => view?,
            Err(_) => continue,
        };
    }
}

/// The session's next view: from the stream, or a poll.
async fn next_view(client: &Client, events: &mut Events, id: &str) -> anyhow::Result<Value> {
    match events.next_about(id).await {
        Ok(Some(view)) => Ok(view),
        Ok(None) => client.get(&format!("/api/v1/sessions/{id}")).await,
        Err(()) => {
            tokio::time::sleep(POLL_INTERVAL).await;
            client.get(&format!("/api/v1/sessions/{id}")).await
        }
    }
}

/// Prints the phase when it changed: `Starting (2.1 s)`.
fn report(view: &Value, shown: &mut String, started: Instant) {
    let phase = view["phase"].as_str().unwrap_or("?");
    if phase == shown {
        return;
    }
    let message = view["message"]
        .as_str()
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    eprintln!(
        "  {phase}{message} ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    *shown = phase.to_owned();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_split_and_read_whole() {
        let mut events = Events {
            response: None,
            buffer: b"event: ping\ndata: {\"interval_ms\":15000}\n\nevent: session\r\ndata: {\"id\":\"s1\"}\r\n\r\nevent: agent\ndata: {".to_vec(),
        };
        assert_eq!(
            events.take_event(),
            Some(("ping".into(), "{\"interval_ms\":15000}".into()))
        );
        assert_eq!(
            events.take_event(),
            Some(("session".into(), "{\"id\":\"s1\"}".into()))
        );
        assert_eq!(events.take_event(), None, "the third is not complete yet");
        assert_eq!(events.buffer, b"event: agent\ndata: {".to_vec());
    }

    #[test]
    fn a_character_split_across_chunks_stays_whole() {
        let mut events = Events {
            response: None,
            buffer: b"event: session\ndata: \"caf\xc3".to_vec(),
        };
        assert_eq!(events.take_event(), None);
        events.buffer.extend_from_slice(b"\xa9\"\n\n");
        assert_eq!(
            events.take_event(),
            Some(("session".into(), "\"caf\u{e9}\"".into()))
        );
    }
}
