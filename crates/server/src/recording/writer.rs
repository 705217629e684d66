//! The thread that writes one recording: it reads each chunk's header
//! from the tap (8 bytes, copied), checks the caps, and splices the chunk
//! itself from the tap to the file in the kernel. When a cap is reached or
//! the disk fails it stops the recording (the relay sees the flag and
//! closes the tunnel) and discards what is still in the tap.

use super::format::{CHUNK_HEADER_LEN, parse_chunk_header};
use super::{Recorder, RecordingInfo, Recordings};
use crate::store::now_ms;
use std::fs::File;
use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use streamspace_splice::tap::{TapReader, tap};

/// The tap's size: room for many chunks, so the relay rarely waits for
/// the disk and `tee` rarely finds too little room for a whole chunk.
const TAP_CAPACITY: usize = 1024 * 1024;

/// Starts the writer thread; the recorder is the relay's end of it.
pub(super) fn spawn(
    recordings: Arc<Recordings>,
    info: RecordingInfo,
    file: File,
) -> io::Result<Recorder> {
    let (tap, reader) = tap(TAP_CAPACITY)?;
    let stopped = Arc::new(AtomicBool::new(false));
    let writer = Writer {
        reader,
        written: file.metadata()?.len(),
        file,
        stopped: stopped.clone(),
        recordings,
        duration_ms: 0,
        why: None,
    };
    let id = info.id.clone();
    std::thread::Builder::new()
        .name("recording".into())
        .spawn(move || writer.run(info))?;
    Ok(Recorder::new(tap, stopped, id))
}

struct Writer {
    reader: TapReader,
    file: File,
    /// The file's size so far.
    written: u64,
    stopped: Arc<AtomicBool>,
    recordings: Arc<Recordings>,
    duration_ms: u32,
    /// Why the recording stopped early.
    why: Option<String>,
}

impl Writer {
    /// Until the relay drops its tap; then the sidecar says how it ended.
    fn run(mut self, mut info: RecordingInfo) {
        if let Err(err) = self.chunks() {
            // The tap itself failed: nothing more can come.
            self.stop(format!("reading the tunnel failed: {err}"));
        }
        let _ = self.file.sync_data();
        info.ended_ms = Some(now_ms());
        info.duration_ms = u64::from(self.duration_ms);
        info.stopped = self.why.take();
        if let Err(err) = self.recordings.save_info(&info) {
            tracing::warn!(id = %info.id, %err, "cannot finish a recording's sidecar");
        }
        let mut active = self.recordings.active.lock().expect("not poisoned");
        active.remove(&info.id);
    }

    fn chunks(&mut self) -> io::Result<()> {
        let mut header = [0u8; CHUNK_HEADER_LEN];
        while self.reader.read_exact(&mut header)? {
            let (at_ms, len) = parse_chunk_header(&header);
            let len = len as usize;
            if self.why.is_none()
                && let Err(why) = self.admit(len)
            {
                self.stop(why);
            }
            if self.why.is_some() {
                self.reader.discard(len)?;
                continue;
            }
            if let Err(err) = self.append(&header, len) {
                self.stop(format!("writing the file failed: {err}"));
                return self.discard_rest();
            }
            self.duration_ms = at_ms;
        }
        Ok(())
    }

    /// Whether a chunk of `len` bytes fits both caps (and reserves it).
    fn admit(&mut self, len: usize) -> Result<(), String> {
        let size = (CHUNK_HEADER_LEN + len) as u64;
        let limits = self.recordings.limits;
        if self.written + size > limits.max_bytes {
            return Err(format!(
                "reached the size cap of one recording ({} bytes)",
                limits.max_bytes
            ));
        }
        if !self.recordings.reserve(size) {
            return Err(format!(
                "recording storage is full ({} bytes for all recordings)",
                limits.max_total
            ));
        }
        Ok(())
    }

    /// The header (copied) and the chunk (spliced) at the end of the file.
    fn append(&mut self, header: &[u8], len: usize) -> io::Result<()> {
        self.file.write_all(header)?;
        self.reader.splice_to(&self.file, len)?;
        self.written += (header.len() + len) as u64;
        Ok(())
    }

    /// After a failed write the file may hold half a chunk: nothing more
    /// goes in, and the tap is emptied until the relay lets go.
    fn discard_rest(&mut self) -> io::Result<()> {
        // The reservation of the chunk that failed is released by the next
        // recount; the file's actual size is what counts then.
        let mut header = [0u8; CHUNK_HEADER_LEN];
        while self.reader.read_exact(&mut header)? {
            let (_, len) = parse_chunk_header(&header);
            self.reader.discard(len as usize)?;
        }
        Ok(())
    }

    fn stop(&mut self, why: String) {
        tracing::warn!(%why, "a recording stopped early; its tunnel closes");
        self.stopped.store(true, Ordering::Relaxed);
        self.why.get_or_insert(why);
    }
}
