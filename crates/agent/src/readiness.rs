//! A session is ready when its VNC server sends the RFB banner. Docker's
//! port proxy accepts TCP before the server inside listens, so an accepted
//! connection alone proves nothing.

use crate::platform::{Platform, PlatformError};
use std::time::Duration;
use streamspace_protocol::{Phase, SessionId};
use tokio::io::AsyncReadExt;
use tokio::time::{Instant, sleep, timeout};

/// Time between probes: short, because start-up latency is what users feel.
const PROBE_INTERVAL: Duration = Duration::from_millis(50);
/// How often, among probes, the platform is asked whether the session died.
const STATUS_EVERY: u32 = 10;
const BANNER_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest a session may spend being prepared by its platform (pulling
/// an image, scheduling a pod) before `limit` starts counting.
const PREPARE_LIMIT: Duration = Duration::from_secs(15 * 60);

/// Waits until the VNC server on `port` answers, or explains why it never
/// will (the session died, or `limit` passed since its container or pod
/// started running).
pub async fn wait_for_vnc(
    platform: &dyn Platform,
    session_id: &SessionId,
    port: u16,
    limit: Duration,
) -> Result<(), String> {
    let started = Instant::now();
    let mut deadline = started + limit;
    let mut probes = 0u32;
    loop {
        let last = match probe(platform, session_id, port).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        probes += 1;
        if probes.is_multiple_of(STATUS_EVERY) && !check_alive(platform, session_id).await? {
            // Still being prepared (an image pull): the VNC limit counts
            // from when it runs.
            deadline = (Instant::now() + limit).min(started + PREPARE_LIMIT);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the session's VNC server did not answer on port {port} within {limit:?} ({last})"
            ));
        }
        sleep(PROBE_INTERVAL).await;
    }
}

async fn probe(platform: &dyn Platform, session_id: &SessionId, port: u16) -> Result<(), String> {
    let mut stream = platform
        .connect(session_id, port)
        .await
        .map_err(|e| e.to_string())?;
    let mut banner = [0u8; 12];
    match timeout(BANNER_TIMEOUT, stream.read_exact(&mut banner)).await {
        Ok(Ok(_)) if banner.starts_with(b"RFB ") => Ok(()),
        Ok(Ok(_)) => Err(format!(
            "port {port} is not a VNC server (it said {:?})",
            String::from_utf8_lossy(&banner)
        )),
        Ok(Err(e)) => Err(format!("no banner yet: {e}")),
        Err(_) => Err("no banner yet".into()),
    }
}

/// Fails if the session died; otherwise whether its compute is running yet.
async fn check_alive(platform: &dyn Platform, session_id: &SessionId) -> Result<bool, String> {
    match platform.status(session_id).await {
        Ok(report) if matches!(report.phase, Phase::Failed | Phase::Terminated) => Err(report
            .message
            .unwrap_or_else(|| format!("the session stopped ({})", report.phase))),
        Ok(report) => Ok(!matches!(report.phase, Phase::Pending | Phase::Starting)),
        Err(PlatformError::NotFound(_)) => Err("the session's container disappeared".into()),
        Err(_) => Ok(true),
    }
}
