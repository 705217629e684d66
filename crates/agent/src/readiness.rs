//! A session is ready when every port answers as its protocol does: a VNC
//! server sends the RFB banner, a web app answers an HTTP request on its
//! path with a status below 500. Docker's port proxy accepts TCP before the
//! server inside listens, so an accepted connection alone proves nothing;
//! and a web app's own front (nginx before its backend) answers 502 until
//! the app is up.

use crate::platform::{Platform, PlatformError, SessionStream};
use std::time::Duration;
use streamspace_protocol::{Phase, PortProtocol, PortSpec, SessionId};
use tokio::io::AsyncReadExt;
use tokio::time::{Instant, sleep, timeout};

/// Time between probes: short, because start-up latency is what users feel.
const PROBE_INTERVAL: Duration = Duration::from_millis(50);
/// How often, among probes, the platform is asked whether the session died.
const STATUS_EVERY: u32 = 10;
/// How long one probe waits for the banner or the HTTP status line.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest a session may spend being prepared by its platform (pulling
/// an image, scheduling a pod) before `limit` starts counting.
const PREPARE_LIMIT: Duration = Duration::from_secs(15 * 60);

/// Waits until every port answers, or explains why one never will (the
/// session died, or `limit` passed since its container or pod started
/// running).
pub async fn wait_for_ports(
    platform: &dyn Platform,
    session_id: &SessionId,
    ports: &[PortSpec],
    limit: Duration,
) -> Result<(), String> {
    let started = Instant::now();
    let mut deadline = started + limit;
    let mut probes = 0u32;
    for port in ports.iter().filter(|p| p.protocol.decides_readiness()) {
        let clock = Clock {
            started,
            limit,
            deadline: &mut deadline,
            probes: &mut probes,
        };
        wait_for_port(platform, session_id, port, clock).await?;
    }
    Ok(())
}

/// The one deadline all of a session's ports share.
struct Clock<'a> {
    started: Instant,
    limit: Duration,
    deadline: &'a mut Instant,
    probes: &'a mut u32,
}

async fn wait_for_port(
    platform: &dyn Platform,
    session_id: &SessionId,
    port: &PortSpec,
    clock: Clock<'_>,
) -> Result<(), String> {
    let Clock {
        started,
        limit,
        deadline,
        probes,
    } = clock;
    loop {
        let last = match probe(platform, session_id, port).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        *probes += 1;
        if probes.is_multiple_of(STATUS_EVERY) && !check_alive(platform, session_id).await? {
            // Still being prepared (an image pull): the limit counts from
            // when it runs.
            *deadline = (Instant::now() + limit).min(started + PREPARE_LIMIT);
        }
        if Instant::now() >= *deadline {
            let what = match port.protocol {
                PortProtocol::Vnc => "VNC server",
                PortProtocol::Http | PortProtocol::Https => "web app",
                PortProtocol::Audio => "sound server",
                PortProtocol::Microphone => "microphone input",
            };
            return Err(format!(
                "the session's {what} did not answer on port {} within {limit:?} ({last})",
                port.port
            ));
        }
        sleep(PROBE_INTERVAL).await;
    }
}

async fn probe(
    platform: &dyn Platform,
    session_id: &SessionId,
    port: &PortSpec,
) -> Result<(), String> {
    let tls = port.protocol == PortProtocol::Https;
    let stream = crate::web::open(platform, session_id, port.port, tls)
        .await
        .map_err(|e| e.to_string())?;
    let probe = async {
        match port.protocol {
            PortProtocol::Vnc => banner(stream, port.port).await,
            PortProtocol::Http | PortProtocol::Https => {
                match crate::web::probe(stream, port.ready_path()).await? {
                    status if status < 500 => Ok(()),
                    status => Err(format!("{} answered {status}", port.ready_path())),
                }
            }
            // Never asked (see `wait_for_ports`); an open port would do.
            PortProtocol::Audio | PortProtocol::Microphone => Ok(()),
        }
    };
    timeout(ANSWER_TIMEOUT, probe)
        .await
        .unwrap_or_else(|_| Err("no answer yet".into()))
}

async fn banner(mut stream: Box<dyn SessionStream>, port: u16) -> Result<(), String> {
    let mut banner = [0u8; 12];
    match stream.read_exact(&mut banner).await {
        Ok(_) if banner.starts_with(b"RFB ") => Ok(()),
        Ok(_) => Err(format!(
            "port {port} is not a VNC server (it said {:?})",
            String::from_utf8_lossy(&banner)
        )),
        Err(e) => Err(format!("no banner yet: {e}")),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakePlatform;
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    fn web() -> Vec<PortSpec> {
        vec![PortSpec::new("web", 6080, PortProtocol::Http)]
    }

    #[tokio::test]
    async fn a_web_app_is_ready_once_it_answers_below_500() {
        let platform = Arc::new(FakePlatform::default());
        platform.vnc_up.store(true, Ordering::SeqCst);
        platform.web_status.store(502, Ordering::SeqCst);
        let id = SessionId::from("s1");
        let waiting = {
            let platform = platform.clone();
            tokio::spawn(async move {
                wait_for_ports(platform.as_ref(), &id, &web(), Duration::from_secs(30)).await
            })
        };
        sleep(PROBE_INTERVAL * 4).await;
        assert!(!waiting.is_finished(), "502 is not ready");
        platform.web_status.store(401, Ordering::SeqCst);
        let ready = waiting.await.expect("joins");
        assert_eq!(ready, Ok(()), "an app asking for a login is up");
    }

    #[tokio::test]
    async fn a_web_app_that_keeps_failing_says_what_it_answered() {
        let platform = FakePlatform::default();
        platform.vnc_up.store(true, Ordering::SeqCst);
        platform.web_status.store(503, Ordering::SeqCst);
        let id = SessionId::from("s1");
        let error = wait_for_ports(&platform, &id, &web(), Duration::from_millis(200))
            .await
            .expect_err("never ready");
        assert!(
            error.contains("web app did not answer on port 6080"),
            "{error}"
        );
        assert!(error.contains("/ answered 503"), "{error}");
    }

    #[tokio::test]
    async fn a_web_port_that_speaks_rfb_is_not_a_web_app() {
        let platform = FakePlatform::default();
        platform.vnc_up.store(true, Ordering::SeqCst);
        let id = SessionId::from("s1");
        let error = wait_for_ports(&platform, &id, &web(), Duration::from_millis(200))
            .await
            .expect_err("never ready");
        assert!(error.contains("not an HTTP server"), "{error}");
    }
}
