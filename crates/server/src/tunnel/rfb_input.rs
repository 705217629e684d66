//! What a viewer may send a VNC server: a streaming parser of the RFB
//! client → server stream (RFC 6143 §7.1–7.5, handshake included) that
//! passes what the viewer is allowed and drops the rest, so view-only and
//! clipboard rules hold whatever the browser does.
//!
//! It runs only on tunnels that have such rules (`relay::Tunnel::input`),
//! on the viewer → agent direction, which is already read in user space;
//! the agent → viewer direction is never parsed. Anything it cannot follow
//! (another protocol version, an encrypted security type, an unknown
//! message) is a violation and closes the tunnel: failing open would let a
//! guest type.

use bytes::{BufMut, BytesMut};

/// The most clipboard text one message may carry (TigerVNC's default
/// limit is 256 KiB; noVNC sends what was copied).
const MAX_CUT_TEXT: u32 = 16 << 20;

/// The most bytes a fence message may carry (RFB's own limit).
const MAX_FENCE: usize = 64;

/// What a viewer's messages may do besides watching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputRules {
    /// Keyboard and pointer events (and xvp power requests).
    pub input: bool,
    /// Clipboard text towards the session (`ClientCutText`).
    pub clipboard: bool,
    /// Changing the remote screen size (`SetDesktopSize`).
    pub resize: bool,
}

impl InputRules {
    pub const ALL: InputRules = InputRules {
        input: true,
        clipboard: true,
        resize: true,
    };
    /// A guest who watches: screen updates only.
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "guests' viewers (sharing) use it")
    )]
    pub const VIEW_ONLY: InputRules = InputRules {
        input: false,
        clipboard: false,
        resize: false,
    };

    pub fn allows_all(&self) -> bool {
        *self == Self::ALL
    }
}

/// Why a viewer's stream cannot be followed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RfbViolation {
    #[error("the viewer speaks {0:?}, not RFB 3.7 or 3.8")]
    Version(String),
    #[error("security type {0} cannot be inspected")]
    Security(u8),
    #[error("unknown client message type {0}")]
    Message(u8),
    #[error("unknown QEMU client message {0}")]
    Qemu(u8),
    #[error("a {0}-byte message body is over the limit")]
    TooLong(u64),
}

/// Where the viewer is in the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Version,
    Security,
    VncAuth,
    ClientInit,
    Messages,
}

/// What a complete message header is, for the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Protocol,
    Input,
    Clipboard,
    Resize,
}

/// A filter for one viewer's stream.
#[derive(Debug)]
pub struct InputFilter {
    rules: InputRules,
    stage: Stage,
    /// The header being read; never longer than the longest header (20).
    header: BytesMut,
    /// Bytes of the current message's body still to come, and whether they
    /// are passed on.
    body: u64,
    forward_body: bool,
}

impl InputFilter {
    pub fn new(rules: InputRules) -> Self {
        InputFilter {
            rules,
            stage: Stage::Version,
            header: BytesMut::with_capacity(20),
            body: 0,
            forward_body: false,
        }
    }

    /// Takes the next bytes from the viewer, in any pieces, and appends to
    /// `out` what may reach the server.
    pub fn feed(&mut self, mut data: &[u8], out: &mut BytesMut) -> Result<(), RfbViolation> {
        while !data.is_empty() {
            if self.body > 0 {
                let n = data
                    .len()
                    .min(usize::try_from(self.body).unwrap_or(usize::MAX));
                if self.forward_body {
                    out.put_slice(&data[..n]);
                }
                self.body -= n as u64;
                data = &data[n..];
                continue;
            }
            let need = self.header_len()?;
            let n = (need - self.header.len()).min(data.len());
            self.header.put_slice(&data[..n]);
            data = &data[n..];
            if self.header.len() == need && self.header_len()? == need {
                self.complete(out)?;
            }
        }
        Ok(())
    }

    /// How long the current header is, as far as the bytes so far tell.
    fn header_len(&self) -> Result<usize, RfbViolation> {
        Ok(match self.stage {
            Stage::Version => 12,
            Stage::Security | Stage::ClientInit => 1,
            Stage::VncAuth => 16,
            Stage::Messages => match self.header.first() {
                None => 1,
                Some(&kind) => message_header_len(kind, self.header.get(1).copied())?,
            },
        })
    }

    /// Acts on a complete header: moves the handshake on, or passes or
    /// drops a message (and says how long its body is).
    fn complete(&mut self, out: &mut BytesMut) -> Result<(), RfbViolation> {
        let header = self.header.split();
        match self.stage {
            Stage::Version => {
                if !matches!(&header[..], b"RFB 003.007\n" | b"RFB 003.008\n") {
                    let said = String::from_utf8_lossy(&header).into_owned();
                    return Err(RfbViolation::Version(said));
                }
                self.stage = Stage::Security;
            }
            Stage::Security => {
                self.stage = match header[0] {
                    1 => Stage::ClientInit,
                    2 => Stage::VncAuth,
                    other => return Err(RfbViolation::Security(other)),
                };
            }
            Stage::VncAuth => self.stage = Stage::ClientInit,
            Stage::ClientInit => {
                // Shared: a viewer asking for the screen alone would
                // disconnect everyone else watching.
                out.put_u8(1);
                self.stage = Stage::Messages;
                return Ok(());
            }
            Stage::Messages => {
                let (kind, body) = message_body(&header)?;
                self.body = body;
                self.forward_body = self.allows(kind);
                if !self.forward_body {
                    return Ok(());
                }
            }
        }
        out.put_slice(&header);
        Ok(())
    }

    fn allows(&self, kind: Kind) -> bool {
        match kind {
            Kind::Protocol => true,
            Kind::Input => self.rules.input,
            Kind::Clipboard => self.rules.clipboard,
            Kind::Resize => self.rules.resize,
        }
    }
}

/// The header length of a client message of type `kind` (`subtype` is the
/// byte after it, when read).
fn message_header_len(kind: u8, subtype: Option<u8>) -> Result<usize, RfbViolation> {
    Ok(match kind {
        0 => 20,   // SetPixelFormat
        2 => 4,    // SetEncodings, then 4 bytes per encoding
        3 => 10,   // FramebufferUpdateRequest
        4 => 8,    // KeyEvent
        5 => 6,    // PointerEvent
        6 => 8,    // ClientCutText, then the text
        150 => 10, // EnableContinuousUpdates
        248 => 9,  // ClientFence, then its payload
        250 => 4,  // xvp (shutdown, reboot, reset)
        251 => 8,  // SetDesktopSize, then 16 bytes per screen
        255 => match subtype {
            None => 2,
            Some(0) => 12, // QEMU extended key event
            Some(other) => return Err(RfbViolation::Qemu(other)),
        },
        other => return Err(RfbViolation::Message(other)),
    })
}

/// What a complete client message header is, and how many body bytes
/// follow it.
fn message_body(header: &[u8]) -> Result<(Kind, u64), RfbViolation> {
    let u16_at = |i: usize| u64::from(u16::from_be_bytes([header[i], header[i + 1]]));
    Ok(match header[0] {
        2 => (Kind::Protocol, 4 * u16_at(2)),
        4 | 5 | 250 | 255 => (Kind::Input, 0),
        6 => {
            // Negative lengths are the extended clipboard's (its size is
            // the absolute value).
            let len = i32::from_be_bytes([header[4], header[5], header[6], header[7]]);
            let len = len.unsigned_abs();
            if len > MAX_CUT_TEXT {
                return Err(RfbViolation::TooLong(len.into()));
            }
            (Kind::Clipboard, len.into())
        }
        248 => {
            let len = usize::from(header[8]);
            if len > MAX_FENCE {
                return Err(RfbViolation::TooLong(len as u64));
            }
            (Kind::Protocol, len as u64)
        }
        251 => (Kind::Resize, 16 * u64::from(header[6])),
        _ => (Kind::Protocol, 0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HANDSHAKE: &[u8] = b"RFB 003.008\n\x01\x01";
    const KEY: &[u8] = &[4, 1, 0, 0, 0, 0, 0, 0x61];
    const POINTER: &[u8] = &[5, 1, 0, 10, 0, 20];
    const UPDATE: &[u8] = &[3, 1, 0, 0, 0, 0, 5, 0, 3, 32];
    const RESIZE: &[u8] = &[
        251, 0, 4, 0, 3, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 3, 0, 0, 0, 0, 0,
    ];

    fn cut_text(text: &[u8]) -> Vec<u8> {
        let mut msg = vec![6, 0, 0, 0];
        msg.extend_from_slice(&(text.len() as u32).to_be_bytes());
        msg.extend_from_slice(text);
        msg
    }

    fn encodings(codes: &[i32]) -> Vec<u8> {
        let mut msg = vec![2, 0];
        msg.extend_from_slice(&(codes.len() as u16).to_be_bytes());
        codes
            .iter()
            .for_each(|c| msg.extend_from_slice(&c.to_be_bytes()));
        msg
    }

    /// Feeds `stream` in pieces of `piece` bytes and returns what passed.
    fn filter(rules: InputRules, stream: &[u8], piece: usize) -> Result<Vec<u8>, RfbViolation> {
        let mut filter = InputFilter::new(rules);
        let mut out = BytesMut::new();
        for chunk in stream.chunks(piece) {
            filter.feed(chunk, &mut out)?;
        }
        Ok(out.to_vec())
    }

    fn session(messages: &[&[u8]]) -> Vec<u8> {
        let mut stream = HANDSHAKE.to_vec();
        messages.iter().for_each(|m| stream.extend_from_slice(m));
        stream
    }

    #[test]
    fn everything_passes_when_everything_is_allowed() {
        let clip = cut_text(b"hello");
        let enc = encodings(&[0, 7, -223, -258]);
        let stream = session(&[&enc, UPDATE, KEY, POINTER, &clip, RESIZE]);
        for piece in [1, 3, 7, stream.len()] {
            assert_eq!(
                filter(InputRules::ALL, &stream, piece).expect("followed"),
                stream
            );
        }
    }

    #[test]
    fn view_only_drops_input_clipboard_and_resize_in_any_pieces() {
        let clip = cut_text(&[b'x'; 5000]);
        let enc = encodings(&[0, 1]);
        let stream = session(&[&enc, KEY, UPDATE, POINTER, &clip, RESIZE, UPDATE]);
        let kept = session(&[&enc, UPDATE, UPDATE]);
        for piece in [1, 2, 5, 64, stream.len()] {
            assert_eq!(
                filter(InputRules::VIEW_ONLY, &stream, piece).expect("followed"),
                kept,
                "in pieces of {piece}"
            );
        }
    }

    #[test]
    fn clipboard_alone_can_be_withheld() {
        let rules = InputRules {
            clipboard: false,
            ..InputRules::ALL
        };
        let clip = cut_text(b"secret");
        let stream = session(&[KEY, &clip, POINTER]);
        assert_eq!(
            filter(rules, &stream, 4).expect("followed"),
            session(&[KEY, POINTER])
        );
    }

    #[test]
    fn extended_clipboard_lengths_are_absolute() {
        let mut clip = vec![6, 0, 0, 0];
        clip.extend_from_slice(&(-12i32).to_be_bytes());
        clip.extend_from_slice(&[9; 12]);
        let stream = session(&[&clip, KEY]);
        assert_eq!(
            filter(InputRules::VIEW_ONLY, &stream, 3).expect("followed"),
            session(&[])
        );
    }

    #[test]
    fn a_viewer_cannot_take_the_screen_for_itself() {
        let exclusive = b"RFB 003.008\n\x01\x00";
        let out = filter(InputRules::VIEW_ONLY, exclusive, 1).expect("followed");
        assert_eq!(out.last(), Some(&1), "ClientInit forced to shared");
    }

    #[test]
    fn vnc_authentication_is_followed() {
        let mut stream = b"RFB 003.008\n\x02".to_vec();
        stream.extend_from_slice(&[0xAA; 16]);
        stream.push(1);
        stream.extend_from_slice(KEY);
        stream.extend_from_slice(UPDATE);
        let out = filter(InputRules::VIEW_ONLY, &stream, 5).expect("followed");
        assert_eq!(
            out,
            stream[..stream.len() - KEY.len() - UPDATE.len()]
                .iter()
                .chain(UPDATE)
                .copied()
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn qemu_key_events_are_input() {
        let qemu = [255, 0, 0, 1, 0, 0, 0, 0x61, 0, 0, 0, 0x1e];
        let stream = session(&[&qemu, UPDATE]);
        assert_eq!(
            filter(InputRules::VIEW_ONLY, &stream, 2).expect("followed"),
            session(&[UPDATE])
        );
        let audio = session(&[&[255, 1, 0, 0]]);
        assert_eq!(
            filter(InputRules::VIEW_ONLY, &audio, 1),
            Err(RfbViolation::Qemu(1))
        );
    }

    #[test]
    fn what_cannot_be_followed_fails_closed() {
        let cases: [(&[u8], RfbViolation); 4] = [
            (
                b"RFB 003.003\n",
                RfbViolation::Version("RFB 003.003\n".into()),
            ),
            (b"RFB 003.008\n\x13", RfbViolation::Security(19)),
            (b"RFB 003.008\n\x01\x01\x07", RfbViolation::Message(7)),
            (
                b"RFB 003.008\n\x01\x01\xf8\0\0\0\0\0\0\0\xff",
                RfbViolation::TooLong(255),
            ),
        ];
        for (stream, expected) in cases {
            assert_eq!(filter(InputRules::ALL, stream, 1), Err(expected));
        }
        let huge = session(&[&[6, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff]]);
        assert!(matches!(
            filter(InputRules::ALL, &huge, 8),
            Err(RfbViolation::TooLong(_))
        ));
    }
}
