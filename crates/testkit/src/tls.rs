//! A private certificate authority for TLS tests: a self-signed CA and
//! server certificates it signs for 127.0.0.1 and localhost, written as PEM
//! files the real binary is given (`--tls-cert`, `--tls-key`, `--ca-cert`).

use anyhow::Context;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tempfile::TempDir;
use tokio_rustls::TlsAcceptor;

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

    /// The CA's own certificate and key as a server's: what a server made
    /// with `openssl req -x509` and no `basicConstraints CA:FALSE` presents.
    pub fn as_server_cert(&self) -> anyhow::Result<ServerCert> {
        let files = ServerCert {
            cert: self.ca_pem.clone(),
            key: self.dir.path().join("ca-key.pem"),
            der: self.der.clone(),
        };
        std::fs::write(&files.key, self.issuer.key().serialize_pem())?;
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

impl ServerCert {
    /// A TLS acceptor presenting this certificate.
    pub fn acceptor(&self) -> anyhow::Result<TlsAcceptor> {
        let chain = vec![CertificateDer::from_pem_file(&self.cert)?];
        let key = PrivateKeyDer::from_pem_file(&self.key)?;
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

/// Completes TLS handshakes with `acceptor` on a loopback port, in the
/// background, and then closes each connection; returns the port's address.
pub async fn accept_handshakes(acceptor: TlsAcceptor) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move { acceptor.accept(tcp).await });
        }
    });
    Ok(addr)
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
