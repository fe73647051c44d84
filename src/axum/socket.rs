//! [`WebSocket`]: axum's socket type, a thin shell over this crate's
//! [`WebSocket`](crate::WebSocket) that speaks axum's [`Message`] and [`axum_core::Error`].

use std::future::Future;
use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum_core::Error;
use futures_core::Stream;
use futures_core::stream::FusedStream;
use futures_sink::Sink;
use http::HeaderValue;

use super::message::Message;
use crate::hub::{Hub, Member};
use crate::io::UpgradedIo;
use crate::proto;

/// A WebSocket upgraded by [`WebSocketUpgrade`](super::WebSocketUpgrade), with axum's API:
/// [`recv`](Self::recv), [`send`](Self::send), [`protocol`](Self::protocol), and `Stream` /
/// `Sink` of [`Message`] (so `futures_util`'s `StreamExt::split` gives a sender and a receiver
/// for two tasks).
///
/// Errors are [`axum_core::Error`] (`axum::Error`) around a [`tower_ws::Error`](crate::Error):
///
/// ```
/// # async fn handle(mut socket: tower_ws::axum::WebSocket) {
/// if let Some(Err(error)) = socket.recv().await {
///     if let Ok(ours) = error.into_inner().downcast::<tower_ws::Error>() {
///         eprintln!("closed with {:?}: {ours}", ours.close_code());
///     }
/// }
/// # }
/// # let _ = handle;
/// ```
///
/// Underneath is this crate's engine: [`get_mut`](Self::get_mut) and
/// [`into_inner`](Self::into_inner) give its [`tower_ws::WebSocket`](crate::WebSocket), for
/// what axum's API has no word for (a [`Closer`](crate::Closer), [`close`](crate::WebSocket::close)
/// with a code, sending in [`Frame`](crate::Frame)s), or to hand the socket to code written
/// for the tower layer. [`join`](Self::join) joins it to a [`Hub`] for publish/subscribe.
///
/// Received pings and pongs are delivered, as in axum; the engine answers pings on its own.
/// `recv` is cancel safe, and a dropped `send` queued the whole message or nothing.
#[derive(Debug)]
pub struct WebSocket {
    // Boxed: handlers written as `async fn handle(mut socket: WebSocket)` (axum's own
    // examples) store their argument twice in their future (rust-lang/rust#62958), and that
    // future lives as long as the socket. A pointer stored twice costs nothing.
    inner: Box<Inner>,
}

#[derive(Debug)]
struct Inner {
    socket: proto::WebSocket<UpgradedIo>,
    protocol: Option<HeaderValue>,
}

impl WebSocket {
    /// What each socket holds on the heap.
    #[cfg(test)]
    pub(super) const HEAP_SIZE: usize = size_of::<Inner>();

    pub(super) fn new(socket: proto::WebSocket<UpgradedIo>, protocol: Option<HeaderValue>) -> Self {
        Self {
            inner: Box::new(Inner { socket, protocol }),
        }
    }

    /// Receives the next message; `None` once the connection has closed. (axum's `async fn`;
    /// written as a poll function, so the future costs the handler no more than this
    /// crate's own `recv`.)
    #[inline]
    pub fn recv(&mut self) -> impl Future<Output = Option<Result<Message, Error>>> + Send + '_ {
        let socket = &mut self.inner.socket;
        poll_fn(move |cx| {
            Poll::Ready(match ready!(Pin::new(&mut *socket).poll_next(cx)) {
                Some(Ok(message)) => Some(Ok(message.into())),
                Some(Err(error)) => Some(Err(Error::new(error))),
                None => None,
            })
        })
    }

    /// Sends a message (waiting while the write queue is over its high-water mark). (axum's
    /// `async fn`, written as a poll function like [`recv`](Self::recv).)
    ///
    /// # Errors
    ///
    /// The connection is closed or failed, or the message cannot be sent (a control payload
    /// over 125 bytes, a close code that may not be sent).
    #[inline]
    pub fn send(&mut self, msg: Message) -> impl Future<Output = Result<(), Error>> + Send + '_ {
        let socket = &mut self.inner.socket;
        let mut pending = Some(proto::Message::from(msg));
        poll_fn(move |cx| socket.poll_send(cx, &mut pending).map_err(Error::new))
    }

    /// The subprotocol chosen in the handshake, if any.
    #[inline]
    pub fn protocol(&self) -> Option<&HeaderValue> {
        self.inner.protocol.as_ref()
    }

    /// This crate's socket underneath.
    #[inline]
    pub fn get_ref(&self) -> &proto::WebSocket<UpgradedIo> {
        &self.inner.socket
    }

    /// This crate's socket underneath, mutably: its `recv` and `send` speak
    /// [`tower_ws::Message`](crate::Message) and [`tower_ws::Error`](crate::Error).
    #[inline]
    pub fn get_mut(&mut self) -> &mut proto::WebSocket<UpgradedIo> {
        &mut self.inner.socket
    }

    /// Joins this socket to `hub` (fan-out by topic): the returned [`Member`] subscribes it to
    /// topics and publishes to them. The same as [`Hub::join`] on [`get_mut`](Self::get_mut).
    ///
    /// What is published to the socket is written by the socket's own task while it polls the
    /// socket: in [`recv`](Self::recv) (where a handler normally waits, so a member that only
    /// reads gets every message as soon as it is published), [`send`](Self::send), or the
    /// `Stream` / `Sink` halves after `split`. No task per socket, no channel: each message is
    /// framed once for all its subscribers. Dropping the member, or the end of the connection,
    /// unsubscribes the socket.
    ///
    /// ```
    /// use axum::{Router, extract::State, response::Response, routing::any};
    /// use tower_ws::Hub;
    /// use tower_ws::axum::{Message, WebSocket, WebSocketUpgrade};
    ///
    /// let app: Router = Router::new().route("/chat", any(chat)).with_state(Hub::new());
    ///
    /// async fn chat(ws: WebSocketUpgrade, State(hub): State<Hub>) -> Response {
    ///     ws.on_upgrade(move |socket| member(socket, hub))
    /// }
    ///
    /// async fn member(mut socket: WebSocket, hub: Hub) {
    ///     let member = socket.join(&hub);
    ///     member.subscribe("lobby");
    ///     // Waiting in `recv` also writes what the lobby publishes to this socket.
    ///     while let Some(Ok(message)) = socket.recv().await {
    ///         if let Message::Text(text) = message {
    ///             // Everyone in the lobby, this socket too (`member.publish`: all but it).
    ///             hub.publish("lobby", text.as_str());
    ///         }
    ///     }
    /// }
    /// # let _ = app;
    /// ```
    pub fn join(&mut self, hub: &Hub) -> Member {
        hub.join(&mut self.inner.socket)
    }

    /// This crate's socket underneath. When the extractor's callback returns, the socket is
    /// closed (1000) as before, wherever in the callback's task it was moved.
    #[inline]
    pub fn into_inner(self) -> proto::WebSocket<UpgradedIo> {
        self.inner.socket
    }
}

impl From<WebSocket> for proto::WebSocket<UpgradedIo> {
    fn from(socket: WebSocket) -> Self {
        socket.into_inner()
    }
}

impl Stream for WebSocket {
    type Item = Result<Message, Error>;

    #[inline]
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.get_mut().inner.socket)
            .poll_next(cx)
            .map(|item| item.map(|message| message.map(Message::from).map_err(Error::new)))
    }
}

impl FusedStream for WebSocket {
    /// Whether the connection is finished: the stream has ended.
    #[inline]
    fn is_terminated(&self) -> bool {
        self.inner.socket.is_terminated()
    }
}

impl Sink<Message> for WebSocket {
    type Error = Error;

    #[inline]
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Pin::new(&mut self.get_mut().inner.socket)
            .poll_ready(cx)
            .map_err(Error::new)
    }

    #[inline]
    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Error> {
        Pin::new(&mut self.get_mut().inner.socket)
            .start_send(proto::Message::from(item))
            .map_err(Error::new)
    }

    #[inline]
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Pin::new(&mut self.get_mut().inner.socket)
            .poll_flush(cx)
            .map_err(Error::new)
    }

    /// Sends a close frame with 1000 (unless one was sent already) and completes the close
    /// handshake.
    #[inline]
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Pin::new(&mut self.get_mut().inner.socket)
            .poll_close(cx)
            .map_err(Error::new)
    }
}
