//! What a node hears from its broker.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::mpsc;

use super::error::BadData;
use super::position::Position;
use crate::proto::Message;

/// A message published on some node, as it reaches this one.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Its topic.
    pub topic: Arc<str>,
    /// The message, text or binary; the payload shares the buffer it was received in.
    pub message: Message,
    /// The id of the node that published it ([`Broker::node_id`](super::Broker::node_id)).
    pub origin: u64,
    /// The socket of the origin node that must not receive it
    /// ([`Broker::publish_except`](super::Broker::publish_except)).
    pub except: Option<u64>,
    /// Its place in the topic's history (Redis); `None` with NATS.
    pub position: Option<Position>,
}

/// Why messages of a topic may have been lost on their way to this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GapReason {
    /// Redis: the node missed messages (the connection dropped, or the node lagged) and the
    /// history no longer holds them: trimmed by length or age.
    TooOld,
    /// Redis: the topic's history was lost and started again (a new epoch), so what the node
    /// missed before it cannot be known.
    EpochChanged,
    /// NATS: the connection dropped; what was published meanwhile is lost (no history).
    Disconnected,
    /// NATS: the client library dropped messages that this node did not take fast enough.
    SlowConsumer,
}

/// What the broker's background task reports, in order.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A message for a topic this node holds. With Redis each topic's messages come exactly
    /// once and in offset order, including the ones recovered from history after a reconnect
    /// or a lag.
    Message(Delivery),
    /// Messages may have been lost and could not be recovered. `topic` is `None` when the
    /// backend cannot say which (a NATS slow consumer). `resume` is where the topic continues
    /// (Redis): a client that held an earlier position should be told to start again.
    Gap {
        /// The topic, when known.
        topic: Option<Arc<str>>,
        /// Why.
        reason: GapReason,
        /// Where the topic's history continues (Redis).
        resume: Option<Position>,
    },
    /// A message on a topic's channel that this crate did not publish (or that arrived
    /// damaged); it was dropped.
    BadData {
        /// The topic whose channel carried it.
        topic: Arc<str>,
        /// What was wrong with it.
        error: BadData,
    },
    /// The connection to the broker is up (first connect or a reconnect); subscriptions are
    /// being restored.
    Connected,
    /// The connection to the broker dropped; the client reconnects by itself.
    Disconnected,
}

/// The stream of [`Event`]s from a [`Broker`](super::Broker), in the order they happened.
///
/// Read it promptly: it is bounded (`event_capacity`), and while it is full the broker task
/// waits, its inbox fills, and the node lags (with Redis it then recovers from history).
#[derive(Debug)]
pub struct Events {
    receiver: mpsc::Receiver<Event>,
}

impl Events {
    pub(crate) fn new(receiver: mpsc::Receiver<Event>) -> Self {
        Self { receiver }
    }

    /// The next event; `None` once every [`Broker`](super::Broker) handle is dropped.
    ///
    /// Cancel safe.
    pub async fn recv(&mut self) -> Option<Event> {
        self.receiver.recv().await
    }
}

impl futures_core::Stream for Events {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.receiver.poll_recv(cx)
    }
}
