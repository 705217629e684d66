//! Our frame decoder against tungstenite's, on arbitrary frame sequences:
//! fragmented messages with control frames between their fragments, every
//! length encoding, any mask, bytes arriving in any pieces, and sequences
//! with one frame the protocol forbids. Whatever tungstenite makes of the
//! bytes, ours must make the same: the same data, the same control frames
//! in the same order, and an error where it errs.
//!
//! Two checks tungstenite makes are left out on purpose, so the generated
//! sequences stay within them: text is valid UTF-8 and close codes are
//! valid. The relay carries noVNC's binary messages and ends at any close.

use super::frames::{Decoder, Incoming};
use bytes::BytesMut;
use proptest::prelude::*;
use std::io::{self, Read, Write};
use tungstenite::protocol::{Message, Role, WebSocket};

/// One frame as a browser would send it, before encoding.
#[derive(Debug, Clone)]
struct Frame {
    fin: bool,
    /// `rsv1` set: forbidden without an extension.
    rsv: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    payload: Vec<u8>,
}

impl Frame {
    fn data(opcode: u8, fin: bool, payload: Vec<u8>, mask: [u8; 4]) -> Self {
        Frame {
            fin,
            rsv: false,
            opcode,
            mask: Some(mask),
            payload,
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8::from(self.fin) << 7 | u8::from(self.rsv) << 6 | self.opcode);
        let masked = u8::from(self.mask.is_some()) << 7;
        match self.payload.len() {
            n @ 0..=125 => out.push(masked | n as u8),
            n @ 126..=0xffff => {
                out.push(masked | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(masked | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        match self.mask {
            Some(mask) => {
                out.extend_from_slice(&mask);
                let masked = self.payload.iter().enumerate();
                out.extend(masked.map(|(i, b)| b ^ mask[i % 4]));
            }
            None => out.extend_from_slice(&self.payload),
        }
    }
}

/// Payload lengths that reach every length encoding (7-bit, 16-bit, 64-bit)
/// without making each case slow.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..=130),
        1 => prop::collection::vec(any::<u8>(), 65_530..=65_540),
    ]
}

fn text() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => ".{0,40}".prop_map(String::into_bytes),
        1 => "[a-zé€]{126,300}".prop_map(String::into_bytes),
    ]
}

fn control(mask: [u8; 4]) -> impl Strategy<Value = Frame> {
    let ping = prop::collection::vec(any::<u8>(), 0..=125)
        .prop_map(move |p| Frame::data(0x9, true, p, mask));
    let pong = prop::collection::vec(any::<u8>(), 0..=125)
        .prop_map(move |p| Frame::data(0xa, true, p, mask));
    prop_oneof![ping, pong]
}

/// A message split into 1–4 fragments, with control frames in between.
fn message() -> impl Strategy<Value = Vec<Frame>> {
    let body = prop_oneof![(Just(0x2), payload()), (Just(0x1), text())];
    (
        body,
        any::<[u8; 4]>(),
        prop::collection::vec(0usize..=100, 0..3),
        prop::collection::vec(prop::option::of(control([1, 2, 3, 4])), 3),
    )
        .prop_map(|((opcode, bytes), mask, cuts, controls)| {
            // Cut text at char boundaries, so each message stays valid UTF-8.
            let mut cuts: Vec<usize> = cuts
                .iter()
                .map(|c| c * bytes.len() / 100)
                .filter(|&p| p > 0 && p < bytes.len())
                .filter(|&p| opcode == 0x2 || std::str::from_utf8(&bytes[..p]).is_ok())
                .collect();
            cuts.sort_unstable();
            cuts.dedup();
            let bounds: Vec<usize> = [0].into_iter().chain(cuts).chain([bytes.len()]).collect();
            let mut frames = Vec::new();
            for (i, span) in bounds.windows(2).enumerate() {
                let last = i + 2 == bounds.len();
                let code = if i == 0 { opcode } else { 0x0 };
                frames.push(Frame::data(
                    code,
                    last,
                    bytes[span[0]..span[1]].to_vec(),
                    mask,
                ));
                if let (false, Some(Some(control))) = (last, controls.get(i)) {
                    frames.push(control.clone());
                }
            }
            frames
        })
}

fn close() -> impl Strategy<Value = Frame> {
    let code = prop_oneof![1000u16..=1003, 1007u16..=1011, 3000u16..=4999];
    let payload = prop_oneof![
        Just(Vec::new()),
        (code, "[a-z ]{0,20}").prop_map(|(c, why)| [&c.to_be_bytes()[..], why.as_bytes()].concat()),
    ];
    (payload, any::<[u8; 4]>()).prop_map(|(p, mask)| Frame::data(0x8, true, p, mask))
}

/// One way to break the protocol, applied to a frame of a valid sequence.
#[derive(Debug, Clone, Copy)]
enum Break {
    Unmask,
    ReservedBit,
    ReservedOpcode(u8),
    StrayContinuation,
    LongControl,
    FragmentedControl,
    OneByteClose,
    MessageInsideMessage,
}

fn breakage() -> impl Strategy<Value = Break> {
    prop_oneof![
        Just(Break::Unmask),
        Just(Break::ReservedBit),
        prop::sample::select(vec![3u8, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf])
            .prop_map(Break::ReservedOpcode),
        Just(Break::StrayContinuation),
        Just(Break::LongControl),
        Just(Break::FragmentedControl),
        Just(Break::OneByteClose),
        Just(Break::MessageInsideMessage),
    ]
}

/// A frame that breaks the protocol where it is put.
fn broken(how: Break) -> Vec<Frame> {
    let mask = [9, 8, 7, 6];
    match how {
        Break::Unmask => vec![Frame {
            mask: None,
            ..Frame::data(0x2, true, b"plain".to_vec(), mask)
        }],
        Break::ReservedBit => vec![Frame {
            rsv: true,
            ..Frame::data(0x2, true, b"x".to_vec(), mask)
        }],
        Break::ReservedOpcode(opcode) => vec![Frame::data(opcode, true, b"x".to_vec(), mask)],
        Break::StrayContinuation => vec![Frame::data(0x0, true, b"x".to_vec(), mask)],
        Break::LongControl => vec![Frame::data(0x9, true, vec![0; 126], mask)],
        Break::FragmentedControl => vec![Frame::data(0x9, false, b"x".to_vec(), mask)],
        Break::OneByteClose => vec![Frame::data(0x8, true, b"x".to_vec(), mask)],
        Break::MessageInsideMessage => vec![
            Frame::data(0x2, false, b"a".to_vec(), mask),
            Frame::data(0x2, true, b"b".to_vec(), mask),
        ],
    }
}

/// What a decoder made of a byte stream, in comparable form.
#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    /// Every data byte, all messages joined (the relay forwards a stream).
    data: Vec<u8>,
    /// Control frames in order: ping payloads, pongs, the close code.
    controls: Vec<String>,
    failed: bool,
}

/// Ours, fed `step` bytes at a time, up to the first close or error.
fn ours(wire: &[u8], step: usize) -> Decoded {
    let mut decoder = Decoder::default();
    let mut buf = BytesMut::new();
    let mut out = Decoded {
        data: Vec::new(),
        controls: Vec::new(),
        failed: false,
    };
    for piece in wire.chunks(step.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match decoder.next(&mut buf) {
                Ok(None) => break,
                Ok(Some(Incoming::Data(d))) => out.data.extend_from_slice(&d),
                Ok(Some(Incoming::Ping(p))) => out.controls.push(format!("ping {p:?}")),
                Ok(Some(Incoming::Pong)) => out.controls.push("pong".into()),
                Ok(Some(Incoming::Close(code))) => {
                    out.controls.push(format!("close {code:?}"));
                    return out;
                }
                Err(_) => {
                    out.failed = true;
                    return out;
                }
            }
        }
    }
    out
}

/// A server socket whose peer sent `wire` and then nothing; what the server
/// writes back (pongs, its close) goes nowhere.
struct Peer(io::Cursor<Vec<u8>>);

impl Read for Peer {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Peer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// tungstenite's server, up to the first close or error. The end of input
/// ends it too (tungstenite calls that a reset; the sequences end on frame
/// boundaries, so nothing is lost there).
fn theirs(wire: &[u8]) -> Decoded {
    let peer = Peer(io::Cursor::new(wire.to_vec()));
    let mut socket = WebSocket::from_raw_socket(peer, Role::Server, None);
    let mut out = Decoded {
        data: Vec::new(),
        controls: Vec::new(),
        failed: false,
    };
    loop {
        match socket.read() {
            Ok(Message::Binary(d)) => out.data.extend_from_slice(&d),
            Ok(Message::Text(t)) => out.data.extend_from_slice(t.as_bytes()),
            Ok(Message::Ping(p)) => out.controls.push(format!("ping {p:?}")),
            Ok(Message::Pong(_)) => out.controls.push("pong".into()),
            Ok(Message::Close(frame)) => {
                let code = frame.map(|f| u16::from(f.code));
                out.controls.push(format!("close {code:?}"));
                return out;
            }
            Ok(Message::Frame(_)) => {
                unreachable!("tungstenite returns raw frames only when writing")
            }
            Err(tungstenite::Error::Protocol(
                tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
            )) => return out,
            Err(_) => {
                out.failed = true;
                return out;
            }
        }
    }
}

fn sequence() -> impl Strategy<Value = Vec<Frame>> {
    (
        prop::collection::vec(message(), 0..5),
        prop::option::of(control([5, 6, 7, 8])),
        prop::option::of(close()),
    )
        .prop_map(|(messages, lone, close)| {
            let mut frames: Vec<Frame> = messages.into_iter().flatten().collect();
            frames.extend(lone);
            frames.extend(close);
            frames
        })
}

fn wire(frames: &[Frame]) -> Vec<u8> {
    let mut out = Vec::new();
    for frame in frames {
        frame.encode(&mut out);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn valid_sequences_decode_as_tungstenite_decodes_them(
        frames in sequence(),
        step in 1usize..2000,
    ) {
        let wire = wire(&frames);
        let expected = theirs(&wire);
        prop_assert!(!expected.failed, "the generator made a valid sequence");
        prop_assert_eq!(ours(&wire, step), expected);
    }

    #[test]
    fn broken_sequences_fail_where_tungstenite_fails(
        frames in sequence(),
        at in any::<prop::sample::Index>(),
        how in breakage(),
        step in 1usize..2000,
    ) {
        // Broken between whole messages (a stray continuation or a new
        // message inside one are breakages of their own).
        let mut boundaries = Vec::new();
        let mut inside = false;
        for (i, frame) in frames.iter().enumerate() {
            if !inside {
                boundaries.push(i);
            }
            if frame.opcode < 0x8 {
                inside = !frame.fin;
            }
        }
        boundaries.push(frames.len());
        let cut = boundaries[at.index(boundaries.len())];
        let mut frames = frames;
        frames.splice(cut..cut, broken(how));
        let wire = wire(&frames);
        let expected = theirs(&wire);
        let got = ours(&wire, step);
        // Both fail, unless a close came first and ended both before the
        // breakage.
        prop_assert_eq!(got.failed, expected.failed);
        prop_assert_eq!(&got.controls, &expected.controls);
        // tungstenite hands over whole messages only; ours streams, so it
        // may have forwarded the start of the message that was broken.
        prop_assert!(got.data.starts_with(&expected.data));
    }
}
