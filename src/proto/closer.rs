//! Asking a connection to close from another task.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Waker;

use super::close::{CloseCode, CloseFrame};
use super::message::Utf8Bytes;

/// Shared between a connection and its [`Closer`]s.
#[derive(Debug, Default)]
pub(crate) struct CloseSignal {
    requested: AtomicBool,
    frame: Mutex<Option<CloseFrame>>,
    waker: Mutex<Option<Waker>>,
}

impl CloseSignal {
    #[inline]
    pub(crate) fn is_requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }

    /// The requested close frame, once.
    pub(crate) fn take_request(&self) -> Option<CloseFrame> {
        if !self.is_requested() {
            return None;
        }
        self.frame
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    pub(crate) fn register(&self, waker: &Waker) {
        let mut slot = self.waker.lock().unwrap_or_else(PoisonError::into_inner);
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }

    fn request(&self, frame: CloseFrame) {
        if self.requested.load(Ordering::Acquire) {
            return;
        }
        *self.frame.lock().unwrap_or_else(PoisonError::into_inner) = Some(frame);
        self.requested.store(true, Ordering::Release);
        let waker = self
            .waker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// A handle that asks a connection to close, from any task.
///
/// Get one with [`WebSocket::closer`](crate::WebSocket::closer). Closing through it is the same
/// as calling `close` on the connection: a close frame goes out, the connection's message stream
/// goes on until the peer answers (or the close timeout passes) and then ends, and `send`
/// fails with [`ErrorKind::Closed`](crate::ErrorKind::Closed). The connection acts on the
/// request the next time it is polled; a task waiting in `recv` is woken for it.
///
/// ```
/// use tower_ws::{CloseCode, Config, Message, Role, WebSocket};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (a, b) = tokio::io::duplex(1024);
/// let mut server = WebSocket::new(a, Role::Server, Config::default());
/// let mut client = WebSocket::new(b, Role::Client, Config::default());
///
/// // Any task holding the handle can end the session, e.g. when a login expires.
/// let closer = server.closer();
/// closer.close(CloseCode::POLICY_VIOLATION, "session expired");
///
/// // The server acts on it when next polled: its handler's read loop just ends.
/// let handler = tokio::spawn(async move { while let Some(_) = server.recv().await {} });
/// let seen = client.recv().await.unwrap().unwrap();
/// assert_eq!(seen, Message::close(CloseCode::POLICY_VIOLATION, "session expired"));
/// handler.await.unwrap();
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Closer {
    signal: Arc<CloseSignal>,
}

impl Closer {
    pub(crate) fn new(signal: Arc<CloseSignal>) -> Self {
        Self { signal }
    }

    /// Asks the connection to close with `code` and `reason`.
    ///
    /// Only the first request counts. A code that may not be sent (see
    /// [`CloseCode::is_valid_on_wire`]) is replaced by 1000, and a reason longer than 123 bytes
    /// is cut at a character boundary.
    pub fn close(&self, code: CloseCode, reason: impl Into<Utf8Bytes>) {
        let code = if code.is_valid_on_wire() {
            code
        } else {
            CloseCode::NORMAL
        };
        let mut reason: Utf8Bytes = reason.into();
        if reason.len() > super::close::MAX_REASON_LEN {
            let mut cut = super::close::MAX_REASON_LEN;
            while !reason.as_str().is_char_boundary(cut) {
                cut -= 1;
            }
            reason = Utf8Bytes::from(&reason.as_str()[..cut]);
        }
        self.signal.request(CloseFrame::new(code, reason));
    }

    /// Whether a close has been requested through any handle of this connection.
    pub fn is_requested(&self) -> bool {
        self.signal.is_requested()
    }
}
