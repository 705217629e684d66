//! Session recordings: what the VNC server sent on a viewer's tunnel, with
//! timing, in files under `DATA_DIR/recordings` (format: [`format`],
//! docs/RECORDING.md), each with a JSON sidecar describing it.
//!
//! [`Recordings`] owns the directory: it starts recordings (a
//! [`Recorder`] for the relay and a thread writing the file), lists and
//! deletes them, and holds the bounds: a cap per recording and one on all
//! of them together, so recordings can never fill the disk. Retention by
//! age and total size is [`retention`]'s job.

pub mod format;
pub mod limits;
pub mod policy;
#[cfg(target_os = "linux")]
mod recorder;
pub mod retention;
#[cfg(target_os = "linux")]
mod writer;

#[cfg(target_os = "linux")]
pub use limits::Limits;
pub use recorder::Recorder;

/// Without `tee(2)` (not Linux) there are no recorders.
#[cfg(not(target_os = "linux"))]
pub enum Recorder {}

#[cfg(not(target_os = "linux"))]
impl Recorder {
    pub fn stopped(&self) -> bool {
        match *self {}
    }

    pub async fn record(&self, _: &[u8]) -> io::Result<()> {
        match *self {}
    }
}

use crate::store::now_ms;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use streamspace_protocol::SessionId;

/// A recording's file name ends in this; its sidecar in `.json`.
const EXTENSION: &str = "ssrec";

/// What the sidecar `{id}.json` next to each recording says about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingInfo {
    /// `{start ms, 13 digits}-{8 hex}`: sorts by time, names the files.
    pub id: String,
    pub session_id: SessionId,
    /// Whose viewer this tunnel was (`user:NAME`, as in the audit log).
    pub viewer: String,
    pub started_ms: i64,
    /// Unset while the recording runs (or if the server died during it).
    pub ended_ms: Option<i64>,
    /// The time of the last chunk recorded.
    pub duration_ms: u64,
    /// Why the recording ended before its tunnel did (a cap, a disk error).
    pub stopped: Option<String>,
}

/// Why a recording could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "recording storage is full ({used} of {max} bytes used): an admin must delete recordings or raise --recording-max-total"
    )]
    Full { used: u64, max: u64 },
    #[error("cannot write the recording: {0}")]
    Io(#[from] io::Error),
}

/// Why a recording could not be deleted.
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    #[error("no such recording")]
    NotFound,
    #[error("the recording is still running: it can be deleted once its viewer closes")]
    Active,
    #[error("cannot delete the recording: {0}")]
    Io(#[from] io::Error),
}

/// The recordings directory and its bounds.
#[derive(Debug)]
pub struct Recordings {
    dir: PathBuf,
    limits: Limits,
    /// Bytes of every recording on disk, and those reserved by writers.
    used: AtomicU64,
    /// Ids of the recordings being written.
    active: Mutex<HashSet<String>>,
}

impl Recordings {
    /// The directory (made private if missing) and what is in it already.
    pub fn open(dir: PathBuf, limits: Limits) -> io::Result<Self> {
        crate::private::ensure_private_dir(&dir)?;
        let recordings = Recordings {
            dir,
            limits,
            used: AtomicU64::new(0),
            active: Mutex::default(),
        };
        recordings.recount()?;
        Ok(recordings)
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Bytes used now (files and reservations).
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Sets the use to what the recording files hold, correcting any drift
    /// (running writers' files count as far as they got).
    pub fn recount(&self) -> io::Result<u64> {
        let mut total = 0;
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            // Sidecars (a few hundred bytes each) are not counted.
            if entry.path().extension().is_some_and(|e| e == EXTENSION) {
                total += entry.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
        self.used.store(total, Ordering::Relaxed);
        Ok(total)
    }

    /// Takes `bytes` from the total budget; `false` if it has not that much.
    fn reserve(&self, bytes: u64) -> bool {
        let max = self.limits.max_total;
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(bytes).filter(|total| *total <= max)
            })
            .is_ok()
    }

    fn release(&self, bytes: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                Some(used.saturating_sub(bytes))
            });
    }

    fn path(&self, id: &str, extension: &str) -> PathBuf {
        self.dir.join(format!("{id}.{extension}"))
    }

    /// The recording file of `id`, if `id` is well-formed and it exists.
    pub fn file(&self, id: &str) -> Option<PathBuf> {
        let path = self.path(valid_id(id)?, EXTENSION);
        path.is_file().then_some(path)
    }

    pub fn is_active(&self, id: &str) -> bool {
        self.active.lock().expect("not poisoned").contains(id)
    }

    /// The recordings (of one session, or all), newest first, each with
    /// its file's size and whether it is running.
    pub fn list(&self, session: Option<&SessionId>) -> io::Result<Vec<Listed>> {
        let mut listed = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            // Whether it runs, asked before its sidecar is read: a recording
            // that ends in between is listed as running, never as finished
            // without its end (its final sidecar is written first).
            let id = path.file_stem().and_then(|stem| stem.to_str());
            let active = id.is_some_and(|id| self.is_active(id));
            let Some(info) = read_info(&path) else {
                continue;
            };
            if session.is_some_and(|s| *s != info.session_id) {
                continue;
            }
            let bytes = std::fs::metadata(self.path(&info.id, EXTENSION))
                .map(|m| m.len())
                .unwrap_or(0);
            listed.push(Listed {
                info,
                bytes,
                active,
            });
        }
        listed.sort_by(|a, b| b.info.id.cmp(&a.info.id));
        Ok(listed)
    }

    /// One recording's description.
    pub fn info(&self, id: &str) -> Option<RecordingInfo> {
        read_info(&self.path(valid_id(id)?, "json"))
    }

    /// Deletes a finished recording and its sidecar.
    pub fn delete(&self, id: &str) -> Result<RecordingInfo, DeleteError> {
        let info = self.info(id).ok_or(DeleteError::NotFound)?;
        if self.is_active(id) {
            return Err(DeleteError::Active);
        }
        let file = self.path(&info.id, EXTENSION);
        let bytes = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        match std::fs::remove_file(&file) {
            Ok(()) => self.release(bytes),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err.into()),
        }
        std::fs::remove_file(self.path(&info.id, "json"))?;
        Ok(info)
    }

    /// Writes a sidecar whole (a reader never sees half of one).
    fn save_info(&self, info: &RecordingInfo) -> io::Result<()> {
        let json = serde_json::to_vec_pretty(info).map_err(io::Error::other)?;
        let path = self.path(&info.id, "json");
        let temporary = self.path(&info.id, "json.tmp");
        std::fs::write(&temporary, json)?;
        std::fs::rename(&temporary, &path)
    }
}

/// A recording as listed: its sidecar, its size, whether it runs.
#[derive(Debug, Clone)]
pub struct Listed {
    pub info: RecordingInfo,
    pub bytes: u64,
    pub active: bool,
}

/// A fresh id: the start time, so ids sort by it, and randomness.
fn new_id(started_ms: i64) -> String {
    let mut random = [0u8; 4];
    getrandom::fill(&mut random).expect("the operating system's random source failed");
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    format!("{:013}-{hex}", started_ms.max(0))
}

/// `id` if it has the form [`new_id`] makes (so it names no other path).
fn valid_id(id: &str) -> Option<&str> {
    let (time, random) = id.split_once('-')?;
    let ok = time.len() == 13
        && time.bytes().all(|b| b.is_ascii_digit())
        && random.len() == 8
        && random
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    ok.then_some(id)
}

fn read_info(path: &Path) -> Option<RecordingInfo> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes)
        .map_err(|err| tracing::warn!(path = %path.display(), %err, "unreadable recording sidecar"))
        .ok()
}

/// Starts recording a viewer's tunnel: the file, its sidecar, and the
/// thread that writes it. On platforms without `tee(2)` nothing can be
/// recorded.
#[cfg(target_os = "linux")]
pub fn start(
    recordings: &std::sync::Arc<Recordings>,
    session_id: &SessionId,
    viewer: &str,
) -> Result<(Recorder, RecordingInfo), StartError> {
    let started_ms = now_ms();
    let header = format::file_header(started_ms);
    if !recordings.reserve(header.len() as u64) {
        let (used, max) = (recordings.used(), recordings.limits.max_total);
        return Err(StartError::Full { used, max });
    }
    let info = RecordingInfo {
        id: new_id(started_ms),
        session_id: session_id.clone(),
        viewer: viewer.to_owned(),
        started_ms,
        ended_ms: None,
        duration_ms: 0,
        stopped: None,
    };
    let begun = begin(recordings, &info, &header);
    if begun.is_err() {
        recordings.release(header.len() as u64);
    }
    Ok((begun?, info))
}

#[cfg(target_os = "linux")]
fn begin(
    recordings: &std::sync::Arc<Recordings>,
    info: &RecordingInfo,
    header: &[u8],
) -> Result<Recorder, StartError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = recordings.path(&info.id, EXTENSION);
    let mut file = std::fs::File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    file.write_all(header)?;
    // Active before its sidecar exists, and (writer.rs) until the final one
    // is written: a listing never shows a running recording as finished.
    recordings
        .active
        .lock()
        .expect("not poisoned")
        .insert(info.id.clone());
    let recorder = recordings
        .save_info(info)
        .and_then(|()| writer::spawn(recordings.clone(), info.clone(), file));
    if recorder.is_err() {
        recordings
            .active
            .lock()
            .expect("not poisoned")
            .remove(&info.id);
    }
    Ok(recorder?)
}

/// Without `tee(2)` (not Linux) recordings cannot be made.
#[cfg(not(target_os = "linux"))]
pub fn start(
    _: &std::sync::Arc<Recordings>,
    _: &SessionId,
    _: &str,
) -> Result<(Recorder, RecordingInfo), StartError> {
    let _ = now_ms;
    Err(StartError::Io(io::Error::new(
        io::ErrorKind::Unsupported,
        "recording needs Linux (tee(2))",
    )))
}

#[cfg(test)]
mod tests;
