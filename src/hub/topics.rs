//! The topic table: for each topic, its log of published messages and its subscribers.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::{OnTopic, TopicEvent};
use crate::proto::fanout::{Inbox, Log, Subscription};

/// One topic: the messages published to it that a subscriber has yet to take, and the
/// subscribers' cursors.
#[derive(Debug, Default)]
pub(super) struct Topic {
    pub(super) log: Arc<Log>,
    pub(super) subscribers: Vec<Arc<Subscription>>,
}

/// Topics and their subscribers. Publishing takes the read lock (publishers run side by side;
/// each topic's log has its own lock); subscribing and unsubscribing take the write lock.
#[derive(Debug, Default)]
pub(super) struct Topics {
    map: RwLock<Map>,
}

type Map = HashMap<Arc<str>, Topic>;

impl Topics {
    fn read(&self) -> RwLockReadGuard<'_, Map> {
        // No user code runs under the lock but `on_topic`, after the table is consistent.
        self.map.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Map> {
        self.map.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on `topic`, if it has subscribers.
    pub(super) fn with<R>(&self, topic: &str, f: impl FnOnce(&Topic) -> R) -> Option<R> {
        self.read().get(topic).map(f)
    }

    pub(super) fn subscriber_count(&self, topic: &str) -> usize {
        self.read().get(topic).map_or(0, |t| t.subscribers.len())
    }

    pub(super) fn len(&self) -> usize {
        self.read().len()
    }

    /// Subscribes `inbox` to `topic` (the caller knows it is not there yet), from the next
    /// message published; returns the topic's shared name.
    pub(super) fn add(
        &self,
        topic: &str,
        inbox: &Arc<Inbox>,
        on_topic: Option<&OnTopic>,
    ) -> Arc<str> {
        let mut map = self.write();
        let existing = map.get_key_value(topic).map(|(name, _)| name.clone());
        let name = existing.unwrap_or_else(|| Arc::from(topic));
        let entry = map.entry(name.clone()).or_default();
        let subscription = Arc::new(Subscription::new(inbox.clone(), entry.log.clone()));
        entry.subscribers.push(subscription.clone());
        let first = entry.subscribers.len() == 1;
        // Under the write lock: no publish runs before the socket knows its cursor.
        inbox.attach(subscription);
        if first && let Some(f) = on_topic {
            f(topic, TopicEvent::First);
        }
        name
    }

    /// Removes the inbox `id` from each of `topics`.
    pub(super) fn remove(&self, topics: &[Arc<str>], inbox: &Inbox, on_topic: Option<&OnTopic>) {
        if topics.is_empty() {
            return;
        }
        let mut map = self.write();
        for topic in topics {
            let Some(entry) = map.get_mut(&**topic) else {
                continue;
            };
            let subscribers = &mut entry.subscribers;
            if let Some(at) = subscribers
                .iter()
                .position(|s| s.inbox().id() == inbox.id())
            {
                let subscription = subscribers.swap_remove(at);
                inbox.detach(&subscription);
            }
            if subscribers.is_empty() {
                map.remove(&**topic);
                if let Some(f) = on_topic {
                    f(topic, TopicEvent::Last);
                }
            }
        }
    }

    /// Removes the closed inboxes from `topic`.
    pub(super) fn prune(&self, topic: &str, on_topic: Option<&OnTopic>) {
        let mut map = self.write();
        let Some(entry) = map.get_mut(topic) else {
            return;
        };
        entry.subscribers.retain(|s| !s.inbox().is_closed());
        if entry.subscribers.is_empty() {
            map.remove(topic);
            if let Some(f) = on_topic {
                f(topic, TopicEvent::Last);
            }
        }
    }
}
