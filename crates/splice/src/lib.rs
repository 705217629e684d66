//! Zero-copy tunnels (Linux): when both ends of a relay are plain TCP
//! sockets, splice(2) moves the bytes socket → pipe → socket inside the
//! kernel, so a relay that never looks at them never copies them through
//! user space; it only waits for readiness.
//!
//! The agent splices both directions ([`Pipes`]); the control plane splices
//! what goes to the viewer, each chunk behind a WebSocket frame header
//! ([`Pipe::fill`], then [`Pipe::drain_after`]). A recorded tunnel also
//! tees each chunk into a [`tap::Tap`] that a thread splices into a file.

#![cfg(target_os = "linux")]

pub mod tap;

use rustix::io::read;
use rustix::net::{SendFlags, send};
use rustix::pipe::{PipeFlags, SpliceFlags, fcntl_setpipe_size, pipe_with, splice};
use std::io;
use std::os::fd::OwnedFd;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Pipe capacity the agent asks for: more bytes per splice means fewer
/// wake-ups under bulk traffic. Pages are only held while bytes are in
/// transit.
const AGENT_PIPE_CAPACITY: usize = 256 * 1024;

const FLAGS: SpliceFlags = SpliceFlags::MOVE.union(SpliceFlags::NONBLOCK);

/// A pipe to carry bytes from one socket to another.
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    capacity: usize,
}

impl Pipe {
    /// A pipe of `capacity` bytes if the system allows it, else of its
    /// default (64 KiB, or less for an unprivileged user over
    /// `fs.pipe-user-pages-soft`): smaller pipes only mean more splices.
    pub fn new(capacity: usize) -> io::Result<Self> {
        let (read, write) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        let capacity = fcntl_setpipe_size(&write, capacity).unwrap_or(64 * 1024);
        Ok(Pipe {
            read,
            write,
            capacity,
        })
    }

    /// Waits until `from` has bytes and moves up to `max` of them into the
    /// empty pipe; 0 at the end of the stream. Cancel-safe: nothing moves
    /// unless the future completes.
    pub async fn fill(&self, from: &TcpStream, max: usize) -> io::Result<usize> {
        let max = max.min(self.capacity);
        // The pipe is empty here, so "would block" can only mean `from` is.
        from.async_io(Interest::READABLE, || {
            Ok(splice(from, None, &self.write, None, max, FLAGS)?)
        })
        .await
    }

    /// Moves the `len` bytes in the pipe to `to`.
    pub async fn drain(&self, to: &TcpStream, mut len: usize) -> io::Result<()> {
        while len > 0 {
            let moved = to
                .async_io(Interest::WRITABLE, || {
                    Ok(splice(&self.read, None, to, None, len, FLAGS)?)
                })
                .await?;
            if moved == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            len -= moved;
        }
        Ok(())
    }

    /// Takes the `len` bytes in the pipe out into memory: the rare chunk a
    /// full [`tap::Tap`] could only partly duplicate. The bytes are already
    /// in the pipe, so this never waits.
    pub fn take(&self, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        let mut filled = 0;
        while filled < len {
            match read(&self.read, &mut buf[filled..]) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => filled += n,
                Err(rustix::io::Errno::INTR) => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok(buf)
    }

    /// Sends `prefix` (a frame header), then the `len` bytes in the pipe;
    /// `MSG_MORE` lets the kernel put both in the same segments.
    pub async fn drain_after(&self, prefix: &[u8], to: &TcpStream, len: usize) -> io::Result<()> {
        let mut rest = prefix;
        while !rest.is_empty() {
            let sent = to
                .async_io(Interest::WRITABLE, || {
                    Ok(send(to, rest, SendFlags::MORE | SendFlags::NOSIGNAL)?)
                })
                .await?;
            if sent == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            rest = &rest[sent..];
        }
        self.drain(to, len).await
    }
}

/// A pipe for each direction, made before any byte moves, so a failure
/// (out of file descriptors) leaves the caller free to copy instead.
pub struct Pipes([Pipe; 2]);

impl Pipes {
    pub fn new() -> io::Result<Self> {
        Ok(Pipes([
            Pipe::new(AGENT_PIPE_CAPACITY)?,
            Pipe::new(AGENT_PIPE_CAPACITY)?,
        ]))
    }

    /// Moves bytes both ways until either side ends or fails; dropping the
    /// sockets afterwards closes both (RFB needs no half-close).
    pub async fn splice(self, a: &TcpStream, b: &TcpStream) {
        let [ab, ba] = &self.0;
        tokio::select! {
            _ = pump(a, b, ab) => {}
            _ = pump(b, a, ba) => {}
        }
    }
}

async fn pump(from: &TcpStream, to: &TcpStream, pipe: &Pipe) -> io::Result<()> {
    loop {
        let n = pipe.fill(from, usize::MAX).await?;
        if n == 0 {
            return Ok(());
        }
        pipe.drain(to, n).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamspace_testkit::tcp_pair as pair;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn bytes_cross_both_ways_and_an_end_closes_the_other() {
        let (mut viewer, agent_a) = pair().await;
        let (agent_b, mut session) = pair().await;
        let tunnel = tokio::spawn(async move {
            Pipes::new()
                .expect("pipes")
                .splice(&agent_a, &agent_b)
                .await;
        });

        viewer.write_all(b"key").await.expect("write");
        let mut small = [0u8; 3];
        session.read_exact(&mut small).await.expect("read");
        assert_eq!(&small, b"key", "small messages pass at once");

        let bulk: Vec<u8> = (0..4_000_000u32).map(|i| (i % 251) as u8).collect();
        let expected = bulk.clone();
        let writer = tokio::spawn(async move {
            session.write_all(&bulk).await.expect("bulk write");
            session
        });
        let mut received = vec![0u8; expected.len()];
        viewer.read_exact(&mut received).await.expect("bulk read");
        assert!(
            received == expected,
            "bulk data arrives intact and in order"
        );

        drop(writer.await.expect("writer"));
        tunnel
            .await
            .expect("the tunnel ends when the session closes");
        let mut rest = Vec::new();
        viewer.read_to_end(&mut rest).await.expect("eof");
        assert!(rest.is_empty());
    }

    #[tokio::test]
    async fn a_prefix_goes_out_before_each_spliced_chunk() {
        let (mut source, near) = pair().await;
        let (far, mut sink) = pair().await;
        let pipe = Pipe::new(64 * 1024).expect("pipe");
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        let sent = payload.clone();
        tokio::spawn(async move { source.write_all(&sent).await });

        let mut expected = Vec::new();
        let mut moved = 0;
        while moved < payload.len() {
            let n = pipe.fill(&near, 10_000).await.expect("fill");
            assert!(n > 0 && n <= 10_000, "at most the asked maximum: {n}");
            let prefix = (n as u32).to_be_bytes();
            pipe.drain_after(&prefix, &far, n).await.expect("drain");
            expected.extend_from_slice(&prefix);
            expected.extend_from_slice(&payload[moved..moved + n]);
            moved += n;
        }
        let mut received = vec![0u8; expected.len()];
        sink.read_exact(&mut received).await.expect("read");
        assert!(received == expected, "each chunk follows its own prefix");
    }
}
