//! [`Published`]: what a publish did.

/// What [`Hub::publish`](super::Hub::publish) did, subscriber by subscriber.
///
/// `matched == queued + dropped + closed`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Published {
    /// Subscribers of the topic (but the excluded socket, if any).
    pub matched: usize,
    /// Subscribers the message was queued for, with room under their limit.
    pub queued: usize,
    /// Subscribers over their limit under [`SlowPolicy::Drop`](crate::SlowPolicy::Drop): the
    /// message was not queued for them (counted in
    /// [`Member::dropped`](crate::Member::dropped)).
    pub dropped: usize,
    /// Subscribers closed now for being over their limit under
    /// [`SlowPolicy::Close`](crate::SlowPolicy::Close), or found closed (their connection ended
    /// before they were unsubscribed). Either way they are unsubscribed.
    pub closed: usize,
}
