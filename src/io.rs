//! [`UpgradedIo`]: the connection a WebSocket session runs on, once hyper lets go of it.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

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
/// streams, TLS, custom transports) go through hyper's upgrade type.
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
    Upgraded(TokioIo<Upgraded>),
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
        let inner = Inner::Upgraded(TokioIo::new(upgraded));
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

impl AsyncRead for UpgradedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Tcp(io) => Pin::new(io).poll_read(cx, buf),
            Inner::Upgraded(io) => Pin::new(io).poll_read(cx, buf),
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
            Inner::Upgraded(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Inner::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.inner {
            Inner::Tcp(io) => io.is_write_vectored(),
            Inner::Upgraded(io) => io.is_write_vectored(),
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
