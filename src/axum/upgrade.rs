//! [`WebSocketUpgrade`]: axum's extractor, on the layer's handshake checks, response and
//! session task.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum_core::Error;
use axum_core::body::Body;
use axum_core::extract::FromRequestParts;
use axum_core::response::Response;
use http::header::{HeaderValue, SEC_WEBSOCKET_PROTOCOL};
use http::request::Parts;
use http::{Method, Version};
use hyper::upgrade::OnUpgrade;

use super::rejection::{
    ConnectionNotUpgradable, InvalidConnectionHeader, InvalidProtocolPseudoheader,
    InvalidUpgradeHeader, MethodNotConnect, MethodNotGet, ShuttingDown, WebSocketUpgradeRejection,
};
use super::settings::UpgradeSettings;
use super::socket::WebSocket;
use crate::error::BoxError;
use crate::handshake::{self, headers::list_elements};
use crate::io::UpgradedIo;
use crate::proto::{self, Config};
use crate::shutdown::SessionGuard;
use crate::upgrade::{self, SocketSetup, Start};

/// The extractor that accepts a WebSocket handshake: axum's `WebSocketUpgrade`, on this
/// crate's engine.
///
/// Take it in a handler beside any other extractor, set it up with the builder methods, and
/// return [`on_upgrade`](Self::on_upgrade)'s response; the callback then runs with the
/// [`WebSocket`] in a task of its own. On HTTP/1.1 the handshake is a `GET`, on HTTP/2 (RFC
/// 8441) a `CONNECT`: route it with axum's `any` to take both.
///
/// ```
/// use axum::{Router, extract::State, response::Response, routing::any};
/// use tower_ws::axum::{Message, WebSocket, WebSocketUpgrade};
///
/// async fn handler(ws: WebSocketUpgrade, State(greeting): State<&'static str>) -> Response {
///     ws.protocols(["chat"]).on_upgrade(move |socket| greet(socket, greeting))
/// }
///
/// async fn greet(mut socket: WebSocket, greeting: &'static str) {
///     if socket.send(Message::text(greeting)).await.is_err() {
///         return;
///     }
///     while let Some(Ok(message)) = socket.recv().await {
///         if let Message::Text(text) = message {
///             let _ = socket.send(Message::text(format!("you said: {text}"))).await;
///         }
///     }
/// }
///
/// let app: Router = Router::new().route("/ws", any(handler)).with_state("hello");
/// # let _ = app;
/// ```
///
/// Extraction runs this crate's strict handshake checks (see
/// [`rejection`](super::rejection)), including the origin policy of the
/// [`UpgradeSettings`] layer (by default, web pages of the same host only). The engine config
/// starts from those settings; axum's builder methods and [`config`](Self::config),
/// [`keepalive`](Self::keepalive) and `deflate` change it for this socket.
///
/// When the callback returns, a socket it left open is closed with 1000 (normal closure); a
/// panic in it closes the socket with 1011 (internal error).
#[must_use]
pub struct WebSocketUpgrade<F = DefaultOnFailedUpgrade> {
    config: Config,
    /// The chosen subprotocol.
    protocol: Option<HeaderValue>,
    /// `None` on HTTP/2.
    key: Option<HeaderValue>,
    /// The client's subprotocols, sorted, without repeats (as axum's set of them).
    requested: Box<[HeaderValue]>,
    /// The client's `Sec-WebSocket-Extensions` lines.
    #[cfg(feature = "deflate")]
    extensions: Box<[HeaderValue]>,
    on_upgrade: OnUpgrade,
    on_failed_upgrade: F,
    guard: SessionGuard,
    span: tracing::Span,
    peer_known: bool,
}

impl<F> fmt::Debug for WebSocketUpgrade<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocketUpgrade")
            .field("config", &self.config)
            .field("protocol", &self.protocol)
            .field("sec_websocket_key", &self.key)
            .field("sec_websocket_protocol", &self.requested)
            .finish_non_exhaustive()
    }
}

impl<F> WebSocketUpgrade<F> {
    /// How many bytes to ask the transport for at a time ([`Config::read_buffer_size`]).
    ///
    /// Default: 8 KiB (axum: 128 KiB). An idle socket holds no read buffer either way here.
    pub fn read_buffer_size(mut self, size: usize) -> Self {
        self.config = self.config.read_buffer_size(size);
        self
    }

    /// How many queued bytes make a send write at once while more received messages wait to
    /// be read ([`Config::flush_threshold`]); the queue is always written before the socket
    /// waits for input, and by every `flush`.
    ///
    /// Default: 64 KiB (axum: 128 KiB).
    pub fn write_buffer_size(mut self, size: usize) -> Self {
        self.config = self.config.flush_threshold(size);
        self
    }

    /// The write queue's high-water mark ([`Config::write_buffer_high_water`]): past it,
    /// `send` waits for the peer to read (or, per [`Config::backpressure`], refuses the
    /// message or drops the peer).
    ///
    /// Default: 128 KiB (axum: no limit, and it errors rather than waits when one is set).
    pub fn max_write_buffer_size(mut self, max: usize) -> Self {
        self.config = self.config.write_buffer_high_water(max);
        self
    }

    /// The largest message accepted, in bytes ([`Config::max_message_size`]); a bigger one
    /// fails the connection with 1009.
    ///
    /// Default: 16 MiB (axum: 64 MiB).
    pub fn max_message_size(mut self, max: usize) -> Self {
        self.config = self.config.max_message_size(max);
        self
    }

    /// The largest frame accepted, in bytes ([`Config::max_frame_size`]).
    ///
    /// Default: 16 MiB, as axum.
    pub fn max_frame_size(mut self, max: usize) -> Self {
        self.config = self.config.max_frame_size(max);
        self
    }

    /// Kept for axum's API; **this engine never accepts unmasked frames from a client**,
    /// whatever this says: RFC 6455 requires the server to fail such a connection (1002), and
    /// that is what happens. Accepting them would let a client choose the bytes a proxy in
    /// between sees.
    pub fn accept_unmasked_frames(self, accept: bool) -> Self {
        if accept {
            tracing::debug!(
                "accept_unmasked_frames(true) has no effect: unmasked client frames still \
                 fail the connection"
            );
        }
        self
    }

    /// The whole engine configuration for this socket, replacing what the
    /// [`UpgradeSettings`] and earlier builder calls set. Not in axum.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Pings after `interval` without input and fails the connection after `interval +
    /// timeout` without any ([`Config::keepalive`]). Not in axum; default off.
    pub fn keepalive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.config = self.config.keepalive(interval, timeout);
        self
    }

    /// Accepts permessage-deflate (RFC 7692) with these settings when the client offers it
    /// ([`Config::deflate`]). Not in axum (tungstenite has no compression); default off.
    #[cfg(feature = "deflate")]
    #[cfg_attr(docsrs, doc(cfg(feature = "deflate")))]
    pub fn deflate(mut self, deflate: proto::DeflateConfig) -> Self {
        self.config = self.config.deflate(deflate);
        self
    }

    /// Chooses the subprotocol: the first of `protocols` (most preferred first) that the
    /// client offered, compared exactly; none if the client offered none of them.
    pub fn protocols<I>(mut self, protocols: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<std::borrow::Cow<'static, str>>,
    {
        self.protocol = protocols.into_iter().find_map(|protocol| {
            let protocol = protocol.into();
            self.requested
                .iter()
                .find(|offered| offered.as_bytes() == protocol.as_bytes())
                .cloned()
        });
        self
    }

    /// The subprotocols the client offered (`Sec-WebSocket-Protocol`), in sorted order and
    /// without repeats, as axum gives them.
    pub fn requested_protocols(&self) -> impl Iterator<Item = &HeaderValue> {
        self.requested.iter()
    }

    /// Sets the chosen subprotocol, replacing what [`protocols`](Self::protocols) chose. It is
    /// sent as it is: browsers fail the connection if it is not one they offered.
    pub fn set_selected_protocol(&mut self, protocol: HeaderValue) {
        self.protocol = Some(protocol);
    }

    /// The chosen subprotocol, if any.
    pub fn selected_protocol(&self) -> Option<&HeaderValue> {
        self.protocol.as_ref()
    }

    /// Calls `callback` if the connection cannot be taken over after the response (the client
    /// went away before the upgrade completed). By default the failure is only logged.
    pub fn on_failed_upgrade<C>(self, callback: C) -> WebSocketUpgrade<C>
    where
        C: OnFailedUpgrade,
    {
        WebSocketUpgrade {
            config: self.config,
            protocol: self.protocol,
            key: self.key,
            requested: self.requested,
            #[cfg(feature = "deflate")]
            extensions: self.extensions,
            on_upgrade: self.on_upgrade,
            on_failed_upgrade: callback,
            guard: self.guard,
            span: self.span,
            peer_known: self.peer_known,
        }
    }

    /// Accepts the handshake: returns the response (101 on HTTP/1.1, 200 on HTTP/2) and, once
    /// the connection is handed over, runs `callback` with the socket in a task of its own.
    #[must_use = "to set up the WebSocket connection, this response must be returned"]
    pub fn on_upgrade<C, Fut>(self, callback: C) -> Response
    where
        C: FnOnce(WebSocket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
        F: OnFailedUpgrade,
    {
        #[cfg_attr(
            not(feature = "deflate"),
            expect(unused_mut, reason = "only deflate adds headers")
        )]
        let mut response = handshake::accept_response(self.key.as_ref(), self.protocol.clone());
        #[cfg(feature = "deflate")]
        let deflate = self
            .config
            .get_deflate()
            .and_then(|config| handshake::deflate::accept(self.extensions.iter(), config))
            .map(|accepted| {
                response
                    .headers_mut()
                    .insert(http::header::SEC_WEBSOCKET_EXTENSIONS, accepted.response);
                accepted.params
            });
        if let Some(protocol) = &self.protocol {
            self.span
                .record("protocol", protocol.to_str().unwrap_or_default());
        }
        self.span
            .in_scope(|| tracing::debug!("websocket handshake accepted"));
        let setup = SocketSetup {
            #[cfg(feature = "deflate")]
            deflate,
            peer_known: self.peer_known,
        };
        let session = Callback {
            run: callback,
            on_failed_upgrade: self.on_failed_upgrade,
            protocol: self.protocol,
        };
        upgrade::spawn(
            self.on_upgrade,
            session,
            setup,
            self.config,
            self.guard,
            self.span,
        );
        response.map(|_| Body::empty())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for WebSocketUpgrade<DefaultOnFailedUpgrade> {
    type Rejection = WebSocketUpgradeRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let settings = UpgradeSettings::of(&parts.extensions);
        let key = match handshake::validate(parts, &settings.origin)? {
            Some(valid) => valid.key.cloned(),
            None => return Err(not_a_handshake(parts)),
        };
        if tokio::runtime::Handle::try_current().is_err() {
            tracing::error!("websocket upgrade needs a tokio runtime to run the socket in");
            return Err(ConnectionNotUpgradable.into());
        }
        let guard = settings.tracker.enter().ok_or(ShuttingDown)?;
        let config = settings.config;
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or(ConnectionNotUpgradable)?;
        Ok(Self {
            config,
            protocol: None,
            key,
            requested: requested_protocols(parts),
            #[cfg(feature = "deflate")]
            extensions: parts
                .headers
                .get_all(http::header::SEC_WEBSOCKET_EXTENSIONS)
                .iter()
                .cloned()
                .collect(),
            on_upgrade,
            on_failed_upgrade: DefaultOnFailedUpgrade,
            guard,
            span: upgrade::session_span(parts, None),
            peer_known: parts.extensions.get::<std::net::SocketAddr>().is_some(),
        })
    }
}

/// axum's rejection of a request that does not ask for a WebSocket at all, by the first check
/// it fails in axum's order.
fn not_a_handshake(parts: &Parts) -> WebSocketUpgradeRejection {
    if parts.version <= Version::HTTP_11 {
        if parts.method != Method::GET {
            MethodNotGet.into()
        } else if !handshake::has_connection_upgrade(parts) {
            InvalidConnectionHeader.into()
        } else {
            InvalidUpgradeHeader.into()
        }
    } else if parts.method != Method::CONNECT {
        MethodNotConnect.into()
    } else {
        InvalidProtocolPseudoheader.into()
    }
}

/// The offered subprotocols, sorted and without repeats; no allocation when there are none.
fn requested_protocols(parts: &Parts) -> Box<[HeaderValue]> {
    let mut requested: Vec<HeaderValue> = list_elements(&parts.headers, &SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|name| HeaderValue::from_bytes(name).ok())
        .collect();
    requested.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    requested.dedup();
    requested.into_boxed_slice()
}

/// What to do when the connection cannot be taken over after the handshake response: see
/// [`WebSocketUpgrade::on_failed_upgrade`]. Implemented for every `FnOnce(axum::Error)`.
pub trait OnFailedUpgrade: Send + 'static {
    /// Called with the error (hyper's, inside [`axum_core::Error`]).
    fn call(self, error: Error);
}

impl<F> OnFailedUpgrade for F
where
    F: FnOnce(Error) + Send + 'static,
{
    fn call(self, error: Error) {
        self(error);
    }
}

/// The default [`OnFailedUpgrade`]: does nothing (the failure is logged at WARN already).
#[derive(Debug)]
#[non_exhaustive]
pub struct DefaultOnFailedUpgrade;

impl OnFailedUpgrade for DefaultOnFailedUpgrade {
    fn call(self, _: Error) {}
}

/// The extractor's session: the user's callback, given axum's [`WebSocket`].
struct Callback<C, F> {
    run: C,
    on_failed_upgrade: F,
    protocol: Option<HeaderValue>,
}

impl<C, Fut, F> Start for Callback<C, F>
where
    C: FnOnce(WebSocket) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
    F: OnFailedUpgrade,
{
    type Error = Infallible;
    type Future = Infallibly<Fut>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn start(self, socket: proto::WebSocket<UpgradedIo>) -> Self::Future {
        Infallibly {
            future: (self.run)(WebSocket::new(socket, self.protocol)),
        }
    }

    fn upgrade_failed(self, error: hyper::Error) {
        self.on_failed_upgrade.call(Error::new(error));
    }
}

pin_project_lite::pin_project! {
    /// A callback's future, as a session future that cannot fail.
    struct Infallibly<Fut> {
        #[pin]
        future: Fut,
    }
}

impl<Fut: Future<Output = ()>> Future for Infallibly<Fut> {
    type Output = Result<(), Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().future.poll(cx).map(Ok)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::shutdown::Tracker;

    /// axum's idiom: an `async fn` taking the socket by value.
    async fn echo(mut socket: WebSocket) {
        while let Some(msg) = socket.recv().await {
            let Ok(msg) = msg else {
                return;
            };
            if socket.send(msg).await.is_err() {
                return;
            }
        }
    }

    fn task_size<S: Start>(session: S) -> usize {
        let tracker = Arc::new(Tracker::default());
        let mut request = http::Request::new(());
        let task = upgrade::session_task(
            hyper::upgrade::on(&mut request),
            session,
            SocketSetup::default(),
            Config::default(),
            tracker.enter().unwrap(),
        );
        std::mem::size_of_val(&task)
    }

    #[test]
    fn an_extractor_socket_costs_what_a_layer_socket_costs() {
        let extractor = task_size(Callback {
            run: echo,
            on_failed_upgrade: DefaultOnFailedUpgrade,
            protocol: None,
        }) + WebSocket::HEAP_SIZE;
        let handler = crate::handler_fn(|crate::Session { mut socket, .. }| async move {
            while let Some(Ok(message)) = socket.recv().await {
                if socket.send(message).await.is_err() {
                    return;
                }
            }
        });
        let (parts, ()) = http::Request::new(()).into_parts();
        let layer = task_size(upgrade::LayerSession {
            handler,
            handshake: crate::Handshake::new(parts, None),
        });
        // Each idle socket is its session task: the extractor's (with the socket's box) may
        // exceed the layer's by a little, not by a second copy of the socket.
        assert!(
            extractor <= layer + 192,
            "extractor {extractor} bytes, layer {layer} bytes"
        );
    }
}
