//! Building and running the control plane: `Application::build` binds the
//! listener (port 0 in tests) and prepares everything; `run_until_stopped`
//! serves until the shutdown token fires, then drains.

use crate::apps::shared::Apps;
use crate::auth::login_guard::LoginGuard;
use crate::auth::mfa::guard::MfaGuard;
use crate::auth::oidc::Oidc;
use crate::auth::revocations::Revocations;
use crate::auth::secrets::SecretKind;
use crate::bootstrap::{AdminBootstrap, ensure_admin};
use crate::changes::Changes;
use crate::cluster::bus::Bus;
use crate::cluster::leader::Leader;
use crate::cluster::replica::{Replica, ReplicaId};
use crate::config::Config;
use crate::hub::channels::AgentHub;
use crate::serve::{Connections, Endpoint};
use crate::settings_cache::SettingsCache;
use crate::state::AppState;
use crate::store::Store;
use crate::streams::StreamLimit;
use crate::tls::ServerTls;
use crate::tunnel::broker::TunnelBroker;
use crate::tunnel::opener::TunnelOpener;
use anyhow::Context;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::signal::unix::Signal;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use url::Url;

/// How long a starting replica waits to hear the other replicas before it
/// serves without (its bus keeps trying; the slower paths cover the gap).
const LISTEN_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

pub struct Application {
    listener: TcpListener,
    /// Plain HTTP on loopback for an agent in this process, when TLS is on
    /// and the config asks for it (`up`).
    loopback: Option<TcpListener>,
    tls: Option<ServerTls>,
    /// SIGHUPs (certificate reloads) with TLS on, listened for from `build`
    /// on: until a handler is in place, a SIGHUP ends the process.
    hangups: Option<Signal>,
    state: AppState,
    admin: Option<AdminBootstrap>,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        crate::private::ensure_private_dir(&config.data_dir).with_context(|| {
            format!(
                "cannot create the data directory {}",
                config.data_dir.display()
            )
        })?;
        let database_url = match &config.database_url {
            Some(url) => url.clone(),
            None => {
                let file = Store::sqlite_file(&config.data_dir);
                crate::private::ensure_private_file(&file)
                    .with_context(|| format!("cannot create the database {}", file.display()))?;
                Store::sqlite_url(&config.data_dir)
            }
        };
        let store = Store::connect(&database_url)
            .await
            .with_context(|| format!("cannot open the database at {}", redact(&database_url)))?;
        // One key seals TOTP secrets and templates' secrets; the store
        // seals and opens the latter itself, so no caller can forget to.
        let vault = Arc::new(
            crate::vault::Vault::load(&config.data_dir, config.secrets_key_file.as_deref())
                .context("cannot load the key that seals secrets at rest")?,
        );
        let store = store.with_vault(vault.clone());
        // Best effort: rows left in clear still read, and the next start
        // tries again.
        if let Err(err) = store.seal_legacy_secrets().await {
            tracing::error!(error = %err, "cannot seal the secrets an older release stored in clear");
        }
        // Agents connect to whichever replica they reach; until one does,
        // none is connected to this process.
        if database_url.starts_with("sqlite:") {
            store.mark_all_agents_disconnected().await?;
        }
        let tls = match &config.tls {
            Some(files) => Some(ServerTls::load(files).context("cannot serve HTTPS")?),
            None => None,
        };
        let hangups = match &tls {
            Some(_) => Some(crate::tls::hangups()?),
            None => None,
        };
        let admin =
            ensure_admin(&store, &config.data_dir, config.admin_password.as_deref()).await?;
        crate::serve::raise_open_file_limit(config.http.max_connections);
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let local = listener.local_addr()?;
        let loopback = match tls.is_some() && config.loopback_listener {
            true => Some(TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?),
            false => None,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let public_url = match &config.public_url {
            Some(url) => url.clone(),
            None => Url::parse(&format!("{scheme}://{local}"))?,
        };
        let replica = Arc::new(Replica {
            id: ReplicaId::new(),
            secret: crate::auth::secrets::generate(SecretKind::Replica),
            internal_url: match &config.internal_url {
                Some(url) => url.clone(),
                None => Url::parse(&format!("{scheme}://{}", loopback_of(local)))?,
            },
            shared: !database_url.starts_with("sqlite:"),
        });
        let bus = match replica.shared {
            true => Bus::shared(
                replica.id.clone(),
                store.pool().clone(),
                database_url.clone(),
            ),
            false => Bus::alone(replica.id.clone()),
        };
        crate::cluster::registry::register(&store, &replica)
            .await
            .context("cannot register this replica")?;
        let sealer = crate::seal::Sealer::load(&store).await?;
        let oidc = match &config.oidc {
            Some(oidc) => {
                oidc.check().map_err(anyhow::Error::msg)?;
                Some(Arc::new(Oidc::load(oidc.clone(), &store).await?))
            }
            None => None,
        };
        let login = LoginGuard::new(config.login_throttle.clone());
        let mfa = MfaGuard::new(vault, config.login_throttle.clone());
        let recordings = crate::recording::Recordings::open(
            config.data_dir.join("recordings"),
            config.recording_limits,
        )
        .context("cannot open the recordings directory")?;
        let hub = Arc::new(AgentHub::default());
        let tunnels = Arc::new(TunnelBroker::new(replica.id.clone()));
        let opener = TunnelOpener {
            hub: hub.clone(),
            broker: tunnels.clone(),
            limit: config.tunnel_timeout,
            bus: bus.clone(),
            store: store.clone(),
        };
        let shutdown = CancellationToken::new();
        let settings = Arc::new(SettingsCache::new(store.clone(), config.settings_recheck));
        let state = AppState {
            streams: StreamLimit::new(config.max_streams_per_user),
            apps: Arc::new(Apps::new(opener)),
            config: Arc::new(config),
            public_url: Arc::new(public_url),
            store,
            hub,
            tunnels,
            changes: Changes::default(),
            draining: shutdown.child_token(),
            shutdown,
            tasks: TaskTracker::new(),
            metrics: Arc::default(),
            sealer,
            login: Arc::new(login),
            mfa: Arc::new(mfa),
            revocations: Revocations::default(),
            anonymous_events: Arc::default(),
            share_ends: Default::default(),
            settings,
            oidc,
            recordings: Arc::new(recordings),
            leader: match replica.shared {
                true => Leader::contender(&database_url),
                false => Leader::always(),
            },
            replica,
            bus,
        };
        Ok(Self {
            listener,
            loopback,
            tls,
            hangups,
            state,
            admin,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        // The listener was bound successfully in `build`.
        self.listener
            .local_addr()
            .unwrap_or_else(|_| self.state.config.listen)
    }

    pub fn public_url(&self) -> &Url {
        &self.state.public_url
    }

    /// Where an agent in this process reaches the server: the plain
    /// loopback listener if there is one (no certificate to trust, and its
    /// tunnels stay on the zero-copy path), else this host's own address.
    pub fn agent_url(&self) -> anyhow::Result<Url> {
        let (scheme, addr) = match &self.loopback {
            Some(loopback) => ("http", loopback.local_addr()?),
            None if self.tls.is_some() => ("https", loopback_of(self.local_addr())),
            None => ("http", loopback_of(self.local_addr())),
        };
        Ok(Url::parse(&format!("{scheme}://{addr}"))?)
    }

    pub fn store(&self) -> &Store {
        &self.state.store
    }

    /// Set when this start created the first admin.
    pub fn admin_bootstrap(&self) -> Option<&AdminBootstrap> {
        self.admin.as_ref()
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let state = self.state.clone();
        let router = crate::api::router(self.state);
        let mut endpoints = vec![Endpoint {
            listener: self.listener,
            tls: self.tls.as_ref().map(ServerTls::acceptor),
        }];
        if let Some(listener) = self.loopback {
            tracing::info!(addr = %listener.local_addr()?, "plain HTTP for the embedded agent on loopback");
            endpoints.push(Endpoint {
                listener,
                tls: None,
            });
        }
        if let (Some(tls), Some(hangups)) = (self.tls, self.hangups) {
            let metrics = state.metrics.http.clone();
            let reload = tls.reload_on_sighup(hangups, metrics, shutdown.clone());
            state.tasks.spawn(reload);
        }
        let drain = state.config.shutdown_drain;
        let connections = Connections::with_apps_domain(
            state.config.http,
            state.metrics.http.clone(),
            state.config.apps_domain.clone(),
        );
        let server = crate::serve::serve(endpoints, router, connections, shutdown.clone(), drain);
        tracing::info!(url = %state.public_url, "control plane listening");
        state
            .tasks
            .spawn(crate::cluster::registry::run(state.clone()));
        state
            .tasks
            .spawn(state.bus.clone().listen(state.shutdown.clone()));
        state.tasks.spawn(crate::cluster::deliver(state.clone()));
        // Requests wait in the listener's backlog until this replica hears
        // the others: a change another replica announces after this one
        // answers must reach its streams.
        if !state.bus.until_listening(LISTEN_LIMIT).await {
            tracing::warn!(
                "not yet listening to the other replicas after {LISTEN_LIMIT:?}; serving anyway"
            );
        }
        let forwarded = crate::cluster::Forwarded::subscribe(&state);
        state.tasks.spawn(forwarded.run(state.clone()));
        let leader = state.leader.clone();
        let contend = crate::cluster::leader::contend(leader, state.shutdown.clone());
        state.tasks.spawn(contend);
        state.tasks.spawn(crate::reconcile::run(state.clone()));
        state.tasks.spawn(crate::pool::run(state.clone()));
        state
            .tasks
            .spawn(crate::hub::save_heartbeats(state.clone()));
        state.tasks.spawn(crate::auth::purge::run(state.clone()));
        state
            .tasks
            .spawn(crate::audit_log::retention::run(state.clone()));
        state
            .tasks
            .spawn(crate::recording::retention::run(state.clone()));
        // The server's token stops the listeners. Then the replica drains:
        // agent channels and event streams end now (an event stream never
        // finishes, it would hold the drain of requests in flight), tunnels
        // get the drain timeout, then the app's token closes the rest.
        let streams_end = async {
            shutdown.cancelled().await;
            crate::cluster::drain::drain(&state).await;
            state.shutdown.cancel();
        };
        tokio::join!(server, streams_end);
        state.tasks.close();
        if tokio::time::timeout(drain, state.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not close within {drain:?}");
        }
        state.store.close().await;
        Ok(())
    }
}

/// Where a local client reaches a listener bound to `addr`.
fn loopback_of(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        ip if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port()),
        _ => addr,
    }
}

/// The database URL without its password, for messages.
fn redact(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}
