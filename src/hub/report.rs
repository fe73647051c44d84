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
    /// Subscribers that were over their limit under
    /// [`SlowPolicy::Drop`](crate::SlowPolicy::Drop): the oldest messages waiting for them
    /// (published earlier, one or more, counted in [`Member::dropped`](crate::Member::dropped))
    /// were dropped to make room, and this one was queued for them.
    pub dropped: usize,
    /// Subscribers closed now for being over their limit under
    /// [`SlowPolicy::Close`](crate::SlowPolicy::Close), or found closed (their connection ended
    /// before they were unsubscribed). Either way they are unsubscribed.
    pub closed: usize,
}
