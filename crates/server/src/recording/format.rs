//! The recording file format (docs/RECORDING.md): a 16-byte header, then
//! chunks, each the bytes the VNC server sent in one read, behind an 8-byte
//! header saying when (milliseconds since the recording began) and how
//! many. Replaying is feeding the chunks, in order, to an RFB client.
//!
//! Every number is big-endian. The writer only ever appends whole chunks,
//! so a file is always well-formed up to its last chunk, even one a crash
//! cut short (a reader stops at a truncated last chunk).

/// "SSREC", two zero bytes, and the format's version.
pub const MAGIC: [u8; 8] = *b"SSREC\0\0\x01";
/// The magic and the start time (Unix milliseconds, `u64`).
pub const FILE_HEADER_LEN: usize = 16;
/// The chunk's time (`u32` ms since the start) and length (`u32`).
pub const CHUNK_HEADER_LEN: usize = 8;

/// The file's first bytes.
pub fn file_header(started_ms: i64) -> [u8; FILE_HEADER_LEN] {
    let mut header = [0u8; FILE_HEADER_LEN];
    header[..8].copy_from_slice(&MAGIC);
    header[8..].copy_from_slice(&(started_ms.max(0) as u64).to_be_bytes());
    header
}

/// The header in front of a chunk of `len` bytes sent `at_ms` after the start.
pub fn chunk_header(at_ms: u32, len: u32) -> [u8; CHUNK_HEADER_LEN] {
    let mut header = [0u8; CHUNK_HEADER_LEN];
    header[..4].copy_from_slice(&at_ms.to_be_bytes());
    header[4..].copy_from_slice(&len.to_be_bytes());
    header
}

/// A chunk header's time and length.
pub fn parse_chunk_header(header: &[u8; CHUNK_HEADER_LEN]) -> (u32, u32) {
    let [a, b, c, d, e, f, g, h] = *header;
    (
        u32::from_be_bytes([a, b, c, d]),
        u32::from_be_bytes([e, f, g, h]),
    )
}

/// One chunk of a parsed recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk<'a> {
    pub at_ms: u32,
    pub data: &'a [u8],
}

/// Why bytes are not a recording.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("not a StreamSpace recording (no SSREC header)")]
    NotARecording,
    #[error("recording version {0} is not supported (only 1)")]
    Version(u8),
}

/// A whole recording in memory: its start (Unix ms) and its chunks. A
/// truncated last chunk is left out.
pub fn parse(bytes: &[u8]) -> Result<(i64, Vec<Chunk<'_>>), FormatError> {
    if bytes.len() < FILE_HEADER_LEN || bytes[..7] != MAGIC[..7] {
        return Err(FormatError::NotARecording);
    }
    if bytes[7] != MAGIC[7] {
        return Err(FormatError::Version(bytes[7]));
    }
    let mut started = [0u8; 8];
    started.copy_from_slice(&bytes[8..FILE_HEADER_LEN]);
    let started = i64::try_from(u64::from_be_bytes(started)).unwrap_or(i64::MAX);
    let mut chunks = Vec::new();
    let mut rest = &bytes[FILE_HEADER_LEN..];
    while let Some((header, after)) = rest.split_first_chunk::<CHUNK_HEADER_LEN>() {
        let (at_ms, len) = parse_chunk_header(header);
        let Some(data) = after.get(..len as usize) else {
            break;
        };
        chunks.push(Chunk { at_ms, data });
        rest = &after[len as usize..];
    }
    Ok((started, chunks))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recording(started: i64, chunks: &[(u32, &[u8])]) -> Vec<u8> {
        let mut file = file_header(started).to_vec();
        for (at, data) in chunks {
            file.extend_from_slice(&chunk_header(*at, data.len() as u32));
            file.extend_from_slice(data);
        }
        file
    }

    #[test]
    fn chunks_round_trip_with_their_times() {
        let file = recording(
            1_700_000_000_123,
            &[(0, b"RFB 003.008\n"), (40, b""), (1500, b"frame")],
        );
        let (started, chunks) = parse(&file).expect("parses");
        assert_eq!(started, 1_700_000_000_123);
        let got: Vec<(u32, &[u8])> = chunks.iter().map(|c| (c.at_ms, c.data)).collect();
        assert_eq!(
            got,
            vec![(0, &b"RFB 003.008\n"[..]), (40, b""), (1500, b"frame")]
        );
    }

    #[test]
    fn headers_are_big_endian_and_documented_sizes() {
        assert_eq!(
            chunk_header(0x0102_0304, 0x0a0b_0c0d),
            [1, 2, 3, 4, 10, 11, 12, 13]
        );
        assert_eq!(&file_header(258)[..], b"SSREC\0\0\x01\0\0\0\0\0\0\x01\x02");
        assert_eq!(parse_chunk_header(&[0, 0, 1, 0, 0, 0, 0, 9]), (256, 9));
    }

    #[test]
    fn a_truncated_last_chunk_is_left_out() {
        let mut file = recording(5, &[(1, b"whole")]);
        file.extend_from_slice(&chunk_header(2, 100));
        file.extend_from_slice(b"only part");
        let (_, chunks) = parse(&file).expect("parses");
        assert_eq!(chunks.len(), 1);
        file.truncate(FILE_HEADER_LEN + 3);
        assert!(parse(&file).expect("parses").1.is_empty(), "a cut header");
    }

    #[test]
    fn other_files_are_refused() {
        assert_eq!(
            parse(b"RFB 003.008\n....."),
            Err(FormatError::NotARecording)
        );
        assert_eq!(parse(b"SSREC"), Err(FormatError::NotARecording));
        let mut future = file_header(0);
        future[7] = 2;
        assert_eq!(parse(&future), Err(FormatError::Version(2)));
    }
}
