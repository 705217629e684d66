//! The JSON shapes the API answers with.

use crate::state::AppState;
use crate::store::{AgentLoad, AgentRecord, SessionRecord, TemplateRecord, Unverified};
use crate::template::TemplateSpec;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};
use streamspace_protocol::{
    AgentId, Capabilities, Capacity, Cpu, DesiredState, DesktopPolicy, Memory, NodeMetrics, Phase,
    PortSpec, RecordingPolicy, Resources, SessionId, TemplateId, UserId,
};
use utoipa::ToSchema;

/// The last instant RFC 3339 can write: 9999-12-31T23:59:59.999Z.
pub const LATEST_TIME_MS: i64 = 253_402_300_799_999;

/// RFC 3339 in UTC with milliseconds, the API's one time format. Times
/// outside what it can write are clamped (formatting them would panic).
pub fn time(ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(ms.clamp(0, LATEST_TIME_MS) as u64);
    humantime::format_rfc3339_millis(at).to_string()
}

/// Whether an agent is reachable, as [`super::agent_status`] decides it.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)] // only the schema of a `&'static str`; never built
pub enum AgentStatus {
    Online,
    Offline,
    Draining,
    Degraded,
}

#[derive(Serialize, ToSchema)]
#[schema(as = Session)]
pub struct SessionView {
    #[schema(value_type = String)]
    pub id: SessionId,
    /// The owner's username.
    pub user: String,
    #[schema(value_type = String)]
    pub user_id: UserId,
    /// The template's name.
    pub template: String,
    #[schema(value_type = Option<String>)]
    pub agent_id: Option<AgentId>,
    pub platform: String,
    /// What was asked for.
    #[schema(value_type = DesiredState)]
    pub state: &'static str,
    /// What the agent observes.
    #[schema(value_type = Phase)]
    pub phase: &'static str,
    /// Why the session is in its phase (for `Failed`), or what it waits
    /// for (its agent's platform, when the agent is `degraded`).
    pub message: Option<String>,
    /// Where a viewer reaches the session: the `/vnc` WebSocket.
    pub url: String,
    /// The session's ports, the first being the one its viewer opens.
    pub ports: Vec<PortSpec>,
    /// When the first port is a web app: where a browser opens it
    /// (`GET` with the login redirects to the app with a ticket).
    pub app_url: Option<String>,
    pub resources: Resources,
    /// Whether the session's agent is reachable: `online`, `offline` (the
    /// session is untouched but cannot be reached or changed until the agent
    /// returns), `draining` or `degraded` (its platform has a problem; a
    /// session waiting on it says which in `message`).
    #[schema(value_type = Option<AgentStatus>)]
    pub agent_status: Option<&'static str>,
    /// The agent's name, for people (users cannot list agents).
    pub agent_name: Option<String>,
    /// What the session uses now (from its agent's last heartbeat), when
    /// its platform can measure it.
    pub usage: Option<UsageView>,
    /// Hibernated after this long without viewer input or heartbeats.
    pub idle_timeout: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    #[schema(format = DateTime)]
    pub last_activity: String,
    /// What its viewers may do beyond pixels and keys, fixed when the
    /// session was made.
    pub desktop: DesktopPolicy,
    /// Whether its viewers are recorded (docs/RECORDING.md): its template
    /// requires it, or (in the view of one session) an admin setting
    /// records every session. Viewers show a notice.
    pub recorded: bool,
}

impl SessionView {
    pub fn new(state: &AppState, s: SessionRecord, agent: Option<(&'static str, String)>) -> Self {
        let (agent_status, agent_name) = agent.unzip();
        let usage = s
            .agent_id
            .as_ref()
            .and_then(|agent| state.hub.session_usage(agent, &s.id));
        let usage = usage.map(|u| UsageView {
            cpu: Cpu(u.cpu_millicores),
            memory: Memory(u.memory_bytes),
        });
        SessionView {
            usage,
            agent_status,
            agent_name,
            idle_timeout: s.idle_timeout_ms.map(|ms| {
                humantime::format_duration(Duration::from_millis(ms.max(0) as u64)).to_string()
            }),
            url: vnc_url(state, &s.id),
            app_url: s
                .spec
                .primary_port()
                .filter(|p| p.protocol.is_web())
                .map(|p| format!("/api/v1/sessions/{}/apps/{}", s.id, p.port)),
            ports: s.spec.ports.clone(),
            user: s.username,
            user_id: s.user_id,
            template: s.template_name,
            agent_id: s.agent_id,
            platform: s.platform,
            state: s.state.as_str(),
            phase: s.phase.as_str(),
            message: s.message,
            resources: s.spec.resources,
            recorded: s.spec.desktop.recording == RecordingPolicy::Required,
            desktop: s.spec.desktop,
            created_at: time(s.created_at),
            updated_at: time(s.updated_at),
            last_activity: time(s.last_activity),
            id: s.id,
        }
    }
}

fn vnc_url(state: &AppState, session_id: &SessionId) -> String {
    let mut url = (*state.public_url).clone();
    let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
    // Both schemes are special, so switching between them always succeeds.
    let _ = url.set_scheme(scheme);
    url.set_path(&format!("/vnc/{session_id}"));
    url.to_string()
}

/// What a session uses now.
#[derive(Serialize, ToSchema)]
#[schema(as = SessionUsage)]
pub struct UsageView {
    pub cpu: Cpu,
    pub memory: Memory,
}

#[derive(Serialize, ToSchema)]
#[schema(as = Template)]
pub struct TemplateView {
    #[schema(value_type = String)]
    pub id: TemplateId,
    #[serde(flatten)]
    pub spec: TemplateSpec,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl From<TemplateRecord> for TemplateView {
    fn from(t: TemplateRecord) -> Self {
        TemplateView {
            id: t.id,
            spec: t.spec.without_passwords(),
            created_at: time(t.created_at),
            updated_at: time(t.updated_at),
        }
    }
}

impl TemplateView {
    /// The template as an admin (`admin`) or anyone else may see it.
    pub fn shown_to(t: TemplateRecord, admin: bool) -> Self {
        let mut view = TemplateView::from(t);
        if !admin {
            view.spec = view.spec.for_users();
        }
        view
    }
}

#[derive(Serialize, ToSchema)]
#[schema(as = Agent)]
pub struct AgentView {
    #[schema(value_type = String)]
    pub id: AgentId,
    pub name: String,
    pub platform: String,
    pub region: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// The agent pool, set by admins (docs/GROUPS.md): only users whose
    /// groups hold it get sessions here.
    pub pool: String,
    /// `online`, `offline`, `draining` (online but taking no new sessions by
    /// an admin's choice) or `degraded` (online, but its platform's health
    /// check found a problem, in `status_reason`: no new sessions either).
    #[schema(value_type = AgentStatus)]
    pub status: &'static str,
    /// What is wrong with its platform, as the agent's last health check
    /// said (the engine or apiserver does not answer in time, its disk is
    /// full), while it is online; absent when healthy.
    pub status_reason: Option<String>,
    pub draining: bool,
    /// The control-plane replica holding its control channel
    /// (`GET /api/v1/replicas`); `null` when connected nowhere.
    pub replica_id: Option<String>,
    pub version: Option<String>,
    #[schema(format = DateTime)]
    pub last_heartbeat: Option<String>,
    pub capacity: Capacity,
    pub capabilities: Capabilities,
    pub session_count: u32,
    /// GPUs its sessions hold until terminated (hibernated and failed ones
    /// included), of `capacity.gpus`.
    pub gpus_in_use: u64,
    pub metrics: Option<NodeMetrics>,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// Sessions its last inventory held that are in nobody's list (no
    /// record and no valid seal, or placed on another agent): worth a look,
    /// since a trustworthy agent has none.
    pub unverified_sessions: Vec<Unverified>,
}

impl AgentView {
    /// The agent as admins see it, with what its sessions hold (`load`).
    pub fn new(status: &'static str, a: AgentRecord, load: AgentLoad) -> Self {
        let status_reason = match status {
            "offline" => None,
            _ => a.health.and_then(|h| h.problem),
        };
        AgentView {
            status_reason,
            id: a.id,
            name: a.name,
            platform: a.platform,
            region: a.region,
            labels: a.labels,
            pool: a.pool,
            status,
            draining: a.draining,
            replica_id: a.replica_id.filter(|_| status != "offline"),
            version: a.version,
            last_heartbeat: a.last_heartbeat.map(time),
            capacity: a.capacity,
            capabilities: a.capabilities,
            session_count: load.sessions,
            gpus_in_use: load.gpus,
            metrics: a.metrics,
            created_at: time(a.created_at),
            unverified_sessions: a.unverified,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(time(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn times_beyond_year_9999_are_clamped() {
        assert_eq!(time(i64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(time(LATEST_TIME_MS + 1), "9999-12-31T23:59:59.999Z");
        assert_eq!(time(-1), "1970-01-01T00:00:00.000Z");
    }
}
