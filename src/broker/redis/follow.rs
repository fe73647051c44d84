//! The node's background task: subscriptions, ordering by offset, and recovery from history.
//!
//! One task per node reads, in this priority: join/leave changes, connection events (the
//! pub/sub connection's subscribe confirmations and disconnections), messages, and a 200 ms
//! tick. Each topic remembers the last position it delivered; a message is delivered when it
//! is the next one, dropped when history delivered it already, and a gap (after a reconnect,
//! a lag, a new epoch) is filled from the topic's stream before anything newer goes out. A
//! gap history cannot fill is reported as an [`Event::Gap`].
//!
//! A gap shows only when a later message arrives. So for a while after every (re)connection,
//! and every [`RedisConfig::recheck_every`](super::RedisConfig::recheck_every) for each topic,
//! the tick also compares the topic's last delivered position with the top of its stream, and
//! reads from history what is still missing a second later (what was merely in flight has
//! arrived by then, so it is not delivered twice): a message missed live just before a topic
//! falls quiet (a publish that raced the resubscription) is delivered then instead of waiting
//! for the next publish.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis::aio::ConnectionManager;
use redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::super::envelope;
use super::super::event::{Delivery, Event, GapReason};
use super::super::membership::Change;
use super::super::position::Position;
use super::super::sequence::{Verdict, verdict};
use super::super::stats::{Counters, bump};
use super::Publisher;

/// How often the task checks the connection, retries subscriptions and fills stale topics.
const TICK: Duration = Duration::from_millis(200);
/// The least time between two recovery attempts of a topic whose history read failed.
const RETRY_AFTER: Duration = Duration::from_millis(200);
/// Batches one recovery reads at most before it yields to the rest of the loop.
const MAX_BATCHES: usize = 64;
/// How long after a (re)connection each tick checks every topic against its stream's top:
/// at most this / [`TICK`] history reads per topic per reconnection.
const RECHECK_FOR: Duration = Duration::from_secs(2);
/// How long a recheck waits for what it found missing to arrive live before it reads history:
/// well past any delivery delay, so a message in flight is not delivered twice.
const MISSED_AFTER: Duration = Duration::from_secs(1);
/// Topics one tick checks at most on the periodic recheck; the rest wait for the next ticks.
const RECHECK_PER_TICK: usize = 256;

/// What the pub/sub connection pushes to the task.
pub(super) struct Inbox {
    messages: mpsc::Receiver<PushInfo>,
    control: mpsc::UnboundedReceiver<PushInfo>,
    lagged: Arc<AtomicBool>,
}

/// The inbox, and the push sender that fills it: messages into a bounded queue (when it is
/// full the node is lagging: the message is dropped, counted, and the topic re-read from
/// history later), connection events into an unbounded one (a few per topic per reconnect).
pub(super) fn inbox(
    capacity: usize,
    counters: Arc<Counters>,
) -> (
    Inbox,
    impl Fn(PushInfo) -> Result<(), ()> + Send + Sync + 'static,
) {
    let (messages_tx, messages) = mpsc::channel(capacity);
    let (control_tx, control) = mpsc::unbounded_channel();
    let lagged = Arc::new(AtomicBool::new(false));
    let flag = lagged.clone();
    let sender = move |push: PushInfo| {
        if push.kind == PushKind::Message {
            match messages_tx.try_send(push) {
                Ok(()) | Err(TrySendError::Closed(_)) => {}
                Err(TrySendError::Full(_)) => {
                    bump(&counters.received);
                    bump(&counters.lagged);
                    flag.store(true, Ordering::Release);
                }
            }
        } else {
            let _ = control_tx.send(push);
        }
        Ok(())
    };
    (
        Inbox {
            messages,
            control,
            lagged,
        },
        sender,
    )
}

/// One topic the node holds.
struct Followed {
    topic: Arc<str>,
    /// The last position delivered; `None`: no baseline, the next message starts one.
    last: Option<Position>,
    /// The pub/sub connection confirmed the subscription.
    confirmed: bool,
    /// Messages may be missing since `last`: re-read history when subscribed.
    stale: bool,
    /// When a history read for this topic last failed.
    failed_at: Option<Instant>,
    /// The stream's top seen by the last recheck, when it was past `last`.
    behind: Option<(Position, Instant)>,
    /// When the topic was last checked against its stream's top.
    checked_at: Instant,
}

pub(super) struct Follower {
    pubsub: ConnectionManager,
    publisher: Publisher,
    inbox: Inbox,
    changes: mpsc::UnboundedReceiver<Change>,
    events: mpsc::Sender<Event>,
    counters: Arc<Counters>,
    /// By channel name, as the pushes name them.
    topics: HashMap<Vec<u8>, Followed>,
    connected: bool,
    /// Until when the tick checks every topic against its stream's top.
    recheck_until: Option<Instant>,
}

impl Follower {
    pub(super) fn new(
        pubsub: ConnectionManager,
        publisher: Publisher,
        inbox: Inbox,
        changes: mpsc::UnboundedReceiver<Change>,
        events: mpsc::Sender<Event>,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            pubsub,
            publisher,
            inbox,
            changes,
            events,
            counters,
            topics: HashMap::new(),
            connected: false,
            recheck_until: None,
        }
    }
}

/// The task: runs until every [`Broker`](super::super::Broker) handle is dropped.
pub(super) async fn run(mut node: Follower) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            change = node.changes.recv() => match change {
                Some(change) => node.change(change).await,
                None => break,
            },
            Some(push) = node.inbox.control.recv() => node.control(push).await,
            Some(push) = node.inbox.messages.recv() => node.message(push).await,
            _ = tick.tick() => node.tick().await,
        }
    }
}

impl Follower {
    async fn emit(&self, event: Event) {
        match &event {
            Event::Message(_) => bump(&self.counters.delivered),
            Event::Gap { .. } => bump(&self.counters.gaps),
            Event::BadData { .. } => bump(&self.counters.bad_data),
            Event::Connected => bump(&self.counters.connects),
            Event::Disconnected => {}
        }
        // Nobody reading the events is the app's choice; the node keeps publishing.
        let _ = self.events.send(event).await;
    }

    async fn change(&mut self, change: Change) {
        match change {
            Change::Subscribe(topic) => {
                let channel = self.publisher.channel(&topic).into_bytes();
                // The baseline first, then the subscription: whatever is published between
                // the two arrives as a gap and is read from history, so nothing is missed.
                let last = self.publisher.position(&topic).await.ok();
                self.topics.insert(
                    channel.clone(),
                    Followed {
                        topic,
                        last,
                        confirmed: false,
                        stale: false,
                        failed_at: None,
                        behind: None,
                        checked_at: Instant::now(),
                    },
                );
                self.subscribe(&channel).await;
            }
            Change::Unsubscribe(topic) => {
                let channel = self.publisher.channel(&topic).into_bytes();
                if self.topics.remove(&channel).is_some() {
                    self.count_subscribed();
                    let mut pubsub = self.pubsub.clone();
                    let timeout = self.publisher.config.op_timeout;
                    let done = tokio::time::timeout(timeout, pubsub.unsubscribe(&channel[..]));
                    if !matches!(done.await, Ok(Ok(()))) {
                        tracing::debug!(topic = %topic, "unsubscribe failed; the reconnect drops it");
                    }
                }
            }
        }
    }

    async fn subscribe(&mut self, channel: &[u8]) {
        let mut pubsub = self.pubsub.clone();
        let timeout = self.publisher.config.op_timeout;
        match tokio::time::timeout(timeout, pubsub.subscribe(channel)).await {
            Ok(Ok(())) => {
                if let Some(followed) = self.topics.get_mut(channel) {
                    followed.confirmed = true;
                }
                self.count_subscribed();
                self.set_connected().await;
            }
            Ok(Err(error)) => tracing::debug!(%error, "subscribe failed; retried on the next tick"),
            Err(_) => tracing::debug!("subscribe timed out; retried on the next tick"),
        }
    }

    /// Publishes how many topics have their subscription confirmed
    /// ([`BrokerStats::subscribed`](super::super::BrokerStats::subscribed)).
    fn count_subscribed(&self) {
        let confirmed = self.topics.values().filter(|f| f.confirmed).count();
        self.counters
            .subscribed
            .store(confirmed as u64, Ordering::Relaxed);
    }

    async fn set_connected(&mut self) {
        if !self.connected {
            self.connected = true;
            self.recheck_until = Some(Instant::now() + RECHECK_FOR);
            self.emit(Event::Connected).await;
        }
    }

    async fn control(&mut self, push: PushInfo) {
        match push.kind {
            PushKind::Disconnection => {
                for followed in self.topics.values_mut() {
                    followed.confirmed = false;
                    followed.stale = true;
                }
                self.count_subscribed();
                if self.connected {
                    self.connected = false;
                    tracing::warn!("Redis pub/sub connection lost; reconnecting");
                    self.emit(Event::Disconnected).await;
                }
            }
            PushKind::Subscribe => {
                let Some(Value::BulkString(channel)) = push.data.first() else {
                    return;
                };
                self.set_connected().await;
                let stale = match self.topics.get_mut(channel.as_slice()) {
                    Some(followed) => {
                        followed.confirmed = true;
                        followed.stale
                    }
                    None => false,
                };
                self.count_subscribed();
                if stale {
                    self.recover(channel).await;
                }
            }
            _ => {}
        }
    }

    async fn message(&mut self, push: PushInfo) {
        bump(&self.counters.received);
        let mut data = push.data.into_iter();
        let (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) =
            (data.next(), data.next())
        else {
            return;
        };
        let Some(followed) = self.topics.get(channel.as_slice()) else {
            // Left the topic; the unsubscribe is on its way.
            return;
        };
        let topic = followed.topic.clone();
        let last = followed.last;
        let wire = Bytes::from(payload);
        let envelope = match envelope::decode(&wire) {
            Ok(envelope) => envelope,
            Err(error) => {
                tracing::warn!(topic = %topic, %error, "bad data on a Redis channel");
                return self.emit(Event::BadData { topic, error }).await;
            }
        };
        let Some(position) = envelope.position else {
            let error = super::super::error::BadData::new("no offset on a Redis channel", &wire);
            return self.emit(Event::BadData { topic, error }).await;
        };
        match verdict(last, position) {
            Verdict::Next => {
                if let Some(followed) = self.topics.get_mut(channel.as_slice()) {
                    followed.last = Some(position);
                }
                let delivery = Delivery {
                    topic,
                    message: envelope.message,
                    origin: envelope.origin,
                    except: envelope.except,
                    position: Some(position),
                };
                self.emit(Event::Message(delivery)).await;
            }
            Verdict::Duplicate => bump(&self.counters.duplicates),
            Verdict::Gap { .. } | Verdict::NewEpoch => {
                let recently_failed = self
                    .topics
                    .get(channel.as_slice())
                    .and_then(|followed| followed.failed_at)
                    .is_some_and(|at| at.elapsed() < RETRY_AFTER);
                if recently_failed {
                    // History is unreachable just now; the tick re-reads it, this one included.
                    return;
                }
                self.recover(&channel).await;
            }
        }
    }

    /// Re-reads the topic's history after its last delivered position and delivers what it
    /// missed, in order; reports what history no longer holds.
    async fn recover(&mut self, channel: &[u8]) {
        for _ in 0..MAX_BATCHES {
            let Some(followed) = self.topics.get_mut(channel) else {
                return;
            };
            let topic = followed.topic.clone();
            let Some(last) = followed.last else {
                followed.stale = false;
                return;
            };
            let batch = self.publisher.config.recover_batch;
            let read = self
                .publisher
                .read(&topic, Some(last.epoch), last.offset, batch)
                .await;
            let (epoch, top, envelopes) = match read {
                Ok(read) => read,
                Err(error) => {
                    tracing::debug!(topic = %topic, %error, "history read failed; retrying");
                    return self.set_stale(channel, Some(Instant::now()));
                }
            };
            let top = Position { epoch, offset: top };
            if epoch != last.epoch || last.offset > top.offset {
                // A new history: report the old one's loss, then read the new one from its start.
                self.set_last(channel, Some(Position { epoch, offset: 0 }));
                let gap = Event::Gap {
                    topic: Some(topic),
                    reason: GapReason::EpochChanged,
                    resume: Some(top),
                };
                self.emit(gap).await;
                continue;
            }
            if last.offset == top.offset {
                self.set_clean(channel);
                return;
            }
            let mut expected = last.offset + 1;
            let mut delivered = None;
            for wire in envelopes {
                let envelope = match envelope::decode(&wire) {
                    Ok(envelope) => envelope,
                    Err(error) => {
                        let topic = topic.clone();
                        self.emit(Event::BadData { topic, error }).await;
                        continue;
                    }
                };
                let Some(position) = envelope.position.filter(|p| p.offset >= expected) else {
                    continue;
                };
                if position.offset != expected {
                    let gap = Event::Gap {
                        topic: Some(topic.clone()),
                        reason: GapReason::TooOld,
                        resume: Some(Position {
                            epoch,
                            offset: position.offset - 1,
                        }),
                    };
                    self.emit(gap).await;
                }
                expected = position.offset + 1;
                delivered = Some(position);
                bump(&self.counters.recovered);
                let delivery = Delivery {
                    topic: topic.clone(),
                    message: envelope.message,
                    origin: envelope.origin,
                    except: envelope.except,
                    position: Some(position),
                };
                self.emit(Event::Message(delivery)).await;
            }
            match delivered {
                None => {
                    // History holds nothing after `last`: the gap is lost. The next live
                    // message starts a new baseline.
                    self.set_last(channel, None);
                    self.set_clean(channel);
                    let gap = Event::Gap {
                        topic: Some(topic),
                        reason: GapReason::TooOld,
                        resume: Some(top),
                    };
                    return self.emit(gap).await;
                }
                Some(position) => {
                    self.set_last(channel, Some(position));
                    if position.offset >= top.offset {
                        self.set_clean(channel);
                        return;
                    }
                }
            }
        }
        // More than one recovery reads at once: the tick goes on from here.
        self.set_stale(channel, None);
    }

    /// Marks the topic for the tick to re-read; `failed_at`: a history read just failed.
    fn set_stale(&mut self, channel: &[u8], failed_at: Option<Instant>) {
        if let Some(followed) = self.topics.get_mut(channel) {
            followed.stale = true;
            followed.failed_at = failed_at.or(followed.failed_at);
        }
    }

    fn set_last(&mut self, channel: &[u8], last: Option<Position>) {
        if let Some(followed) = self.topics.get_mut(channel) {
            followed.last = last;
        }
    }

    fn set_clean(&mut self, channel: &[u8]) {
        if let Some(followed) = self.topics.get_mut(channel) {
            followed.stale = false;
            followed.failed_at = None;
        }
    }

    async fn tick(&mut self) {
        if self.inbox.lagged.swap(false, Ordering::AcqRel) {
            tracing::warn!("node lagged behind Redis; re-reading its topics from history");
            for followed in self.topics.values_mut() {
                followed.stale = true;
            }
        }
        if !self.connected {
            let mut pubsub = self.pubsub.clone();
            let timeout = self.publisher.config.op_timeout;
            let ping = redis::cmd("PING");
            let answer = tokio::time::timeout(timeout, ping.query_async::<Value>(&mut pubsub));
            if !matches!(answer.await, Ok(Ok(_))) {
                return;
            }
            self.set_connected().await;
        }
        let unconfirmed: Vec<Vec<u8>> = self
            .topics
            .iter()
            .filter(|(_, followed)| !followed.confirmed)
            .map(|(channel, _)| channel.clone())
            .collect();
        for channel in unconfirmed {
            self.subscribe(&channel).await;
        }
        let stale: Vec<Vec<u8>> = self
            .topics
            .iter()
            .filter(|(_, followed)| followed.stale && followed.confirmed)
            .map(|(channel, _)| channel.clone())
            .collect();
        for channel in stale {
            self.recover(&channel).await;
        }
        let now = Instant::now();
        let all = self.recheck_until.is_some_and(|until| now <= until);
        if !all {
            self.recheck_until = None;
        }
        let every = self.publisher.config.recheck_every;
        let due: Vec<Vec<u8>> = self
            .topics
            .iter()
            .filter(|(_, f)| f.confirmed && !f.stale && f.last.is_some())
            .filter(|(_, f)| {
                all || f.behind.is_some()
                    || (!every.is_zero() && now.duration_since(f.checked_at) >= every)
            })
            .map(|(channel, _)| channel.clone())
            .take(if all { usize::MAX } else { RECHECK_PER_TICK })
            .collect();
        for channel in due {
            self.recheck(&channel).await;
        }
    }

    /// Compares the topic's last delivered position with its stream's top; recovers what the
    /// previous recheck already found missing and has not arrived since.
    async fn recheck(&mut self, channel: &[u8]) {
        let Some(followed) = self.topics.get(channel) else {
            return;
        };
        let (topic, Some(last)) = (followed.topic.clone(), followed.last) else {
            return;
        };
        let Ok(top) = self.publisher.position(&topic).await else {
            return;
        };
        let Some(followed) = self.topics.get_mut(channel) else {
            return;
        };
        followed.checked_at = Instant::now();
        if top.epoch == last.epoch && top.offset <= last.offset {
            followed.behind = None;
            return;
        }
        // Still short of what an earlier check saw, long after: not in flight, missed.
        let short = followed.behind.filter(|(seen, _)| {
            followed
                .last
                .is_some_and(|l| l.epoch != seen.epoch || l.offset < seen.offset)
        });
        if let Some((_, seen_at)) = short {
            if seen_at.elapsed() >= MISSED_AFTER {
                followed.behind = None;
                tracing::debug!(topic = %topic, "messages missed live; reading history");
                self.recover(channel).await;
            }
        } else if followed.behind.is_some() {
            // Caught up with what the previous check saw: the topic is moving, and its next
            // message would show a gap. Checked again in `recheck_every`.
            followed.behind = None;
        } else {
            followed.behind = Some((top, Instant::now()));
        }
    }
}
