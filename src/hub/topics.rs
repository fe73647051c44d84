//! The topic table: for each topic, the inboxes of its subscribers.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::{OnTopic, TopicEvent};
use crate::proto::fanout::Inbox;

/// Topics and their subscribers. Publishing takes the read lock (publishers run side by side);
/// subscribing and unsubscribing take the write lock.
#[derive(Debug, Default)]
pub(super) struct Topics {
    map: RwLock<HashMap<Arc<str>, Vec<Arc<Inbox>>>>,
}

type Map = HashMap<Arc<str>, Vec<Arc<Inbox>>>;

impl Topics {
    fn read(&self) -> RwLockReadGuard<'_, Map> {
        // No user code runs under the lock but `on_topic`, after the table is consistent.
        self.map.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Map> {
        self.map.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on each subscriber of `topic`.
    pub(super) fn for_each(&self, topic: &str, f: impl FnMut(&Arc<Inbox>)) {
        if let Some(subscribers) = self.read().get(topic) {
            subscribers.iter().for_each(f);
        }
    }

    pub(super) fn subscriber_count(&self, topic: &str) -> usize {
        self.read().get(topic).map_or(0, Vec::len)
    }

    pub(super) fn len(&self) -> usize {
        self.read().len()
    }

    /// Adds `inbox` to `topic` (the caller knows it is not there yet); returns the topic's
    /// shared name.
    pub(super) fn add(
        &self,
        topic: &str,
        inbox: &Arc<Inbox>,
        on_topic: Option<&OnTopic>,
    ) -> Arc<str> {
        let mut map = self.write();
        if let Some(subscribers) = map.get_mut(topic) {
            subscribers.push(inbox.clone());
            if let Some((name, _)) = map.get_key_value(topic) {
                return name.clone();
            }
        }
        let name: Arc<str> = Arc::from(topic);
        map.insert(name.clone(), vec![inbox.clone()]);
        if let Some(f) = on_topic {
            f(topic, TopicEvent::First);
        }
        name
    }

    /// Removes the inbox `id` from each of `topics`.
    pub(super) fn remove(&self, topics: &[Arc<str>], id: u64, on_topic: Option<&OnTopic>) {
        if topics.is_empty() {
            return;
        }
        let mut map = self.write();
        for topic in topics {
            let Some(subscribers) = map.get_mut(&**topic) else {
                continue;
            };
            if let Some(at) = subscribers.iter().position(|i| i.id() == id) {
                subscribers.swap_remove(at);
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
        let Some(subscribers) = map.get_mut(topic) else {
            return;
        };
        subscribers.retain(|i| !i.is_closed());
        if subscribers.is_empty() {
            map.remove(topic);
            if let Some(f) = on_topic {
                f(topic, TopicEvent::Last);
            }
        }
    }
}
