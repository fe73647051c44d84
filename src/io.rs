//! [`UpgradedIo`]: the connection a WebSocket session runs on, once hyper lets go of it.

use std::cell::Cell;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The transport of a [`Session`](crate::Session)'s socket: the connection hyper handed over
/// after the handshake. It implements tokio's `AsyncRead` and `AsyncWrite` (with vectored
/// writes where the connection has them).
///
/// When the connection is a plain TCP stream served by hyper's HTTP/1 connection or (with the
/// `http2` feature, which brings hyper-util's `server-auto`) by hyper-util's auto builder,
/// which axum's `serve` uses, the layer unwraps it: reads and writes go straight to the
/// [`TcpStream`] with no dynamic dispatch and no extra buffer. Other connections (HTTP/2
/// streams, TLS, custom transports) go through hyper's upgrade type, with reads and writes
/// gathered: a read takes every HTTP/2 DATA frame that is ready, and the header and payload of
/// a small frame leave in one write, not in two DATA frames.
///
/// The layer turns Nagle's algorithm off (`TCP_NODELAY`) on a TCP stream it unwraps. The engine
/// already gathers the frames queued together into one write, so Nagle's algorithm only delays
/// the next one: a handler that sends two messages in a row, or any reply while an earlier one
/// is still unacknowledged, waits for the peer's delayed ACK, some 40 ms on Linux. To turn it
/// back on, [`tcp_stream`](Self::tcp_stream) reaches the socket. The layer cannot reach the
/// connection under an HTTP/2 stream: the server sets `TCP_NODELAY` on the streams it accepts
/// (README, "HTTP/2").
pub struct UpgradedIo {
    inner: Inner,
}

enum Inner {
    Tcp(TcpStream),
    /// Boxed: the TCP stream, what servers hand over almost always, is smaller, and the socket
    /// lives in its session's task for as long as the connection.
    Upgraded(Box<TokioIo<Upgraded>>),
    /// What is left in a socket whose connection the layer took back to close it.
    Detached,
}

impl UpgradedIo {
    /// The connection from hyper, and the bytes hyper read past the handshake (copied out, so
    /// hyper's read buffer is freed now rather than kept by an idle socket).
    pub(crate) fn from_upgraded(upgraded: Upgraded) -> (Self, BytesMut) {
        let (io, read_buf) = Self::unwrap(upgraded);
        let read_buf = if read_buf.is_empty() {
            BytesMut::new()
        } else {
            BytesMut::from(&read_buf[..])
        };
        (io, read_buf)
    }

    fn unwrap(upgraded: Upgraded) -> (Self, Bytes) {
        let upgraded = match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => return (Self::tcp(parts.io.into_inner()), parts.read_buf),
            Err(upgraded) => upgraded,
        };
        #[cfg(feature = "http2")]
        let upgraded =
            match hyper_util::server::conn::auto::upgrade::downcast::<TokioIo<TcpStream>>(upgraded)
            {
                Ok(parts) => return (Self::tcp(parts.io.into_inner()), parts.read_buf),
                Err(upgraded) => upgraded,
            };
        let inner = Inner::Upgraded(Box::new(TokioIo::new(upgraded)));
        (Self { inner }, Bytes::new())
    }

    fn tcp(stream: TcpStream) -> Self {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "websocket connection: TCP_NODELAY not set");
        }
        Self {
            inner: Inner::Tcp(stream),
        }
    }

    pub(crate) fn detached() -> Self {
        Self {
            inner: Inner::Detached,
        }
    }

    /// The TCP stream under the socket, when the layer could unwrap it (see above): to read or
    /// change its options, such as `set_nodelay(false)`. `None` otherwise.
    pub fn tcp_stream(&self) -> Option<&TcpStream> {
        match &self.inner {
            Inner::Tcp(stream) => Some(stream),
            Inner::Upgraded(_) | Inner::Detached => None,
        }
    }

    /// The peer's address, when the connection is a TCP stream the layer could unwrap (see
    /// above); `None` otherwise. Servers that know the address put it in the request
    /// extensions, which the handler sees in [`Handshake::extensions`](crate::Handshake::extensions).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        match &self.inner {
            Inner::Tcp(stream) => stream.peer_addr().ok(),
            Inner::Upgraded(_) | Inner::Detached => None,
        }
    }
}

impl fmt::Debug for UpgradedIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Inner::Tcp(stream) => f.debug_tuple("UpgradedIo::Tcp").field(stream).finish(),
            Inner::Upgraded(_) => f.write_str("UpgradedIo::Upgraded"),
            Inner::Detached => f.write_str("UpgradedIo::Detached"),
        }
    }
}

fn detached() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "the connection was taken back by the layer",
    )
}

/// The most a write to hyper's upgrade type gathers from several slices: the default size of
/// an HTTP/2 DATA frame.
const GATHER_MAX: usize = 16 << 10;

/// Reads what hyper's upgrade type has ready, up to what `buf` holds. An HTTP/2 stream yields
/// one DATA frame per read; the messages of a burst arrive in separate DATA frames when the
/// client wrote them separately, and reading them one at a time would make the engine answer
/// each with a write of its own (it gathers the answers to what it has already read). The
/// first read may wait; the others only take what is there.
fn poll_read_ready<R: AsyncRead + Unpin>(
    io: &mut R,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
) -> Poll<io::Result<()>> {
    let before = buf.filled().len();
    ready!(Pin::new(&mut *io).poll_read(cx, buf))?;
    let mut last = before;
    // Stops at the end of the stream (a read that adds nothing), when nothing more is ready or
    // `buf` is full. An error after some bytes were read is left for the next read, which meets
    // it again: hyper's HTTP/2 stream reports its state, not a one-off event.
    while buf.filled().len() > last && buf.remaining() > 0 {
        last = buf.filled().len();
        if let Poll::Pending | Poll::Ready(Err(_)) = Pin::new(&mut *io).poll_read(cx, buf) {
            break;
        }
    }
    Poll::Ready(Ok(()))
}

/// Writes `bufs` to hyper's upgrade type. Over HTTP/2 it has no vectored write and copies each
/// write into a DATA frame of its own: whole slices (a frame header and its payload, or several
/// small frames) are gathered into one write while they fit in [`GATHER_MAX`] bytes, so a
/// small frame goes out in one DATA frame rather than its header in one and its payload in the
/// next. A slice that does not fit beside the first goes in the next write, uncopied: the
/// header of a large frame then leaves in a DATA frame of its own, which h2 sends in the same
/// system call as the first DATA frame of the payload (gathering part of the payload instead
/// would cost a copy and leave a short DATA frame at the end, in a system call of its own).
fn poll_write_gathered<W: AsyncWrite + Unpin>(
    io: &mut W,
    cx: &mut Context<'_>,
    bufs: &[io::IoSlice<'_>],
) -> Poll<io::Result<usize>> {
    if io.is_write_vectored() {
        return Pin::new(io).poll_write_vectored(cx, bufs);
    }
    let mut slices = bufs.iter().filter(|b| !b.is_empty()).peekable();
    let Some(first) = slices.next() else {
        return Pin::new(io).poll_write(cx, &[]);
    };
    match slices.peek() {
        Some(next) if first.len() + next.len() <= GATHER_MAX => {}
        _ => return Pin::new(io).poll_write(cx, first),
    }
    // This thread's gathering buffer: no allocation after the first, and only the bytes
    // gathered are written (a zeroed array on the stack cost a 16 KiB memset per write).
    let mut gathered = GATHER.try_with(Cell::take).unwrap_or_default();
    gathered.clear();
    for slice in std::iter::once(first).chain(slices) {
        if gathered.len() + slice.len() > GATHER_MAX {
            break;
        }
        gathered.extend_from_slice(slice);
    }
    let written = Pin::new(io).poll_write(cx, &gathered);
    // During the thread's teardown the buffer is dropped instead.
    let _ = GATHER.try_with(|spare| spare.set(gathered));
    written
}

thread_local! {
    /// The buffer [`poll_write_gathered`] gathers slices in: writes are synchronous, so one
    /// per thread serves every connection it drives; it never grows past [`GATHER_MAX`].
    static GATHER: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

impl AsyncRead for UpgradedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Tcp(io) => Pin::new(io).poll_read(cx, buf),
            Inner::Upgraded(io) => poll_read_ready(&mut **io, cx, buf),
            Inner::Detached => Poll::Ready(Err(detached())),
        }
    }
}

impl AsyncWrite for UpgradedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().inner {
            Inner::Tcp(io) => Pin::new(io).poll_write(cx, buf),
            Inner::Upgraded(io) => Pin::new(io).poll_write(cx, buf),
            Inner::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().inner {
            Inner::Tcp(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Inner::Upgraded(io) => poll_write_gathered(&mut **io, cx, bufs),
            Inner::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.inner {
            Inner::Tcp(io) => io.is_write_vectored(),
            // Gathered here when the transport cannot (see `poll_write_gathered`).
            Inner::Upgraded(_) => true,
            Inner::Detached => false,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Tcp(io) => Pin::new(io).poll_flush(cx),
            Inner::Upgraded(io) => Pin::new(io).poll_flush(cx),
            Inner::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Tcp(io) => Pin::new(io).poll_shutdown(cx),
            Inner::Upgraded(io) => Pin::new(io).poll_shutdown(cx),
            Inner::Detached => Poll::Ready(Err(detached())),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// A transport like hyper's HTTP/2 stream: each read yields one queued chunk (`None`: not
    /// ready, `Err`: an error), each write takes one slice whole and records it.
    #[derive(Default)]
    struct Chunks {
        reads: VecDeque<Option<io::Result<Vec<u8>>>>,
        writes: Vec<Vec<u8>>,
    }

    impl AsyncRead for Chunks {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            match self.get_mut().reads.pop_front() {
                None => Poll::Ready(Ok(())),
                Some(None) => Poll::Pending,
                Some(Some(Err(e))) => Poll::Ready(Err(e)),
                Some(Some(Ok(chunk))) => {
                    buf.put_slice(&chunk);
                    Poll::Ready(Ok(()))
                }
            }
        }
    }

    impl AsyncWrite for Chunks {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.get_mut().writes.push(buf.to_vec());
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn read(io: &mut Chunks, room: usize) -> Poll<io::Result<Vec<u8>>> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut storage = vec![0_u8; room];
        let mut buf = ReadBuf::new(&mut storage);
        poll_read_ready(io, &mut cx, &mut buf).map_ok(|()| buf.filled().to_vec())
    }

    #[expect(clippy::unnecessary_wraps, reason = "the type of a queued read")]
    fn ok(bytes: &[u8]) -> Option<io::Result<Vec<u8>>> {
        Some(Ok(bytes.to_vec()))
    }

    #[test]
    fn a_read_takes_every_ready_chunk_and_stops_at_the_first_not_ready() {
        let mut io = Chunks::default();
        io.reads
            .extend([ok(b"ab"), ok(b"cd"), ok(b"ef"), None, ok(b"gh")]);
        assert_eq!(
            read(&mut io, 64).map(Result::unwrap),
            Poll::Ready(b"abcdef".to_vec())
        );
        assert_eq!(
            read(&mut io, 64).map(Result::unwrap),
            Poll::Ready(b"gh".to_vec())
        );
        // The end of the stream (a read that adds nothing), once the chunks are taken.
        assert_eq!(
            read(&mut io, 64).map(Result::unwrap),
            Poll::Ready(Vec::new())
        );
    }

    #[test]
    fn a_read_waits_only_for_its_first_chunk_and_stops_when_full() {
        let mut io = Chunks::default();
        io.reads.extend([None, ok(b"abcd"), ok(b"ef")]);
        assert!(read(&mut io, 64).is_pending());
        // `Chunks` puts whole chunks: room for exactly the first.
        assert_eq!(
            read(&mut io, 4).map(Result::unwrap),
            Poll::Ready(b"abcd".to_vec())
        );
        assert_eq!(io.reads.len(), 1);
    }

    #[test]
    fn an_error_after_some_bytes_waits_for_the_next_read() {
        let mut io = Chunks::default();
        let reset = || Some(Err(io::Error::from(io::ErrorKind::ConnectionReset)));
        // hyper's stream reports its failed state on every read.
        io.reads.extend([ok(b"ab"), reset(), reset()]);
        assert_eq!(
            read(&mut io, 64).map(Result::unwrap),
            Poll::Ready(b"ab".to_vec())
        );
        match read(&mut io, 64) {
            Poll::Ready(Err(e)) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
            other => panic!("expected the error, got {other:?}"),
        }
    }

    fn write(io: &mut Chunks, slices: &[&[u8]]) -> usize {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let slices: Vec<_> = slices.iter().map(|s| io::IoSlice::new(s)).collect();
        match poll_write_gathered(io, &mut cx, &slices) {
            Poll::Ready(Ok(n)) => n,
            other => panic!("write: {other:?}"),
        }
    }

    #[test]
    fn a_header_and_its_payload_leave_in_one_write() {
        let mut io = Chunks::default();
        assert_eq!(write(&mut io, &[b"\x82\x04", b"", b"data"]), 6);
        assert_eq!(io.writes, [b"\x82\x04data".to_vec()]);
    }

    #[test]
    fn whole_slices_are_gathered_while_they_fit() {
        let mut io = Chunks::default();
        let (a, b, c) = (vec![1_u8; 10 << 10], vec![2_u8; 6 << 10], vec![3_u8; 1]);
        assert_eq!(write(&mut io, &[&a, &b, &c]), a.len() + b.len());
        assert_eq!(io.writes, [[a, b].concat()]);
    }

    #[test]
    fn each_gathered_write_holds_only_its_own_slices() {
        // The gathering buffer is reused by every write on the thread: a longer write first,
        // then a shorter one, must not leave the first one's bytes in the second.
        let mut io = Chunks::default();
        assert_eq!(write(&mut io, &[b"\x82\x05", b"first"]), 7);
        assert_eq!(write(&mut io, &[b"\x81\x01", b"2"]), 3);
        assert_eq!(write(&mut io, &[b"\x82\x03", b"3rd", b"\x8a\x00"]), 7);
        assert_eq!(
            io.writes,
            [
                b"\x82\x05first".to_vec(),
                b"\x81\x012".to_vec(),
                b"\x82\x033rd\x8a\x00".to_vec()
            ]
        );
    }

    #[test]
    fn the_header_of_a_large_frame_goes_alone_and_its_payload_uncopied() {
        let mut io = Chunks::default();
        let payload = vec![7_u8; 64 << 10];
        assert_eq!(write(&mut io, &[b"\x82\x7f", &payload]), 2);
        assert_eq!(write(&mut io, &[&payload, b"\x81\x00"]), payload.len());
        assert_eq!(io.writes, [b"\x82\x7f".to_vec(), payload]);
    }
}
