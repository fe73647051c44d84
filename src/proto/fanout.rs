//! Fan-out: a log of published frames per topic, read by each subscriber from its own cursor.
//!
//! The [`Hub`](crate::hub::Hub) frames a published message once (a server frame is unmasked, so
//! the same bytes serve every subscriber) and appends it to the topic's [`Log`], under one lock,
//! once per publish. A subscriber is a [`Subscription`]: a cursor into that log. Publishing
//! touches a subscriber only to read its cursor (for its limit) and, if its socket has not been
//! woken since it last went to sleep, to wake it: the socket's `notified` flag is read with a
//! plain load first, so the 2nd..nth publish of a burst does no atomic read-modify-write on the
//! subscriber at all, and nothing is pushed, reference-counted or allocated per subscriber.
//!
//! The socket's task, when it runs, copies what lies past its cursor(s) into its write queue
//! (see `WriteQueue::push_encoded`: a small frame is copied into the socket's write buffer, a
//! large one queued by reference), ahead of any message it sends itself afterwards, so one write
//! carries both, in the order they were made. A socket on several topics takes their records in
//! publish order (each record carries a process-wide sequence number).
//!
//! Bounded: a subscriber may have at most its limit of bytes waiting in a log (per topic). A
//! publish that would take it past the limit either drops the new message for that subscriber
//! (counted), or closes the socket, as the [`SlowPolicy`] says. Dropping moves what was waiting
//! for the slow subscriber out of the log into its own held queue (references to the same
//! frames, at most its limit) and puts its cursor past the new record, so a reader that stops
//! never pins the log: a log holds what its live cursors have yet to take, and records every
//! cursor has passed are freed at the next publish. Only a subscriber that has gone over its
//! limit has a held queue; the fast path never looks at one. The socket moves records out only
//! while its own write queue is under its high-water mark.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Waker;

use bytes::{Bytes, BytesMut};

use super::close::CloseCode;
use super::frame::{FrameHeader, MAX_HEADER_LEN, OpCode, encode_header};

/// What happens to a subscriber whose queued bytes would pass its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SlowPolicy {
    /// The new message is dropped for that subscriber, which keeps what was already waiting
    /// for it; the subscriber stays, and the drop is counted (in the publish report and per
    /// socket). The default, as in uWebSockets.
    #[default]
    Drop,
    /// The subscriber is unsubscribed from everything at once, what was queued for it is freed,
    /// and its socket is closed with 1008 (policy violation) and the reason
    /// `"subscriber too slow"`.
    Close,
}

/// The close code a subscriber gets under [`SlowPolicy::Close`].
pub(crate) const SLOW_CLOSE_CODE: CloseCode = CloseCode::POLICY_VIOLATION;

/// The close reason a subscriber gets under [`SlowPolicy::Close`].
pub(crate) const SLOW_CLOSE_REASON: &str = "subscriber too slow";

/// How a subscriber's socket wants published messages: as they are, compressed with a shared
/// context-free compressor, or compressed by its own compressor (context takeover).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// No permessage-deflate: the plain frame.
    Plain,
    /// permessage-deflate without context takeover: a frame compressed once per publish for
    /// every socket with the same settings.
    #[cfg_attr(not(feature = "deflate"), allow(dead_code))]
    Shared(SharedDeflate),
    /// permessage-deflate with context takeover: the socket compresses each message itself.
    #[cfg_attr(not(feature = "deflate"), allow(dead_code))]
    Own,
}

/// The compression settings that make a context-free compressed frame shareable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SharedDeflate {
    pub(crate) level: u32,
    pub(crate) window_bits: u8,
    pub(crate) threshold: usize,
}

/// A frame the socket is to write, borrowed from a log record.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Delivery<'a> {
    /// A whole encoded frame, written as it is.
    Frame(&'a Bytes),
    /// A plain encoded frame whose payload (after `header_len` bytes) the socket compresses with
    /// its own context before writing (or writes as it is, under its compression threshold).
    Compress {
        frame: &'a Bytes,
        header_len: u8,
        opcode: OpCode,
    },
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks (no user code runs under them).
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Orders records across topics: a socket on several topics takes them in this order.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// One published message in a topic's log.
#[derive(Debug, Clone)]
struct Record {
    /// Process-wide publish order.
    seq: u64,
    /// The log's byte count before this record (see [`Record::cost`]).
    start: u64,
    /// The socket this message is not for (`publish_except`), or 0.
    except: u64,
    message: Outgoing,
}

impl Record {
    /// What a record counts against a subscriber's limit: its plain frame and its slot.
    fn cost(message: &Outgoing) -> u64 {
        (message.frame.len() + size_of::<Self>()) as u64
    }
}

#[derive(Debug, Default)]
struct LogState {
    records: VecDeque<Record>,
    /// The position of `records[0]`; positions only grow.
    first: u64,
    /// The cost of every record ever appended.
    end_bytes: u64,
    /// What went over its limit: per subscription (by address), the records that were waiting
    /// for it then, moved out of the log so that its cursor does not hold the log back.
    held: HashMap<usize, VecDeque<Record>>,
}

impl LogState {
    fn end(&self) -> u64 {
        self.first + self.records.len() as u64
    }

    fn get(&self, pos: u64) -> Option<&Record> {
        let at = usize::try_from(pos.checked_sub(self.first)?).ok()?;
        self.records.get(at)
    }

    /// Bytes appended at or after `pos`.
    fn waiting_from(&self, pos: u64) -> u64 {
        let start = match self.get(pos.max(self.first)) {
            Some(record) => record.start,
            None => self.end_bytes,
        };
        self.end_bytes - start
    }
}

/// A topic's published messages, from the oldest some live subscriber has not yet taken.
#[derive(Debug, Default)]
pub(crate) struct Log {
    state: Mutex<LogState>,
    /// The position after the last record, readable without the lock (to see whether a
    /// subscriber has anything waiting).
    end: AtomicU64,
}

/// What [`Log::publish`] did, subscriber by subscriber.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Delivered {
    pub(crate) matched: usize,
    pub(crate) queued: usize,
    pub(crate) dropped: usize,
    pub(crate) closed: usize,
}

impl Log {
    /// Appends `message` for `subscribers` (all of this log's, but the socket `except`, 0 for
    /// none), applies each one's limit, frees what every live subscriber has taken, and wakes
    /// the sockets that are not already awake.
    pub(crate) fn publish(
        &self,
        subscribers: &[Arc<Subscription>],
        mut message: Outgoing,
        except: u64,
    ) -> Delivered {
        let mut report = Delivered::default();
        let cost = Record::cost(&message);
        {
            let mut state = lock(&self.state);
            // The oldest position a live subscriber still needs.
            let mut oldest = u64::MAX;
            for subscription in subscribers {
                let inbox = &*subscription.inbox;
                if inbox.is_closed() {
                    if inbox.id != except {
                        report.matched += 1;
                        report.closed += 1;
                    }
                    if subscription.held.load(Ordering::Relaxed) > 0 {
                        state.held.remove(&subscription.key());
                        subscription.held.store(0, Ordering::Relaxed);
                    }
                    continue;
                }
                let cursor = subscription.cursor.load(Ordering::Relaxed).max(state.first);
                if inbox.id == except {
                    oldest = oldest.min(cursor);
                    continue;
                }
                report.matched += 1;
                message.prepare(inbox.encoding);
                let waiting =
                    subscription.held.load(Ordering::Relaxed) + state.waiting_from(cursor);
                // A message larger than the limit still reaches a socket that has nothing
                // waiting.
                if waiting == 0 || waiting + cost <= inbox.limit as u64 {
                    report.queued += 1;
                    oldest = oldest.min(cursor);
                    continue;
                }
                match inbox.policy {
                    SlowPolicy::Drop => {
                        // Not for this one: what waited for it moves to its held queue, and
                        // its cursor goes past the record appended below, at `end`.
                        let end = state.end();
                        state.hold(subscription, cursor);
                        subscription.cursor.store(end + 1, Ordering::Relaxed);
                        inbox.dropped.fetch_add(1, Ordering::Relaxed);
                        report.dropped += 1;
                    }
                    SlowPolicy::Close => {
                        inbox.closed.store(true, Ordering::SeqCst);
                        inbox.close_asked.store(true, Ordering::SeqCst);
                        report.closed += 1;
                    }
                }
            }
            if report.queued + report.dropped > 0 {
                let start = state.end_bytes;
                let seq = SEQUENCE.fetch_add(1, Ordering::SeqCst);
                state.records.push_back(Record {
                    seq,
                    start,
                    except,
                    message,
                });
                state.end_bytes += cost;
            }
            let end = state.end();
            while state.first < oldest.min(end) {
                state.records.pop_front();
                state.first += 1;
            }
            if state.records.is_empty() && state.records.capacity() > KEEP_CAPACITY {
                state.records.shrink_to(KEEP_CAPACITY);
            }
            self.end.store(end, Ordering::SeqCst);
        }
        for subscription in subscribers {
            if subscription.inbox.id != except {
                subscription.inbox.notify();
            }
        }
        report
    }

    fn end(&self) -> u64 {
        self.end.load(Ordering::SeqCst)
    }
}

impl LogState {
    /// Moves (references to) the records from `cursor` on that are for `subscription` to its
    /// held queue, behind what it already holds.
    fn hold(&mut self, subscription: &Subscription, cursor: u64) {
        let id = subscription.inbox.id;
        let mut added = 0;
        let first = usize::try_from(cursor.saturating_sub(self.first)).unwrap_or(usize::MAX);
        let moved: Vec<Record> = self
            .records
            .iter()
            .skip(first)
            .filter(|record| record.except != id)
            .cloned()
            .collect();
        if moved.is_empty() {
            return;
        }
        let held = self.held.entry(subscription.key()).or_default();
        for record in moved {
            added += Record::cost(&record.message);
            held.push_back(record);
        }
        subscription.held.fetch_add(added, Ordering::Relaxed);
    }
}

/// A socket's place in one topic: its cursor into the topic's log.
#[derive(Debug)]
pub(crate) struct Subscription {
    inbox: Arc<Inbox>,
    log: Arc<Log>,
    /// The position of the next record for this socket; written under the log's lock (by the
    /// socket as it takes records, by a publisher when it drops a message for it).
    cursor: AtomicU64,
    /// The cost of the records in this subscription's held queue (see [`LogState::held`]);
    /// written under the log's lock, 0 unless it went over its limit.
    held: AtomicU64,
}

impl Subscription {
    /// A subscription of `inbox` to `log`, from the next message published.
    pub(crate) fn new(inbox: Arc<Inbox>, log: Arc<Log>) -> Self {
        let cursor = lock(&log.state).end();
        Self {
            inbox,
            log,
            cursor: AtomicU64::new(cursor),
            held: AtomicU64::new(0),
        }
    }

    /// This subscription's key in its log's held queues: its address, stable while it lives.
    fn key(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    pub(crate) fn inbox(&self) -> &Arc<Inbox> {
        &self.inbox
    }

    /// Whether a record may be waiting (a hint, read without the log's lock).
    fn may_have_waiting(&self) -> bool {
        self.cursor.load(Ordering::Relaxed) < self.log.end()
            || self.held.load(Ordering::Relaxed) > 0
    }

    /// The sequence number of the next record, if any.
    fn peek(&self) -> Option<u64> {
        if !self.may_have_waiting() {
            return None;
        }
        let state = lock(&self.log.state);
        if self.held.load(Ordering::Relaxed) > 0
            && let Some(record) = state.held.get(&self.key()).and_then(VecDeque::front)
        {
            return Some(record.seq);
        }
        let cursor = self.cursor.load(Ordering::Relaxed);
        state.get(cursor.max(state.first)).map(|r| r.seq)
    }

    /// Hands `sink` the records before sequence number `bound`, in order, for as long as it
    /// returns `true`; returns what it last returned.
    fn take(&self, bound: u64, sink: &mut impl FnMut(Delivery<'_>) -> bool) -> bool {
        if !self.may_have_waiting() {
            return true;
        }
        let (id, encoding) = (self.inbox.id, self.inbox.encoding);
        let mut state = lock(&self.log.state);
        // What was held when the socket went over its limit comes before anything in the log.
        if self.held.load(Ordering::Relaxed) > 0
            && let Some(more) = self.take_held(&mut state, bound, sink)
        {
            return more;
        }
        let mut cursor = self.cursor.load(Ordering::Relaxed).max(state.first);
        let mut more = true;
        while let Some(record) = state.get(cursor) {
            if record.seq >= bound {
                break;
            }
            cursor += 1;
            if record.except != id {
                more = sink(record.message.delivery(encoding));
                if !more {
                    break;
                }
            }
        }
        self.cursor.store(cursor, Ordering::Relaxed);
        more
    }

    /// [`take`](Self::take) from the held queue first: `Some` of what `take` returns if it
    /// must stop here (the sink stopped, or a held record is at or past `bound`, so the log's
    /// records are too), `None` if the held queue emptied and the log comes next.
    fn take_held(
        &self,
        state: &mut LogState,
        bound: u64,
        sink: &mut impl FnMut(Delivery<'_>) -> bool,
    ) -> Option<bool> {
        let key = self.key();
        let Some(held) = state.held.get_mut(&key) else {
            self.held.store(0, Ordering::Relaxed);
            return None;
        };
        let mut stop = None;
        let mut taken = 0;
        while let Some(record) = held.front() {
            if record.seq >= bound {
                stop = Some(true);
                break;
            }
            let more = sink(record.message.delivery(self.inbox.encoding));
            taken += Record::cost(&record.message);
            held.pop_front();
            if !more {
                stop = Some(false);
                break;
            }
        }
        if held.is_empty() {
            state.held.remove(&key);
            self.held.store(0, Ordering::Relaxed);
        } else {
            self.held.fetch_sub(taken, Ordering::Relaxed);
        }
        stop
    }

    fn waiting_bytes(&self) -> usize {
        let state = lock(&self.log.state);
        let waiting = self.held.load(Ordering::Relaxed)
            + state.waiting_from(self.cursor.load(Ordering::Relaxed));
        usize::try_from(waiting).unwrap_or(usize::MAX)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if *self.held.get_mut() > 0 {
            let key = self.key();
            lock(&self.log.state).held.remove(&key);
        }
    }
}

/// What a socket that joined a hub shares with the topics it subscribes to.
#[derive(Debug)]
pub(crate) struct Inbox {
    id: u64,
    encoding: Encoding,
    limit: usize,
    policy: SlowPolicy,
    /// No more records are taken: the socket closed, or the policy closed it.
    closed: AtomicBool,
    /// A close asked for by the slow-subscriber policy, not yet taken by the socket.
    close_asked: AtomicBool,
    /// Set by the first publisher that wakes the socket, cleared when the socket goes back to
    /// sleep: later publishers see it set and leave the socket alone.
    notified: AtomicBool,
    dropped: AtomicU64,
    /// The socket's task, registered when it waits.
    waker: Mutex<Option<Waker>>,
    /// The socket's subscriptions, in the order they were made.
    subscriptions: Mutex<Vec<Arc<Subscription>>>,
}

/// A queue capacity above which an emptied log gives its memory back.
const KEEP_CAPACITY: usize = 64;

fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl Inbox {
    pub(crate) fn new(encoding: Encoding, limit: usize, policy: SlowPolicy) -> Self {
        Self {
            id: next_id(),
            encoding,
            limit,
            policy,
            closed: AtomicBool::new(false),
            close_asked: AtomicBool::new(false),
            notified: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            waker: Mutex::new(None),
            subscriptions: Mutex::new(Vec::new()),
        }
    }

    /// The socket's id, unique in the process.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Messages dropped for this socket because it was over its limit.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Bytes waiting for this socket in its topics' logs (records and their slots; a record
    /// the socket is excluded from counts until its cursor passes it).
    pub(crate) fn queued_bytes(&self) -> usize {
        lock(&self.subscriptions)
            .iter()
            .map(|s| s.waiting_bytes())
            .sum()
    }

    /// Adds a subscription (the caller holds the topic table's write lock, so no publish
    /// runs between its creation and this).
    pub(crate) fn attach(&self, subscription: Arc<Subscription>) {
        if !self.is_closed() {
            lock(&self.subscriptions).push(subscription);
        }
    }

    /// Removes a subscription.
    pub(crate) fn detach(&self, subscription: &Arc<Subscription>) {
        let mut subscriptions = lock(&self.subscriptions);
        if let Some(at) = subscriptions
            .iter()
            .position(|s| Arc::ptr_eq(s, subscription))
        {
            subscriptions.remove(at);
        }
    }

    /// Wakes the socket, unless it was woken since it last went to sleep.
    fn notify(&self) {
        // A plain load first: in a burst, only the first publish changes anything here.
        if self.notified.load(Ordering::SeqCst) || self.notified.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(waker) = lock(&self.waker).as_ref() {
            waker.wake_by_ref();
        }
    }

    /// The socket went away: take nothing more, and let go of the logs.
    pub(crate) fn shut(&self) {
        self.closed.store(true, Ordering::Release);
        *lock(&self.waker) = None;
        let subscriptions = std::mem::take(&mut *lock(&self.subscriptions));
        drop(subscriptions);
    }

    /// Hands `sink` the records waiting for the socket, in publish order, if `start`, for as
    /// long as it returns `true`; returns a close the policy asked for, if any (and then hands
    /// it nothing).
    pub(crate) fn drain(
        &self,
        start: bool,
        mut sink: impl FnMut(Delivery<'_>) -> bool,
    ) -> Option<CloseCode> {
        if self.close_asked.load(Ordering::SeqCst) && self.close_asked.swap(false, Ordering::SeqCst)
        {
            return Some(SLOW_CLOSE_CODE);
        }
        if !start {
            return None;
        }
        let subscriptions = lock(&self.subscriptions);
        match subscriptions.as_slice() {
            [] => {}
            [one] => {
                one.take(u64::MAX, &mut sink);
            }
            many => merge(many, &mut sink),
        }
        None
    }

    /// Registers the socket's task to be woken by the next publish, unless records (or a
    /// close) are already waiting: then `true`, and the caller drains again.
    pub(crate) fn register(&self, waker: &Waker) -> bool {
        {
            let mut slot = lock(&self.waker);
            match &*slot {
                Some(w) if w.will_wake(waker) => {}
                _ => *slot = Some(waker.clone()),
            }
        }
        // From here a publisher wakes the task; what it appended before, we see below.
        if self.notified.load(Ordering::SeqCst) {
            self.notified.store(false, Ordering::SeqCst);
        }
        if self.close_asked.load(Ordering::SeqCst) {
            return true;
        }
        lock(&self.subscriptions)
            .iter()
            .any(|s| s.may_have_waiting())
    }
}

/// Takes the records of several subscriptions in publish order: those published before the
/// merge began (a record published earlier, on any thread, is in its log by then).
fn merge(subscriptions: &[Arc<Subscription>], sink: &mut impl FnMut(Delivery<'_>) -> bool) {
    let horizon = SEQUENCE.load(Ordering::SeqCst);
    loop {
        let mut best: Option<(&Subscription, u64)> = None;
        let mut next = horizon;
        for subscription in subscriptions {
            let Some(seq) = subscription.peek().filter(|&s| s < horizon) else {
                continue;
            };
            match best {
                Some((_, b)) if b <= seq => next = next.min(seq),
                _ => {
                    if let Some((_, b)) = best {
                        next = next.min(b);
                    }
                    best = Some((subscription, seq));
                }
            }
        }
        let Some((subscription, seq)) = best else {
            return;
        };
        // The same topic twice (a socket joined twice) gives equal numbers: take one.
        if !subscription.take(next.max(seq + 1), sink) {
            return;
        }
    }
}

/// A published message, framed once for every subscriber.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    opcode: OpCode,
    /// The plain frame: header and payload in one buffer.
    frame: Bytes,
    header_len: u8,
    /// Compressed frames made so far, one per set of shared-deflate settings met.
    #[cfg_attr(not(feature = "deflate"), allow(dead_code))]
    compressed: Vec<(SharedDeflate, Bytes)>,
}

impl Outgoing {
    /// Frames `payload` (unmasked: a server frame).
    pub(crate) fn new(opcode: OpCode, payload: &[u8]) -> Self {
        let (frame, header_len) = encode(opcode, 0, payload);
        Self {
            opcode,
            frame,
            header_len,
            compressed: Vec::new(),
        }
    }

    /// Makes what a socket with `encoding` will need (a shared compressed frame), once per
    /// distinct settings.
    #[cfg_attr(
        not(feature = "deflate"),
        expect(
            clippy::unused_self,
            reason = "the frame is compressed with the deflate feature"
        )
    )]
    fn prepare(&mut self, encoding: Encoding) {
        #[cfg(feature = "deflate")]
        if let Encoding::Shared(settings) = encoding {
            let payload = self
                .frame
                .get(usize::from(self.header_len)..)
                .unwrap_or_default();
            if payload.len() < settings.threshold
                || self.compressed.iter().any(|(s, _)| *s == settings)
            {
                return;
            }
            let compressed = super::deflate::Codec::compress_shared(settings, payload);
            let (frame, _) = encode(self.opcode, super::frame::RSV1, &compressed);
            self.compressed.push((settings, frame));
        }
        #[cfg(not(feature = "deflate"))]
        let _ = encoding;
    }

    /// What a socket with `encoding` writes: the shared frame (plain, or compressed once for
    /// its settings by [`prepare`](Self::prepare)), or the plain frame for it to compress with
    /// its own context.
    fn delivery(&self, encoding: Encoding) -> Delivery<'_> {
        match encoding {
            Encoding::Plain => Delivery::Frame(&self.frame),
            Encoding::Own => Delivery::Compress {
                frame: &self.frame,
                header_len: self.header_len,
                opcode: self.opcode,
            },
            // Under the threshold (or, were it ever missing, uncompressed: always valid).
            Encoding::Shared(settings) => Delivery::Frame(
                self.compressed
                    .iter()
                    .find(|(s, _)| *s == settings)
                    .map_or(&self.frame, |(_, frame)| frame),
            ),
        }
    }
}

/// One unmasked frame with `payload`, in one buffer; and its header's length.
fn encode(opcode: OpCode, rsv: u8, payload: &[u8]) -> (Bytes, u8) {
    let header = FrameHeader {
        fin: true,
        rsv,
        opcode,
        mask: None,
        payload_len: payload.len() as u64,
    };
    let mut frame = BytesMut::with_capacity(MAX_HEADER_LEN + payload.len());
    encode_header(&header, &mut frame);
    let header_len = u8::try_from(frame.len()).unwrap_or(u8::MAX);
    frame.extend_from_slice(payload);
    (frame.freeze(), header_len)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    use super::*;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }

        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn inbox(limit: usize, policy: SlowPolicy) -> Arc<Inbox> {
        Arc::new(Inbox::new(Encoding::Plain, limit, policy))
    }

    fn subscribe(log: &Arc<Log>, inbox: &Arc<Inbox>) -> Arc<Subscription> {
        let subscription = Arc::new(Subscription::new(inbox.clone(), log.clone()));
        inbox.attach(subscription.clone());
        subscription
    }

    /// A binary message whose first byte is `n`, `len` bytes in all.
    fn message(n: u8, len: usize) -> Outgoing {
        let mut payload = vec![0; len];
        payload[0] = n;
        Outgoing::new(OpCode::Binary, &payload)
    }

    /// The first payload byte of each frame the inbox hands over.
    fn drain_all(inbox: &Inbox) -> Vec<u8> {
        let mut got = Vec::new();
        assert_eq!(
            inbox.drain(true, |d| {
                let Delivery::Frame(frame) = d else {
                    panic!("a plain frame")
                };
                got.push(frame[2]);
                true
            }),
            None
        );
        got
    }

    fn records(log: &Log) -> usize {
        lock(&log.state).records.len()
    }

    /// The cost of a 100-byte message's record.
    fn cost100() -> usize {
        usize::try_from(Record::cost(&message(0, 100))).unwrap()
    }

    fn held(log: &Log) -> usize {
        lock(&log.state).held.values().map(VecDeque::len).sum()
    }

    #[test]
    fn over_the_limit_the_drop_policy_drops_the_new_message_and_counts_it() {
        let log = Arc::new(Log::default());
        let slow = inbox(3 * cost100(), SlowPolicy::Drop);
        let subs = [subscribe(&log, &slow)];
        for n in 1..=3 {
            let r = log.publish(&subs, message(n, 100), 0);
            assert_eq!((r.matched, r.queued, r.dropped), (1, 1, 0));
        }
        let r = log.publish(&subs, message(4, 100), 0);
        assert_eq!((r.matched, r.queued, r.dropped, r.closed), (1, 0, 1, 0));
        assert_eq!(slow.dropped(), 1);
        assert_eq!(slow.queued_bytes(), 3 * cost100());
        // What waited moved to the held queue; the log keeps nothing for it.
        assert_eq!((held(&log), records(&log)), (3, 0));
        assert_eq!(drain_all(&slow), [1, 2, 3]);
        assert_eq!((slow.queued_bytes(), held(&log)), (0, 0));
        let r = log.publish(&subs, message(5, 100), 0);
        assert_eq!(r.queued, 1);
        assert_eq!(records(&log), 1);
        assert_eq!(drain_all(&slow), [5]);
    }

    #[test]
    fn a_held_queue_drains_before_the_log_and_a_partial_drain_keeps_the_rest() {
        let log = Arc::new(Log::default());
        let slow = inbox(2 * cost100(), SlowPolicy::Drop);
        let subs = [subscribe(&log, &slow)];
        log.publish(&subs, message(1, 100), 0);
        log.publish(&subs, message(2, 100), 0);
        assert_eq!(log.publish(&subs, message(3, 100), 0).dropped, 1);
        let mut got = Vec::new();
        slow.drain(true, |d| {
            let Delivery::Frame(frame) = d else {
                panic!("a plain frame")
            };
            got.push(frame[2]);
            false
        });
        assert_eq!(got, [1]);
        assert_eq!(slow.queued_bytes(), cost100());
        // Room for one more: queued in the log, behind the held one.
        assert_eq!(log.publish(&subs, message(4, 100), 0).queued, 1);
        assert_eq!(log.publish(&subs, message(5, 100), 0).dropped, 1);
        assert_eq!(slow.dropped(), 2);
        assert_eq!(drain_all(&slow), [2, 4]);
        assert_eq!(held(&log), 0);
    }

    #[test]
    fn a_subscriber_that_never_reads_holds_its_limit_not_the_log() {
        let log = Arc::new(Log::default());
        let (fast, never) = (
            inbox(1 << 20, SlowPolicy::Drop),
            inbox(4 * cost100(), SlowPolicy::Drop),
        );
        let subs = [subscribe(&log, &fast), subscribe(&log, &never)];
        for n in 0..100 {
            log.publish(&subs, message(n, 100), 0);
            assert_eq!(drain_all(&fast), [n]);
            // Up to its limit the slow cursor holds the log; past it, only the new record and
            // the one the fast reader took since the last publish are there.
            let bound = if n < 4 { 4 } else { 2 };
            assert!(
                records(&log) <= bound,
                "{} records in the log",
                records(&log)
            );
            assert!(never.queued_bytes() <= 4 * cost100());
        }
        assert_eq!(never.dropped(), 96);
        assert_eq!(drain_all(&never), [0, 1, 2, 3]);
    }

    #[test]
    fn a_message_over_the_limit_reaches_a_socket_with_nothing_waiting() {
        let log = Arc::new(Log::default());
        let small = inbox(10, SlowPolicy::Drop);
        let subs = [subscribe(&log, &small)];
        assert_eq!(log.publish(&subs, message(1, 100), 0).queued, 1);
        assert_eq!(log.publish(&subs, message(2, 100), 0).dropped, 1);
        assert_eq!(drain_all(&small), [1]);
        assert_eq!(log.publish(&subs, message(3, 100), 0).queued, 1);
        assert_eq!(drain_all(&small), [3]);
    }

    #[test]
    fn held_records_keep_their_place_among_a_sockets_topics() {
        let (a, b) = (Arc::new(Log::default()), Arc::new(Log::default()));
        let socket = inbox(2 * cost100(), SlowPolicy::Drop);
        let on_a = [subscribe(&a, &socket)];
        let on_b = [subscribe(&b, &socket)];
        a.publish(&on_a, message(1, 100), 0);
        b.publish(&on_b, message(2, 100), 0);
        a.publish(&on_a, message(3, 100), 0);
        // Over the limit on `a`: 1 and 3 are held, 4 is dropped; `b` still has room.
        assert_eq!(a.publish(&on_a, message(4, 100), 0).dropped, 1);
        b.publish(&on_b, message(5, 100), 0);
        assert_eq!(drain_all(&socket), [1, 2, 3, 5]);
    }

    #[test]
    fn an_unsubscribed_or_closed_slow_subscriber_leaves_nothing_held() {
        let log = Arc::new(Log::default());
        let (slow, other) = (
            inbox(cost100(), SlowPolicy::Drop),
            inbox(1 << 20, SlowPolicy::Drop),
        );
        let sub = subscribe(&log, &slow);
        let subs = [sub.clone(), subscribe(&log, &other)];
        log.publish(&subs, message(1, 100), 0);
        log.publish(&subs, message(2, 100), 0);
        assert_eq!(held(&log), 1);
        // Closed: the next publish frees what it held.
        slow.shut();
        log.publish(&subs, message(3, 100), 0);
        assert_eq!(held(&log), 0);
        // Unsubscribed (its last reference dropped) while holding: freed with it.
        let slow = inbox(cost100(), SlowPolicy::Drop);
        let sub = subscribe(&log, &slow);
        let subs = [sub.clone(), subscribe(&log, &other)];
        log.publish(&subs, message(4, 100), 0);
        log.publish(&subs, message(5, 100), 0);
        assert_eq!(held(&log), 1);
        slow.detach(&sub);
        drop((sub, subs));
        assert_eq!(held(&log), 0);
    }

    #[test]
    fn over_the_limit_the_close_policy_frees_the_log_and_asks_for_a_close() {
        let log = Arc::new(Log::default());
        let slow = inbox(cost100() + 50, SlowPolicy::Close);
        let subs = [subscribe(&log, &slow)];
        assert_eq!(log.publish(&subs, message(1, 50), 0).queued, 1);
        let r = log.publish(&subs, message(2, 100), 0);
        assert_eq!((r.matched, r.closed, r.dropped), (1, 1, 0));
        assert!(slow.is_closed());
        assert_eq!(records(&log), 0, "nobody left to read");
        assert!(slow.register(Waker::noop()));
        assert_eq!(
            slow.drain(true, |_| panic!("nothing for a closed socket")),
            Some(SLOW_CLOSE_CODE)
        );
        let r = log.publish(&subs, message(3, 1), 0);
        assert_eq!((r.matched, r.closed, r.queued), (1, 1, 0));
    }

    #[test]
    fn register_reports_waiting_records_instead_of_sleeping() {
        let log = Arc::new(Log::default());
        let socket = inbox(1 << 20, SlowPolicy::Drop);
        let subs = [subscribe(&log, &socket)];
        assert!(!socket.register(Waker::noop()));
        log.publish(&subs, message(1, 10), 0);
        assert!(socket.register(Waker::noop()));
        drain_all(&socket);
        assert!(!socket.register(Waker::noop()));
    }

    #[test]
    fn a_burst_wakes_a_sleeping_socket_once() {
        let log = Arc::new(Log::default());
        let socket = inbox(1 << 20, SlowPolicy::Drop);
        let subs = [subscribe(&log, &socket)];
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        assert!(!socket.register(&waker));
        for n in 0..8 {
            log.publish(&subs, message(n, 10), 0);
        }
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
        assert_eq!(drain_all(&socket), [0, 1, 2, 3, 4, 5, 6, 7]);
        // Asleep again: the next publish wakes it again.
        assert!(!socket.register(&waker));
        log.publish(&subs, message(8, 10), 0);
        assert_eq!(count.0.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_socket_on_several_topics_gets_them_in_publish_order_but_its_own() {
        let (a, b) = (Arc::new(Log::default()), Arc::new(Log::default()));
        let socket = inbox(1 << 20, SlowPolicy::Drop);
        let other = inbox(1 << 20, SlowPolicy::Drop);
        let on_a = [subscribe(&a, &socket), subscribe(&a, &other)];
        let on_b = [subscribe(&b, &socket)];
        for n in 0..10 {
            if n % 3 == 0 {
                b.publish(&on_b, message(n, 10), 0);
            } else {
                a.publish(&on_a, message(n, 10), 0);
            }
        }
        let r = a.publish(&on_a, message(10, 10), socket.id());
        assert_eq!((r.matched, r.queued), (1, 1));
        b.publish(&on_b, message(11, 10), 0);
        assert_eq!(drain_all(&socket), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11]);
        assert_eq!(drain_all(&other), [1, 2, 4, 5, 7, 8, 10]);
    }

    #[test]
    fn a_drain_stops_when_the_sink_says_so_and_resumes_there() {
        let log = Arc::new(Log::default());
        let socket = inbox(1 << 20, SlowPolicy::Drop);
        let subs = [subscribe(&log, &socket)];
        for n in 0..5 {
            log.publish(&subs, message(n, 10), 0);
        }
        let mut got = Vec::new();
        socket.drain(true, |d| {
            let Delivery::Frame(frame) = d else {
                panic!("a plain frame")
            };
            got.push(frame[2]);
            got.len() < 2
        });
        assert_eq!(got, [0, 1]);
        assert!(socket.drain(false, |_| panic!("not started")).is_none());
        assert_eq!(drain_all(&socket), [2, 3, 4]);
    }

    #[test]
    fn a_shut_socket_is_counted_closed_and_holds_nothing() {
        let log = Arc::new(Log::default());
        let (gone, stays) = (
            inbox(1 << 20, SlowPolicy::Drop),
            inbox(1 << 20, SlowPolicy::Drop),
        );
        let subs = [subscribe(&log, &gone), subscribe(&log, &stays)];
        log.publish(&subs, message(0, 10), 0);
        gone.shut();
        let r = log.publish(&subs, message(1, 10), 0);
        assert_eq!((r.matched, r.queued, r.closed), (2, 1, 1));
        assert_eq!(drain_all(&stays), [0, 1]);
        log.publish(&subs, message(2, 10), 0);
        assert_eq!(records(&log), 1);
    }
}
