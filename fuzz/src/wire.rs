//! What several targets share: an encoder written from RFC 6455 alone (not the crate's), the
//! loop that feeds bytes to the decoder in pieces, and the choices of limits and parameters.

use arbitrary::Arbitrary;
use tower_ws::internals::Decoder;
use tower_ws::{DeflateConfig, DeflateParams, Message, ProtocolError, Role};

/// Encodes one frame with the shortest length form (or the 64-bit one if `long`), masking the
/// payload byte by byte when `mask` is given.
pub(crate) fn frame(
    fin: bool,
    rsv: u8,
    opcode: u8,
    payload: &[u8],
    mask: Option<[u8; 4]>,
    long: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push((u8::from(fin) << 7) | ((rsv & 0b111) << 4) | (opcode & 0x0f));
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let len = payload.len();
    match u8::try_from(len) {
        Ok(short @ 0..=125) if !long => out.push(mask_bit | short),
        _ => match u16::try_from(len) {
            Ok(medium) if !long => {
                out.push(mask_bit | 0x7e);
                out.extend_from_slice(&medium.to_be_bytes());
            }
            _ => {
                out.push(mask_bit | 0x7f);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        },
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().zip(key.iter().cycle()).map(|(b, k)| b ^ k));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// How a run of the decoder ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum End {
    /// Every byte was used; the decoder waits for more.
    NeedMore,
    /// A close frame arrived: the engine reads no further.
    Closed,
    /// The connection fails with this error.
    Failed(ProtocolError),
}

/// What the decoder produced from a byte stream, and how it stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Run {
    pub(crate) messages: Vec<Message>,
    pub(crate) end: End,
}

/// The size of the next piece for a fuzzer's byte: 1 to 240 bytes, or 1 to 16 KiB.
fn piece_len(byte: u8) -> usize {
    if byte < 0xf0 {
        usize::from(byte) + 1
    } else {
        usize::from(byte - 0xef) << 10
    }
}

/// Feeds `wire` to `decoder` in pieces whose sizes `pieces` gives in turn (all at once if it is
/// empty), taking every message out after each piece, as the engine does after each read.
pub(crate) fn drive(decoder: &mut Decoder, wire: &[u8], pieces: &[u8]) -> Run {
    let mut messages = Vec::new();
    let mut rest = wire;
    let mut sizes = pieces.iter().copied().cycle();
    loop {
        let take = sizes.next().map_or(rest.len(), piece_len).min(rest.len());
        let (now, later) = rest.split_at(take);
        decoder.push(now);
        rest = later;
        loop {
            match decoder.next_message() {
                Ok(Some(message)) => {
                    let close = message.is_close();
                    messages.push(message);
                    if close {
                        return Run {
                            messages,
                            end: End::Closed,
                        };
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    return Run {
                        messages,
                        end: End::Failed(error),
                    };
                }
            }
        }
        if rest.is_empty() {
            return Run {
                messages,
                end: End::NeedMore,
            };
        }
    }
}

/// The frame and message limits for one run.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub(crate) struct Limits {
    frame: u8,
    message: u8,
}

impl Limits {
    pub(crate) fn max_frame_size(self) -> u64 {
        const CHOICES: [u64; 9] = [
            0,
            1,
            125,
            126,
            1000,
            65_535,
            65_536,
            16 << 20,
            u64::MAX >> 1,
        ];
        CHOICES[usize::from(self.frame) % CHOICES.len()]
    }

    pub(crate) fn max_message_size(self) -> usize {
        const CHOICES: [usize; 9] = [0, 1, 2, 125, 1000, 4096, 65_536, 16 << 20, usize::MAX];
        CHOICES[usize::from(self.message) % CHOICES.len()]
    }

    /// A fresh decoder for `role` with these limits, inflating with `params` when given.
    pub(crate) fn decoder(self, role: Role, params: Option<DeflateParams>) -> Decoder {
        let decoder = Decoder::new(role, self.max_frame_size(), self.max_message_size());
        match params {
            Some(params) => decoder.with_deflate(params),
            None => decoder,
        }
    }
}

/// permessage-deflate parameters as a handshake could agree on them (windows 8 to 15).
#[derive(Debug, Clone, Copy, Arbitrary)]
pub(crate) struct Params {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: u8,
    client_max_window_bits: u8,
}

impl Params {
    pub(crate) fn get(self) -> DeflateParams {
        DeflateParams {
            server_no_context_takeover: self.server_no_context_takeover,
            client_no_context_takeover: self.client_no_context_takeover,
            server_max_window_bits: 8 + self.server_max_window_bits % 8,
            client_max_window_bits: 8 + self.client_max_window_bits % 8,
        }
    }
}

/// A permessage-deflate configuration, as a layer or a client could have it.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub(crate) struct Settings {
    level: u8,
    threshold: u8,
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: u8,
    client_max_window_bits: u8,
}

/// What a permessage-deflate configuration asks for, read from the input that made it (the
/// configuration's own fields are private).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Asks {
    pub(crate) server_no_context_takeover: bool,
    pub(crate) client_no_context_takeover: bool,
    pub(crate) server_max_window_bits: u8,
    pub(crate) client_max_window_bits: u8,
}

impl Settings {
    pub(crate) fn asks(self) -> Asks {
        Asks {
            server_no_context_takeover: self.server_no_context_takeover,
            client_no_context_takeover: self.client_no_context_takeover,
            server_max_window_bits: self.server_max_window_bits.clamp(9, 15),
            client_max_window_bits: self.client_max_window_bits.clamp(9, 15),
        }
    }

    pub(crate) fn get(self) -> DeflateConfig {
        DeflateConfig::default()
            .level(u32::from(self.level % 10))
            .threshold(usize::from(self.threshold))
            .server_no_context_takeover(self.server_no_context_takeover)
            .client_no_context_takeover(self.client_no_context_takeover)
            .server_max_window_bits(self.server_max_window_bits)
            .client_max_window_bits(self.client_max_window_bits)
    }
}

/// The other end's role.
pub(crate) fn peer(role: Role) -> Role {
    match role {
        Role::Server => Role::Client,
        Role::Client => Role::Server,
    }
}

/// Whether `bytes` can still become UTF-8 (it is UTF-8, or UTF-8 cut inside its last
/// character).
pub(crate) fn is_utf8_prefix(bytes: &[u8]) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    }
}

/// What every message the decoder hands out must satisfy, whatever the input.
pub(crate) fn check_message(message: &Message, max_message_size: usize) {
    match message {
        Message::Text(text) => {
            assert!(
                std::str::from_utf8(text.as_bytes()).is_ok(),
                "text that is not UTF-8"
            );
            assert!(text.len() <= max_message_size, "message over the limit");
        }
        Message::Binary(data) => assert!(data.len() <= max_message_size, "message over the limit"),
        Message::Ping(data) | Message::Pong(data) => {
            assert!(data.len() <= 125, "control payload over 125 bytes");
        }
        Message::Close(Some(frame)) => {
            assert!(
                frame.code.is_valid_on_wire(),
                "close code {} let through",
                frame.code
            );
            assert!(frame.reason.len() <= 123, "close reason over 123 bytes");
            assert!(std::str::from_utf8(frame.reason.as_bytes()).is_ok());
        }
        Message::Close(None) => {}
    }
}
