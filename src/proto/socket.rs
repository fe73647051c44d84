//! [`WebSocket`]: a connection over any tokio transport.

use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::BytesMut;
use futures_core::Stream;
use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncWrite};

use super::close::{CloseCode, CloseFrame};
use super::closer::Closer;
use super::config::{Config, Role};
use super::core::{Core, ParkFn, Side};
use super::message::{Frame, Message, Utf8Bytes};
use super::split::{self, ReadHalf, WriteHalf};
use crate::error::{Error, Result};

/// A WebSocket connection over a transport `Io` (after the opening handshake).
///
/// It reads with [`recv`](Self::recv) or as a [`Stream`] of [`Message`]s, and writes with
/// [`send`](Self::send) or as a [`Sink`]. [`split`](Self::split) gives a read half and a write
/// half for two tasks.
///
/// ```
/// use tower_ws::{Config, Message, Role, WebSocket};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower_ws::Error> {
/// // Any AsyncRead + AsyncWrite works; here, an in-memory pipe.
/// let (a, b) = tokio::io::duplex(4096);
/// let mut client = WebSocket::new(a, Role::Client, Config::default());
/// let mut server = WebSocket::new(b, Role::Server, Config::default());
///
/// client.send(Message::text("hello")).await?;
/// let received = server.recv().await.unwrap()?;
/// assert_eq!(received.as_text(), Some("hello"));
/// # Ok(())
/// # }
/// ```
///
/// # Reading
///
/// Every RFC 6455 rule is checked as bytes arrive; a violation fails the connection: a close
/// frame with the rule's code (1002, 1007 or 1009) is sent, the transport is closed and the
/// stream yields an [`Error`] naming the rule, then ends. Pings are answered automatically
/// (see [`Config::auto_pong`]) and still delivered. A received close frame is answered, delivered
/// as [`Message::Close`], and then the stream ends: a normal close is not an error.
///
/// # Writing
///
/// `send` returns once the message is written to the transport. While more received frames are
/// already buffered it only queues, so a burst of replies leaves in one system call; the queue
/// is always written before the connection waits for input, and [`flush`](Self::flush) writes
/// it at once. When the peer stops reading and the queue passes
/// [`Config::write_buffer_high_water`], [`Config::backpressure`] decides: wait (the default),
/// refuse the message, or close the connection. Under the last two `send` never waits.
///
/// # Cancel safety
///
/// `recv` (and `Stream::poll_next`) is cancel safe: a message is removed from the connection only
/// when it is returned, so dropping a pending `recv` in a `select!` loses nothing. `send` is
/// cancel safe in the sense that a dropped `send` either queued the whole message or nothing:
/// never half a frame. A message queued by a dropped `send` goes out with the next write.
#[derive(Debug)]
pub struct WebSocket<Io> {
    core: Core<Io>,
}

impl<Io> WebSocket<Io> {
    /// Wraps a transport on which the opening handshake is complete.
    pub fn new(io: Io, role: Role, config: Config) -> Self {
        Self::from_partially_read(io, BytesMut::new(), role, config)
    }

    /// Wraps a transport of which `read` (bytes that followed the handshake) has already been
    /// read.
    pub fn from_partially_read(
        io: Io,
        read: impl Into<BytesMut>,
        role: Role,
        config: Config,
    ) -> Self {
        Self {
            core: Core::new(io, role, config, read.into()),
        }
    }

    /// Turns on permessage-deflate (RFC 7692) with the parameters a handshake agreed on.
    ///
    /// The tower layer and the client do this themselves; call it only when you ran the
    /// opening handshake yourself, before the first message. Compression settings (level,
    /// threshold) come from [`Config::deflate`], or the defaults.
    #[cfg(feature = "deflate")]
    #[cfg_attr(docsrs, doc(cfg(feature = "deflate")))]
    #[must_use]
    pub fn with_deflate(mut self, params: super::deflate::DeflateParams) -> Self {
        self.core.set_deflate(params);
        self
    }

    /// This endpoint's role.
    pub fn role(&self) -> Role {
        self.core.role()
    }

    /// The connection's configuration.
    pub fn config(&self) -> &Config {
        self.core.config()
    }

    /// Whether messages can still be sent: no close frame has been sent or received.
    pub fn is_open(&self) -> bool {
        self.core.is_open()
    }

    /// Whether the connection is finished: the stream has ended.
    pub fn is_terminated(&self) -> bool {
        self.core.is_terminated()
    }

    /// Bytes queued but not yet written to the transport.
    pub fn buffered_amount(&self) -> usize {
        self.core.queued()
    }

    /// The transport.
    pub fn get_ref(&self) -> &Io {
        &self.core.io
    }

    /// The transport. Reading or writing it directly corrupts the connection.
    pub fn get_mut(&mut self) -> &mut Io {
        &mut self.core.io
    }

    /// A handle that asks this connection to close from another task.
    pub fn closer(&mut self) -> Closer {
        Closer::new(self.core.signal())
    }

    /// Splits the connection into a read half and a write half that two tasks can drive at
    /// once. Pongs and close replies are still sent by the read half on its own.
    pub fn split(self) -> (ReadHalf<Io>, WriteHalf<Io>) {
        split::split(self.core)
    }

    pub(crate) fn set_park(&mut self, park: ParkFn<Io>) {
        self.core.set_park(park);
    }

    /// This socket's inbox for published frames (see [`Hub`](crate::Hub)), created on first use.
    pub(crate) fn inbox(
        &mut self,
        limit: usize,
        policy: super::fanout::SlowPolicy,
    ) -> std::sync::Arc<super::fanout::Inbox> {
        self.core.inbox(limit, policy)
    }

    pub(crate) fn from_core(core: Core<Io>) -> Self {
        Self { core }
    }
}

impl<Io: AsyncRead + AsyncWrite + Unpin> WebSocket<Io> {
    /// Receives the next message; `None` once the connection has closed.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: see the [type's docs](Self#cancel-safety).
    pub async fn recv(&mut self) -> Option<Result<Message>> {
        poll_fn(|cx| self.core.poll_next(cx)).await
    }

    /// Sends a message.
    ///
    /// Waits while the write queue is over its high-water mark. Sending [`Message::Close`]
    /// starts the close handshake (read on to see the peer's answer, or use
    /// [`close`](Self::close)); sending it again once a close frame was sent or received does
    /// nothing.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Closed`](crate::ErrorKind::Closed) after a close frame was sent or received,
    /// [`ErrorKind::InvalidMessage`](crate::ErrorKind::InvalidMessage) for a control payload over
    /// 125 bytes or an unsendable close code, [`ErrorKind::Io`](crate::ErrorKind::Io) if the
    /// transport fails.
    ///
    /// # Cancel safety
    ///
    /// The message is queued whole or not at all: see the [type's docs](Self#cancel-safety).
    // Not an `async fn`: its argument would keep a slot of its own in the future beside
    // `pending`, and a session's future, paid for by each idle socket, holds a send future.
    pub fn send(&mut self, message: impl Into<Message>) -> impl Future<Output = Result<()>> {
        let mut pending = Some(message.into());
        poll_fn(move |cx| self.poll_send(cx, &mut pending))
    }

    /// [`send`](Self::send) as a poll function: queues `pending` (taking it) once there is
    /// room, then writes unless more received frames are buffered. Its state is only
    /// `pending`, so wrappers' send futures stay as small as this one's (a session's future is
    /// paid for by each idle socket).
    pub(crate) fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        pending: &mut Option<Message>,
    ) -> Poll<Result<()>> {
        if let Some(message) = pending.as_ref() {
            if message.is_close() && !self.core.is_open() {
                // A close frame already went (or is going) out: nothing to add, nothing to
                // wait for.
                return Poll::Ready(pending.take().map_or(Ok(()), |m| self.core.start_send(m)));
            }
            ready!(self.core.poll_ready(cx, Side::Write))?;
            if let Some(message) = pending.take() {
                self.core.start_send(message)?;
            }
        }
        self.core.poll_send_flush(cx, Side::Write, true)
    }

    /// Sends one frame of a message sent in pieces (see [`Frame`]).
    ///
    /// Pieces are checked as they go: a continuation needs a message in progress, a new message
    /// waits for the last piece of the one in progress, and text must add up to valid UTF-8.
    /// Whole messages sent with [`send`](Self::send) are refused until the last piece is sent.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidMessage`](crate::ErrorKind::InvalidMessage) for a frame out of order,
    /// invalid UTF-8 in text, a fragmented or oversized control frame, or a close frame (use
    /// [`close`](Self::close)); otherwise as [`send`](Self::send).
    pub async fn send_frame(&mut self, frame: Frame) -> Result<()> {
        poll_fn(|cx| self.core.poll_ready(cx, Side::Write)).await?;
        self.core.start_send_frame(frame)?;
        poll_fn(|cx| self.core.poll_send_flush(cx, Side::Write, true)).await
    }

    /// Writes everything queued and flushes the transport.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) if the transport fails.
    pub async fn flush(&mut self) -> Result<()> {
        poll_fn(|cx| self.core.poll_flush(cx, Side::Write)).await
    }

    /// Closes the connection: sends a close frame with `code` and `reason` (unless one was sent
    /// already), reads and discards messages until the peer's close frame, then closes the
    /// transport.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidMessage`](crate::ErrorKind::InvalidMessage) for a code that may not
    /// be sent or a reason over 123 bytes (nothing is sent), and
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) if the peer does not answer within
    /// [`Config::close_timeout`]. Both cases still leave the transport closed.
    pub async fn close(&mut self, code: CloseCode, reason: impl Into<Utf8Bytes>) -> Result<()> {
        let frame = CloseFrame::new(code, reason);
        frame.check_sendable().map_err(Error::invalid_message)?;
        poll_fn(|cx| self.core.poll_close(cx, Some(&frame))).await
    }
}

impl<Io: AsyncRead + AsyncWrite + Unpin> Stream for WebSocket<Io> {
    type Item = Result<Message>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().core.poll_next(cx)
    }
}

impl<Io: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WebSocket<Io> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().core.poll_ready(cx, Side::Write)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<()> {
        self.get_mut().core.start_send(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().core.poll_flush(cx, Side::Write)
    }

    /// Sends a close frame with code 1000 (unless one was sent already) and completes the close
    /// handshake, like [`WebSocket::close`].
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let normal = CloseFrame::new(CloseCode::NORMAL, "");
        self.get_mut().core.poll_close(cx, Some(&normal))
    }
}
