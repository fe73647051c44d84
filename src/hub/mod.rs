//! Topics in one process: [`Hub`], the sockets that joined it ([`Member`]), and what a publish
//! did ([`Published`]).
//!
//! A published message is framed once and appended to the topic's log, which every subscriber
//! reads from its own cursor (see the engine's `fanout` module); each socket writes what was
//! published to it, together with what it sends itself, when its task next runs.

mod member;
mod report;
mod topics;

use std::fmt;
use std::sync::Arc;

pub use member::{Member, SocketId};
pub use report::Published;
use topics::Topics;

use crate::proto::fanout::Outgoing;
use crate::proto::{Message, OpCode, SlowPolicy, WebSocket};

/// The default limit on bytes published to a socket (per topic) and not yet moved to its write
/// queue: 256 KiB.
pub const DEFAULT_MAX_QUEUED: usize = 256 << 10;

/// A topic's first local subscriber arrived, or its last one left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicEvent {
    /// The topic had no subscriber in this hub and now has one.
    First,
    /// The topic's last subscriber in this hub left.
    Last,
}

type OnTopic = dyn Fn(&str, TopicEvent) + Send + Sync;

/// Publish/subscribe by topic among the sockets of one process.
///
/// Clone it freely (clones share the topics) and hand it to your handler. A socket
/// [`join`](Self::join)s once and gets a [`Member`], with which it subscribes to topics; any
/// clone of the hub [`publish`](Self::publish)es.
///
/// ```
/// use tower_ws::{Config, Hub, Message, Role, WebSocket};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower_ws::Error> {
/// let hub = Hub::new();
/// let (a, b) = tokio::io::duplex(4096);
/// let mut client = WebSocket::new(a, Role::Client, Config::default());
/// let mut server = WebSocket::new(b, Role::Server, Config::default());
///
/// let member = hub.join(&mut server);
/// member.subscribe("news");
/// let report = hub.publish("news", Message::text("hello"));
/// assert_eq!((report.matched, report.queued), (1, 1));
///
/// // The server's task writes what was published to it while it polls the socket.
/// tokio::spawn(async move { while let Some(Ok(_)) = server.recv().await {} });
/// let received = client.recv().await.unwrap()?;
/// assert_eq!(received.as_text(), Some("hello"));
/// # Ok(())
/// # }
/// ```
///
/// # Delivery
///
/// A socket writes the frames published to it while its task polls it: in
/// [`recv`](WebSocket::recv) (where a handler normally waits), [`send`](WebSocket::send),
/// [`flush`](WebSocket::flush). Everything queued for it since its last wake-up goes out in one
/// write (small frames copied into the socket's write buffer, frames over 1 KiB of payload by
/// reference in a vectored write), with its own sends, in the order the publishes and sends were made: per
/// topic, across the topics of one socket, and between [`send`](WebSocket::send) and what it
/// receives from topics. Publishing never waits and never writes: it appends the message once
/// to the topic's log and costs, per subscriber, a read of its cursor and, for a socket not
/// already woken since it last waited, a wake-up.
///
/// # Slow subscribers
///
/// Each socket may have at most [`max_queued`](HubBuilder::max_queued) bytes of published
/// messages waiting for it in each topic's log, and moves them to its write queue only while
/// that queue is under
/// [`Config::write_buffer_high_water`](crate::Config::write_buffer_high_water). A publish that
/// would take a socket past its limit (unless nothing else waits for it: a message larger than
/// the limit still reaches a reader that keeps up) either drops the new message for that socket,
/// which keeps what was already waiting for it (counted in [`Published::dropped`] and
/// [`Member::dropped`]), or closes the socket with 1008 (policy violation, reason
/// `"subscriber too slow"`), as [`SlowPolicy`] says. A socket that goes over its limit stops
/// holding the log back: what was waiting for it moves to a queue of its own (references to the
/// same frames, at most its limit). So a subscriber that stops reading holds at most its limit
/// per topic (or one message) plus its write queue, never slows the publisher or the other
/// subscribers, and control frames (pongs, the close frame) are never dropped: they do not go
/// through the hub.
///
/// # permessage-deflate
///
/// Sockets that negotiated no server context takeover share one compressed frame per message
/// (per distinct level and window, in practice one). Sockets with context takeover compress each
/// message with their own compressor when they write it, as for their own sends: one compression
/// per subscriber, and their zlib state (about 420 KiB at the defaults, see
/// [`DeflateConfig`](crate::DeflateConfig)) stays with each connection.
#[derive(Clone)]
pub struct Hub {
    shared: Arc<Shared>,
}

struct Shared {
    topics: Topics,
    max_queued: usize,
    policy: SlowPolicy,
    on_topic: Option<Box<OnTopic>>,
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("topics", &self.topic_count())
            .field("max_queued", &self.shared.max_queued)
            .field("policy", &self.shared.policy)
            .field("on_topic", &self.shared.on_topic.is_some())
            .finish()
    }
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    /// A hub with the default settings: [`DEFAULT_MAX_QUEUED`] bytes per socket,
    /// [`SlowPolicy::Drop`].
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder for a hub with other settings.
    pub fn builder() -> HubBuilder {
        HubBuilder {
            max_queued: DEFAULT_MAX_QUEUED,
            policy: SlowPolicy::default(),
            on_topic: None,
        }
    }

    /// Joins `socket` to the hub: the returned [`Member`] subscribes it to topics. Dropping the
    /// member unsubscribes the socket from everything; so does the end of the connection.
    ///
    /// A socket that never joins pays nothing for the hub. Joining twice gives two members that
    /// share the socket's fan-out state (its id, limit and policy, set by the first join).
    pub fn join<Io>(&self, socket: &mut WebSocket<Io>) -> Member {
        let inbox = socket.inbox(self.shared.max_queued, self.shared.policy);
        Member::new(self.clone(), inbox)
    }

    /// Publishes `message` to every subscriber of `topic`.
    ///
    /// Only text and binary messages are published; for a ping, pong or close message nothing
    /// happens and the report is all zeroes.
    ///
    /// The hub is local: this is also the way in for a message that arrived from a broker, which
    /// it delivers to this process's subscribers only.
    pub fn publish(&self, topic: &str, message: impl Into<Message>) -> Published {
        self.deliver(topic, message.into(), None)
    }

    /// Publishes `message` to every subscriber of `topic` but the socket `except` (typically
    /// the sender: [`Member::publish`] does this).
    pub fn publish_except(
        &self,
        topic: &str,
        message: impl Into<Message>,
        except: SocketId,
    ) -> Published {
        self.deliver(topic, message.into(), Some(except))
    }

    fn deliver(&self, topic: &str, message: Message, except: Option<SocketId>) -> Published {
        let (opcode, payload) = match message {
            Message::Text(text) => (OpCode::Text, text.into_bytes()),
            Message::Binary(data) => (OpCode::Binary, data),
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) => {
                return Published::default();
            }
        };
        let except = except.map_or(0, SocketId::get);
        let report = self
            .shared
            .topics
            .with(topic, |t| {
                t.log
                    .publish(&t.subscribers, Outgoing::new(opcode, &payload), except)
            })
            .unwrap_or_default();
        let report = Published {
            matched: report.matched,
            queued: report.queued,
            dropped: report.dropped,
            closed: report.closed,
        };
        if report.closed > 0 {
            self.shared
                .topics
                .prune(topic, self.shared.on_topic.as_deref());
        }
        report
    }

    /// The number of sockets subscribed to `topic`.
    pub fn subscriber_count(&self, topic: &str) -> usize {
        self.shared.topics.subscriber_count(topic)
    }

    /// The number of topics with at least one subscriber.
    pub fn topic_count(&self) -> usize {
        self.shared.topics.len()
    }

    fn on_topic(&self) -> Option<&OnTopic> {
        self.shared.on_topic.as_deref()
    }
}

/// Settings for a [`Hub`].
#[must_use]
pub struct HubBuilder {
    max_queued: usize,
    policy: SlowPolicy,
    on_topic: Option<Box<OnTopic>>,
}

impl fmt::Debug for HubBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubBuilder")
            .field("max_queued", &self.max_queued)
            .field("policy", &self.policy)
            .field("on_topic", &self.on_topic.is_some())
            .finish()
    }
}

impl HubBuilder {
    /// The most bytes of published messages a socket may have waiting in one topic's log (each
    /// message also counts the hundred-odd bytes of its record); past it, a new message is
    /// dropped for that socket or the socket is closed (see [`slow_policy`](Self::slow_policy)). Default
    /// [`DEFAULT_MAX_QUEUED`].
    pub fn max_queued(mut self, bytes: usize) -> Self {
        self.max_queued = bytes;
        self
    }

    /// What happens to a socket over its limit. Default [`SlowPolicy::Drop`].
    pub fn slow_policy(mut self, policy: SlowPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Calls `f` when a topic gets its first subscriber in this hub and when it loses its last
    /// (a broker bridge joins and leaves the broker's channel there).
    ///
    /// `f` runs synchronously, in the order the events happen, while the hub's topic table is
    /// locked for writing: it must not call back into the hub (hand the event to a channel).
    pub fn on_topic(mut self, f: impl Fn(&str, TopicEvent) + Send + Sync + 'static) -> Self {
        self.on_topic = Some(Box::new(f));
        self
    }

    /// The hub.
    pub fn build(self) -> Hub {
        Hub {
            shared: Arc::new(Shared {
                topics: Topics::default(),
                max_queued: self.max_queued,
                policy: self.policy,
                on_topic: self.on_topic,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::Member;
    use crate::proto::fanout::{Inbox, Subscription};

    /// The figures the README gives: what joining and each subscription cost.
    #[test]
    fn joining_and_subscribing_cost_what_the_readme_says() {
        // The socket's fan-out state (with the Arc's two counts) and the member handle.
        let join = size_of::<Inbox>() + 2 * size_of::<usize>() + size_of::<Member>();
        println!("join: {join} bytes");
        assert!(join <= 200, "joining costs {join} bytes");
        // The cursor (with the Arc's two counts), a pointer to it in the topic's list and in
        // the socket's, a shared name in the member's.
        let subscription = size_of::<Subscription>()
            + 2 * size_of::<usize>()
            + 2 * size_of::<Arc<Subscription>>()
            + size_of::<Arc<str>>();
        assert_eq!(subscription, 80);
    }
}
