//! The session's labels, kept in the domain's `<metadata>` under our own
//! namespace: libvirt keeps an application's metadata element with the
//! domain across restarts of libvirtd and of the agent, so a restarted
//! agent finds every domain it owns by reading it, as the Docker agent
//! finds its containers by label. Besides the labels (owner, ids and the
//! control plane's seal) it records what the agent needs to find the
//! session's parts again: the ports its template lists, its overlay volume
//! and its serial log.

use crate::xml::{self, Event, Writer};
use std::collections::BTreeMap;
use streamspace_protocol::{AgentId, PortProtocol, SessionId, SessionOrigin, SessionSpec, labels};

/// Our namespace in the domain's `<metadata>` (libvirt keys an
/// application's element by it).
pub const NAMESPACE: &str = "https://streamspace.io/xmlns/libvirt/session/1";
/// The prefix the element is written with; libvirt keeps it.
pub const PREFIX: &str = "streamspace";

/// What a session's domain records about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionMetadata {
    /// `io.streamspace.*` labels, as on Docker.
    pub labels: BTreeMap<String, String>,
    /// The ports the template lists (a VM serves only VNC: see `connect`).
    pub ports: Vec<(u16, PortProtocol)>,
    /// The session's copy-on-write overlay: pool and volume.
    pub overlay: Option<(String, String)>,
    /// The serial console's log file.
    pub serial_log: Option<String>,
}

impl SessionMetadata {
    /// The labels a session's domain carries, with the seal when the
    /// control plane sent one (it lets a control plane that lost its
    /// record adopt the session, and no agent invent one).
    pub fn of(spec: &SessionSpec, agent_id: &AgentId) -> Self {
        let mut labels = BTreeMap::from([
            (labels::SESSION_ID.to_owned(), spec.session_id.to_string()),
            (labels::USER.to_owned(), spec.user.clone()),
            (labels::TEMPLATE.to_owned(), spec.template.clone()),
            (labels::AGENT.to_owned(), agent_id.to_string()),
        ]);
        for (key, value) in [
            (labels::USER_ID, spec.user_id.as_str()),
            (labels::TEMPLATE_ID, spec.template_id.as_str()),
            (labels::SEAL, spec.seal.as_str()),
        ] {
            if !value.is_empty() {
                labels.insert(key.to_owned(), value.to_owned());
            }
        }
        SessionMetadata {
            labels,
            ports: spec.ports.iter().map(|p| (p.port, p.protocol)).collect(),
            overlay: None,
            serial_log: None,
        }
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }

    pub fn session_id(&self) -> Option<SessionId> {
        self.label(labels::SESSION_ID).map(SessionId::from)
    }

    pub fn agent(&self) -> Option<&str> {
        self.label(labels::AGENT)
    }

    pub fn origin(&self) -> Option<SessionOrigin> {
        SessionOrigin::from_labels(|key| self.label(key))
    }

    /// The element put in `<metadata>` (with its namespace declared on it,
    /// as libvirt requires).
    pub fn render(&self, w: &mut Writer) {
        let xmlns = format!("xmlns:{PREFIX}");
        w.open("streamspace:session", &[(xmlns.as_str(), NAMESPACE)]);
        for (key, value) in &self.labels {
            w.empty("streamspace:label", &[("key", key), ("value", value)]);
        }
        for (port, protocol) in &self.ports {
            let number = port.to_string();
            w.empty(
                "streamspace:port",
                &[("number", &number), ("protocol", protocol_name(*protocol))],
            );
        }
        if let Some((pool, volume)) = &self.overlay {
            w.empty("streamspace:overlay", &[("pool", pool), ("volume", volume)]);
        }
        if let Some(path) = &self.serial_log {
            w.empty("streamspace:serial-log", &[("path", path)]);
        }
        w.close();
    }

    /// Reads the element back, as `virDomainGetMetadata` returns it (libvirt
    /// may drop or change the prefix: elements are matched by local name).
    pub fn parse(text: &str) -> Result<Self, xml::XmlError> {
        let mut metadata = SessionMetadata::default();
        for event in xml::events(text)? {
            let Event::Start { attrs, .. } = &event else {
                continue;
            };
            let attr = |key: &str| attrs.get(key).cloned();
            match event.local_name() {
                Some("label") => {
                    if let (Some(key), Some(value)) = (attr("key"), attr("value")) {
                        metadata.labels.insert(key, value);
                    }
                }
                Some("port") => {
                    let number = attr("number").and_then(|n| n.parse().ok());
                    let protocol = attr("protocol").and_then(|p| parse_protocol(&p));
                    if let (Some(number), Some(protocol)) = (number, protocol) {
                        metadata.ports.push((number, protocol));
                    }
                }
                Some("overlay") => {
                    metadata.overlay = attr("pool").zip(attr("volume"));
                }
                Some("serial-log") => metadata.serial_log = attr("path"),
                _ => {}
            }
        }
        Ok(metadata)
    }
}

fn protocol_name(protocol: PortProtocol) -> &'static str {
    match protocol {
        PortProtocol::Vnc => "vnc",
        PortProtocol::Http => "http",
        PortProtocol::Https => "https",
        PortProtocol::Audio => "audio",
        PortProtocol::Microphone => "microphone",
    }
}

fn parse_protocol(text: &str) -> Option<PortProtocol> {
    [
        PortProtocol::Vnc,
        PortProtocol::Http,
        PortProtocol::Https,
        PortProtocol::Audio,
        PortProtocol::Microphone,
    ]
    .into_iter()
    .find(|p| protocol_name(*p) == text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed_spec() -> SessionSpec {
        let mut spec = SessionSpec::fixture("s1").with_owner("al<i>ce & \"bob\"", "vm'demo");
        spec.user_id = "u1".into();
        spec.template_id = "t1".into();
        spec.seal = "0123456789abcdef0123456789abcdef".into();
        spec
    }

    #[test]
    fn labels_seal_ports_and_parts_round_trip() {
        let mut metadata = SessionMetadata::of(&sealed_spec(), &"agent-1".into());
        metadata.overlay = Some(("streamspace".into(), "streamspace-s1.qcow2".into()));
        metadata.serial_log = Some("/var/log/x & y.log".into());
        let mut w = Writer::new();
        metadata.render(&mut w);
        let text = w.finish();
        assert!(text.starts_with(&format!(
            "<streamspace:session xmlns:streamspace=\"{NAMESPACE}\">"
        )));
        let back = SessionMetadata::parse(&text).expect("parses");
        assert_eq!(back, metadata);
        assert_eq!(back.session_id(), Some("s1".into()));
        assert_eq!(back.agent(), Some("agent-1"));
        let origin = back.origin().expect("origin");
        assert_eq!(origin.user, "al<i>ce & \"bob\"");
        assert_eq!(origin.template, "vm'demo");
        assert_eq!(origin.seal.as_deref(), Some(sealed_spec().seal.as_str()));
        assert_eq!(origin.user_id, Some("u1".into()));
    }

    #[test]
    fn libvirt_s_rewrite_of_the_element_reads_the_same() {
        // What `virsh metadata --uri` printed for an element we defined:
        // namespace gone, double quotes, entities kept.
        let text = "<session>\n  <label key=\"io.streamspace.user\" value=\"a&amp;b &quot;x&quot;\"/>\n  \
                    <port number=\"5900\" protocol=\"vnc\"/>\n</session>\n";
        let back = SessionMetadata::parse(text).expect("parses");
        assert_eq!(back.label(labels::USER), Some("a&b \"x\""));
        assert_eq!(back.ports, [(5900, PortProtocol::Vnc)]);
    }

    #[test]
    fn an_unsealed_spec_has_no_seal_label() {
        let metadata = SessionMetadata::of(&SessionSpec::fixture("s2"), &"a".into());
        assert_eq!(metadata.label(labels::SEAL), None);
        assert_eq!(metadata.label(labels::USER_ID), None);
        assert_eq!(metadata.origin().and_then(|o| o.seal), None);
    }
}
