//! Pulling an image the engine lacks: Docker's `create_image` stream, its
//! per-layer progress summed into bytes for the session's `Pulling`
//! reports, and its failures said plainly (credentials refused, image not
//! found, registry unreachable). What a hostile registry can make the
//! agent keep is bounded: at most [`MAX_LAYERS`] layers are counted, error
//! texts are cut to [`MAX_DETAIL`], and a registry that goes quiet for
//! [`PULL_STALL`] fails the pull.

use crate::Shared;
use crate::credentials::Credentials;
use crate::error::is_not_found;
use bollard::auth::DockerCredentials;
use bollard::errors::Error as BollardError;
use bollard::models::CreateImageInfo;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures::StreamExt;
use std::collections::HashMap;
use std::time::Duration;
use streamspace_agent::pulls::{
    PullFailure as Failure, PullProgress, Pulled, classify, registry_of,
};
use streamspace_agent::{PlatformError, PlatformResult};
use streamspace_protocol::RegistryAuth;

/// Layers of one image whose progress is counted; the rest are pulled all
/// the same but not counted (real images have tens).
const MAX_LAYERS: usize = 1000;
/// A pull that hears nothing from the engine for this long has failed.
const PULL_STALL: Duration = Duration::from_secs(120);
/// The most of the engine's (the registry's) error text a message keeps.
const MAX_DETAIL: usize = 300;

/// Whose credentials a pull sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Template,
    Agent,
    None,
}

impl Source {
    fn describe(self) -> &'static str {
        match self {
            Source::Template => "the template's",
            Source::Agent => "this agent's --registry-auth",
            Source::None => "none",
        }
    }
}

impl Shared {
    /// Makes sure `image` is on the engine's host, pulling it when missing
    /// and the options allow (with the template's credentials for its
    /// registry, else the agent's), and tells `progress` how it goes.
    pub(crate) async fn pull(
        &self,
        image: &str,
        auth: Option<&RegistryAuth>,
        progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> PlatformResult<Pulled> {
        match self.docker.inspect_image(image).await {
            Ok(_) => return Ok(Pulled::Present),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(self.error(format!("inspect image {image}"), e)),
        }
        let host = &self.engine_host;
        if !self.options.pull_missing_images {
            return Err(PlatformError::Invalid(format!(
                "image {image:?} is not present on docker host {host}: build or load it there \
                 (for the demo desktop: `streamspace up` or images/desktop/build.sh builds \
                 streamspace/desktop:local) — no registry pull is attempted"
            )));
        }
        let registry = registry_of(image);
        let (credentials, source) = self.credentials_for(&registry, auth);
        tracing::info!(image, %registry, credentials = source.describe(), "pulling missing image");
        progress(PullProgress::default());
        let mut options = CreateImageOptionsBuilder::new().from_image(image);
        if !has_tag(image) {
            // Without a tag the engine would pull every tag of the repository.
            options = options.tag("latest");
        }
        let mut stream = self
            .docker
            .create_image(Some(options.build()), None, credentials);
        let mut layers = Layers::default();
        loop {
            let item = match tokio::time::timeout(PULL_STALL, stream.next()).await {
                Ok(Some(item)) => item,
                Ok(None) => break,
                Err(_) => {
                    let detail = format!("nothing came for {} s", PULL_STALL.as_secs());
                    return Err(self.failed(image, &registry, source, Failure::Network, &detail));
                }
            };
            match item {
                Ok(info) => {
                    if layers.update(&info) {
                        progress(layers.progress());
                    }
                }
                Err(e) => return Err(self.pull_error(image, &registry, source, e)),
            }
        }
        tracing::info!(image, "pulled image");
        Ok(Pulled::Pulled)
    }

    /// The template's credentials win over the agent's for the image's
    /// registry; the agent's are sent only to the registry they are for.
    fn credentials_for(
        &self,
        registry: &str,
        auth: Option<&RegistryAuth>,
    ) -> (Option<DockerCredentials>, Source) {
        let serveraddress = Some(registry.to_owned());
        if let Some(auth) = auth {
            let credentials = DockerCredentials {
                username: Some(auth.username.clone()),
                password: Some(auth.password.clone()),
                serveraddress,
                ..Default::default()
            };
            return (Some(credentials), Source::Template);
        }
        let credentials = match self.options.registry_auths.get(registry) {
            None => return (None, Source::None),
            Some(Credentials::Password { username, password }) => DockerCredentials {
                username: Some(username.clone()),
                password: Some(password.clone()),
                serveraddress,
                ..Default::default()
            },
            Some(Credentials::IdentityToken(token)) => DockerCredentials {
                identitytoken: Some(token.clone()),
                serveraddress,
                ..Default::default()
            },
        };
        (Some(credentials), Source::Agent)
    }

    /// A failed pull: the engine unreachable stays "try again later";
    /// anything the engine or registry said fails the session with why.
    fn pull_error(
        &self,
        image: &str,
        registry: &str,
        source: Source,
        err: BollardError,
    ) -> PlatformError {
        let detail = match err {
            BollardError::DockerStreamError { error } => error,
            BollardError::DockerResponseServerError { message, .. } => message,
            other => return self.error(format!("pull image {image}"), other),
        };
        self.failed(image, registry, source, classify(&detail), &detail)
    }

    fn failed(
        &self,
        image: &str,
        registry: &str,
        source: Source,
        failure: Failure,
        detail: &str,
    ) -> PlatformError {
        let detail = cut(detail.trim());
        let why = match failure {
            Failure::Auth if source == Source::None => format!(
                "the registry {registry} asks for credentials to pull {image} and none were \
                 given (set the template's registry_auth or the agent's --registry-auth): \
                 {detail}"
            ),
            Failure::Auth => format!(
                "the registry refused the credentials for {registry} ({} credentials) while \
                 pulling {image}: {detail}",
                source.describe()
            ),
            Failure::NotFound => format!("image {image} not found in {registry}: {detail}"),
            Failure::Network => {
                format!("cannot reach registry {registry} to pull {image}: {detail}")
            }
            Failure::Other => format!("pulling {image} from {registry} failed: {detail}"),
        };
        tracing::warn!(image, registry, ?failure, "pull failed");
        PlatformError::Invalid(format!(
            "{why} (the image is not present on docker host {}: push it to the registry, or \
             build or load it there)",
            self.engine_host
        ))
    }
}

fn cut(text: &str) -> String {
    match text.char_indices().nth(MAX_DETAIL) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// Whether an image reference names a tag or digest (`repo:tag`,
/// `repo@sha256:…`); a colon in a registry's `host:port` does not count.
fn has_tag(image: &str) -> bool {
    let last = image.rsplit('/').next().unwrap_or(image);
    image.contains('@') || last.contains(':')
}

/// Each layer's progress, as the engine's stream tells it.
#[derive(Debug, Default)]
struct Layers {
    by_id: HashMap<String, Layer>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Layer {
    total: u64,
    downloaded: u64,
    extracted: u64,
}

impl Layers {
    /// Applies one stream item; whether the progress changed.
    fn update(&mut self, info: &CreateImageInfo) -> bool {
        let (Some(id), Some(status)) = (&info.id, &info.status) else {
            return false;
        };
        let detail = info.progress_detail.as_ref();
        let bytes = |n: Option<i64>| n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
        let current = bytes(detail.and_then(|d| d.current));
        let total = bytes(detail.and_then(|d| d.total));
        let known = self.by_id.contains_key(id.as_str());
        let sized = total > 0 && matches!(status.as_str(), "Downloading" | "Extracting");
        if !known && (self.by_id.len() >= MAX_LAYERS || !sized) {
            // Layers are counted once their size is known; "Already
            // exists" and "Waiting" have none, "Pulling from" is no layer.
            return false;
        }
        let layer = self.by_id.entry(id.clone()).or_default();
        let before = *layer;
        match status.as_str() {
            "Downloading" => {
                layer.total = layer.total.max(total);
                layer.downloaded = current.min(layer.total);
            }
            "Verifying Checksum" | "Download complete" => layer.downloaded = layer.total,
            "Extracting" => {
                layer.total = layer.total.max(total);
                layer.downloaded = layer.total;
                layer.extracted = current.min(layer.total);
            }
            "Pull complete" => {
                layer.downloaded = layer.total;
                layer.extracted = layer.total;
            }
            _ => {}
        }
        before.downloaded != layer.downloaded
            || before.extracted != layer.extracted
            || before.total != layer.total
    }

    fn progress(&self) -> PullProgress {
        self.by_id
            .values()
            .fold(PullProgress::default(), |sum, layer| PullProgress {
                total: sum.total + layer.total,
                downloaded: sum.downloaded + layer.downloaded,
                done: sum.done + layer.downloaded + layer.extracted,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::ProgressDetail;

    fn item(id: &str, status: &str, current: i64, total: i64) -> CreateImageInfo {
        CreateImageInfo {
            id: Some(id.into()),
            status: Some(status.into()),
            progress_detail: Some(ProgressDetail {
                current: Some(current),
                total: Some(total),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn progress_sums_downloads_and_extraction_of_every_layer() {
        let mut layers = Layers::default();
        assert!(!layers.update(&item("1", "Pulling from test/echo", 0, 0)));
        assert!(!layers.update(&item("a", "Waiting", 0, 0)));
        assert!(!layers.update(&item("b", "Already exists", 0, 0)));
        assert!(layers.update(&item("a", "Downloading", 50, 100)));
        assert!(layers.update(&item("c", "Downloading", 0, 300)));
        assert_eq!(
            layers.progress(),
            PullProgress {
                total: 400,
                downloaded: 50,
                done: 50
            }
        );
        assert!(layers.update(&item("a", "Download complete", 0, 0)));
        assert!(layers.update(&item("a", "Extracting", 40, 100)));
        assert_eq!(layers.progress().done, 100 + 40);
        assert!(layers.update(&item("a", "Pull complete", 0, 0)));
        assert!(
            !layers.update(&item("a", "Pull complete", 0, 0)),
            "no change"
        );
        assert!(layers.update(&item("c", "Pull complete", 0, 0)));
        assert_eq!(layers.progress().percent(), 100);
    }

    #[test]
    fn a_flood_of_layers_is_bounded() {
        let mut layers = Layers::default();
        for n in 0..MAX_LAYERS + 50 {
            layers.update(&item(&n.to_string(), "Downloading", 1, 2));
        }
        assert_eq!(layers.by_id.len(), MAX_LAYERS);
        assert!(
            !layers.update(&item("u", "Downloading", i64::MAX, -1)),
            "past the bound nothing is kept"
        );
    }

    #[test]
    fn long_registry_texts_are_cut() {
        let long = "x".repeat(10 * MAX_DETAIL);
        assert_eq!(cut(&long).chars().count(), MAX_DETAIL + 1);
        assert_eq!(cut("short"), "short");
    }

    #[test]
    fn tags_and_digests_are_recognised() {
        assert!(has_tag("streamspace/desktop:local"));
        assert!(has_tag("busybox@sha256:abc"));
        assert!(has_tag("registry:5000/team/app:1"));
        assert!(!has_tag("registry:5000/team/app"));
        assert!(!has_tag("busybox"));
    }
}
