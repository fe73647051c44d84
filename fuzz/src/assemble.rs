//! The message assembler: structured frame sequences (messages cut into fragments, valid and
//! broken UTF-8, compressed messages, control frames between fragments, and stray frames that
//! break the sequencing rules) through the engine's reader, in arbitrary pieces.
//!
//! Property: the reader produces exactly the messages, and fails with exactly the error, that a
//! frame-by-frame model of RFC 6455 section 5.4 and RFC 7692 predicts; compressed messages are
//! inflated by a separate reference decompressor in the model. Where the model cannot predict
//! (arbitrary bytes in a compressed message), the reader must agree with it up to that frame.

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use flate2::{Decompress, FlushDecompress, Status};
use tower_ws::internals::DeflateCodec;
use tower_ws::{CloseCode, CloseFrame, DeflateConfig, Message, ProtocolError, Role, Utf8Bytes};

use super::wire::{End, Limits, Params, drive, frame, is_utf8_prefix, peer};

/// The most fragments one message is cut into.
const MAX_FRAGMENTS: usize = 64;
/// The largest message body the input can ask for.
const MAX_BODY: usize = 64 << 10;

#[derive(Debug, Arbitrary)]
struct Input {
    /// The reader is a client (frames unmasked) instead of a server (frames masked).
    client: bool,
    limits: Limits,
    /// permessage-deflate as negotiated, if it was.
    deflate: Option<Params>,
    /// The peer's compression level.
    level: u8,
    mask: [u8; 4],
    pieces: Vec<u8>,
    steps: Vec<Step>,
}

#[derive(Debug, Arbitrary)]
enum Step {
    /// A whole message, cut into fragments, with control frames after some of them.
    Message {
        text: bool,
        body: Body,
        cuts: Vec<u16>,
        controls: Vec<(u8, Control)>,
        compress: bool,
    },
    /// One data frame as given: it may continue nothing, start a message inside another, or
    /// carry arbitrary bytes in a compressed message.
    Data {
        opcode: DataOpcode,
        fin: bool,
        rsv1: bool,
        long: bool,
        payload: Vec<u8>,
    },
    Control(Control),
}

#[derive(Debug, Clone, Copy, Arbitrary)]
enum DataOpcode {
    Continuation,
    Text,
    Binary,
}

#[derive(Debug, Arbitrary)]
enum Body {
    Text(String),
    Bytes(Vec<u8>),
    /// Text with one byte replaced.
    Corrupt {
        text: String,
        at: u16,
        byte: u8,
    },
    /// Text repeated (for messages past the limits, and that compress well).
    Repeat {
        unit: String,
        times: u8,
    },
}

impl Body {
    fn into_bytes(self) -> Vec<u8> {
        let mut bytes = match self {
            Self::Text(text) => text.into_bytes(),
            Self::Bytes(bytes) => bytes,
            Self::Corrupt { text, at, byte } => {
                let mut bytes = text.into_bytes();
                let len = bytes.len();
                if let Some(b) = bytes.get_mut(usize::from(at) % len.max(1)) {
                    *b = byte;
                }
                bytes
            }
            Self::Repeat { unit, times } => unit.repeat(usize::from(times) * 4).into_bytes(),
        };
        bytes.truncate(MAX_BODY);
        bytes
    }
}

#[derive(Debug, Clone, Arbitrary)]
enum Control {
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close {
        code: u16,
        reason: String,
    },
    CloseRaw(Vec<u8>),
    /// A ping without FIN: control frames cannot be fragmented.
    Unfinished(Vec<u8>),
    /// A ping with RSV1: control frames cannot be compressed.
    Compressed(Vec<u8>),
}

/// One frame as sent, with what the model needs to know about it.
struct Sent {
    fin: bool,
    rsv: u8,
    opcode: u8,
    payload: Vec<u8>,
    long: bool,
    source: Source,
}

/// Where a frame's payload comes from.
enum Source {
    /// The input, as is.
    Given,
    /// The peer's compressor: a fragment of a compressed message.
    Compressor,
    /// The peer's compressor: the last fragment, with the message's body.
    CompressorLast(Vec<u8>),
}

impl Control {
    fn sent(&self) -> Sent {
        let (fin, rsv, opcode, payload) = match self {
            Self::Ping(p) => (true, 0, 0x9, p.clone()),
            Self::Pong(p) => (true, 0, 0xa, p.clone()),
            Self::Close { code, reason } => {
                let mut p = code.to_be_bytes().to_vec();
                p.extend_from_slice(reason.as_bytes());
                (true, 0, 0x8, p)
            }
            Self::CloseRaw(p) => (true, 0, 0x8, p.clone()),
            Self::Unfinished(p) => (false, 0, 0x9, p.clone()),
            Self::Compressed(p) => (true, 0b100, 0x9, p.clone()),
        };
        Sent {
            fin,
            rsv,
            opcode,
            payload,
            long: false,
            source: Source::Given,
        }
    }
}

/// The frames for the steps, compressing as the peer would.
fn frames(steps: Vec<Step>, compressor: &mut DeflateCodec) -> Vec<Sent> {
    let mut out = Vec::new();
    for step in steps {
        match step {
            Step::Message {
                text,
                body,
                cuts,
                controls,
                compress,
            } => {
                let body = body.into_bytes();
                let stream = if compress {
                    compressor.compress(&body).to_vec()
                } else {
                    body.clone()
                };
                let mut cuts: Vec<usize> = cuts
                    .iter()
                    .map(|&c| usize::from(c) % (stream.len() + 1))
                    .collect();
                cuts.sort_unstable();
                cuts.dedup();
                cuts.truncate(MAX_FRAGMENTS - 1);
                cuts.push(stream.len());
                let count = cuts.len();
                let mut start = 0;
                for (i, &end) in cuts.iter().enumerate() {
                    let last = i + 1 == count;
                    out.push(Sent {
                        fin: last,
                        rsv: if compress && i == 0 { 0b100 } else { 0 },
                        opcode: match (i, text) {
                            (0, true) => 0x1,
                            (0, false) => 0x2,
                            _ => 0x0,
                        },
                        payload: stream.get(start..end).unwrap_or_default().to_vec(),
                        long: false,
                        source: match (compress, last) {
                            (false, _) => Source::Given,
                            (true, false) => Source::Compressor,
                            (true, true) => Source::CompressorLast(body.clone()),
                        },
                    });
                    start = end;
                    for (slot, control) in &controls {
                        if usize::from(*slot) % count == i && !last {
                            out.push(control.sent());
                        }
                    }
                }
            }
            Step::Data {
                opcode,
                fin,
                rsv1,
                long,
                payload,
            } => out.push(Sent {
                fin,
                rsv: if rsv1 { 0b100 } else { 0 },
                opcode: match opcode {
                    DataOpcode::Continuation => 0x0,
                    DataOpcode::Text => 0x1,
                    DataOpcode::Binary => 0x2,
                },
                payload,
                long,
                source: Source::Given,
            }),
            Step::Control(control) => out.push(control.sent()),
        }
    }
    out
}

/// What the model expects of the reader.
#[derive(Debug)]
enum Expected {
    /// These messages and this end, exactly.
    Exactly(Vec<Message>, End),
    /// These messages first; after them, the model cannot tell.
    Prefix(Vec<Message>),
}

/// The message in progress, in the model.
struct InProgress {
    text: bool,
    compressed: bool,
    data: Vec<u8>,
    had_input: bool,
}

/// The receiving side of RFC 6455 and RFC 7692, one whole frame at a time.
struct Model {
    deflate: bool,
    max_frame_size: u64,
    max_message_size: usize,
    /// The peer resets its compressor after each message, so the reference does too.
    peer_resets: bool,
    reference: Decompress,
    message: Option<InProgress>,
}

enum Step2 {
    Next,
    Event(Message),
    Stop(End),
    Unknown,
}

impl Model {
    fn run(&mut self, sent: &[Sent]) -> Expected {
        let mut messages = Vec::new();
        for frame in sent {
            match self.frame(frame) {
                Step2::Next => {}
                Step2::Event(message) => {
                    let close = message.is_close();
                    messages.push(message);
                    if close {
                        return Expected::Exactly(messages, End::Closed);
                    }
                }
                Step2::Stop(end) => return Expected::Exactly(messages, end),
                Step2::Unknown => return Expected::Prefix(messages),
            }
        }
        Expected::Exactly(messages, End::NeedMore)
    }

    fn too_large(&self) -> Step2 {
        Step2::Stop(End::Failed(ProtocolError::MessageTooLarge {
            size: self.max_message_size as u64 + 1,
            limit: self.max_message_size as u64,
        }))
    }

    #[expect(
        clippy::too_many_lines,
        reason = "one rule after another, in the reader's order"
    )]
    fn frame(&mut self, f: &Sent) -> Step2 {
        let fail = |e| Step2::Stop(End::Failed(e));
        let allowed_rsv = if self.deflate { 0b100 } else { 0 };
        if f.rsv & !allowed_rsv != 0 {
            return fail(ProtocolError::ReservedBits(f.rsv));
        }
        let control = f.opcode >= 0x8;
        if control && !f.fin {
            return fail(ProtocolError::FragmentedControlFrame);
        }
        if control && (f.payload.len() > 125 || f.long) {
            return fail(ProtocolError::ControlFrameTooLong);
        }
        let len = f.payload.len() as u64;
        if len > self.max_frame_size {
            return fail(ProtocolError::FrameTooLarge {
                size: len,
                limit: self.max_frame_size,
            });
        }
        if control {
            if f.rsv != 0 {
                return fail(ProtocolError::CompressedControlFrame);
            }
            let payload = Bytes::from(f.payload.clone());
            return match f.opcode {
                0x9 => Step2::Event(Message::Ping(payload)),
                0xa => Step2::Event(Message::Pong(payload)),
                _ => match &f.payload[..] {
                    [] => Step2::Event(Message::Close(None)),
                    [_] => fail(ProtocolError::ClosePayloadTooShort),
                    [hi, lo, reason @ ..] => {
                        let code = CloseCode::from(u16::from_be_bytes([*hi, *lo]));
                        if !code.is_valid_on_wire() {
                            return fail(ProtocolError::InvalidCloseCode(code.as_u16()));
                        }
                        match Utf8Bytes::try_from(reason.to_vec()) {
                            Ok(reason) => {
                                Step2::Event(Message::Close(Some(CloseFrame::new(code, reason))))
                            }
                            Err(_) => fail(ProtocolError::InvalidCloseReason),
                        }
                    }
                },
            };
        }
        let rsv1 = f.rsv & 0b100 != 0;
        match (f.opcode, &self.message) {
            (0x0, None) => return fail(ProtocolError::UnexpectedContinuation),
            (0x0, Some(_)) if rsv1 => return fail(ProtocolError::CompressedContinuation),
            (0x0, Some(_)) => {}
            (_, Some(_)) => return fail(ProtocolError::ExpectedContinuation),
            (opcode, None) => {
                self.message = Some(InProgress {
                    text: opcode == 0x1,
                    compressed: rsv1,
                    data: Vec::new(),
                    had_input: false,
                });
            }
        }
        let Some(message) = &mut self.message else {
            return Step2::Unknown;
        };
        if message.compressed {
            // Only what the peer's compressor made has a predictable outcome.
            let body = match &f.source {
                Source::Given => return Step2::Unknown,
                Source::Compressor => None,
                Source::CompressorLast(body) => Some(body),
            };
            message.had_input |= !f.payload.is_empty();
            if !inflate(&mut self.reference, &f.payload, &mut message.data) {
                return Step2::Unknown;
            }
            let had_input = message.had_input;
            let over = |m: &InProgress| m.data.len() > self.max_message_size;
            if over(message) {
                return self.too_large();
            }
            if f.fin && had_input {
                if !inflate(&mut self.reference, &[0, 0, 0xff, 0xff], &mut message.data) {
                    return Step2::Unknown;
                }
                if over(message) {
                    return self.too_large();
                }
            }
            if f.fin {
                if let Some(body) = body {
                    assert_eq!(
                        &message.data, body,
                        "the compressor's output inflates to something else"
                    );
                }
                if self.peer_resets {
                    self.reference.reset(false);
                }
            }
            if message.text && !is_utf8_prefix(&message.data) {
                return fail(ProtocolError::InvalidUtf8);
            }
        } else {
            let size = message.data.len() as u64 + len;
            if size > self.max_message_size as u64 {
                return fail(ProtocolError::MessageTooLarge {
                    size,
                    limit: self.max_message_size as u64,
                });
            }
            message.data.extend_from_slice(&f.payload);
            if message.text && !is_utf8_prefix(&message.data) {
                return fail(ProtocolError::InvalidUtf8);
            }
        }
        if !f.fin {
            return Step2::Next;
        }
        let Some(message) = self.message.take() else {
            return Step2::Unknown;
        };
        let data = Bytes::from(message.data);
        if message.text {
            match Utf8Bytes::try_from(data) {
                Ok(text) => Step2::Event(Message::Text(text)),
                Err(_) => fail(ProtocolError::InvalidUtf8),
            }
        } else {
            Step2::Event(Message::Binary(data))
        }
    }
}

/// The reference: flate2's raw inflate with the largest window, all output kept. `false` if the
/// stream is broken.
fn inflate(decompress: &mut Decompress, mut input: &[u8], out: &mut Vec<u8>) -> bool {
    loop {
        out.reserve(out.len().max(1024));
        let (in_before, out_before) = (decompress.total_in(), out.len());
        let Ok(status) = decompress.decompress_vec(input, out, FlushDecompress::Sync) else {
            return false;
        };
        let consumed = usize::try_from(decompress.total_in() - in_before).unwrap_or(usize::MAX);
        input = input.get(consumed..).unwrap_or_default();
        if status == Status::StreamEnd {
            return input.is_empty();
        }
        if input.is_empty() && out.len() < out.capacity() {
            return true;
        }
        if consumed == 0 && out.len() == out_before {
            return false;
        }
    }
}

/// Fragments, UTF-8 and compression through the reader, against the model.
///
/// # Panics
///
/// When the reader and the model disagree: a finding.
pub fn assemble(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let role = if input.client {
        Role::Client
    } else {
        Role::Server
    };
    let params = input.deflate.map(Params::get);
    // The peer compresses with the agreed parameters (or the defaults, for frames it should
    // not have compressed).
    let agreed = params.unwrap_or_default();
    let config = DeflateConfig::default().level(u32::from(input.level % 10));
    let mut compressor = DeflateCodec::new(config, agreed, peer(role));
    let sent = frames(input.steps, &mut compressor);
    let mask = (role == Role::Server).then_some(input.mask);
    let wire: Vec<u8> = sent
        .iter()
        .flat_map(|f| frame(f.fin, f.rsv, f.opcode, &f.payload, mask, f.long))
        .collect();

    let max_message_size = input.limits.max_message_size();
    let decoder = || input.limits.decoder(role, params);
    let whole = drive(&mut decoder(), &wire, &[]);
    let pieces = if input.pieces.is_empty() {
        &[0][..]
    } else {
        &input.pieces
    };
    let chunked = drive(&mut decoder(), &wire, pieces);
    assert_eq!(
        chunked, whole,
        "the same frames decode differently when they arrive in other pieces"
    );

    let peer_resets = match role {
        Role::Server => agreed.client_no_context_takeover,
        Role::Client => agreed.server_no_context_takeover,
    };
    let mut model = Model {
        deflate: params.is_some(),
        max_frame_size: input.limits.max_frame_size(),
        max_message_size,
        peer_resets,
        reference: Decompress::new_with_window_bits(false, 15),
        message: None,
    };
    match model.run(&sent) {
        Expected::Exactly(messages, end) => {
            assert_eq!(
                whole.messages, messages,
                "the reader and the model disagree"
            );
            assert_eq!(whole.end, end, "the reader and the model end differently");
        }
        Expected::Prefix(messages) => {
            assert!(
                whole.messages.starts_with(&messages),
                "the reader and the model disagree before an unpredictable frame: {:?} vs {messages:?}",
                whole.messages
            );
        }
    }
}
