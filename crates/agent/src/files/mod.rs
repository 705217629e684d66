//! File transfer on a data channel (docs/FILES.md): list, download or
//! upload one file in a session's files folder. The platform does the
//! work inside the session ([`Platform::list_files`] and friends); this
//! module speaks the channel's framing ([`streamspace_protocol::files`]),
//! checks paths once more, and spools uploads to a temporary file first, so
//! an upload that breaks off never reaches the session half-written.

pub mod tar;
pub(crate) mod types;

pub use types::{Download, FileRefused, FileResult, FileTarget, Listing, Upload};

use crate::platform::Platform;
use futures::StreamExt;
use std::time::Duration;
use streamspace_protocol::SessionId;
use streamspace_protocol::files::{FileOp, FileRefusal, FileReply, FilesFolder};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWrite, AsyncWriteExt};

/// How long a transfer may go without a byte moving before it is given up.
pub const IDLE_LIMIT: Duration = Duration::from_secs(60);

/// Runs one file operation on an open data channel.
pub async fn serve<S>(
    platform: &dyn Platform,
    session_id: &SessionId,
    folder: &FilesFolder,
    op: FileOp,
    mut channel: S,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let reply = match FileTarget::new(folder, op.path()) {
        Err(refused) => refusal(refused),
        Ok(target) => match op {
            FileOp::List { .. } => list(platform, session_id, &target).await,
            FileOp::Download { .. } => {
                return download(platform, session_id, &target, channel).await;
            }
            FileOp::Upload { size, .. } => {
                upload(platform, session_id, &target, size, &mut channel).await
            }
        },
    };
    let _ = write_reply(&mut channel, &reply).await;
    let _ = channel.shutdown().await;
}

fn refusal(refused: FileRefused) -> FileReply {
    FileReply::Refused {
        reason: refused.reason,
        message: refused.message,
    }
}

async fn list(platform: &dyn Platform, session_id: &SessionId, target: &FileTarget) -> FileReply {
    match platform.list_files(session_id, target).await {
        Ok(listing) => FileReply::Listing {
            entries: listing.entries,
            truncated: listing.truncated,
        },
        Err(refused) => refusal(refused),
    }
}

async fn download<S>(
    platform: &dyn Platform,
    session_id: &SessionId,
    target: &FileTarget,
    mut channel: S,
) where
    S: AsyncWrite + Unpin,
{
    let Download { size, mut bytes } = match platform.read_file(session_id, target).await {
        Ok(download) => download,
        Err(refused) => {
            let _ = write_reply(&mut channel, &refusal(refused)).await;
            let _ = channel.shutdown().await;
            return;
        }
    };
    if write_reply(&mut channel, &FileReply::Sending { size })
        .await
        .is_err()
    {
        return;
    }
    // A short or broken stream just ends the channel early: the control
    // plane counts the bytes and breaks the response off.
    while let Ok(Some(Ok(chunk))) = tokio::time::timeout(IDLE_LIMIT, bytes.next()).await {
        if channel.write_all(&chunk).await.is_err() {
            return;
        }
    }
    let _ = channel.shutdown().await;
}

async fn upload<S>(
    platform: &dyn Platform,
    session_id: &SessionId,
    target: &FileTarget,
    size: u64,
    channel: &mut S,
) -> FileReply
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if target.path.is_empty() {
        return refusal(FileRefused::new(
            FileRefusal::WrongKind,
            "an upload needs a file name",
        ));
    }
    if write_reply(channel, &FileReply::Ready).await.is_err() {
        return refusal(FileRefused::new(
            FileRefusal::Incomplete,
            "the control plane went away",
        ));
    }
    let file = match spool(channel, size).await {
        Ok(file) => file,
        Err(refused) => return refusal(refused),
    };
    match platform
        .write_file(session_id, target, Upload { size, file })
        .await
    {
        Ok(()) => FileReply::Written { size },
        Err(refused) => refusal(refused),
    }
}

/// Receives exactly `size` bytes into an unnamed temporary file (gone when
/// dropped), with at most one 64 KiB buffer in memory.
async fn spool<R: AsyncRead + Unpin>(channel: &mut R, size: u64) -> FileResult<tokio::fs::File> {
    let unavailable = |e: std::io::Error| {
        FileRefused::new(
            FileRefusal::Unavailable,
            format!("cannot spool the upload on the agent: {e}"),
        )
    };
    let mut file = tokio::fs::File::from_std(tempfile::tempfile().map_err(unavailable)?);
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = size;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let read = tokio::time::timeout(IDLE_LIMIT, channel.read(&mut buf[..want])).await;
        let n = match read {
            Ok(Ok(n)) if n > 0 => n,
            _ => {
                return Err(FileRefused::new(
                    FileRefusal::Incomplete,
                    format!(
                        "the upload broke off after {} of {size} bytes: nothing was written",
                        size - left
                    ),
                ));
            }
        };
        file.write_all(&buf[..n]).await.map_err(unavailable)?;
        left -= n as u64;
    }
    file.flush().await.map_err(unavailable)?;
    file.rewind().await.map_err(unavailable)?;
    Ok(file)
}

async fn write_reply<W: AsyncWrite + Unpin>(
    channel: &mut W,
    reply: &FileReply,
) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(reply).map_err(std::io::Error::other)?;
    line.push(b'\n');
    channel.write_all(&line).await?;
    channel.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(home: Option<&str>, folder: &str) -> FilesFolder {
        FilesFolder {
            home: home.map(str::to_owned),
            folder: folder.into(),
        }
    }

    #[test]
    fn targets_refuse_escapes_in_folder_and_path() {
        let target =
            FileTarget::new(&folder(Some("/home/user"), "Downloads"), "a/b.txt").expect("fine");
        assert_eq!(
            target.join("/home/user", target.depth()),
            "/home/user/Downloads/a/b.txt"
        );
        assert_eq!(target.join("/home/user", 1), "/home/user/Downloads");
        assert_eq!(target.join("/", 1), "/Downloads");
        for (home, dir, path) in [
            (Some("/home/user"), "Downloads", "../x"),
            (Some("/home/user"), "../etc", "x"),
            (Some("relative"), "Downloads", "x"),
            (None, "/etc", "x"),
        ] {
            let refused = FileTarget::new(&folder(home, dir), path).expect_err("refused");
            assert_eq!(refused.reason, FileRefusal::Escapes);
        }
    }

    #[tokio::test]
    async fn a_short_upload_is_refused_and_a_whole_one_spooled() {
        let mut short = &b"abc"[..];
        let refused = spool(&mut short, 10).await.expect_err("short");
        assert_eq!(refused.reason, FileRefusal::Incomplete);
        let mut whole = &b"abcdef"[..];
        let mut file = spool(&mut whole, 4).await.expect("whole");
        let mut back = String::new();
        file.read_to_string(&mut back).await.expect("reads");
        assert_eq!(back, "abcd", "exactly size bytes, nothing after");
    }
}
