//! The load generator's HTTP/2 transport: a minimal cleartext HTTP/2 client of its own, one
//! connection per WebSocket, opened with an extended CONNECT (RFC 8441), so every socket has
//! its own TCP connection like its HTTP/1.1 counterpart and the two paths differ only in the
//! framing between the WebSocket and TCP. The WebSocket frames themselves are still the load
//! generator's own (`wire.rs`), written into the [`Stream`] this module hands back.
//!
//! Why not hyper's client: its upgraded stream has no vectored write, so the load generator's
//! one `writev` of a 16-message burst left as 16 DATA frames in 16 writes, and the server read
//! the burst in pieces. Here a write, vectored or not, leaves as one system call: the burst cut
//! into DATA frames no larger than the server allows, headers and payloads gathered.
//!
//! What it speaks (RFC 9113): the preface and SETTINGS (no push, a 16 MiB window per stream
//! and for the connection, credit returned as the reader consumes data), the server's SETTINGS
//! (acknowledged; `SETTINGS_ENABLE_CONNECT_PROTOCOL` required before the CONNECT),
//! PING (answered), `WINDOW_UPDATE` (both send windows tracked; a writer out of window reads
//! the connection's control frames before it writes more), padded DATA (padding stripped),
//! `RST_STREAM` and `GOAWAY` with an error (a clear error). The request's header block is HPACK
//! literals without indexing; of the response only `:status` is decoded (indexed, or a literal
//! with its value raw or Huffman-coded), and it must be `200`.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_util::{StreamExt as _, TryStreamExt as _};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::Failure;

/// How long opening all connections may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(120);

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Every frame starts with 9 bytes: length (24 bits), type, flags, stream (31 bits).
const HEAD_LEN: usize = 9;

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PUSH_PROMISE: u8 = 0x5;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;

const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

const SETTINGS_ENABLE_PUSH: u16 = 0x2;
const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;
const SETTINGS_ENABLE_CONNECT_PROTOCOL: u16 = 0x8;

/// The one stream of each connection: the WebSocket.
const STREAM: u32 = 1;
/// The initial flow-control window of RFC 9113, before any SETTINGS or `WINDOW_UPDATE`.
const DEFAULT_WINDOW: i64 = 65_535;
const MAX_WINDOW: i64 = (1 << 31) - 1;
/// The protocol's default largest frame payload: what browsers accept, and what we accept
/// unless told otherwise. Frames other than DATA may never be larger.
pub(crate) const DEFAULT_MAX_FRAME: u32 = 16 << 10;
const MAX_RECV_FRAME: usize = DEFAULT_MAX_FRAME as usize;
/// What we let the server send ahead, per stream and for the connection: far more than any
/// cell has in flight, so the server never waits for credit.
const RECV_WINDOW: u32 = 16 << 20;
/// The largest DATA frame we send, whatever the server allows: bounds the copy of a frame
/// a short write leaves half sent.
const MAX_SEND_FRAME: usize = 1 << 20;
/// At most this many buffers per `writev` (Linux allows 1024).
const MAX_IOV: usize = 128;
/// Bytes read from the socket at a time.
const READ_BUF: usize = 256 << 10;

fn protocol(what: impl Into<String>) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("HTTP/2: {}", what.into()),
    )
}

/// A frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    len: usize,
    kind: u8,
    flags: u8,
    stream: u32,
}

impl Head {
    fn parse(b: &[u8; HEAD_LEN]) -> Self {
        Self {
            len: (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]),
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }

    /// `len` must be below 2^24 (every frame we send is).
    fn encode(self) -> [u8; HEAD_LEN] {
        let len = u32::try_from(self.len).unwrap_or(u32::MAX).to_be_bytes();
        let s = self.stream.to_be_bytes();
        [
            len[1], len[2], len[3], self.kind, self.flags, s[0], s[1], s[2], s[3],
        ]
    }
}

/// Appends a whole frame to `out`.
fn put_frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let head = Head {
        len: payload.len(),
        kind,
        flags,
        stream,
    };
    out.extend_from_slice(&head.encode());
    out.extend_from_slice(payload);
}

fn put_window_update(out: &mut Vec<u8>, stream: u32, increment: u32) {
    put_frame(out, WINDOW_UPDATE, 0, stream, &increment.to_be_bytes());
}

/// HPACK (RFC 7541 5.1): appends `value` as an integer with an `n`-bit prefix, the bits above
/// the prefix in the first byte set to `high`.
fn put_int(out: &mut Vec<u8>, high: u8, n: u32, mut value: usize) {
    let max = (1_usize << n) - 1;
    if value < max {
        out.push(high | u8::try_from(value).unwrap_or(0));
        return;
    }
    out.push(high | u8::try_from(max).unwrap_or(0));
    value -= max;
    while value >= 0x80 {
        out.push(0x80 | u8::try_from(value & 0x7f).unwrap_or(0));
        value >>= 7;
    }
    out.push(u8::try_from(value).unwrap_or(0));
}

/// HPACK: reads an integer with an `n`-bit prefix at `*at`, advancing `*at`.
fn int(block: &[u8], at: &mut usize, n: u32) -> Result<usize, String> {
    let max = (1_usize << n) - 1;
    let first = *block.get(*at).ok_or("header block cut short")?;
    *at += 1;
    let mut value = usize::from(first) & max;
    if value < max {
        return Ok(value);
    }
    for shift in (0..28).step_by(7) {
        let b = *block.get(*at).ok_or("header block cut short")?;
        *at += 1;
        value += usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("HPACK integer too long".into())
}

/// HPACK: reads a string literal at `*at` (decoding Huffman only for digits, all a status
/// needs).
fn string(block: &[u8], at: &mut usize) -> Result<Vec<u8>, String> {
    let huffman = block.get(*at).is_some_and(|b| b & 0x80 != 0);
    let len = int(block, at, 7)?;
    let raw = block.get(*at..*at + len).ok_or("header block cut short")?;
    *at += len;
    if huffman {
        huffman_digits(raw)
    } else {
        Ok(raw.to_vec())
    }
}

/// Decodes a Huffman-coded string of decimal digits (RFC 7541 appendix B: `0`-`2` are
/// `00000`-`00010`, `3`-`9` are `011001`-`011111`), padded with at most 7 one bits.
fn huffman_digits(raw: &[u8]) -> Result<Vec<u8>, String> {
    let bits = raw.len() * 8;
    let bit = |i: usize| (raw[i / 8] >> (7 - i % 8)) & 1;
    let take = |from: usize, n: usize| (from..from + n).fold(0_u8, |v, i| v << 1 | bit(i));
    let mut out = Vec::new();
    let mut i = 0;
    while i < bits {
        let rest = bits - i;
        if rest < 8 && take(i, rest) == (1 << rest) - 1 {
            break; // the end-of-string padding
        }
        if rest < 5 {
            return Err("bad Huffman padding".into());
        }
        let five = take(i, 5);
        if five <= 2 {
            out.push(b'0' + five);
            i += 5;
        } else if rest >= 6 && (0x19..=0x1f).contains(&take(i, 6)) {
            out.push(b'3' + take(i, 6) - 0x19);
            i += 6;
        } else {
            return Err("Huffman-coded value is not all digits".into());
        }
    }
    Ok(out)
}

/// The request's header block: each field a literal without indexing, with a literal name.
fn request_block(authority: &str, path: &str) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "CONNECT"),
        (":protocol", "websocket"),
        (":scheme", "http"),
        (":path", path),
        (":authority", authority),
        ("sec-websocket-version", "13"),
    ] {
        block.push(0x00);
        put_int(&mut block, 0, 7, name.len());
        block.extend_from_slice(name.as_bytes());
        put_int(&mut block, 0, 7, value.len());
        block.extend_from_slice(value.as_bytes());
    }
    block
}

/// The `:status` of a response header block, which must be its first field.
fn status(block: &[u8]) -> Result<u16, String> {
    /// The static table's `:status` entries, indices 8 to 14.
    const STATIC: [u16; 7] = [200, 204, 206, 304, 400, 404, 500];
    let from_static = |index: usize| {
        index
            .checked_sub(8)
            .and_then(|i| STATIC.get(i).copied())
            .ok_or_else(|| format!("first response field is not :status (index {index})"))
    };
    let mut at = 0;
    // Dynamic table size updates may come first.
    while block.get(at).is_some_and(|b| b & 0xe0 == 0x20) {
        int(block, &mut at, 5)?;
    }
    let first = *block.get(at).ok_or("empty response header block")?;
    if first & 0x80 != 0 {
        return from_static(int(block, &mut at, 7)?);
    }
    // A literal: with incremental indexing (01), without indexing (0000) or never indexed
    // (0001).
    let prefix = if first & 0xc0 == 0x40 { 6 } else { 4 };
    if first & 0xe0 == 0x20 || (prefix == 4 && first & 0xe0 != 0) {
        return Err(format!("unexpected HPACK representation {first:#04x}"));
    }
    match int(block, &mut at, prefix)? {
        0 => {
            let name = string(block, &mut at)?;
            if name != b":status" {
                return Err("first response field is not :status".into());
            }
        }
        index => {
            from_static(index)?;
        }
    }
    let value = string(block, &mut at)?;
    std::str::from_utf8(&value)
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("bad :status {:?}", String::from_utf8_lossy(&value)))
}

/// What the next frame in the read buffer turned out to be.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Not a whole frame (or DATA frame header) buffered yet.
    NeedMore,
    /// A control frame, handled.
    Control,
    /// A DATA frame follows and the caller asked to stop before it (its header is unread).
    DataAhead,
    /// A DATA frame's header was read: its payload is now `data_left`.
    Data,
    /// The response's whole header block is in `block`.
    Headers { end_stream: bool },
}

/// A WebSocket's HTTP/2 stream over its own connection: reads yield the DATA the server
/// sent on stream 1; writes leave as DATA frames.
///
/// A writer out of send window reads the connection's control frames itself, but stops at
/// DATA that the reader has not consumed yet: as with any HTTP/2 stream, someone must read
/// for the writer to get credit back (the load generator polls both on one task).
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent protocol states, each one flag"
)]
pub(crate) struct Stream<T = TcpStream> {
    io: T,
    rbuf: Box<[u8]>,
    rstart: usize,
    rend: usize,
    /// Payload bytes of the current DATA frame not yet handed to the reader.
    data_left: usize,
    /// Padding bytes of the current DATA frame still to skip.
    pad_left: usize,
    /// The current DATA frame ends the server's side of the stream.
    end_after: bool,
    /// The server ended the stream and every byte before has been read.
    ended: bool,
    /// Header block fragments of a HEADERS frame still waiting for its `CONTINUATION`.
    block: Vec<u8>,
    in_block: bool,
    /// Bytes to write before anything else: control frames, and the rest of a frame a short
    /// write left half sent.
    out: Vec<u8>,
    out_at: usize,
    /// Consumed bytes not yet credited back with `WINDOW_UPDATE`.
    unacked: u32,
    /// Send windows, per RFC 9113 6.9 (the stream's may go negative on a SETTINGS change).
    send_conn: i64,
    send_ws: i64,
    peer_initial_window: i64,
    peer_max_frame: usize,
    /// The largest DATA frame we accept (our `SETTINGS_MAX_FRAME_SIZE`).
    max_frame: usize,
    connect_protocol: bool,
    settings_seen: bool,
    /// A writer waiting for send window.
    write_waker: Option<Waker>,
    /// The DATA frame headers of the write under way.
    heads: Vec<[u8; HEAD_LEN]>,
    shut: bool,
}

impl<T> std::fmt::Debug for Stream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("h2::Stream")
            .field("send_conn", &self.send_conn)
            .field("send_ws", &self.send_ws)
            .field("peer_max_frame", &self.peer_max_frame)
            .finish_non_exhaustive()
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Stream<T> {
    fn new(io: T) -> Self {
        Self {
            io,
            rbuf: vec![0; READ_BUF].into_boxed_slice(),
            rstart: 0,
            rend: 0,
            data_left: 0,
            pad_left: 0,
            end_after: false,
            ended: false,
            block: Vec::new(),
            in_block: false,
            out: Vec::new(),
            out_at: 0,
            unacked: 0,
            send_conn: DEFAULT_WINDOW,
            send_ws: DEFAULT_WINDOW,
            peer_initial_window: DEFAULT_WINDOW,
            peer_max_frame: MAX_RECV_FRAME,
            max_frame: MAX_RECV_FRAME,
            connect_protocol: false,
            settings_seen: false,
            write_waker: None,
            heads: Vec::new(),
            shut: false,
        }
    }

    /// Opens stream 1 with an extended CONNECT over `io` and waits for its `200`, accepting
    /// DATA frames of up to `max_frame` bytes (sent in SETTINGS if not the default).
    async fn open(io: T, authority: &str, max_frame: u32) -> io::Result<Self> {
        let mut s = Self::new(io);
        s.max_frame = usize::try_from(max_frame).unwrap_or(MAX_RECV_FRAME);
        s.out.extend_from_slice(PREFACE);
        let mut settings = Vec::new();
        let frames =
            (max_frame != DEFAULT_MAX_FRAME).then_some((SETTINGS_MAX_FRAME_SIZE, max_frame));
        for (id, value) in [
            (SETTINGS_ENABLE_PUSH, 0),
            (SETTINGS_INITIAL_WINDOW_SIZE, RECV_WINDOW),
        ]
        .into_iter()
        .chain(frames)
        {
            settings.extend_from_slice(&id.to_be_bytes());
            settings.extend_from_slice(&value.to_be_bytes());
        }
        put_frame(&mut s.out, SETTINGS, 0, 0, &settings);
        let initial = u32::try_from(DEFAULT_WINDOW).unwrap_or(0);
        put_window_update(&mut s.out, 0, RECV_WINDOW - initial);
        std::future::poll_fn(|cx| s.poll_flush_out(cx)).await?;
        // RFC 8441: no extended CONNECT before the server's SETTINGS allow it.
        while !s.settings_seen {
            s.next_step().await?;
        }
        if !s.connect_protocol {
            return Err(protocol(
                "the server's SETTINGS do not enable the extended CONNECT protocol",
            ));
        }
        let block = request_block(authority, "/");
        put_frame(&mut s.out, HEADERS, END_HEADERS, STREAM, &block);
        std::future::poll_fn(|cx| s.poll_flush_out(cx)).await?;
        loop {
            match s.next_step().await? {
                Step::Headers { end_stream } => {
                    let code = status(&s.block).map_err(protocol)?;
                    if code != 200 {
                        return Err(protocol(format!("extended CONNECT answered {code}")));
                    }
                    if end_stream {
                        return Err(protocol("the server ended the stream with its 200"));
                    }
                    s.block = Vec::new();
                    return Ok(s);
                }
                Step::DataAhead => return Err(protocol("DATA before the response headers")),
                Step::NeedMore | Step::Control | Step::Data => {}
            }
        }
    }

    /// The next step that is not `NeedMore`, reading as needed (stopping before DATA).
    async fn next_step(&mut self) -> io::Result<Step> {
        std::future::poll_fn(|cx| {
            loop {
                match self.step(true)? {
                    Step::NeedMore => {}
                    step => return Poll::Ready(Ok(step)),
                }
                if self.poll_fill(cx)?.is_pending() {
                    // Acknowledgements queued meanwhile go out now.
                    if let Poll::Ready(Err(e)) = self.poll_flush_out(cx) {
                        return Poll::Ready(Err(e));
                    }
                    return Poll::Pending;
                }
            }
        })
        .await
    }

    /// Reads more bytes into the read buffer.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.rstart == self.rend {
            (self.rstart, self.rend) = (0, 0);
        } else if self.rend == self.rbuf.len()
            || self.rbuf.len() - self.rstart < MAX_RECV_FRAME + HEAD_LEN
        {
            self.rbuf.copy_within(self.rstart..self.rend, 0);
            (self.rstart, self.rend) = (0, self.rend - self.rstart);
        }
        if self.rend == self.rbuf.len() {
            return Poll::Ready(Err(protocol("read buffer full")));
        }
        let mut buf = ReadBuf::new(&mut self.rbuf[self.rend..]);
        match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) if buf.filled().is_empty() => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "HTTP/2: the server closed the connection",
            ))),
            Poll::Ready(Ok(())) => {
                self.rend += buf.filled().len();
                Poll::Ready(Ok(()))
            }
        }
    }

    /// Writes the bytes queued in `out`.
    fn poll_flush_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.out_at < self.out.len() {
            match Pin::new(&mut self.io).poll_write(cx, &self.out[self.out_at..]) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.out_at += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            }
        }
        self.out.clear();
        self.out_at = 0;
        Poll::Ready(Ok(()))
    }

    /// Counts `n` bytes of received DATA as consumed, crediting them back once half the
    /// window is used (one `WINDOW_UPDATE` for the stream, one for the connection).
    fn credit(&mut self, n: usize) {
        self.unacked += u32::try_from(n).unwrap_or(u32::MAX);
        if self.unacked >= RECV_WINDOW / 2 {
            put_window_update(&mut self.out, 0, self.unacked);
            put_window_update(&mut self.out, STREAM, self.unacked);
            self.unacked = 0;
        }
    }

    /// Handles the frame at the start of the read buffer, at a frame boundary. With
    /// `stop_at_data`, a DATA frame is left unread.
    fn step(&mut self, stop_at_data: bool) -> io::Result<Step> {
        let buffered = &self.rbuf[self.rstart..self.rend];
        let Some(head) = buffered.first_chunk::<HEAD_LEN>().map(Head::parse) else {
            return Ok(Step::NeedMore);
        };
        let limit = if head.kind == DATA {
            self.max_frame
        } else {
            MAX_RECV_FRAME
        };
        if head.len > limit {
            return Err(protocol(format!("a frame of {} bytes", head.len)));
        }
        if self.in_block && head.kind != CONTINUATION {
            return Err(protocol("a header block without its CONTINUATION"));
        }
        if head.kind == DATA {
            if stop_at_data {
                return Ok(Step::DataAhead);
            }
            if head.stream != STREAM {
                return Err(protocol(format!("DATA on stream {}", head.stream)));
            }
            let padded = head.flags & PADDED != 0;
            let pad = if padded {
                let Some(&pad) = buffered.get(HEAD_LEN) else {
                    return Ok(Step::NeedMore);
                };
                usize::from(pad)
            } else {
                0
            };
            let overhead = usize::from(padded) + pad;
            if overhead > head.len {
                return Err(protocol("DATA padding longer than the frame"));
            }
            self.rstart += HEAD_LEN + usize::from(padded);
            self.data_left = head.len - overhead;
            self.pad_left = pad;
            self.end_after = head.flags & END_STREAM != 0;
            // The padding is consumed as soon as it is skipped: credit it now.
            self.credit(overhead);
            self.settle();
            return Ok(Step::Data);
        }
        let Some(payload) = buffered.get(HEAD_LEN..HEAD_LEN + head.len) else {
            return Ok(Step::NeedMore);
        };
        let payload = payload.to_vec();
        // A frame that fails stays buffered: the next read fails on it again.
        let step = self.control(head, &payload)?;
        self.rstart += HEAD_LEN + head.len;
        Ok(step)
    }

    /// Applies the server's SETTINGS and acknowledges them.
    fn settings(&mut self, payload: &[u8]) -> io::Result<()> {
        if !payload.len().is_multiple_of(6) {
            return Err(protocol("malformed SETTINGS"));
        }
        for setting in payload.chunks_exact(6) {
            let id = u16::from_be_bytes([setting[0], setting[1]]);
            let value = u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]]);
            match id {
                SETTINGS_INITIAL_WINDOW_SIZE => {
                    let value = i64::from(value);
                    if value > MAX_WINDOW {
                        return Err(protocol("SETTINGS_INITIAL_WINDOW_SIZE too large"));
                    }
                    self.send_ws += value - self.peer_initial_window;
                    self.peer_initial_window = value;
                }
                SETTINGS_MAX_FRAME_SIZE => {
                    if !(16 << 10..1 << 24).contains(&value) {
                        return Err(protocol("SETTINGS_MAX_FRAME_SIZE out of range"));
                    }
                    self.peer_max_frame = usize::try_from(value).unwrap_or(MAX_RECV_FRAME);
                }
                SETTINGS_ENABLE_CONNECT_PROTOCOL => self.connect_protocol = value == 1,
                _ => {}
            }
        }
        put_frame(&mut self.out, SETTINGS, ACK, 0, &[]);
        self.settings_seen = true;
        self.wake_writer();
        Ok(())
    }

    /// Handles a whole frame other than DATA.
    fn control(&mut self, head: Head, payload: &[u8]) -> io::Result<Step> {
        let word = |at: usize| {
            payload
                .get(at..at + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        match head.kind {
            SETTINGS if head.flags & ACK == 0 => {
                if head.stream != 0 {
                    return Err(protocol("SETTINGS on a stream"));
                }
                self.settings(payload)?;
            }
            PING if head.flags & ACK == 0 => {
                if payload.len() != 8 {
                    return Err(protocol("a PING not 8 bytes long"));
                }
                put_frame(&mut self.out, PING, ACK, 0, payload);
            }
            WINDOW_UPDATE => {
                let increment = word(0)
                    .filter(|_| payload.len() == 4)
                    .ok_or_else(|| protocol("malformed WINDOW_UPDATE"))?
                    & 0x7fff_ffff;
                if increment == 0 {
                    return Err(protocol("WINDOW_UPDATE of 0"));
                }
                let window = match head.stream {
                    0 => &mut self.send_conn,
                    STREAM => &mut self.send_ws,
                    _ => return Ok(Step::Control),
                };
                *window += i64::from(increment);
                if *window > MAX_WINDOW {
                    return Err(protocol("send window over 2^31 - 1"));
                }
                self.wake_writer();
            }
            HEADERS | CONTINUATION if head.stream == STREAM => {
                let mut fragment = payload;
                if head.kind == HEADERS {
                    let mut skip = 0;
                    let mut pad = 0;
                    if head.flags & PADDED != 0 {
                        pad =
                            usize::from(*payload.first().ok_or_else(|| protocol("empty HEADERS"))?);
                        skip = 1;
                    }
                    if head.flags & PRIORITY != 0 {
                        skip += 5;
                    }
                    fragment = payload
                        .get(skip..payload.len().saturating_sub(pad))
                        .filter(|_| skip + pad <= payload.len())
                        .ok_or_else(|| protocol("HEADERS padding longer than the frame"))?;
                    self.block.clear();
                    self.end_after = head.flags & END_STREAM != 0;
                } else if !self.in_block {
                    return Err(protocol("CONTINUATION without HEADERS"));
                }
                self.block.extend_from_slice(fragment);
                self.in_block = head.flags & END_HEADERS == 0;
                if !self.in_block {
                    let end_stream = self.end_after;
                    self.end_after = false;
                    if end_stream {
                        self.ended = true;
                    }
                    return Ok(Step::Headers { end_stream });
                }
            }
            RST_STREAM if head.stream == STREAM => {
                return Err(protocol(format!(
                    "the server reset the stream (error code {})",
                    word(0).unwrap_or(u32::MAX)
                )));
            }
            GOAWAY => {
                let code = word(4).ok_or_else(|| protocol("malformed GOAWAY"))?;
                if code != 0 {
                    return Err(protocol(format!("GOAWAY with error code {code}")));
                }
            }
            PUSH_PROMISE => return Err(protocol("PUSH_PROMISE with push disabled")),
            // SETTINGS and PING acknowledgements, PRIORITY, frames of other streams and
            // unknown types: nothing to do.
            _ => {}
        }
        Ok(Step::Control)
    }

    fn wake_writer(&mut self) {
        if let Some(waker) = self.write_waker.take() {
            waker.wake();
        }
    }

    /// Skips padding that is buffered, and marks the end of the stream once the frame that
    /// carried `END_STREAM` is consumed.
    fn settle(&mut self) {
        if self.data_left == 0 {
            let skip = self.pad_left.min(self.rend - self.rstart);
            self.rstart += skip;
            self.pad_left -= skip;
            if self.pad_left == 0 && self.end_after {
                self.ended = true;
                self.end_after = false;
            }
        }
    }

    /// Plans the DATA frames for the first `limit` bytes of `bufs`: their headers in
    /// `heads`, each frame no larger than the server allows, all within `MAX_IOV` buffers
    /// (counting `out`'s).
    fn plan(&mut self, bufs: &[IoSlice<'_>], limit: usize) {
        let max_frame = self.peer_max_frame.min(MAX_SEND_FRAME);
        self.heads.clear();
        let mut planned = 0;
        let mut iovs = usize::from(self.out_at < self.out.len());
        let (mut buf_i, mut buf_at) = (0, 0);
        while planned < limit && iovs + 2 <= MAX_IOV {
            // This frame's payload: up to `max_frame` bytes, in as many slices as fit.
            let want = (limit - planned).min(max_frame);
            let (mut pieces, mut len, mut bi, mut ba) = (0, 0, buf_i, buf_at);
            while len < want && iovs + 1 + pieces < MAX_IOV {
                let take = (bufs[bi].len() - ba).min(want - len);
                if take > 0 {
                    pieces += 1;
                    len += take;
                    ba += take;
                }
                if ba == bufs[bi].len() {
                    (bi, ba) = (bi + 1, 0);
                }
            }
            if len == 0 {
                break;
            }
            iovs += 1 + pieces;
            (buf_i, buf_at) = (bi, ba);
            let head = Head {
                len,
                kind: DATA,
                flags: 0,
                stream: STREAM,
            };
            self.heads.push(head.encode());
            planned += len;
        }
    }

    /// After a write of `written` bytes of the planned frames: the payload bytes of the
    /// frames that went out, the rest of a frame cut short copied to `out` (and counted:
    /// it is ours to finish). Charges the send windows.
    fn account(&mut self, bufs: &[IoSlice<'_>], mut written: usize) -> usize {
        let mut accepted = 0;
        for head in &self.heads {
            if written == 0 {
                break;
            }
            let len = Head::parse(head).len;
            if written >= HEAD_LEN + len {
                written -= HEAD_LEN + len;
            } else {
                if written < HEAD_LEN {
                    self.out.extend_from_slice(&head[written..]);
                }
                let sent = written.saturating_sub(HEAD_LEN);
                copy_range(bufs, accepted + sent, accepted + len, &mut self.out);
                written = 0;
            }
            accepted += len;
        }
        let charged = i64::try_from(accepted).unwrap_or(i64::MAX);
        self.send_conn -= charged;
        self.send_ws -= charged;
        accepted
    }

    /// With the send window exhausted: reads and handles control frames (up to the next DATA
    /// frame) until there is window or nothing more to read.
    fn poll_window(&mut self, cx: &mut Context<'_>) -> io::Result<bool> {
        while self.send_conn <= 0 || self.send_ws <= 0 {
            if self.data_left > 0 || self.pad_left > 0 {
                break;
            }
            match self.step(true)? {
                Step::Control | Step::Headers { .. } => {}
                Step::DataAhead | Step::Data => break,
                Step::NeedMore => {
                    if self.poll_fill(cx)?.is_pending() {
                        break;
                    }
                }
            }
        }
        let open = self.send_conn > 0 && self.send_ws > 0;
        if !open {
            self.write_waker = Some(cx.waker().clone());
        }
        Ok(open)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for Stream<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let start = buf.filled().len();
        loop {
            if this.data_left > 0 && this.rstart < this.rend {
                let n = this
                    .data_left
                    .min(this.rend - this.rstart)
                    .min(buf.remaining());
                buf.put_slice(&this.rbuf[this.rstart..this.rstart + n]);
                this.rstart += n;
                this.data_left -= n;
                this.credit(n);
                this.settle();
                if buf.remaining() == 0 {
                    break;
                }
                continue;
            }
            if this.pad_left > 0 && this.rstart < this.rend {
                this.settle();
                continue;
            }
            if this.ended {
                break;
            }
            let step = if this.data_left > 0 || this.pad_left > 0 {
                Step::NeedMore
            } else {
                match this.step(false) {
                    Ok(step) => step,
                    // The data before the error first.
                    Err(_) if buf.filled().len() > start => break,
                    Err(e) => return Poll::Ready(Err(e)),
                }
            };
            if step != Step::NeedMore {
                continue;
            }
            // Return what this read has gathered rather than wait for more.
            if buf.filled().len() > start {
                break;
            }
            if let Poll::Ready(Err(e)) = this.poll_flush_out(cx) {
                return Poll::Ready(Err(e));
            }
            match this.poll_fill(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
        }
        // Acknowledgements and credit go out now; if the socket is full, the next read or
        // write sends them.
        if let Poll::Ready(Err(e)) = this.poll_flush_out(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(()))
    }
}

/// Fills `slices` with each planned frame's header and its payload's pieces of `bufs`;
/// returns how many it used.
fn gather<'a>(
    heads: &'a [[u8; HEAD_LEN]],
    bufs: &'a [IoSlice<'_>],
    slices: &mut [IoSlice<'a>],
) -> usize {
    let mut n = 0;
    let (mut bi, mut ba) = (0, 0);
    for head in heads {
        slices[n] = IoSlice::new(head);
        n += 1;
        let mut need = Head::parse(head).len;
        while need > 0 {
            let take = (bufs[bi].len() - ba).min(need);
            if take > 0 {
                slices[n] = IoSlice::new(&bufs[bi][ba..ba + take]);
                n += 1;
            }
            need -= take;
            ba += take;
            if ba == bufs[bi].len() {
                (bi, ba) = (bi + 1, 0);
            }
        }
    }
    n
}

/// Appends bytes `from..to` of the concatenation of `bufs` to `out`.
fn copy_range(bufs: &[IoSlice<'_>], mut from: usize, mut to: usize, out: &mut Vec<u8>) {
    for buf in bufs {
        if to == 0 {
            break;
        }
        let take = buf.len().min(to);
        if from < take {
            out.extend_from_slice(&buf[from..take]);
        }
        from = from.saturating_sub(buf.len());
        to -= take;
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Stream<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    /// Frames as much of `bufs` as the send windows allow into DATA frames and writes them,
    /// after whatever `out` holds, with one `writev`.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Poll::Ready(Ok(0));
        }
        if this.shut {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        loop {
            if !this.poll_window(cx)? {
                // Control frames read meanwhile (acknowledgements) still go out.
                if let Poll::Ready(Err(e)) = this.poll_flush_out(cx) {
                    return Poll::Ready(Err(e));
                }
                return Poll::Pending;
            }
            let window = usize::try_from(this.send_conn.min(this.send_ws)).unwrap_or(0);
            this.plan(bufs, total.min(window));
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let mut n = 0;
            if this.out_at < this.out.len() {
                slices[0] = IoSlice::new(&this.out[this.out_at..]);
                n = 1;
            }
            n += gather(&this.heads, bufs, &mut slices[n..]);
            let mut written = match Pin::new(&mut this.io).poll_write_vectored(cx, &slices[..n]) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(written)) => written,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            };
            let queued = this.out.len() - this.out_at;
            if written < queued {
                this.out_at += written;
                continue;
            }
            written -= queued;
            this.out.clear();
            this.out_at = 0;
            let accepted = this.account(bufs, written);
            if accepted > 0 {
                return Poll::Ready(Ok(accepted));
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.poll_flush_out(cx)?.is_pending() {
            return Poll::Pending;
        }
        Pin::new(&mut this.io).poll_flush(cx)
    }

    /// Ends our side of the stream (an empty DATA frame with `END_STREAM`).
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.shut {
            this.shut = true;
            put_frame(&mut this.out, DATA, END_STREAM, STREAM, &[]);
        }
        if this.poll_flush_out(cx)?.is_pending() {
            return Poll::Pending;
        }
        Pin::new(&mut this.io).poll_flush(cx)
    }
}

/// Opens one WebSocket: TCP (`TCP_NODELAY`, closed with a reset like the HTTP/1.1
/// connections), then the HTTP/2 connection and its extended CONNECT.
async fn connect(addr: SocketAddr, max_frame: u32) -> Result<(Stream, Vec<u8>), Failure> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    tcp.set_zero_linger()?;
    let stream = Stream::open(tcp, &addr.to_string(), max_frame).await?;
    Ok((stream, Vec::new()))
}

/// Opens `count` sockets over HTTP/2, `concurrency` at a time, each accepting DATA frames
/// of up to `max_frame` bytes.
pub(crate) async fn connect_all(
    addr: SocketAddr,
    count: usize,
    concurrency: usize,
    max_frame: u32,
) -> Result<Vec<(Stream, Vec<u8>)>, Failure> {
    let all = futures_util::stream::iter(0..count)
        .map(|_| connect(addr, max_frame))
        .buffer_unordered(concurrency)
        .try_collect();
    tokio::time::timeout(CONNECT_TIMEOUT, all)
        .await
        .map_err(|_| {
            Failure::new(format!(
                "opening {count} HTTP/2 connections took over {CONNECT_TIMEOUT:?}"
            ))
        })?
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// A transport that plays back the server's bytes and records what the client writes,
    /// at most `limit` bytes per write, each call counted.
    #[derive(Debug, Default)]
    struct Recorder {
        input: Vec<u8>,
        at: usize,
        written: Vec<u8>,
        writes: usize,
        limit: usize,
    }

    impl Recorder {
        fn new(input: Vec<u8>) -> Self {
            Self {
                input,
                limit: usize::MAX,
                ..Self::default()
            }
        }
    }

    impl AsyncRead for Recorder {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            let n = buf.remaining().min(this.input.len() - this.at);
            buf.put_slice(&this.input[this.at..this.at + n]);
            this.at += n;
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.poll_write_vectored(cx, &[IoSlice::new(buf)])
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            let mut n = 0;
            for buf in bufs {
                let take = buf.len().min(this.limit - n);
                this.written.extend_from_slice(&buf[..take]);
                n += take;
            }
            this.writes += 1;
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        put_frame(&mut out, kind, flags, stream, payload);
        out
    }

    fn settings(pairs: &[(u16, u32)]) -> Vec<u8> {
        let mut payload = Vec::new();
        for (id, value) in pairs {
            payload.extend_from_slice(&id.to_be_bytes());
            payload.extend_from_slice(&value.to_be_bytes());
        }
        frame(SETTINGS, 0, 0, &payload)
    }

    /// The server's opening: SETTINGS allowing the extended CONNECT (and `extra`), then `200`.
    fn opening(extra: &[(u16, u32)]) -> Vec<u8> {
        let mut pairs = vec![(SETTINGS_ENABLE_CONNECT_PROTOCOL, 1)];
        pairs.extend_from_slice(extra);
        let mut input = settings(&pairs);
        input.extend(frame(SETTINGS, ACK, 0, &[]));
        input.extend(frame(HEADERS, END_HEADERS, STREAM, &[0x88]));
        input
    }

    /// Splits bytes into frames.
    fn frames(mut bytes: &[u8]) -> Vec<(Head, Vec<u8>)> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let head = Head::parse(bytes.first_chunk().expect("a frame header"));
            let end = HEAD_LEN + head.len;
            out.push((head, bytes[HEAD_LEN..end].to_vec()));
            bytes = &bytes[end..];
        }
        out
    }

    /// The client's frames after its preface.
    fn sent(io: &Recorder) -> Vec<(Head, Vec<u8>)> {
        assert_eq!(&io.written[..PREFACE.len()], PREFACE);
        frames(&io.written[PREFACE.len()..])
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| u8::try_from(i * 7 % 251).unwrap()).collect()
    }

    #[test]
    fn frame_header_round_trip() {
        let head = Head {
            len: 0x01_02_03,
            kind: WINDOW_UPDATE,
            flags: 0x25,
            stream: 0x7fff_fffe,
        };
        assert_eq!(Head::parse(&head.encode()), head);
        // The reserved bit of the stream identifier is ignored.
        let mut bytes = head.encode();
        bytes[5] |= 0x80;
        assert_eq!(Head::parse(&bytes).stream, 0x7fff_fffe);
    }

    #[test]
    fn hpack_integers() {
        // RFC 7541 C.1.1 to C.1.3.
        for (value, n, bytes) in [
            (10, 5, &[10][..]),
            (1337, 5, &[31, 154, 10][..]),
            (42, 8, &[42][..]),
            (127, 7, &[127, 0][..]),
        ] {
            let mut out = Vec::new();
            put_int(&mut out, 0, n, value);
            assert_eq!(out, bytes, "{value} with a {n}-bit prefix");
            let mut at = 0;
            assert_eq!(int(&out, &mut at, n), Ok(value));
            assert_eq!(at, out.len());
        }
        assert!(int(&[31, 154], &mut 0, 5).is_err(), "cut short");
    }

    #[test]
    fn request_is_literals_without_indexing() {
        let block = request_block("example:80", "/chat");
        let mut at = 0;
        let mut fields = Vec::new();
        while at < block.len() {
            assert_eq!(block[at], 0x00, "literal without indexing, new name");
            at += 1;
            let name = string(&block, &mut at).unwrap();
            let value = string(&block, &mut at).unwrap();
            fields.push((
                String::from_utf8(name).unwrap(),
                String::from_utf8(value).unwrap(),
            ));
        }
        let expected = [
            (":method", "CONNECT"),
            (":protocol", "websocket"),
            (":scheme", "http"),
            (":path", "/chat"),
            (":authority", "example:80"),
            ("sec-websocket-version", "13"),
        ];
        let fields: Vec<(&str, &str)> = fields
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        assert_eq!(fields, expected);
    }

    #[test]
    fn response_status() {
        let mut new_name = vec![0x00, 7];
        new_name.extend_from_slice(b":status");
        new_name.extend_from_slice(&[3, b'1', b'0', b'1']);
        for (block, code) in [
            (&[0x88][..], 200),
            (&[0x8d][..], 404),
            (&[0x20, 0x88][..], 200), // after a dynamic table size update
            (&[0x08, 3, b'4', b'0', b'4'][..], 404), // without indexing, indexed name
            (&[0x18, 3, b'2', b'0', b'0'][..], 200), // never indexed
            (&[0x48, 3, b'3', b'0', b'2'][..], 302), // incremental indexing
            (&[0x48, 0x82, 0x64, 0x02][..], 302), // Huffman "302"
            (&[0x48, 0x82, 0x10, 0x01][..], 200), // Huffman "200", one bit of padding
            (&[0x48, 0x83, 0x68, 0x0d, 0x7f][..], 404), // Huffman "404", seven bits
            (&new_name[..], 101),
        ] {
            assert_eq!(status(block), Ok(code), "{block:02x?}");
        }
        for block in [
            &[][..],
            &[0x82][..],                   // :method GET
            &[0x08, 5, b'2'][..],          // cut short
            &[0x48, 0x81, 0x1f][..],       // Huffman "a"
            &[0x48, 0x82, 0x10, 0x00][..], // padding of zeros
            &[0x48, 3, b'2', b'x', b'0'][..],
        ] {
            assert!(status(block).is_err(), "{block:02x?}");
        }
    }

    #[tokio::test]
    async fn handshake_then_data_within_windows() {
        // A 100-byte stream window: the 250-byte write waits for a WINDOW_UPDATE, which comes
        // after a PING that must be answered.
        let mut input = opening(&[(SETTINGS_INITIAL_WINDOW_SIZE, 100)]);
        input.extend(frame(PING, 0, 0, b"12345678"));
        input.extend(frame(WINDOW_UPDATE, 0, STREAM, &150_u32.to_be_bytes()));
        // The echo: padded, split, then ended.
        let echo = pattern(250);
        let mut padded = vec![5];
        padded.extend_from_slice(&echo[..100]);
        padded.extend_from_slice(&[0; 5]);
        input.extend(frame(DATA, PADDED, STREAM, &padded));
        input.extend(frame(DATA, 0, STREAM, &echo[100..120]));
        input.extend(frame(DATA, END_STREAM, STREAM, &echo[120..]));

        let mut s = Stream::open(Recorder::new(input), "example:80", DEFAULT_MAX_FRAME)
            .await
            .unwrap();
        s.write_all(&echo).await.unwrap();
        let mut back = Vec::new();
        s.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, echo);

        let sent = sent(&s.io);
        let kinds: Vec<(u8, u8, u32, usize)> = sent
            .iter()
            .map(|(h, _)| (h.kind, h.flags, h.stream, h.len))
            .collect();
        assert_eq!(
            kinds,
            [
                (SETTINGS, 0, 0, 12),
                (WINDOW_UPDATE, 0, 0, 4),
                (SETTINGS, ACK, 0, 0),
                (
                    HEADERS,
                    END_HEADERS,
                    STREAM,
                    request_block("example:80", "/").len()
                ),
                (DATA, 0, STREAM, 100),
                (PING, ACK, 0, 8),
                (DATA, 0, STREAM, 150),
            ]
        );
        assert_eq!(
            sent[0].1,
            [0, 2, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0],
            "no push, a 16 MiB stream window"
        );
        assert_eq!(sent[1].1, (RECV_WINDOW - 65_535).to_be_bytes());
        assert_eq!(sent[5].1, b"12345678");
        assert_eq!([&sent[4].1[..], &sent[6].1[..]].concat(), echo);
    }

    #[tokio::test]
    async fn a_burst_leaves_in_one_write() {
        let mut input = opening(&[(SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20)]);
        input.extend(frame(WINDOW_UPDATE, 0, 0, &(1_u32 << 20).to_be_bytes()));
        let mut s = Stream::open(Recorder::new(input), "a", DEFAULT_MAX_FRAME)
            .await
            .unwrap();
        // Consume the WINDOW_UPDATE, as a reader would have by then.
        assert!(
            s.poll_window(&mut Context::from_waker(Waker::noop()))
                .unwrap()
        );
        while s.step(true).unwrap() == Step::Control {}
        let data = pattern(25_010);
        let bufs = [
            IoSlice::new(&data[..5000]),
            IoSlice::new(&data[5000..25_000]),
            IoSlice::new(&[]),
            IoSlice::new(&data[25_000..]),
        ];
        let before = (s.io.writes, s.io.written.len());
        assert_eq!(s.write_vectored(&bufs).await.unwrap(), data.len());
        assert_eq!(s.io.writes, before.0 + 1, "one system call");
        let frames = frames(&s.io.written[before.1..]);
        let lens: Vec<usize> = frames.iter().map(|(h, _)| h.len).collect();
        assert_eq!(
            lens,
            [16_384, 25_010 - 16_384],
            "DATA frames of at most 16 KiB"
        );
        let payload: Vec<u8> = frames.iter().flat_map(|(_, p)| p.clone()).collect();
        assert_eq!(payload, data);
    }

    #[tokio::test]
    async fn short_writes_finish_their_frame() {
        let mut input = opening(&[(SETTINGS_MAX_FRAME_SIZE, 20_000)]);
        input.extend(frame(PING, 0, 0, b"abcdefgh"));
        let mut s = Stream::open(Recorder::new(input), "a", DEFAULT_MAX_FRAME)
            .await
            .unwrap();
        s.io.limit = 7; // cuts headers and payloads alike
        let data = pattern(50_000);
        let mut at = 0;
        while at < data.len() {
            let bufs = [IoSlice::new(&data[at..(at + 12_345).min(data.len())])];
            at += s.write_vectored(&bufs).await.unwrap();
        }
        // The PING is read (and answered) once the reader runs; then the input ends.
        let e = s.read(&mut [0; 1]).await.unwrap_err();
        assert!(e.to_string().contains("closed the connection"), "{e}");
        s.flush().await.unwrap();
        let mut payload = Vec::new();
        let mut pings = 0;
        for (head, body) in sent(&s.io) {
            match head.kind {
                DATA => {
                    assert!(head.len <= 20_000);
                    payload.extend(body);
                }
                PING => {
                    assert_eq!((head.flags, &body[..]), (ACK, &b"abcdefgh"[..]));
                    pings += 1;
                }
                _ => {}
            }
        }
        assert_eq!(payload, data);
        assert_eq!(pings, 1);
    }

    #[tokio::test]
    async fn credit_is_returned_as_data_is_read() {
        let mut input = opening(&[]);
        let chunk = pattern(16 << 10);
        let frames_in = (RECV_WINDOW as usize / 2).div_ceil(chunk.len()) + 1;
        for _ in 0..frames_in {
            input.extend(frame(DATA, 0, STREAM, &chunk));
        }
        input.extend(frame(DATA, END_STREAM, STREAM, &[]));
        let mut s = Stream::open(Recorder::new(input), "a", DEFAULT_MAX_FRAME)
            .await
            .unwrap();
        let mut total = 0;
        let mut buf = vec![0; 100_000];
        loop {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            total += n;
        }
        assert_eq!(total, frames_in * chunk.len());
        let updates: Vec<(u32, u32)> = sent(&s.io)
            .iter()
            .skip(4) // SETTINGS, WINDOW_UPDATE, SETTINGS ack, HEADERS
            .filter(|(h, _)| h.kind == WINDOW_UPDATE)
            .map(|(h, p)| (h.stream, u32::from_be_bytes(p[..4].try_into().unwrap())))
            .collect();
        assert_eq!(updates.len(), 2, "{updates:?}");
        assert_eq!(updates[0].0, 0);
        assert_eq!(updates[1].0, STREAM);
        assert!(updates.iter().all(|&(_, n)| n >= RECV_WINDOW / 2));
    }

    #[tokio::test]
    async fn larger_frames_only_when_advertised() {
        let big = pattern(20_000);
        let mut input = opening(&[]);
        input.extend(frame(DATA, 0, STREAM, &big));
        let mut s = Stream::open(Recorder::new(input.clone()), "a", 1 << 20)
            .await
            .unwrap();
        let mut back = vec![0; big.len()];
        s.read_exact(&mut back).await.unwrap();
        assert_eq!(back, big);
        let settings = &sent(&s.io)[0];
        assert_eq!(settings.0.kind, SETTINGS);
        assert_eq!(
            &settings.1[12..],
            [0, 5, 0, 0x10, 0, 0],
            "SETTINGS_MAX_FRAME_SIZE 1 MiB"
        );

        let mut s = Stream::open(Recorder::new(input), "a", DEFAULT_MAX_FRAME)
            .await
            .unwrap();
        assert_eq!(sent(&s.io)[0].0.len, 12, "the default is not sent");
        let e = s.read(&mut back).await.unwrap_err();
        assert!(e.to_string().contains("a frame of 20000 bytes"), "{e}");
    }

    #[tokio::test]
    async fn refusals_are_errors() {
        let no_connect = [settings(&[]), frame(HEADERS, END_HEADERS, STREAM, &[0x88])].concat();
        let mut not_found = settings(&[(SETTINGS_ENABLE_CONNECT_PROTOCOL, 1)]);
        not_found.extend(frame(HEADERS, END_HEADERS | END_STREAM, STREAM, &[0x8d]));
        let mut reset = settings(&[(SETTINGS_ENABLE_CONNECT_PROTOCOL, 1)]);
        reset.extend(frame(RST_STREAM, 0, STREAM, &8_u32.to_be_bytes()));
        let mut too_big = settings(&[(SETTINGS_ENABLE_CONNECT_PROTOCOL, 1)]);
        too_big.extend(frame(PING, 0, 0, &vec![0; MAX_RECV_FRAME + 1]));
        for (input, says) in [
            (no_connect, "do not enable the extended CONNECT"),
            (not_found, "answered 404"),
            (reset, "reset the stream (error code 8)"),
            (too_big, "a frame of 16385 bytes"),
            (Vec::new(), "closed the connection"),
        ] {
            let e = Stream::open(Recorder::new(input), "a", DEFAULT_MAX_FRAME)
                .await
                .unwrap_err();
            assert!(e.to_string().contains(says), "{e} should say {says:?}");
        }
    }

    #[tokio::test]
    async fn continuation_and_reset_after_open() {
        let mut input = settings(&[(SETTINGS_ENABLE_CONNECT_PROTOCOL, 1)]);
        input.extend(frame(HEADERS, PRIORITY, STREAM, &[0, 0, 0, 0, 16]));
        input.extend(frame(CONTINUATION, END_HEADERS, STREAM, &[0x88]));
        input.extend(frame(DATA, 0, STREAM, b"hi"));
        input.extend(frame(RST_STREAM, 0, STREAM, &2_u32.to_be_bytes()));
        let mut s = Stream::open(Recorder::new(input), "a", DEFAULT_MAX_FRAME)
            .await
            .unwrap();
        let mut buf = [0; 8];
        assert_eq!(s.read(&mut buf).await.unwrap(), 2);
        assert_eq!(&buf[..2], b"hi");
        let e = s.read(&mut buf).await.unwrap_err();
        assert!(e.to_string().contains("error code 2"), "{e}");
    }

    /// Over real sockets against tower-ws (hyper-util's auto builder, hyper's default
    /// windows): every echo checked, messages up to twice the server's 1 MiB window in
    /// flight.
    #[test]
    fn echoes_through_tower_ws() {
        use crate::load::{self, Spec, Until};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let server = crate::servers::find("tower-ws-auto").unwrap();
                let _ = (server.run)(listener).await;
            });
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for (conns, size, in_flight, max_frame) in [
            (3, 16, 16, DEFAULT_MAX_FRAME),
            (2, 1 << 10, 1, DEFAULT_MAX_FRAME),
            (2, 64 << 10, 32, DEFAULT_MAX_FRAME),
            (2, 64 << 10, 4, 1 << 20),
        ] {
            let outcome = runtime
                .block_on(async {
                    let conns_open = connect_all(addr, conns, conns, max_frame).await?;
                    let spec = Spec {
                        conns,
                        in_flight,
                        size,
                        text: false,
                        until: Until::Count { messages: 96 },
                        raw: false,
                    };
                    load::drive(conns_open, std::process::id(), spec).await
                })
                .unwrap();
            assert_eq!(
                outcome.messages,
                96 * conns as u64,
                "{size} B x {in_flight}"
            );
        }
    }
}
