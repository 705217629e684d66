//! The control plane's end of a file transfer's data channel
//! (docs/FILES.md): ask the session's agent for one file operation, read its
//! JSON reply line (bounded in size and time), then hand over the raw bytes
//! that follow or send the upload's. One transfer holds one 64 KiB buffer
//! and nothing else, however big the file.

use super::open_data_channel;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::SessionRecord;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use std::time::Duration;
use streamspace_protocol::ServerMessage;
use streamspace_protocol::files::{FileOp, FileRefusal, FileReply, FilesFolder, MAX_REPLY_LINE};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};

/// How long the agent may take to answer (a listing walks the folder;
/// an upload's last answer comes once the file is in the session).
const REPLY_LIMIT: Duration = Duration::from_secs(120);

/// How long a transfer may go without a byte moving.
pub const IDLE_LIMIT: Duration = Duration::from_secs(60);

/// Bytes moved in one piece.
const CHUNK: usize = 64 * 1024;

/// An open data channel for one file operation.
pub struct FileChannel {
    io: BufReader<TokioIo<Upgraded>>,
}

impl FileChannel {
    /// Asks the session's agent to do `op` in `folder`.
    pub async fn open(
        state: &AppState,
        session: &SessionRecord,
        folder: FilesFolder,
        op: FileOp,
    ) -> ApiResult<Self> {
        let agent_id = session
            .agent_id
            .as_ref()
            .ok_or_else(|| ApiError::Conflict("the session has no agent".into()))?;
        let stream = open_data_channel(state, agent_id, |tunnel_id| ServerMessage::OpenFiles {
            tunnel_id,
            session_id: session.id.clone(),
            folder,
            op,
        })
        .await?;
        Ok(Self {
            io: BufReader::with_capacity(CHUNK, TokioIo::new(stream)),
        })
    }

    /// The agent's next reply line; a refusal becomes the matching error.
    pub async fn reply(&mut self) -> ApiResult<FileReply> {
        let mut line = Vec::new();
        let mut bounded = (&mut self.io).take(MAX_REPLY_LINE as u64);
        let read = tokio::time::timeout(REPLY_LIMIT, bounded.read_until(b'\n', &mut line)).await;
        match read {
            Err(_) => {
                return Err(ApiError::GatewayTimeout(format!(
                    "the agent did not answer within {REPLY_LIMIT:?}"
                )));
            }
            Ok(Err(e)) => {
                return Err(ApiError::BadGateway(format!(
                    "the agent's data channel broke: {e}"
                )));
            }
            Ok(Ok(_)) => {}
        }
        if line.last() != Some(&b'\n') {
            return Err(ApiError::BadGateway(
                "the agent closed the data channel without an answer".into(),
            ));
        }
        let reply: FileReply = serde_json::from_slice(&line).map_err(|e| {
            ApiError::BadGateway(format!("the agent's answer is not understood: {e}"))
        })?;
        match reply {
            FileReply::Refused { reason, message } => Err(refusal(reason, message)),
            reply => Ok(reply),
        }
    }

    /// The `size` bytes that follow a `sending` reply, as a body stream
    /// that fails when the agent stalls for [`IDLE_LIMIT`].
    pub fn into_body(
        self,
        size: u64,
    ) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
        idle_bounded(self.io.take(size))
    }

    /// Sends an upload's bytes, exactly `size` of them, from `body`.
    /// Fails when the body ends early, breaks, or stalls; the agent then
    /// sees fewer bytes than announced and writes nothing.
    pub async fn send<S>(&mut self, mut body: S, size: u64) -> ApiResult<()>
    where
        S: Stream<Item = ApiResult<Bytes>> + Unpin,
    {
        let mut sent = 0u64;
        loop {
            let next = tokio::time::timeout(IDLE_LIMIT, body.next())
                .await
                .map_err(|_| {
                    ApiError::RequestTimeout(format!(
                        "the upload stalled for {IDLE_LIMIT:?}: nothing was written"
                    ))
                })?;
            let Some(chunk) = next.transpose()? else {
                break;
            };
            sent += chunk.len() as u64;
            if sent > size {
                return Err(ApiError::BadRequest(
                    "the body is longer than its Content-Length".into(),
                ));
            }
            if let Err(e) = self.io.get_mut().write_all(&chunk).await {
                return Err(ApiError::BadGateway(format!(
                    "the agent's data channel broke: {e}"
                )));
            }
        }
        if sent != size {
            return Err(ApiError::BadRequest(format!(
                "the upload ended after {sent} of {size} bytes: nothing was written"
            )));
        }
        self.io
            .get_mut()
            .flush()
            .await
            .map_err(|e| ApiError::BadGateway(format!("the agent's data channel broke: {e}")))
    }
}

/// Reads `reader` in chunks, failing when no byte comes for [`IDLE_LIMIT`].
fn idle_bounded<R: AsyncRead + Unpin + Send + 'static>(
    reader: R,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    futures::stream::try_unfold(reader, |mut reader| async move {
        let mut chunk = bytes::BytesMut::with_capacity(CHUNK);
        let read = tokio::time::timeout(IDLE_LIMIT, reader.read_buf(&mut chunk)).await;
        match read {
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the agent stalled",
            )),
            Ok(Err(e)) => Err(e),
            Ok(Ok(0)) => Ok(None),
            Ok(Ok(_)) => Ok(Some((chunk.freeze(), reader))),
        }
    })
}

/// The HTTP error for an agent's refusal.
fn refusal(reason: FileRefusal, message: String) -> ApiError {
    match reason {
        FileRefusal::NotFound => ApiError::NotFound(message),
        FileRefusal::Escapes => ApiError::Forbidden(message),
        FileRefusal::WrongKind => ApiError::Conflict(message),
        FileRefusal::Incomplete => ApiError::BadRequest(message),
        FileRefusal::Unavailable => ApiError::Unavailable(message),
    }
}
