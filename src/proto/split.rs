//! The two halves of a split [`WebSocket`](super::WebSocket).

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use futures_core::Stream;
use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncWrite};

use super::close::{CloseCode, CloseFrame};
use super::core::{Core, Side};
use super::message::{Message, Utf8Bytes};
use crate::error::{Error, Result};

type Shared<Io> = Arc<Mutex<Core<Io>>>;

fn lock<Io>(shared: &Shared<Io>) -> MutexGuard<'_, Core<Io>> {
    // The engine never panics while holding the lock; if a user's IO did, its state is still
    // consistent (every step commits its changes before it can fail).
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(super) fn split<Io>(mut core: Core<Io>) -> (ReadHalf<Io>, WriteHalf<Io>) {
    core.enable_shared_waker();
    let shared = Arc::new(Mutex::new(core));
    (
        ReadHalf {
            shared: shared.clone(),
        },
        WriteHalf { shared },
    )
}

/// The receiving half of a split [`WebSocket`](super::WebSocket).
///
/// It still answers pings and close frames on its own, so a task that only reads keeps the
/// connection healthy while another task sends.
#[derive(Debug)]
pub struct ReadHalf<Io> {
    shared: Shared<Io>,
}

/// The sending half of a split [`WebSocket`](super::WebSocket).
///
/// Unlike [`WebSocket::send`](super::WebSocket::send), [`send`](Self::send) always writes
/// before it returns: the reading task may be busy, so nothing waits for it to flush.
#[derive(Debug)]
pub struct WriteHalf<Io> {
    shared: Shared<Io>,
}

impl<Io: AsyncRead + AsyncWrite + Unpin> ReadHalf<Io> {
    /// Receives the next message; `None` once the connection has closed. Cancel safe.
    pub async fn recv(&mut self) -> Option<Result<Message>> {
        poll_fn(|cx| lock(&self.shared).poll_next(cx)).await
    }

    /// Whether `other` is the write half split from the same connection.
    pub fn is_pair_of(&self, other: &WriteHalf<Io>) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl<Io: AsyncRead + AsyncWrite + Unpin> Stream for ReadHalf<Io> {
    type Item = Result<Message>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        lock(&self.shared).poll_next(cx)
    }
}

impl<Io: AsyncRead + AsyncWrite + Unpin> WriteHalf<Io> {
    /// Sends a message and writes it to the transport.
    ///
    /// # Errors
    ///
    /// As [`WebSocket::send`](super::WebSocket::send).
    pub async fn send(&mut self, message: impl Into<Message>) -> Result<()> {
        poll_fn(|cx| lock(&self.shared).poll_ready(cx, Side::Write)).await?;
        lock(&self.shared).start_send(message.into())?;
        poll_fn(|cx| lock(&self.shared).poll_send_flush(cx, Side::Write, false)).await
    }

    /// Sends a close frame (unless one was sent already) and writes it. The read half sees the
    /// peer's answer and then ends.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidMessage`](crate::ErrorKind::InvalidMessage) for an unsendable code
    /// or a reason over 123 bytes; [`ErrorKind::Io`](crate::ErrorKind::Io) if the transport
    /// fails.
    pub async fn close(&mut self, code: CloseCode, reason: impl Into<Utf8Bytes>) -> Result<()> {
        let frame = CloseFrame::new(code, reason);
        frame.check_sendable().map_err(Error::invalid_message)?;
        poll_fn(|cx| lock(&self.shared).poll_send_close(cx, Some(&frame), Side::Write)).await
    }
}

impl<Io: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WriteHalf<Io> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        lock(&self.shared).poll_ready(cx, Side::Write)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<()> {
        lock(&self.shared).start_send(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        lock(&self.shared).poll_flush(cx, Side::Write)
    }

    /// Sends a close frame with code 1000 and writes it; the read half sees the answer.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let normal = CloseFrame::new(CloseCode::NORMAL, "");
        lock(&self.shared).poll_send_close(cx, Some(&normal), Side::Write)
    }
}
