//! Graceful shutdown of a layer's WebSocket sessions.
//!
//! hyper-util's graceful shutdown waits for HTTP connections, but an upgraded connection has
//! left hyper: only the layer knows its sessions. Each session task watches one shared
//! [`Notify`] in its own state (no per-session registration or allocation), and a counter
//! tells when all are done.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// Where shutdown is: new sessions are accepted only while `RUNNING`.
const RUNNING: u8 = 0;
/// Open sessions are asked to close with 1001.
const CLOSING: u8 = 1;
/// The deadline passed: remaining sessions drop their connections.
const ABORTING: u8 = 2;

/// What a layer's sessions share for shutdown.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    phase: AtomicU8,
    /// Notified (to every waiter) when the phase changes.
    changed: Notify,
    active: AtomicUsize,
    /// Notified (to every waiter) when the last session ends.
    idle: Notify,
}

impl Tracker {
    /// Counts a new session, unless shutdown has begun.
    pub(crate) fn enter(self: &Arc<Self>) -> Option<SessionGuard> {
        self.active.fetch_add(1, Ordering::AcqRel);
        let guard = SessionGuard {
            tracker: Arc::clone(self),
        };
        (self.phase.load(Ordering::Acquire) == RUNNING).then_some(guard)
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.phase.load(Ordering::Acquire) >= CLOSING
    }

    pub(crate) fn is_aborting(&self) -> bool {
        self.phase.load(Ordering::Acquire) >= ABORTING
    }

    /// A future that resolves at the next phase change after this call.
    pub(crate) fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    fn advance(&self, phase: u8) {
        self.phase.fetch_max(phase, Ordering::AcqRel);
        self.changed.notify_waiters();
    }

    fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    async fn idle(&self) {
        loop {
            // Created before the check, so a notification between the two is not lost.
            let idle = self.idle.notified();
            if self.active() == 0 {
                return;
            }
            idle.await;
        }
    }
}

/// One session's place in its layer's count; dropped when the session's task ends.
#[derive(Debug)]
pub(crate) struct SessionGuard {
    tracker: Arc<Tracker>,
}

impl SessionGuard {
    pub(crate) fn tracker(&self) -> &Tracker {
        &self.tracker
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        if self.tracker.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.tracker.idle.notify_waiters();
        }
    }
}

/// A handle that shuts down every WebSocket session of one [`UpgradeLayer`] (and the
/// services it made) gracefully.
///
/// Get it with [`UpgradeLayer::shutdown_handle`]; clones of the layer share it. Stop
/// accepting connections first (hyper-util's `GracefulShutdown` does it for HTTP), then call
/// [`shutdown`](Self::shutdown):
///
/// ```no_run
/// use std::time::Duration;
/// use tower_ws::{Session, UpgradeLayer, handler_fn};
///
/// # async fn run() {
/// let layer = UpgradeLayer::new(handler_fn(|_: Session| async {}));
/// let shutdown = layer.shutdown_handle();
/// // ... serve with `layer` until a signal arrives, then:
/// let dropped = shutdown.shutdown(Duration::from_secs(10)).await;
/// assert_eq!(dropped, 0, "every session closed in time");
/// # }
/// # drop(run());
/// ```
///
/// [`UpgradeLayer`]: crate::UpgradeLayer
/// [`UpgradeLayer::shutdown_handle`]: crate::UpgradeLayer::shutdown_handle
#[derive(Debug, Clone)]
pub struct Shutdown {
    tracker: Arc<Tracker>,
}

impl Shutdown {
    pub(crate) fn new(tracker: Arc<Tracker>) -> Self {
        Self { tracker }
    }

    /// Closes every open session and waits for their handlers, for at most `timeout`.
    ///
    /// 1. New handshakes are refused with 503 from now on
    ///    ([`HandshakeErrorKind::ShuttingDown`](crate::HandshakeErrorKind::ShuttingDown)).
    /// 2. Every open socket is asked to close with 1001 (going away), as
    ///    [`Closer::close`](crate::Closer::close) does: the close frame goes out the next
    ///    time the handler polls the socket (a handler waiting in `recv` is woken for it),
    ///    the handler's stream ends when the client answers, and the handler returns.
    /// 3. When every handler has returned, or at `timeout`, this resolves. Sessions still
    ///    running at the deadline are dropped: their connections close without the rest of
    ///    the close handshake, as soon as their tasks are next polled, which the abort wakes
    ///    them for.
    ///
    /// Returns how many sessions were still running at the deadline (0 when all closed in
    /// time). Calling it again, or from a clone, runs the same steps on what remains.
    pub async fn shutdown(&self, timeout: Duration) -> usize {
        self.tracker.advance(CLOSING);
        if tokio::time::timeout(timeout, self.tracker.idle())
            .await
            .is_ok()
        {
            return 0;
        }
        let remaining = self.tracker.active();
        self.tracker.advance(ABORTING);
        tracing::debug!(
            remaining,
            "websocket shutdown deadline passed; dropping sessions"
        );
        remaining
    }

    /// How many sessions are running (accepted handshakes whose handler has not returned).
    pub fn active(&self) -> usize {
        self.tracker.active()
    }

    /// Whether [`shutdown`](Self::shutdown) has been called.
    pub fn is_shutting_down(&self) -> bool {
        self.tracker.is_closing()
    }
}
