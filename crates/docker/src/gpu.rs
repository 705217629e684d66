//! GPUs of the Docker host: how many NVIDIA GPUs it has (the driver's
//! `/proc` files, or what the operator declares with `--gpus`), whether the
//! engine has the `nvidia` runtime, and which GPUs a new session gets (ones
//! no other session of this agent holds, by index).

use crate::Shared;
use crate::container::GPUS_LABEL;
use std::collections::BTreeSet;
use std::path::Path;
use streamspace_agent::{PlatformError, PlatformResult};
use streamspace_protocol::{SessionId, SessionSpec};

/// Where the NVIDIA driver lists the host's GPUs, one directory each with
/// an `information` file (`Model:  NVIDIA A10`).
pub const NVIDIA_PROC: &str = "/proc/driver/nvidia/gpus";

/// The GPUs this agent gives sessions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GpuInventory {
    pub count: u32,
    pub model: Option<String>,
    /// The engine lists the `nvidia` runtime (NVIDIA Container Toolkit).
    pub nvidia_runtime: bool,
}

impl GpuInventory {
    /// What the operator declared (`--gpus`, `--gpu-model`) wins over what
    /// was detected: it is the way to run without a GPU in tests, and the
    /// fix where detection fails (a remote engine, a driver without
    /// `/proc` files).
    pub fn new(
        detected: (u32, Option<String>),
        declared: Option<u32>,
        declared_model: Option<&str>,
        nvidia_runtime: bool,
    ) -> Self {
        let (count, model) = detected;
        GpuInventory {
            count: declared.unwrap_or(count),
            model: declared_model.map(str::to_owned).or(model),
            nvidia_runtime,
        }
    }
}

/// The GPUs the NVIDIA driver lists under `root` (normally
/// [`NVIDIA_PROC`]) and the model of the first; none when it lists none.
pub fn detect(root: &Path) -> (u32, Option<String>) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return (0, None);
    };
    let mut models: Vec<(String, Option<String>)> = entries
        .filter_map(Result::ok)
        .map(|entry| {
            let info = std::fs::read_to_string(entry.path().join("information")).ok();
            let name = entry.file_name().to_string_lossy().into_owned();
            (name, info.as_deref().and_then(model_of))
        })
        .collect();
    models.sort();
    let count = u32::try_from(models.len()).unwrap_or(u32::MAX);
    (count, models.into_iter().find_map(|(_, model)| model))
}

/// The `Model:` line of a driver `information` file.
fn model_of(information: &str) -> Option<String> {
    information.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "Model")
            .then(|| value.trim().to_owned())
            .filter(|v| !v.is_empty())
    })
}

/// `wanted` GPU indexes out of `0..count` that no label in `held` (each
/// `"0,2"`, see [`crate::container::GPUS_LABEL`]) names, lowest first; or
/// how many are free when that is too few.
pub fn pick<'a>(
    count: u32,
    wanted: u32,
    held: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<String>, u32> {
    let taken: BTreeSet<&str> = held.into_iter().flat_map(|l| l.split(',')).collect();
    let free: Vec<String> = (0..count)
        .map(|i| i.to_string())
        .filter(|i| !taken.contains(i.as_str()))
        .collect();
    let available = u32::try_from(free.len()).unwrap_or(u32::MAX);
    if available < wanted {
        return Err(available);
    }
    Ok(free.into_iter().take(wanted as usize).collect())
}

/// What to do when the engine cannot hand out GPUs, after its own words.
pub fn missing_driver(cause: &str) -> String {
    format!(
        "the Docker engine cannot give containers GPUs ({cause}): install the NVIDIA driver and the \
         NVIDIA Container Toolkit on its host and restart dockerd, or run the agent without --gpus"
    )
}

/// Whether an engine error says it cannot hand out GPUs (no NVIDIA
/// Container Toolkit): `could not select device driver "nvidia"`.
pub fn is_missing_driver(message: &str) -> bool {
    message.contains("could not select device driver")
}

impl Shared {
    /// The GPUs (indexes) `spec` gets: as many as it asks, none of them
    /// held by another container of this agent (running, hibernated or
    /// failed: the control plane counts them all until terminated). Callers hold [`Shared::gpu_turn`] until
    /// the container is created, so two starts cannot pick the same.
    pub(crate) async fn session_gpus(&self, spec: &SessionSpec) -> PlatformResult<Vec<String>> {
        let wanted = spec.resources.gpus();
        if wanted == 0 {
            return Ok(Vec::new());
        }
        let have = self.gpus.count;
        if have < wanted {
            return Err(PlatformError::Invalid(format!(
                "session {} asks for {wanted} GPU(s) and this agent has {have}: start the agent \
                 on a host with NVIDIA GPUs (or declare them with --gpus)",
                spec.session_id
            )));
        }
        let containers = self.list_own(true).await?;
        let held = containers
            .iter()
            .filter_map(|c| c.labels.as_ref()?.get(GPUS_LABEL).map(String::as_str));
        pick(have, wanted, held).map_err(|free| {
            PlatformError::Invalid(format!(
                "session {} asks for {wanted} GPU(s) and {free} of this agent's {have} are free: \
                 other sessions (running, hibernated or failed) hold the rest",
                spec.session_id
            ))
        })
    }

    /// Says why a GPU session cannot start on an engine that cannot hand
    /// out GPUs, instead of the engine's riddle; not worth retrying.
    pub(crate) fn no_gpu_driver(&self, session_id: &SessionId, cause: &str) -> PlatformError {
        PlatformError::Invalid(format!(
            "session {session_id} asks for GPUs on docker host {}, but {}",
            self.engine_host,
            missing_driver(cause)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpus_and_their_model_come_from_the_driver_files() {
        let root = std::env::temp_dir().join(format!("gpus-{}", uuid::Uuid::new_v4()));
        assert_eq!(detect(&root), (0, None), "no driver, no GPUs");
        for (bus, model) in [
            ("0000:3b:00.0", "NVIDIA A10"),
            ("0000:af:00.0", "NVIDIA A10"),
        ] {
            let dir = root.join(bus);
            std::fs::create_dir_all(&dir).expect("mkdir");
            let info = format!("Model: \t\t {model}\nIRQ:  \t\t 38\nBus Location: \t {bus}\n");
            std::fs::write(dir.join("information"), info).expect("write");
        }
        assert_eq!(detect(&root), (2, Some("NVIDIA A10".to_owned())));
        std::fs::remove_dir_all(&root).expect("cleanup");
    }

    #[test]
    fn what_the_operator_declares_wins() {
        let detected = (2, Some("NVIDIA A10".to_owned()));
        let none = GpuInventory::new(detected.clone(), None, None, true);
        assert_eq!((none.count, none.model.as_deref()), (2, Some("NVIDIA A10")));
        let fake = GpuInventory::new((0, None), Some(4), Some("fake"), false);
        assert_eq!((fake.count, fake.model.as_deref()), (4, Some("fake")));
        let off = GpuInventory::new(detected, Some(0), None, true);
        assert_eq!(off.count, 0);
    }

    #[test]
    fn sessions_get_gpus_no_other_holds() {
        assert_eq!(pick(4, 2, ["0", "2"]), Ok(vec!["1".into(), "3".into()]));
        assert_eq!(pick(4, 1, ["0,1", "2"]), Ok(vec!["3".into()]));
        assert_eq!(pick(4, 2, ["0,1", "2"]), Err(1));
        assert_eq!(pick(0, 1, []), Err(0));
        assert_eq!(pick(2, 0, ["0,1"]), Ok(vec![]));
    }

    #[test]
    fn a_missing_toolkit_is_recognised() {
        let engine = r#"could not select device driver "nvidia" with capabilities: [[gpu]]"#;
        assert!(is_missing_driver(engine));
        assert!(!is_missing_driver("no such image"));
    }
}
