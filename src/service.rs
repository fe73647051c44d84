//! [`Upgrade`]: the middleware service. Each request is classified, then passed through,
//! refused, or accepted with a session task spawned for it.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use hyper::upgrade::OnUpgrade;
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::handler::{Handler, Handshake};
use crate::handshake::{self, Accepted, HandshakeError, HandshakeErrorKind, Outcome};
use crate::layer::{Shared, UpgradeLayer};
use crate::upgrade::{self, LayerSession, SocketSetup};

/// WebSocket upgrade middleware: made by [`UpgradeLayer`], see there.
///
/// For each request:
///
/// - not a WebSocket handshake: the request goes to the inner service `S`, untouched (body,
///   extensions and all);
/// - a handshake that fails a check: the [rejection](crate::OnReject), with the
///   [`HandshakeError`] in its extensions;
/// - a valid handshake: `101 Switching Protocols` (HTTP/1.1) or `200` (HTTP/2), and a task
///   that runs the handler `H` on the connection once hyper hands it over.
#[derive(Debug)]
pub struct Upgrade<S, H> {
    inner: S,
    handler: H,
    shared: Arc<Shared>,
}

impl<S, H> Upgrade<S, H> {
    /// Wraps `inner`, running `handler` for each session, with the default settings. Build it
    /// through [`UpgradeLayer`] to change them or to get a [`Shutdown`](crate::Shutdown) handle.
    pub fn new(inner: S, handler: H) -> Self {
        Self::from_parts(inner, handler, Arc::new(Shared::new()))
    }

    /// A layer that wraps services in `Upgrade` with `handler`.
    pub fn layer(handler: H) -> UpgradeLayer<H> {
        UpgradeLayer::new(handler)
    }

    pub(crate) fn from_parts(inner: S, handler: H, shared: Arc<Shared>) -> Self {
        Self {
            inner,
            handler,
            shared,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, H: Clone> Clone for Upgrade<S, H> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            handler: self.handler.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S, H, ReqBody, ResBody> Service<Request<ReqBody>> for Upgrade<S, H>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    H: Handler,
{
    type Response = Response<crate::ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let (parts, body) = request.into_parts();
        match handshake::classify(&parts, &self.shared.rules) {
            Outcome::NotWebSocket => {
                ResponseFuture::inner(self.inner.call(Request::from_parts(parts, body)))
            }
            Outcome::Reject(error) => ResponseFuture::ready(self.reject(&parts, error)),
            Outcome::Accept(accepted) => {
                drop(body);
                ResponseFuture::ready(self.accept(parts, accepted))
            }
        }
    }
}

impl<S, H: Handler> Upgrade<S, H> {
    /// Spawns the session and returns the handshake's answer (or a rejection if the
    /// connection cannot be taken over).
    fn accept(&self, mut parts: http::request::Parts, accepted: Accepted) -> Response<Bytes> {
        let unavailable = HandshakeError::new(HandshakeErrorKind::UpgradeUnavailable);
        if tokio::runtime::Handle::try_current().is_err() {
            tracing::error!("websocket upgrade needs a tokio runtime to run the session in");
            return self.reject(&parts, unavailable);
        }
        let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
            tracing::error!(
                "websocket handshake without hyper's upgrade handle: the request did not come \
                 from a hyper server connection"
            );
            return self.reject(&parts, unavailable);
        };
        let Some(guard) = self.shared.tracker.enter() else {
            return self.reject(
                &parts,
                HandshakeError::new(HandshakeErrorKind::ShuttingDown),
            );
        };
        let span = upgrade::session_span(&parts, accepted.protocol.as_ref());
        span.in_scope(|| tracing::debug!("websocket handshake accepted"));
        let setup = SocketSetup {
            #[cfg(feature = "deflate")]
            deflate: accepted.deflate,
            peer_known: parts.extensions.get::<std::net::SocketAddr>().is_some(),
        };
        #[cfg_attr(
            not(feature = "deflate"),
            expect(unused_mut, reason = "only deflate adds to the handshake")
        )]
        let mut handshake = Handshake::new(parts, accepted.protocol);
        #[cfg(feature = "deflate")]
        handshake.set_deflate(accepted.deflate);
        let session = LayerSession {
            handler: self.handler.clone(),
            handshake,
        };
        upgrade::spawn(on_upgrade, session, setup, self.shared.config, guard, span);
        accepted.response
    }

    fn reject(&self, parts: &http::request::Parts, error: HandshakeError) -> Response<Bytes> {
        tracing::debug!(
            path = parts.uri.path(),
            reason = error.reason(),
            "websocket handshake refused"
        );
        let mut response = self.shared.on_reject.on_reject(&error);
        response.extensions_mut().insert(error);
        response
    }
}
