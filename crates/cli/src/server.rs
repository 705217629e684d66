//! `streamspace server` and `streamspace up`.

use crate::image::{self, DemoImage};
use crate::oidc_args::OidcArgs;
use crate::shutdown;
use anyhow::Context;
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use streamspace_agent::{Enrollment, Identity};
use streamspace_docker::{DockerOptions, DockerPlatform};
use streamspace_protocol::{Cpu, Memory};
use streamspace_server::auth::client_addr::{IpNet, parse_trusted_proxy};
use streamspace_server::auth::secrets;
use streamspace_server::config::{HttpLimits, OrphanPolicy, TlsFiles};
use streamspace_server::store::{Limits, Store, now_ms};
use streamspace_server::template::TemplateInput;
use streamspace_server::{Application, Config};
use url::Url;

#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// Address to listen on.
    #[arg(long, env = "STREAMSPACE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Directory for the SQLite database and the admin password file.
    #[arg(
        long,
        env = "STREAMSPACE_DATA_DIR",
        default_value = "./streamspace-data"
    )]
    data_dir: PathBuf,
    /// `postgres://user:pass@host/db` for PostgreSQL; default: SQLite in the data dir.
    #[arg(long, env = "STREAMSPACE_DATABASE_URL")]
    database_url: Option<String>,
    /// The URL users and agents reach this server at (default: http://LISTEN).
    #[arg(long, env = "STREAMSPACE_PUBLIC_URL")]
    public_url: Option<Url>,
    /// Where the other control-plane replicas reach this one, e.g.
    /// `http://$(POD_IP):8080` (default: this listener on loopback, enough
    /// for replicas on one host).
    #[arg(long, env = "STREAMSPACE_INTERNAL_URL")]
    internal_url: Option<Url>,
    /// Serve web apps at `{session}--{port}.DOMAIN` (an origin of their own per
    /// session; needs wildcard DNS and, for HTTPS, a wildcard certificate).
    /// Without it apps are served at `/apps/{session}/{port}/` only.
    #[arg(long, env = "STREAMSPACE_APPS_DOMAIN", value_parser = parse_apps_domain)]
    apps_domain: Option<String>,
    /// How often agents send heartbeats; an agent silent for 3 intervals is offline.
    #[arg(long, env = "STREAMSPACE_HEARTBEAT_INTERVAL", default_value = "5s", value_parser = humantime_duration)]
    heartbeat_interval: Duration,
    /// Default most sessions per user (hibernated ones count); unlimited if unset.
    #[arg(long, env = "STREAMSPACE_QUOTA_MAX_SESSIONS")]
    quota_max_sessions: Option<u64>,
    /// Default CPU per user across running sessions, e.g. "4" or "2500m".
    #[arg(long, env = "STREAMSPACE_QUOTA_CPU")]
    quota_cpu: Option<Cpu>,
    /// Default memory per user across running sessions, e.g. "8Gi".
    #[arg(long, env = "STREAMSPACE_QUOTA_MEMORY")]
    quota_memory: Option<Memory>,
    /// What to do with session containers no record accounts for: adopt, remove or ignore.
    #[arg(long, env = "STREAMSPACE_ORPHAN_POLICY", default_value = "adopt")]
    orphan_policy: OrphanPolicy,

    // Logins.
    /// Reverse proxies (addresses or CIDR blocks, comma-separated) whose
    /// X-Forwarded-For names the client; failed logins are throttled per client address.
    #[arg(long, env = "STREAMSPACE_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_trusted_proxy)]
    trusted_proxies: Vec<IpNet>,
    /// The key that seals secrets at rest: TOTP secrets, templates' secret_env
    /// values and registry passwords (64 hex digits, `openssl rand -hex 32`),
    /// the same file for every replica; default DATA_DIR/mfa-key.
    #[arg(
        long = "mfa-key-file",
        visible_alias = "secrets-key-file",
        value_name = "FILE",
        env = "STREAMSPACE_MFA_KEY_FILE"
    )]
    secrets_key_file: Option<PathBuf>,
    /// How long a client may take to send a request's head (and its TLS
    /// handshake), from connecting or from the request's first byte.
    #[arg(long, env = "STREAMSPACE_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    header_read_timeout: Duration,
    /// How long a client may take to send a request's body, from the end
    /// of its head (a total: a trickle runs out too); then it gets 408.
    #[arg(long, env = "STREAMSPACE_BODY_READ_TIMEOUT", default_value = "30s", value_parser = positive_duration)]
    body_read_timeout: Duration,
    /// How long a keep-alive HTTP connection may wait for its next request,
    /// and a client may leave a response unread.
    #[arg(long, env = "STREAMSPACE_IDLE_TIMEOUT", default_value = "60s", value_parser = positive_duration)]
    idle_timeout: Duration,
    /// Most connections speaking HTTP at once (VNC tunnels and agent
    /// channels do not count); at the limit, the one idle, sending its
    /// request head or body, or not reading the longest is closed to make room.
    #[arg(long, env = "STREAMSPACE_MAX_CONNECTIONS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// Most event streams, log streams and VNC viewers one user may have
    /// open at once (all kinds together); beyond it, 429.
    #[arg(long, env = "STREAMSPACE_MAX_STREAMS_PER_USER", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_streams_per_user: u32,
    /// PEM certificate chain (leaf first) to serve HTTPS with; needs
    /// --tls-key. Reloaded on SIGHUP.
    #[arg(long, env = "STREAMSPACE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (PKCS#8, RSA or EC).
    #[arg(long, env = "STREAMSPACE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    #[command(flatten)]
    oidc: OidcArgs,
    #[command(flatten)]
    pub tracing: crate::tracing_args::TracingArgs,
    /// One session recording stops (and its viewer closes) at this size, e.g. "1Gi".
    #[arg(long, env = "STREAMSPACE_RECORDING_MAX_BYTES", default_value = "1Gi")]
    recording_max_bytes: Memory,
    /// All recordings together never take more than this, e.g. "20Gi"
    /// (docs/RECORDING.md); retention keeps them under the settings' size.
    #[arg(long, env = "STREAMSPACE_RECORDING_MAX_TOTAL", default_value = "20Gi")]
    recording_max_total: Memory,
    /// How often recordings beyond the retention settings are deleted.
    #[arg(long, env = "STREAMSPACE_RECORDING_PURGE_INTERVAL", default_value = "1h", value_parser = positive_duration)]
    recording_purge_interval: Duration,
    /// On SIGTERM, how long viewers' tunnels may go on streaming before
    /// they are closed (the viewers reconnect to another replica); agents
    /// move at once. At most 1h; 0s closes tunnels at once.
    #[arg(long, env = "STREAMSPACE_DRAIN_TIMEOUT", default_value = "10s", value_parser = drain_timeout)]
    drain_timeout: Duration,
}

fn humantime_duration(text: &str) -> Result<Duration, String> {
    streamspace_server::config::parse_duration(text)
}

fn drain_timeout(text: &str) -> Result<Duration, String> {
    match humantime_duration(text)? {
        long if long > Duration::from_secs(3600) => Err(
            "must be at most 1h: a replica that drains longer holds up a rolling upgrade".into(),
        ),
        duration => Ok(duration),
    }
}

fn positive_duration(text: &str) -> Result<Duration, String> {
    match humantime_duration(text)? {
        Duration::ZERO => Err("must be longer than 0s".into()),
        duration => Ok(duration),
    }
}

impl ServerArgs {
    fn config(&self) -> Config {
        Config {
            listen: self.listen,
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
            public_url: self.public_url.clone(),
            internal_url: self.internal_url.clone(),
            apps_domain: self.apps_domain.clone(),
            admin_password: std::env::var("STREAMSPACE_ADMIN_PASSWORD")
                .ok()
                .filter(|p| !p.is_empty()),
            heartbeat_interval: self.heartbeat_interval,
            quota_defaults: Limits {
                max_sessions: self.quota_max_sessions,
                cpu_millis: self.quota_cpu.map(Cpu::millicores),
                memory_bytes: self.quota_memory.map(Memory::bytes),
            },
            orphan_policy: self.orphan_policy,
            trusted_proxies: self.trusted_proxies.clone(),
            secrets_key_file: self.secrets_key_file.clone(),
            http: HttpLimits {
                header_read_timeout: self.header_read_timeout,
                body_read_timeout: self.body_read_timeout,
                idle_timeout: self.idle_timeout,
                max_connections: self.max_connections as usize,
            },
            max_streams_per_user: self.max_streams_per_user as usize,
            tls: match (&self.tls_cert, &self.tls_key) {
                (Some(cert), Some(key)) => Some(TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                }),
                _ => None,
            },
            oidc: self.oidc.config(),
            recording_limits: streamspace_server::recording::Limits {
                max_bytes: self.recording_max_bytes.bytes(),
                max_total: self.recording_max_total.bytes(),
            },
            recording_purge_interval: self.recording_purge_interval,
            drain_timeout: self.drain_timeout,
            ..Config::default()
        }
    }
}

pub async fn run_server(args: ServerArgs) -> anyhow::Result<()> {
    let shutdown = shutdown::on_signal();
    let app = Application::build(args.config()).await?;
    print_banner(&app, &args);
    app.run_until_stopped(shutdown).await
}

/// Control plane plus an embedded Docker agent, connected over loopback
/// exactly as a remote agent would be.
pub async fn run_up(args: ServerArgs) -> anyhow::Result<()> {
    let shutdown = shutdown::on_signal();
    image::ensure_image(DemoImage::Desktop).await?;
    // With TLS on, the embedded agent gets a plain listener on loopback:
    // it needs no certificate that names 127.0.0.1, and its tunnels keep
    // the zero-copy path on the agent's side.
    let config = Config {
        loopback_listener: true,
        ..args.config()
    };
    let app = Application::build(config).await?;
    seed_demo_templates(app.store()).await?;
    let agent_dir = args.data_dir.join("agent");
    let token = match Identity::path(&agent_dir).exists() {
        true => None,
        false => Some(mint_enrollment_token(app.store()).await?),
    };
    let control_plane = app.agent_url()?;
    print_banner(&app, &args);
    let server = tokio::spawn(app.run_until_stopped(shutdown.clone()));

    let enrollment = Enrollment {
        control_plane,
        token,
        name: "local".into(),
        platform: "docker".into(),
        region: None,
        capacity: Default::default(),
        capabilities: Default::default(),
        tls: Default::default(),
    };
    let agent = async {
        let identity = Identity::load_or_enroll(&agent_dir, &enrollment).await?;
        // Like `agent docker`: a missing image is pulled (docs/REGISTRIES.md).
        let options = DockerOptions {
            pull_missing_images: true,
            ..DockerOptions::default()
        };
        let platform = DockerPlatform::connect(&identity.agent_id, options)
            .await
            .context("the embedded Docker agent cannot start")?;
        streamspace_agent::run(identity, Arc::new(platform), shutdown.clone()).await
    }
    .await;
    if agent.is_err() {
        shutdown.cancel();
    }
    let served = server.await.context("the control plane task failed")?;
    agent.and(served)
}

fn print_banner(app: &Application, args: &ServerArgs) {
    println!("StreamSpace is running at {}", app.public_url());
    match app.admin_bootstrap() {
        Some(admin) => match &admin.generated {
            Some((password, file)) => println!(
                "Log in as {} with password {password} (saved in {})",
                admin.username,
                file.display()
            ),
            None => println!(
                "Log in as {} with the password from STREAMSPACE_ADMIN_PASSWORD",
                admin.username
            ),
        },
        None => println!(
            "Log in as admin (first-start password in {}, unless STREAMSPACE_ADMIN_PASSWORD set it)",
            args.data_dir.join("admin-password").display()
        ),
    }
}

/// The demo templates `up` offers out of the box: the desktop always (`up`
/// builds its image), the others once their image is on the Docker host
/// (`streamspace build-image full-desktop|webvnc`, which `scripts/run.sh`
/// runs); a template an admin deleted or changed is left alone.
async fn seed_demo_templates(store: &Store) -> anyhow::Result<()> {
    for (image, template) in demo_templates() {
        let name = template["name"].as_str().unwrap_or_default().to_owned();
        if store.find_template(&name).await?.is_some() {
            continue;
        }
        if image != DemoImage::Desktop && !image::image_exists(image.tag()).await? {
            tracing::info!(
                "not offering the {name} template: build its image with `streamspace build-image {}`",
                image.cli_name()
            );
            continue;
        }
        let spec = serde_json::from_value::<TemplateInput>(template)?.validate()?;
        store.create_template(&spec).await?;
        tracing::info!("created the {name} template");
    }
    Ok(())
}

fn demo_templates() -> [(DemoImage, serde_json::Value); 3] {
    use serde_json::json;
    [
        (
            DemoImage::Desktop,
            json!({
                "name": "desktop",
                "display_name": "Desktop",
                "description": "A minimal X desktop with a terminal and sound (Xvnc, xterm, PulseAudio from Debian packages).",
                "category": "Development",
                "icon": "",
                "image": image::DESKTOP_IMAGE,
                // The image serves its sound on 5911 and takes the
                // viewer's microphone on 5912 (docs/AUDIO.md).
                "ports": [
                    {"name": "vnc", "port": 5901, "protocol": "vnc"},
                    {"name": "audio", "port": 5911, "protocol": "audio"},
                    {"name": "microphone", "port": 5912, "protocol": "microphone"}
                ],
                "resources": {"cpu": "1", "memory": "512Mi"},
                "persistent_home": true,
                "home_path": "/home/user",
                "idle_timeout": "30m",
                "platforms": ["docker"]
            }),
        ),
        (
            DemoImage::FullDesktop,
            json!({
                "name": "full-desktop",
                "display_name": "Desktop with Firefox",
                "description": "IceWM with a taskbar and menu, a terminal and Firefox ESR (Debian packages).",
                "category": "Productivity",
                "icon": "",
                "image": image::FULL_DESKTOP_IMAGE,
                "ports": [{"name": "vnc", "port": 5901, "protocol": "vnc"}],
                "resources": {"cpu": "2", "memory": "2Gi"},
                // Firefox's tabs crash with Docker's 64 MB /dev/shm.
                "shm_size": "1Gi",
                "persistent_home": true,
                "home_path": "/home/user",
                "idle_timeout": "30m",
                "platforms": ["docker"]
            }),
        ),
        (
            DemoImage::Webvnc,
            json!({
                "name": "web-desktop",
                "display_name": "Web desktop (noVNC)",
                "description": "A desktop served as a web app: noVNC and its WebSocket over HTTP, the way KasmVNC images work.",
                "category": "Development",
                "icon": "",
                "image": image::WEBVNC_IMAGE,
                "ports": [
                    {"name": "web", "port": 6080, "protocol": "http", "path": "/"},
                    {"name": "vnc", "port": 5901, "protocol": "vnc"}
                ],
                "resources": {"cpu": "1", "memory": "1Gi"},
                "persistent_home": true,
                "home_path": "/home/user",
                "idle_timeout": "30m",
                "platforms": ["docker"]
            }),
        ),
    ]
}

/// An enrollment token for the embedded agent's first start.
async fn mint_enrollment_token(store: &Store) -> anyhow::Result<String> {
    let token = secrets::generate(secrets::SecretKind::Enrollment);
    let expires_at = now_ms() + 10 * 60 * 1000;
    store
        .create_enrollment_token(&secrets::hash(&token), "streamspace up", expires_at)
        .await?;
    Ok(token)
}

/// A DNS name such as `apps.example.com`, stored in lowercase.
fn parse_apps_domain(text: &str) -> Result<String, String> {
    let domain = text.trim().trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if domain.contains('.') && domain.split('.').all(label_ok) {
        Ok(domain)
    } else {
        Err(format!(
            "{text:?} is not a domain name: give one such as apps.example.com (no scheme, port or *)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        server: ServerArgs,
    }

    #[test]
    fn flag_defaults_are_the_servers_defaults() {
        let cli = Cli::try_parse_from(["server"]).expect("parses");
        let config = cli.server.config();
        assert_eq!(config.http, HttpLimits::default());
        let defaults = Config::default();
        assert_eq!(config.max_streams_per_user, defaults.max_streams_per_user);
        assert_eq!(config.drain_timeout, defaults.drain_timeout);
        assert_eq!(config.tls, None);
    }

    /// The key file's flag kept its MFA name, which operators already
    /// use; the alias says what it seals now.
    #[test]
    fn the_secrets_key_file_has_its_old_flag_and_an_alias() {
        for flag in ["--mfa-key-file", "--secrets-key-file"] {
            let cli = Cli::try_parse_from(["server", flag, "/keys/mfa-key"]).expect("parses");
            let file = cli.server.config().secrets_key_file;
            assert_eq!(file, Some(PathBuf::from("/keys/mfa-key")), "{flag}");
        }
    }

    #[test]
    fn a_drain_timeout_is_bounded() {
        assert_eq!(drain_timeout("0s"), Ok(Duration::ZERO));
        assert_eq!(drain_timeout("1h"), Ok(Duration::from_secs(3600)));
        let too_long = drain_timeout("61m").expect_err("over an hour");
        assert!(too_long.contains("at most 1h"), "{too_long}");
        assert!(drain_timeout("soon").is_err());
    }

    #[test]
    fn every_demo_template_is_valid() {
        for (image, template) in demo_templates() {
            assert_eq!(template["image"], image.tag());
            let input: TemplateInput = serde_json::from_value(template).expect("parses");
            input.validate().expect("valid");
        }
    }

    #[test]
    fn apps_domains_are_bare_dns_names() {
        assert_eq!(
            parse_apps_domain("Apps.Example.com."),
            Ok("apps.example.com".into())
        );
        for bad in [
            "*.apps.example.com",
            "https://apps.example.com",
            "apps.example.com:8443",
            "localhost",
            "a..b",
        ] {
            assert!(parse_apps_domain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_zero_timeout_and_a_lone_tls_flag_are_refused() {
        let zero = Cli::try_parse_from(["server", "--idle-timeout", "0s"]);
        assert!(
            zero.err()
                .is_some_and(|e| e.to_string().contains("longer than 0s"))
        );
        let lone = Cli::try_parse_from(["server", "--tls-cert", "cert.pem"]);
        assert!(
            lone.err()
                .is_some_and(|e| e.to_string().contains("--tls-key"))
        );
    }
}
