//! The data channel: one fresh outbound connection from the agent per tunnel.
//!
//! When a viewer opens `/vnc/{session}`, the control plane sends
//! [`ServerMessage::OpenTunnel`](crate::ServerMessage::OpenTunnel) on the
//! control channel. The agent dials the session's port, then opens
//! `GET {TUNNEL_PATH_PREFIX}{tunnel_id}` on the control plane with
//! `Connection: Upgrade`, `Upgrade: {UPGRADE_PROTOCOL}` and its bearer secret.
//! After `101 Switching Protocols` the connection carries the session's raw
//! bytes in both directions: no framing, no base64, no JSON, and TCP's own
//! flow control per tunnel.

/// Value of the `Upgrade` header that asks for a raw tunnel stream.
pub const UPGRADE_PROTOCOL: &str = "streamspace-tunnel/1";

/// Path prefix of the data-channel endpoint; the tunnel id follows it.
pub const TUNNEL_PATH_PREFIX: &str = "/api/v1/agents/tunnels/";

/// Path of the control-channel WebSocket.
pub const CONNECT_PATH: &str = "/api/v1/agents/connect";

/// Path an agent enrolls at with an enrollment token.
pub const REGISTER_PATH: &str = "/api/v1/agents/register";

/// The data-channel path for one tunnel.
pub fn tunnel_path(tunnel_id: &crate::TunnelId) -> String {
    format!("{TUNNEL_PATH_PREFIX}{tunnel_id}")
}

/// Bytes a tunnel end holds while it waits for data. Idle tunnels are the
/// common case (an open viewer on a still screen), so waiting costs 1 KiB
/// per direction instead of a full read buffer.
const WAIT_BUFFER: usize = 1024;

/// Reads the next chunk of a tunnel stream: waits holding only a small
/// buffer, then takes whatever else is already available, up to `max` bytes,
/// without waiting again. Small messages (input events) come out at their
/// own size and at once; bulk data (framebuffer updates) in large chunks.
/// `None` at the end of the stream.
pub async fn read_chunk<R>(reader: &mut R, max: usize) -> std::io::Result<Option<bytes::Bytes>>
where
    R: tokio::io::AsyncRead + Unpin,
{
    use futures::FutureExt;
    use tokio::io::AsyncReadExt;

    let mut first = [0u8; WAIT_BUFFER];
    let n = reader.read(&mut first).await?;
    if n == 0 {
        return Ok(None);
    }
    if n < first.len() {
        return Ok(Some(bytes::Bytes::copy_from_slice(&first[..n])));
    }
    let mut chunk = bytes::BytesMut::with_capacity(max.max(n));
    chunk.extend_from_slice(&first);
    while chunk.len() < max {
        // Polling once with no waker is safe with tokio's I/O: readiness is
        // tracked by the runtime, and the next real read registers again.
        match reader.read_buf(&mut chunk).now_or_never() {
            Some(Ok(0)) | None => break,
            Some(Ok(_)) => {}
            Some(Err(err)) => return Err(err),
        }
    }
    Ok(Some(chunk.freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn small_messages_come_out_whole_and_bulk_in_large_chunks() {
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        a.write_all(b"hello").await.expect("write");
        let chunk = read_chunk(&mut b, 65536).await.expect("read");
        assert_eq!(chunk.as_deref(), Some(&b"hello"[..]));

        let bulk = vec![7u8; 200_000];
        a.write_all(&bulk).await.expect("write");
        let chunk = read_chunk(&mut b, 65536)
            .await
            .expect("read")
            .expect("data");
        assert_eq!(chunk.len(), 65536, "one large chunk, not 1 KiB pieces");
        let mut total = chunk.len();
        while total < bulk.len() {
            total += read_chunk(&mut b, 65536)
                .await
                .expect("read")
                .expect("data")
                .len();
        }
        assert_eq!(total, bulk.len());
        drop(a);
        assert_eq!(read_chunk(&mut b, 65536).await.expect("eof"), None);
    }
}
