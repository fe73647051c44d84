//! [`UpgradeLayer`]: the builder of WebSocket upgrade middleware.

use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use crate::handshake::{AllowOrigin, DefaultOnReject, OnReject, Protocols, Rules};
use crate::proto::Config;
use crate::service::Upgrade;
use crate::shutdown::{Shutdown, Tracker};

/// A tower [`Layer`] that answers WebSocket handshakes and runs a [`Handler`] for each
/// session; every other request goes to the inner service untouched.
///
/// ```
/// use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
/// use tower_ws::{Session, UpgradeLayer, handler_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let echo = handler_fn(|Session { mut socket, .. }| async move {
///     while let Some(Ok(message)) = socket.recv().await {
///         if message.is_text() || message.is_binary() {
///             socket.send(message).await?;
///         }
///     }
///     Ok::<_, tower_ws::Error>(())
/// });
/// let app = service_fn(|_: http::Request<String>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("not a websocket")))
/// });
/// let mut service = ServiceBuilder::new().layer(UpgradeLayer::new(echo)).service(app);
///
/// // An ordinary request reaches the inner service.
/// let response = service.ready().await?.call(http::Request::new(String::new())).await?;
/// assert_eq!(response.status(), 200);
///
/// // A handshake with a bad key is refused, with the reason.
/// let handshake = http::Request::get("/")
///     .header("connection", "upgrade")
///     .header("upgrade", "websocket")
///     .header("sec-websocket-version", "13")
///     .header("sec-websocket-key", "too short")
///     .body(String::new())?;
/// let response = service.ready().await?.call(handshake).await?;
/// assert_eq!(response.status(), 400);
/// # Ok(())
/// # }
/// ```
///
/// # Settings
///
/// - [`config`](Self::config): the engine's limits and timeouts for each socket.
/// - [`protocols`](Self::protocols) and [`require_protocol`](Self::require_protocol):
///   subprotocol negotiation.
/// - [`allow_origin`](Self::allow_origin): which web pages may connect (by default, pages of
///   the same host, and non-browser clients).
/// - [`on_reject`](Self::on_reject): the response to refused handshakes.
/// - [`shutdown_handle`](Self::shutdown_handle): graceful shutdown of the sessions.
///
/// [`Handler`]: crate::Handler
#[must_use]
pub struct UpgradeLayer<H> {
    handler: H,
    shared: Arc<Shared>,
}

/// What every service of a layer shares.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) rules: Rules,
    pub(crate) config: Config,
    pub(crate) on_reject: Arc<dyn OnReject>,
    pub(crate) tracker: Arc<Tracker>,
}

impl Shared {
    pub(crate) fn new() -> Self {
        Self {
            rules: Rules::default(),
            config: Config::default(),
            on_reject: Arc::new(DefaultOnReject),
            tracker: Arc::default(),
        }
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("rules", &self.rules)
            .field("config", &self.config)
            .field("tracker", &self.tracker)
            .finish_non_exhaustive()
    }
}

impl<H> UpgradeLayer<H> {
    /// A layer that runs `handler` for each WebSocket session, with the default settings.
    pub fn new(handler: H) -> Self {
        Self {
            handler,
            shared: Arc::new(Shared::new()),
        }
    }

    /// The engine configuration of each socket: message and frame limits, write buffering,
    /// close timeout, keepalive.
    ///
    /// Default: [`Config::default`], whose every limit is on.
    pub fn config(mut self, config: Config) -> Self {
        let shared = Arc::make_mut(&mut self.shared);
        #[cfg(feature = "deflate")]
        {
            shared.rules.deflate = config.get_deflate().copied();
        }
        shared.config = config;
        self
    }

    /// Declines permessage-deflate for requests that match `predicate`, even when the client
    /// offers it and [`Config::deflate`] turns it on: for user agents known to mishandle
    /// compression, or paths whose messages do not compress.
    ///
    /// ```
    /// use tower_ws::{Config, DeflateConfig, UpgradeLayer, handler_fn};
    /// # let handler = handler_fn(|_: tower_ws::Session| async {});
    ///
    /// let layer = UpgradeLayer::new(handler)
    ///     .config(Config::default().deflate(DeflateConfig::default()))
    ///     .decline_deflate_if(|request| {
    ///         request
    ///             .headers
    ///             .get(http::header::USER_AGENT)
    ///             .is_some_and(|ua| ua.as_bytes().starts_with(b"BrokenClient/1."))
    ///     });
    /// # let _ = layer;
    /// ```
    #[cfg(feature = "deflate")]
    #[cfg_attr(docsrs, doc(cfg(feature = "deflate")))]
    pub fn decline_deflate_if(
        mut self,
        predicate: impl Fn(&http::request::Parts) -> bool + Send + Sync + 'static,
    ) -> Self {
        Arc::make_mut(&mut self.shared).rules.decline_deflate =
            Some(crate::handshake::DeclineDeflate(Arc::new(predicate)));
        self
    }

    /// The subprotocols the server speaks, most preferred first.
    ///
    /// Default: none; the response never carries `Sec-WebSocket-Protocol`.
    pub fn protocols(mut self, protocols: Protocols) -> Self {
        Arc::make_mut(&mut self.shared).rules.protocols = protocols;
        self
    }

    /// Whether a handshake that offers none of the [`protocols`](Self::protocols) is refused
    /// (400, [`HandshakeErrorKind::NoSubprotocol`](crate::HandshakeErrorKind::NoSubprotocol))
    /// rather than accepted without a subprotocol.
    ///
    /// Default: `false`, as RFC 6455 has it: the server answers without the header and the
    /// client decides whether to go on. Turn it on when a session without a subprotocol would
    /// fail anyway; 400 (not 426) because the client's request is well-formed but asks for
    /// something this server does not offer, and no other HTTP status names that better.
    pub fn require_protocol(mut self, required: bool) -> Self {
        Arc::make_mut(&mut self.shared).rules.require_protocol = required;
        self
    }

    /// Which `Origin`s may open a socket.
    ///
    /// Default: [`AllowOrigin::same_host`]: requests without `Origin` (not browsers) and
    /// pages from the same host. See [`AllowOrigin`] for why this matters.
    pub fn allow_origin(mut self, policy: AllowOrigin) -> Self {
        Arc::make_mut(&mut self.shared).rules.origin = policy;
        self
    }

    /// The response to refused handshakes.
    ///
    /// Default: [`DefaultOnReject`]. Whatever the responder returns, the layer puts the
    /// [`HandshakeError`](crate::HandshakeError) in its extensions.
    pub fn on_reject(mut self, responder: impl OnReject) -> Self {
        Arc::make_mut(&mut self.shared).on_reject = Arc::new(responder);
        self
    }

    /// A handle that shuts down every session of this layer gracefully: see [`Shutdown`].
    ///
    /// The layer, its clones and every service they make share one handle.
    pub fn shutdown_handle(&self) -> Shutdown {
        Shutdown::new(Arc::clone(&self.shared.tracker))
    }
}

impl<H: Clone> Clone for UpgradeLayer<H> {
    fn clone(&self) -> Self {
        Self {
            handler: self.handler.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<H> fmt::Debug for UpgradeLayer<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpgradeLayer")
            .field("handler", &std::any::type_name::<H>())
            .field("shared", &self.shared)
            .finish()
    }
}

impl<S, H: Clone> Layer<S> for UpgradeLayer<H> {
    type Service = Upgrade<S, H>;

    fn layer(&self, inner: S) -> Self::Service {
        Upgrade::from_parts(inner, self.handler.clone(), Arc::clone(&self.shared))
    }
}
