//! The demo images (`desktop`, `full-desktop`, `webvnc`), built on this host
//! from Debian packages by the scripts in `images/` (embedded here so the
//! binary alone can build them).

use anyhow::{Context, bail};
use bollard::Docker;
use clap::{Args, ValueEnum};
use sha2::{Digest, Sha256};
use std::process::Stdio;
use tokio::io::AsyncWriteExt;

pub const DESKTOP_IMAGE: &str = "streamspace/desktop:local";
pub const FULL_DESKTOP_IMAGE: &str = "streamspace/full-desktop:local";
pub const WEBVNC_IMAGE: &str = "streamspace/webvnc:local";
/// Piped to bash ahead of the build script, which sources it only when run
/// from a file.
/// The label that says which recipe an image was built from.
const RECIPE_LABEL: &str = "io.streamspace.recipe";

const ROOTFS_LIBRARY: &str = include_str!("../../../images/lib/debian-rootfs.sh");

/// One of the images in `images/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DemoImage {
    /// Xvnc and an xterm (about 10 s, 56 MB).
    Desktop,
    /// IceWM with a taskbar, xterm and Firefox ESR (about 1 min, 490 MB).
    FullDesktop,
    /// noVNC and websockify over HTTP on 6080, and a small desktop on 5901
    /// (about 30 s, 185 MB).
    Webvnc,
}

impl DemoImage {
    pub fn tag(self) -> &'static str {
        match self {
            Self::Desktop => DESKTOP_IMAGE,
            Self::FullDesktop => FULL_DESKTOP_IMAGE,
            Self::Webvnc => WEBVNC_IMAGE,
        }
    }

    /// Its name on the command line (`build-image full-desktop`).
    pub fn cli_name(self) -> String {
        self.to_possible_value()
            .map(|value| value.get_name().to_owned())
            .unwrap_or_default()
    }

    fn script(self) -> &'static str {
        match self {
            Self::Desktop => include_str!("../../../images/desktop/build.sh"),
            Self::FullDesktop => include_str!("../../../images/full-desktop/build.sh"),
            Self::Webvnc => include_str!("../../../images/webvnc/build.sh"),
        }
    }

    /// What the image is built from, as a short hash: the library and the
    /// script, byte for byte (`cat images/lib/debian-rootfs.sh
    /// images/NAME/build.sh | sha256sum` gives the same). Images carry it
    /// as the label `io.streamspace.recipe`, so a changed recipe rebuilds.
    pub fn recipe(self) -> String {
        let mut hash = Sha256::new();
        hash.update(ROOTFS_LIBRARY.as_bytes());
        hash.update(self.script().as_bytes());
        hex::encode(&hash.finalize()[..8])
    }

    fn duration(self) -> &'static str {
        match self {
            Self::Desktop => "about 10 s",
            Self::FullDesktop => "about a minute: Firefox is large",
            Self::Webvnc => "about 30 s",
        }
    }
}

#[derive(Args, Debug)]
pub struct BuildImageArgs {
    /// Which image to build.
    #[arg(value_enum, default_value_t = DemoImage::Desktop)]
    image: DemoImage,
    /// Tag of the image to build (default: streamspace/IMAGE:local).
    #[arg(long)]
    tag: Option<String>,
}

pub async fn run(args: BuildImageArgs) -> anyhow::Result<()> {
    let tag = args.tag.as_deref().unwrap_or(args.image.tag());
    build(args.image, tag).await
}

/// Builds the image unless the Docker host has it already, built from
/// this version's recipe (an older one lacks what this version expects,
/// such as the sound server or the clipboard policy).
pub async fn ensure_image(image: DemoImage) -> anyhow::Result<()> {
    let why = match image_recipe(image.tag()).await? {
        Some(recipe) if recipe == image.recipe() => return Ok(()),
        Some(_) => "its recipe changed",
        None => "once",
    };
    println!(
        "Building {} from Debian packages ({}, {why})…",
        image.tag(),
        image.duration()
    );
    build(image, image.tag()).await
}

/// Whether the Docker host has `tag`.
pub async fn image_exists(tag: &str) -> anyhow::Result<bool> {
    Ok(image_recipe(tag).await?.is_some())
}

/// The recipe label of `tag` (empty when it has none), or `None` when the
/// Docker host does not have it.
async fn image_recipe(tag: &str) -> anyhow::Result<Option<String>> {
    let docker = Docker::connect_with_defaults()
        .context("cannot reach the Docker engine")?
        .negotiate_version()
        .await
        .context("cannot reach the Docker engine: is dockerd running?")?;
    match docker.inspect_image(tag).await {
        Ok(inspect) => Ok(Some(
            inspect
                .config
                .and_then(|config| config.labels)
                .and_then(|mut labels| labels.remove(RECIPE_LABEL))
                .unwrap_or_default(),
        )),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(None),
        Err(err) => Err(err).context("cannot reach the Docker engine: is dockerd running?"),
    }
}

async fn build(image: DemoImage, tag: &str) -> anyhow::Result<()> {
    let mut child = tokio::process::Command::new("bash")
        .args(["-s", "--", tag])
        .env("STREAMSPACE_IMAGE_RECIPE", image.recipe())
        .stdin(Stdio::piped())
        .spawn()
        .context("cannot run bash to build the image")?;
    let mut stdin = child
        .stdin
        .take()
        .context("no stdin for the build script")?;
    let script = format!("{ROOTFS_LIBRARY}\n{}", image.script());
    stdin.write_all(script.as_bytes()).await?;
    drop(stdin);
    let status = child.wait().await?;
    if !status.success() {
        bail!("building {tag} failed ({status}); the messages above say why");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: BuildImageArgs,
    }

    #[test]
    fn the_image_defaults_to_the_desktop_and_takes_a_tag() {
        let cli = Cli::try_parse_from(["build-image"]).expect("parses");
        assert_eq!(cli.args.image, DemoImage::Desktop);
        assert_eq!(cli.args.tag, None);
        let cli =
            Cli::try_parse_from(["build-image", "full-desktop", "--tag", "x/y:1"]).expect("parses");
        assert_eq!(cli.args.image, DemoImage::FullDesktop);
        assert_eq!(cli.args.tag.as_deref(), Some("x/y:1"));
        let bad = Cli::try_parse_from(["build-image", "kde"]);
        assert!(bad.err().is_some_and(|e| e.to_string().contains("webvnc")));
    }

    #[test]
    fn every_script_sources_the_library_only_when_run_from_a_file() {
        for image in DemoImage::value_variants() {
            let script = image.script();
            assert!(
                script.contains("declare -F rootfs_prepare"),
                "{image:?} would source the library twice"
            );
            assert!(script.contains(&format!("TAG=\"${{1:-{}}}\"", image.tag())));
        }
    }

    #[test]
    fn the_recipe_is_what_the_scripts_compute() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
        for image in DemoImage::value_variants() {
            let name = image.cli_name();
            let shell = std::process::Command::new("sh")
                .current_dir(root)
                .arg("-c")
                .arg(format!(
                    "cat images/lib/debian-rootfs.sh images/{name}/build.sh | sha256sum | cut -c1-16"
                ))
                .output()
                .expect("sh runs");
            let shell = String::from_utf8_lossy(&shell.stdout);
            assert_eq!(image.recipe(), shell.trim(), "{name}");
        }
    }
}
