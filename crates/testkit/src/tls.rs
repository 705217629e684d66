//! A private certificate authority for TLS tests: a self-signed CA and
//! server certificates it signs for 127.0.0.1 and localhost, written as PEM
//! files the real binary is given (`--tls-cert`, `--tls-key`, `--ca-cert`).

use anyhow::Context;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::CertificateDer;
use std::path::PathBuf;
use std::sync::Arc;
use tempfile::TempDir;

/// The names every test server certificate is valid for.
const SERVER_NAMES: [&str; 3] = ["127.0.0.1", "localhost", "::1"];

pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
    /// The CA certificate, PEM: what `--ca-cert` is given.
    pub ca_pem: PathBuf,
    dir: TempDir,
}

/// A server certificate and key as files, and the certificate's DER (to
/// recognise it on a connection).
#[derive(Debug, Clone)]
pub struct ServerCert {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub der: CertificateDer<'static>,
}

impl TestCa {
    pub fn new(name: &str) -> anyhow::Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        let dir = tempfile::tempdir()?;
        let ca_pem = dir.path().join("ca.pem");
        std::fs::write(&ca_pem, cert.pem())?;
        Ok(Self {
            issuer: Issuer::new(params, key),
            der: cert.der().clone(),
            ca_pem,
            dir,
        })
    }

    /// A fresh key and certificate for 127.0.0.1, ::1 and localhost, written
    /// to `{file}.pem` and `{file}-key.pem`.
    pub fn server_cert(&self, file: &str) -> anyhow::Result<ServerCert> {
        let names: Vec<String> = SERVER_NAMES.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "streamspace test server");
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let files = ServerCert {
            cert: self.dir.path().join(format!("{file}.pem")),
            key: self.dir.path().join(format!("{file}-key.pem")),
            der: cert.der().clone(),
        };
        std::fs::write(&files.cert, cert.pem())?;
        std::fs::write(&files.key, key.serialize_pem())?;
        Ok(files)
    }

    /// A rustls client configuration that trusts this CA alone.
    pub fn client_config(&self) -> anyhow::Result<Arc<rustls::ClientConfig>> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).context("the CA certificate")?;
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Arc::new(config))
    }
}

/// The certificate a TLS server at `addr` presents right now (verified
/// against `client`, for `name`).
pub async fn presented_certificate(
    addr: std::net::SocketAddr,
    client: Arc<rustls::ClientConfig>,
) -> anyhow::Result<CertificateDer<'static>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let tls = tokio_rustls::TlsConnector::from(client)
        .connect(name, tcp)
        .await
        .context("TLS handshake")?;
    let (_, connection) = tls.get_ref();
    connection
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|cert| cert.clone().into_owned())
        .context("no certificate presented")
}
