//! `streamspace agent kubernetes`: an agent that runs sessions as pods in a
//! namespace, and `… kubernetes render`, which prints the objects it would
//! create for a template.
//!
//! Where its identity lives: in a Pod the state directory is an emptyDir,
//! so with `--identity-secret` the agent keeps `agent.json` in a Secret it
//! may read and patch (the manifests create it empty); it copies it into the
//! state directory at start and saves it there after enrolling. Restarts and
//! a second leader-elected replica then never need the (single-use)
//! enrollment token again.

use crate::agent_args::{AgentArgs, AllowCapabilityArg, agent_name};
use crate::shutdown;
use crate::tracing_args::TracingArgs;
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use streamspace_agent::Identity;
use streamspace_kubernetes::leader::LeaderElector;
use streamspace_kubernetes::state_secret::StateSecret;
use streamspace_kubernetes::{KubernetesOptions, KubernetesPlatform, TunnelMode};
use streamspace_protocol::{AgentId, Memory, SessionId, TemplateId, UserId};
use streamspace_server::store::{Role, User};
use streamspace_server::template::{SessionRequest, TemplateInput};

/// Session id used by `render` unless one is given.
const EXAMPLE_SESSION: &str = "00000000-0000-4000-8000-000000000000";
/// User and template ids used by `render` unless given (labels, home claim).
const EXAMPLE_USER_ID: &str = "00000000-0000-4000-8000-000000000001";
const EXAMPLE_TEMPLATE_ID: &str = "00000000-0000-4000-8000-000000000002";
/// How long a replica that lost the lease lets the runtime wind down.
const LOST_LEASE_GRACE: Duration = Duration::from_secs(2);

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct KubernetesAgentArgs {
    #[command(subcommand)]
    command: Option<KubernetesCommand>,
    /// Boxed: it is the largest of the agent commands' arguments.
    #[command(flatten)]
    run: Box<RunArgs>,
}

impl KubernetesAgentArgs {
    /// Where the agent exports its traces; nowhere for `render`.
    pub fn tracing(&self) -> TracingArgs {
        match &self.command {
            Some(KubernetesCommand::Render(_)) => TracingArgs::default(),
            None => self.run.agent.tracing.clone(),
        }
    }
}

#[derive(Subcommand, Debug)]
enum KubernetesCommand {
    /// Print, as YAML, the objects the agent would create for a session of
    /// a template (JSON or YAML, as sent to POST /api/v1/templates).
    Render(RenderArgs),
}

#[derive(Args, Debug)]
#[command(mut_arg("name", |name| name.help("Name shown to admins (default: k8s-<namespace>)")))]
struct RunArgs {
    #[command(flatten)]
    agent: AgentArgs,
    /// Namespace sessions run in (default: the kubeconfig's or the pod's).
    #[arg(long, env = "STREAMSPACE_NAMESPACE")]
    namespace: Option<String>,
    /// kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or the pod's
    /// service account when running in the cluster).
    #[arg(long, env = "STREAMSPACE_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Keep the identity in this Secret of the namespace as well (needed
    /// in a pod, whose state directory does not survive it).
    #[arg(long, env = "STREAMSPACE_IDENTITY_SECRET")]
    identity_secret: Option<String>,
    /// Most sessions this agent runs at once.
    #[arg(long, default_value_t = 100)]
    max_sessions: u32,
    /// How tunnels reach a session: pod-ip (agent in the cluster) or
    /// port-forward (agent outside). Default: pod-ip inside a pod.
    #[arg(long, env = "STREAMSPACE_TUNNEL")]
    tunnel: Option<TunnelMode>,
    /// Run as one of several replicas; only the holder of a
    /// coordination.k8s.io Lease acts.
    #[arg(long, env = "STREAMSPACE_LEADER_ELECTION")]
    leader_election: bool,
    /// Name of the Lease for --leader-election.
    #[arg(long, default_value = "streamspace-agent")]
    lease_name: String,
    #[command(flatten)]
    objects: ObjectArgs,
}

/// What shapes the objects, shared by the agent and `render` so a review
/// shows what the agent really creates.
#[derive(Args, Debug)]
struct ObjectArgs {
    /// StorageClass of persistent home claims (default: the cluster's).
    #[arg(long, env = "STREAMSPACE_STORAGE_CLASS")]
    storage_class: Option<String>,
    /// Size of each persistent home claim.
    #[arg(long, env = "STREAMSPACE_HOME_SIZE", default_value = "10Gi")]
    home_size: Memory,
    /// Secret used to pull session images (repeatable).
    #[arg(long = "image-pull-secret", value_name = "SECRET")]
    image_pull_secrets: Vec<String>,
    /// Let session images run as root (drops runAsNonRoot; sessions then
    /// no longer meet the "restricted" Pod Security Standard).
    #[arg(long)]
    allow_root_sessions: bool,
    /// Group that owns home volume files (fsGroup), or "none".
    #[arg(long, default_value = "1000", value_parser = parse_fs_group)]
    home_fs_group: FsGroup,
    #[command(flatten)]
    capabilities: AllowCapabilityArg,
}

#[derive(Debug, Clone, Copy)]
struct FsGroup(Option<i64>);

fn parse_fs_group(text: &str) -> Result<FsGroup, String> {
    if text == "none" {
        return Ok(FsGroup(None));
    }
    text.parse::<i64>()
        .ok()
        .filter(|gid| *gid >= 0)
        .map(|gid| FsGroup(Some(gid)))
        .ok_or_else(|| format!("{text:?} is not a group id: use a number or \"none\""))
}

impl ObjectArgs {
    fn options(&self, namespace: String) -> KubernetesOptions {
        KubernetesOptions {
            namespace,
            storage_class: self.storage_class.clone(),
            home_size: self.home_size,
            image_pull_secrets: self.image_pull_secrets.clone(),
            run_as_non_root: !self.allow_root_sessions,
            fs_group: self.home_fs_group.0,
            allowed_capabilities: self.capabilities.allowed.clone(),
            ..KubernetesOptions::default()
        }
    }
}

#[derive(Args, Debug)]
struct RenderArgs {
    /// Template file, JSON or YAML.
    #[arg(long)]
    template: PathBuf,
    /// Owner of the session (labels).
    #[arg(long, default_value = "user")]
    user: String,
    /// The owner's id (labels, home claim name).
    #[arg(long, default_value = EXAMPLE_USER_ID)]
    user_id: UserId,
    /// The template's id (labels, home claim name).
    #[arg(long, default_value = EXAMPLE_TEMPLATE_ID)]
    template_id: TemplateId,
    /// Namespace the objects are rendered for.
    #[arg(long, default_value = "default")]
    namespace: String,
    /// Session id (names the Deployment).
    #[arg(long, default_value = EXAMPLE_SESSION)]
    session_id: SessionId,
    /// Agent id for the labels.
    #[arg(long, default_value = "agent")]
    agent_id: AgentId,
    #[command(flatten)]
    objects: ObjectArgs,
}

pub async fn run(args: KubernetesAgentArgs) -> anyhow::Result<()> {
    match args.command {
        Some(KubernetesCommand::Render(render)) => {
            print!("{}", render_template(&render)?);
            Ok(())
        }
        None => run_agent(*args.run).await,
    }
}

fn render_template(args: &RenderArgs) -> anyhow::Result<String> {
    let path = &args.template;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let input: TemplateInput = if text.trim_start().starts_with('{') {
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a template", path.display()))?
    } else {
        serde_saphyr::from_str(&text)
            .with_context(|| format!("{} is not a template", path.display()))?
    };
    let template = input
        .validate()
        .map_err(|e| anyhow::anyhow!("{}: {}: {}", path.display(), e.field, e.message))?;
    streamspace_server::validate::check_username(&args.user)
        .map_err(|e| anyhow::anyhow!("--user: {}", e.message))?;
    let owner = User {
        id: args.user_id.clone(),
        username: args.user.clone(),
        role: Role::User,
        legacy_home: false,
    };
    let granted = template
        .grant(SessionRequest::default())
        .map_err(|e| anyhow::anyhow!("{}: {}: {}", path.display(), e.field, e.message))?;
    let spec = template.session_spec(&args.template_id, &args.session_id, &owner, &granted);
    let options = args.objects.options(args.namespace.clone());
    streamspace_kubernetes::render::to_yaml(&spec, &args.agent_id, &options)
        .map_err(|e| anyhow::anyhow!(e))
}

async fn run_agent(args: RunArgs) -> anyhow::Result<()> {
    let shutdown = shutdown::on_signal();
    let tls = args.agent.client_tls()?;
    let client = streamspace_kubernetes::client(args.kubeconfig.as_deref()).await?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let mut options = args.objects.options(namespace.clone());
    options.max_sessions = args.max_sessions;
    options.tunnel = args.tunnel.unwrap_or_else(TunnelMode::detect);

    // Check the cluster before enrolling, so a broken setup does not use up
    // a single-use token.
    let probe_id = AgentId::from("enrollment-probe");
    let probe = KubernetesPlatform::new(client.clone(), &probe_id, options.clone())?;
    probe
        .check_access()
        .await
        .with_context(|| format!("cannot use namespace {namespace}"))?;

    // Only the leader enrolls and acts; a standby waits here.
    let leadership = if args.leader_election {
        let holder = holder_identity();
        let elector = LeaderElector::new(client.clone(), &namespace, &args.lease_name, &holder);
        tracing::info!(lease = %args.lease_name, %holder, "waiting to lead");
        match elector.acquire(&shutdown).await? {
            Some(leadership) => Some(leadership),
            None => return Ok(()),
        }
    } else {
        None
    };

    let secret = args
        .identity_secret
        .as_deref()
        .map(|name| StateSecret::new(client.clone(), &namespace, name));
    let state_dir = &args.agent.state_dir;
    let restored = match &secret {
        Some(secret) => restore_identity(secret, state_dir).await?,
        None => false,
    };
    let identity = args
        .agent
        .load_or_enroll(tls, &probe, || default_name(&namespace))
        .await?;
    if let (Some(secret), false) = (&secret, restored) {
        let path = Identity::path(state_dir);
        let saved =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        secret.store(&saved).await?;
        tracing::info!(secret = secret.name(), "saved the agent identity");
    }

    let platform = KubernetesPlatform::new(client, &identity.agent_id, options)?;
    tracing::info!(
        agent_id = %identity.agent_id, name = %identity.name, %namespace,
        tunnel = %platform.options().tunnel, "kubernetes agent starting"
    );
    let Some(leadership) = leadership else {
        return streamspace_agent::run(identity, Arc::new(platform), shutdown).await;
    };
    let lost = leadership.lost();
    let agent_shutdown = shutdown.child_token();
    let agent = streamspace_agent::run(identity, Arc::new(platform), agent_shutdown.clone());
    tokio::pin!(agent);
    tokio::select! {
        result = &mut agent => {
            leadership.release().await;
            result
        }
        _ = lost.cancelled() => {
            agent_shutdown.cancel();
            let _ = tokio::time::timeout(LOST_LEASE_GRACE, agent).await;
            bail!(
                "lost the leader lease {}: stopping so that only the new leader acts \
                 (Kubernetes restarts this pod as a standby)",
                args.lease_name
            )
        }
    }
}

/// Copies the identity from the Secret into the state directory; `true`
/// if the Secret had one.
async fn restore_identity(secret: &StateSecret, state_dir: &Path) -> anyhow::Result<bool> {
    let Some(saved) = secret.load().await? else {
        return Ok(false);
    };
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("cannot create state directory {}", state_dir.display()))?;
    let path = Identity::path(state_dir);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(&saved)
        .with_context(|| format!("cannot write {}", path.display()))?;
    tracing::info!(secret = secret.name(), "restored the agent identity");
    Ok(true)
}

/// This replica's name in the Lease: the pod's name in a cluster.
fn holder_identity() -> String {
    let host = std::env::var("POD_NAME")
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| format!("{}-{}", h.trim(), std::process::id()))
        });
    host.unwrap_or_else(|| format!("streamspace-agent-{}", std::process::id()))
}

/// `k8s-<namespace>` as a valid agent name.
fn default_name(namespace: &str) -> String {
    agent_name(&format!("k8s-{namespace}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fs_group_accepts_numbers_and_none() {
        assert_eq!(parse_fs_group("1000").map(|g| g.0), Ok(Some(1000)));
        assert_eq!(parse_fs_group("none").map(|g| g.0), Ok(None));
        assert!(parse_fs_group("-1").is_err());
        assert!(parse_fs_group("users").is_err());
    }

    #[test]
    fn default_names_are_valid_agent_names() {
        assert_eq!(default_name("streamspace"), "k8s-streamspace");
        assert_eq!(default_name("Team_A"), "k8s-team-a");
    }

    #[test]
    fn render_uses_the_template_as_the_api_validates_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.yaml");
        std::fs::write(
            &path,
            "name: firefox\nimage: registry.example.com/firefox:1\npersistent_home: true\n\
             resources: {cpu: \"2\", memory: 2Gi}\n",
        )
        .expect("write");
        let args = RenderArgs {
            template: path.clone(),
            user: "alice".into(),
            user_id: EXAMPLE_USER_ID.into(),
            template_id: EXAMPLE_TEMPLATE_ID.into(),
            namespace: "sessions".into(),
            session_id: EXAMPLE_SESSION.into(),
            agent_id: "agent".into(),
            objects: ObjectArgs {
                storage_class: None,
                home_size: Memory(1 << 30),
                image_pull_secrets: Vec::new(),
                allow_root_sessions: false,
                home_fs_group: FsGroup(Some(1000)),
                capabilities: Default::default(),
            },
        };
        let yaml = render_template(&args).expect("renders");
        let home = format!("name: streamspace-home-{EXAMPLE_USER_ID}-{EXAMPLE_TEMPLATE_ID}");
        assert!(yaml.contains(&home), "{yaml}");
        assert!(yaml.contains("namespace: sessions"), "{yaml}");
        assert!(
            yaml.contains("containerPort: 5901"),
            "default VNC port: {yaml}"
        );

        std::fs::write(&path, "{\"name\": \"Bad Name\", \"image\": \"x\"}").expect("write");
        let err = render_template(&args).expect_err("invalid template");
        assert!(err.to_string().contains("name"), "{err}");
    }
}
