//! Session specs for tests (feature `test-fixtures`): one desktop to start
//! from, and builders for what a test cares about, instead of a struct
//! literal in every crate that falls behind each new field.

use crate::ids::SessionId;
use crate::quantity::{Cpu, Memory};
use crate::session::{HomeVolume, PortProtocol, PortSpec, RegistryAuth, Resources, SessionSpec};

impl SessionSpec {
    /// Alice's `desktop` session: image `streamspace/desktop:local`, VNC on
    /// 5901, no environment, resource limits or home.
    pub fn fixture(session_id: impl Into<SessionId>) -> Self {
        SessionSpec {
            session_id: session_id.into(),
            user: "alice".into(),
            template: "desktop".into(),
            image: "streamspace/desktop:local".into(),
            ports: vec![PortSpec::new("vnc", 5901, PortProtocol::Vnc)],
            ..SessionSpec::default()
        }
    }

    /// Owned by `user` (a username), made from template `template` (a name).
    pub fn with_owner(mut self, user: &str, template: &str) -> Self {
        self.user = user.into();
        self.template = template.into();
        self
    }

    pub fn with_image(mut self, image: &str) -> Self {
        self.image = image.into();
        self
    }

    /// One more environment variable.
    pub fn with_env(mut self, key: &str, value: &str) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    /// The VNC port moved to `port`.
    pub fn with_vnc_port(mut self, port: u16) -> Self {
        self.ports = vec![PortSpec::new("vnc", port, PortProtocol::Vnc)];
        self
    }

    /// No ports at all.
    pub fn without_ports(mut self) -> Self {
        self.ports.clear();
        self
    }

    /// Limits written as in a template (`"1500m"`, `"512Mi"`).
    pub fn with_limits(self, cpu: &str, memory: &str) -> Self {
        self.with_resources(Resources {
            cpu: Some(cpu.parse::<Cpu>().expect("a test's cpu")),
            memory: Some(memory.parse::<Memory>().expect("a test's memory")),
            gpu: None,
        })
    }

    pub fn with_resources(mut self, resources: Resources) -> Self {
        self.resources = resources;
        self
    }

    /// A persistent home `volume` at `/home/user`.
    pub fn with_home(mut self, volume: &str) -> Self {
        self.home = Some(HomeVolume {
            volume: volume.into(),
            path: "/home/user".into(),
            legacy: None,
        });
        self
    }

    /// The template's credentials for the image's registry.
    pub fn with_registry_auth(mut self, username: &str, password: &str) -> Self {
        self.registry_auth = Some(RegistryAuth {
            username: username.into(),
            password: password.into(),
        });
        self
    }

    /// The home (see [`SessionSpec::with_home`]) names `legacy` as the one
    /// the user had before homes were keyed by ids.
    pub fn with_legacy_home(mut self, legacy: Option<&str>) -> Self {
        if let Some(home) = self.home.as_mut() {
            home.legacy = legacy.map(str::to_owned);
        }
        self
    }
}
