//! What a template allows its sessions' viewers beyond pixels and keys:
//! clipboard, file transfer, recording and sharing. Fixed per session (a
//! copy travels in [`crate::SessionSpec`]), so changing a template never
//! changes what a running session allows.

use crate::Memory;
use serde::{Deserialize, Serialize};

/// Per-file upload limit unless the template says otherwise.
pub const DEFAULT_MAX_UPLOAD: Memory = Memory(512 << 20);

/// Where transferred files go unless the template says otherwise, relative
/// to the session's home.
pub const DEFAULT_FILES_FOLDER: &str = "Downloads";

/// The desktop features a template allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct DesktopPolicy {
    pub clipboard: ClipboardPolicy,
    pub file_transfer: FileTransferPolicy,
    /// The folder uploads land in and downloads come from, relative to the
    /// home (`Downloads`); nothing outside it can be reached.
    pub files_folder: String,
    /// The largest file an upload may be.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "512Mi"))]
    pub max_upload: Memory,
    pub recording: RecordingPolicy,
    /// Whether owners may share sessions of this template with other users.
    pub sharing: bool,
    /// Whether viewers may send their microphone into the session (through
    /// its `microphone` port; the browser asks the user too).
    pub microphone: bool,
}

impl Default for DesktopPolicy {
    fn default() -> Self {
        DesktopPolicy {
            clipboard: ClipboardPolicy::default(),
            file_transfer: FileTransferPolicy::default(),
            files_folder: DEFAULT_FILES_FOLDER.to_owned(),
            max_upload: DEFAULT_MAX_UPLOAD,
            recording: RecordingPolicy::default(),
            sharing: true,
            microphone: true,
        }
    }
}

/// Which way text may cross between the viewer's clipboard and the
/// session's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ClipboardPolicy {
    #[default]
    Both,
    ToSession,
    FromSession,
    Off,
}

impl ClipboardPolicy {
    /// Whether the viewer may paste into the session.
    pub fn to_session(self) -> bool {
        matches!(self, ClipboardPolicy::Both | ClipboardPolicy::ToSession)
    }

    /// Whether the viewer may copy out of the session.
    pub fn from_session(self) -> bool {
        matches!(self, ClipboardPolicy::Both | ClipboardPolicy::FromSession)
    }
}

/// Which way files may be transferred.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum FileTransferPolicy {
    #[default]
    Both,
    Upload,
    Download,
    None,
}

impl FileTransferPolicy {
    /// Whether files may go into the session.
    pub fn upload(self) -> bool {
        matches!(self, FileTransferPolicy::Both | FileTransferPolicy::Upload)
    }

    /// Whether files may come out of the session.
    pub fn download(self) -> bool {
        matches!(
            self,
            FileTransferPolicy::Both | FileTransferPolicy::Download
        )
    }
}

/// Whether the session's screen is recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RecordingPolicy {
    #[default]
    Off,
    /// Every viewer connection is recorded; viewers are told.
    Required,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_policy_allows_everything_but_recording() {
        let policy: DesktopPolicy = serde_json::from_str("{}").expect("parses");
        assert_eq!(policy, DesktopPolicy::default());
        assert!(policy.clipboard.to_session() && policy.clipboard.from_session());
        assert!(policy.file_transfer.upload() && policy.file_transfer.download());
        assert_eq!(policy.files_folder, "Downloads");
        assert_eq!(policy.recording, RecordingPolicy::Off);
        assert!(policy.sharing);
    }

    #[test]
    fn each_direction_is_its_own() {
        let only_in = ClipboardPolicy::ToSession;
        assert!(only_in.to_session() && !only_in.from_session());
        let only_out = ClipboardPolicy::FromSession;
        assert!(!only_out.to_session() && only_out.from_session());
        assert!(!ClipboardPolicy::Off.to_session() && !ClipboardPolicy::Off.from_session());
        let up = FileTransferPolicy::Upload;
        assert!(up.upload() && !up.download());
        let none = FileTransferPolicy::None;
        assert!(!none.upload() && !none.download());
    }

    #[test]
    fn fields_are_snake_case_on_the_wire() {
        let policy: DesktopPolicy = serde_json::from_str(
            r#"{"clipboard":"from_session","file_transfer":"download","recording":"required","max_upload":"1Gi"}"#,
        )
        .expect("parses");
        assert_eq!(policy.clipboard, ClipboardPolicy::FromSession);
        assert_eq!(policy.max_upload, Memory(1 << 30));
        assert_eq!(policy.recording, RecordingPolicy::Required);
    }
}
