//! A browser's view of a session's web app: it opens the app from the
//! control plane with its login (following the ticket redirect by hand, so
//! each hop can be checked), keeps the app's cookie, and then talks to the
//! app by path (`/apps/{session}/{port}/`) or by host
//! (`{session}--{port}.{apps domain}`, resolved to the control plane).

use anyhow::{Context, bail};
use reqwest::header::{COOKIE, HeaderMap, LOCATION, SET_COOKIE};
use reqwest::{Method, StatusCode, redirect};
use url::Url;

/// How the app is addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppMode {
    Path,
    Subdomain,
}

impl AppMode {
    fn name(self) -> &'static str {
        match self {
            AppMode::Path => "path",
            AppMode::Subdomain => "subdomain",
        }
    }
}

/// One app, opened by one user.
pub struct AppBrowser {
    /// The app's root: `http://127.0.0.1:P/apps/{id}/{port}/` or
    /// `http://{id}--{port}.{domain}:P/`.
    pub root: Url,
    /// `streamspace_app=…`, as the browser would send it.
    pub cookie: String,
    http: reqwest::Client,
}

impl AppBrowser {
    /// Opens `port` of session `id` as the user whose login `token` is.
    pub async fn open(
        base: &Url,
        token: &str,
        id: &str,
        port: u16,
        mode: AppMode,
        apps_domain: Option<&str>,
    ) -> anyhow::Result<Self> {
        let http = client(base, id, port, apps_domain)?;
        let open = base.join(&format!(
            "/api/v1/sessions/{id}/apps/{port}?mode={}",
            mode.name()
        ))?;
        let answer = http.get(open).bearer_auth(token).send().await?;
        let ticket_url = redirect_target(base, &answer)?;
        let answer = http.get(ticket_url.clone()).send().await?;
        let cookie = app_cookie(answer.headers())
            .with_context(|| format!("no app cookie from {ticket_url}: {}", answer.status()))?;
        let root = redirect_target(&ticket_url, &answer)?;
        Ok(AppBrowser { root, cookie, http })
    }

    /// A request to `path` (relative to the app's root) with the app's
    /// cookie and `extra_cookies` (`a=1; b=2`).
    pub fn request(
        &self,
        method: Method,
        path: &str,
        extra_cookies: &str,
    ) -> reqwest::RequestBuilder {
        let url = self
            .root
            .join(path.trim_start_matches('/'))
            .expect("a path");
        let cookies = match extra_cookies {
            "" => self.cookie.clone(),
            extra => format!("{extra}; {}", self.cookie),
        };
        self.http.request(method, url).header(COOKIE, cookies)
    }

    /// The app's page at `path` must load: its body.
    pub async fn page(&self, path: &str) -> anyhow::Result<String> {
        let answer = self.request(Method::GET, path, "").send().await?;
        if answer.status() != StatusCode::OK {
            bail!("{path}: {} {}", answer.status(), answer.text().await?);
        }
        Ok(answer.text().await?)
    }
}

/// A client that does not follow redirects and finds app hosts on the
/// control plane's own address.
fn client(
    base: &Url,
    id: &str,
    port: u16,
    apps_domain: Option<&str>,
) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder().redirect(redirect::Policy::none());
    if let Some(domain) = apps_domain {
        let addr = base
            .socket_addrs(|| None)?
            .into_iter()
            .next()
            .context("the control plane has no address")?;
        builder = builder.resolve(&format!("{id}--{port}.{domain}"), addr);
    }
    Ok(builder.build()?)
}

fn redirect_target(from: &Url, answer: &reqwest::Response) -> anyhow::Result<Url> {
    if !answer.status().is_redirection() {
        bail!("expected a redirect from {from}, got {}", answer.status());
    }
    let location = answer
        .headers()
        .get(LOCATION)
        .and_then(|l| l.to_str().ok())
        .context("a redirect without Location")?;
    Ok(from.join(location)?)
}

/// `streamspace_app=…` from the Set-Cookie headers.
pub fn app_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find(|pair| pair.starts_with("streamspace_app="))
        .map(str::to_owned)
}
