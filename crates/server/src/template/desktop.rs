//! The `desktop` section of a template as an admin writes it: what viewers
//! may do beyond pixels and keys (`streamspace_protocol::desktop`).

use crate::validate::FieldError;
use serde::Deserialize;
use streamspace_protocol::{
    ClipboardPolicy, DesktopPolicy, FileTransferPolicy, Memory, RecordingPolicy,
};

/// The largest per-file upload limit a template may set.
const MAX_UPLOAD_LIMIT: Memory = Memory(100 << 30);

/// The `desktop` section as written; absent fields take the defaults of
/// [`DesktopPolicy`].
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"clipboard": "to_session", "file_transfer": "upload", "recording": "required"}))]
pub struct DesktopInput {
    /// Which way text may cross: `both` (default), `to_session`,
    /// `from_session` or `off`.
    #[serde(default)]
    pub clipboard: Option<ClipboardPolicy>,
    /// Which way files may go: `both` (default), `upload`, `download` or
    /// `none`.
    #[serde(default)]
    pub file_transfer: Option<FileTransferPolicy>,
    /// The folder files go to and come from, relative to the home
    /// (default `Downloads`).
    #[serde(default)]
    #[schema(example = "Downloads", max_length = 255)]
    pub files_folder: Option<String>,
    /// The largest file an upload may be (default `512Mi`, at most `100Gi`).
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "1Gi")]
    pub max_upload: Option<Memory>,
    /// `off` (default) or `required`: every viewer connection is recorded.
    #[serde(default)]
    pub recording: Option<RecordingPolicy>,
    /// Whether owners may share their sessions (default true).
    #[serde(default)]
    pub sharing: Option<bool>,
    /// Whether viewers may send their microphone into the session, through
    /// its `microphone` port (default true).
    #[serde(default)]
    pub microphone: Option<bool>,
}

impl DesktopInput {
    pub fn validate(self) -> Result<DesktopPolicy, FieldError> {
        let default = DesktopPolicy::default();
        let files_folder = match self.files_folder {
            Some(folder) => check_folder(folder)?,
            None => default.files_folder,
        };
        let max_upload = self.max_upload.unwrap_or(default.max_upload);
        if max_upload.0 == 0 || max_upload > MAX_UPLOAD_LIMIT {
            return Err(FieldError::new(
                "desktop.max_upload",
                format!("{max_upload} is out of range: use 1 byte to {MAX_UPLOAD_LIMIT}"),
            ));
        }
        Ok(DesktopPolicy {
            clipboard: self.clipboard.unwrap_or(default.clipboard),
            file_transfer: self.file_transfer.unwrap_or(default.file_transfer),
            files_folder,
            max_upload,
            recording: self.recording.unwrap_or(default.recording),
            sharing: self.sharing.unwrap_or(default.sharing),
            microphone: self.microphone.unwrap_or(default.microphone),
        })
    }
}

/// A folder under the home: relative, plain names (no `.`, `..` or empty
/// parts), printable, bounded.
fn check_folder(folder: String) -> Result<String, FieldError> {
    let folder = folder.trim_end_matches('/').to_owned();
    let bad_part = folder
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..");
    if folder.is_empty() || folder.len() > 255 || bad_part || folder.chars().any(|c| c.is_control())
    {
        return Err(FieldError::new(
            "desktop.files_folder",
            format!(
                "{folder:?} is not a folder under the home: use a relative path such as \
                 \"Downloads\" or \"work/inbox\", without \".\" or \"..\" parts"
            ),
        ));
    }
    Ok(folder)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(value: &str) -> Result<String, FieldError> {
        check_folder(value.to_owned())
    }

    #[test]
    fn absent_fields_take_the_defaults() {
        assert_eq!(
            DesktopInput::default().validate().expect("valid"),
            DesktopPolicy::default()
        );
    }

    #[test]
    fn folders_stay_under_the_home() {
        assert_eq!(folder("Downloads/").expect("valid"), "Downloads");
        assert_eq!(folder("work/inbox").expect("valid"), "work/inbox");
        for bad in ["", "/", "/etc", "..", "a/../b", "a//b", "./x", "a\nb"] {
            let err = folder(bad).expect_err(bad);
            assert_eq!(err.field, "desktop.files_folder", "{bad:?}");
        }
        assert!(folder(&"a".repeat(256)).is_err());
    }

    #[test]
    fn upload_limits_are_bounded() {
        for bad in [Memory(0), Memory((100 << 30) + 1)] {
            let input = DesktopInput {
                max_upload: Some(bad),
                ..DesktopInput::default()
            };
            assert_eq!(
                input.validate().expect_err("refused").field,
                "desktop.max_upload"
            );
        }
    }
}
