//! Moves bytes between a viewer's WebSocket and an agent's raw data stream:
//! in the kernel towards the viewer when both are plain TCP (the usual
//! case; TLS ends in front of us), else through user space. A recorded
//! tunnel also hands each chunk for the viewer to its [`Recorder`]: teed
//! from the pipe on the zero-copy path, from memory on the copying one.

use super::activity::Activity;
use super::rfb_input::InputFilter;
use super::websocket::{Decoder, Incoming, write_frame};
use crate::audit_log::viewers::ViewerBytes;
use crate::metrics::Metrics;
use crate::recording::Recorder;
use bytes::{Bytes, BytesMut};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter;
use std::io;
use std::time::Duration;
use streamspace_protocol::tunnel::read_chunk;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

/// Bytes sent to the viewer per WebSocket frame at most: large enough that
/// a framebuffer update is a few frames, small enough to keep latency low.
const CHUNK: usize = 64 * 1024;

/// The viewer side's read buffer: viewers send small input events, and an
/// idle tunnel should cost little. Larger frames stream through it.
const READ_BUFFER: usize = 2 * 1024;

/// How long a closing viewer gets for our close frame to go out.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Status codes of the close frames we send (RFC 6455 §7.4.1).
const NORMAL_CLOSURE: u16 = 1000;
const PROTOCOL_ERROR: u16 = 1002;
/// The recording stopped (a cap, a disk error): nothing unrecorded is shown.
const RECORDING_STOPPED: u16 = 1011;
const POLICY_VIOLATION: u16 = 1008;

const BINARY: OpCode = OpCode::Data(Data::Binary);

/// Control frames the viewer side asks the sending side to write.
enum Reply {
    Pong(Bytes),
    Close(u16),
}

/// One tunnel's bookkeeping: activity for idle hibernation, counters (the
/// server's, and this tunnel's own for the audit log), the server's
/// shutdown, and what the viewer may send (`None`: anything, unparsed).
pub struct Tunnel<'a> {
    pub activity: &'a Activity,
    pub metrics: &'a Metrics,
    pub bytes: &'a ViewerBytes,
    pub shutdown: CancellationToken,
    /// Records what the viewer is sent; `None` (most tunnels): nothing
    /// else happens to the bytes.
    pub recorder: Option<&'a Recorder>,
    pub input: Option<InputFilter>,
}

impl Tunnel<'_> {
    /// Runs until either side closes or the server shuts down. Everything
    /// the viewer sends (keyboard, mouse) is user activity.
    pub async fn run(self, viewer: Upgraded, agent: Upgraded) {
        #[cfg(target_os = "linux")]
        {
            let (viewer, agent) = (End::of(viewer), End::of(agent));
            self.zero_copy_or_copying(viewer, agent).await
        }
        #[cfg(not(target_os = "linux"))]
        {
            let (viewer, agent) = (TokioIo::new(viewer), TokioIo::new(agent));
            self.copying(
                End::new(viewer, Bytes::new()),
                End::new(agent, Bytes::new()),
            )
            .await
        }
    }

    async fn copying<V, A>(self, viewer: End<V>, agent: End<A>)
    where
        V: AsyncRead + AsyncWrite,
        A: AsyncRead + AsyncWrite,
    {
        let (viewer_rx, viewer_tx) = tokio::io::split(viewer.socket);
        let (agent_rx, agent_tx) = tokio::io::split(agent.socket);
        let source = Copied {
            agent: agent_rx,
            chunk: agent.ahead,
            recorder: self.recorder,
        };
        let viewer = (viewer_rx, viewer.ahead, viewer_tx);
        self.both_ways(viewer, agent_tx, source).await
    }

    /// Viewer → agent and agent → viewer until either ends. The viewer
    /// comes as its reading half, what was read ahead of it, and its
    /// writing half.
    async fn both_ways<R, W, S, V>(self, viewer: (R, Bytes, V), agent_tx: W, source: S)
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
        S: Source<V>,
        V: AsyncWrite + Unpin,
    {
        // Replies are rare and tiny; a full queue means a viewer flooding pings.
        let (replies, queued) = mpsc::channel(8);
        let upstream = Upstream {
            filter: self.input,
            activity: self.activity,
            bytes: self.metrics.bytes("from_viewer"),
            counted: self.bytes,
            replies,
        };
        let to_viewer = (self.metrics.bytes("to_viewer"), self.bytes);
        let (viewer_rx, viewer_ahead, viewer_tx) = viewer;
        tokio::select! {
            _ = upstream.run(viewer_rx, viewer_ahead, agent_tx) => {}
            _ = downstream(source, viewer_tx, queued, to_viewer) => {}
            _ = self.shutdown.cancelled() => {}
        }
    }
}

/// An end of the tunnel and the bytes HTTP read past its upgrade, which
/// come before anything read from it.
struct End<S> {
    socket: S,
    ahead: Bytes,
}

impl<S> End<S> {
    fn new(socket: S, ahead: Bytes) -> Self {
        End { socket, ahead }
    }
}

/// Viewer → agent.
struct Upstream<'a> {
    filter: Option<InputFilter>,
    activity: &'a Activity,
    bytes: Counter,
    counted: &'a ViewerBytes,
    replies: mpsc::Sender<Reply>,
}

impl Upstream<'_> {
    async fn run(
        mut self,
        mut viewer: impl AsyncRead + Unpin,
        ahead: Bytes,
        mut agent: impl AsyncWrite + Unpin,
    ) {
        let mut buf = BytesMut::with_capacity(READ_BUFFER.max(ahead.len()));
        buf.extend_from_slice(&ahead);
        let mut decoder = Decoder::default();
        let mut allowed = BytesMut::new();
        let close = loop {
            let event = match decoder.next(&mut buf) {
                Ok(Some(event)) => event,
                Ok(None) => {
                    buf.reserve(READ_BUFFER);
                    match viewer.read_buf(&mut buf).await {
                        Ok(0) | Err(_) => break None,
                        Ok(_) => continue,
                    }
                }
                Err(violation) => {
                    tracing::debug!(%violation, "closing the viewer's WebSocket");
                    break Some(PROTOCOL_ERROR);
                }
            };
            match event {
                Incoming::Data(data) => {
                    self.activity.mark();
                    self.bytes.inc_by(data.len() as u64);
                    self.counted.add_from_viewer(data.len());
                    let data = match self.filter.as_mut() {
                        None => data,
                        Some(filter) => match filter.feed(&data, &mut allowed) {
                            Ok(()) => allowed.split().freeze(),
                            Err(violation) => {
                                tracing::info!(%violation, "closing a viewer the input rules cannot follow");
                                break Some(POLICY_VIOLATION);
                            }
                        },
                    };
                    if !data.is_empty() && agent.write_all(&data).await.is_err() {
                        break None;
                    }
                }
                Incoming::Ping(payload) => {
                    if self.replies.send(Reply::Pong(payload)).await.is_err() {
                        break None;
                    }
                }
                Incoming::Pong => {}
                Incoming::Close(code) => break Some(code.unwrap_or(NORMAL_CLOSURE)),
            }
        };
        let _ = agent.shutdown().await;
        // Our close frame goes out from the sending side, which then ends
        // the tunnel; a viewer that stopped reading gets a bounded wait.
        if let Some(code) = close
            && self.replies.send(Reply::Close(code)).await.is_ok()
        {
            tokio::time::sleep(CLOSE_GRACE).await;
        }
    }
}

/// Where the bytes for the viewer come from, and how they reach it.
trait Source<V> {
    /// Waits for the agent's next chunk and returns its size; 0 at the end.
    /// Cancel-safe: a chunk is only taken when this completes.
    async fn next(&mut self) -> io::Result<usize>;
    /// Sends the chunk `next` took, as one binary frame (recording it
    /// first, if the tunnel is recorded).
    async fn send(&mut self, viewer: &mut V) -> io::Result<()>;
    /// Whether the tunnel's recording stopped, so it must close.
    fn recording_stopped(&self) -> bool;
}

/// Chunks read into our memory and written from it.
struct Copied<'r, A> {
    agent: A,
    /// The chunk to send; at first, what HTTP read ahead.
    chunk: Bytes,
    recorder: Option<&'r Recorder>,
}

impl<A: AsyncRead + Unpin, V: AsyncWrite + Unpin> Source<V> for Copied<'_, A> {
    async fn next(&mut self) -> io::Result<usize> {
        if !self.chunk.is_empty() {
            return Ok(self.chunk.len());
        }
        self.chunk = read_chunk(&mut self.agent, CHUNK)
            .await?
            .unwrap_or_default();
        Ok(self.chunk.len())
    }

    async fn send(&mut self, viewer: &mut V) -> io::Result<()> {
        let chunk = std::mem::take(&mut self.chunk);
        if let Some(recorder) = self.recorder {
            recorder.record(&chunk).await?;
        }
        write_frame(viewer, BINARY, &chunk).await
    }

    fn recording_stopped(&self) -> bool {
        self.recorder.is_some_and(Recorder::stopped)
    }
}

/// Agent → viewer, and the viewer side's replies.
async fn downstream<S: Source<V>, V: AsyncWrite + Unpin>(
    mut source: S,
    mut viewer: V,
    mut replies: mpsc::Receiver<Reply>,
    (bytes, counted): (Counter, &ViewerBytes),
) {
    loop {
        // A reply never interrupts a frame half-written: frames are written
        // in the arms, and only the waits race.
        let written = tokio::select! {
            reply = replies.recv() => match reply {
                Some(Reply::Pong(payload)) => write_frame(&mut viewer, OpCode::Control(Control::Pong), &payload).await,
                Some(Reply::Close(code)) => {
                    let _ = close(&mut viewer, code).await;
                    return;
                }
                None => return,
            },
            chunk = source.next() => match chunk {
                Ok(_) if source.recording_stopped() => {
                    let _ = close(&mut viewer, RECORDING_STOPPED).await;
                    return;
                }
                Ok(n) if n > 0 => {
                    bytes.inc_by(n as u64);
                    counted.add_to_viewer(n);
                    source.send(&mut viewer).await
                }
                _ => {
                    let _ = close(&mut viewer, NORMAL_CLOSURE).await;
                    return;
                }
            },
        };
        if written.is_err() {
            return;
        }
    }
}

async fn close(viewer: &mut (impl AsyncWrite + Unpin), code: u16) -> io::Result<()> {
    write_frame(viewer, OpCode::Control(Control::Close), &code.to_be_bytes()).await
}

#[cfg(target_os = "linux")]
mod zero_copy {
    use super::super::websocket::frame_header;
    use super::*;
    use streamspace_splice::Pipe;
    use tokio::net::TcpStream;
    use tokio::net::tcp::{ReadHalf, WriteHalf};
    use tokio_util::either::Either;

    /// A plain TCP socket, or whatever else the connection was upgraded from.
    type Socket = Either<TcpStream, TokioIo<Upgraded>>;

    impl End<Socket> {
        pub(super) fn of(upgraded: Upgraded) -> Self {
            match crate::serve::into_tcp(upgraded) {
                // A copy: the bytes are few, and the original would keep
                // hyper's whole read buffer alive as long as the tunnel.
                Ok((tcp, ahead)) => End::new(Either::Left(tcp), Bytes::copy_from_slice(&ahead)),
                Err(upgraded) => End::new(Either::Right(TokioIo::new(upgraded)), Bytes::new()),
            }
        }
    }

    impl Tunnel<'_> {
        pub(super) async fn zero_copy_or_copying(self, viewer: End<Socket>, agent: End<Socket>) {
            let pipe = Pipe::new(CHUNK)
                .map_err(|err| tracing::debug!(%err, "no pipe for a zero-copy tunnel"))
                .ok();
            let (viewer_ahead, agent_ahead) = (viewer.ahead, agent.ahead);
            match (viewer.socket, agent.socket, pipe) {
                (Either::Left(viewer), Either::Left(agent), Some(pipe)) => {
                    self.metrics.tunnels_zero_copy.inc();
                    let (viewer, agent) =
                        (End::new(viewer, viewer_ahead), End::new(agent, agent_ahead));
                    self.zero_copy(viewer, agent, pipe).await
                }
                (viewer, agent, _) => {
                    let (viewer, agent) =
                        (End::new(viewer, viewer_ahead), End::new(agent, agent_ahead));
                    self.copying(viewer, agent).await
                }
            }
        }

        pub(super) async fn zero_copy(
            self,
            mut viewer: End<TcpStream>,
            mut agent: End<TcpStream>,
            pipe: Pipe,
        ) {
            let (viewer_rx, viewer_tx) = viewer.socket.split();
            let (agent_rx, agent_tx) = agent.socket.split();
            let source = Spliced {
                agent: agent_rx,
                pipe,
                ahead: agent.ahead,
                len: 0,
                recorder: self.recorder,
            };
            let viewer = (viewer_rx, viewer.ahead, viewer_tx);
            self.both_ways(viewer, agent_tx, source).await
        }
    }

    /// Chunks spliced from the agent's socket into a pipe, and from the
    /// pipe to the viewer's socket behind their frame headers.
    struct Spliced<'a> {
        agent: ReadHalf<'a>,
        pipe: Pipe,
        /// What HTTP read ahead from the agent: sent first, from memory.
        ahead: Bytes,
        len: usize,
        recorder: Option<&'a Recorder>,
    }

    impl<'a> Source<WriteHalf<'a>> for Spliced<'_> {
        async fn next(&mut self) -> io::Result<usize> {
            if !self.ahead.is_empty() {
                return Ok(self.ahead.len());
            }
            self.len = self.pipe.fill(self.agent.as_ref(), CHUNK).await?;
            Ok(self.len)
        }

        async fn send(&mut self, viewer: &mut WriteHalf<'a>) -> io::Result<()> {
            if !self.ahead.is_empty() {
                let ahead = std::mem::take(&mut self.ahead);
                if let Some(recorder) = self.recorder {
                    recorder.record(&ahead).await?;
                }
                return write_frame(viewer, BINARY, &ahead).await;
            }
            let len = std::mem::take(&mut self.len);
            if let Some(recorder) = self.recorder
                && let Some(taken) = recorder.record_pipe(&self.pipe, len).await?
            {
                // The tap was too full for the whole chunk: it left the pipe.
                return write_frame(viewer, BINARY, &taken).await;
            }
            let (header, header_len) = frame_header(BINARY, len);
            self.pipe
                .drain_after(&header[..header_len], viewer.as_ref(), len)
                .await
        }

        fn recording_stopped(&self) -> bool {
            self.recorder.is_some_and(Recorder::stopped)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{SinkExt, StreamExt};
    use std::sync::Arc;
    use streamspace_testkit::tcp_pair as pair;
    use tokio::net::TcpStream;
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::Role;

    /// The ways a tunnel can move its bytes.
    #[derive(Clone, Copy, Debug)]
    enum Path {
        Copying,
        #[cfg(target_os = "linux")]
        ZeroCopy,
    }

    const PATHS: &[Path] = &[
        Path::Copying,
        #[cfg(target_os = "linux")]
        Path::ZeroCopy,
    ];

    /// Runs a tunnel between two sockets, as if HTTP had read `ahead` past
    /// each upgrade (viewer's, agent's).
    fn spawn(path: Path, viewer: TcpStream, agent: TcpStream, ahead: [&'static [u8]; 2]) {
        let viewer = End::new(viewer, Bytes::from_static(ahead[0]));
        let agent = End::new(agent, Bytes::from_static(ahead[1]));
        let counts = (Arc::new(Metrics::default()), Arc::default());
        spawn_counted(path, viewer, agent, counts, None, None);
    }

    fn spawn_counted(
        path: Path,
        viewer: End<TcpStream>,
        agent: End<TcpStream>,
        (metrics, counted): (Arc<Metrics>, Arc<ViewerBytes>),
        input: Option<InputFilter>,
        recorder: Option<Recorder>,
    ) {
        tokio::spawn(async move {
            let activity = Activity::default();
            let tunnel = Tunnel {
                activity: &activity,
                metrics: &metrics,
                bytes: &counted,
                shutdown: CancellationToken::new(),
                input,
                recorder: recorder.as_ref(),
            };
            match path {
                Path::Copying => tunnel.copying(viewer, agent).await,
                #[cfg(target_os = "linux")]
                Path::ZeroCopy => {
                    let pipe = streamspace_splice::Pipe::new(CHUNK).expect("pipe");
                    tunnel.zero_copy(viewer, agent, pipe).await
                }
            }
        });
    }

    /// What a test tunnel counts: the server's metrics and its own bytes.
    type Counts = (Arc<Metrics>, Arc<ViewerBytes>);

    /// A tungstenite client (past its handshake) and the agent's end of a
    /// tunnel spliced between them; the counts say what crossed.
    async fn tunnel(path: Path) -> (WebSocketStream<TcpStream>, TcpStream, Counts) {
        tunnel_with(path, None).await
    }

    /// The same, with input rules on the viewer's stream.
    async fn tunnel_with(
        path: Path,
        input: Option<InputFilter>,
    ) -> (WebSocketStream<TcpStream>, TcpStream, Counts) {
        let (client, viewer) = pair().await;
        let (agent_near, agent) = pair().await;
        let counts: Counts = (Arc::new(Metrics::default()), Arc::default());
        let viewer = End::new(viewer, Bytes::new());
        let agent_near = End::new(agent_near, Bytes::new());
        spawn_counted(path, viewer, agent_near, counts.clone(), input, None);
        let ws = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
        (ws, agent, counts)
    }

    /// Binary messages until `len` bytes came (and a pong, if `pong_too`), and
    /// the last pong seen.
    async fn receive(
        ws: &mut WebSocketStream<TcpStream>,
        len: usize,
        pong_too: bool,
    ) -> (Vec<u8>, Option<Bytes>) {
        let mut got = Vec::new();
        let mut pong = None;
        while got.len() < len || (pong_too && pong.is_none()) {
            let next = tokio::time::timeout(Duration::from_secs(10), ws.next());
            match next
                .await
                .expect("bytes in time")
                .expect("open")
                .expect("frame")
            {
                Message::Binary(data) => got.extend_from_slice(&data),
                Message::Pong(payload) => pong = Some(payload),
                other => panic!("unexpected {other:?}"),
            }
        }
        (got, pong)
    }

    #[tokio::test]
    async fn bytes_cross_both_ways_and_pings_are_answered() {
        for &path in PATHS {
            let (mut ws, mut agent, (metrics, counted)) = tunnel(path).await;
            let big: Vec<u8> = (0..100_000u32).map(|i| (i % 249) as u8).collect();
            ws.send(Message::binary(&b"keys"[..])).await.expect("send");
            ws.send(Message::binary(big.clone())).await.expect("send");
            let mut received = vec![0u8; 4 + big.len()];
            agent.read_exact(&mut received).await.expect("agent reads");
            assert!(
                received[..4] == *b"keys" && received[4..] == big[..],
                "{path:?}"
            );
            assert_eq!(metrics.bytes("from_viewer").get(), received.len() as u64);
            assert_eq!(counted.totals().0, received.len() as u64, "{path:?}");

            ws.send(Message::Ping(Bytes::from_static(b"hello")))
                .await
                .expect("ping");
            let screen: Vec<u8> = (0..1_000_000u32).map(|i| (i % 241) as u8).collect();
            agent.write_all(&screen).await.expect("agent writes");
            // The pong may come before, among or after the screen's frames.
            let (got, pong) = receive(&mut ws, screen.len(), true).await;
            assert!(
                got == screen,
                "{path:?}: the screen arrives intact and in order"
            );
            assert_eq!(pong.as_deref(), Some(&b"hello"[..]), "{path:?}");
            assert_eq!(metrics.bytes("to_viewer").get(), screen.len() as u64);
            assert_eq!(counted.totals().1, screen.len() as u64, "{path:?}");
        }
    }

    #[tokio::test]
    async fn a_view_only_viewer_reaches_the_server_without_its_input() {
        use super::super::rfb_input::InputRules;
        let key = [4u8, 1, 0, 0, 0, 0, 0, 0x61];
        let update = [3u8, 1, 0, 0, 0, 0, 5, 0, 3, 32];
        for &path in PATHS {
            let filter = InputFilter::new(InputRules::VIEW_ONLY);
            let (mut ws, mut agent, _) = tunnel_with(path, Some(filter)).await;
            // Split mid-message, as a browser may.
            let mut stream = b"RFB 003.008\n\x01\x00".to_vec();
            stream.extend_from_slice(&key);
            stream.extend_from_slice(&update);
            for piece in stream.chunks(5) {
                ws.send(Message::binary(piece.to_vec()))
                    .await
                    .expect("send");
            }
            let mut up = vec![0u8; 14 + update.len()];
            agent.read_exact(&mut up).await.expect("agent reads");
            assert_eq!(
                &up[..14],
                b"RFB 003.008\n\x01\x01",
                "{path:?}: shared forced"
            );
            assert_eq!(&up[14..], &update, "{path:?}: the key never arrives");

            ws.send(Message::binary(vec![7u8])).await.expect("send");
            match ws.next().await.expect("a frame").expect("valid") {
                Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), POLICY_VIOLATION),
                other => panic!("{path:?}: expected a close frame, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn bytes_read_ahead_of_the_upgrades_go_first() {
        // A masked frame "hi" (mask 0) the viewer sent with its handshake,
        // and the banner the session sent as the agent's upgrade completed.
        let viewer_ahead: &[u8] = &[0x82, 0x82, 0, 0, 0, 0, b'h', b'i'];
        for &path in PATHS {
            let (client, viewer) = pair().await;
            let (agent_near, mut agent) = pair().await;
            spawn(path, viewer, agent_near, [viewer_ahead, b"RFB 003.008\n"]);
            let mut ws = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
            agent.write_all(b"more").await.expect("agent writes");
            let (got, _) = receive(&mut ws, 16, false).await;
            assert_eq!(got, b"RFB 003.008\nmore", "{path:?}");
            ws.send(Message::binary(&b"!"[..])).await.expect("send");
            let mut up = [0u8; 3];
            agent.read_exact(&mut up).await.expect("agent reads");
            assert_eq!(&up, b"hi!", "{path:?}");
        }
    }

    #[tokio::test]
    async fn a_close_from_either_side_ends_the_tunnel_with_a_close_frame() {
        for &path in PATHS {
            let (mut ws, mut agent, _) = tunnel(path).await;
            ws.close(None).await.expect("close");
            let reply = ws.next().await.expect("a reply").expect("valid");
            assert!(matches!(reply, Message::Close(_)), "{path:?}: {reply:?}");
            let mut rest = Vec::new();
            agent
                .read_to_end(&mut rest)
                .await
                .expect("the agent sees the end");

            let (mut ws, agent, _) = tunnel(path).await;
            drop(agent);
            match ws.next().await.expect("a frame").expect("valid") {
                Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), NORMAL_CLOSURE),
                other => panic!("{path:?}: expected a close frame, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_protocol_violation_gets_close_1002() {
        for &path in PATHS {
            let (mut raw, viewer) = pair().await;
            let (agent_near, mut agent) = pair().await;
            spawn(path, viewer, agent_near, [b"", b""]);
            raw.write_all(&[0x82, 0x03, 1, 2, 3])
                .await
                .expect("unmasked frame");
            let mut reply = [0u8; 4];
            raw.read_exact(&mut reply).await.expect("close frame");
            assert_eq!(reply, [0x88, 0x02, 0x03, 0xea], "{path:?}");
            let mut forwarded = Vec::new();
            agent.read_to_end(&mut forwarded).await.expect("agent end");
            assert!(
                forwarded.is_empty(),
                "nothing of a bad frame reaches the agent"
            );
        }
    }

    /// A recordings directory with `limits`, and a recording started in it.
    #[cfg(target_os = "linux")]
    fn recording(
        limits: crate::recording::Limits,
    ) -> (
        tempfile::TempDir,
        Arc<crate::recording::Recordings>,
        Recorder,
        String,
    ) {
        let dir = tempfile::tempdir().expect("temp dir");
        let recordings = crate::recording::Recordings::open(dir.path().join("r"), limits);
        let recordings = Arc::new(recordings.expect("open"));
        let started = crate::recording::start(&recordings, &"s".into(), "user:a");
        let (recorder, info) = started.expect("start");
        (dir, recordings, recorder, info.id)
    }

    /// The chunks' bytes of a finished recording, joined.
    #[cfg(target_os = "linux")]
    async fn recorded(recordings: &crate::recording::Recordings, id: &str) -> Vec<u8> {
        for _ in 0..500 {
            if !recordings.is_active(id) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let bytes = std::fs::read(recordings.file(id).expect("file")).expect("read");
        let (_, chunks) = crate::recording::format::parse(&bytes).expect("parses");
        chunks.iter().flat_map(|c| c.data.iter().copied()).collect()
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_recorded_tunnel_records_exactly_what_the_viewer_got() {
        for &path in PATHS {
            let (_dir, recordings, recorder, id) = recording(Default::default());
            let (client, viewer) = pair().await;
            let (agent_near, mut agent) = pair().await;
            let viewer = End::new(viewer, Bytes::new());
            let agent_near = End::new(agent_near, Bytes::from_static(b"RFB 003.008\n"));
            let counts = (Arc::new(Metrics::default()), Arc::default());
            spawn_counted(path, viewer, agent_near, counts, None, Some(recorder));
            let mut ws = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
            let screen: Vec<u8> = (0..3_000_000u32).map(|i| (i % 241) as u8).collect();
            let sent = screen.clone();
            let writer = tokio::spawn(async move {
                agent.write_all(&sent).await.expect("agent writes");
                agent
            });
            let (got, _) = receive(&mut ws, 12 + screen.len(), false).await;
            assert!(
                got[..12] == *b"RFB 003.008\n" && got[12..] == screen[..],
                "{path:?}"
            );
            drop(writer.await.expect("writer"));
            let reply = ws.next().await.expect("a frame").expect("valid");
            assert!(matches!(reply, Message::Close(_)), "{path:?}: {reply:?}");
            let file = recorded(&recordings, &id).await;
            assert!(
                file == got,
                "{path:?}: the recording is the viewer's stream"
            );
        }
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_recording_at_its_cap_closes_the_tunnel() {
        for &path in PATHS {
            let limits = crate::recording::Limits {
                max_bytes: 100_000,
                max_total: 1 << 30,
            };
            let (_dir, recordings, recorder, id) = recording(limits);
            let (client, viewer) = pair().await;
            let (agent_near, mut agent) = pair().await;
            let counts = (Arc::new(Metrics::default()), Arc::default());
            let (viewer, agent_near) = (
                End::new(viewer, Bytes::new()),
                End::new(agent_near, Bytes::new()),
            );
            spawn_counted(path, viewer, agent_near, counts, None, Some(recorder));
            let mut ws = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
            let mut shown = Vec::new();
            let closed = loop {
                // The session keeps drawing until the tunnel closes.
                let _ = agent.write_all(&[9u8; 10_000]).await;
                let next = tokio::time::timeout(Duration::from_secs(10), ws.next());
                match next.await.expect("in time") {
                    Some(Ok(Message::Binary(data))) => shown.extend_from_slice(&data),
                    Some(Ok(Message::Close(frame))) => break frame,
                    other => panic!("{path:?}: {other:?}"),
                }
            };
            let code = closed.map(|f| u16::from(f.code));
            assert_eq!(code, Some(RECORDING_STOPPED), "{path:?}");
            let file = recorded(&recordings, &id).await;
            assert!(file.len() as u64 <= limits.max_bytes, "{path:?}");
            assert!(
                shown.starts_with(&file),
                "{path:?}: what was recorded is what was shown, in order"
            );
        }
    }
}
