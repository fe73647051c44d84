//! The load generator's side of RFC 6455 framing, kept apart from every library under test:
//! masked client frames out, a streaming decoder that verifies every echoed byte in.
//!
//! Every message carries a sequence stamp (8 hex digits) in its first bytes, so an echo that is
//! stale, reordered or from another message fails the check; the rest of the payload is a fixed
//! template, compared byte for byte as it arrives (nothing is buffered whole, so 1 MiB echoes
//! cost the load generator one `memcmp`, not a copy).

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWrite;

use crate::Failure;

/// Opcodes the load generator sends and expects.
const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;

/// Length codes announcing a 16-bit and a 64-bit extended payload length.
const LEN_16: u8 = 126;
const LEN_64: u8 = 127;

/// Bytes at the start of each payload that hold its sequence stamp.
const STAMP_LEN: usize = 8;

/// Frames up to this size are copied into one contiguous write buffer; larger payloads are
/// queued by reference to the shared masked template and written with `writev`.
const COPY_LIMIT: usize = 4 << 10;

/// The messages of one run: a payload template of the run's size and type, plus the same
/// template masked with the run's key.
#[derive(Debug)]
pub(crate) struct Payload {
    opcode: u8,
    key: [u8; 4],
    /// Unmasked template; its first `stamp_len` bytes are replaced by each message's stamp.
    plain: Bytes,
    /// `plain` masked with `key` from offset 0.
    masked: Bytes,
    stamp_len: usize,
}

impl Payload {
    /// A template of `size` bytes: pseudo-random bytes for binary, or for text a mix of ASCII
    /// and two-, three- and four-byte UTF-8 sequences (so validators leave their ASCII fast path).
    pub(crate) fn new(size: usize, text: bool, key: [u8; 4]) -> Self {
        let stamp_len = size.min(STAMP_LEN);
        let mut plain = vec![b'0'; stamp_len];
        if text {
            const SAMPLE: &str = "The quick brown fox jumps over the lazy dog; \
                                  Ünïcödé wörds, ελληνικά, кириллица, 日本語のテキスト, emoji 🦊🚀✓. ";
            let mut chars = SAMPLE.chars().cycle();
            while plain.len() < size {
                let c = chars.next().unwrap_or(' ');
                if plain.len() + c.len_utf8() > size {
                    plain.resize(size, b' ');
                    break;
                }
                let mut utf8 = [0_u8; 4];
                plain.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
            }
        } else {
            let mut state = 0x2545_F491_4F6C_DD1D_u64;
            while plain.len() < size {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                plain.push(state.to_le_bytes()[3]);
            }
        }
        let mut masked = plain.clone();
        apply_mask(&mut masked, key, 0);
        Self {
            opcode: if text { OP_TEXT } else { OP_BINARY },
            key,
            plain: plain.into(),
            masked: masked.into(),
            stamp_len,
        }
    }

    /// Payload length of every message.
    pub(crate) fn len(&self) -> usize {
        self.plain.len()
    }

    /// The stamp of message `seq`: the low 32 bits as hex digits (valid UTF-8), cut to the
    /// payload's length.
    fn stamp(seq: u32) -> [u8; STAMP_LEN] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut stamp = [0_u8; STAMP_LEN];
        for (digits, byte) in stamp.chunks_exact_mut(2).zip(seq.to_be_bytes()) {
            digits[0] = HEX[usize::from(byte >> 4)];
            digits[1] = HEX[usize::from(byte & 0x0f)];
        }
        stamp
    }

    /// Queues message `seq` as one masked frame.
    pub(crate) fn push_frame(&self, out: &mut OutQueue, seq: u32) {
        let len = self.len();
        let mut head = [0_u8; 14 + STAMP_LEN];
        head[0] = 0x80 | self.opcode;
        let mut at = 2;
        if len < usize::from(LEN_16) {
            head[1] = 0x80 | u8::try_from(len).unwrap_or(0);
        } else if let Ok(short) = u16::try_from(len) {
            head[1] = 0x80 | LEN_16;
            head[2..4].copy_from_slice(&short.to_be_bytes());
            at = 4;
        } else {
            head[1] = 0x80 | LEN_64;
            head[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            at = 10;
        }
        head[at..at + 4].copy_from_slice(&self.key);
        at += 4;
        let stamp = Self::stamp(seq);
        for (i, b) in stamp[..self.stamp_len].iter().enumerate() {
            head[at + i] = b ^ self.key[i % 4];
        }
        at += self.stamp_len;
        let body = &self.masked[self.stamp_len..];
        if len <= COPY_LIMIT {
            out.small.extend_from_slice(&head[..at]);
            out.small.extend_from_slice(body);
        } else {
            out.push(Bytes::copy_from_slice(&head[..at]));
            out.push(self.masked.slice(self.stamp_len..));
        }
    }

    /// Whether `chunk`, found at offset `at` of echo `seq`, is what was sent (still masked,
    /// for an echo of the raw bytes).
    fn matches(&self, seq: u32, at: usize, chunk: &[u8], masked: bool) -> bool {
        let mut i = 0;
        if at < self.stamp_len {
            let mut stamp = Self::stamp(seq);
            if masked {
                apply_mask(&mut stamp, self.key, 0);
            }
            let n = (self.stamp_len - at).min(chunk.len());
            if chunk[..n] != stamp[at..at + n] {
                return false;
            }
            i = n;
        }
        let template = if masked { &self.masked } else { &self.plain };
        chunk[i..] == template[at + i..at + chunk.len()]
    }
}

/// XORs `buf` with `key`, as if `buf` started at byte `offset` of a payload.
fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[(offset + i) % 4];
    }
}

/// Bytes waiting to be written: small frames coalesced into one buffer, large payloads as
/// references to the shared template. Written with `writev`.
#[derive(Debug, Default)]
pub(crate) struct OutQueue {
    chunks: VecDeque<Bytes>,
    small: BytesMut,
}

impl OutQueue {
    fn push(&mut self, bytes: Bytes) {
        self.seal();
        self.chunks.push_back(bytes);
    }

    fn seal(&mut self) {
        if !self.small.is_empty() {
            self.chunks.push_back(self.small.split().freeze());
        }
    }

    /// Whether everything has been written.
    pub(crate) fn is_empty(&self) -> bool {
        self.chunks.is_empty() && self.small.is_empty()
    }

    /// Writes until everything is written or the transport would block.
    pub(crate) fn poll_write<W: AsyncWrite + Unpin>(
        &mut self,
        io: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        self.seal();
        while !self.chunks.is_empty() {
            let mut slices = [IoSlice::new(&[]); 64];
            let n = self
                .chunks
                .iter()
                .zip(slices.iter_mut())
                .map(|(chunk, slice)| *slice = IoSlice::new(chunk))
                .count();
            let mut written = match Pin::new(&mut *io).poll_write_vectored(cx, &slices[..n]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(written)) => written,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            while written > 0 {
                let Some(front) = self.chunks.front_mut() else {
                    break;
                };
                if written >= front.len() {
                    written -= front.len();
                    self.chunks.pop_front();
                } else {
                    let _ = front.split_to(written);
                    written = 0;
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// Where the decoder is in the stream of echoed frames.
#[derive(Debug, Clone, Copy)]
enum State {
    Header,
    Payload { remaining: usize, fin: bool },
}

/// Parses the server's frames and checks each echo against what was sent, in order.
#[derive(Debug)]
pub(crate) struct Decoder {
    state: State,
    /// Sequence number of the echo being received.
    seq: u32,
    /// Bytes of the current echo checked so far.
    at: usize,
    /// Whether the current echo's first frame has been seen.
    started: bool,
    /// Whether echoes come back masked: the raw TCP echo returns the bytes sent, unchanged.
    masked: bool,
}

impl Decoder {
    /// A decoder for WebSocket servers (`masked` false: frames must come back unmasked) or for
    /// the raw TCP echo (`masked` true: the client's masked frames come back as they were sent).
    pub(crate) fn new(masked: bool) -> Self {
        Self {
            state: State::Header,
            seq: 0,
            at: 0,
            started: false,
            masked,
        }
    }

    /// Consumes what it can of `buf`, calling `on_echo` for each complete, verified echo.
    /// Returns how many bytes were consumed: the rest is the start of a frame header.
    ///
    /// # Errors
    ///
    /// The first deviation from what was sent: wrong opcode, length or content, masking,
    /// reserved bits, or any control frame.
    pub(crate) fn feed(
        &mut self,
        payload: &Payload,
        buf: &[u8],
        mut on_echo: impl FnMut(),
    ) -> Result<usize, Failure> {
        let mut pos = 0;
        loop {
            match self.state {
                State::Header => {
                    let (Some(&b0), Some(&b1)) = (buf.get(pos), buf.get(pos + 1)) else {
                        return Ok(pos);
                    };
                    let (len, mut header_len) = match b1 & 0x7f {
                        LEN_16 => match buf.get(pos + 2..pos + 4) {
                            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
                            None => return Ok(pos),
                        },
                        LEN_64 => match buf
                            .get(pos + 2..pos + 10)
                            .and_then(|b| <[u8; 8]>::try_from(b).ok())
                        {
                            Some(b) => (u64::from_be_bytes(b), 10),
                            None => return Ok(pos),
                        },
                        short => (u64::from(short), 2),
                    };
                    let opcode = b0 & 0x0f;
                    if b0 & 0x70 != 0 {
                        return Err(self.fail("reserved bits set"));
                    }
                    if (b1 & 0x80 != 0) != self.masked {
                        return Err(self.fail(if self.masked {
                            "raw echo lost the mask bit"
                        } else {
                            "server frame is masked"
                        }));
                    }
                    if self.masked {
                        match buf.get(pos + header_len..pos + header_len + 4) {
                            Some(key) if key == payload.key => header_len += 4,
                            Some(_) => return Err(self.fail("raw echo changed the masking key")),
                            None => return Ok(pos),
                        }
                    }
                    if opcode >= 0x8 {
                        return Err(
                            self.fail(&format!("unexpected control frame, opcode {opcode}"))
                        );
                    }
                    let expected = if self.started {
                        OP_CONTINUATION
                    } else {
                        payload.opcode
                    };
                    if opcode != expected {
                        return Err(self.fail(&format!("opcode {opcode}, expected {expected}")));
                    }
                    let len = usize::try_from(len).unwrap_or(usize::MAX);
                    if len > payload.len() - self.at {
                        return Err(self.fail("echo longer than the message sent"));
                    }
                    self.started = true;
                    pos += header_len;
                    self.state = State::Payload {
                        remaining: len,
                        fin: b0 & 0x80 != 0,
                    };
                }
                State::Payload { remaining, fin } => {
                    let take = remaining.min(buf.len() - pos);
                    let chunk = &buf[pos..pos + take];
                    if !payload.matches(self.seq, self.at, chunk, self.masked) {
                        return Err(self.fail("echoed bytes differ from the bytes sent"));
                    }
                    pos += take;
                    self.at += take;
                    if take < remaining {
                        self.state = State::Payload {
                            remaining: remaining - take,
                            fin,
                        };
                        return Ok(pos);
                    }
                    self.state = State::Header;
                    if fin {
                        if self.at != payload.len() {
                            return Err(self.fail("echo shorter than the message sent"));
                        }
                        self.seq = self.seq.wrapping_add(1);
                        self.at = 0;
                        self.started = false;
                        on_echo();
                    }
                }
            }
        }
    }

    fn fail(&self, what: &str) -> Failure {
        Failure::new(format!("echo {} at byte {}: {what}", self.seq, self.at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The frame bytes `push_frame` produces for `seq`.
    fn frame_bytes(payload: &Payload, seq: u32) -> Vec<u8> {
        let mut out = OutQueue::default();
        payload.push_frame(&mut out, seq);
        out.seal();
        out.chunks.iter().flat_map(|c| c.iter().copied()).collect()
    }

    /// What a correct server sends back for a masked client frame: the same frame, unmasked.
    fn echo_of(frame: &[u8]) -> Vec<u8> {
        let (len, at) = match frame[1] & 0x7f {
            126 => (usize::from(u16::from_be_bytes([frame[2], frame[3]])), 4),
            127 => (
                usize::try_from(u64::from_be_bytes(frame[2..10].try_into().unwrap())).unwrap(),
                10,
            ),
            n => (usize::from(n), 2),
        };
        let key: [u8; 4] = frame[at..at + 4].try_into().unwrap();
        let mut body = frame[at + 4..].to_vec();
        assert_eq!(body.len(), len);
        apply_mask(&mut body, key, 0);
        let mut echo = frame[..at].to_vec();
        echo[1] &= 0x7f;
        echo.extend_from_slice(&body);
        echo
    }

    #[test]
    fn text_templates_are_valid_utf8_of_the_exact_size() {
        for size in [0, 1, 7, 8, 9, 20, 1000, 65_536] {
            let p = Payload::new(size, true, [1, 2, 3, 4]);
            assert_eq!(p.len(), size);
            let mut bytes = p.plain.to_vec();
            bytes[..p.stamp_len].copy_from_slice(&Payload::stamp(0xdead_beef)[..p.stamp_len]);
            assert!(std::str::from_utf8(&bytes).is_ok(), "size {size}");
        }
        let p = Payload::new(65_536, true, [1, 2, 3, 4]);
        assert!(
            p.plain.iter().any(|&b| b >= 0xf0),
            "holds four-byte sequences"
        );
    }

    #[test]
    fn every_size_class_round_trips_through_a_correct_echo() {
        for size in [0, 5, 20, 125, 126, 1024, 65_535, 65_536, 1 << 20] {
            let p = Payload::new(size, size % 2 == 0, [0x37, 0xfa, 0x21, 0x3d]);
            let mut wire = Vec::new();
            for seq in 0..3 {
                wire.extend(echo_of(&frame_bytes(&p, seq)));
            }
            // Feed in awkward pieces: the decoder must carry partial headers over.
            let mut dec = Decoder::new(false);
            let mut echoes = 0;
            let mut pending = Vec::new();
            for piece in wire.chunks(size / 3 + 1) {
                pending.extend_from_slice(piece);
                let used = dec.feed(&p, &pending, || echoes += 1).unwrap();
                pending.drain(..used);
            }
            assert_eq!(echoes, 3, "size {size}");
            assert!(pending.is_empty());
        }
    }

    #[test]
    fn a_raw_echo_of_the_masked_frames_is_accepted_in_raw_mode_only() {
        for size in [20, 1024, 70_000] {
            let p = Payload::new(size, false, [0x37, 0xfa, 0x21, 0x3d]);
            let wire: Vec<u8> = (0..3).flat_map(|seq| frame_bytes(&p, seq)).collect();
            let mut echoes = 0;
            let mut pending = Vec::new();
            let mut dec = Decoder::new(true);
            for piece in wire.chunks(7) {
                pending.extend_from_slice(piece);
                let used = dec.feed(&p, &pending, || echoes += 1).unwrap();
                pending.drain(..used);
            }
            assert_eq!(echoes, 3);
            assert!(Decoder::new(false).feed(&p, &wire, || ()).is_err());
        }
    }

    #[test]
    fn a_fragmented_echo_is_accepted() {
        let p = Payload::new(100, false, [9, 8, 7, 6]);
        let whole = echo_of(&frame_bytes(&p, 0));
        let body = &whole[2..];
        let mut wire = vec![OP_BINARY, 40];
        wire.extend_from_slice(&body[..40]);
        wire.extend_from_slice(&[0x80, 60]);
        wire.extend_from_slice(&body[40..]);
        let mut echoes = 0;
        assert_eq!(
            Decoder::new(false).feed(&p, &wire, || echoes += 1).unwrap(),
            wire.len()
        );
        assert_eq!(echoes, 1);
    }

    #[test]
    fn wrong_content_stale_echoes_and_control_frames_fail() {
        let p = Payload::new(64, false, [9, 8, 7, 6]);
        let mut corrupt = echo_of(&frame_bytes(&p, 0));
        corrupt[40] ^= 1;
        assert!(Decoder::new(false).feed(&p, &corrupt, || ()).is_err());

        let stale = echo_of(&frame_bytes(&p, 1));
        assert!(
            Decoder::new(false).feed(&p, &stale, || ()).is_err(),
            "seq 1 where 0 was due"
        );

        assert!(
            Decoder::new(false).feed(&p, &[0x89, 0], || ()).is_err(),
            "ping"
        );

        let text = Payload::new(64, true, [9, 8, 7, 6]);
        let as_text = echo_of(&frame_bytes(&text, 0));
        assert!(
            Decoder::new(false).feed(&p, &as_text, || ()).is_err(),
            "wrong opcode"
        );
    }
}
