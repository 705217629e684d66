//! TLS for `https://` control planes: one rustls client configuration,
//! shared by enrollment, the control channel and the data channels, that
//! trusts the Mozilla roots plus any private CA given with `--ca-cert`.

use anyhow::{Context, bail};
use rustls::CertificateError;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::error::Error;
use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

/// The roots an agent (or `streamspace connect`) trusts.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientTls")
    }
}

impl Default for ClientTls {
    /// The Mozilla roots alone.
    fn default() -> Self {
        // Only the protocol versions could fail, and ring supports them.
        Self::with_roots(Vec::new()).expect("ring supports TLS 1.2 and 1.3")
    }
}

impl ClientTls {
    /// The Mozilla roots, plus every certificate in the PEM file `ca_cert`.
    pub fn new(ca_cert: Option<&Path>) -> anyhow::Result<Self> {
        let Some(path) = ca_cert else {
            return Ok(Self::default());
        };
        let extra = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .with_context(|| format!("cannot read CA certificates from {}", path.display()))?;
        if extra.is_empty() {
            bail!(
                "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                path.display()
            );
        }
        Self::with_roots(extra).with_context(|| format!("{} is not a usable CA", path.display()))
    }

    fn with_roots(extra: Vec<CertificateDer<'static>>) -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        for cert in extra {
            roots.add(cert)?;
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Self {
            config: Arc::new(config),
        })
    }

    pub fn config(&self) -> Arc<rustls::ClientConfig> {
        self.config.clone()
    }

    /// An HTTP client that trusts the same roots.
    pub fn http_client(&self) -> anyhow::Result<reqwest::Client> {
        reqwest::Client::builder()
            .tls_backend_preconfigured(rustls::ClientConfig::clone(&self.config))
            .build()
            .context("cannot build the HTTP client")
    }
}

/// `err` with advice when the control plane's certificate was refused for
/// a reason fixed on this side: a private CA not given, or a CA
/// certificate served as the control plane's own.
pub fn explain(err: anyhow::Error) -> anyhow::Error {
    let advice = match certificate_error(err.as_ref()) {
        Some(CertificateError::UnknownIssuer) => {
            "the control plane's TLS certificate is not trusted: if a private CA signed it, \
             pass that CA's certificate with --ca-cert FILE (PEM)"
        }
        // What `openssl req -x509` makes unless told otherwise.
        Some(CertificateError::Other(other))
            if matches!(
                other.0.downcast_ref::<webpki::Error>(),
                Some(webpki::Error::CaUsedAsEndEntity)
            ) =>
        {
            "the control plane presents a CA certificate as its own: serve a certificate \
             that CA signed, or a self-signed one made with basicConstraints CA:FALSE"
        }
        _ => return err,
    };
    err.context(advice)
}

/// The certificate error somewhere in `err`'s chain. rustls's errors come
/// wrapped in `io::Error`s (tokio-rustls, hyper), whose `source()` skips
/// the error they hold, so each one is opened with `get_ref`.
fn certificate_error<'a>(err: &'a (dyn Error + 'static)) -> Option<&'a CertificateError> {
    let mut next = Some(err);
    while let Some(err) = next {
        if let Some(rustls::Error::InvalidCertificate(found)) = err.downcast_ref() {
            return Some(found);
        }
        let held = err.downcast_ref::<io::Error>().and_then(io::Error::get_ref);
        if let Some(found) = held.and_then(|held| certificate_error(held)) {
            return Some(found);
        }
        next = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamspace_testkit::tls::{ServerCert, TestCa, accept_handshakes};

    #[test]
    fn a_file_without_certificates_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("empty.pem");
        std::fs::write(&path, "not a certificate\n").expect("write");
        let err = ClientTls::new(Some(&path)).expect_err("refused");
        assert!(format!("{err:#}").contains("empty.pem"), "{err:#}");
        let missing = ClientTls::new(Some(&dir.path().join("missing.pem"))).expect_err("refused");
        assert!(
            format!("{missing:#}").contains("missing.pem"),
            "{missing:#}"
        );
    }

    /// A loopback HTTPS server presenting `cert`; its `https://` URL.
    async fn serving(cert: &ServerCert) -> String {
        let acceptor = cert.acceptor().expect("server config");
        let addr = accept_handshakes(acceptor).await.expect("listens");
        format!("https://{addr}/")
    }

    #[tokio::test]
    async fn real_handshake_failures_get_advice() {
        let ca = TestCa::new("explain").expect("CA");
        let signed = serving(&ca.server_cert("server").expect("cert")).await;
        let trusting = ClientTls::new(Some(&ca.ca_pem)).expect("loads");

        // Enrollment and `connect` (reqwest) without the private CA.
        let client = ClientTls::default().http_client().expect("client");
        let err = client.get(&signed).send().await.expect_err("untrusted");
        let explained = format!("{:#}", explain(err.into()));
        assert!(explained.contains("--ca-cert"), "{explained}");

        // The control channel (tungstenite) to a CA certificate served as
        // a leaf, by a client that trusts that CA.
        let leaf = serving(&ca.as_server_cert().expect("the CA as a leaf")).await;
        let connector = tokio_tungstenite::Connector::Rustls(trusting.config());
        let url = leaf.replace("https", "wss");
        let connected =
            tokio_tungstenite::connect_async_tls_with_config(url, None, false, Some(connector))
                .await;
        let Err(err) = connected else {
            panic!("a CA is not a server certificate");
        };
        let explained = format!("{:#}", explain(err.into()));
        assert!(explained.contains("CA:FALSE"), "{explained}");

        // Trusted: whatever fails next is not the certificate's fault.
        let client = trusting.http_client().expect("client");
        let err = client.get(&signed).send().await.expect_err("no HTTP there");
        let explained = format!("{:#}", explain(err.into()));
        assert!(!explained.contains("--ca-cert"), "{explained}");
    }
}
