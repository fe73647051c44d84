//! [`UpgradeSettings`]: what the extractor takes beyond axum's per-handler builder, for every
//! route under one layer: the origin policy, the engine [`Config`], and a [`Shutdown`] handle.

use std::fmt;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

use crate::handshake::AllowOrigin;
use crate::proto::Config;
use crate::shutdown::{Shutdown, Tracker};

/// Settings for every [`WebSocketUpgrade`](super::WebSocketUpgrade) under this layer, beyond
/// what axum's API sets per handler: the [`AllowOrigin`] policy, the engine [`Config`]
/// (limits, keepalive, permessage-deflate) the extractor starts from, and a [`Shutdown`] that
/// reaches the sockets these extractors upgraded.
///
/// It is a tower [`Layer`]: put it on the router or on the route, and it reaches the
/// extractor through the request extensions (an `Arc` clone per request). Without it the
/// extractor uses [`UpgradeSettings::default`].
///
/// ```
/// use std::time::Duration;
/// use axum::{Router, routing::any};
/// use tower_ws::axum::{UpgradeSettings, WebSocket, WebSocketUpgrade};
/// use tower_ws::{AllowOrigin, Config};
///
/// async fn handler(ws: WebSocketUpgrade) -> axum::response::Response {
///     ws.on_upgrade(|_socket: WebSocket| async {})
/// }
///
/// let settings = UpgradeSettings::new()
///     .allow_origin(AllowOrigin::list(["https://app.example.com"])?)
///     .config(Config::default().keepalive(Duration::from_secs(20), Duration::from_secs(10)));
/// let shutdown = settings.shutdown_handle();
/// let app: Router = Router::new().route("/ws", any(handler)).layer(settings);
/// // On a signal: `shutdown.shutdown(Duration::from_secs(10)).await` closes every socket
/// // with 1001 (going away).
/// # let _ = (app, shutdown);
/// # Ok::<(), tower_ws::ConfigError>(())
/// ```
#[derive(Clone)]
#[must_use]
pub struct UpgradeSettings {
    shared: Arc<Shared>,
}

#[derive(Debug, Clone, Default)]
pub(super) struct Shared {
    pub(super) origin: AllowOrigin,
    pub(super) config: Config,
    pub(super) tracker: Arc<Tracker>,
}

/// The settings of extractors under no [`UpgradeSettings`] layer: one process-wide tracker,
/// which nothing shuts down.
static DEFAULT: LazyLock<UpgradeSettings> = LazyLock::new(UpgradeSettings::new);

impl Default for UpgradeSettings {
    fn default() -> Self {
        Self::new()
    }
}

impl UpgradeSettings {
    /// The defaults: [`AllowOrigin::same_host`], [`Config::default`], and a shutdown handle
    /// of its own.
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared::default()),
        }
    }

    /// Which `Origin`s may open a socket; refused ones get 403
    /// ([`OriginNotAllowed`](super::rejection::OriginNotAllowed)).
    ///
    /// Default: [`AllowOrigin::same_host`] (axum checks no origin: [`AllowOrigin::any`] is
    /// axum's behaviour). See [`AllowOrigin`] for why the check matters.
    pub fn allow_origin(mut self, policy: AllowOrigin) -> Self {
        Arc::make_mut(&mut self.shared).origin = policy;
        self
    }

    /// The engine configuration each extractor starts from; axum's builder methods and
    /// [`WebSocketUpgrade::config`](super::WebSocketUpgrade::config) change it per handler.
    ///
    /// Default: [`Config::default`]. With the `deflate` feature, [`Config::deflate`] here turns
    /// permessage-deflate on for every route under the layer.
    pub fn config(mut self, config: Config) -> Self {
        Arc::make_mut(&mut self.shared).config = config;
        self
    }

    /// A handle that shuts down every socket upgraded by an extractor under this layer (or
    /// its clones): see [`Shutdown`]. From its first call on, new handshakes are refused with
    /// 503 ([`ShuttingDown`](super::rejection::ShuttingDown)).
    pub fn shutdown_handle(&self) -> Shutdown {
        Shutdown::new(Arc::clone(&self.shared.tracker))
    }

    /// The settings of a request: its layer's, or the defaults.
    pub(super) fn of(extensions: &http::Extensions) -> &Shared {
        &extensions.get::<Self>().unwrap_or(&DEFAULT).shared
    }
}

impl fmt::Debug for UpgradeSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpgradeSettings")
            .field("origin", &self.shared.origin)
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for UpgradeSettings {
    type Service = WithUpgradeSettings<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WithUpgradeSettings {
            inner,
            settings: self.clone(),
        }
    }
}

/// The service made by the [`UpgradeSettings`] layer: puts the settings in each request's
/// extensions, for the extractor.
#[derive(Debug, Clone)]
pub struct WithUpgradeSettings<S> {
    inner: S,
    settings: UpgradeSettings,
}

impl<S, B> Service<http::Request<B>> for WithUpgradeSettings<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        request.extensions_mut().insert(self.settings.clone());
        self.inner.call(request)
    }
}
