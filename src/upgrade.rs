//! After the handshake response: take the connection from hyper, build the [`WebSocket`], run
//! the handler, and close what the handler left open.
//!
//! Memory matters here: one session task per socket, alive as long as the socket. The task's
//! future is laid out so that each value is stored once: the socket is built and handed to the
//! handler in synchronous code ([`start`]), and the futures awaited in turn (readiness, upgrade,
//! handler, final close) share their space.

use std::cell::Cell;
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use hyper::upgrade::OnUpgrade;
use tokio::sync::futures::Notified;
use tracing::Instrument;

use crate::error::BoxError;
use crate::handler::{Handler, Handshake, Session};
use crate::io::UpgradedIo;
use crate::proto::core::Core;
use crate::proto::{CloseCode, Closer, Config, Role, WebSocket};
use crate::shutdown::{SessionGuard, Tracker};

tokio::task_local! {
    /// Where a socket dropped by its handler while still open leaves its connection, so the
    /// session task can close it properly. Boxed, so the slot costs a pointer per session.
    static PARKED: Cell<Option<Box<Core<UpgradedIo>>>>;
}

/// The park hook of session sockets: runs when the socket (or its last split half) is
/// dropped. Inside its session task the connection is kept for [`run`] to close; anywhere else
/// (the handler moved the socket into a task of its own) the socket is simply dropped.
fn park(core: &mut Core<UpgradedIo>) {
    let _ = PARKED.try_with(|slot| {
        if let Some(open) = core.detach(UpgradedIo::detached()) {
            slot.set(Some(Box::new(open)));
        }
    });
}

/// How the handler ended.
#[derive(Debug, Clone, Copy)]
enum Ending {
    Returned,
    Failed,
}

/// The close reason sent when the layer shuts down.
const SHUTTING_DOWN: &str = "server shutting down";

/// What a session task starts on its socket: the layer's [`Handler`] with the request's
/// [`Handshake`] ([`LayerSession`]), or the axum extractor's callback.
pub(crate) trait Start: Send + 'static {
    /// What the started session's future fails with.
    type Error: Into<BoxError>;
    /// The session, running until it returns.
    type Future: Future<Output = Result<(), Self::Error>> + Send + 'static;

    /// Whether the session can start (a tower service's readiness).
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>>;

    /// Starts the session on `socket`.
    fn start(self, socket: WebSocket<UpgradedIo>) -> Self::Future;

    /// hyper could not hand the connection over (it is logged before this is called).
    fn upgrade_failed(self, error: hyper::Error);
}

/// The layer's session: its [`Handler`], called with a [`Session`].
pub(crate) struct LayerSession<H> {
    pub(crate) handler: H,
    pub(crate) handshake: Handshake,
}

impl<H: Handler> Start for LayerSession<H> {
    type Error = H::Error;
    type Future = H::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.handler.poll_ready(cx).map_err(Into::into)
    }

    fn start(mut self, socket: WebSocket<UpgradedIo>) -> Self::Future {
        self.handler.call(Session::new(socket, self.handshake))
    }

    fn upgrade_failed(self, _: hyper::Error) {}
}

/// How to build a session's socket, beyond the engine config: what the handshake negotiated
/// and whether the server already named the peer.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SocketSetup {
    /// permessage-deflate, if negotiated.
    #[cfg(feature = "deflate")]
    pub(crate) deflate: Option<crate::proto::DeflateParams>,
    /// The request extensions held the peer's `SocketAddr` (already in the span).
    pub(crate) peer_known: bool,
}

/// The session task: spawned when the handshake is accepted, before the response is written.
pub(crate) fn spawn<S: Start>(
    on_upgrade: OnUpgrade,
    session: S,
    setup: SocketSetup,
    config: Config,
    guard: SessionGuard,
    span: tracing::Span,
) {
    let task = session_task(on_upgrade, session, setup, config, guard);
    // A disabled span (no subscriber wants DEBUG here) is not kept: it would cost each socket
    // its 40 bytes for as long as the session lives, and a span enter and exit per poll.
    if span.is_disabled() {
        tokio::spawn(task);
    } else {
        tokio::spawn(task.instrument(span));
    }
}

/// The DEBUG-level span a session runs in (peer, path, HTTP version, subprotocol). DEBUG, like
/// tower-http's `TraceLayer` spans: an open span costs memory for as long as the session
/// lives, so it exists only where someone asked to see it.
pub(crate) fn session_span(
    parts: &http::request::Parts,
    protocol: Option<&http::HeaderValue>,
) -> tracing::Span {
    let span = tracing::debug_span!(
        "websocket",
        peer = tracing::field::Empty,
        path = parts.uri.path(),
        version = ?parts.version,
        protocol = protocol.and_then(|p| p.to_str().ok()),
    );
    if let Some(peer) = parts.extensions.get::<SocketAddr>() {
        span.record("peer", tracing::field::display(peer));
    }
    span
}

/// What a session task needs only until its socket is built. Boxed, and taken out of the box
/// on the first poll: the arguments of an async fn keep their space for the whole task, and
/// the task lives as long as the socket.
struct Begin<S> {
    on_upgrade: OnUpgrade,
    session: S,
    setup: SocketSetup,
    config: Config,
}

async fn run<S: Start>(mut begin: Box<Begin<S>>, guard: SessionGuard) {
    let tracker = guard.tracker();
    // Readiness first, so that nothing but hyper's small upgrade handle waits with it.
    let ready: Result<(), BoxError> =
        match Watched::new(tracker, None, poll_fn(|cx| begin.session.poll_ready(cx))).await {
            Some(ready) => ready,
            None => return,
        };
    let upgraded = match Watched::new(tracker, None, &mut begin.on_upgrade).await {
        Some(Ok(upgraded)) => upgraded,
        Some(Err(error)) => {
            tracing::warn!(
                error = %error,
                "websocket upgrade failed: the connection closed before the handshake \
                 completed, or the server does not hand over upgraded connections (hyper: \
                 `serve_connection(..).with_upgrades()`, or `serve_connection_with_upgrades`)"
            );
            unbox(begin).session.upgrade_failed(error);
            return;
        }
        None => return,
    };
    // Out of the box in synchronous code: nothing of it is kept across an await.
    let Begin {
        session,
        setup,
        config,
        ..
    } = unbox(begin);
    let (code, reason, parked) = if let Err(error) = ready {
        log_error("websocket handler not ready", &*error);
        let socket = socket(upgraded, setup, config);
        (CloseCode::INTERNAL_ERROR, "", Some(Box::new(socket)))
    } else if tracker.is_closing() {
        let socket = socket(upgraded, setup, config);
        (CloseCode::GOING_AWAY, SHUTTING_DOWN, Some(Box::new(socket)))
    } else {
        match start(tracker, session, upgraded, setup, config).await {
            None => {
                tracing::debug!("websocket session dropped at the shutdown deadline");
                return;
            }
            Some((ending, parked)) => {
                let code = match ending {
                    Ending::Returned => CloseCode::NORMAL,
                    Ending::Failed => CloseCode::INTERNAL_ERROR,
                };
                (
                    code,
                    "",
                    parked.map(|core| Box::new(WebSocket::from_core(*core))),
                )
            }
        }
    };
    if let Some(socket) = parked {
        // Still bounded by the deadline: a peer that never answers the close must not hold
        // shutdown up.
        if Watched::new(tracker, None, close(socket, code, reason))
            .await
            .is_none()
        {
            tracing::debug!("websocket session dropped at the shutdown deadline");
            return;
        }
    }
    tracing::debug!("websocket session ended");
}

/// The value out of `boxed`, the box freed now (moving out of a box in place would free it
/// only when the task ends).
#[expect(
    clippy::boxed_local,
    reason = "taking the box is the point: it is freed on return"
)]
fn unbox<T>(boxed: Box<T>) -> T {
    *boxed
}

/// The session's socket over the connection hyper handed over.
fn socket(
    upgraded: hyper::upgrade::Upgraded,
    setup: SocketSetup,
    config: Config,
) -> WebSocket<UpgradedIo> {
    let (io, read_buf) = UpgradedIo::from_upgraded(upgraded);
    if !setup.peer_known
        && let Some(peer) = io.peer_addr()
    {
        tracing::Span::current().record("peer", tracing::field::display(peer));
    }
    tracing::debug!("websocket session started");
    let socket = WebSocket::from_partially_read(io, read_buf, Role::Server, config);
    #[cfg(feature = "deflate")]
    if let Some(params) = setup.deflate {
        return socket.with_deflate(params);
    }
    socket
}

/// Builds the socket, hands it to the session, and returns the session's future, watched for
/// shutdown, inside the [`PARKED`] scope. Synchronous, so the socket is never stored twice.
fn start<S: Start>(
    tracker: &Tracker,
    session: S,
    upgraded: hyper::upgrade::Upgraded,
    setup: SocketSetup,
    config: Config,
) -> Watched<'_, tokio::task::futures::TaskLocalFuture<Parked, Drive<S::Future>>> {
    let mut socket = socket(upgraded, setup, config);
    let closer = socket.closer();
    socket.set_park(park);
    let future = session.start(socket);
    Watched::new(
        tracker,
        Some(closer),
        PARKED.scope(Cell::new(None), Drive::new(future)),
    )
}

type Parked = Cell<Option<Box<Core<UpgradedIo>>>>;

/// Closes `socket` with `code` (the engine bounds the wait for the peer's answer by the close
/// timeout) and logs how it went. Boxed: a socket waiting to be closed is rare, and the box
/// keeps the task small the rest of the time.
async fn close(mut socket: Box<WebSocket<UpgradedIo>>, code: CloseCode, reason: &'static str) {
    tracing::debug!(
        code = code.as_u16(),
        reason,
        "websocket closing the session"
    );
    if let Err(error) = socket.close(code, reason).await {
        tracing::debug!(error = %ErrorChain(&error), "websocket close did not complete cleanly");
    }
}

pin_project_lite::pin_project! {
    /// Runs `future` until it completes (`Some`) or the layer's shutdown deadline passes
    /// (`None`, and `future` is dropped with the task). When shutdown begins, asks the session
    /// to close with 1001 through `closer`.
    struct Watched<'a, F> {
        tracker: &'a Tracker,
        #[pin]
        changed: Notified<'a>,
        // The waker `changed` was last polled with: while the task's waker is the same, the
        // registration stands and polling `changed` again (a lock in tokio) can be skipped.
        registered: Option<Waker>,
        closer: Option<Closer>,
        #[pin]
        future: F,
    }
}

impl<'a, F> Watched<'a, F> {
    fn new(tracker: &'a Tracker, closer: Option<Closer>, future: F) -> Self {
        Self {
            // Created before the phase is first checked, so no change is missed.
            changed: tracker.changed(),
            registered: None,
            tracker,
            closer,
            future,
        }
    }
}

impl<F: Future> Future for Watched<'_, F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            if this.tracker.is_aborting() {
                return Poll::Ready(None);
            }
            if this.tracker.is_closing()
                && let Some(closer) = this.closer.take()
            {
                closer.close(CloseCode::GOING_AWAY, SHUTTING_DOWN);
            }
            if let Poll::Ready(output) = this.future.as_mut().poll(cx) {
                return Poll::Ready(Some(output));
            }
            if this
                .registered
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
                && !this.tracker.is_closing()
            {
                // Registered with this task's waker, and nothing changed since.
                return Poll::Pending;
            }
            if this.changed.as_mut().poll(cx).is_pending() {
                *this.registered = Some(cx.waker().clone());
                return Poll::Pending;
            }
            *this.registered = None;
            this.changed.set(this.tracker.changed());
        }
    }
}

pin_project_lite::pin_project! {
    /// Drives the handler's future, catching a panic; once it ends, drops it (inside the
    /// [`PARKED`] scope, so an open socket it held is parked) and takes the parked connection.
    struct Drive<F> {
        #[pin]
        future: Option<F>,
    }
}

impl<F> Drive<F> {
    fn new(future: F) -> Self {
        Self {
            future: Some(future),
        }
    }
}

impl<F, E> Future for Drive<F>
where
    F: Future<Output = Result<(), E>>,
    E: Into<BoxError>,
{
    type Output = (Ending, Option<Box<Core<UpgradedIo>>>);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut future = self.project().future;
        let Some(running) = future.as_mut().as_pin_mut() else {
            return Poll::Ready((Ending::Returned, None));
        };
        let ending = match catch_unwind(AssertUnwindSafe(|| running.poll(cx))) {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(Ok(()))) => Ending::Returned,
            Ok(Poll::Ready(Err(error))) => {
                let error: BoxError = error.into();
                if let Some(error) = error.downcast_ref::<crate::Error>() {
                    // The connection failed under the handler (the peer left or broke the
                    // protocol): the peer's doing, already reported by the engine.
                    tracing::debug!(
                        error = %ErrorChain(error),
                        "websocket handler ended by a connection error"
                    );
                } else {
                    log_error("websocket handler failed", &*error);
                }
                Ending::Failed
            }
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .copied()
                    .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                    .unwrap_or("(not a string)");
                tracing::error!(panic = message, "websocket handler panicked");
                Ending::Failed
            }
        };
        if catch_unwind(AssertUnwindSafe(|| future.set(None))).is_err() {
            tracing::error!("websocket handler future panicked while dropped");
        }
        let parked = PARKED.try_with(Cell::take).ok().flatten();
        Poll::Ready((ending, parked))
    }
}

fn log_error(what: &str, error: &(dyn std::error::Error + 'static)) {
    tracing::error!(error = %ErrorChain(error), "{what}");
}

/// Displays an error and its sources, `: `-separated.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(error) = source {
            write!(f, ": {error}")?;
            source = error.source();
        }
        Ok(())
    }
}

/// The session task's future: what [`spawn`] spawns (tests measure its size).
pub(crate) fn session_task<S: Start>(
    on_upgrade: OnUpgrade,
    session: S,
    setup: SocketSetup,
    config: Config,
    guard: SessionGuard,
) -> impl Future<Output = ()> {
    run(
        Box::new(Begin {
            on_upgrade,
            session,
            setup,
            config,
        }),
        guard,
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::handler::handler_fn;

    #[test]
    fn the_session_task_adds_little_to_the_handlers_future() {
        let handler = handler_fn(|Session { mut socket, .. }| async move {
            while let Some(Ok(message)) = socket.recv().await {
                let _ = socket.send(message).await;
            }
        });
        let handler_future = size_of_handler_future(&handler);
        let tracker = Arc::new(Tracker::default());
        let guard = tracker.enter().unwrap();
        let (parts, ()) = http::Request::new(()).into_parts();
        let mut request = http::Request::new(());
        let session = LayerSession {
            handler,
            handshake: Handshake::new(parts, None),
        };
        let task = session_task(
            hyper::upgrade::on(&mut request),
            session,
            SocketSetup::default(),
            Config::default(),
            guard,
        )
        .instrument(tracing::Span::none());
        let overhead = std::mem::size_of_val(&task) - handler_future;
        // Each session is one task for as long as its socket lives: what the layer adds to
        // the handler's own future is paid per idle socket.
        assert!(overhead <= 320, "the session task adds {overhead} bytes");
    }

    fn size_of_handler_future<H: Handler>(_: &H) -> usize {
        std::mem::size_of::<H::Future>()
    }
}
