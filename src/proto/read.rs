//! The read side: bytes from the transport into frames, and frames into events.
//!
//! Frames are parsed straight out of one `BytesMut`. A payload is unmasked in place as its bytes
//! arrive (so text is validated even inside a frame that has only partly arrived), then split
//! off and frozen: the message shares the read buffer's allocation instead of being copied.

use std::io;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::assemble::Assembler;
use super::close::CloseFrame;
use super::config::Limit;
use super::deflate::Codec;
use super::frame::{self, FrameHeader, HeaderRules, OpCode};
use super::mask::apply_mask;
use super::message::Message;
use super::pool;
use crate::error::ProtocolError;

/// The least room a read that starts a frame is made with.
const MIN_READ: usize = 512;

/// The most asked of the transport in one read while a large frame is arriving.
const LARGE_READ: usize = 256 << 10;

/// What the reader produced.
#[derive(Debug)]
pub(crate) enum Event {
    /// A complete text or binary message.
    Message(Message),
    Ping(Bytes),
    Pong(Bytes),
    Close(Option<CloseFrame>),
}

/// A frame whose header has been read and whose payload is arriving.
#[derive(Debug, Clone, Copy)]
struct Partial {
    header: FrameHeader,
    /// Payload bytes at the front of the buffer already unmasked (and, for text, validated).
    seen: usize,
}

/// The read half of the engine's state.
#[derive(Debug, Default)]
pub(crate) struct Reader {
    buf: BytesMut,
    partial: Option<Partial>,
    assembler: Assembler,
    /// The size of the last frame read (at most 256 KiB): a read that starts a new frame asks
    /// for this much, so a peer that sends large frames fills one buffer instead of an 8 KiB one
    /// that must then grow (and copy what it holds).
    last_frame: u32,
    /// The room the next read asks for, grown while reads fill all the room they had (the peer
    /// sends faster than `read_chunk` at a time: a burst of pipelined frames) and shrunk when
    /// they come back far from full; 0 while reads fit in `read_chunk`. One read then takes
    /// in a whole burst, and its answers leave in one write.
    read_size: u32,
}

impl Reader {
    /// A reader that starts with bytes already read from the transport (for example, the part of
    /// the stream an HTTP server read past the handshake).
    pub(crate) fn with_buffered(buf: BytesMut) -> Self {
        Self {
            buf,
            ..Self::default()
        }
    }

    /// Appends bytes read from the transport (for callers that read without
    /// [`poll_fill`](Self::poll_fill): the fuzz targets and their corpus replay).
    pub(crate) fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Takes the next event out of the buffered bytes, or `Ok(None)` if more bytes are needed.
    ///
    /// # Errors
    ///
    /// The first protocol rule the buffered bytes break.
    pub(crate) fn next_event(
        &mut self,
        rules: HeaderRules,
        max_message_size: Limit,
        mut codec: Option<&mut Codec>,
    ) -> Result<Option<Event>, ProtocolError> {
        if let Some(message) = self.small_message(rules, max_message_size) {
            return Ok(Some(Event::Message(message)));
        }
        loop {
            let (header, payload) = 'frame: {
                let mut partial = if let Some(partial) = self.partial {
                    partial
                } else {
                    let Some((header, header_len)) = frame::decode_header(&self.buf, rules)? else {
                        return Ok(None);
                    };
                    if header.opcode.is_control() {
                        if header.rsv != 0 {
                            return Err(ProtocolError::CompressedControlFrame);
                        }
                    } else {
                        self.assembler.begin_frame(&header, max_message_size)?;
                    }
                    // The frame size limit (at most `usize::MAX`) bounds the length.
                    let len = usize::try_from(header.payload_len).unwrap_or(usize::MAX);
                    if let Some(end) = header_len.checked_add(len)
                        && end <= self.buf.len()
                    {
                        // The whole frame is buffered (the common case for small frames):
                        // unmask and check it in place, and take header and payload off the
                        // buffer in one split, with no partial state kept in between.
                        if let Some(payload) = self.buf.get_mut(header_len..end) {
                            unmask_and_check(&mut self.assembler, &header, payload, 0)?;
                        }
                        let payload = self.take_frame(header_len, end);
                        break 'frame (header, payload);
                    }
                    self.buf.advance(header_len);
                    Partial { header, seen: 0 }
                };
                // The frame size limit (at most `usize::MAX`) bounds the length.
                let len = usize::try_from(partial.header.payload_len).unwrap_or(usize::MAX);
                let available = self.buf.len().min(len);
                if let Some(fresh) = self.buf.get_mut(partial.seen..available) {
                    unmask_and_check(&mut self.assembler, &partial.header, fresh, partial.seen)?;
                    partial.seen = available;
                }
                if available < len {
                    self.partial = Some(partial);
                    return Ok(None);
                }
                self.partial = None;
                let payload = if len == 0 {
                    Bytes::new()
                } else {
                    self.buf.split_to(len).freeze()
                };
                (partial.header, payload)
            };
            self.last_frame = u32::try_from(payload.len().min(LARGE_READ)).unwrap_or(u32::MAX);
            match header.opcode {
                OpCode::Ping => return Ok(Some(Event::Ping(payload))),
                OpCode::Pong => return Ok(Some(Event::Pong(payload))),
                OpCode::Close => return Ok(Some(Event::Close(CloseFrame::parse(&payload)?))),
                OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                    let codec = codec.as_deref_mut();
                    let message =
                        self.assembler
                            .end_frame(header.fin, payload, codec, max_message_size)?;
                    if let Some(message) = message {
                        return Ok(Some(Event::Message(message)));
                    }
                }
            }
        }
    }

    /// The most common frame, taken without the general path's bookkeeping: a whole,
    /// unfragmented, uncompressed text or binary message under 64 KiB, fully buffered,
    /// with no message in progress and within both limits. `None` for anything else, which
    /// [`next_event`](Self::next_event) then reads (and reports) as usual; text that is not
    /// UTF-8 is left to it too, so that the error is the same on both paths.
    #[inline]
    fn small_message(&mut self, rules: HeaderRules, max_message_size: Limit) -> Option<Message> {
        if self.partial.is_some() || !self.assembler.is_idle() {
            return None;
        }
        let [b0, b1, ..] = *self.buf else {
            return None;
        };
        // FIN, no RSV bit, text (1) or binary (2); masked as the role expects, length <= 125.
        let text = match b0 {
            0x81 => true,
            0x82 => false,
            _ => return None,
        };
        let masked = b1 & 0x80 != 0;
        if masked != rules.expect_masked {
            return None;
        }
        let (len, len_end) = match b1 & 0x7f {
            127 => return None,
            126 => match *self.buf {
                [_, _, l0, l1, ..] => (u16::from_be_bytes([l0, l1]), 4),
                _ => return None,
            },
            n => (u16::from(n), 2),
        };
        if rules.max_frame_size.exceeded_by(u64::from(len))
            || max_message_size.exceeded_by(u64::from(len))
        {
            return None;
        }
        // One build of the rest per header layout, so that its offsets are constants.
        match (len_end, masked) {
            (2, true) => self.take_small::<2, true>(text, len),
            (2, false) => self.take_small::<2, false>(text, len),
            (_, true) => self.take_small::<4, true>(text, len),
            (_, false) => self.take_small::<4, false>(text, len),
        }
    }

    /// [`small_message`](Self::small_message) once the header is known good: `LEN_END` is where
    /// the length field ends, `MASKED` whether a key follows it.
    #[inline]
    fn take_small<const LEN_END: usize, const MASKED: bool>(
        &mut self,
        text: bool,
        len: u16,
    ) -> Option<Message> {
        let header_len = LEN_END + if MASKED { 4 } else { 0 };
        let end = header_len + usize::from(len);
        let frame = self.buf.get_mut(..end)?;
        let (header, payload) = frame.split_at_mut(header_len);
        let key = match header.split_last_chunk::<4>() {
            Some((_, &key)) if MASKED => Some(key),
            _ => None,
        };
        if let Some(key) = key {
            apply_mask(payload, key, 0);
        }
        if text && simdutf8::basic::from_utf8(payload).is_err() {
            if let Some(key) = key {
                // Masked again, as it arrived: the general path reads it from the start.
                apply_mask(payload, key, 0);
            }
            return None;
        }
        self.last_frame = u32::from(len);
        let payload = self.take_frame(header_len, end);
        Some(if text {
            Message::Text(super::message::Utf8Bytes::from_validated(payload))
        } else {
            Message::Binary(payload)
        })
    }

    /// Takes a whole buffered frame (`end` bytes, the payload after `header_len`) off the
    /// buffer and returns its payload: header and payload in one split, no allocation for an
    /// empty payload.
    #[expect(
        clippy::inline_always,
        reason = "on both read paths; left to itself the compiler calls it (callgrind: +30 per small echo)"
    )]
    #[inline(always)]
    fn take_frame(&mut self, header_len: usize, end: usize) -> Bytes {
        if end == header_len {
            self.buf.advance(header_len);
            Bytes::new()
        } else {
            let mut frame = self.buf.split_to(end).freeze();
            frame.advance(header_len);
            frame
        }
    }

    /// Whether a complete frame is already buffered, so the application will be handed more
    /// without waiting for the peer. (It looks at the length fields only: a frame that breaks a
    /// rule is reported by the next [`next_event`](Self::next_event), whatever this says.)
    pub(crate) fn has_complete_frame(&self) -> bool {
        let buffered = self.buf.len() as u64;
        match self.partial {
            Some(p) => buffered >= p.header.payload_len,
            None => frame::frame_len(&self.buf).is_some_and(|len| buffered >= len),
        }
    }

    /// Reads more bytes from `io` into the buffer.
    ///
    /// The buffer is borrowed from the thread's spare when empty and given back if the read
    /// would block, so a connection waiting for data holds no buffer. While a large frame is
    /// arriving each read asks for as many bytes as have arrived so far (up to 256 KiB): memory
    /// follows what the peer sent, never what it announced.
    pub(crate) fn poll_fill<Io: AsyncRead + Unpin>(
        &mut self,
        io: &mut Io,
        cx: &mut Context<'_>,
        read_chunk: usize,
    ) -> Poll<io::Result<usize>> {
        // `want`: how much room to make when making room; `need`: how little room is enough to
        // read into without making any.
        let (want, need) = if let Some(p) = self.partial {
            let missing = usize::try_from(p.header.payload_len)
                .unwrap_or(usize::MAX)
                .saturating_sub(self.buf.len());
            // Ask for at most as much as already arrived (doubling), so a peer that announces a
            // large frame and sends little makes us hold little.
            let grow = self.buf.len().clamp(read_chunk, LARGE_READ.max(read_chunk));
            let want = missing.clamp(read_chunk, grow);
            (want, want)
        } else {
            // The frame header has not arrived yet: expect one like the last, and read into the
            // room left behind the last if it fits.
            let expected = self.last_frame as usize + frame::MAX_HEADER_LEN;
            (read_chunk.max(expected), expected.max(MIN_READ))
        };
        let grown = self.read_size as usize;
        let (want, need) = (want.max(grown), need.max(grown));
        if self.buf.capacity() - self.buf.len() < need {
            if self.buf.capacity() == 0 {
                self.buf = pool::take(want);
            } else {
                self.buf.reserve(want);
            }
        }
        let room = self.buf.capacity() - self.buf.len();
        let result = pin!(io.read_buf(&mut self.buf)).poll(cx);
        match result {
            Poll::Ready(Ok(n)) if n > 0 => self.adapt_read_size(n, room, read_chunk),
            Poll::Pending if self.buf.is_empty() => {
                pool::give_back(&mut self.buf);
            }
            _ => {}
        }
        result
    }

    /// Grows the next read's room after a read that filled all of `room` (more was likely
    /// waiting), up to 256 KiB; halves it after one that filled under a quarter of it.
    fn adapt_read_size(&mut self, read: usize, room: usize, read_chunk: usize) {
        let limit = LARGE_READ.max(read_chunk);
        let grown = self.read_size as usize;
        let next = if read >= room {
            room.saturating_mul(2).min(limit)
        } else if read < grown / 4 {
            grown / 2
        } else {
            grown
        };
        // At or under `read_chunk` the usual sizing applies.
        self.read_size = if next <= read_chunk {
            0
        } else {
            u32::try_from(next).unwrap_or(u32::MAX)
        };
    }

    /// Drops every buffered byte (used once the connection no longer parses input).
    pub(crate) fn discard(&mut self) {
        self.buf.clear();
        self.partial = None;
    }

    /// Bytes waiting in the buffer: for tests and diagnostics.
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len()
    }
}

/// Unmasks payload bytes that just arrived (`seen` bytes of the payload came before them) and
/// validates them when they are text.
#[inline]
fn unmask_and_check(
    assembler: &mut Assembler,
    header: &FrameHeader,
    fresh: &mut [u8],
    seen: usize,
) -> Result<(), ProtocolError> {
    if fresh.is_empty() {
        return Ok(());
    }
    if let Some(key) = header.mask {
        apply_mask(fresh, key, seen);
    }
    if !header.opcode.is_control() && assembler.in_text() {
        assembler.check_text(fresh)?;
    }
    Ok(())
}

/// Reads and discards input until end of stream: used by a client waiting for the server to
/// close the transport after the close handshake.
pub(crate) fn poll_drain<Io: AsyncRead + Unpin>(
    io: &mut Io,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    let mut scratch = [0_u8; 512];
    loop {
        let mut buf = tokio::io::ReadBuf::new(&mut scratch);
        ready!(Pin::new(&mut *io).poll_read(cx, &mut buf))?;
        if buf.filled().is_empty() {
            return Poll::Ready(Ok(()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::frame::encode_header;

    const SERVER: HeaderRules = HeaderRules {
        expect_masked: true,
        allowed_rsv: 0,
        max_frame_size: Limit::new(1 << 20),
    };

    fn masked_frame(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
        let key = [0xa1, 0xb2, 0xc3, 0xd4];
        let header = FrameHeader {
            fin,
            rsv: 0,
            opcode,
            mask: Some(key),
            payload_len: payload.len() as u64,
        };
        let mut frame = Vec::new();
        encode_header(&header, &mut frame);
        let start = frame.len();
        frame.extend_from_slice(payload);
        apply_mask(&mut frame[start..], key, 0);
        frame
    }

    fn events(wire: &[u8]) -> Result<Vec<Event>, ProtocolError> {
        let mut r = Reader::with_buffered(BytesMut::from(wire));
        let mut out = Vec::new();
        while let Some(e) = r.next_event(SERVER, Limit::new(1 << 20), None)? {
            out.push(e);
        }
        Ok(out)
    }

    /// Every event (or the error) of `wire`, read from one buffer (whole frames take the
    /// small-message path where they qualify) or one byte at a time (never: a frame whose header
    /// has arrived without its payload goes the general way).
    fn read_all(wire: &[u8], rules: HeaderRules, limit: Limit, whole: bool) -> String {
        let mut r = Reader::default();
        let mut out = Vec::new();
        let chunks: Vec<&[u8]> = if whole {
            vec![wire]
        } else {
            wire.chunks(1).collect()
        };
        for chunk in chunks {
            r.buf.extend_from_slice(chunk);
            loop {
                match r.next_event(rules, limit, None) {
                    Ok(Some(event)) => out.push(format!("{event:?}")),
                    Ok(None) => break,
                    Err(error) => return format!("{out:?} then {error:?}"),
                }
            }
        }
        format!("{out:?}, {} left", r.buffered())
    }

    #[test]
    fn the_small_message_path_reads_what_the_general_path_reads() {
        let payloads: [&[u8]; 8] = [
            b"",
            b"a",
            "κόσμε".as_bytes(),
            b"\xed\xa0\x80",
            b"ok \xff",
            &[b'x'; 125],
            &[b'y'; 126],
            &[b'w'; 1000],
        ];
        let client = HeaderRules {
            expect_masked: false,
            ..SERVER
        };
        let mut compared = 0;
        let small_frames = HeaderRules {
            max_frame_size: Limit::new(200),
            ..SERVER
        };
        for rules in [SERVER, client, small_frames] {
            for limit in [Limit::new(1 << 20), Limit::new(3)] {
                for b0 in [
                    0x81, 0x82, 0x01, 0x02, 0x80, 0x89, 0x8a, 0x88, 0xc1, 0x91, 0x83,
                ] {
                    for masked in [true, false] {
                        for payload in payloads {
                            let mut frame = Vec::new();
                            let opcode = OpCode::from_u8(b0 & 0x0f);
                            let header = FrameHeader {
                                fin: b0 & 0x80 != 0,
                                rsv: (b0 >> 4) & 0b111,
                                opcode: opcode.unwrap_or(OpCode::Text),
                                mask: masked.then_some([0x0f, 0xf0, 0x55, 0xaa]),
                                payload_len: payload.len() as u64,
                            };
                            encode_header(&header, &mut frame);
                            frame[0] = b0;
                            let start = frame.len();
                            frame.extend_from_slice(payload);
                            if let Some(key) = header.mask {
                                apply_mask(&mut frame[start..], key, 0);
                            }
                            // A message in progress, then this frame, then a plain one.
                            for prefix in [&[][..], &[0x01, 0x81, 1, 2, 3, 4, b'h' ^ 1][..]] {
                                let mut wire = prefix.to_vec();
                                if !rules.expect_masked && !prefix.is_empty() {
                                    wire = vec![0x01, 0x01, b'h'];
                                }
                                wire.extend_from_slice(&frame);
                                wire.extend(if rules.expect_masked {
                                    masked_frame(OpCode::Binary, true, b"z")
                                } else {
                                    vec![0x82, 0x01, b'z']
                                });
                                let whole = read_all(&wire, rules, limit, true);
                                let bytewise = read_all(&wire, rules, limit, false);
                                assert_eq!(whole, bytewise, "{wire:02x?}");
                                compared += 1;
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(compared, 3 * 2 * 11 * 2 * 8 * 2);
    }

    #[test]
    fn parses_a_burst_of_frames_from_one_buffer() {
        let mut wire = masked_frame(OpCode::Text, true, b"one");
        wire.extend(masked_frame(OpCode::Ping, true, b"p"));
        wire.extend(masked_frame(OpCode::Binary, false, b"tw"));
        wire.extend(masked_frame(OpCode::Pong, true, b""));
        wire.extend(masked_frame(OpCode::Continuation, true, b"o"));
        wire.extend(masked_frame(OpCode::Close, true, &[0x03, 0xe8]));
        let ev = events(&wire).unwrap();
        assert!(matches!(&ev[0], Event::Message(Message::Text(t)) if t == "one"));
        assert!(matches!(&ev[1], Event::Ping(p) if p == "p"));
        assert!(matches!(&ev[2], Event::Pong(p) if p.is_empty()));
        assert!(matches!(&ev[3], Event::Message(Message::Binary(b)) if b == "two"));
        assert!(matches!(&ev[4], Event::Close(Some(f)) if f.code.as_u16() == 1000));
    }

    #[test]
    fn invalid_utf8_fails_before_the_frame_has_fully_arrived() {
        let mut payload = b"valid start ".to_vec();
        payload.extend_from_slice(b"\xed\xa0\x80");
        payload.extend_from_slice(&[b'x'; 100]);
        let wire = masked_frame(OpCode::Text, true, &payload);
        // Only the header and the first 16 payload bytes have arrived.
        let mut r = Reader::with_buffered(BytesMut::from(&wire[..6 + 16]));
        assert_eq!(
            r.next_event(SERVER, Limit::new(1 << 20), None).unwrap_err(),
            ProtocolError::InvalidUtf8
        );
    }

    #[test]
    fn a_frame_arriving_one_byte_at_a_time_yields_the_same_message() {
        let text = "κόσμε and more ✓";
        let wire = masked_frame(OpCode::Text, true, text.as_bytes());
        let mut r = Reader::default();
        let mut got = None;
        for &b in &wire {
            r.buf.extend_from_slice(&[b]);
            if let Some(e) = r.next_event(SERVER, Limit::new(1 << 20), None).unwrap() {
                got = Some(e);
            }
        }
        assert!(matches!(got, Some(Event::Message(Message::Text(t))) if t == text));
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn message_limit_is_enforced_from_the_header() {
        let mut r =
            Reader::with_buffered(BytesMut::from(&[0x82, 0xfe, 0x01, 0x00, 1, 2, 3, 4][..]));
        assert_eq!(
            r.next_event(SERVER, Limit::new(255), None).unwrap_err(),
            ProtocolError::MessageTooLarge {
                size: 256,
                limit: 255
            }
        );
    }

    #[test]
    fn read_size_grows_while_reads_fill_and_falls_back_when_they_do_not() {
        let chunk = 8 << 10;
        let mut r = Reader::default();
        r.adapt_read_size(chunk, chunk, chunk);
        assert_eq!(r.read_size as usize, 2 * chunk);
        r.adapt_read_size(2 * chunk, 2 * chunk, chunk);
        assert_eq!(r.read_size as usize, 4 * chunk);
        // Capped at 256 KiB.
        r.adapt_read_size(LARGE_READ, LARGE_READ, chunk);
        r.adapt_read_size(LARGE_READ * 2, LARGE_READ * 2, chunk);
        assert_eq!(r.read_size as usize, LARGE_READ);
        // A read that is not far from full keeps the size; a small one halves it.
        r.adapt_read_size(LARGE_READ / 2, LARGE_READ, chunk);
        assert_eq!(r.read_size as usize, LARGE_READ);
        r.adapt_read_size(100, LARGE_READ, chunk);
        assert_eq!(r.read_size as usize, LARGE_READ / 2);
        for _ in 0..8 {
            r.adapt_read_size(100, chunk, chunk);
        }
        assert_eq!(r.read_size, 0, "back to the usual sizing");
    }

    #[test]
    fn complete_frame_detection_matches_parsing() {
        let wire = masked_frame(OpCode::Binary, true, &[7; 300]);
        for cut in 0..=wire.len() {
            let r = Reader::with_buffered(BytesMut::from(&wire[..cut]));
            assert_eq!(r.has_complete_frame(), cut == wire.len(), "cut {cut}");
        }
    }
}
