//! HTTPS built in: a certificate chain and key from PEM files
//! (`--tls-cert`, `--tls-key`), served by rustls (ring), reloaded on
//! SIGHUP. A reload swaps the certificate new handshakes get; connections
//! already open keep theirs. A file that does not load is logged and the
//! certificate in use is kept, so a botched renewal never takes HTTPS down.

use crate::config::TlsFiles;
use crate::metrics::{HttpMetrics, OutcomeLabel};
use anyhow::{Context, bail};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::sync::{Arc, RwLock};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// The certificate new handshakes get, and where it came from.
#[derive(Debug)]
struct Current {
    files: TlsFiles,
    key: RwLock<Arc<CertifiedKey>>,
    provider: Arc<CryptoProvider>,
}

impl ResolvesServerCert for Current {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // A poisoned lock still holds a whole Arc.
        Some(self.key.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

/// The server side of TLS: one rustls configuration whose certificate
/// can be replaced while it serves.
#[derive(Clone)]
pub struct ServerTls {
    current: Arc<Current>,
    acceptor: TlsAcceptor,
}

impl ServerTls {
    /// Loads the files; fails with what is wrong with them.
    pub fn load(files: &TlsFiles) -> anyhow::Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = load_certified_key(files, &provider)?;
        let current = Arc::new(Current {
            files: files.clone(),
            key: RwLock::new(Arc::new(key)),
            provider: provider.clone(),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        // The server speaks HTTP/1.1 only; saying so keeps browsers from
        // trying HTTP/2.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            current,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }

    /// Reads the files again; on success, new handshakes get the new
    /// certificate. On failure nothing changes.
    pub fn reload(&self) -> anyhow::Result<()> {
        let key = load_certified_key(&self.current.files, &self.current.provider)?;
        *self.current.key.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(key);
        Ok(())
    }

    /// Reloads on every SIGHUP in `hangups` until `shutdown`.
    pub async fn reload_on_sighup(
        self,
        mut hangups: Signal,
        metrics: HttpMetrics,
        shutdown: CancellationToken,
    ) {
        loop {
            tokio::select! {
                Some(()) = hangups.recv() => {}
                _ = shutdown.cancelled() => return,
            }
            let outcome = match self.reload() {
                Ok(()) => {
                    tracing::info!(cert = %self.current.files.cert.display(), "reloaded the TLS certificate");
                    "ok"
                }
                Err(err) => {
                    tracing::error!(error = %format!("{err:#}"), "cannot reload the TLS certificate; still serving the previous one");
                    "failed"
                }
            };
            metrics
                .tls_reloads
                .get_or_create(&OutcomeLabel { outcome })
                .inc();
        }
    }
}

/// Starts listening for SIGHUP. Call it before the server is reachable and
/// keep what it returns: a SIGHUP that comes before a handler is in place
/// ends the process.
pub fn hangups() -> anyhow::Result<Signal> {
    signal(SignalKind::hangup()).context("cannot listen for SIGHUP (certificate reloads)")
}

fn load_certified_key(files: &TlsFiles, provider: &CryptoProvider) -> anyhow::Result<CertifiedKey> {
    let (cert, key) = (&files.cert, &files.key);
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot read certificates from {}", cert.display()))?;
    if chain.is_empty() {
        bail!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            cert.display()
        );
    }
    let private = PrivateKeyDer::from_pem_file(key).with_context(|| {
        format!(
            "cannot read a PEM private key (PKCS#8, RSA or EC) from {}",
            key.display()
        )
    })?;
    CertifiedKey::from_der(chain, private, provider).with_context(|| {
        format!(
            "the key in {} does not fit the certificate in {} (the certificate comes first, then its chain)",
            key.display(),
            cert.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamspace_testkit::tls::{TestCa, accept_handshakes, presented_certificate};

    fn files(cert: &streamspace_testkit::tls::ServerCert) -> TlsFiles {
        TlsFiles {
            cert: cert.cert.clone(),
            key: cert.key.clone(),
        }
    }

    #[tokio::test]
    async fn a_reload_serves_the_new_certificate_and_a_bad_file_keeps_the_old() {
        streamspace_testkit::init();
        let ca = TestCa::new("reload").expect("CA");
        let first = ca.server_cert("first").expect("cert");
        let tls = ServerTls::load(&files(&first)).expect("loads");
        let addr = accept_handshakes(tls.acceptor()).await.expect("listens");
        let client = ca.client_config().expect("client");
        let seen = presented_certificate(addr, client.clone())
            .await
            .expect("handshake");
        assert_eq!(seen, first.der);

        // Renewal: new files in the same place.
        let second = ca.server_cert("second").expect("cert");
        std::fs::copy(&second.cert, &first.cert).expect("copy");
        std::fs::copy(&second.key, &first.key).expect("copy");
        tls.reload().expect("reloads");
        let seen = presented_certificate(addr, client.clone())
            .await
            .expect("handshake");
        assert_eq!(seen, second.der);

        // A botched renewal: the key no longer fits; then an empty file.
        let third = ca.server_cert("third").expect("cert");
        std::fs::copy(&third.key, &first.key).expect("copy");
        let err = tls.reload().expect_err("mismatch");
        assert!(format!("{err:#}").contains("does not fit"), "{err:#}");
        std::fs::write(&first.cert, "").expect("truncate");
        let err = tls.reload().expect_err("empty");
        assert!(format!("{err:#}").contains("no PEM certificate"), "{err:#}");
        let seen = presented_certificate(addr, client)
            .await
            .expect("handshake");
        assert_eq!(seen, second.der, "the previous certificate stays");
    }

    #[test]
    fn missing_files_are_named() {
        let files = TlsFiles {
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
        };
        let err = ServerTls::load(&files).err().expect("fails");
        assert!(
            format!("{err:#}").contains("/nonexistent/cert.pem"),
            "{err:#}"
        );
    }
}
