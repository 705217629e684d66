//! Where the control plane is and who is asking: the flags every command
//! that talks to the API as a user takes (`connect`, `templates`).

use crate::trust::CaCertArg;
use clap::Args;
use url::Url;

#[derive(Args, Debug)]
pub struct ControlPlaneArgs {
    /// URL of the control plane.
    #[arg(
        long,
        env = "STREAMSPACE_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: Url,
    /// Login token (from POST /api/v1/auth/login); `templates` needs an admin's.
    #[arg(long, env = "STREAMSPACE_TOKEN", hide_env_values = true)]
    pub token: String,
    #[command(flatten)]
    pub ca: CaCertArg,
}
