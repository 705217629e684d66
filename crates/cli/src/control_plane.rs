//! Where the control plane is and who is asking: the flags every command
//! that talks to the API as a user takes (`connect`, `sessions`,
//! `templates`, …), falling back to the login `streamspace login` stored.

use crate::client::Client;
use crate::config;
use crate::failure::{AUTH, Failure};
use crate::trust::CaCertArg;
use clap::Args;
use url::Url;

/// Where a bare `--token` goes when no server is named or stored.
const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

#[derive(Args, Debug, Clone)]
pub struct ControlPlaneArgs {
    /// URL of the control plane (default: the stored login's, else
    /// http://127.0.0.1:8080).
    #[arg(long, env = "STREAMSPACE_SERVER")]
    pub server: Option<Url>,
    /// API or login token (default: the one `streamspace login` stored).
    #[arg(long, env = "STREAMSPACE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(flatten)]
    pub ca: CaCertArg,
}

impl ControlPlaneArgs {
    /// The server and token to use: the flags (or their environment
    /// variables), else the stored login. A stored token is only ever sent
    /// to the server it was made for.
    pub fn resolve(&self) -> anyhow::Result<(Url, String)> {
        if let Some(token) = self.token.clone().filter(|t| !t.is_empty()) {
            let server = match &self.server {
                Some(server) => server.clone(),
                None => config::load()?
                    .map(|stored| stored.server)
                    .unwrap_or(Url::parse(DEFAULT_SERVER)?),
            };
            return Ok((server, token));
        }
        let Some(stored) = config::load()? else {
            return Err(Failure::new(
                AUTH,
                "not logged in: run `streamspace login --server URL`, or pass --token",
            )
            .into());
        };
        if let Some(server) = &self.server
            && !same_server(server, &stored.server)
        {
            return Err(Failure::new(
                AUTH,
                format!(
                    "the stored login is for {}, not {server}: run `streamspace login --server {server}`, or pass --token",
                    stored.server
                ),
            )
            .into());
        }
        Ok((stored.server, stored.token))
    }

    /// An API client for the resolved server and token.
    pub fn client(&self) -> anyhow::Result<Client> {
        let (server, token) = self.resolve()?;
        Client::new(server, token, &self.ca)
    }
}

/// Whether two URLs name the same server (a trailing slash aside).
fn same_server(a: &Url, b: &Url) -> bool {
    a.origin() == b.origin() && a.path().trim_end_matches('/') == b.path().trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_login_matches_only_its_own_server() {
        let url = |s: &str| Url::parse(s).expect("url");
        let stored = url("https://ss.example.com/");
        assert!(same_server(&url("https://ss.example.com"), &stored));
        assert!(!same_server(&url("http://ss.example.com"), &stored));
        assert!(!same_server(&url("https://ss.example.com:8443"), &stored));
        assert!(!same_server(&url("https://evil.example.com"), &stored));
        assert!(!same_server(&url("https://ss.example.com/other"), &stored));
    }
}
