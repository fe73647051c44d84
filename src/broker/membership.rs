//! Node-level subscription counting: the broker hears about a topic at its first local
//! subscriber and its last.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex, PoisonError};

/// A change of the node's broker subscriptions that a join or leave causes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// The first local subscriber: subscribe the broker channel.
    Subscribe(Arc<str>),
    /// The last one left: unsubscribe.
    Unsubscribe(Arc<str>),
}

/// How many local subscribers each topic has.
#[derive(Debug, Default)]
pub(crate) struct Membership {
    counts: Mutex<HashMap<Arc<str>, usize>>,
}

impl Membership {
    /// One more local subscriber of `topic`; the change to send, if it is the first.
    ///
    /// `send` runs under the lock, so that changes reach the broker task in the order the
    /// counts changed (a leave and a join racing on one topic cannot swap).
    pub(crate) fn join(&self, topic: &str, send: impl FnOnce(Change)) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(topic) {
            *count += 1;
            return;
        }
        let topic: Arc<str> = Arc::from(topic);
        counts.insert(topic.clone(), 1);
        send(Change::Subscribe(topic));
    }

    /// One local subscriber of `topic` fewer; the change to send, if it was the last. A leave
    /// without a join is ignored.
    pub(crate) fn leave(&self, topic: &str, send: impl FnOnce(Change)) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let Some((key, count)) = counts.get_key_value(topic) else {
            return;
        };
        if *count > 1 {
            if let Some(count) = counts.get_mut(topic) {
                *count -= 1;
            }
            return;
        }
        let key = key.clone();
        if let Entry::Occupied(entry) = counts.entry(key.clone()) {
            entry.remove();
        }
        send(Change::Unsubscribe(key));
    }

    /// The topics with at least one local subscriber.
    pub(crate) fn topics(&self) -> Vec<Arc<str>> {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.keys().cloned().collect()
    }

    /// Local subscribers of `topic`.
    pub(crate) fn count(&self, topic: &str) -> usize {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.get(topic).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_join_and_last_leave_change_the_subscription() {
        let members = Membership::default();
        let mut changes = Vec::new();
        members.join("a", |c| changes.push(c));
        members.join("a", |c| changes.push(c));
        members.join("b", |c| changes.push(c));
        members.leave("a", |c| changes.push(c));
        assert_eq!(members.count("a"), 1);
        members.leave("a", |c| changes.push(c));
        members.leave("a", |c| changes.push(c));
        members.leave("never", |c| changes.push(c));
        assert_eq!(
            changes,
            vec![
                Change::Subscribe("a".into()),
                Change::Subscribe("b".into()),
                Change::Unsubscribe("a".into()),
            ]
        );
        assert_eq!(members.topics(), vec![Arc::<str>::from("b")]);
    }
}
