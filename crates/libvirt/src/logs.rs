//! The session's console output: its first serial port, which virtlogd
//! writes to a file (and rotates at its `max_size`, 2 MiB by default, so
//! reading all of it stays cheap). Followed by polling the file: it lives
//! on this host, and a poll every quarter second is nothing next to a VM.

use crate::Shared;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use std::io::SeekFrom;
use std::path::PathBuf;
use std::time::Duration;
use streamspace_agent::{OrNotFound, PlatformError, PlatformResult};
use streamspace_protocol::SessionId;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

const FOLLOW_EVERY: Duration = Duration::from_millis(250);
/// The most read at once while following.
const CHUNK: usize = 64 * 1024;

impl Shared {
    #[tracing::instrument(skip(self), fields(agent_id = %self.agent_id))]
    pub(crate) async fn logs(
        &self,
        session_id: &SessionId,
        tail: Option<u32>,
        follow: bool,
    ) -> PlatformResult<BoxStream<'static, PlatformResult<Bytes>>> {
        let found = self
            .inspect_owned(session_id)
            .await
            .or_not_found(session_id)?;
        let path = found
            .metadata
            .and_then(|m| m.serial_log)
            .map(PathBuf::from)
            .ok_or_else(|| {
                PlatformError::Unavailable(format!("session {session_id} records no serial log"))
            })?;
        let text = match tokio::fs::read(&path).await {
            Ok(text) => text,
            // Not written yet: the VM has printed nothing.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(PlatformError::Unavailable(format!(
                    "cannot read the serial log {}: {e}",
                    path.display()
                )));
            }
        };
        let offset = text.len() as u64;
        let first = Bytes::from(last_lines(&text, tail).to_vec());
        let head = futures::stream::iter((!first.is_empty()).then_some(Ok(first)));
        if !follow {
            return Ok(head.boxed());
        }
        Ok(head.chain(follow_file(path, offset)).boxed())
    }
}

/// The last `tail` lines of `text` (all with `None`).
fn last_lines(text: &[u8], tail: Option<u32>) -> &[u8] {
    let Some(tail) = tail else {
        return text;
    };
    if tail == 0 {
        return &text[text.len()..];
    }
    // A final newline ends the last line; it does not start another.
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let mut newlines = 0;
    for (i, byte) in body.iter().enumerate().rev() {
        if *byte == b'\n' {
            newlines += 1;
            if newlines == tail {
                return &text[i + 1..];
            }
        }
    }
    text
}

/// What is written to `path` from `offset` on, forever (until dropped). A
/// file that shrank was rotated or truncated: read again from its start.
fn follow_file(path: PathBuf, offset: u64) -> BoxStream<'static, PlatformResult<Bytes>> {
    futures::stream::unfold((path, offset), |(path, mut offset)| async move {
        loop {
            tokio::time::sleep(FOLLOW_EVERY).await;
            let Ok(mut file) = tokio::fs::File::open(&path).await else {
                continue;
            };
            let Ok(length) = file.metadata().await.map(|m| m.len()) else {
                continue;
            };
            if length < offset {
                offset = 0;
            }
            if length == offset {
                continue;
            }
            let mut buffer = vec![0u8; CHUNK];
            let read = async {
                file.seek(SeekFrom::Start(offset)).await?;
                file.read(&mut buffer).await
            };
            match read.await {
                Ok(0) => continue,
                Ok(n) => {
                    buffer.truncate(n);
                    offset += n as u64;
                    return Some((Ok(Bytes::from(buffer)), (path, offset)));
                }
                Err(e) => {
                    let err = PlatformError::Unavailable(format!(
                        "reading the serial log {}: {e}",
                        path.display()
                    ));
                    return Some((Err(err), (path, offset)));
                }
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_count_lines_from_the_end() {
        let text = b"one\ntwo\nthree\n";
        assert_eq!(last_lines(text, None), text);
        assert_eq!(last_lines(text, Some(1)), b"three\n");
        assert_eq!(last_lines(text, Some(2)), b"two\nthree\n");
        assert_eq!(last_lines(text, Some(9)), text);
        assert_eq!(last_lines(text, Some(0)), b"");
        assert_eq!(last_lines(b"a\npartial", Some(1)), b"partial");
    }

    #[tokio::test]
    async fn following_reads_what_is_appended_and_survives_truncation() {
        let dir = std::env::temp_dir().join(format!("ss-follow-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("serial.log");
        std::fs::write(&path, b"old\n").expect("write");
        let mut stream = follow_file(path.clone(), 4);
        std::fs::write(&path, b"old\nnew\n").expect("append");
        let chunk = stream.next().await.expect("a chunk").expect("read");
        assert_eq!(&chunk[..], b"new\n");
        std::fs::write(&path, b"r\n").expect("truncate");
        let chunk = stream.next().await.expect("a chunk").expect("read");
        assert_eq!(&chunk[..], b"r\n");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
