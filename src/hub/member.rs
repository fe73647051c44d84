//! [`Member`]: a socket's place in a hub, and [`SocketId`].

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::{Hub, Published};
use crate::proto::Message;
use crate::proto::fanout::Inbox;

/// A socket's identity in fan-out, unique in the process: what
/// [`Hub::publish_except`](super::Hub::publish_except) leaves out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId(u64);

impl SocketId {
    /// The id as a number (to carry it in a message between processes, say).
    pub fn get(self) -> u64 {
        self.0
    }

    /// The id whose number is `id`.
    pub fn from_u64(id: u64) -> Self {
        Self(id)
    }
}

impl fmt::Display for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A socket that joined a [`Hub`]: subscribes it to topics and unsubscribes it.
///
/// Its methods take `&self`, so it can be shared (in an `Arc`) with tasks other than the
/// socket's. Dropping it unsubscribes the socket from all its topics; when the connection ends
/// first, the socket stops receiving at once and the hub forgets it at the next publish to each
/// of its topics, or when the member is dropped.
///
/// Each subscription costs 80 bytes: a cursor into the topic's log (48 bytes, allocated when
/// subscribing), a pointer to it in the topic's list and in the socket's, and a shared topic
/// name in the member's; a topic's name is stored once, however many subscribe to it.
pub struct Member {
    hub: Hub,
    inbox: Arc<Inbox>,
    topics: Mutex<Vec<Arc<str>>>,
}

impl fmt::Debug for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Member")
            .field("id", &self.id())
            .field("topics", &*self.lock())
            .finish_non_exhaustive()
    }
}

impl Member {
    pub(super) fn new(hub: Hub, inbox: Arc<Inbox>) -> Self {
        Self {
            hub,
            inbox,
            topics: Mutex::new(Vec::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Arc<str>>> {
        // Nothing panics while holding the lock.
        self.topics.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The socket's id.
    pub fn id(&self) -> SocketId {
        SocketId(self.inbox.id())
    }

    /// The hub.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Subscribes the socket to `topic`: `false` if it already was, or if its connection has
    /// ended.
    pub fn subscribe(&self, topic: &str) -> bool {
        let mut topics = self.lock();
        if self.inbox.is_closed() || topics.iter().any(|t| &**t == topic) {
            return false;
        }
        let name = self
            .hub
            .shared
            .topics
            .add(topic, &self.inbox, self.hub.on_topic());
        topics.push(name);
        true
    }

    /// Unsubscribes the socket from `topic`: `false` if it was not subscribed.
    pub fn unsubscribe(&self, topic: &str) -> bool {
        let mut topics = self.lock();
        let Some(at) = topics.iter().position(|t| &**t == topic) else {
            return false;
        };
        let name = topics.swap_remove(at);
        self.hub
            .shared
            .topics
            .remove(&[name], &self.inbox, self.hub.on_topic());
        true
    }

    /// Unsubscribes the socket from every topic.
    pub fn unsubscribe_all(&self) {
        let topics = std::mem::take(&mut *self.lock());
        self.hub
            .shared
            .topics
            .remove(&topics, &self.inbox, self.hub.on_topic());
    }

    /// Whether the socket is subscribed to `topic`.
    pub fn is_subscribed(&self, topic: &str) -> bool {
        self.lock().iter().any(|t| &**t == topic)
    }

    /// The topics the socket is subscribed to.
    pub fn topics(&self) -> Vec<String> {
        self.lock().iter().map(ToString::to_string).collect()
    }

    /// Publishes `message` to `topic`'s subscribers but this socket.
    pub fn publish(&self, topic: &str, message: impl Into<Message>) -> Published {
        self.hub.publish_except(topic, message, self.id())
    }

    /// Messages not queued for this socket because it was over its limit
    /// ([`SlowPolicy::Drop`](crate::SlowPolicy::Drop)).
    pub fn dropped(&self) -> u64 {
        self.inbox.dropped()
    }

    /// Bytes published to this socket and not yet moved to its write queue (summed over its
    /// topics; a message it published itself counts until the socket reads past it).
    pub fn queued_bytes(&self) -> usize {
        self.inbox.queued_bytes()
    }

    /// Whether the socket still receives: its connection is open and the slow-subscriber
    /// policy has not closed it.
    pub fn is_open(&self) -> bool {
        !self.inbox.is_closed()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.unsubscribe_all();
    }
}
