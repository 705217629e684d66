//! End-to-end audio latency: a tone starts in a real desktop session (its
//! PCM written into the session's PulseAudio through `docker exec -i …
//! pacat`) and is detected at a client of `/audio/{id}`, side by side with a
//! client of the container's published audio port (raw TCP, the ceiling).
//! Both read the same encoder's stream, so the difference is the tunnel's.
//!
//! The onset is the first Opus frame of sound after silence: the image's
//! encoder (docs/AUDIO.md) codes digital silence in 3 bytes and a tone in
//! over a hundred, so a frame's size tells them apart without a decoder.
//! Both clocks are this process's: the tone's start is when its first bytes
//! were written to `pacat`, so the figure includes `docker exec`'s pipe.

use crate::Settings;
use crate::cluster::{Cluster, DESKTOP_IMAGE, DESKTOP_PORT};
use crate::docker_cli::require_image;
use crate::report::{BenchResult, Row};
use crate::stats::Summary;
use crate::viewer::{Route, Viewer};
use anyhow::{Context, bail};
use serde_json::json;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, timeout};

const TEMPLATE: &str = "desktop-audio-bench";
/// The image's audio port (images/lib/debian-rootfs.sh, AUDIO_PORT).
pub const AUDIO_PORT: u16 = 5911;
const RATE: usize = 48_000;
/// Opus frames above this many bytes carry sound (silence takes 3).
const SOUND_BYTES: usize = 20;
const TONE: Duration = Duration::from_millis(200);
/// Between tones: the encoder is back to silence well within it.
const GAP: Duration = Duration::from_millis(800);
const DETECT_LIMIT: Duration = Duration::from_secs(5);

pub async fn latency(settings: &Settings) -> anyhow::Result<BenchResult> {
    require_image(DESKTOP_IMAGE, "images/desktop/build.sh").await?;
    let cluster = Cluster::start(settings, "bench-audio", &[]).await?;
    cluster
        .admin
        .create_template(json!({
            "name": TEMPLATE,
            "image": DESKTOP_IMAGE,
            "ports": [
                {"name": "vnc", "port": DESKTOP_PORT, "protocol": "vnc"},
                {"name": "audio", "port": AUDIO_PORT, "protocol": "audio"},
            ],
            "platforms": ["docker"],
        }))
        .await?;
    let id = cluster.running_session(TEMPLATE).await?;
    let measured = measure(settings, &cluster, &id).await;
    cluster.shutdown().await?;
    measured
}

async fn measure(settings: &Settings, cluster: &Cluster, id: &str) -> anyhow::Result<BenchResult> {
    let mut ours = cluster.route(id);
    if let Route::Ours { channel, .. } = &mut ours {
        *channel = "audio";
    }
    let raw = Route::Raw {
        port: cluster.host_port(id, AUDIO_PORT).await?,
    };
    let (ours_onsets, raw_onsets) = (listen(&ours).await?, listen(&raw).await?);
    let mut player = Player::start(&format!("streamspace-{id}")).await?;
    let reps = if settings.quick { 3 } else { 30 };
    let mut starts = Vec::with_capacity(reps);
    for _ in 0..reps {
        sleep(GAP).await;
        starts.push(player.tone().await?);
    }
    sleep(GAP).await;
    player.stop().await;
    let ours_ms = delays(&starts, ours_onsets, "/audio").await?;
    let raw_ms = delays(&starts, raw_onsets, "raw TCP").await?;
    let (o, r) = (
        Summary::of(&ours_ms).context("no samples")?,
        Summary::of(&raw_ms).context("no samples")?,
    );
    eprintln!(
        "  tone → onset at the client: /audio median {:.1} ms (p99 {:.1}), raw TCP median {:.1} ms",
        o.median, o.p99, r.median
    );
    let mut result = BenchResult::new("audio-latency");
    result.row(
        Row::new(
            "tone in the session → onset via /audio, median",
            "ms",
            o.median,
        )
        .peer("raw TCP to the audio port", r.median)
        .target("≤ 100 ms", o.median <= 100.0, !settings.quick),
    );
    result.row(Row::new("… p99", "ms", o.p99).peer("raw TCP to the audio port", r.p99));
    result.row(
        Row::new(
            "tunnel's share (median difference)",
            "ms",
            o.median - r.median,
        )
        .target("≤ 5 ms", o.median - r.median <= 5.0, !settings.quick),
    );
    result.detail("reps", reps);
    result.detail("audio_ms", &ours_ms);
    result.detail("raw_ms", &raw_ms);
    result.note(
        "Onset = the first Opus frame of sound after silence. Excludes the browser's decode \
         (well under 1 ms) and its output buffer (tests/ui/audio.test.mjs prints the full path).",
    );
    Ok(result)
}

/// Reads a client's RTP stream in the background; sends the instant of
/// every onset of sound.
async fn listen(route: &Route) -> anyhow::Result<mpsc::UnboundedReceiver<Instant>> {
    let mut viewer = connect(route).await?;
    let (onsets, received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut sounding = false;
        while let Ok(size) = next_frame(&mut viewer).await {
            let loud = size > SOUND_BYTES;
            if loud && !sounding && onsets.send(Instant::now()).is_err() {
                break;
            }
            sounding = loud;
        }
        viewer.close().await;
    });
    Ok(received)
}

/// Connects once the sound is served: it starts after the screen, so a
/// session just `Running` may not serve it yet (503 through the tunnel).
async fn connect(route: &Route) -> anyhow::Result<Viewer> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match timeout(Duration::from_secs(10), route.open()).await {
            Ok(Ok(viewer)) => return Ok(viewer),
            Ok(Err(err)) if Instant::now() > deadline => {
                return Err(err.context(format!("{} did not connect", route.name())));
            }
            Err(_) => bail!("{} did not connect in 10 s", route.name()),
            Ok(Err(_)) => sleep(Duration::from_millis(250)).await,
        }
    }
}

/// The size of the next packet's Opus payload (RFC 4571 framing, 12-byte
/// RTP header: the image's payloader adds no CSRCs or extensions).
async fn next_frame(viewer: &mut Viewer) -> anyhow::Result<usize> {
    let len = viewer.read_exact(2).await?;
    let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
    if len < 12 {
        bail!("not an RTP packet: {len} bytes");
    }
    viewer.read_exact(len).await?;
    Ok(len - 12)
}

/// Pairs each tone's start with the first onset after it.
async fn delays(
    starts: &[Instant],
    mut onsets: mpsc::UnboundedReceiver<Instant>,
    what: &str,
) -> anyhow::Result<Vec<f64>> {
    let mut seen = Vec::new();
    while let Ok(onset) = onsets.try_recv() {
        seen.push(onset);
    }
    starts
        .iter()
        .map(|start| {
            let onset = seen
                .iter()
                .find(|o| *o >= start && o.duration_since(*start) < DETECT_LIMIT)
                .with_context(|| format!("{what}: a tone was never detected"))?;
            Ok(onset.duration_since(*start).as_secs_f64() * 1e3)
        })
        .collect()
}

/// `pacat` in the session, fed raw PCM from here.
struct Player {
    child: Child,
    tone: Vec<u8>,
}

impl Player {
    async fn start(container: &str) -> anyhow::Result<Self> {
        let child = Command::new("docker")
            .args(["exec", "-i", container, "pacat", "--raw", "--format=s16le"])
            .args(["--rate=48000", "--channels=2", "--latency-msec=10"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("cannot run docker exec")?;
        // pacat connects and sets up its stream before it reads.
        sleep(Duration::from_millis(1500)).await;
        Ok(Self {
            child,
            tone: sine(1000.0, TONE),
        })
    }

    /// Writes one tone; returns when its first bytes went out.
    async fn tone(&mut self) -> anyhow::Result<Instant> {
        let stdin = self.child.stdin.as_mut().context("pacat has no stdin")?;
        let start = Instant::now();
        stdin.write_all(&self.tone).await?;
        stdin.flush().await?;
        Ok(start)
    }

    async fn stop(mut self) {
        drop(self.child.stdin.take());
        let _ = timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}

/// Stereo 16-bit little-endian PCM of a sine at half scale.
fn sine(hz: f64, length: Duration) -> Vec<u8> {
    let frames = (RATE as f64 * length.as_secs_f64()) as usize;
    let mut pcm = Vec::with_capacity(frames * 4);
    for i in 0..frames {
        let t = i as f64 / RATE as f64;
        let sample = ((2.0 * std::f64::consts::PI * hz * t).sin() * 16_000.0) as i16;
        pcm.extend_from_slice(&sample.to_le_bytes());
        pcm.extend_from_slice(&sample.to_le_bytes());
    }
    pcm
}
