//! permessage-deflate (RFC 7692): the configuration, the negotiated parameters, and the
//! per-connection codec that compresses outgoing messages and inflates incoming ones.
//!
//! Memory is the extension's real cost: zlib-rs's compressor with a 32 KiB window allocates about
//! 370 KiB (two windows, a chain table the size of the window, a 128 KiB hash table and 112 KiB
//! of literal buffers), its decompressor about 44 KiB (mostly the window). Each is created when
//! the first compressed message is sent or received, not at the handshake. A side that keeps
//! its context between messages then holds its state for the life of the connection; a side that
//! resets it after every message does not, so that state is borrowed from a per-thread spare for
//! the duration of one message and a connection that is not in the middle of a message holds
//! none. [`DeflateConfig::low_memory`] asks for that on both sides. The measured figures are in
//! [`DeflateConfig`]'s docs.

use std::cell::RefCell;

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::config::Role;
use crate::error::ProtocolError;

/// The bytes a sync flush ends with, which RFC 7692 removes from each message (7.2.1) and the
/// receiver puts back before inflating (7.2.2).
const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Output grows by at least this much at a time while inflating.
const INFLATE_STEP: usize = 16 << 10;

/// What an endpoint offers or accepts for permessage-deflate, and how it compresses.
///
/// Off unless set with [`Config::deflate`](crate::Config::deflate). The parameters follow RFC
/// 7692: `server_*` constrain the server's compressor, `client_*` the client's. A server accepts
/// the first offer it can honour and never goes beyond what it is configured for; a client
/// offers exactly this.
///
/// ```
/// use tower_ws::{Config, DeflateConfig};
///
/// // Compression with no per-connection zlib state between messages.
/// let config = Config::default().deflate(DeflateConfig::low_memory());
/// # let _ = config;
/// ```
///
/// # What it costs and gains
///
/// Memory per idle connection through the layer (release build, 5000 sockets, each offering
/// `permessage-deflate; client_max_window_bits` as browsers do; growth over a warmed-up server
/// of the resident set and of the live heap):
///
/// | server setting | after the handshake | after one compressed message each way |
/// |---|---:|---:|
/// | no deflate | 2.0 KiB RSS, 1.7 KiB heap | 2.0 KiB RSS, 1.7 KiB heap |
/// | [`default`](Self::default) (context takeover) | 1.8 KiB RSS, 1.8 KiB heap | 332 KiB RSS, 420 KiB heap |
/// | default with both windows at 12 bits | 1.8 KiB RSS, 1.8 KiB heap | 220 KiB RSS, 308 KiB heap |
/// | [`low_memory`](Self::low_memory) | 2.4 KiB RSS, 1.8 KiB heap | 2.4 KiB RSS, 1.8 KiB heap |
///
/// A negotiated connection holds no zlib state until it compresses or inflates a message. With
/// context takeover it then keeps both for good: the compressor (about 370 KiB, of which
/// zlib-rs's fixed 128 KiB hash table; smaller windows shrink only the window-sized parts) and
/// the decompressor (about 44 KiB). Resident memory stays below the heap figure because a short
/// message never touches most of the literal buffers.
///
/// Compression, as bytes on the wire (frame headers included) per payload byte, on JSON samples
/// shaped after real feeds (a chat gateway's message events of about 480 bytes, an exchange's
/// ticker of about 380 bytes, and pages of 100 issues from a code host's API of about 150 KB):
///
/// | setting | chat events | ticker events | API pages |
/// |---|---:|---:|---:|
/// | default: level 1, context takeover | 0.134 (7.5x) | 0.226 (4.4x) | 0.268 (3.7x) |
/// | level 6, context takeover | 0.116 (8.7x) | 0.191 (5.2x) | 0.166 (6.0x) |
/// | `low_memory`: level 1, no context takeover | 0.804 (1.2x) | 0.770 (1.3x) | 0.271 (3.7x) |
/// | level 6, no context takeover | 0.657 (1.5x) | 0.631 (1.6x) | 0.174 (5.8x) |
/// | level 1, context takeover, 4 KiB window | 0.209 (4.8x) | 0.240 (4.2x) | 0.309 (3.2x) |
///
/// Small messages that resemble each other gain from context takeover (7.5x against 1.2x);
/// large ones compress about as well without it. Level 1 is zlib-rs's quick strategy (static
/// Huffman codes): on the chat events it compressed more than ten times faster than level 2 or
/// level 6. Without context takeover every compressed message also pays for
/// a reset of the compressor (zlib-rs clears its hash table), about 20 µs here whatever the
/// message's size.
///
/// Both tables come from
/// `cargo run --release --features deflate --example deflate_cost -- memory 5000` and `-- ratio`
/// (`examples/deflate_cost.rs` describes the samples and the method).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateConfig {
    /// 0 to 9.
    level: u8,
    /// Saturated: `u32::MAX` stands for every length from it up.
    threshold: u32,
    pub(crate) server_no_context_takeover: bool,
    pub(crate) client_no_context_takeover: bool,
    pub(crate) server_max_window_bits: u8,
    pub(crate) client_max_window_bits: u8,
}

impl Default for DeflateConfig {
    /// Level 1, a 64-byte threshold, context kept on both sides, 32 KiB windows: the best ratio
    /// for chatty JSON, at about 420 KiB of zlib state per connection once it has sent and
    /// received a compressed message (see [`low_memory`](Self::low_memory) for the other end of
    /// the trade, and the tables above).
    fn default() -> Self {
        Self {
            level: 1,
            threshold: 64,
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }
}

impl DeflateConfig {
    /// No context takeover in either direction: each message is compressed on its own, so no
    /// zlib state stays with a connection between messages (an idle connection costs what it
    /// costs without deflate). Ratios drop for small messages that resemble each other (1.2x
    /// against 7.5x on chat events); large messages compress as well. Each compressed message
    /// pays for a compressor reset, about 20 µs.
    pub fn low_memory() -> Self {
        Self {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            ..Self::default()
        }
    }

    /// The compression level, 0 (store) to 9 (smallest); values above 9 count as 9.
    ///
    /// Default: 1, the fastest level that still compresses: zlib-rs's quick strategy, which on
    /// small JSON messages gets most of level 6's ratio (7.5x against 8.7x on chat events) at a
    /// small fraction of the CPU; large documents gain more from higher levels (3.7x against
    /// 6.0x on 150 KB API pages).
    #[must_use]
    pub fn level(mut self, level: u32) -> Self {
        self.level = u8::try_from(level.min(9)).unwrap_or(9);
        self
    }

    /// Messages shorter than this are sent uncompressed.
    ///
    /// Default: 64 bytes, under which deflate's block overhead usually outweighs the gain.
    /// `u32::MAX` (4 GiB less a byte) or more, `usize::MAX` included, means never compress.
    #[must_use]
    pub fn threshold(mut self, bytes: usize) -> Self {
        self.threshold = u32::try_from(bytes).unwrap_or(u32::MAX);
        self
    }

    /// Whether the server resets its compression context after each message.
    ///
    /// As a server: do so, and say so in the response (saves the compressor's memory between
    /// messages). As a client: ask the server to. Default: off.
    #[must_use]
    pub fn server_no_context_takeover(mut self, enabled: bool) -> Self {
        self.server_no_context_takeover = enabled;
        self
    }

    /// Whether the client resets its compression context after each message.
    ///
    /// As a server: require it of the client (then the server's decompressor holds nothing
    /// between messages). As a client: do so, and say so in the offer. Default: off.
    #[must_use]
    pub fn client_no_context_takeover(mut self, enabled: bool) -> Self {
        self.client_no_context_takeover = enabled;
        self
    }

    /// The largest LZ77 window the server compresses with, as a power of two (9 to 15; other
    /// values are clamped into that range).
    ///
    /// zlib cannot compress with a 256-byte window, so 8 is not offered or accepted for a
    /// compressor; a peer's window of 8 is always decompressed. Default: 15.
    #[must_use]
    pub fn server_max_window_bits(mut self, bits: u8) -> Self {
        self.server_max_window_bits = bits.clamp(9, 15);
        self
    }

    /// The largest LZ77 window the client compresses with, as a power of two (9 to 15).
    /// Default: 15.
    #[must_use]
    pub fn client_max_window_bits(mut self, bits: u8) -> Self {
        self.client_max_window_bits = bits.clamp(9, 15);
        self
    }

    /// The configured level.
    pub fn get_level(&self) -> u32 {
        u32::from(self.level)
    }

    /// The configured threshold (`usize::MAX`: never compress).
    pub fn get_threshold(&self) -> usize {
        if self.threshold == u32::MAX {
            usize::MAX
        } else {
            usize::try_from(self.threshold).unwrap_or(usize::MAX)
        }
    }
}

/// permessage-deflate parameters as agreed in a handshake, from both sides' point of view.
///
/// The tower layer and the client negotiate these; code that runs its own handshake builds
/// them with [`DeflateParams::default`] and the setters, and passes them to
/// [`WebSocket::with_deflate`](crate::WebSocket::with_deflate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server resets its compression context after each message.
    pub server_no_context_takeover: bool,
    /// The client resets its compression context after each message.
    pub client_no_context_takeover: bool,
    /// The server's compression window, as a power of two (8 to 15).
    pub server_max_window_bits: u8,
    /// The client's compression window, as a power of two (8 to 15).
    pub client_max_window_bits: u8,
}

impl Default for DeflateParams {
    /// The RFC's defaults: context kept on both sides, 32 KiB windows.
    fn default() -> Self {
        Self {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }
}

/// One direction's settings, from this endpoint's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Direction {
    /// zlib window bits (9 to 15: zlib's compressor cannot use 8, and a decompressor with a
    /// larger window than the compressor's reads its output fine).
    window_bits: u8,
    /// Reset after every message.
    no_context_takeover: bool,
}

/// The per-connection compression state.
#[derive(Debug)]
pub(crate) struct Codec {
    level: u32,
    threshold: usize,
    outgoing: Direction,
    incoming: Direction,
    /// Kept only while context carries over between messages.
    compressor: Option<Box<Compress>>,
    decompressor: Option<Box<Decompress>>,
    /// The message being inflated reached a final DEFLATE block (BFINAL set): the peer's stream
    /// has ended. What may follow in the message is the one-byte padding RFC 7692 section
    /// 7.2.3.4 shows (the count of bytes seen so far after the block).
    after_final: Option<usize>,
}

impl Codec {
    pub(crate) fn new(config: DeflateConfig, params: DeflateParams, role: Role) -> Self {
        let server = Direction {
            window_bits: params.server_max_window_bits.clamp(9, 15),
            no_context_takeover: params.server_no_context_takeover,
        };
        let client = Direction {
            window_bits: params.client_max_window_bits.clamp(9, 15),
            no_context_takeover: params.client_no_context_takeover,
        };
        let (outgoing, incoming) = match role {
            Role::Server => (server, client),
            Role::Client => (client, server),
        };
        Self {
            level: config.get_level(),
            threshold: config.get_threshold(),
            outgoing,
            incoming,
            compressor: None,
            decompressor: None,
            after_final: None,
        }
    }

    /// Whether a message of `len` bytes is worth compressing.
    pub(crate) fn should_compress(&self, len: usize) -> bool {
        len >= self.threshold
    }

    /// The settings under which a message compressed once serves every socket that has them:
    /// `Some` only without context takeover on the outgoing side (each message then starts
    /// from a fresh compressor).
    pub(crate) fn shared_deflate(&self) -> Option<super::fanout::SharedDeflate> {
        self.outgoing
            .no_context_takeover
            .then_some(super::fanout::SharedDeflate {
                level: self.level,
                window_bits: self.outgoing.window_bits,
                threshold: self.threshold,
            })
    }

    /// Compresses one message for every socket with the `shared` settings (a server's frames,
    /// without context takeover).
    pub(crate) fn compress_shared(shared: super::fanout::SharedDeflate, input: &[u8]) -> Bytes {
        let config = DeflateConfig::default()
            .level(shared.level)
            .threshold(shared.threshold);
        let params = DeflateParams {
            server_no_context_takeover: true,
            server_max_window_bits: shared.window_bits,
            ..DeflateParams::default()
        };
        Self::new(config, params, Role::Server).compress(input)
    }

    /// Compresses one whole message.
    pub(crate) fn compress(&mut self, input: &[u8]) -> Bytes {
        let key = (self.level, self.outgoing.window_bits);
        let mut compressor = match self.compressor.take() {
            Some(c) => c,
            None => spare_compressor(key),
        };
        let mut out = Vec::with_capacity(input.len() / 2 + 64);
        let mut consumed = 0;
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity().max(64));
            }
            let before = compressor.total_in();
            let rest = input.get(consumed..).unwrap_or_default();
            // Raw deflate into a Vec cannot fail: the only errors are for misuse of the stream.
            let _ = compressor.compress_vec(rest, &mut out, FlushCompress::Sync);
            consumed += usize::try_from(compressor.total_in() - before).unwrap_or(usize::MAX);
            // Done once all input is taken and the flush did not fill the output.
            if consumed >= input.len() && out.len() < out.capacity() {
                break;
            }
        }
        if out.ends_with(&TRAILER) {
            out.truncate(out.len() - TRAILER.len());
        }
        if out.is_empty() {
            // zlib emits nothing for a flush with nothing pending; RFC 7692 (7.2.3.6) spells an
            // empty message as one empty block header, which keeps the peer's decompressor at a
            // block boundary.
            out.push(0x00);
        }
        if self.outgoing.no_context_takeover {
            compressor.reset();
            return_compressor(key, compressor);
        } else {
            self.compressor = Some(compressor);
        }
        Bytes::from(out)
    }

    /// Inflates one frame's worth of a compressed message into `out`.
    ///
    /// A final DEFLATE block (BFINAL set, which RFC 7692 section 7.2.3.4 lets a sender use to
    /// end a message) ends the peer's stream: the rest of the message may only be the one-byte
    /// padding the RFC shows, and the next message starts a new stream.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::MessageTooLarge`] as soon as the output would pass `limit` (it never
    /// holds more than `limit + 1` bytes), [`ProtocolError::InvalidCompressedData`] for a
    /// stream zlib rejects or bytes after a final block. The connection fails either way, so the
    /// decompressor is dropped.
    pub(crate) fn inflate(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), ProtocolError> {
        if input.is_empty() {
            return Ok(());
        }
        if self.after_final.is_some() {
            return self.after_final_block(input);
        }
        let bits = self.incoming.window_bits;
        let decompressor = self
            .decompressor
            .get_or_insert_with(|| spare_decompressor(bits));
        match inflate_all(decompressor, input, out, limit) {
            Ok(Inflated::All) => Ok(()),
            Ok(Inflated::StreamEnd { consumed }) => {
                self.after_final = Some(0);
                self.after_final_block(input.get(consumed..).unwrap_or_default())
            }
            Err(e) => {
                self.decompressor = None;
                Err(e)
            }
        }
    }

    /// Takes bytes of a message that follow its final block: at most one byte, a zero.
    fn after_final_block(&mut self, rest: &[u8]) -> Result<(), ProtocolError> {
        let seen = self.after_final.unwrap_or_default() + rest.len();
        self.after_final = Some(seen);
        if seen > 1 || rest.iter().any(|&b| b != 0) {
            self.decompressor = None;
            return Err(ProtocolError::InvalidCompressedData);
        }
        Ok(())
    }

    /// Ends a compressed message: inflates the RFC 7692 trailer (unless the message carried no
    /// compressed bytes at all, which leaves the peer's compressor where it was, or ended the
    /// peer's stream with a final block), then lets go of the decompressor if the peer does not
    /// keep context or its stream has ended.
    ///
    /// # Errors
    ///
    /// As [`inflate`](Self::inflate).
    pub(crate) fn end_message(
        &mut self,
        out: &mut Vec<u8>,
        limit: usize,
        had_input: bool,
    ) -> Result<(), ProtocolError> {
        let ended = self.after_final.take().is_some();
        let result = if had_input && !ended {
            self.inflate(&TRAILER, out, limit)
        } else {
            Ok(())
        };
        if (self.incoming.no_context_takeover || ended)
            && let Some(mut decompressor) = self.decompressor.take()
        {
            decompressor.reset(false);
            return_decompressor(self.incoming.window_bits, decompressor);
        }
        result
    }
}

/// How far [`inflate_all`] got.
enum Inflated {
    /// Every input byte was used.
    All,
    /// A final block ended the stream after `consumed` input bytes.
    StreamEnd { consumed: usize },
}

/// Runs `input` through the decompressor, growing `out` as needed but never past `limit + 1`.
fn inflate_all(
    decompressor: &mut Decompress,
    input: &[u8],
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<Inflated, ProtocolError> {
    let mut consumed = 0;
    loop {
        if out.len() == out.capacity() {
            // Double as output grows, but only up to one byte past the limit: enough to see that
            // a message is too large without holding more of it.
            let room = limit.saturating_add(1).saturating_sub(out.len());
            let grow = out.len().max(INFLATE_STEP).min(room);
            if grow == 0 {
                return Err(too_large(out.len(), limit));
            }
            out.reserve_exact(grow);
        }
        let (in_before, out_before) = (decompressor.total_in(), out.len());
        let rest = input.get(consumed..).unwrap_or_default();
        let status = decompressor
            .decompress_vec(rest, out, FlushDecompress::Sync)
            .map_err(|_| ProtocolError::InvalidCompressedData)?;
        consumed += usize::try_from(decompressor.total_in() - in_before).unwrap_or(usize::MAX);
        if out.len() > limit {
            return Err(too_large(out.len(), limit));
        }
        let took_input = decompressor.total_in() > in_before;
        let made_output = out.len() > out_before;
        let has_room = out.len() < out.capacity();
        match status {
            Status::StreamEnd => return Ok(Inflated::StreamEnd { consumed }),
            _ if consumed >= input.len() && has_room => return Ok(Inflated::All),
            // Neither input taken nor output made, with room to spare: the stream is stuck.
            _ if !took_input && !made_output && has_room => {
                return Err(ProtocolError::InvalidCompressedData);
            }
            _ => {}
        }
    }
}

fn too_large(size: usize, limit: usize) -> ProtocolError {
    ProtocolError::MessageTooLarge {
        size: size as u64,
        limit: limit as u64,
    }
}

/// A compressor's level and window bits: a spare is reused only for the same settings.
type CompressorKey = (u32, u8);

thread_local! {
    /// A reset compressor (with its level and window bits) for connections that do not keep
    /// context: one per thread serves them all, since a message is compressed synchronously.
    static SPARE_COMPRESSOR: RefCell<Option<(CompressorKey, Box<Compress>)>> = const { RefCell::new(None) };
    /// Likewise for decompressors, keyed by window bits.
    static SPARE_DECOMPRESSOR: RefCell<Option<(u8, Box<Decompress>)>> = const { RefCell::new(None) };
}

fn spare_compressor(key: CompressorKey) -> Box<Compress> {
    let spare = SPARE_COMPRESSOR
        .try_with(|s| s.borrow_mut().take_if(|(k, _)| *k == key))
        .ok()
        .flatten();
    match spare {
        Some((_, c)) => c,
        None => Box::new(Compress::new_with_window_bits(
            Compression::new(key.0),
            false,
            key.1,
        )),
    }
}

fn return_compressor(key: CompressorKey, compressor: Box<Compress>) {
    let _ = SPARE_COMPRESSOR.try_with(|s| *s.borrow_mut() = Some((key, compressor)));
}

fn spare_decompressor(bits: u8) -> Box<Decompress> {
    let spare = SPARE_DECOMPRESSOR
        .try_with(|s| s.borrow_mut().take_if(|(k, _)| *k == bits))
        .ok()
        .flatten();
    match spare {
        Some((_, d)) => d,
        None => Box::new(Decompress::new_with_window_bits(false, bits)),
    }
}

fn return_decompressor(bits: u8, decompressor: Box<Decompress>) {
    let _ = SPARE_DECOMPRESSOR.try_with(|s| *s.borrow_mut() = Some((bits, decompressor)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_level_and_threshold_are_kept_small_and_saturate() {
        assert_eq!(DeflateConfig::default().level(6).get_level(), 6);
        assert_eq!(DeflateConfig::default().level(u32::MAX).get_level(), 9);
        assert_eq!(DeflateConfig::default().get_threshold(), 64);
        assert_eq!(DeflateConfig::default().threshold(0).get_threshold(), 0);
        let max = usize::try_from(u32::MAX).unwrap();
        assert_eq!(
            DeflateConfig::default().threshold(max - 1).get_threshold(),
            max - 1
        );
        for never in [max, usize::MAX] {
            let config = DeflateConfig::default().threshold(never);
            assert_eq!(config.get_threshold(), usize::MAX);
            let codec = Codec::new(config, DeflateParams::default(), Role::Server);
            assert!(!codec.should_compress(max));
        }
        assert!(size_of::<Option<DeflateConfig>>() <= 12);
    }

    fn pair(params: DeflateParams) -> (Codec, Codec) {
        let config = DeflateConfig::default().threshold(0);
        (
            Codec::new(config, params, Role::Client),
            Codec::new(config, params, Role::Server),
        )
    }

    fn receive(
        receiver: &mut Codec,
        compressed: &[u8],
        limit: usize,
    ) -> Result<Vec<u8>, ProtocolError> {
        let mut out = Vec::new();
        receiver.inflate(compressed, &mut out, limit)?;
        receiver.end_message(&mut out, limit, !compressed.is_empty())?;
        Ok(out)
    }

    fn round_trip(sender: &mut Codec, receiver: &mut Codec, message: &[u8]) -> Vec<u8> {
        let compressed = sender.compress(message);
        receive(receiver, &compressed, usize::MAX).unwrap()
    }

    #[test]
    fn messages_round_trip_with_every_parameter_combination() {
        let json = br#"{"type":"update","id":12345,"values":[1,2,3,4,5],"ok":true}"#.repeat(20);
        let messages: [&[u8]; 7] = [&json, b"", b"", b"x", &json[..100], &json, b""];
        for server_nct in [false, true] {
            for client_nct in [false, true] {
                for bits in [9, 12, 15] {
                    let params = DeflateParams {
                        server_no_context_takeover: server_nct,
                        client_no_context_takeover: client_nct,
                        server_max_window_bits: bits,
                        client_max_window_bits: bits,
                    };
                    let (mut client, mut server) = pair(params);
                    for message in messages {
                        assert_eq!(round_trip(&mut client, &mut server, message), message);
                        assert_eq!(round_trip(&mut server, &mut client, message), message);
                    }
                }
            }
        }
    }

    #[test]
    fn context_takeover_makes_repeated_messages_smaller() {
        let message = br#"{"event":"tick","symbol":"ACME","price":101.25,"volume":1200}"#;
        let (mut keep, _) = pair(DeflateParams::default());
        let first = keep.compress(message).len();
        let second = keep.compress(message).len();
        assert!(second < first / 2, "{second} vs {first}");
        let (mut reset, _) = pair(DeflateParams {
            client_no_context_takeover: true,
            ..DeflateParams::default()
        });
        assert_eq!(reset.compress(message).len(), reset.compress(message).len());
    }

    #[test]
    fn an_empty_message_is_one_empty_block_and_keeps_both_sides_in_step() {
        let (mut client, mut server) = pair(DeflateParams::default());
        assert_eq!(round_trip(&mut client, &mut server, b"first"), b"first");
        assert_eq!(&client.compress(b"")[..], &[0x00]);
        // A peer that sends no bytes at all for an empty message is read the same way.
        assert_eq!(receive(&mut server, b"", usize::MAX).unwrap(), b"");
        assert_eq!(round_trip(&mut client, &mut server, b"after"), b"after");
    }

    #[test]
    fn the_sync_flush_trailer_is_removed() {
        let (mut client, _) = pair(DeflateParams::default());
        assert!(!client.compress(b"hello hello hello").ends_with(&TRAILER));
    }

    #[test]
    fn a_zip_bomb_stops_at_the_limit() {
        let config = DeflateConfig::default().level(9);
        let mut client = Codec::new(config, DeflateParams::default(), Role::Client);
        let (_, mut server) = pair(DeflateParams::default());
        let bomb = client.compress(&vec![0_u8; 10 << 20]);
        assert!(
            bomb.len() < 20_000,
            "10 MiB of zeros compress to {} bytes",
            bomb.len()
        );
        let mut out = Vec::new();
        let err = server.inflate(&bomb, &mut out, 1 << 20).unwrap_err();
        assert!(matches!(err, ProtocolError::MessageTooLarge { limit, .. } if limit == 1 << 20));
        assert!(
            out.capacity() <= (1 << 20) + 1,
            "held {} bytes",
            out.capacity()
        );
    }

    #[test]
    fn garbage_is_invalid_compressed_data() {
        let (_, mut server) = pair(DeflateParams::default());
        assert_eq!(
            receive(&mut server, &[0xff; 64], usize::MAX),
            Err(ProtocolError::InvalidCompressedData)
        );
    }

    #[test]
    fn a_message_split_across_frames_inflates_piece_by_piece() {
        let (mut client, mut server) = pair(DeflateParams::default());
        let message = "fragmented and compressed ".repeat(500);
        let compressed = client.compress(message.as_bytes());
        let mut out = Vec::new();
        let (a, b) = compressed.split_at(compressed.len() / 3);
        server.inflate(a, &mut out, usize::MAX).unwrap();
        server.inflate(b, &mut out, usize::MAX).unwrap();
        server.end_message(&mut out, usize::MAX, true).unwrap();
        assert_eq!(out, message.as_bytes());
    }

    /// `data` compressed as one stream ended by a final block (BFINAL set), as a sender without
    /// a sync flush makes it (RFC 7692 section 7.2.3.4).
    fn finished(data: &[u8]) -> Vec<u8> {
        let mut compressor = Compress::new(Compression::new(6), false);
        let mut out = Vec::with_capacity(data.len() + 64);
        compressor
            .compress_vec(data, &mut out, FlushCompress::Finish)
            .unwrap();
        out
    }

    #[test]
    fn a_final_block_ends_the_peers_stream_and_the_next_message_starts_a_new_one() {
        let (_, mut server) = pair(DeflateParams::default());
        // The RFC's own example: "Hello" in a final block, then the one-byte padding.
        let rfc = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        assert_eq!(receive(&mut server, &rfc, usize::MAX).unwrap(), b"Hello");
        // Found by the deflate_inflate fuzz target: with context takeover, every message after a
        // final block used to inflate to nothing and be delivered empty.
        for message in [&b"next"[..], b"and the one after"] {
            assert_eq!(
                receive(&mut server, &finished(message), usize::MAX).unwrap(),
                message
            );
        }
        // A peer that goes back to sync flushes starts from a fresh window too.
        let (mut fresh_client, _) = pair(DeflateParams::default());
        let compressed = fresh_client.compress(b"sync flushed again");
        assert_eq!(
            receive(&mut server, &compressed, usize::MAX).unwrap(),
            b"sync flushed again"
        );
    }

    #[test]
    fn bytes_after_a_final_block_are_invalid_compressed_data() {
        let mut garbage = finished(b"Hello");
        garbage.extend_from_slice(b"ignored?");
        let (_, mut server) = pair(DeflateParams::default());
        assert_eq!(
            receive(&mut server, &garbage, usize::MAX),
            Err(ProtocolError::InvalidCompressedData)
        );
        // Split across frames, the padding counts over the whole message.
        let (_, mut server) = pair(DeflateParams::default());
        let mut out = Vec::new();
        server
            .inflate(&finished(b"Hello"), &mut out, usize::MAX)
            .unwrap();
        server.inflate(&[0], &mut out, usize::MAX).unwrap();
        assert_eq!(
            server.inflate(&[0], &mut out, usize::MAX),
            Err(ProtocolError::InvalidCompressedData)
        );
    }

    #[test]
    fn window_bits_outside_zlibs_range_are_clamped_not_a_panic() {
        let params = DeflateParams {
            server_max_window_bits: 8,
            client_max_window_bits: 200,
            ..DeflateParams::default()
        };
        let (mut client, mut server) = pair(params);
        assert_eq!(
            round_trip(&mut client, &mut server, b"still works"),
            b"still works"
        );
        let config = DeflateConfig::default()
            .server_max_window_bits(3)
            .client_max_window_bits(99);
        assert_eq!(
            (config.server_max_window_bits, config.client_max_window_bits),
            (9, 15)
        );
    }
}
