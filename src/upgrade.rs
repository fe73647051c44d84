//! After the handshake response: take the connection from hyper, build the [`WebSocket`], run
//! the handler, and close what the handler left open.

use std::cell::Cell;
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::task::Poll;

use hyper::upgrade::OnUpgrade;
use tracing::Instrument;

use crate::error::BoxError;
use crate::handler::{Handler, Handshake, Session};
use crate::io::UpgradedIo;
use crate::proto::core::Core;
use crate::proto::{CloseCode, Config, Role, WebSocket};
use crate::shutdown::SessionGuard;

tokio::task_local! {
    /// Where a socket dropped by its handler while still open leaves its connection, so the
    /// session task can close it properly. Boxed, so the slot costs a pointer per session.
    static PARKED: Cell<Option<Box<Core<UpgradedIo>>>>;
}

/// The park hook of session sockets: runs when the socket (or its last split half) is
/// dropped. Inside its session task, the connection is kept for [`run`] to close; anywhere else
/// (the handler moved the socket into a task of its own), the socket is simply dropped.
fn park(core: &mut Core<UpgradedIo>) {
    let _ = PARKED.try_with(|slot| {
        if let Some(open) = core.detach(UpgradedIo::detached()) {
            slot.set(Some(Box::new(open)));
        }
    });
}

/// How the handler ended.
enum Ending {
    Returned,
    Failed,
}

/// The session task: spawned when the handshake is accepted, before the response is written.
pub(crate) fn spawn<H: Handler>(
    on_upgrade: OnUpgrade,
    handshake: Handshake,
    handler: H,
    config: Config,
    guard: SessionGuard,
    span: tracing::Span,
) {
    tokio::spawn(run(on_upgrade, handshake, handler, config, guard).instrument(span));
}

async fn run<H: Handler>(
    on_upgrade: OnUpgrade,
    handshake: Handshake,
    handler: H,
    config: Config,
    guard: SessionGuard,
) {
    let tracker = guard.tracker();
    // Until the socket exists, shutdown can only abort: there is nothing to close yet.
    let upgraded = match watch(tracker, on_upgrade, || {}).await {
        Some(Ok(upgraded)) => upgraded,
        Some(Err(error)) => {
            tracing::warn!(
                error = %error,
                "websocket upgrade failed: the connection closed before the handshake \
                 completed, or the server does not hand over upgraded connections (hyper: \
                 `serve_connection(..).with_upgrades()`, or `serve_connection_with_upgrades`)"
            );
            return;
        }
        None => return,
    };
    let (io, read_buf) = UpgradedIo::from_upgraded(upgraded);
    if handshake.extensions().get::<SocketAddr>().is_none()
        && let Some(peer) = io.peer_addr()
    {
        tracing::Span::current().record("peer", tracing::field::display(peer));
    }
    let mut socket = WebSocket::from_partially_read(io, read_buf, Role::Server, config);
    tracing::debug!("websocket session started");
    let closer = socket.closer();
    let session = async move {
        if tracker.is_closing() {
            close(&mut socket, CloseCode::GOING_AWAY, "server shutting down").await;
            return;
        }
        socket.set_park(park);
        PARKED
            .scope(
                Cell::new(None),
                supervise(handler, Session::new(socket, handshake)),
            )
            .await;
    };
    let on_closing = || closer.close(CloseCode::GOING_AWAY, "server shutting down");
    if watch(tracker, session, on_closing).await.is_none() {
        tracing::debug!("websocket session dropped at the shutdown deadline");
    } else {
        tracing::debug!("websocket session ended");
    }
}

/// Runs `future`, calling `on_closing` once when the layer's shutdown begins; gives up
/// (`None`, dropping `future`) when the shutdown deadline passes.
async fn watch<F: Future>(
    tracker: &crate::shutdown::Tracker,
    future: F,
    mut on_closing: impl FnMut(),
) -> Option<F::Output> {
    let mut future = pin!(future);
    let mut changed = pin!(tracker.changed());
    let mut asked = false;
    poll_fn(|cx| {
        loop {
            if tracker.is_aborting() {
                return Poll::Ready(None);
            }
            if !asked && tracker.is_closing() {
                asked = true;
                on_closing();
            }
            if let Poll::Ready(output) = future.as_mut().poll(cx) {
                return Poll::Ready(Some(output));
            }
            if changed.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            changed.set(tracker.changed());
        }
    })
    .await
}

/// Runs the handler (inside the [`PARKED`] scope) and closes the socket it left open: 1000
/// after `Ok`, 1011 after an error, a panic, or a handler that is not ready.
async fn supervise<H: Handler>(mut handler: H, session: Session) {
    // Boxed at once: the handler's error type need not be `Send`.
    let ready: Result<(), BoxError> = poll_fn(|cx| handler.poll_ready(cx))
        .await
        .map_err(Into::into);
    let ending = match ready {
        Ok(()) => call(&mut handler, session).await,
        Err(error) => {
            log_error("websocket handler not ready", &error);
            drop(session);
            Ending::Failed
        }
    };
    let Some(core) = PARKED.with(Cell::take) else {
        return;
    };
    let mut socket = WebSocket::from_core(*core);
    match ending {
        Ending::Returned => close(&mut socket, CloseCode::NORMAL, "").await,
        Ending::Failed => close(&mut socket, CloseCode::INTERNAL_ERROR, "").await,
    }
}

/// Calls the handler and drives its future to the end, catching a panic. The future is
/// dropped before this returns, so the socket it held has been parked.
async fn call<H: Handler>(handler: &mut H, session: Session) -> Ending {
    let mut future = pin!(Some(handler.call(session)));
    let ending = poll_fn(|cx| {
        let Some(running) = future.as_mut().as_pin_mut() else {
            return Poll::Ready(Ending::Returned);
        };
        match catch_unwind(AssertUnwindSafe(|| running.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(Ok(()))) => Poll::Ready(Ending::Returned),
            Ok(Poll::Ready(Err(error))) => {
                let error: BoxError = error.into();
                if let Some(error) = error.downcast_ref::<crate::Error>() {
                    // The connection failed under the handler (the peer left or broke the
                    // protocol): the peer's doing, already reported by the engine.
                    tracing::debug!(error = %ErrorChain(error), "websocket handler ended by a connection error");
                } else {
                    log_error("websocket handler failed", &error);
                }
                Poll::Ready(Ending::Failed)
            }
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .copied()
                    .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                    .unwrap_or("(not a string)");
                tracing::error!(panic = message, "websocket handler panicked");
                Poll::Ready(Ending::Failed)
            }
        }
    })
    .await;
    if catch_unwind(AssertUnwindSafe(|| future.set(None))).is_err() {
        tracing::error!("websocket handler future panicked while dropped");
    }
    ending
}

/// Closes `socket` with `code` (the engine bounds the wait for the peer's answer by the close
/// timeout) and logs how it went.
async fn close(socket: &mut WebSocket<UpgradedIo>, code: CloseCode, reason: &'static str) {
    tracing::debug!(
        code = code.as_u16(),
        reason,
        "websocket closing the session"
    );
    if let Err(error) = socket.close(code, reason).await {
        tracing::debug!(error = %error, "websocket close did not complete cleanly");
    }
}

fn log_error(what: &str, error: &BoxError) {
    tracing::error!(error = %ErrorChain(&**error), "{what}");
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
