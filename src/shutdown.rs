//! Graceful shutdown of a layer's WebSocket sessions.
//!
//! hyper-util's graceful shutdown waits for HTTP connections, but an upgraded connection has
//! left hyper: only the layer knows its sessions. The layer's [`Tracker`] keeps a slot per
//! session task (its abort handle, and once its socket is built, its [`Closer`]), so shutdown
//! reaches each session directly and a session task carries no shutdown watch of its own: an
//! idle socket's task is that much smaller. A counter tells when all are done.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::{AbortHandle, JoinHandle};

use crate::proto::{CloseCode, Closer};

/// Where shutdown is: new sessions are accepted only while `RUNNING`.
const RUNNING: u8 = 0;
/// Open sessions are asked to close with 1001.
const CLOSING: u8 = 1;
/// The deadline passed: remaining sessions are aborted.
const ABORTING: u8 = 2;

/// The close reason sent when the layer shuts down.
pub(crate) const SHUTTING_DOWN: &str = "server shutting down";

/// What a layer's sessions share for shutdown.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    phase: AtomicU8,
    active: AtomicUsize,
    /// Notified (to every waiter) when the last session ends.
    idle: Notify,
    /// The running session tasks, for shutdown to close and abort.
    sessions: Mutex<Sessions>,
}

/// A slot per running session task, reused once its session ends.
#[derive(Debug, Default)]
struct Sessions {
    slots: Vec<Slot>,
    /// Indexes of the empty slots.
    free: Vec<u32>,
}

/// One session task: how to abort it, and how to ask its socket to close.
#[derive(Debug, Default)]
struct Slot {
    /// Counts the sessions that held the slot, so that a late write for one that has ended
    /// (its slot freed, perhaps taken again) is told apart and dropped.
    generation: u32,
    task: Option<AbortHandle>,
    closer: Option<Closer>,
}

/// A session's slot: its index and the generation it holds it in (8 bytes, so that the
/// guard, which every session task holds, stays at 16).
#[derive(Debug, Clone, Copy)]
struct SlotId {
    /// [`SlotId::NONE`]'s until the task is spawned.
    index: u32,
    generation: u32,
}

impl SlotId {
    /// No slot: the task was never spawned (or `u32::MAX` sessions run at once).
    const NONE: Self = Self {
        index: u32::MAX,
        generation: 0,
    };
}

impl Sessions {
    /// An empty slot ([`SlotId::NONE`] once `u32::MAX - 1` sessions run at once).
    fn reserve(&mut self) -> SlotId {
        let index = match self.free.pop() {
            Some(index) => index,
            None => match u32::try_from(self.slots.len()) {
                Ok(index) if index != SlotId::NONE.index => {
                    self.slots.push(Slot::default());
                    index
                }
                _ => return SlotId::NONE,
            },
        };
        let generation = self.get_any(index).map_or(0, |slot| slot.generation);
        SlotId { index, generation }
    }

    fn get_any(&mut self, index: u32) -> Option<&mut Slot> {
        self.slots.get_mut(usize::try_from(index).ok()?)
    }

    /// The slot, if `id`'s session still holds it.
    fn get(&mut self, id: SlotId) -> Option<&mut Slot> {
        let slot = self.get_any(id.index)?;
        (slot.generation == id.generation).then_some(slot)
    }
}

impl Tracker {
    /// Counts a new session, unless shutdown has begun.
    pub(crate) fn enter(self: &Arc<Self>) -> Option<SessionGuard> {
        self.active.fetch_add(1, Ordering::AcqRel);
        let guard = SessionGuard {
            tracker: Arc::clone(self),
            slot: SlotId::NONE,
        };
        (self.phase.load(Ordering::Acquire) == RUNNING).then_some(guard)
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.phase.load(Ordering::Acquire) >= CLOSING
    }

    fn sessions(&self) -> MutexGuard<'_, Sessions> {
        // Nothing panics while holding the lock; were it poisoned, the slots are still whole.
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Spawns a session task, made by `task` with `guard` (which then holds the task's slot),
    /// and keeps its abort handle for shutdown.
    fn spawn<F>(&self, mut guard: SessionGuard, task: impl FnOnce(SessionGuard) -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        guard.slot = self.sessions().reserve();
        let slot = guard.slot;
        // Not under the lock: `spawn` drops the task at once on a runtime that is shutting
        // down (and unwinds through it without one), and the guard's drop takes the lock. The
        // task may also end before its handle is stored: the slot's generation tells.
        let handle: JoinHandle<()> = tokio::spawn(task(guard));
        let mut sessions = self.sessions();
        if self.phase.load(Ordering::Acquire) >= ABORTING {
            handle.abort();
        } else if let Some(running) = sessions.get(slot) {
            running.task = Some(handle.abort_handle());
        }
    }

    /// Keeps the closer of the socket of the session in `guard`'s slot, so that shutdown can
    /// ask it to close; if shutdown has begun, asks it now.
    fn opened(&self, guard: &SessionGuard, closer: &Closer) {
        if let Some(slot) = self.sessions().get(guard.slot) {
            slot.closer = Some(closer.clone());
        }
        // After the slot is filled: a shutdown that began before saw no closer there.
        if self.is_closing() {
            closer.close(CloseCode::GOING_AWAY, SHUTTING_DOWN);
        }
    }

    fn advance(&self, phase: u8) {
        self.phase.fetch_max(phase, Ordering::AcqRel);
        let mut sessions = self.sessions();
        for slot in &mut sessions.slots {
            if phase >= ABORTING {
                if let Some(task) = &slot.task {
                    task.abort();
                }
            } else if let Some(closer) = &slot.closer {
                closer.close(CloseCode::GOING_AWAY, SHUTTING_DOWN);
            }
        }
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

/// One session's place in its layer's count (and, once its task is spawned, its slot);
/// dropped when the session's task ends.
#[derive(Debug)]
pub(crate) struct SessionGuard {
    tracker: Arc<Tracker>,
    slot: SlotId,
}

impl SessionGuard {
    pub(crate) fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    /// Spawns the session task `task` makes with this guard, and keeps its abort handle for
    /// shutdown.
    pub(crate) fn spawn<F>(self, task: impl FnOnce(Self) -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let tracker = Arc::clone(&self.tracker);
        tracker.spawn(self, task);
    }

    /// Makes the session's socket reachable by shutdown through `closer`; if shutdown has
    /// begun, asks it to close now.
    pub(crate) fn opened(&self, closer: &Closer) {
        self.tracker.opened(self, closer);
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        if self.slot.index != SlotId::NONE.index {
            let id = self.slot;
            let mut sessions = self.tracker.sessions();
            let emptied = sessions.get(id).map(|slot| {
                slot.generation = slot.generation.wrapping_add(1);
                (slot.task.take(), slot.closer.take())
            });
            if emptied.is_some() {
                sessions.free.push(id.index);
            }
            drop(sessions);
            // The handle and closer are dropped outside the lock.
            drop(emptied);
        }
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
    ///    running at the deadline are aborted: their connections close without the rest of
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

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    /// Runs `f` on a thread of its own and fails if it has not returned within 10 s (a
    /// deadlock would otherwise hang the test run).
    fn within_10s(f: impl FnOnce() + Send + 'static) {
        let (done, finished) = mpsc::channel();
        std::thread::spawn(move || {
            f();
            let _ = done.send(());
        });
        finished
            .recv_timeout(Duration::from_secs(10))
            .expect("did not return within 10 s: deadlocked?");
    }

    #[test]
    fn a_task_dropped_by_spawn_itself_frees_its_slot() {
        // On a runtime that has shut down, `tokio::spawn` drops the task at once, inside the
        // call: the guard it holds must be able to free its slot then.
        within_10s(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let handle = runtime.handle().clone();
            drop(runtime);
            let _entered = handle.enter();
            let tracker = Arc::new(Tracker::default());
            let guard = tracker.enter().unwrap();
            guard.spawn(|guard| async move { drop(guard) });
            assert_eq!(tracker.active(), 0);
            // The freed slot is taken again by the next session.
            let mut sessions = tracker.sessions();
            assert_eq!(sessions.free.len(), 1);
            assert_eq!(sessions.reserve().generation, 1);
        });
    }

    #[test]
    fn a_stale_slot_id_reaches_nothing() {
        let mut sessions = Sessions::default();
        let first = sessions.reserve();
        let slot = sessions.get(first).unwrap();
        slot.generation += 1;
        sessions.free.push(first.index);
        let second = sessions.reserve();
        assert_eq!(second.index, first.index);
        assert!(
            sessions.get(first).is_none(),
            "the ended session's id still reaches the slot"
        );
        assert!(sessions.get(second).is_some());
        assert!(sessions.get(SlotId::NONE).is_none());
    }
}
