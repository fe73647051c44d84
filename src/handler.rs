//! What runs a WebSocket session: a [`Handler`] is a tower service that receives a
//! [`Session`]; [`handler_fn`] turns an async closure into one.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::header::HeaderValue;
use http::request::Parts;
use http::{Extensions, HeaderMap, Method, Uri, Version};
use tower_service::Service;

use crate::error::BoxError;
use crate::io::UpgradedIo;
use crate::proto::WebSocket;

/// An accepted WebSocket connection, handed to the [`Handler`]: the socket and the request
/// that opened it.
///
/// Take it apart in the handler's arguments (`..` is required: more fields may come):
///
/// ```
/// use tower_ws::{Session, handler_fn};
///
/// let handler = handler_fn(|Session { mut socket, handshake, .. }| async move {
///     let greeting = format!("hello from {}", handshake.uri().path());
///     socket.send(greeting.as_str()).await?;
///     Ok::<_, tower_ws::Error>(())
/// });
/// # let _ = tower_ws::UpgradeLayer::new(handler);
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct Session {
    /// The connection, in the server role, with the layer's engine [`Config`](crate::Config).
    pub socket: WebSocket<UpgradedIo>,
    /// The request head and the negotiated subprotocol.
    pub handshake: Handshake,
}

impl Session {
    pub(crate) fn new(socket: WebSocket<UpgradedIo>, handshake: Handshake) -> Self {
        Self { socket, handshake }
    }

    /// The socket and the handshake, apart.
    pub fn into_parts(self) -> (WebSocket<UpgradedIo>, Handshake) {
        (self.socket, self.handshake)
    }
}

/// The request that opened a WebSocket session: method, URI, HTTP version, headers and the
/// extensions that earlier middleware set (an authenticated user, the peer address), plus
/// the subprotocol the layer chose.
///
/// hyper's upgrade handle has been taken out of the extensions; everything else is as the
/// layer received it.
#[derive(Debug)]
pub struct Handshake {
    head: Parts,
    protocol: Option<HeaderValue>,
}

impl Handshake {
    pub(crate) fn new(head: Parts, protocol: Option<HeaderValue>) -> Self {
        Self { head, protocol }
    }

    /// The request method: `GET` on HTTP/1.1, `CONNECT` on HTTP/2.
    pub fn method(&self) -> &Method {
        &self.head.method
    }

    /// The request URI (on HTTP/2 it includes `:scheme` and `:authority`).
    pub fn uri(&self) -> &Uri {
        &self.head.uri
    }

    /// The HTTP version the handshake used: [`Version::HTTP_11`], or [`Version::HTTP_2`] for an
    /// RFC 8441 extended CONNECT. Nothing else about the session depends on it.
    pub fn version(&self) -> Version {
        self.head.version
    }

    /// The request headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.head.headers
    }

    /// The request extensions, as set by the server and earlier middleware.
    pub fn extensions(&self) -> &Extensions {
        &self.head.extensions
    }

    /// The request extensions, mutably (to take a value out, for example).
    pub fn extensions_mut(&mut self) -> &mut Extensions {
        &mut self.head.extensions
    }

    /// The subprotocol the layer chose from the client's offer, if any (see
    /// [`Protocols`](crate::Protocols)).
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_ref().and_then(|p| p.to_str().ok())
    }

    /// The request head.
    pub fn into_parts(self) -> Parts {
        self.head
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A WebSocket session handler: a tower [`Service`] that receives a [`Session`] and resolves
/// when the session is over.
///
/// This is an alias, implemented for every service that fits; build one from an async closure
/// with [`handler_fn`], or write a `Service<Session>` by hand for full control. The layer clones
/// the handler for each session, waits for it to be ready and calls it in a task of its own.
///
/// When the handler resolves, the layer finishes what it left open:
///
/// - `Ok` while the socket is still open (not closed, not dropped elsewhere): the layer closes
///   it with 1000 (normal closure).
/// - `Err`, or a panic, or not ready (`poll_ready` fails): the error is logged with `tracing`
///   and the socket is closed with 1011 (internal error).
///
/// A socket the handler moved into another task is that task's: the layer leaves it alone.
pub trait Handler:
    sealed::Sealed
    + Service<Session, Response = (), Error: Into<BoxError>, Future: Send + 'static>
    + Clone
    + Send
    + 'static
{
}

impl<T> sealed::Sealed for T where T: Service<Session> {}

impl<T> Handler for T where
    T: Service<Session, Response = (), Error: Into<BoxError>, Future: Send + 'static>
        + Clone
        + Send
        + 'static
{
}

/// A [`Handler`] from an async closure: `handler_fn(|session| async move { ... })`.
///
/// The closure's future may return `()` or `Result<(), E>` for any error `E` that converts into
/// `Box<dyn Error + Send + Sync>` (such as [`tower_ws::Error`](crate::Error), so `?` works on
/// socket calls):
///
/// ```
/// use tower_ws::{Session, UpgradeLayer, handler_fn};
///
/// // An echo server.
/// let layer = UpgradeLayer::new(handler_fn(|Session { mut socket, .. }| async move {
///     while let Some(message) = socket.recv().await {
///         let message = message?;
///         if message.is_text() || message.is_binary() {
///             socket.send(message).await?;
///         }
///     }
///     Ok::<_, tower_ws::Error>(())
/// }));
/// # let _ = layer;
/// ```
pub fn handler_fn<F, Fut>(f: F) -> HandlerFn<F>
where
    F: FnMut(Session) -> Fut,
    Fut: Future,
    Fut::Output: HandlerOutput,
{
    HandlerFn { f }
}

/// The [`Handler`] made by [`handler_fn`].
#[derive(Clone, Copy)]
pub struct HandlerFn<F> {
    f: F,
}

impl<F> fmt::Debug for HandlerFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerFn")
            .field("f", &std::any::type_name::<F>())
            .finish()
    }
}

impl<F, Fut> Service<Session> for HandlerFn<F>
where
    F: FnMut(Session) -> Fut,
    Fut: Future,
    Fut::Output: HandlerOutput,
{
    type Response = ();
    type Error = BoxError;
    type Future = HandlerFuture<Fut>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, session: Session) -> Self::Future {
        HandlerFuture {
            future: (self.f)(session),
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of a [`HandlerFn`].
    pub struct HandlerFuture<Fut> {
        #[pin]
        future: Fut,
    }
}

impl<Fut> fmt::Debug for HandlerFuture<Fut> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerFuture").finish_non_exhaustive()
    }
}

impl<Fut> Future for HandlerFuture<Fut>
where
    Fut: Future,
    Fut::Output: HandlerOutput,
{
    type Output = Result<(), BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project()
            .future
            .poll(cx)
            .map(HandlerOutput::into_result)
    }
}

mod sealed_output {
    pub trait Sealed {}
    impl Sealed for () {}
    impl<E> Sealed for Result<(), E> {}
}

/// What a [`handler_fn`] closure's future may return: `()` or `Result<(), E>`.
pub trait HandlerOutput: sealed_output::Sealed {
    /// The outcome as a result.
    ///
    /// # Errors
    ///
    /// The handler's error, boxed.
    fn into_result(self) -> Result<(), BoxError>;
}

impl HandlerOutput for () {
    fn into_result(self) -> Result<(), BoxError> {
        Ok(())
    }
}

impl<E: Into<BoxError>> HandlerOutput for Result<(), E> {
    fn into_result(self) -> Result<(), BoxError> {
        self.map_err(Into::into)
    }
}
