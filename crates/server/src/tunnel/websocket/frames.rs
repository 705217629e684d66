//! WebSocket frames for a server that relays a byte stream: what it sends
//! is written straight from the payload, and what it receives is decoded
//! incrementally into events, data unmasked in place as it arrives.

use bytes::{Buf, Bytes, BytesMut};
use std::io::{self, Cursor, IoSlice};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

/// The longest header a server writes: 2 bytes and a 64-bit length, no mask.
const MAX_HEADER: usize = 10;

/// RFC 6455 §5.5: control frames carry at most 125 bytes.
const MAX_CONTROL_PAYLOAD: u64 = 125;

/// The header of a final, unmasked frame of `len` bytes, and its length.
pub fn frame_header(opcode: OpCode, len: usize) -> ([u8; MAX_HEADER], usize) {
    let mut header = [0u8; MAX_HEADER];
    let mut cursor = Cursor::new(&mut header[..]);
    let frame = FrameHeader {
        opcode,
        ..FrameHeader::default()
    };
    // Ten bytes always hold a server's header, so formatting cannot fail.
    let _ = frame.format(len as u64, &mut cursor);
    let written = cursor.position() as usize;
    (header, written)
}

/// Writes one final frame: the header and the payload in vectored writes,
/// so the payload is never copied into a buffer of ours.
pub async fn write_frame<W>(writer: &mut W, opcode: OpCode, payload: &[u8]) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    let (header, written) = frame_header(opcode, payload.len());
    let (mut head, mut body) = (&header[..written], payload);
    while !head.is_empty() || !body.is_empty() {
        let n = writer
            .write_vectored(&[IoSlice::new(head), IoSlice::new(body)])
            .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let from_head = n.min(head.len());
        head = &head[from_head..];
        body = &body[n - from_head..];
    }
    writer.flush().await
}

/// What a viewer sent, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// Payload of a data frame (binary or text, any fragment), unmasked;
    /// a long frame comes out in pieces as its bytes arrive.
    Data(Bytes),
    Ping(Bytes),
    Pong,
    /// The close frame's status code, if it had one.
    Close(Option<u16>),
}

/// A frame the protocol forbids; the connection ends with status 1002.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("WebSocket protocol violation: {0}")]
pub struct Violation(&'static str);

/// Incremental decoder of a client's frames.
#[derive(Default)]
pub struct Decoder {
    /// The data frame whose payload is arriving.
    frame: Option<DataFrame>,
    /// Inside a fragmented message: only continuation frames may follow.
    fragmented: bool,
}

struct DataFrame {
    left: u64,
    mask: [u8; 4],
    /// Position in the payload, for the mask's phase.
    offset: usize,
}

impl Decoder {
    /// The next event from the front of `buf`, consuming its bytes, or
    /// `None` until more arrive.
    pub fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, Violation> {
        loop {
            if let Some(frame) = &mut self.frame {
                if frame.left == 0 {
                    self.frame = None;
                    continue;
                }
                if buf.is_empty() {
                    return Ok(None);
                }
                let n = usize::try_from(frame.left).map_or(buf.len(), |left| left.min(buf.len()));
                let mut data = buf.split_to(n);
                unmask(&mut data, frame.mask, frame.offset);
                frame.left -= n as u64;
                frame.offset = (frame.offset + n) % 4;
                return Ok(Some(Incoming::Data(data.freeze())));
            }
            let mut cursor = Cursor::new(&buf[..]);
            let parsed =
                FrameHeader::parse(&mut cursor).map_err(|_| Violation("reserved opcode"))?;
            let Some((header, len)) = parsed else {
                return Ok(None);
            };
            let header_len = cursor.position() as usize;
            if header.rsv1 || header.rsv2 || header.rsv3 {
                return Err(Violation("reserved bits set, but no extension was agreed"));
            }
            let mask = header
                .mask
                .ok_or(Violation("client frames must be masked"))?;
            match header.opcode {
                OpCode::Control(control) => {
                    return control_frame(buf, &header, header_len, len, control);
                }
                OpCode::Data(data) => self.start_message(data, header.is_final)?,
            }
            buf.advance(header_len);
            self.frame = Some(DataFrame {
                left: len,
                mask,
                offset: 0,
            });
        }
    }

    /// Checks a data frame's place in the message sequence.
    fn start_message(&mut self, data: Data, is_final: bool) -> Result<(), Violation> {
        match (data, self.fragmented) {
            (Data::Continue, false) => {
                return Err(Violation("continuation frame outside a message"));
            }
            (Data::Text | Data::Binary, true) => {
                return Err(Violation("new message before the fragmented one ended"));
            }
            _ => {}
        }
        self.fragmented = !is_final;
        Ok(())
    }
}

/// A control frame is taken whole (it is short), once all of it is here.
fn control_frame(
    buf: &mut BytesMut,
    header: &FrameHeader,
    header_len: usize,
    len: u64,
    control: Control,
) -> Result<Option<Incoming>, Violation> {
    if !header.is_final || len > MAX_CONTROL_PAYLOAD {
        return Err(Violation(
            "control frames must be whole and at most 125 bytes",
        ));
    }
    let total = header_len + len as usize;
    if buf.len() < total {
        return Ok(None);
    }
    let mut payload = buf.split_to(total).split_off(header_len);
    if let Some(mask) = header.mask {
        unmask(&mut payload, mask, 0);
    }
    Ok(Some(match control {
        Control::Ping => Incoming::Ping(payload.freeze()),
        Control::Pong => Incoming::Pong,
        Control::Close => match payload.len() {
            0 => Incoming::Close(None),
            1 => return Err(Violation("close frame with a 1-byte payload")),
            _ => Incoming::Close(Some(u16::from_be_bytes([payload[0], payload[1]]))),
        },
        Control::Reserved(_) => return Err(Violation("reserved opcode")),
    }))
}

/// XORs client data with its mask; `offset` is the data's position in the
/// frame's payload.
fn unmask(data: &mut [u8], mask: [u8; 4], offset: usize) {
    for (i, byte) in data.iter_mut().enumerate() {
        *byte ^= mask[(offset + i) % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// A masked client frame, as a browser sends it.
    fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![first];
        match payload.len() {
            n @ 0..=125 => out.push(0x80 | n as u8),
            n @ 126..=0xffff => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&MASK);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
        out
    }

    /// Everything `bytes` decodes to, fed `step` bytes at a time.
    fn decode(bytes: &[u8], step: usize) -> Result<Vec<Incoming>, Violation> {
        let mut decoder = Decoder::default();
        let mut buf = BytesMut::new();
        let mut events = Vec::new();
        for piece in bytes.chunks(step) {
            buf.extend_from_slice(piece);
            while let Some(event) = decoder.next(&mut buf)? {
                events.push(event);
            }
        }
        Ok(events)
    }

    /// Data events joined, other events kept in order.
    fn joined(events: Vec<Incoming>) -> (Vec<u8>, Vec<Incoming>) {
        let mut data = Vec::new();
        let mut rest = Vec::new();
        for event in events {
            match event {
                Incoming::Data(d) => data.extend_from_slice(&d),
                other => rest.push(other),
            }
        }
        (data, rest)
    }

    #[test]
    fn every_length_encoding_decodes_whatever_the_arrival_pattern() {
        for len in [0, 1, 125, 126, 65_535, 65_536, 200_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let wire = client_frame(0x82, &payload);
            for step in [1, 3, 1000, wire.len()] {
                let (data, rest) = joined(decode(&wire, step).expect("valid"));
                assert_eq!(data.len(), len, "length {len}, step {step}");
                assert!(data == payload, "payload of {len} intact at step {step}");
                assert!(rest.is_empty());
            }
        }
    }

    #[test]
    fn fragments_and_interleaved_control_frames_keep_their_order() {
        let mut wire = client_frame(0x02, b"first ");
        wire.extend(client_frame(0x89, b"are you there"));
        wire.extend(client_frame(0x00, b"middle "));
        wire.extend(client_frame(0x8a, b""));
        wire.extend(client_frame(0x80, b"last"));
        wire.extend(client_frame(0x81, b"text too"));
        wire.extend(client_frame(0x88, &1001u16.to_be_bytes()));
        for step in [1, 5, wire.len()] {
            let (data, rest) = joined(decode(&wire, step).expect("valid"));
            assert_eq!(data, b"first middle lasttext too");
            let ping = Incoming::Ping(Bytes::from_static(b"are you there"));
            assert_eq!(rest, [ping, Incoming::Pong, Incoming::Close(Some(1001))]);
        }
        let bare_close = decode(&client_frame(0x88, b""), 1).expect("valid");
        assert_eq!(bare_close, [Incoming::Close(None)]);
    }

    #[test]
    fn protocol_violations_are_refused() {
        let unmasked = [0x82, 0x01, 0x00];
        let cases: [(&str, Vec<u8>); 8] = [
            ("unmasked", unmasked.to_vec()),
            ("reserved bit", client_frame(0xc2, b"x")),
            ("reserved opcode", client_frame(0x83, b"x")),
            ("stray continuation", client_frame(0x80, b"x")),
            ("long ping", client_frame(0x89, &[0; 126])),
            ("fragmented ping", client_frame(0x09, b"x")),
            ("1-byte close", client_frame(0x88, b"x")),
            ("message inside a message", {
                let mut w = client_frame(0x02, b"a");
                w.extend(client_frame(0x82, b"b"));
                w
            }),
        ];
        for (what, wire) in cases {
            assert!(decode(&wire, wire.len()).is_err(), "{what} is refused");
        }
    }

    #[tokio::test]
    async fn written_frames_carry_the_exact_payload() {
        for len in [0usize, 125, 126, 65_535, 65_536, 300_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
            let mut wire = Vec::new();
            write_frame(&mut wire, OpCode::Data(Data::Binary), &payload)
                .await
                .expect("write");
            let mut cursor = Cursor::new(&wire[..]);
            let (header, length) = FrameHeader::parse(&mut cursor)
                .expect("valid")
                .expect("whole");
            assert!(header.is_final && header.mask.is_none());
            assert_eq!(header.opcode, OpCode::Data(Data::Binary));
            assert_eq!(length, len as u64);
            assert!(wire[cursor.position() as usize..] == payload[..]);
        }
    }
}
