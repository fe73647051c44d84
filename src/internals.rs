//! Entry points into the crate's internals for the criterion benchmarks (`benches/`), the fuzz
//! targets (`fuzz/`) and the replay of the fuzz corpus in `cargo test` (`tests/fuzz_corpus.rs`).
//!
//! Not part of the public API: hidden from the docs, unstable, exempt from semver, and only here
//! because those are separate crates that cannot reach `pub(crate)` items. Each entry point is a
//! thin wrapper that runs the same code a connection or a handshake runs.

use std::task::{Context, Waker};

use bytes::{Bytes, BytesMut};
use http::HeaderValue;
use http::request::Parts;

use crate::handshake::{self, HandshakeError, Outcome};
use crate::proto::internals as proto;
use crate::{AllowOrigin, Message, ProtocolError, Protocols, Role};

/// Masks `buf` with the runtime-dispatched kernel (AVX2 where the CPU has it).
pub fn mask(buf: &mut [u8], key: [u8; 4]) {
    proto::apply_mask(buf, key, 0);
}

/// Masks `buf` with the portable kernel only (SSE2 on x86-64, by the compiler).
pub fn mask_portable(buf: &mut [u8], key: [u8; 4]) {
    proto::apply_mask_portable(buf, key);
}

/// Masks `buf` one byte at a time: the reference.
pub fn mask_bytewise(buf: &mut [u8], key: [u8; 4]) {
    proto::apply_mask_bytewise(buf, key);
}

/// Decodes every frame in `wire` (masked client frames) as a server, returning the number of
/// messages.
pub fn decode_all(wire: BytesMut) -> usize {
    proto::decode_all(wire)
}

/// Validates `text` incrementally in pieces of `piece` bytes.
pub fn utf8_in_pieces(text: &[u8], piece: usize) -> bool {
    proto::utf8_in_pieces(text, piece)
}

/// The engine's read path without IO: bytes in, messages (control frames included) out, with the
/// frame and message limits and, once turned on, permessage-deflate.
#[derive(Debug)]
pub struct Decoder {
    reader: proto::Reader,
    rules: proto::HeaderRules,
    max_message_size: proto::Limit,
    codec: Option<proto::Codec>,
}

impl Decoder {
    /// A reader for `role` (a server expects masked frames, a client unmasked ones).
    pub fn new(role: Role, max_frame_size: u64, max_message_size: usize) -> Self {
        Self {
            reader: proto::Reader::default(),
            rules: proto::HeaderRules {
                expect_masked: role == Role::Server,
                allowed_rsv: 0,
                max_frame_size: proto::Limit::new(max_frame_size),
            },
            max_message_size: proto::Limit::new(
                u64::try_from(max_message_size).unwrap_or(u64::MAX),
            ),
            codec: None,
        }
    }

    /// Turns permessage-deflate on, as a handshake that negotiated `params` does (RSV1 allowed,
    /// compressed messages inflated under the message limit).
    #[cfg(feature = "deflate")]
    #[must_use]
    pub fn with_deflate(mut self, params: crate::DeflateParams) -> Self {
        let role = if self.rules.expect_masked {
            Role::Server
        } else {
            Role::Client
        };
        self.codec = Some(proto::Codec::new(
            crate::DeflateConfig::default(),
            params,
            role,
        ));
        self.rules.allowed_rsv = 0b100;
        self
    }

    /// Appends bytes that arrived from the transport.
    pub fn push(&mut self, bytes: &[u8]) {
        self.reader.extend(bytes);
    }

    /// The next complete message or control frame, or `Ok(None)` if more bytes are needed.
    ///
    /// # Errors
    ///
    /// The first rule the bytes break, as the connection would fail with it.
    pub fn next_message(&mut self) -> Result<Option<Message>, ProtocolError> {
        let event =
            self.reader
                .next_event(self.rules, self.max_message_size, self.codec.as_mut())?;
        Ok(event.map(|event| match event {
            proto::Event::Message(message) => message,
            proto::Event::Ping(payload) => Message::Ping(payload),
            proto::Event::Pong(payload) => Message::Pong(payload),
            proto::Event::Close(frame) => Message::Close(frame),
        }))
    }
}

/// The engine's write path without IO: a message in, the frame `WebSocket::send` writes for it
/// out (masked with a fixed key in the client role; compressed when deflate is on and the
/// message reaches the threshold).
#[derive(Debug)]
pub struct Encoder {
    queue: proto::WriteQueue,
    role: Role,
    mask: [u8; 4],
    #[cfg(feature = "deflate")]
    codec: Option<proto::Codec>,
}

impl Encoder {
    /// A writer for `role`; a client masks every frame with `mask`.
    pub fn new(role: Role, mask: [u8; 4]) -> Self {
        Self {
            queue: proto::WriteQueue::default(),
            role,
            mask,
            #[cfg(feature = "deflate")]
            codec: None,
        }
    }

    /// Turns permessage-deflate on with `params`, compressing as `config` says.
    #[cfg(feature = "deflate")]
    #[must_use]
    pub fn with_deflate(
        mut self,
        config: crate::DeflateConfig,
        params: crate::DeflateParams,
    ) -> Self {
        self.codec = Some(proto::Codec::new(config, params, self.role));
        self
    }

    /// Encodes `message` as one frame. Unlike `send`, it does not check control payloads
    /// against the 125-byte limit.
    pub fn encode(&mut self, message: &Message) -> Vec<u8> {
        let (opcode, payload) = match message {
            Message::Text(text) => (proto::OpCode::Text, text.clone().into_bytes()),
            Message::Binary(data) => (proto::OpCode::Binary, data.clone()),
            Message::Ping(data) => (proto::OpCode::Ping, data.clone()),
            Message::Pong(data) => (proto::OpCode::Pong, data.clone()),
            Message::Close(frame) => {
                let mut payload = BytesMut::new();
                if let Some(frame) = frame {
                    frame.encode(&mut payload);
                }
                (proto::OpCode::Close, payload.freeze())
            }
        };
        let mask = (self.role == Role::Client).then_some(self.mask);
        #[cfg(feature = "deflate")]
        let (rsv, payload) = match &mut self.codec {
            Some(codec) if !opcode.is_control() && codec.should_compress(payload.len()) => {
                (0b100, codec.compress(&payload))
            }
            _ => (0, payload),
        };
        #[cfg(not(feature = "deflate"))]
        let rsv = 0;
        self.queue.push(opcode, true, rsv, payload, mask);
        let mut wire = Vec::new();
        // Writing into a `Vec` is always ready and never fails.
        let _ = self
            .queue
            .poll_flush(&mut wire, &mut Context::from_waker(Waker::noop()));
        wire
    }
}

/// permessage-deflate's codec for one connection, as the engine uses it.
#[cfg(feature = "deflate")]
#[derive(Debug)]
pub struct DeflateCodec(proto::Codec);

#[cfg(feature = "deflate")]
impl DeflateCodec {
    /// The codec of the `role` end of a connection that negotiated `params`.
    pub fn new(config: crate::DeflateConfig, params: crate::DeflateParams, role: Role) -> Self {
        Self(proto::Codec::new(config, params, role))
    }

    /// Compresses one whole message (the RFC 7692 trailer removed).
    pub fn compress(&mut self, input: &[u8]) -> Bytes {
        self.0.compress(input)
    }

    /// Inflates one frame's worth of a compressed message into `out`, which never grows past
    /// `limit + 1` bytes.
    ///
    /// # Errors
    ///
    /// The message passes `limit`, or the data does not inflate.
    pub fn inflate(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), ProtocolError> {
        self.0.inflate(input, out, limit)
    }

    /// Ends a compressed message (`had_input`: any compressed bytes arrived for it).
    ///
    /// # Errors
    ///
    /// As [`inflate`](Self::inflate).
    pub fn end_message(
        &mut self,
        out: &mut Vec<u8>,
        limit: usize,
        had_input: bool,
    ) -> Result<(), ProtocolError> {
        self.0.end_message(out, limit, had_input)
    }
}

/// The server's handshake rules, as the layer's settings make them.
#[derive(Debug, Clone, Default)]
pub struct ServerRules {
    /// `UpgradeLayer::protocols`.
    pub protocols: Protocols,
    /// `UpgradeLayer::require_protocol`.
    pub require_protocol: bool,
    /// `UpgradeLayer::allow_origin`.
    pub origin: AllowOrigin,
    /// The layer's `Config::deflate`.
    #[cfg(feature = "deflate")]
    pub deflate: Option<crate::DeflateConfig>,
}

/// What the server does with a request head.
#[derive(Debug)]
pub enum Classified {
    /// Not a WebSocket handshake: passed to the inner service.
    NotWebSocket,
    /// A handshake that fails a check.
    Reject(HandshakeError),
    /// A valid handshake.
    Accept {
        /// `101 Switching Protocols`, or `200` for an HTTP/2 extended CONNECT.
        response: http::Response<Bytes>,
        /// The chosen subprotocol.
        protocol: Option<HeaderValue>,
        /// permessage-deflate, if negotiated.
        #[cfg(feature = "deflate")]
        deflate: Option<crate::DeflateParams>,
    },
}

/// Classifies a request head as the layer does.
pub fn classify(parts: &Parts, rules: &ServerRules) -> Classified {
    let rules = handshake::Rules {
        protocols: rules.protocols.clone(),
        require_protocol: rules.require_protocol,
        origin: rules.origin.clone(),
        #[cfg(feature = "deflate")]
        deflate: rules.deflate,
        #[cfg(feature = "deflate")]
        decline_deflate: None,
    };
    match handshake::classify(parts, &rules) {
        Outcome::NotWebSocket => Classified::NotWebSocket,
        Outcome::Reject(error) => Classified::Reject(error),
        Outcome::Accept(accepted) => Classified::Accept {
            response: accepted.response,
            protocol: accepted.protocol,
            #[cfg(feature = "deflate")]
            deflate: accepted.deflate,
        },
    }
}

/// What a client's check of a 101 answer turned on.
#[cfg(feature = "client")]
#[derive(Debug, Default)]
pub struct ClientNegotiated {
    /// permessage-deflate, if the answer accepted the offer.
    #[cfg(feature = "deflate")]
    pub deflate: Option<crate::DeflateParams>,
}

/// The client's checks of a 101 answer's headers, for a request that sent `key`, offered the
/// subprotocols `offered` and the extensions `config` asks for.
///
/// # Errors
///
/// Which check failed, in the words the handshake error uses.
#[cfg(feature = "client")]
pub fn check_101(
    headers: &http::HeaderMap,
    key: &HeaderValue,
    offered: &[Box<str>],
    config: &crate::Config,
) -> Result<ClientNegotiated, &'static str> {
    crate::client::check_answer(headers, key, offered)?;
    let negotiated = crate::client::check_extensions(headers, config)?;
    #[cfg(not(feature = "deflate"))]
    let _ = negotiated;
    Ok(ClientNegotiated {
        #[cfg(feature = "deflate")]
        deflate: negotiated.deflate,
    })
}

/// The server's answer to a request's `Sec-WebSocket-Extensions` lines: the parameters and the
/// response value, or `None` to go without compression.
#[cfg(feature = "deflate")]
pub fn deflate_accept<'a>(
    offers: impl IntoIterator<Item = &'a HeaderValue>,
    config: &crate::DeflateConfig,
) -> Option<(crate::DeflateParams, HeaderValue)> {
    handshake::deflate::accept(offers, config).map(|accepted| (accepted.params, accepted.response))
}

/// The client's `Sec-WebSocket-Extensions` offer for `config`.
#[cfg(all(feature = "client", feature = "deflate"))]
pub fn deflate_offer(config: &crate::DeflateConfig) -> HeaderValue {
    handshake::deflate::offer(config)
}

/// The client's check of a server's `Sec-WebSocket-Extensions` answer to the offer `config`
/// makes. `Ok(None)`: compression declined.
///
/// # Errors
///
/// Why the answer fails the handshake.
#[cfg(all(feature = "client", feature = "deflate"))]
pub fn deflate_check_answer<'a>(
    answer: impl IntoIterator<Item = &'a HeaderValue>,
    config: &crate::DeflateConfig,
) -> Result<Option<crate::DeflateParams>, &'static str> {
    use handshake::deflate::AnswerError;
    handshake::deflate::check_answer(answer, config).map_err(|e| match e {
        AnswerError::Malformed => "malformed",
        AnswerError::Unexpected => "unexpected extension",
        AnswerError::BadParameter => "bad parameter",
    })
}
