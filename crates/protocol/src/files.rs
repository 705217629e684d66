//! File transfer between a browser and a session's files folder, over a
//! data channel (docs/FILES.md).
//!
//! The control plane sends [`ServerMessage::OpenFiles`](crate::ServerMessage::OpenFiles)
//! with a [`FileOp`]; the agent dials the data channel as for any tunnel, and
//! the channel then carries, in order:
//!
//! - agent → control plane: one [`FileReply`] as a JSON line (`\n`-ended, at
//!   most [`MAX_REPLY_LINE`] bytes): a listing, the size of the file about to
//!   follow, readiness for an upload, or a refusal;
//! - for a download, exactly `size` raw bytes after it;
//! - for an upload, after `ready`: exactly `size` raw bytes from the control
//!   plane, then a second reply line from the agent (`written` or a refusal).
//!
//! Bytes are never JSON or base64: the line is only the header.

use serde::{Deserialize, Serialize};

/// The longest reply line either side accepts (a listing of
/// [`MAX_LIST_ENTRIES`] entries with long names fits).
pub const MAX_REPLY_LINE: usize = 1 << 20;

/// Entries a listing returns at most; `truncated` says when there were more.
pub const MAX_LIST_ENTRIES: usize = 1000;

/// The longest relative path accepted, in bytes.
pub const MAX_PATH_BYTES: usize = 1024;

/// The longest single name in a path, in bytes (Linux's NAME_MAX).
pub const MAX_NAME_BYTES: usize = 255;

/// What to do in the session's files folder. Paths are relative to the
/// folder, `/`-separated, checked by [`relative_path`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum FileOp {
    /// The entries of a directory (`""`: the folder itself).
    List { path: String },
    /// One regular file's bytes.
    Download { path: String },
    /// Write one regular file of exactly `size` bytes (created or replaced).
    Upload { path: String, size: u64 },
}

impl FileOp {
    pub fn path(&self) -> &str {
        match self {
            FileOp::List { path } | FileOp::Download { path } | FileOp::Upload { path, .. } => path,
        }
    }
}

/// Where the files folder is: `folder` (relative, checked like a path)
/// under `home`, or under the session's own `$HOME` when `home` is `None`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesFolder {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<String>,
    pub folder: String,
}

/// The agent's answer on the data channel (one JSON line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum FileReply {
    Listing {
        entries: Vec<FileEntry>,
        #[serde(default)]
        truncated: bool,
    },
    /// `size` bytes of the file follow.
    Sending { size: u64 },
    /// Send the upload's bytes now.
    Ready,
    /// The upload is in place, whole.
    Written { size: u64 },
    Refused {
        reason: FileRefusal,
        message: String,
    },
}

/// Why a file operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileRefusal {
    /// No such file or directory.
    NotFound,
    /// The path leaves the folder (a symbolic link on the way) or names
    /// something that is not a regular file or directory.
    Escapes,
    /// A directory where a file was expected, or the other way round.
    WrongKind,
    /// The upload did not arrive whole; nothing was written.
    Incomplete,
    /// The session or its platform cannot do it now.
    Unavailable,
}

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileEntry {
    pub name: String,
    pub kind: FileKind,
    /// Bytes (0 for anything but a regular file).
    pub size: u64,
    /// Last modification, unix milliseconds.
    pub modified: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    File,
    Directory,
    /// Listed so people see it, never followed.
    Symlink,
    Other,
}

/// The components of a path relative to the files folder, or why it is
/// refused: no absolute paths, no `.` or `..`, no empty components, no NUL
/// or backslash, names of at most [`MAX_NAME_BYTES`], the whole at most
/// [`MAX_PATH_BYTES`]. `""` is the folder itself (no components).
pub fn relative_path(path: &str) -> Result<Vec<&str>, String> {
    if path.len() > MAX_PATH_BYTES {
        return Err(format!("is longer than {MAX_PATH_BYTES} bytes"));
    }
    if path.is_empty() {
        return Ok(Vec::new());
    }
    if path.starts_with('/') {
        return Err("must be relative to the files folder (no leading /)".into());
    }
    path.split('/').map(component).collect()
}

fn component(name: &str) -> Result<&str, String> {
    match name {
        "" => Err("has an empty component (// or a trailing /)".into()),
        "." | ".." => Err(format!(
            "may not contain {name:?}: it must stay inside the files folder"
        )),
        _ if name.len() > MAX_NAME_BYTES => {
            Err(format!("has a name longer than {MAX_NAME_BYTES} bytes"))
        }
        _ if name.contains(['\0', '\\']) => {
            Err("may not contain NUL or backslash characters".into())
        }
        _ => Ok(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_folder() {
        assert_eq!(relative_path(""), Ok(vec![]));
        assert_eq!(relative_path("a/b.txt"), Ok(vec!["a", "b.txt"]));
        assert_eq!(
            relative_path("..."),
            Ok(vec!["..."]),
            "a name, not a step up"
        );
        for bad in [
            "../etc/passwd",
            "a/../../b",
            "/etc/passwd",
            "a//b",
            "a/",
            "./a",
            "a\\..\\b",
            "a\0b",
        ] {
            assert!(relative_path(bad).is_err(), "{bad:?} accepted");
        }
        assert!(relative_path(&"a/".repeat(600)).is_err());
        assert!(relative_path(&"n".repeat(256)).is_err());
        assert!(relative_path(&"n".repeat(255)).is_ok());
    }

    #[test]
    fn replies_are_tagged_by_status() {
        let reply = FileReply::Refused {
            reason: FileRefusal::Escapes,
            message: "x".into(),
        };
        let json = serde_json::to_value(&reply).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({"status": "refused", "reason": "escapes", "message": "x"})
        );
        let op: FileOp =
            serde_json::from_value(serde_json::json!({"op": "upload", "path": "a.txt", "size": 3}))
                .expect("parses");
        assert_eq!(op.path(), "a.txt");
    }
}
