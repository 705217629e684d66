//! Templates: what a session is made from, and the validation that keeps bad
//! templates out of the store.

use crate::store::User;
use crate::validate::{FieldError, check_env, check_slug};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use streamspace_protocol::{HomeVolume, PortProtocol, PortSpec, Resources, SessionSpec};

/// Platforms a template may name.
pub const PLATFORMS: [&str; 2] = ["docker", "kubernetes"];

/// A validated template, as stored and as returned by the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TemplateSpec {
    pub name: String,
    pub display_name: String,
    pub description: String,
    pub category: String,
    pub icon: String,
    pub image: String,
    pub ports: Vec<PortSpec>,
    pub env: BTreeMap<String, String>,
    pub resources: Resources,
    pub persistent_home: bool,
    pub home_path: String,
    /// As written by the user (`"30m"`); `None` means never idle out.
    pub idle_timeout: Option<String>,
    /// Platforms the template may run on; empty means any.
    pub platforms: Vec<String>,
}

impl TemplateSpec {
    pub fn idle_timeout(&self) -> Option<Duration> {
        parse_idle_timeout(self.idle_timeout.as_deref())
    }

    pub fn allows_platform(&self, platform: &str) -> bool {
        self.platforms.is_empty() || self.platforms.iter().any(|p| p == platform)
    }

    /// What an agent needs to run this template (stored as `template_id`)
    /// as `session_id` for `owner`; per-session resources and env override
    /// the template's.
    pub fn session_spec(
        &self,
        template_id: &str,
        session_id: &str,
        owner: &User,
        resources: Resources,
        env: BTreeMap<String, String>,
    ) -> SessionSpec {
        let mut merged_env = self.env.clone();
        merged_env.extend(env);
        SessionSpec {
            session_id: session_id.to_owned(),
            user: owner.username.clone(),
            user_id: owner.id.clone(),
            template: self.name.clone(),
            template_id: template_id.to_owned(),
            image: self.image.clone(),
            env: merged_env,
            ports: self.ports.clone(),
            resources: Resources {
                cpu: resources.cpu.or(self.resources.cpu),
                memory: resources.memory.or(self.resources.memory),
            },
            home: self.persistent_home.then(|| HomeVolume {
                volume: home_volume(&owner.id, template_id),
                path: self.home_path.clone(),
                legacy: owner
                    .legacy_home
                    .then(|| format!("streamspace-home-{}-{}", owner.username, self.name)),
            }),
            ..Default::default()
        }
    }
}

/// The persistent home of a user and template. Keyed by ids, which are
/// never reused: joined names were ambiguous (`alice` + `dev-desktop` and
/// `alice-dev` + `desktop`), and a re-created username would have inherited
/// the old user's home.
pub fn home_volume(user_id: &str, template_id: &str) -> String {
    format!("streamspace-home-{user_id}-{template_id}")
}

/// A template as a client writes it; optional fields get defaults.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "name": "desktop",
    "display_name": "Desktop",
    "image": "streamspace/desktop:local",
    "resources": {"cpu": "1", "memory": "512Mi"},
    "idle_timeout": "30m"
}))]
pub struct TemplateInput {
    /// Unique; part of container and volume names.
    #[schema(pattern = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
    pub name: String,
    /// Defaults to `name`.
    #[serde(default)]
    #[schema(max_length = 100)]
    pub display_name: Option<String>,
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub description: String,
    /// Defaults to `Other`.
    #[serde(default)]
    pub category: Option<String>,
    /// An image URL.
    #[serde(default)]
    pub icon: String,
    /// `[registry/]repository[:tag][@digest]`, repository in lowercase.
    #[schema(example = "streamspace/desktop:local")]
    pub image: String,
    /// Unique names and numbers, at least one `vnc`; defaults to
    /// `[{"name": "vnc", "port": 5901, "protocol": "vnc"}]`.
    #[serde(default)]
    pub ports: Option<Vec<PortInput>>,
    /// Keys are `[A-Za-z_][A-Za-z0-9_]*`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub resources: Resources,
    /// A volume per user and template, kept when sessions end.
    #[serde(default)]
    pub persistent_home: bool,
    /// An absolute path; defaults to `/home/user`.
    #[serde(default)]
    pub home_path: Option<String>,
    /// `"30m"`, `"2h"`; `"0"` or empty means never.
    #[serde(default)]
    #[schema(pattern = r"^(0|[0-9]+(ms|s|m|h|d|w|y))?$", example = "30m")]
    pub idle_timeout: Option<String>,
    /// A subset of `docker`, `kubernetes`; empty means any.
    #[serde(default)]
    pub platforms: Vec<String>,
}

/// A port as written: `port` is wide so that 70000 gets our message rather
/// than serde's "expected u16".
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PortInput {
    #[schema(pattern = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
    pub name: String,
    #[schema(minimum = 1, maximum = 65535)]
    pub port: i64,
    pub protocol: PortProtocol,
}

const DEFAULT_HOME: &str = "/home/user";
const DEFAULT_VNC_PORT: u16 = 5901;

impl TemplateInput {
    pub fn validate(self) -> Result<TemplateSpec, FieldError> {
        check_slug("name", &self.name)?;
        check_image(&self.image)?;
        let ports = check_ports(self.ports)?;
        check_env("env", &self.env)?;
        let home_path = self.home_path.unwrap_or_else(|| DEFAULT_HOME.to_owned());
        if !home_path.starts_with('/') || home_path.contains('\0') {
            return Err(FieldError::new(
                "home_path",
                format!("{home_path:?} must be an absolute path such as \"/home/user\""),
            ));
        }
        let idle_timeout = check_idle_timeout(self.idle_timeout)?;
        for platform in &self.platforms {
            if !PLATFORMS.contains(&platform.as_str()) {
                return Err(FieldError::new(
                    "platforms",
                    format!("unknown platform {platform:?}: use one of {PLATFORMS:?}"),
                ));
            }
        }
        check_length("display_name", self.display_name.as_deref(), 100)?;
        check_length("description", Some(&self.description), 2000)?;
        Ok(TemplateSpec {
            display_name: self.display_name.unwrap_or_else(|| self.name.clone()),
            name: self.name,
            description: self.description,
            category: self.category.unwrap_or_else(|| "Other".to_owned()),
            icon: self.icon,
            image: self.image,
            ports,
            env: self.env,
            resources: self.resources,
            persistent_home: self.persistent_home,
            home_path,
            idle_timeout,
            platforms: self.platforms,
        })
    }
}

fn check_length(field: &str, value: Option<&str>, max: usize) -> Result<(), FieldError> {
    match value {
        Some(v) if v.chars().count() > max => Err(FieldError::new(
            field,
            format!("must be at most {max} characters"),
        )),
        _ => Ok(()),
    }
}

pub fn check_image(image: &str) -> Result<(), FieldError> {
    let valid = !image.is_empty()
        && image == image.trim()
        && image.parse::<oci_spec::distribution::Reference>().is_ok()
        && repository_of(image) == repository_of(image).to_lowercase();
    if valid {
        Ok(())
    } else {
        Err(FieldError::new(
            "image",
            format!(
                "{image:?} is not a valid image reference: use [registry/]repository[:tag][@digest] \
                 in lowercase, e.g. \"streamspace/desktop:local\""
            ),
        ))
    }
}

/// The reference without its digest and tag: the part Docker requires to be
/// lowercase (tags may use capitals).
fn repository_of(image: &str) -> &str {
    let name = image.split('@').next().unwrap_or(image);
    match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => name,
    }
}

fn check_ports(ports: Option<Vec<PortInput>>) -> Result<Vec<PortSpec>, FieldError> {
    let Some(ports) = ports else {
        return Ok(vec![PortSpec {
            name: "vnc".into(),
            port: DEFAULT_VNC_PORT,
            protocol: PortProtocol::Vnc,
        }]);
    };
    let mut checked: Vec<PortSpec> = Vec::with_capacity(ports.len());
    for (i, p) in ports.into_iter().enumerate() {
        let field = format!("ports[{i}]");
        let port = u16::try_from(p.port)
            .ok()
            .filter(|&port| port > 0)
            .ok_or_else(|| {
                FieldError::new(
                    format!("{field}.port"),
                    format!("{} is not a port: use 1 to 65535", p.port),
                )
            })?;
        check_slug(&format!("{field}.name"), &p.name)?;
        if checked.iter().any(|c| c.name == p.name || c.port == port) {
            return Err(FieldError::new(
                field,
                "port names and numbers must be unique".to_owned(),
            ));
        }
        checked.push(PortSpec {
            name: p.name,
            port,
            protocol: p.protocol,
        });
    }
    if !checked.iter().any(|p| p.protocol == PortProtocol::Vnc) {
        return Err(FieldError::new(
            "ports",
            "at least one port must have protocol \"vnc\" (the desktop viewers connect to it)"
                .to_owned(),
        ));
    }
    Ok(checked)
}

pub fn check_idle_timeout(value: Option<String>) -> Result<Option<String>, FieldError> {
    let Some(text) = value.filter(|t| !t.trim().is_empty()) else {
        return Ok(None);
    };
    if text.trim() == "0" {
        return Ok(None);
    }
    match humantime::parse_duration(text.trim()) {
        Ok(d) if d.is_zero() => Ok(None),
        Ok(_) => Ok(Some(text.trim().to_owned())),
        Err(_) => Err(FieldError::new(
            "idle_timeout",
            format!("{text:?} is not a duration: use e.g. \"30m\", \"2h\" or \"0\" for never"),
        )),
    }
}

/// A validated idle timeout as a duration; `None` means never.
pub fn parse_idle_timeout(text: Option<&str>) -> Option<Duration> {
    text.and_then(|t| humantime::parse_duration(t.trim()).ok())
        .filter(|d| !d.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(value: serde_json::Value) -> TemplateInput {
        serde_json::from_value(value).expect("input parses")
    }

    fn field_of(value: serde_json::Value) -> String {
        input(value).validate().expect_err("must be refused").field
    }

    #[test]
    fn minimal_template_gets_defaults() {
        let spec = input(json!({"name": "desktop", "image": "streamspace/desktop:local"}))
            .validate()
            .expect("valid");
        assert_eq!(spec.display_name, "desktop");
        assert_eq!(spec.ports[0].port, 5901);
        assert_eq!(spec.home_path, "/home/user");
        assert_eq!(spec.idle_timeout(), None);
        assert!(spec.allows_platform("docker"));
    }

    #[test]
    fn bad_fields_are_named() {
        let base = |k: &str, v: serde_json::Value| {
            let mut t = json!({"name": "desktop", "image": "streamspace/desktop:local"});
            t[k] = v;
            t
        };
        assert_eq!(field_of(base("name", json!("Bad Name"))), "name");
        assert_eq!(field_of(base("image", json!("UPPER/case:1"))), "image");
        assert_eq!(field_of(base("image", json!("a b"))), "image");
        assert_eq!(
            field_of(base(
                "ports",
                json!([{"name": "vnc", "port": 70000, "protocol": "vnc"}])
            )),
            "ports[0].port"
        );
        assert_eq!(
            field_of(base(
                "ports",
                json!([{"name": "web", "port": 80, "protocol": "http"}])
            )),
            "ports"
        );
        assert_eq!(field_of(base("env", json!({"1BAD": "x"}))), "env");
        assert_eq!(
            field_of(base("idle_timeout", json!("soon"))),
            "idle_timeout"
        );
        assert_eq!(field_of(base("platforms", json!(["vmware"]))), "platforms");
        assert_eq!(field_of(base("home_path", json!("home"))), "home_path");
    }

    #[test]
    fn idle_timeout_zero_means_never() {
        for never in ["0", "", "0s"] {
            let spec = input(json!({"name": "d", "image": "d:1", "idle_timeout": never}))
                .validate()
                .expect("valid");
            assert_eq!(spec.idle_timeout, None, "{never:?}");
        }
        let spec = input(json!({"name": "d", "image": "d:1", "idle_timeout": "30m"}))
            .validate()
            .expect("valid");
        assert_eq!(spec.idle_timeout(), Some(Duration::from_secs(1800)));
    }

    #[test]
    fn valid_image_references() {
        for ok in [
            "streamspace/desktop:local",
            "debian",
            "registry.example.com:5000/team/app:1.2",
            "ghcr.io/x/y@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            assert!(check_image(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            " debian",
            "debian:",
            "Debian",
            "a//b",
            "x:tag with space",
        ] {
            assert!(check_image(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn homes_are_keyed_by_ids_and_legacy_names_only_for_old_users() {
        let template = |name: &str| {
            input(json!({"name": name, "image": "d:1", "persistent_home": true}))
                .validate()
                .expect("valid")
        };
        let user = |id: &str, username: &str, legacy_home| User {
            id: id.into(),
            username: username.into(),
            role: crate::store::Role::User,
            legacy_home,
        };
        let home = |t: &TemplateSpec, template_id: &str, owner: &User| {
            t.session_spec(
                template_id,
                "s1",
                owner,
                Resources::default(),
                BTreeMap::new(),
            )
            .home
            .expect("a home")
        };
        // Joined names would collide: alice + dev-desktop, alice-dev + desktop.
        let a = home(&template("dev-desktop"), "t1", &user("u1", "alice", true));
        let b = home(&template("desktop"), "t2", &user("u2", "alice-dev", true));
        assert_eq!(a.volume, "streamspace-home-u1-t1");
        assert_eq!(b.volume, "streamspace-home-u2-t2");
        assert_eq!(a.legacy, b.legacy, "the old names were ambiguous");
        assert_eq!(
            a.legacy.as_deref(),
            Some("streamspace-home-alice-dev-desktop")
        );
        // A user created after the upgrade never had an old-style home.
        let new = home(&template("desktop"), "t2", &user("u3", "alice-dev", false));
        assert_eq!(new.legacy, None);
    }
}
