//! Image pulls as the agent reports them: a platform counts bytes
//! ([`PullProgress`]), this turns them into what people read ("pulling
//! registry.example.com/app:1: 42% (120 MB of 286 MB)") and lets through at
//! most one report a second per pull, and only when the percentage moved,
//! so an image of a thousand layers or a registry that trickles bytes
//! cannot flood the control plane (which also rate-limits every agent).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Least time between two progress reports of one pull, by default.
pub const REPORT_EVERY: Duration = Duration::from_secs(1);
/// The most [`set_report_every`] takes.
pub const MAX_REPORT_EVERY: Duration = Duration::from_secs(60);
static REPORT_EVERY_MS: AtomicU64 = AtomicU64::new(REPORT_EVERY.as_millis() as u64);

/// Sets the least time between two progress reports of one pull for this
/// process (at most [`MAX_REPORT_EVERY`]): tests pull small images in well
/// under a second and want to see several reports.
pub fn set_report_every(every: Duration) {
    let ms = every.min(MAX_REPORT_EVERY).as_millis() as u64;
    REPORT_EVERY_MS.store(ms, Ordering::Relaxed);
}

/// How far a pull is, in bytes. Both downloading and unpacking a layer
/// take time, so each counts half: `done` runs to twice `total`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PullProgress {
    /// Bytes of the image's layers known so far (compressed, as sent).
    pub total: u64,
    /// Bytes downloaded so far.
    pub downloaded: u64,
    /// Bytes downloaded plus bytes unpacked.
    pub done: u64,
}

impl PullProgress {
    /// 0 to 100; 0 while no layer's size is known.
    pub fn percent(&self) -> u8 {
        if self.total == 0 {
            return 0;
        }
        let percent = self.done.saturating_mul(100) / self.total.saturating_mul(2);
        percent.min(100) as u8
    }

    /// "pulling IMAGE: 42% (120 MB of 286 MB)", or "pulling IMAGE" before
    /// any size is known.
    pub fn message(&self, image: &str) -> String {
        if self.total == 0 {
            return format!("pulling {image}");
        }
        format!(
            "pulling {image}: {}% ({} of {})",
            self.percent(),
            megabytes(self.downloaded.min(self.total)),
            megabytes(self.total)
        )
    }
}

/// What a platform's pull did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pulled {
    /// The image was there already.
    Present,
    /// The image was pulled.
    Pulled,
    /// The platform pulls by itself when a session needs the image (the
    /// kubelet on Kubernetes); nothing was done.
    ByPlatform,
}

/// Docker Hub, as images without a registry name it.
pub const DOCKER_HUB: &str = "docker.io";

/// Why a pull failed, as far as the platform's text tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullFailure {
    Auth,
    NotFound,
    Network,
    Other,
}

/// Reads the engine's text (which carries the registry's) for why a pull
/// failed. Docker Hub says "repository does not exist or may require
/// 'docker login'" for both a missing and a private image: not found.
pub fn classify(detail: &str) -> PullFailure {
    let text = detail.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
    if has(&["repository does not exist"]) {
        PullFailure::NotFound
    } else if has(&[
        "unauthorized",
        "authentication required",
        "no basic auth credentials",
        "incorrect username or password",
        "denied",
    ]) {
        PullFailure::Auth
    } else if has(&[
        "manifest unknown",
        "not found",
        "name unknown",
        "no such image",
    ]) {
        PullFailure::NotFound
    } else if has(&[
        "dial tcp",
        "no such host",
        "connection refused",
        "connection reset",
        "i/o timeout",
        "timeout",
        "network is unreachable",
        "tls",
        "certificate",
        "http response to https client",
        "eof",
    ]) {
        PullFailure::Network
    } else {
        PullFailure::Other
    }
}

/// A registry as a Docker `config.json` key or an image names it:
/// `https://index.docker.io/v1/` (what `docker login` writes for Docker
/// Hub) is `docker.io`; a URL's scheme and path are dropped.
pub fn registry_host(key: &str) -> String {
    let host = key
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = host.split('/').next().unwrap_or(host).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_owned()
        }
        _ => host,
    }
}

/// The registry an image reference names, the way Docker and containerd
/// read it: the part before the first `/` when it has a `.` or a `:` or is
/// `localhost`, else Docker Hub.
pub fn registry_of(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            registry_host(first)
        }
        _ => DOCKER_HUB.to_owned(),
    }
}

/// Decimal megabytes, as registries and `docker pull` count them.
fn megabytes(bytes: u64) -> String {
    const MB: u64 = 1_000_000;
    if bytes >= 10 * MB {
        format!("{} MB", (bytes + MB / 2) / MB)
    } else {
        format!("{:.1} MB", bytes as f64 / MB as f64)
    }
}

/// Which progress reports of one pull go out.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    last: Option<(Instant, u8)>,
}

impl Default for Throttle {
    /// At [`set_report_every`]'s pace ([`REPORT_EVERY`] unless set).
    fn default() -> Self {
        Throttle::new(Duration::from_millis(
            REPORT_EVERY_MS.load(Ordering::Relaxed),
        ))
    }
}

impl Throttle {
    pub fn new(every: Duration) -> Self {
        Throttle { every, last: None }
    }

    /// Whether a report at `percent` goes out now: the first always does,
    /// later ones when `every` has passed and the percentage moved by at
    /// least one.
    pub fn admit(&mut self, now: Instant, percent: u8) -> bool {
        let due = match self.last {
            None => true,
            Some((at, last)) => now.saturating_duration_since(at) >= self.every && percent != last,
        };
        if due {
            self.last = Some((now, percent));
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_percent_and_bytes() {
        let progress = PullProgress {
            total: 286_000_000,
            downloaded: 120_000_000,
            done: 240_000_000,
        };
        assert_eq!(progress.percent(), 41);
        assert_eq!(
            progress.message("lscr.io/app:1"),
            "pulling lscr.io/app:1: 41% (120 MB of 286 MB)"
        );
        assert_eq!(PullProgress::default().message("a:1"), "pulling a:1");
        let small = PullProgress {
            total: 2_500_000,
            downloaded: 400_000,
            done: 400_000,
        };
        assert_eq!(small.message("a:1"), "pulling a:1: 8% (0.4 MB of 2.5 MB)");
        let overflowing = PullProgress {
            total: 10,
            downloaded: 50,
            done: 50,
        };
        assert_eq!(
            overflowing.percent(),
            100,
            "a registry's lies stay in range"
        );
    }

    #[test]
    fn images_name_their_registry_or_docker_hub() {
        assert_eq!(registry_of("127.0.0.1:5000/test/echo:1"), "127.0.0.1:5000");
        assert_eq!(registry_of("lscr.io/linuxserver/webtop"), "lscr.io");
        assert_eq!(registry_of("localhost/app"), "localhost");
        assert_eq!(registry_of("streamspace/desktop:local"), DOCKER_HUB);
        assert_eq!(registry_of("busybox"), DOCKER_HUB);
    }

    #[test]
    fn failures_are_classified_by_what_the_registry_said() {
        let cases = [
            (
                "Head \"http://127.0.0.1:5000/v2/t/e/manifests/1\": no basic auth credentials",
                PullFailure::Auth,
            ),
            ("unauthorized: authentication required", PullFailure::Auth),
            (
                "manifest for 127.0.0.1:5000/t/nope:1 not found: manifest unknown: manifest unknown",
                PullFailure::NotFound,
            ),
            (
                "pull access denied for ghost, repository does not exist or may require \
                 'docker login': denied: requested access to the resource is denied",
                PullFailure::NotFound,
            ),
            (
                "Get \"https://registry-1.docker.io/v2/\": dial tcp: lookup registry-1.docker.io: \
                 no such host",
                PullFailure::Network,
            ),
            (
                "manifest for r.io/a@sha256:4011aa not found: manifest unknown",
                PullFailure::NotFound,
            ),
            ("something odd", PullFailure::Other),
        ];
        for (text, expected) in cases {
            assert_eq!(classify(text), expected, "{text}");
        }
    }

    #[test]
    fn at_most_one_report_a_second_and_only_when_it_moved() {
        let start = Instant::now();
        let mut throttle = Throttle::new(Duration::from_secs(1));
        assert!(throttle.admit(start, 0), "the first report goes out");
        assert!(!throttle.admit(start + Duration::from_millis(500), 10));
        assert!(throttle.admit(start + Duration::from_millis(1000), 10));
        assert!(
            !throttle.admit(start + Duration::from_secs(5), 10),
            "unchanged"
        );
        assert!(throttle.admit(start + Duration::from_secs(5), 11));
    }
}
