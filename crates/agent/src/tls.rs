//! TLS for `https://` control planes: one rustls client configuration,
//! shared by enrollment, the control channel and the data channels, that
//! trusts the Mozilla roots plus any private CA given with `--ca-cert`.

use anyhow::{Context, bail};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::fmt;
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

/// `err` with advice when it is a certificate the roots do not trust.
pub fn explain(err: anyhow::Error) -> anyhow::Error {
    let text = format!("{err:#}");
    if text.contains("CaUsedAsEndEntity") {
        // What `openssl req -x509` makes unless told otherwise.
        err.context(
            "the control plane presents a CA certificate as its own: serve a certificate \
             that CA signed, or a self-signed one made with basicConstraints CA:FALSE",
        )
    } else if text.contains("invalid peer certificate") {
        err.context(
            "the control plane's TLS certificate is not trusted: if a private CA signed it, \
             pass that CA's certificate with --ca-cert FILE (PEM)",
        )
    } else {
        err
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn untrusted_certificates_get_advice() {
        let err = anyhow::anyhow!("invalid peer certificate: UnknownIssuer");
        assert!(format!("{:#}", explain(err)).contains("--ca-cert"));
        let ca = anyhow::anyhow!("invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))");
        assert!(format!("{:#}", explain(ca)).contains("CA:FALSE"));
        let other = anyhow::anyhow!("connection refused");
        assert!(!format!("{:#}", explain(other)).contains("--ca-cert"));
    }
}
