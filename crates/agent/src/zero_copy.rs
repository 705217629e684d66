//! Zero-copy tunnels (Linux): when the session and the data channel are both
//! plain TCP sockets, splice(2) moves the bytes socket → pipe → socket inside
//! the kernel. The agent never looks at them, so it never copies them
//! through user space; it only waits for readiness.

use rustix::pipe::{PipeFlags, SpliceFlags, fcntl_setpipe_size, pipe_with, splice};
use std::io;
use std::os::fd::OwnedFd;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Pipe capacity asked for: more bytes per splice means fewer wake-ups under
/// bulk traffic. Pages are only held while bytes are in transit.
const PIPE_CAPACITY: usize = 256 * 1024;

/// A pipe between two sockets, and how much one splice may move into it.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    capacity: usize,
}

impl Pipe {
    fn new() -> io::Result<Self> {
        let (read, write) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        // The default (64 KiB) still works if the system refuses more.
        let capacity = fcntl_setpipe_size(&write, PIPE_CAPACITY).unwrap_or(64 * 1024);
        Ok(Pipe {
            read,
            write,
            capacity,
        })
    }
}

/// A pipe for each direction, made before any byte moves, so a failure
/// (out of file descriptors) leaves the caller free to copy instead.
pub(crate) struct Pipes([Pipe; 2]);

impl Pipes {
    pub(crate) fn new() -> io::Result<Self> {
        Ok(Pipes([Pipe::new()?, Pipe::new()?]))
    }

    /// Moves bytes both ways until either side ends or fails; dropping the
    /// sockets afterwards closes both (RFB needs no half-close).
    pub(crate) async fn splice(self, a: &TcpStream, b: &TcpStream) {
        let [ab, ba] = &self.0;
        tokio::select! {
            _ = pump(a, b, ab) => {}
            _ = pump(b, a, ba) => {}
        }
    }
}

async fn pump(from: &TcpStream, to: &TcpStream, pipe: &Pipe) -> io::Result<()> {
    let flags = SpliceFlags::MOVE | SpliceFlags::NONBLOCK;
    loop {
        // The pipe is empty here, so "would block" can only mean `from` is.
        let n = from
            .async_io(Interest::READABLE, || {
                Ok(splice(from, None, &pipe.write, None, pipe.capacity, flags)?)
            })
            .await?;
        if n == 0 {
            return Ok(());
        }
        let mut left = n;
        while left > 0 {
            let moved = to
                .async_io(Interest::WRITABLE, || {
                    Ok(splice(&pipe.read, None, to, None, left, flags)?)
                })
                .await?;
            if moved == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            left -= moved;
        }
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
}
