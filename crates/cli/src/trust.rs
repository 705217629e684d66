//! `--ca-cert`: trust for a control plane whose certificate a private CA
//! signed. Its own module because every command that connects to a control
//! plane (agents of each platform, `connect`) takes it.

use clap::Args;
use std::path::PathBuf;
use streamspace_agent::ClientTls;

#[derive(Args, Debug, Clone)]
pub struct CaCertArg {
    /// PEM file of CA certificates to trust besides the public (Mozilla)
    /// roots, for an https:// control plane with a private CA.
    #[arg(long, env = "STREAMSPACE_CA_CERT")]
    ca_cert: Option<PathBuf>,
}

impl CaCertArg {
    pub fn client_tls(&self) -> anyhow::Result<ClientTls> {
        ClientTls::new(self.ca_cert.as_deref())
    }
}
