//! The relay's end of a recording: each chunk going to the viewer goes
//! into the tap behind its header, by `tee(2)` from the relay's pipe on
//! the zero-copy path, or written from memory on the copying path (the
//! same bytes either way, so the same file).

use super::format::chunk_header;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use streamspace_splice::Pipe;
use streamspace_splice::tap::Tap;

/// Records one tunnel's server-to-viewer bytes.
pub struct Recorder {
    tap: Tap,
    /// Chunk times count from here (the file's start time is the same moment).
    epoch: Instant,
    stopped: Arc<AtomicBool>,
    id: String,
}

impl Recorder {
    pub(super) fn new(tap: Tap, stopped: Arc<AtomicBool>, id: String) -> Self {
        Recorder {
            tap,
            epoch: Instant::now(),
            stopped,
            id,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether the writer stopped (a cap, a disk error): the tunnel must
    /// close, since what it shows would no longer be recorded.
    pub fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    fn header(&self, len: usize) -> [u8; 8] {
        let at = u32::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u32::MAX);
        chunk_header(at, u32::try_from(len).unwrap_or(u32::MAX))
    }

    /// Records a chunk held in memory (the copying path).
    pub async fn record(&self, chunk: &[u8]) -> io::Result<()> {
        self.tap.write_all(&self.header(chunk.len())).await?;
        self.tap.write_all(chunk).await
    }

    /// Records the `len` bytes in `pipe` without consuming them. When the
    /// tap had room for only part, the chunk is taken out of the pipe and
    /// returned: the caller sends it from memory instead.
    pub async fn record_pipe(&self, pipe: &Pipe, len: usize) -> io::Result<Option<Vec<u8>>> {
        self.tap.write_all(&self.header(len)).await?;
        let teed = self.tap.tee_from(pipe, len).await?;
        if teed == len {
            return Ok(None);
        }
        let chunk = pipe.take(len)?;
        self.tap.write_all(&chunk[teed..]).await?;
        Ok(Some(chunk))
    }
}
