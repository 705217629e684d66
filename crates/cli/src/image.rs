//! The demo desktop image, built on this host from Debian packages by the
//! scripts in `images/` (embedded here so the binary alone can build it).

use anyhow::{Context, bail};
use bollard::Docker;
use clap::Args;
use std::process::Stdio;
use tokio::io::AsyncWriteExt;

pub const DESKTOP_IMAGE: &str = "streamspace/desktop:local";
/// Piped to bash ahead of the build script, which sources it only when run
/// from a file.
const ROOTFS_LIBRARY: &str = include_str!("../../../images/lib/debian-rootfs.sh");
const BUILD_SCRIPT: &str = include_str!("../../../images/desktop/build.sh");

#[derive(Args, Debug)]
pub struct BuildImageArgs {
    /// Tag of the image to build.
    #[arg(long, default_value = DESKTOP_IMAGE)]
    tag: String,
}

pub async fn run(args: BuildImageArgs) -> anyhow::Result<()> {
    build(&args.tag).await
}

/// Builds the image unless the Docker host has it already.
pub async fn ensure_image(tag: &str) -> anyhow::Result<()> {
    let docker = Docker::connect_with_defaults()
        .context("cannot reach the Docker engine")?
        .negotiate_version()
        .await
        .context("cannot reach the Docker engine: is dockerd running?")?;
    match docker.inspect_image(tag).await {
        Ok(_) => Ok(()),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => {
            println!("Building {tag} from Debian packages (about 10 s, once)…");
            build(tag).await
        }
        Err(err) => Err(err).context("cannot reach the Docker engine: is dockerd running?"),
    }
}

async fn build(tag: &str) -> anyhow::Result<()> {
    let mut child = tokio::process::Command::new("bash")
        .args(["-s", "--", tag])
        .stdin(Stdio::piped())
        .spawn()
        .context("cannot run bash to build the image")?;
    let mut stdin = child
        .stdin
        .take()
        .context("no stdin for the build script")?;
    let script = format!("{ROOTFS_LIBRARY}\n{BUILD_SCRIPT}");
    stdin.write_all(script.as_bytes()).await?;
    drop(stdin);
    let status = child.wait().await?;
    if !status.success() {
        bail!("building {tag} failed ({status}); the messages above say why");
    }
    Ok(())
}
