//! Observing sessions as they really are on the host: status, inventory,
//! and a connection to a VM's VNC server.

use crate::Shared;
use crate::domain::domain_name;
use crate::error::is_missing;
use crate::labels::{NAMESPACE, SessionMetadata};
use crate::phase::{DomainState, observe};
use crate::storage::{self, BaseImage};
use crate::xml::{self, Event};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use streamspace_agent::{OrNotFound, PlatformError, PlatformResult, SessionStream};
use streamspace_protocol::{Phase, PortProtocol, SessionId, SessionReport};
use virt::connect::Connect;
use virt::domain::Domain;
use virt_sys as sys;

/// Bounds dialing a VM's VNC server, so a stuck QEMU cannot stall a tunnel.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// A session's domain as found: whose it is and how it is.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub name: String,
    /// `None` for a domain StreamSpace did not make (no metadata of ours).
    pub metadata: Option<SessionMetadata>,
    pub state: DomainState,
}

/// The domain called `name`, if any (blocking).
pub(crate) fn lookup(conn: &Connect, name: &str) -> Result<Option<Domain>, virt::error::Error> {
    match Domain::lookup_by_name(conn, name) {
        Ok(domain) => Ok(Some(domain)),
        Err(e) if is_missing(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Our metadata on a domain; `None` when it has none or it is unreadable.
pub(crate) fn metadata_of(domain: &Domain) -> Result<Option<SessionMetadata>, virt::error::Error> {
    let kind = sys::VIR_DOMAIN_METADATA_ELEMENT as i32;
    match domain.get_metadata(kind, Some(NAMESPACE), 0) {
        Ok(text) => Ok(SessionMetadata::parse(&text)
            .inspect_err(|e| tracing::warn!(error = %e, "unreadable StreamSpace metadata"))
            .ok()),
        Err(e) if is_missing(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

pub(crate) fn state_of(domain: &Domain) -> Result<DomainState, virt::error::Error> {
    let (state, reason) = domain.get_state()?;
    Ok(DomainState {
        state,
        reason,
        has_managed_save: domain.has_managed_save(0)?,
    })
}

impl Shared {
    /// The session's domain, whoever owns it.
    pub(crate) async fn inspect(&self, session_id: &SessionId) -> PlatformResult<Option<Found>> {
        let name = domain_name(session_id);
        let hypervisor = self.hypervisor.clone();
        self.hypervisor
            .call(move |conn| {
                let failed =
                    |e: &virt::error::Error| hypervisor.error(format!("inspect domain {name}"), e);
                let Some(domain) = lookup(conn, &name).map_err(|e| failed(&e))? else {
                    return Ok(None);
                };
                let found =
                    metadata_of(&domain).and_then(|metadata| Ok((metadata, state_of(&domain)?)));
                match found {
                    Ok((metadata, state)) => Ok(Some(Found {
                        name,
                        metadata,
                        state,
                    })),
                    // Undefined between the lookup and the questions.
                    Err(e) if is_missing(&e) => Ok(None),
                    Err(e) => Err(failed(&e)),
                }
            })
            .await
    }

    pub(crate) fn is_ours(&self, found: &Found) -> bool {
        let owner = found.metadata.as_ref().and_then(SessionMetadata::agent);
        owner == Some(self.agent_id.as_str())
    }

    /// The session's domain if this agent made it.
    pub(crate) async fn inspect_owned(
        &self,
        session_id: &SessionId,
    ) -> PlatformResult<Option<Found>> {
        Ok(self.inspect(session_id).await?.filter(|f| self.is_ours(f)))
    }

    /// Refuses to adopt a domain of our name this agent did not make.
    pub(crate) fn check_owner(&self, found: &Found) -> PlatformResult<()> {
        let name = &found.name;
        let uri = self.hypervisor.uri();
        match found.metadata.as_ref().and_then(SessionMetadata::agent) {
            Some(owner) if self.agent_id == owner => Ok(()),
            Some(owner) => Err(PlatformError::Invalid(format!(
                "domain {name} already exists on libvirt host {uri} and belongs to agent {owner:?}"
            ))),
            None => Err(PlatformError::Invalid(format!(
                "a domain named {name} already exists on libvirt host {uri} and was not created \
                 by StreamSpace: undefine or rename it"
            ))),
        }
    }

    pub(crate) fn report(&self, session_id: &SessionId, found: &Found) -> SessionReport {
        let observed = observe(&found.name, found.state, self.intents.get(session_id));
        let report = SessionReport::new(session_id, observed.phase);
        match observed.message {
            Some(message) => report.with_message(message),
            None => report,
        }
    }

    #[tracing::instrument(skip(self), fields(agent_id = %self.agent_id))]
    pub(crate) async fn status(&self, session_id: &SessionId) -> PlatformResult<SessionReport> {
        let found = self
            .inspect_owned(session_id)
            .await
            .or_not_found(session_id)?;
        Ok(self.report(session_id, &found))
    }

    /// Every domain whose metadata names this agent, sorted by session id,
    /// with whom it belongs to (labels and seal) for adoption.
    #[tracing::instrument(skip(self), fields(agent_id = %self.agent_id))]
    pub(crate) async fn inventory(&self) -> PlatformResult<Vec<SessionReport>> {
        let mut reports: Vec<SessionReport> = self
            .list_own(false)
            .await?
            .into_iter()
            .filter_map(|found| {
                let metadata = found.metadata.as_ref()?;
                let session_id = metadata.session_id()?;
                let report = self.report(&session_id, &found);
                Some(match metadata.origin() {
                    Some(origin) => report.with_origin(origin),
                    None => report,
                })
            })
            .collect();
        reports.sort_by(|a, b| a.session_id.cmp(&b.session_id));
        Ok(reports)
    }

    /// This agent's domains (only running ones with `active_only`).
    pub(crate) async fn list_own(&self, active_only: bool) -> PlatformResult<Vec<Found>> {
        let hypervisor = self.hypervisor.clone();
        let agent_id = self.agent_id.clone();
        self.hypervisor
            .call(move |conn| {
                let flags = match active_only {
                    true => sys::VIR_CONNECT_LIST_DOMAINS_ACTIVE,
                    false => 0,
                };
                let domains = conn
                    .list_all_domains(flags)
                    .map_err(|e| hypervisor.error("list domains", &e))?;
                let mut own = Vec::new();
                for domain in domains {
                    // Domains undefined meanwhile, or not ours, are skipped.
                    let Ok(Some(metadata)) = metadata_of(&domain) else {
                        continue;
                    };
                    if metadata.agent() != Some(agent_id.as_str()) {
                        continue;
                    }
                    let (Ok(name), Ok(state)) = (domain.get_name(), state_of(&domain)) else {
                        continue;
                    };
                    own.push(Found {
                        name,
                        metadata: Some(metadata),
                        state,
                    });
                }
                Ok(own)
            })
            .await
    }

    /// Checks that a template's base disk exists (`Platform::pull`).
    pub(crate) async fn check_base(&self, image: &str) -> PlatformResult<storage::ResolvedBase> {
        let base = BaseImage::parse(image).map_err(PlatformError::Invalid)?;
        let uri = self.hypervisor.uri().to_owned();
        self.hypervisor
            .call(move |conn| storage::resolve_base(conn, &uri, &base))
            .await
    }

    /// A TCP connection to the VM's VNC server, for `port` when the
    /// template lists it as its VNC port: a VM serves nothing else the
    /// agent can reach (it has no address of its own on the host).
    #[tracing::instrument(skip(self), fields(agent_id = %self.agent_id))]
    pub(crate) async fn dial(
        &self,
        session_id: &SessionId,
        port: u16,
    ) -> PlatformResult<Box<dyn SessionStream>> {
        let found = self
            .inspect_owned(session_id)
            .await
            .or_not_found(session_id)?;
        let phase = self.report(session_id, &found).phase;
        if phase != Phase::Running {
            return Err(PlatformError::Invalid(format!(
                "session {session_id} is not running (phase {phase})"
            )));
        }
        let listed = found.metadata.as_ref().is_some_and(|m| {
            m.ports
                .iter()
                .any(|(p, protocol)| *p == port && *protocol == PortProtocol::Vnc)
        });
        if !listed {
            return Err(PlatformError::Invalid(format!(
                "port {port} of session {session_id} is not its VNC port: a virtual machine \
                 serves only its console (QEMU's VNC server) to StreamSpace"
            )));
        }
        let name = found.name.clone();
        let hypervisor = self.hypervisor.clone();
        let description = self
            .hypervisor
            .call(move |conn| {
                let failed =
                    |e: &virt::error::Error| hypervisor.error(format!("describe domain {name}"), e);
                let domain = lookup(conn, &name).map_err(|e| failed(&e))?;
                let domain =
                    domain.ok_or_else(|| PlatformError::NotFound(SessionId::from(name.clone())))?;
                domain.get_xml_desc(0).map_err(|e| failed(&e))
            })
            .await
            .map_err(|e| match e {
                PlatformError::NotFound(_) => PlatformError::NotFound(session_id.clone()),
                e => e,
            })?;
        let address = vnc_address(&description).ok_or_else(|| {
            PlatformError::Unavailable(format!(
                "the virtual machine of session {session_id} has no VNC server listening on \
                 loopback yet"
            ))
        })?;
        let unreachable = |cause: String| {
            PlatformError::Unavailable(format!(
                "cannot connect to the VNC server of session {session_id} at {address}: {cause}"
            ))
        };
        let stream = tokio::time::timeout(DIAL_TIMEOUT, tokio::net::TcpStream::connect(address))
            .await
            .map_err(|_| unreachable("timed out".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        // VNC is chatty with small messages; Nagle would add latency to each.
        stream
            .set_nodelay(true)
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(Box::new(stream))
    }
}

/// Where a running domain's VNC server listens, from its live XML: the
/// port libvirt picked and its loopback address. Anything not on loopback
/// is refused (this platform never puts it elsewhere; someone else did).
pub(crate) fn vnc_address(description: &str) -> Option<SocketAddr> {
    let events = xml::events(description).ok()?;
    let graphics = events.iter().find_map(|event| match event {
        Event::Start { name, attrs, .. }
            if name == "graphics" && attrs.get("type").map(String::as_str) == Some("vnc") =>
        {
            Some(attrs)
        }
        _ => None,
    })?;
    let port: u16 = graphics.get("port")?.parse().ok().filter(|&p| p > 0)?;
    let listen = graphics
        .get("listen")
        .map_or(Ok(IpAddr::V4(Ipv4Addr::LOCALHOST)), |a| a.parse::<IpAddr>());
    let ip = listen.ok().filter(IpAddr::is_loopback)?;
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vnc_port_is_read_from_the_live_description() {
        let live = "<domain type='qemu' id='3'><name>streamspace-s1</name><devices>\
            <!-- <graphics type='vnc' port='1'/> -->\
            <graphics type='spice' port='5901'/>\
            <graphics type='vnc' port='5907' autoport='yes' listen='127.0.0.1'>\
            <listen type='address' address='127.0.0.1'/></graphics></devices></domain>";
        assert_eq!(
            vnc_address(live),
            Some("127.0.0.1:5907".parse().expect("addr"))
        );
        let not_yet =
            "<domain><devices><graphics type='vnc' port='-1' autoport='yes'/></devices></domain>";
        assert_eq!(vnc_address(not_yet), None);
        let exposed = "<domain><devices><graphics type='vnc' port='5900' listen='0.0.0.0'/></devices></domain>";
        assert_eq!(vnc_address(exposed), None, "never dialled beyond loopback");
    }
}
