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
///
/// A session lives as long as its socket, so keep only what the handler needs: taking the
/// socket out in the closure's arguments, as above with `handshake` unused, frees the request
/// head (typically 1 to 2 KiB with a browser's headers) before the first message.
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
    // Boxed: a session's task carries a pointer, not the whole head.
    head: Box<Head>,
}

#[derive(Debug)]
struct Head {
    parts: Parts,
    protocol: Option<HeaderValue>,
    #[cfg(feature = "deflate")]
    deflate: Option<crate::proto::DeflateParams>,
}

impl Handshake {
    pub(crate) fn new(parts: Parts, protocol: Option<HeaderValue>) -> Self {
        Self {
            head: Box::new(Head {
                parts: detach(parts),
                protocol,
                #[cfg(feature = "deflate")]
                deflate: None,
            }),
        }
    }

    /// The request method: `GET` on HTTP/1.1, `CONNECT` on HTTP/2.
    pub fn method(&self) -> &Method {
        &self.head.parts.method
    }

    /// The request URI (on HTTP/2 it includes `:scheme` and `:authority`).
    pub fn uri(&self) -> &Uri {
        &self.head.parts.uri
    }

    /// The HTTP version the handshake used: [`Version::HTTP_11`], or [`Version::HTTP_2`] for an
    /// RFC 8441 extended CONNECT. Nothing else about the session depends on it.
    pub fn version(&self) -> Version {
        self.head.parts.version
    }

    /// The request headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.head.parts.headers
    }

    /// The request extensions, as set by the server and earlier middleware.
    pub fn extensions(&self) -> &Extensions {
        &self.head.parts.extensions
    }

    /// The request extensions, mutably (to take a value out, for example).
    pub fn extensions_mut(&mut self) -> &mut Extensions {
        &mut self.head.parts.extensions
    }

    /// The subprotocol the layer chose from the client's offer, if any (see
    /// [`Protocols`](crate::Protocols)).
    pub fn protocol(&self) -> Option<&str> {
        self.head.protocol.as_ref().and_then(|p| p.to_str().ok())
    }

    /// The permessage-deflate parameters the layer negotiated, if the session compresses.
    #[cfg(feature = "deflate")]
    #[cfg_attr(docsrs, doc(cfg(feature = "deflate")))]
    pub fn deflate(&self) -> Option<&crate::proto::DeflateParams> {
        self.head.deflate.as_ref()
    }

    #[cfg(feature = "deflate")]
    pub(crate) fn set_deflate(&mut self, params: Option<crate::proto::DeflateParams>) {
        self.head.deflate = params;
    }

    /// The request head.
    pub fn into_parts(self) -> Parts {
        self.head.parts
    }
}

/// Copies the header values and the URI out of the buffer the server parsed them from.
///
/// hyper's values are slices of its connection read buffer (16 KiB once a handshake has been
/// read), so a session keeping the request head would keep that whole buffer alive: the
/// copies cost a few hundred bytes instead.
fn detach(mut parts: Parts) -> Parts {
    let mut headers = HeaderMap::with_capacity(parts.headers.len());
    for (name, value) in &parts.headers {
        let mut copy = HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
        copy.set_sensitive(value.is_sensitive());
        headers.append(name.clone(), copy);
    }
    parts.headers = headers;
    if let Ok(uri) = Uri::try_from(parts.uri.to_string()) {
        parts.uri = uri;
    }
    parts
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

    // A wrapper: inlined, so the handler's future is polled straight from the session task.
    #[inline]
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

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn the_handshake_does_not_keep_the_servers_read_buffer_alive() {
        // What hyper does: header values and the URI are slices of its read buffer.
        let buffer = Bytes::from(b"GET /chat?room=1 HTTP/1.1\r\nx-token: secret\r\n".repeat(100));
        let in_buffer = |p: *const u8| buffer.as_ptr_range().contains(&p);
        let mut request = http::Request::new(());
        *request.uri_mut() = Uri::from_maybe_shared(buffer.slice(4..16)).unwrap();
        let value = HeaderValue::from_maybe_shared(buffer.slice(36..42)).unwrap();
        request.headers_mut().append("x-token", value);
        let mut sensitive = HeaderValue::from_static("s3cr3t");
        sensitive.set_sensitive(true);
        request.headers_mut().append("x-token", sensitive);
        let (parts, ()) = request.into_parts();
        assert!(in_buffer(parts.uri.path().as_ptr()));

        let handshake = Handshake::new(parts, None);
        assert_eq!(handshake.uri(), "/chat?room=1");
        assert!(!in_buffer(handshake.uri().path().as_ptr()));
        let values: Vec<_> = handshake.headers().get_all("x-token").iter().collect();
        assert_eq!(values, ["secret", "s3cr3t"]);
        assert!(!in_buffer(values[0].as_bytes().as_ptr()));
        assert!(values[1].is_sensitive());
    }
}
