//! A bound on each user's long-lived streams. Event streams, logs and VNC
//! viewers last as long as their client likes: once served, an event stream
//! or a followed log holds its HTTP connection as a request in progress,
//! which the connection cap never evicts, and a VNC tunnel leaves the cap
//! altogether. Without a bound one login could fill the cap or hold tunnels
//! without end. The three kinds share one budget per user and per
//! control-plane process; a stream over it is refused with 429.

use crate::error::ApiError;
use futures::{Stream, StreamExt};
use http::StatusCode;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use streamspace_protocol::UserId;

/// What a refused client is told to wait: streams end when their clients
/// close them, so there is no time at which one surely will.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// How many streams each user has open, up to `max`.
#[derive(Debug)]
pub struct StreamLimit {
    max: usize,
    /// Users with at least one stream open; the others are removed.
    open: Mutex<HashMap<UserId, usize>>,
}

/// One open stream's place in its user's budget, given back when dropped.
#[derive(Debug)]
pub struct StreamPermit {
    limit: Arc<StreamLimit>,
    user_id: UserId,
}

impl StreamLimit {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(StreamLimit {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    fn open(&self) -> MutexGuard<'_, HashMap<UserId, usize>> {
        // Each change is one insert or update: a panic cannot leave it torn.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for one more stream of `user_id`; 429 when they have `max`.
    pub fn acquire(self: &Arc<Self>, user_id: &UserId) -> Result<StreamPermit, ApiError> {
        let mut open = self.open();
        let count = open.entry(user_id.clone()).or_default();
        if *count >= self.max {
            return Err(ApiError::RetryLater {
                status: StatusCode::TOO_MANY_REQUESTS,
                message: format!(
                    "you have {} live streams open (event streams, logs and desktop viewers \
                     together), the most allowed: close some (browser tabs, viewers) and try again",
                    self.max
                ),
                retry_after: RETRY_AFTER,
            });
        }
        *count += 1;
        Ok(StreamPermit {
            limit: self.clone(),
            user_id: user_id.clone(),
        })
    }

    #[cfg(test)]
    fn count(&self, user_id: &UserId) -> usize {
        self.open().get(user_id).copied().unwrap_or(0)
    }
}

impl StreamPermit {
    /// `stream`, holding this permit until it ends or is dropped (a
    /// response body is dropped when its client goes away).
    pub fn hold<S: Stream>(self, stream: S) -> impl Stream<Item = S::Item> {
        stream.map(move |item| {
            let _held = &self;
            item
        })
    }
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut open = self.limit.open();
        if let Some(count) = open.get_mut(&self.user_id) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.user_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_user_gets_the_budget_and_closing_a_stream_gives_it_back() {
        let limit = StreamLimit::new(2);
        let first = limit.acquire(&"alice".into()).expect("room");
        let _second = limit.acquire(&"alice".into()).expect("room");
        let refused = limit.acquire(&"alice".into()).expect_err("over the budget");
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(refused.to_string().contains("close some"), "{refused}");
        let _bob = limit.acquire(&"bob".into()).expect("another user's budget");
        drop(first);
        let _again = limit
            .acquire(&"alice".into())
            .expect("a place was given back");
        assert_eq!(limit.count(&"alice".into()), 2);
    }

    #[test]
    fn users_without_streams_are_forgotten() {
        let limit = StreamLimit::new(2);
        let permit = limit.acquire(&"alice".into()).expect("room");
        drop(permit);
        assert!(limit.open().is_empty());
    }

    #[tokio::test]
    async fn a_held_stream_keeps_its_place_until_dropped() {
        let limit = StreamLimit::new(1);
        let permit = limit.acquire(&"alice".into()).expect("room");
        let mut held = Box::pin(permit.hold(futures::stream::iter([1, 2])));
        assert_eq!(held.next().await, Some(1));
        assert_eq!(limit.count(&"alice".into()), 1);
        drop(held);
        assert_eq!(limit.count(&"alice".into()), 0);
    }
}
