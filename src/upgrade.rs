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
use std::task::{Context, Poll};

use hyper::upgrade::OnUpgrade;
use tracing::Instrument;

use crate::error::BoxError;
use crate::handler::{Handler, Handshake, Session};
use crate::io::UpgradedIo;
use crate::proto::core::Core;
use crate::proto::{CloseCode, Config, Role, WebSocket};
use crate::shutdown::{SHUTTING_DOWN, SessionGuard};

thread_local! {
    /// Where a session socket dropped by its handler while still open leaves its connection.
    /// Armed only while [`Drive`] polls or drops a handler's future on this thread, which then
    /// keeps what was parked for [`run`] to close; a task-local would cost every session task
    /// its slot and a swap on every poll.
    static PARKING: Cell<Parking> = const { Cell::new(Parking::Off) };
}

/// The state of [`PARKING`].
#[derive(Default)]
enum Parking {
    /// No handler's future is being polled: a dropped socket is simply dropped.
    #[default]
    Off,
    /// A handler's future is being polled or dropped.
    Armed,
    /// What its socket left behind.
    Parked(Box<Core<UpgradedIo>>),
}

/// The park hook of session sockets: runs when the socket (or its last split half) is
/// dropped. Inside its session task's poll the connection is kept for [`run`] to close;
/// anywhere else (the handler moved the socket into a task of its own) the socket is simply
/// dropped.
fn park(core: &mut Core<UpgradedIo>) {
    let _ = PARKING.try_with(|slot| match slot.take() {
        Parking::Armed => slot.set(match core.detach(UpgradedIo::detached()) {
            Some(open) => Parking::Parked(Box::new(open)),
            None => Parking::Armed,
        }),
        // Off: outside any session's poll. Parked: one connection is kept already.
        other => slot.set(other),
    });
}

/// How the handler ended.
#[derive(Debug, Clone, Copy)]
enum Ending {
    Returned,
    Failed,
}

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
    // A disabled span (no subscriber wants DEBUG here) is not kept: it would cost each socket
    // its 40 bytes for as long as the session lives, and a span enter and exit per poll.
    if span.is_disabled() {
        guard.spawn(|guard| session_task(on_upgrade, session, setup, config, guard));
    } else {
        guard.spawn(|guard| {
            session_task(on_upgrade, session, setup, config, guard).instrument(span)
        });
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

/// The session task. Shutdown reaches it through the layer's tracker (`guard`'s slot): its
/// socket's closer asks for a 1001 close, and at the deadline its task is aborted wherever it
/// waits (readiness, upgrade, handler, final close), so nothing here watches for shutdown.
async fn run<S: Start>(mut begin: Box<Begin<S>>, guard: SessionGuard) {
    // Readiness first, so that nothing but hyper's small upgrade handle waits with it.
    let ready: Result<(), BoxError> = poll_fn(|cx| begin.session.poll_ready(cx)).await;
    let upgraded = match (&mut begin.on_upgrade).await {
        Ok(upgraded) => upgraded,
        Err(error) => {
            tracing::warn!(
                error = %error,
                "websocket upgrade failed: the connection closed before the handshake \
                 completed, or the server does not hand over upgraded connections (hyper: \
                 `serve_connection(..).with_upgrades()`, or `serve_connection_with_upgrades`)"
            );
            unbox(begin).session.upgrade_failed(error);
            return;
        }
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
    } else if guard.tracker().is_closing() {
        let socket = socket(upgraded, setup, config);
        (CloseCode::GOING_AWAY, SHUTTING_DOWN, Some(Box::new(socket)))
    } else {
        let (ending, parked) = start(&guard, session, upgraded, setup, config).await;
        let code = match ending {
            Ending::Returned => CloseCode::NORMAL,
            Ending::Failed => CloseCode::INTERNAL_ERROR,
        };
        (
            code,
            "",
            parked.map(|core| Box::new(WebSocket::from_core(*core))),
        )
    };
    if let Some(socket) = parked {
        // Still bounded by the deadline: the abort reaches this wait too.
        close(socket, code, reason).await;
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

/// Builds the socket, hands it to the session, makes the socket's closer reachable by the
/// layer's shutdown, and returns the session's future. Synchronous, so the socket is never
/// stored twice.
fn start<S: Start>(
    guard: &SessionGuard,
    session: S,
    upgraded: hyper::upgrade::Upgraded,
    setup: SocketSetup,
    config: Config,
) -> Drive<S::Future> {
    let mut socket = socket(upgraded, setup, config);
    guard.opened(&socket.closer());
    socket.set_park(park);
    Drive::new(session.start(socket))
}

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
    /// Drives the handler's future, catching a panic, with [`PARKING`] armed, and keeps what
    /// the handler's socket parked when it was dropped while open; once the future ends, drops
    /// it (armed too) and returns the parked connection.
    struct Drive<F> {
        #[pin]
        future: Option<F>,
        parked: Option<Box<Core<UpgradedIo>>>,
    }
}

impl<F> Drive<F> {
    fn new(future: F) -> Self {
        Self {
            future: Some(future),
            parked: None,
        }
    }
}

/// Arms [`PARKING`] for a call into the handler's future and returns what it held (restored by
/// [`disarm`], so a nested use cannot disarm an outer one).
fn arm() -> Parking {
    PARKING
        .try_with(|slot| slot.replace(Parking::Armed))
        .unwrap_or_default()
}

/// Puts back what [`arm`] returned, and keeps in `parked` what was parked meanwhile.
fn disarm(previous: Parking, parked: &mut Option<Box<Core<UpgradedIo>>>) {
    if let Ok(Parking::Parked(core)) = PARKING.try_with(|slot| slot.replace(previous)) {
        *parked = Some(core);
    }
}

impl<F, E> Future for Drive<F>
where
    F: Future<Output = Result<(), E>>,
    E: Into<BoxError>,
{
    type Output = (Ending, Option<Box<Core<UpgradedIo>>>);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut future = this.future;
        let Some(running) = future.as_mut().as_pin_mut() else {
            return Poll::Ready((Ending::Returned, this.parked.take()));
        };
        let previous = arm();
        let polled = catch_unwind(AssertUnwindSafe(|| running.poll(cx)));
        let ending = match polled {
            Ok(Poll::Pending) => {
                disarm(previous, this.parked);
                return Poll::Pending;
            }
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
        disarm(previous, this.parked);
        Poll::Ready((ending, this.parked.take()))
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
    use crate::shutdown::Tracker;

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
        assert!(overhead <= 160, "the session task adds {overhead} bytes");
    }

    fn size_of_handler_future<H: Handler>(_: &H) -> usize {
        std::mem::size_of::<H::Future>()
    }
}
