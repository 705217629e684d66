//! What recording costs (docs/RECORDING.md): download throughput through
//! `/vnc` with "record every session" on against off, on the same source
//! session, interleaved (target: on ≥ 0.8× off); and the disk bytes per
//! minute that recording a typical desktop takes: a real desktop session, a
//! viewer asking for updates the way noVNC does (Tight, JPEG quality 6),
//! and a line typed into its xterm every two seconds.

use crate::Settings;
use crate::cluster::{Cluster, DESKTOP_IMAGE, DESKTOP_PORT, ECHO_IMAGE};
use crate::docker_cli::require_image;
use crate::report::{BenchResult, Row};
use crate::stats::Summary;
use crate::viewer::{Route, Viewer};
use anyhow::{Context, ensure};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::time::Instant;

/// Caps high enough that a throughput window never reaches them.
const CP_ARGS: &[&str] = &[
    "--recording-max-bytes",
    "64Gi",
    "--recording-max-total",
    "64Gi",
];

pub async fn recording(settings: &Settings) -> anyhow::Result<BenchResult> {
    require_image(ECHO_IMAGE, "images/echo/build.sh").await?;
    require_image(DESKTOP_IMAGE, "images/desktop/build.sh").await?;
    let cluster = Cluster::start_full(settings, "bench-recording", &[], CP_ARGS, None).await?;
    let mut result = BenchResult::new("recording");
    let outcome = measure(settings, &cluster, &mut result).await;
    cluster.shutdown().await?;
    outcome.map(|()| result)
}

async fn measure(
    settings: &Settings,
    cluster: &Cluster,
    result: &mut BenchResult,
) -> anyhow::Result<()> {
    cluster.echo_template("source", "source").await?;
    let source = cluster.running_session("source").await?;
    let [off, on] = throughput(settings, cluster, &cluster.route(&source)).await?;
    result.row(
        Row::new("download with recording on, median", "MB/s", on)
            .peer("recording off", off)
            .target("≥ 0.8× off", on >= 0.8 * off, !settings.quick),
    );
    result.row(Row::new(
        "ratio on / off",
        "×",
        if off > 0.0 { on / off } else { 0.0 },
    ));

    cluster
        .template("desktop", DESKTOP_IMAGE, DESKTOP_PORT, json!({}))
        .await?;
    let desktop = cluster.running_session("desktop").await?;
    let minutes = if settings.quick { 5.0 / 60.0 } else { 1.0 };
    let per_minute = desktop_bytes(cluster, &cluster.route(&desktop), minutes).await? / minutes;
    result.row(Row::new(
        "disk per minute of a typed-in desktop",
        "MB",
        per_minute / 1e6,
    ));
    result.detail("desktop_minutes", minutes);
    Ok(())
}

async fn record_all(cluster: &Cluster, on: bool) -> anyhow::Result<()> {
    let mut settings = cluster
        .admin
        .expect(Method::GET, "/api/v1/settings", None, StatusCode::OK)
        .await?;
    settings["record_all_sessions"] = json!(on);
    cluster
        .admin
        .expect(
            Method::PUT,
            "/api/v1/settings",
            Some(settings),
            StatusCode::OK,
        )
        .await?;
    Ok(())
}

async fn recordings(cluster: &Cluster) -> anyhow::Result<Vec<Value>> {
    let listed = cluster
        .admin
        .expect(Method::GET, "/api/v1/recordings", None, StatusCode::OK)
        .await?;
    Ok(listed.as_array().cloned().unwrap_or_default())
}

/// Deletes every finished recording (waiting for the writers to finish),
/// so the disk holds one window's at most; the bytes they took.
async fn delete_recordings(cluster: &Cluster) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut listed = recordings(cluster).await?;
    while listed.iter().any(|r| r["recording"] == true) {
        ensure!(Instant::now() < deadline, "a recording never finished");
        tokio::time::sleep(Duration::from_millis(200)).await;
        listed = recordings(cluster).await?;
    }
    let mut bytes = 0;
    for r in &listed {
        bytes += r["bytes"].as_u64().unwrap_or(0);
        let path = format!("/api/v1/recordings/{}", r["id"].as_str().unwrap_or(""));
        cluster
            .admin
            .expect(Method::DELETE, &path, None, StatusCode::NO_CONTENT)
            .await?;
    }
    Ok(bytes)
}

/// Median MB/s with recording off and on, interleaved.
async fn throughput(
    settings: &Settings,
    cluster: &Cluster,
    route: &Route,
) -> anyhow::Result<[f64; 2]> {
    let (warmup, window, reps) = if settings.quick {
        (Duration::from_millis(100), Duration::from_millis(300), 1)
    } else {
        (Duration::from_secs(1), Duration::from_secs(3), 5)
    };
    let mut rates: [Vec<f64>; 2] = Default::default();
    for rep in 0..reps {
        for (i, on) in [false, true].into_iter().enumerate() {
            record_all(cluster, on).await?;
            let mut viewer = route.connect().await?;
            viewer.drain_until(Instant::now() + warmup).await?;
            let start = Instant::now();
            let bytes = viewer.drain_until(start + window).await?;
            let mb_s = bytes as f64 / start.elapsed().as_secs_f64() / 1e6;
            viewer.close().await;
            let recorded = delete_recordings(cluster).await?;
            eprintln!(
                "  recording rep {}/{reps} {:<4} {mb_s:>7.1} MB/s (recorded {:.0} MB)",
                rep + 1,
                if on { "on" } else { "off" },
                recorded as f64 / 1e6
            );
            ensure!(
                on == (recorded > 0),
                "recording {on}, yet {recorded} bytes recorded"
            );
            rates[i].push(mb_s);
        }
    }
    let median = |v: &[f64]| Summary::of(v).map_or(0.0, |s| s.median);
    record_all(cluster, false).await?;
    Ok([median(&rates[0]), median(&rates[1])])
}

/// The recorded bytes of `minutes` of a viewer on a desktop being typed in.
async fn desktop_bytes(cluster: &Cluster, route: &Route, minutes: f64) -> anyhow::Result<f64> {
    record_all(cluster, true).await?;
    let mut viewer = route.connect().await?;
    let (width, height) = handshake(&mut viewer).await?;
    // noVNC's encodings at its default quality: Tight, ZRLE, Hextile,
    // CopyRect, Raw, JPEG quality 6, compression 2.
    let encodings: [i32; 7] = [7, 16, 5, 1, 0, -26, -254];
    let mut message = vec![2u8, 0];
    message.extend_from_slice(&(encodings.len() as u16).to_be_bytes());
    for e in encodings {
        message.extend_from_slice(&e.to_be_bytes());
    }
    viewer.write(&message).await?;
    viewer.write(&update_request(false, width, height)).await?;
    let end = Instant::now() + Duration::from_secs_f64(minutes * 60.0);
    let mut line = 0;
    while Instant::now() < end {
        line += 1;
        type_line(
            &mut viewer,
            &format!("echo streamspace recording line {line}"),
        )
        .await?;
        for _ in 0..20 {
            viewer.write(&update_request(true, width, height)).await?;
            viewer
                .drain_until(Instant::now() + Duration::from_millis(100))
                .await?;
        }
    }
    viewer.close().await;
    record_all(cluster, false).await?;
    let bytes = delete_recordings(cluster).await?;
    ensure!(bytes > 0, "the desktop's viewer was not recorded");
    Ok(bytes as f64)
}

/// RFB 3.8, security None, shared; the framebuffer's size. The banner was
/// read by `connect`.
async fn handshake(viewer: &mut Viewer) -> anyhow::Result<(u16, u16)> {
    viewer.write(b"RFB 003.008\n").await?;
    let count = viewer.read_exact(1).await?[0] as usize;
    let types = viewer.read_exact(count).await?;
    ensure!(
        types.contains(&1),
        "the desktop offers no security None: {types:?}"
    );
    viewer.write(&[1]).await?;
    let result = viewer.read_exact(4).await?;
    ensure!(result.as_ref() == [0, 0, 0, 0], "security failed");
    viewer.write(&[1]).await?;
    let init = viewer.read_exact(24).await?;
    let width = u16::from_be_bytes([init[0], init[1]]);
    let height = u16::from_be_bytes([init[2], init[3]]);
    let name_len = u32::from_be_bytes(init[20..24].try_into().context("name length")?);
    viewer.read_exact(name_len as usize).await?;
    Ok((width, height))
}

fn update_request(incremental: bool, width: u16, height: u16) -> Vec<u8> {
    let mut request = vec![3u8, u8::from(incremental), 0, 0, 0, 0];
    request.extend_from_slice(&width.to_be_bytes());
    request.extend_from_slice(&height.to_be_bytes());
    request
}

/// Key presses for each character of `text`, then Return.
async fn type_line(viewer: &mut Viewer, text: &str) -> anyhow::Result<()> {
    let keysyms = text.bytes().map(u32::from).chain([0xff0d]);
    for keysym in keysyms {
        for down in [1u8, 0] {
            let mut event = vec![4u8, down, 0, 0];
            event.extend_from_slice(&keysym.to_be_bytes());
            viewer.write(&event).await?;
        }
    }
    Ok(())
}
