//! [`ClientIo`]: the transport [`ClientBuilder::connect`](super::ClientBuilder::connect) opens.

use std::fmt;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The transport of a connection opened by
/// [`ClientBuilder::connect`](super::ClientBuilder::connect): TCP for `ws://`, TLS over TCP
/// for `wss://` (feature `rustls`).
///
/// The TLS stream type stays private so that a rustls upgrade is not a breaking change; the
/// TCP socket under it is reachable with [`get_ref`](Self::get_ref), e.g. for its addresses.
pub struct ClientIo {
    inner: Transport,
}

enum Transport {
    Tcp(TcpStream),
    #[cfg(feature = "rustls")]
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl ClientIo {
    pub(super) fn tcp(stream: TcpStream) -> Self {
        Self {
            inner: Transport::Tcp(stream),
        }
    }

    #[cfg(feature = "rustls")]
    pub(super) fn tls(stream: tokio_rustls::client::TlsStream<TcpStream>) -> Self {
        Self {
            inner: Transport::Tls(Box::new(stream)),
        }
    }

    /// The TCP socket (under TLS, for `wss://`). Reading or writing it directly corrupts the
    /// connection.
    pub fn get_ref(&self) -> &TcpStream {
        match &self.inner {
            Transport::Tcp(tcp) => tcp,
            #[cfg(feature = "rustls")]
            Transport::Tls(tls) => tls.get_ref().0,
        }
    }

    /// Whether the connection runs over TLS (`wss://`).
    pub fn is_tls(&self) -> bool {
        match &self.inner {
            Transport::Tcp(_) => false,
            #[cfg(feature = "rustls")]
            Transport::Tls(_) => true,
        }
    }
}

impl fmt::Debug for ClientIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIo")
            .field("tcp", self.get_ref())
            .field("tls", &self.is_tls())
            .finish()
    }
}

impl AsyncRead for ClientIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Transport::Tcp(tcp) => Pin::new(tcp).poll_read(cx, buf),
            #[cfg(feature = "rustls")]
            Transport::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().inner {
            Transport::Tcp(tcp) => Pin::new(tcp).poll_write(cx, buf),
            #[cfg(feature = "rustls")]
            Transport::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().inner {
            Transport::Tcp(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            #[cfg(feature = "rustls")]
            Transport::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.inner {
            Transport::Tcp(tcp) => tcp.is_write_vectored(),
            #[cfg(feature = "rustls")]
            Transport::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Transport::Tcp(tcp) => Pin::new(tcp).poll_flush(cx),
            #[cfg(feature = "rustls")]
            Transport::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Transport::Tcp(tcp) => Pin::new(tcp).poll_shutdown(cx),
            #[cfg(feature = "rustls")]
            Transport::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}
