//! The demo images of `images/` (`streamspace/webvnc:local`,
//! `streamspace/full-desktop:local`, and the desktop's sound) run as StreamSpace runs sessions: no
//! capabilities, `no-new-privileges`, a pids limit, uid 1000. Talks to them
//! directly through ports Docker publishes on 127.0.0.1 (the control plane's
//! proxy has its own tests); and `up` offers a template for each built image.

use anyhow::{Context, bail, ensure};
use futures::StreamExt;
use reqwest::header::{CONTENT_LENGTH, COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Method, StatusCode};
use std::time::Duration;
use streamspace_testkit::docker::{Cleanup, docker};
use streamspace_testkit::{Api, ControlPlane, Mode, eventually};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const WEBVNC: &str = "streamspace/webvnc:local";
const DESKTOP: &str = "streamspace/desktop:local";
const FULL_DESKTOP: &str = "streamspace/full-desktop:local";
const START_LIMIT: Duration = Duration::from_secs(60);
const BANNER: &[u8] = b"RFB 003.008\n";

/// A container started with StreamSpace's confinement, removed on drop.
struct Confined {
    name: String,
}

impl Confined {
    fn run(image: &str, extra: &[&str]) -> anyhow::Result<Self> {
        let id = uuid_like();
        let name = format!("streamspace-test-image-{id}");
        let mut args = vec![
            "run",
            "-d",
            "--name",
            &name,
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--pids-limit",
            "2048",
            "--user",
            "1000:1000",
            "--memory",
            "2g",
            "-p",
            "127.0.0.1::5901",
        ];
        args.extend_from_slice(extra);
        args.push(image);
        docker(&args)?;
        Ok(Self { name })
    }

    /// The host port Docker published for `port`.
    fn port(&self, port: u16) -> anyhow::Result<u16> {
        let out = docker(&["port", &self.name, &format!("{port}/tcp")])?;
        let line = out.lines().next().context("no published port")?;
        let (_, host_port) = line.rsplit_once(':').context("no port in `docker port`")?;
        Ok(host_port.trim().parse()?)
    }

    fn logs(&self) -> String {
        let out = std::process::Command::new("docker")
            .args(["logs", "--tail", "40", &self.name])
            .output();
        out.map(|o| {
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        })
        .unwrap_or_default()
    }
}

impl Drop for Confined {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", "-v", &self.name]);
    }
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{:x}-{}", nanos, std::process::id())
}

fn image_present(image: &str) -> bool {
    docker(&["image", "inspect", image]).is_ok()
}

/// Waits until the VNC server on `port` sends its 12-byte banner (Docker's
/// port proxy accepts connections before the server listens).
async fn wait_for_banner(port: u16) -> anyhow::Result<()> {
    eventually(START_LIMIT, "the RFB banner on 5901", || async move {
        let mut socket = TcpStream::connect(("127.0.0.1", port)).await?;
        let mut banner = [0u8; 12];
        match tokio::time::timeout(Duration::from_secs(2), socket.read_exact(&mut banner)).await {
            Ok(Ok(_)) if banner == BANNER => Ok(Some(())),
            Ok(Ok(_)) => bail!("not an RFB 3.8 banner: {banner:?}"),
            _ => Ok(None),
        }
    })
    .await
}

/// Bytes that differ all along, so a swapped or lost chunk shows.
fn pattern(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_u32;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}

#[tokio::test]
async fn webvnc_serves_novnc_its_websocket_and_the_test_endpoints() -> anyhow::Result<()> {
    streamspace_testkit::init();
    if !image_present(WEBVNC) {
        panic!("{WEBVNC} is not on this Docker host: build it with images/webvnc/build.sh");
    }
    let container = Confined::run(WEBVNC, &["-p", "127.0.0.1::6080"])?;
    let checked = check_webvnc(&container).await;
    checked.with_context(|| format!("container log:\n{}", container.logs()))
}

async fn check_webvnc(container: &Confined) -> anyhow::Result<()> {
    wait_for_banner(container.port(5901)?).await?;
    let base = format!("http://127.0.0.1:{}", container.port(6080)?);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let index = eventually(START_LIMIT, "GET / on 6080", || {
        let http = http.clone();
        let url = format!("{base}/");
        async move {
            match http.get(url).send().await {
                Ok(answer) if answer.status() == StatusCode::OK => Ok(Some(answer.text().await?)),
                Ok(answer) => bail!("GET / answered {}", answer.status()),
                Err(_) => Ok(None),
            }
        }
    })
    .await?;
    // The WebSocket path comes from the page's own location, so it is right
    // under any prefix a proxy strips.
    ensure!(index.contains("vnc.html?autoconnect=1&resize=remote&reconnect=1&path="));
    ensure!(index.contains("location.pathname"));
    let vnc_html = http.get(format!("{base}/vnc.html")).send().await?;
    ensure!(vnc_html.status() == StatusCode::OK);
    let vnc_html = vnc_html.text().await?;
    ensure!(vnc_html.contains("app/ui.js"), "not noVNC's page");
    ensure!(
        !vnc_html.contains("src=\"/") && !vnc_html.contains("href=\"/"),
        "noVNC's page has an absolute asset path, which breaks under a path prefix"
    );
    check_websocket(&base).await?;
    check_files(&http, &base).await?;
    check_redirect_and_cookie(&http, &base).await
}

async fn check_websocket(base: &str) -> anyhow::Result<()> {
    let url = format!("{}/websockify", base.replacen("http", "ws", 1));
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .context("WebSocket upgrade on /websockify")?;
    let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .context("no frame on the WebSocket")?;
    match frame {
        Some(Ok(Message::Binary(data))) => {
            ensure!(data.starts_with(BANNER), "not the RFB banner: {data:?}")
        }
        other => bail!("expected the RFB banner in a binary frame, got {other:?}"),
    }
    Ok(())
}

async fn check_files(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let body = pattern(5_000_000);
    let put = http
        .put(format!("{base}/files/five-mb.bin"))
        .body(body.clone())
        .send()
        .await?;
    ensure!(put.status() == StatusCode::CREATED, "PUT: {}", put.status());
    let stored: serde_json::Value = put.json().await?;
    ensure!(stored["bytes"] == 5_000_000, "PUT stored {stored}");
    let got = http.get(format!("{base}/files/five-mb.bin")).send().await?;
    ensure!(got.status() == StatusCode::OK);
    ensure!(got.headers()[CONTENT_LENGTH] == "5000000");
    ensure!(got.bytes().await? == body, "the file came back different");
    let missing = http.get(format!("{base}/files/absent")).send().await?;
    ensure!(missing.status() == StatusCode::NOT_FOUND);
    let escape = http
        .put(format!("{base}/files/..%2Fx"))
        .body("x")
        .send()
        .await?;
    ensure!(
        escape.status() == StatusCode::NOT_FOUND,
        "a bad NAME was stored"
    );
    Ok(())
}

async fn check_redirect_and_cookie(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let redirect = http.get(format!("{base}/redirect")).send().await?;
    ensure!(redirect.status() == StatusCode::FOUND);
    ensure!(redirect.headers()[LOCATION] == "./index.html");
    let cookie = http
        .get(format!("{base}/cookie"))
        .header(COOKIE, "streamspace_session=secret; other=1")
        .send()
        .await?;
    ensure!(cookie.status() == StatusCode::OK);
    ensure!(cookie.headers()[SET_COOKIE] == "app=1; Path=/");
    ensure!(cookie.text().await? == "streamspace_session=secret; other=1");
    let no_cookie = http.get(format!("{base}/cookie")).send().await?;
    ensure!(no_cookie.text().await?.is_empty());
    Ok(())
}

/// Set to fail instead of skipping when the image is absent.
const REQUIRE_FULL_DESKTOP: &str = "STREAMSPACE_TEST_FULL_DESKTOP";

/// The desktop image's sound (docs/AUDIO.md), confined: RFC 4571-framed RTP
/// packets of 10 ms Opus frames on 5911, tiny while silent, large once a
/// tone plays through the session's PulseAudio.
#[tokio::test]
async fn desktop_serves_its_sound_as_rtp_opus_on_5911() -> anyhow::Result<()> {
    streamspace_testkit::init();
    if !image_present(DESKTOP) {
        panic!("{DESKTOP} is not on this Docker host: build it with images/desktop/build.sh");
    }
    let container = Confined::run(DESKTOP, &["-p", "127.0.0.1::5911"])?;
    let checked = check_sound(&container).await;
    checked.with_context(|| format!("container log:\n{}", container.logs()))
}

async fn check_sound(container: &Confined) -> anyhow::Result<()> {
    wait_for_banner(container.port(5901)?).await?;
    let port = container.port(5911)?;
    // The encoder starts after the X server: the port proxy accepts first.
    let mut sound = eventually(START_LIMIT, "RTP packets on 5911", || async move {
        let mut socket = TcpStream::connect(("127.0.0.1", port)).await?;
        let first = tokio::time::timeout(Duration::from_secs(2), rtp_packet(&mut socket)).await;
        Ok(matches!(first, Ok(Ok(_))).then_some(socket))
    })
    .await?;
    let (mut seq, mut timestamp) = (None::<u16>, None::<u32>);
    for _ in 0..20 {
        let (s, t, payload) = rtp_packet(&mut sound).await?;
        ensure!(payload <= 8, "silence takes a few bytes, not {payload}");
        if let (Some(prev_s), Some(prev_t)) = (seq, timestamp) {
            ensure!(s == prev_s.wrapping_add(1), "sequence {prev_s} then {s}");
            // 480 ticks (10 ms) apart once the capture clock settles.
            let step = t.wrapping_sub(prev_t);
            ensure!((1..=4800).contains(&step), "timestamps {prev_t} then {t}");
        }
        (seq, timestamp) = (Some(s), Some(t));
    }
    let mut tone = std::process::Command::new("docker")
        .args([
            "exec",
            &container.name,
            "gst-launch-1.0",
            "-q",
            "audiotestsrc",
        ])
        .args(["freq=1000", "num-buffers=100", "!", "pulsesink"])
        .spawn()?;
    let heard = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let (_, _, payload) = rtp_packet(&mut sound).await?;
            if payload > 20 {
                return anyhow::Ok(payload);
            }
        }
    })
    .await;
    let _ = tone.wait();
    let payload = heard.context("no sound within 10 s of the tone")??;
    ensure!(
        payload < 1000,
        "an Opus frame of 10 ms, not {payload} bytes"
    );
    Ok(())
}

/// The next packet: its RTP sequence number, timestamp and payload size.
async fn rtp_packet(socket: &mut TcpStream) -> anyhow::Result<(u16, u32, usize)> {
    let len = usize::from(socket.read_u16().await?);
    ensure!(len >= 12, "an RTP packet is at least 12 bytes, not {len}");
    let mut packet = vec![0u8; len];
    socket.read_exact(&mut packet).await?;
    ensure!(packet[0] >> 6 == 2, "RTP version 2");
    ensure!(packet[1] & 0x7f == 96, "payload type 96");
    let seq = u16::from_be_bytes([packet[2], packet[3]]);
    let timestamp = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
    Ok((seq, timestamp, len - 12))
}

#[tokio::test]
async fn full_desktop_runs_firefox_with_a_fresh_home_volume() -> anyhow::Result<()> {
    if !image_present(FULL_DESKTOP) {
        let why = format!(
            "{FULL_DESKTOP} is not on this Docker host (build it with images/full-desktop/build.sh \
             or `streamspace build-image full-desktop`, about a minute)"
        );
        if std::env::var_os(REQUIRE_FULL_DESKTOP).is_some() {
            panic!("{why}");
        }
        eprintln!("SKIPPED full_desktop_runs_firefox_with_a_fresh_home_volume: {why}");
        return Ok(());
    }
    let volume = format!("streamspace-test-home-{}", uuid_like());
    docker(&["volume", "create", &volume])?;
    let mount = format!("{volume}:/home/user");
    let container = Confined::run(FULL_DESKTOP, &["--shm-size", "1g", "-v", &mount]);
    let checked = match &container {
        Ok(container) => check_full_desktop(container)
            .await
            .with_context(|| format!("container log:\n{}", container.logs())),
        Err(err) => Err(anyhow::anyhow!("{err:#}")),
    };
    drop(container);
    let _ = docker(&["volume", "rm", "-f", &volume]);
    checked
}

async fn check_full_desktop(container: &Confined) -> anyhow::Result<()> {
    wait_for_banner(container.port(5901)?).await?;
    let name = container.name.clone();
    eventually(START_LIMIT, "Firefox and IceWM running", || {
        let name = name.clone();
        async move {
            let top = docker(&["top", &name, "-o", "pid,user,args"])?;
            let running = |what| top.lines().any(|l| l.contains(what));
            Ok((running("firefox-esr") && running("icewm")).then_some(()))
        }
    })
    .await?;
    // Firefox made its profile (under ~/.config/mozilla since Firefox 147)
    // in the volume: the fresh home is writable by the session's user.
    eventually(START_LIMIT, "a Firefox profile in the home volume", || {
        let name = name.clone();
        async move {
            let args = [
                "exec",
                &name,
                "find",
                "/home/user",
                "-maxdepth",
                "4",
                "-name",
                "*.default*",
            ];
            Ok(docker(&args)?.contains("/home/user/").then_some(()))
        }
    })
    .await
}

/// `up` seeds a template for each demo image on the Docker host: the
/// desktop (which it builds), the web desktop (`scripts/test.sh` builds its
/// image; a session of it gets Running) and the full desktop only where its
/// image was built (then with a 1 GiB /dev/shm in its session).
#[tokio::test]
async fn up_offers_a_template_for_each_built_demo_image() -> anyhow::Result<()> {
    streamspace_testkit::init();
    if !image_present(WEBVNC) {
        panic!("{WEBVNC} is not on this Docker host: build it with images/webvnc/build.sh");
    }
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_streamspace"));
    let cp = ControlPlane::start(bin, Mode::Up, None).await?;
    let admin = Api::admin(&cp.url).await?;
    let agent_id = admin
        .wait_for_agent("local", Duration::from_secs(30))
        .await?;
    let _cleanup = Cleanup(vec![agent_id]);
    let listed = admin
        .expect(Method::GET, "/api/v1/templates", None, StatusCode::OK)
        .await?;
    let find = |name: &str| {
        listed
            .as_array()
            .and_then(|all| all.iter().find(|t| t["name"] == name))
            .cloned()
    };
    ensure!(find("desktop").is_some(), "no desktop template: {listed}");
    let web = find("web-desktop").with_context(|| format!("no web-desktop: {listed}"))?;
    ensure!(web["image"] == WEBVNC);
    ensure!(web["ports"][0]["protocol"] == "http" && web["ports"][0]["port"] == 6080);
    ensure!(web["ports"][1]["protocol"] == "vnc" && web["ports"][1]["port"] == 5901);
    // The agent finds it ready: noVNC answers on 6080, the banner on 5901.
    let session = admin
        .create_session(serde_json::json!({"template": "web-desktop"}))
        .await?;
    let id = session["id"].as_str().unwrap_or_default().to_owned();
    admin.wait_for_phase(&id, "Running", START_LIMIT).await?;
    let full = find("full-desktop");
    if let Some(full) = &full {
        ensure!(
            full["shm_size"] == "1Gi",
            "Firefox needs a large /dev/shm: {full}"
        );
        // The agent gives the session that /dev/shm, and Firefox runs.
        let session = admin
            .create_session(serde_json::json!({"template": "full-desktop"}))
            .await?;
        let id = session["id"].as_str().unwrap_or_default().to_owned();
        admin.wait_for_phase(&id, "Running", START_LIMIT).await?;
        let container = format!("streamspace-{id}");
        let shm = docker(&["exec", &container, "df", "-k", "/dev/shm"])?;
        ensure!(shm.contains("1048576"), "/dev/shm is not 1 GiB:\n{shm}");
    }
    ensure!(
        full.is_some() == image_present(FULL_DESKTOP),
        "full-desktop template {full:?} while its image present = {}",
        image_present(FULL_DESKTOP)
    );
    Ok(())
}
