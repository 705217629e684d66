//! Web ports: a session's HTTP(S) app as the control plane's proxy and the
//! readiness check see it. An `https` port is opened with TLS here, so what
//! leaves the agent is always the app's plain HTTP: the control plane needs
//! no TLS client of its own, and the data channel already authenticates
//! both ends.

use crate::platform::{Platform, PlatformError, SessionStream};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::sync::{Arc, LazyLock};
use streamspace_protocol::SessionId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

/// A session's port, wrapped in TLS when it serves HTTPS.
pub async fn open(
    platform: &dyn Platform,
    session_id: &SessionId,
    port: u16,
    tls: bool,
) -> Result<Box<dyn SessionStream>, PlatformError> {
    let stream = platform.connect(session_id, port).await?;
    if !tls {
        return Ok(stream);
    }
    let name = ServerName::try_from("session.invalid").expect("a valid DNS name");
    let wrapped = TlsConnector::from(SESSION_TLS.clone())
        .connect(name, stream)
        .await
        .map_err(|err| PlatformError::Unavailable(format!("TLS handshake failed: {err}")))?;
    Ok(Box::new(wrapped))
}

/// The status the app answers `GET path` with, or why it did not.
pub async fn probe(mut stream: Box<dyn SessionStream>, path: &str) -> Result<u16, String> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: streamspace-readiness\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("no answer yet: {e}"))?;
    // The status line fits in the first read of any real server.
    let mut head = [0u8; 64];
    let n = stream
        .read(&mut head)
        .await
        .map_err(|e| format!("no answer yet: {e}"))?;
    status_code(&head[..n]).ok_or_else(|| {
        format!(
            "not an HTTP server (it said {:?})",
            String::from_utf8_lossy(&head[..n])
        )
    })
}

/// `HTTP/1.x NNN …` → NNN.
fn status_code(head: &[u8]) -> Option<u16> {
    let rest = head.strip_prefix(b"HTTP/1.")?;
    let code = rest.get(2..5)?;
    if rest.get(1) != Some(&b' ') || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

/// Images serve HTTPS with certificates they made themselves (Kasm's,
/// linuxserver.io's): nothing could verify them, and nothing needs to, as
/// the agent reaches the container itself.
static SESSION_TLS: LazyLock<Arc<rustls::ClientConfig>> = LazyLock::new(|| {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(AnyCertificate(provider.clone()));
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports TLS 1.2 and 1.3")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Arc::new(config)
});

#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    // Signatures are still checked: a handshake with a key that does not
    // match the certificate is as broken as it looks.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_read_and_anything_else_is_not() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(status_code(b"HTTP/1.0 503 Service Unavailable"), Some(503));
        assert_eq!(status_code(b"RFB 003.008\n"), None);
        assert_eq!(status_code(b"HTTP/1.1 2x0"), None);
        assert_eq!(status_code(b"HTTP/1.1"), None);
    }
}
