//! What one HTTP connection is doing, and since when: the clock the
//! header-read and idle timeouts run on, and what eviction looks at.
//!
//! hyper's own `header_read_timeout` cannot tell these apart: its timer
//! starts whenever hyper waits for a request head, so it would also cut
//! keep-alive connections that are merely idle. Here the socket itself is
//! watched (`Watched`): the first byte of a request ends `Idle`, the
//! service starts `Body` (or `Busy` for a request without one), the end of
//! the request body starts `Busy`, and the end of the response body is
//! `Idle` again. A body still on its way is the client's to send, so it is
//! timed and evicted like a head: otherwise a client that sends all but
//! the last byte of a body would hold its connection for free.
//! Writes are watched too. hyper lets go of a response body once its bytes
//! are queued, before they are written, so idle time is counted from the
//! last write that went through; and a client that has taken none of the
//! bytes waiting for it since `stalled` is a slow reader, timed and evicted
//! like an idle one.

use bytes::Bytes;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::HttpLimits;

/// How long after the body-read timeout a connection whose body is still
/// incomplete is closed without an answer: time for the 408 to go out.
const BODY_GRACE: Duration = Duration::from_secs(1);

/// The phase is the low bits of the state word, the time the rest.
const PHASE_SHIFT: u32 = 3;
const PHASE_BITS: u64 = (1 << PHASE_SHIFT) - 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the first byte of the next request (keep-alive).
    Idle,
    /// Handshaking (TLS) or reading a request's head.
    Head,
    /// The request's head is in, its body is not (all of it).
    Body,
    /// A request is being served; timed out or evicted only when its
    /// client stops reading.
    Busy,
    /// Chosen to make room for a newcomer; closing.
    Evicted,
    /// Upgraded (the application owns it now) or closed: no longer watched,
    /// so an upgraded TLS tunnel's writes cost one load here.
    Gone,
}

impl Phase {
    fn bits(self) -> u64 {
        match self {
            Phase::Idle => 0,
            Phase::Head => 1,
            Phase::Body => 2,
            Phase::Busy => 3,
            Phase::Evicted => 4,
            Phase::Gone => 5,
        }
    }

    fn of(bits: u64) -> Phase {
        match bits & PHASE_BITS {
            0 => Phase::Idle,
            1 => Phase::Head,
            2 => Phase::Body,
            3 => Phase::Busy,
            4 => Phase::Evicted,
            _ => Phase::Gone,
        }
    }
}

/// A phase and when it began, read together, and since when writes to
/// the client have been blocked, if they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    pub phase: Phase,
    pub since: Instant,
    pub stalled: Option<Instant>,
}

impl State {
    /// Since when the client has been keeping the connection without using
    /// it (idle, sending its head or body, or not reading); `None` while it
    /// is served or evicted.
    pub fn waiting_since(&self) -> Option<Instant> {
        match self.phase {
            Phase::Idle | Phase::Head | Phase::Body => Some(self.since),
            Phase::Busy => self.stalled,
            Phase::Evicted | Phase::Gone => None,
        }
    }
}

/// One connection's phase, shared by its socket, its service and the
/// registry that may evict it.
#[derive(Debug)]
pub struct Watch {
    /// Milliseconds since `epoch` above the phase's bits: one atomic, so a
    /// reader never sees a phase with another's time.
    state: AtomicU64,
    /// Milliseconds since `epoch` + 1 at which a write to the client last
    /// found the socket full; 0 while writes go through.
    stalled: AtomicU64,
    epoch: Instant,
    /// Wakes the connection's task on a change it must react to.
    changed: Notify,
}

impl Watch {
    /// A new connection: the client is expected to speak at once, so the
    /// header-read clock (which covers a TLS handshake) starts at accept.
    pub fn new(epoch: Instant) -> Self {
        let watch = Watch {
            state: AtomicU64::new(0),
            stalled: AtomicU64::new(0),
            epoch,
            changed: Notify::new(),
        };
        watch
            .state
            .store(watch.pack(Phase::Head), Ordering::Release);
        watch
    }

    fn now_ms(&self) -> u64 {
        Instant::now()
            .saturating_duration_since(self.epoch)
            .as_millis() as u64
    }

    fn pack(&self, phase: Phase) -> u64 {
        (self.now_ms() << PHASE_SHIFT) | phase.bits()
    }

    fn unpack(&self, raw: u64) -> (Phase, Instant) {
        (
            Phase::of(raw),
            self.epoch + Duration::from_millis(raw >> PHASE_SHIFT),
        )
    }

    pub fn state(&self) -> State {
        let (phase, since) = self.unpack(self.state.load(Ordering::Acquire));
        let stalled = match self.stalled.load(Ordering::Acquire) {
            0 => None,
            ms => Some(self.epoch + Duration::from_millis(ms - 1)),
        };
        State {
            phase,
            since,
            stalled,
        }
    }

    /// A write found the socket full: the clock for a slow reader starts,
    /// unless it already runs.
    fn write_blocked(&self) {
        if self.stalled.load(Ordering::Relaxed) == 0 && self.phase() != Phase::Gone {
            self.stalled.store(self.now_ms() + 1, Ordering::Release);
            self.changed.notify_one();
        }
    }

    /// A write went through: the client is reading, and a connection
    /// still sending its last response is not idle yet.
    fn write_moved(&self) {
        let raw = self.state.load(Ordering::Relaxed);
        if Phase::of(raw) == Phase::Gone {
            return;
        }
        if self.stalled.load(Ordering::Relaxed) != 0 {
            self.stalled.store(0, Ordering::Release);
        }
        if Phase::of(raw) == Phase::Idle {
            // No wake-up: the deadline only moves later. A change that wins
            // the race stands.
            let now = self.pack(Phase::Idle);
            let _ = self
                .state
                .compare_exchange(raw, now, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    /// Moves to `to` if the phase is one of `from`; returns whether it did.
    fn shift(&self, from: &[Phase], to: Phase) -> bool {
        let mut raw = self.state.load(Ordering::Acquire);
        loop {
            if !from.contains(&Phase::of(raw)) {
                return false;
            }
            match self.state.compare_exchange_weak(
                raw,
                self.pack(to),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.changed.notify_one();
                    return true;
                }
                Err(now) => raw = now,
            }
        }
    }

    /// Bytes arrived: an idle connection has begun its next request.
    fn on_bytes(&self) {
        // The common case (mid-request, mid-body) is a single load.
        if self.phase() == Phase::Idle {
            self.shift(&[Phase::Idle], Phase::Head);
        }
    }

    fn phase(&self) -> Phase {
        Phase::of(self.state.load(Ordering::Relaxed))
    }

    /// The server no longer watches the connection (upgraded or closed).
    pub fn release(&self) {
        self.state.store(self.pack(Phase::Gone), Ordering::Release);
    }

    /// hyper has a complete request head and calls the service; the
    /// request's body, if it has one, is still to come.
    pub fn request_started(&self, with_body: bool) {
        let next = if with_body { Phase::Body } else { Phase::Busy };
        self.shift(&[Phase::Idle, Phase::Head], next);
    }

    /// The request's body has all arrived, failed, or was let go unread.
    pub fn body_finished(&self) {
        self.shift(&[Phase::Body], Phase::Busy);
    }

    /// The response went out (its body was dropped); a request body the
    /// handler kept past its answer no longer matters.
    pub fn request_finished(&self) {
        self.shift(&[Phase::Body, Phase::Busy], Phase::Idle);
    }

    /// Evicts the connection if its phase is still exactly `seen` (no
    /// request started since); the registry only passes waiting states.
    pub fn evict_if(&self, seen: State) -> bool {
        let raw = self.state.load(Ordering::Acquire);
        if self.unpack(raw) != (seen.phase, seen.since) {
            return false;
        }
        let evicted = (raw & !PHASE_BITS) | Phase::Evicted.bits();
        let swapped = self
            .state
            .compare_exchange(raw, evicted, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if swapped {
            self.changed.notify_one();
        }
        swapped
    }

    /// When the current phase runs out, if it can. A request in progress
    /// runs out only when its client has left the response unread for the
    /// idle timeout.
    pub fn deadline(state: State, limits: &HttpLimits) -> Option<Instant> {
        match state.phase {
            Phase::Head => Some(state.since + limits.header_read_timeout),
            // The body itself fails at the timeout, so the handler answers
            // 408 (`service.rs`); this closes the connection if it did not.
            Phase::Body => Some(state.since + limits.body_read_timeout + BODY_GRACE),
            Phase::Idle | Phase::Busy => state.waiting_since().map(|at| at + limits.idle_timeout),
            Phase::Evicted => Some(state.since),
            Phase::Gone => None,
        }
    }

    /// Waits for the next change (a permit left by an earlier one counts).
    pub async fn changed(&self) {
        self.changed.notified().await
    }
}

/// A connection's socket, marking the first byte of each request.
pub struct Watched<S> {
    io: S,
    watch: Arc<Watch>,
}

impl<S> Watched<S> {
    pub fn new(io: S, watch: Arc<Watch>) -> Self {
        Watched { io, watch }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            this.watch.on_bytes();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S> Watched<S> {
    fn track<T>(&self, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match &poll {
            Poll::Pending => self.watch.write_blocked(),
            Poll::Ready(_) => self.watch.write_moved(),
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_write(cx, buf);
        this.track(poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.track(poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_flush(cx);
        this.track(poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// The plain TCP socket under an upgraded connection, and the bytes hyper
/// read past the upgrade; the upgrade back if it was not plain TCP (TLS).
/// The tunnel splices such sockets in the kernel.
pub fn into_tcp(upgraded: Upgraded) -> Result<(TcpStream, Bytes), Upgraded> {
    let parts = upgraded.downcast::<TokioIo<Watched<TcpStream>>>()?;
    Ok((parts.io.into_inner().io, parts.read_buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> HttpLimits {
        HttpLimits {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1,
        }
    }

    /// Long enough for the millisecond clock to move.
    fn tick() {
        std::thread::sleep(Duration::from_millis(3));
    }

    #[test]
    fn phases_follow_a_request_and_set_the_deadline() {
        let watch = Watch::new(Instant::now());
        let accepted = watch.state();
        assert_eq!(accepted.phase, Phase::Head);
        assert_eq!(
            Watch::deadline(accepted, &limits()),
            Some(accepted.since + Duration::from_secs(10))
        );
        tick();
        watch.request_started(true);
        let body = watch.state();
        assert_eq!(body.phase, Phase::Body);
        assert_eq!(body.waiting_since(), Some(body.since), "evictable");
        assert_eq!(
            Watch::deadline(body, &limits()),
            Some(body.since + Duration::from_secs(30) + BODY_GRACE)
        );
        watch.on_bytes();
        assert_eq!(watch.state(), body, "body bytes do not move the deadline");
        watch.body_finished();
        assert_eq!(watch.state().phase, Phase::Busy);
        assert_eq!(Watch::deadline(watch.state(), &limits()), None);
        tick();
        watch.request_finished();
        let idle = watch.state();
        assert_eq!(idle.phase, Phase::Idle);
        assert!(idle.since > accepted.since);
        assert_eq!(
            Watch::deadline(idle, &limits()),
            Some(idle.since + Duration::from_secs(60))
        );
        tick();
        watch.on_bytes();
        let next = watch.state();
        assert_eq!(next.phase, Phase::Head);
        assert!(next.since > idle.since, "the header clock starts anew");
    }

    #[test]
    fn a_client_not_reading_waits_like_an_idle_one() {
        let watch = Watch::new(Instant::now());
        watch.request_started(false);
        assert_eq!(watch.state().waiting_since(), None, "served");
        tick();
        watch.write_blocked();
        let stalled = watch.state();
        assert!(stalled.stalled.is_some_and(|at| at > stalled.since));
        assert_eq!(stalled.waiting_since(), stalled.stalled);
        assert_eq!(
            Watch::deadline(stalled, &limits()),
            stalled.stalled.map(|at| at + Duration::from_secs(60))
        );
        // The body is handed over; its tail still goes out, slowly.
        watch.request_finished();
        let idle = watch.state();
        tick();
        watch.write_moved();
        let later = watch.state();
        assert_eq!((later.phase, later.stalled), (Phase::Idle, None));
        assert!(later.since > idle.since, "idle counts from the last write");
    }

    #[test]
    fn eviction_loses_to_a_request_that_started_meanwhile() {
        let watch = Watch::new(Instant::now());
        let seen = watch.state();
        watch.request_started(true);
        assert!(!watch.evict_if(seen), "a request started since");
        watch.body_finished();
        watch.request_finished();
        let idle = watch.state();
        assert!(watch.evict_if(idle));
        assert_eq!(watch.state().phase, Phase::Evicted);
        watch.request_started(false);
        watch.body_finished();
        watch.on_bytes();
        assert_eq!(watch.state().phase, Phase::Evicted, "eviction is final");
    }

    #[test]
    fn a_released_connection_is_left_alone() {
        let watch = Watch::new(Instant::now());
        watch.release();
        watch.write_blocked();
        watch.write_moved();
        watch.on_bytes();
        watch.request_started(true);
        watch.body_finished();
        let gone = watch.state();
        assert_eq!((gone.phase, gone.stalled), (Phase::Gone, None));
        assert_eq!(gone.waiting_since(), None, "never evicted");
        assert_eq!(Watch::deadline(gone, &limits()), None, "never timed out");
    }
}
