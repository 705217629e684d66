//! Where a web app is: `/apps/{session}/{port}/…` on the control plane's
//! own origin (path mode), or the root of `{session}--{port}.{apps domain}`
//! (subdomain mode, an origin of its own).

use streamspace_protocol::SessionId;
use url::Url;

/// Path mode's prefix.
pub const PATH_PREFIX: &str = "/apps/";
/// Where, under an app's base, a ticket is exchanged for its cookie. Dotted
/// so it is unlikely to clash with an app's own paths.
pub const AUTH_PATH: &str = "/.streamspace/auth";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Path,
    Subdomain,
}

/// One port of one session, as a browser addresses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppAddress {
    pub session_id: SessionId,
    pub port: u16,
    pub mode: Mode,
}

impl AppAddress {
    /// The app a `Host` names under `domain`: `{session}--{port}.{domain}`,
    /// with or without `:port`, in any letter case.
    pub fn from_host(host: &str, domain: &str) -> Option<Self> {
        let host = host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                name
            } else {
                host
            }
        });
        let host = host.to_ascii_lowercase();
        let label = host.strip_suffix(domain)?.strip_suffix('.')?;
        let (session, port) = label.rsplit_once("--")?;
        if session.is_empty() || session.contains('.') {
            return None;
        }
        Some(AppAddress {
            session_id: session.into(),
            port: port.parse().ok().filter(|&p| p > 0)?,
            mode: Mode::Subdomain,
        })
    }

    /// The path prefix of the app: `/apps/{session}/{port}` in path mode,
    /// nothing in subdomain mode.
    pub fn base(&self) -> String {
        match self.mode {
            Mode::Path => format!("{PATH_PREFIX}{}/{}", self.session_id, self.port),
            Mode::Subdomain => String::new(),
        }
    }

    /// The app's origin: the control plane's own in path mode; in subdomain
    /// mode its host under `domain`, with the control plane's scheme and port.
    pub fn origin(&self, public: &Url, domain: Option<&str>) -> String {
        let public_origin = public.origin().ascii_serialization();
        match (self.mode, domain) {
            (Mode::Subdomain, Some(domain)) => {
                let port = public.port().map(|p| format!(":{p}")).unwrap_or_default();
                format!(
                    "{}://{}--{}.{domain}{port}",
                    public.scheme(),
                    self.session_id,
                    self.port
                )
            }
            _ => public_origin,
        }
    }
}

/// A path the browser may be sent back to after a redirect: within the
/// app, never another site (`//evil.example`, `/\evil.example`).
pub fn safe_return_path(to: Option<&str>) -> String {
    match to {
        Some(to)
            if to.starts_with('/')
                && !to.starts_with("//")
                && !to.starts_with("/\\")
                && to.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            to.to_owned()
        }
        _ => "/".to_owned(),
    }
}

/// Whether a request is for a web app, by path or host.
pub fn is_app_request<B>(request: &http::Request<B>, apps_domain: Option<&str>) -> bool {
    if request.uri().path().starts_with(PATH_PREFIX) {
        return true;
    }
    let host = request
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok());
    apps_domain
        .zip(host)
        .is_some_and(|(domain, host)| AppAddress::from_host(host, domain).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_name_apps_under_the_domain_only() {
        let app = AppAddress::from_host("abc-1--6080.apps.example.com:8443", "apps.example.com");
        assert_eq!(
            app,
            Some(AppAddress {
                session_id: "abc-1".into(),
                port: 6080,
                mode: Mode::Subdomain
            })
        );
        for host in [
            "apps.example.com",
            "abc--6080.apps.example.com.evil.com",
            "abc--6080.evilapps.example.com",
            "abc--0.apps.example.com",
            "abc--99999.apps.example.com",
            "a.b--80.apps.example.com",
            "--80.apps.example.com",
            "abc.apps.example.com",
        ] {
            assert_eq!(
                AppAddress::from_host(host, "apps.example.com"),
                None,
                "{host}"
            );
        }
    }

    #[test]
    fn origins_follow_the_control_planes_scheme_and_port() {
        let public = Url::parse("https://streamspace.example.com:8443/").expect("url");
        let app = AppAddress {
            session_id: "s1".into(),
            port: 3000,
            mode: Mode::Subdomain,
        };
        assert_eq!(
            app.origin(&public, Some("apps.example.com")),
            "https://s1--3000.apps.example.com:8443"
        );
        assert_eq!(app.base(), "");
        let path = AppAddress {
            mode: Mode::Path,
            ..app
        };
        assert_eq!(
            path.origin(&public, None),
            "https://streamspace.example.com:8443"
        );
        assert_eq!(path.base(), "/apps/s1/3000");
    }

    #[test]
    fn return_paths_stay_on_the_app() {
        assert_eq!(safe_return_path(Some("/a/b?c=1")), "/a/b?c=1");
        for bad in [
            "//evil.example/",
            "/\\evil.example",
            "https://evil.example",
            "a",
            "/a b",
        ] {
            assert_eq!(safe_return_path(Some(bad)), "/", "{bad}");
        }
        assert_eq!(safe_return_path(None), "/");
    }
}
