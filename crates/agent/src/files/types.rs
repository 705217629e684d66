//! What a file operation works on and answers: a checked place in the
//! files folder, a refusal, and the bytes going out or in. A leaf: the
//! platform trait and the channel code both use it.

use bytes::Bytes;
use futures::stream::BoxStream;
use streamspace_protocol::files::{FileEntry, FileRefusal, FilesFolder, relative_path};

/// A checked place in the files folder: every part is a plain name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileTarget {
    /// The home the folder is under; `None`: the session's own `$HOME`.
    pub home: Option<String>,
    /// The folder, relative to the home (`["Downloads"]`).
    pub folder: Vec<String>,
    /// The path, relative to the folder (empty: the folder itself).
    pub path: Vec<String>,
}

impl FileTarget {
    /// Checks both the folder and the path (the control plane did too; an
    /// agent does not trust a message to be well-formed).
    pub fn new(folder: &FilesFolder, path: &str) -> FileResult<Self> {
        let bad = |what: &str, why: String| {
            FileRefused::new(FileRefusal::Escapes, format!("the {what} {why}"))
        };
        let home = folder.home.clone();
        if home.as_deref().is_some_and(|h| !h.starts_with('/')) {
            return Err(bad("home", "must be an absolute path".into()));
        }
        let folder = relative_path(&folder.folder).map_err(|why| bad("files folder", why))?;
        let path = relative_path(path).map_err(|why| bad("path", why))?;
        Ok(Self {
            home,
            folder: folder.into_iter().map(str::to_owned).collect(),
            path: path.into_iter().map(str::to_owned).collect(),
        })
    }

    /// Every component below the home, folder first: the ones a platform
    /// checks one by one for symbolic links.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.folder.iter().chain(&self.path).map(String::as_str)
    }

    /// The absolute path under `home` of the first `depth` components.
    pub fn join(&self, home: &str, depth: usize) -> String {
        let mut out = home.trim_end_matches('/').to_owned();
        for part in self.components().take(depth) {
            out.push('/');
            out.push_str(part);
        }
        if out.is_empty() { "/".into() } else { out }
    }

    /// Components below the home, counted.
    pub fn depth(&self) -> usize {
        self.folder.len() + self.path.len()
    }
}

/// Why a file operation was refused, in words for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FileRefused {
    pub reason: FileRefusal,
    pub message: String,
}

impl FileRefused {
    pub fn new(reason: FileRefusal, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

pub type FileResult<T> = Result<T, FileRefused>;

/// A listing: at most [`streamspace_protocol::files::MAX_LIST_ENTRIES`].
#[derive(Debug, Default)]
pub struct Listing {
    pub entries: Vec<FileEntry>,
    pub truncated: bool,
}

/// A file's bytes on their way out of the session.
pub struct Download {
    pub size: u64,
    pub bytes: BoxStream<'static, std::io::Result<Bytes>>,
}

/// An upload, whole, spooled to a temporary file read from its start.
pub struct Upload {
    pub size: u64,
    pub file: tokio::fs::File,
}
