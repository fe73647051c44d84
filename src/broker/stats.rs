//! Counters a node keeps about its broker traffic.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a node's broker counters ([`Broker::stats`](super::Broker::stats)).
///
/// `received` counts every message that reached this node on a broker channel: the broker
/// traffic of the node, which is what "a node receives only the topics it holds" is measured
/// by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BrokerStats {
    /// Messages this node published.
    pub published: u64,
    /// Publishes that failed (broker unavailable or refusing).
    pub publish_failures: u64,
    /// Messages that arrived on broker channels (before any check).
    pub received: u64,
    /// Messages handed to [`Events`](super::Events), live or recovered.
    pub delivered: u64,
    /// Of those, the ones read from history to fill a gap.
    pub recovered: u64,
    /// Arrivals dropped because history had delivered them already.
    pub duplicates: u64,
    /// Gaps reported ([`Event::Gap`](super::Event::Gap)).
    pub gaps: u64,
    /// Messages refused as bad data.
    pub bad_data: u64,
    /// Messages dropped because the node's inbox was full (the node lagged); with Redis
    /// they are then recovered from history.
    pub lagged: u64,
    /// Times the connection to the broker came (back) up.
    pub connects: u64,
    /// Topics whose broker subscription is in place now (Redis: the server confirmed it, after
    /// the node took the topic's position, so everything published from then on reaches the
    /// node's subscribers; NATS: the server has the subscription). A socket that joins a topic
    /// is sure to see what is published once this counts its topic.
    pub subscribed: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) published: AtomicU64,
    pub(crate) publish_failures: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) recovered: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) gaps: AtomicU64,
    pub(crate) bad_data: AtomicU64,
    pub(crate) lagged: AtomicU64,
    pub(crate) connects: AtomicU64,
    pub(crate) subscribed: AtomicU64,
}

/// One more on a counter.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn snapshot(&self) -> BrokerStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        BrokerStats {
            published: get(&self.published),
            publish_failures: get(&self.publish_failures),
            received: get(&self.received),
            delivered: get(&self.delivered),
            recovered: get(&self.recovered),
            duplicates: get(&self.duplicates),
            gaps: get(&self.gaps),
            bad_data: get(&self.bad_data),
            lagged: get(&self.lagged),
            connects: get(&self.connects),
            subscribed: get(&self.subscribed),
        }
    }
}
