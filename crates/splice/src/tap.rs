//! Taps for recording a relay without copying it: `tee(2)` duplicates the
//! chunk in a relay's [`Pipe`] into a second pipe (the [`Tap`]) without
//! consuming it, and a thread moves the tap's contents into a file with
//! `splice(2)` ([`TapReader`]). The chunk's pages are shared, never copied
//! through user space; only the small headers a recorder interleaves are.

use super::Pipe;
use rustix::io::{Errno, ioctl_fionbio, read, write};
use rustix::pipe::{PipeFlags, SpliceFlags, fcntl_setpipe_size, pipe_with, splice, tee};
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use tokio::net::unix::pipe::Sender;

/// The writing side of a tap, used by the relay's task: never blocks the
/// runtime, and waits (back-pressure) while the tap is full.
pub struct Tap {
    write: Sender,
}

/// The reading side of a tap, for a thread of its own: its calls block.
pub struct TapReader {
    read: OwnedFd,
}

/// A tap of `capacity` bytes if the system allows, else the default size:
/// a small tap only means `tee` more often finds it too full for a whole
/// chunk (then the caller copies that one chunk).
pub fn tap(capacity: usize) -> io::Result<(Tap, TapReader)> {
    // Blocking for the reader's thread; the writer's end alone is made
    // non-blocking (the two ends are separate open files).
    let (read, write) = pipe_with(PipeFlags::CLOEXEC)?;
    let _ = fcntl_setpipe_size(&write, capacity);
    ioctl_fionbio(&write, true)?;
    let write = Sender::from_owned_fd(write)?;
    Ok((Tap { write }, TapReader { read }))
}

impl Tap {
    /// Writes all of `bytes`, waiting while the tap is full. Writes of up
    /// to 4 KiB (`PIPE_BUF`) go in whole, so a short header is never split.
    pub async fn write_all(&self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let written = self.when_writable(|fd| Ok(write(fd, bytes)?)).await?;
            bytes = &bytes[written..];
        }
        Ok(())
    }

    /// Duplicates the first `len` bytes in `pipe` into the tap without
    /// consuming them, waiting while the tap is full; how many it
    /// duplicated. Less than `len` means the tap had room for only part of
    /// the chunk: `tee` cannot resume mid-pipe, so the caller takes the
    /// rest out of `pipe` ([`Pipe::take`]).
    pub async fn tee_from(&self, pipe: &Pipe, len: usize) -> io::Result<usize> {
        if len == 0 {
            return Ok(0);
        }
        self.when_writable(|fd| Ok(tee(&pipe.read, fd, len, SpliceFlags::NONBLOCK)?))
            .await
    }

    /// Runs `op` on the tap's fd once it has room, again each time it
    /// finds none.
    async fn when_writable<R>(&self, op: impl Fn(&Sender) -> io::Result<R>) -> io::Result<R> {
        loop {
            self.write.writable().await?;
            match self.write.try_io(|| op(&self.write)) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                done => return done,
            }
        }
    }
}

impl TapReader {
    /// Fills `buf` (blocking); `false` if the tap ended before any byte.
    pub fn read_exact(&self, buf: &mut [u8]) -> io::Result<bool> {
        let mut filled = 0;
        while filled < buf.len() {
            match read(&self.read, &mut buf[filled..]) {
                Ok(0) if filled == 0 => return Ok(false),
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => filled += n,
                Err(Errno::INTR) => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok(true)
    }

    /// Moves the next `len` bytes of the tap to the end of `file` in the
    /// kernel (blocking until they have all come).
    pub fn splice_to(&self, file: &File, mut len: usize) -> io::Result<()> {
        while len > 0 {
            match splice(&self.read, None, file, None, len, SpliceFlags::MOVE) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(moved) => len -= moved,
                Err(Errno::INTR) => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok(())
    }

    /// Drops the next `len` bytes of the tap (a recording that stopped).
    pub fn discard(&self, mut len: usize) -> io::Result<()> {
        let mut sink = [0u8; 16 * 1024];
        while len > 0 {
            let want = len.min(sink.len());
            match read(&self.read, &mut sink[..want]) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => len -= n,
                Err(Errno::INTR) => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek};
    use streamspace_testkit::tcp_pair as pair;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_teed_chunk_reaches_both_the_file_and_the_socket() {
        let (mut source, near) = pair().await;
        let (mut far, mut sink) = pair().await;
        let pipe = Pipe::new(64 * 1024).expect("pipe");
        let (tap, reader) = tap(256 * 1024).expect("tap");
        let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 239) as u8).collect();
        let sent = payload.clone();
        tokio::spawn(async move { source.write_all(&sent).await });
        let mut file = tempfile_in_tmp();
        let writer_file = file.try_clone().expect("clone");
        let thread = std::thread::spawn(move || {
            let mut header = [0u8; 4];
            let mut chunks = 0;
            while reader.read_exact(&mut header).expect("header") {
                let len = u32::from_be_bytes(header) as usize;
                reader.splice_to(&writer_file, len).expect("splice");
                chunks += 1;
            }
            chunks
        });

        let mut moved = 0;
        while moved < payload.len() {
            let n = pipe.fill(&near, usize::MAX).await.expect("fill");
            tap.write_all(&(n as u32).to_be_bytes())
                .await
                .expect("header");
            let teed = tap.tee_from(&pipe, n).await.expect("tee");
            if teed < n {
                let rest = pipe.take(n).expect("take");
                tap.write_all(&rest[teed..]).await.expect("rest");
                far.write_all(&rest).await.expect("send");
            } else {
                pipe.drain(&far, n).await.expect("drain");
            }
            moved += n;
        }
        drop(tap);
        let chunks = thread.join().expect("writer");
        assert!(chunks > 1, "several chunks: {chunks}");

        let mut received = vec![0u8; payload.len()];
        sink.read_exact(&mut received).await.expect("read");
        assert!(received == payload, "the viewer's bytes are intact");
        let mut recorded = Vec::new();
        file.rewind().expect("rewind");
        file.read_to_end(&mut recorded).expect("read file");
        assert!(recorded == payload, "the file holds the same bytes");
    }

    #[tokio::test]
    async fn a_full_tap_takes_part_of_a_chunk_and_take_gives_it_all() {
        let (mut source, near) = pair().await;
        let pipe = Pipe::new(64 * 1024).expect("pipe");
        // A tap of two slots, one already holding bytes: room for only the
        // first of the chunk's several buffers.
        let (tap, reader) = tap(8192).expect("tap");
        tap.write_all(&[7u8; 100]).await.expect("prefill");
        let payload: Vec<u8> = (0..30_000u32).map(|i| (i % 233) as u8).collect();
        // Two writes, two fills: at least two buffers in the relay pipe.
        let mut n = 0;
        for half in payload.chunks(payload.len() / 2) {
            source.write_all(half).await.expect("write");
            let want = n + half.len();
            while n < want {
                n += pipe.fill(&near, want - n).await.expect("fill");
            }
        }
        let teed = tap.tee_from(&pipe, n).await.expect("tee");
        assert!(teed > 0 && teed < n, "a partial tee: {teed} of {n}");
        let all = pipe.take(n).expect("take");
        assert!(all == payload, "tee consumed nothing");
        let mut head = vec![0u8; 100 + teed];
        assert!(reader.read_exact(&mut head).expect("read"));
        assert!(
            head[100..] == payload[..teed],
            "the teed part is the chunk's start"
        );
    }

    #[test]
    fn discard_and_end_of_tap() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (tap, reader) = rt.block_on(async { tap(64 * 1024) }).expect("tap");
        rt.block_on(tap.write_all(b"dropme-kept")).expect("write");
        drop(tap);
        reader.discard(7).expect("discard");
        let mut kept = [0u8; 4];
        assert!(reader.read_exact(&mut kept).expect("read"));
        assert_eq!(&kept, b"kept");
        assert!(!reader.read_exact(&mut kept).expect("end"), "the tap ended");
    }

    fn tempfile_in_tmp() -> File {
        let path = std::env::temp_dir().join(format!(
            "splice-tap-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .expect("temp file");
        let _ = std::fs::remove_file(&path);
        file
    }
}
