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
//! publish that would take it past the limit either skips the subscriber's cursor past its
//! oldest waiting records until the new one fits (they are dropped for it, counted), or closes
//! the socket, as the [`SlowPolicy`] says. So a log holds at most about the limit (plus one
//! message) past its slowest live cursor, whatever the readers do, and records every cursor has
//! passed are freed at the next publish. The socket moves records out only while its own write
//! queue is under its high-water mark.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Waker;

use bytes::{Bytes, BytesMut};

use super::close::CloseCode;
use super::frame::{FrameHeader, MAX_HEADER_LEN, OpCode, encode_header};

/// What happens to a subscriber whose queued bytes would pass its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SlowPolicy {
    /// The oldest messages waiting for that subscriber are dropped until the new one fits; the
    /// subscriber stays, and the drop is counted (in the publish report and per socket). The
    /// default.
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
#[derive(Debug)]
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
                    continue;
                }
                let cursor = subscription.cursor.load(Ordering::Relaxed).max(state.first);
                if inbox.id == except {
                    oldest = oldest.min(cursor);
                    continue;
                }
                report.matched += 1;
                message.prepare(inbox.encoding);
                let waiting = state.waiting_from(cursor);
                // A message larger than the limit still reaches a socket that has nothing
                // waiting.
                if waiting == 0 || waiting + cost <= inbox.limit as u64 {
                    report.queued += 1;
                    oldest = oldest.min(cursor);
                    continue;
                }
                match inbox.policy {
                    SlowPolicy::Drop => {
                        let cursor = state.skip_oldest(cursor, cost, inbox);
                        subscription.cursor.store(cursor, Ordering::Relaxed);
                        report.dropped += 1;
                        oldest = oldest.min(cursor);
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
    /// Moves a cursor past the oldest records waiting for `inbox` until a record of `cost`
    /// fits its limit; counts the ones that were for it as dropped.
    fn skip_oldest(&self, mut cursor: u64, cost: u64, inbox: &Inbox) -> u64 {
        let mut dropped = 0;
        loop {
            let waiting = self.waiting_from(cursor);
            if waiting == 0 || waiting + cost <= inbox.limit as u64 {
                break;
            }
            let Some(record) = self.get(cursor) else {
                break;
            };
            if record.except != inbox.id {
                dropped += 1;
            }
            cursor += 1;
        }
        inbox.dropped.fetch_add(dropped, Ordering::Relaxed);
        cursor
    }
}

/// A socket's place in one topic: its cursor into the topic's log.
#[derive(Debug)]
pub(crate) struct Subscription {
    inbox: Arc<Inbox>,
    log: Arc<Log>,
    /// The position of the next record for this socket; written under the log's lock (by the
    /// socket as it takes records, by a publisher when it drops the oldest).
    cursor: AtomicU64,
}

impl Subscription {
    /// A subscription of `inbox` to `log`, from the next message published.
    pub(crate) fn new(inbox: Arc<Inbox>, log: Arc<Log>) -> Self {
        let cursor = lock(&log.state).end();
        Self {
            inbox,
            log,
            cursor: AtomicU64::new(cursor),
        }
    }

    pub(crate) fn inbox(&self) -> &Arc<Inbox> {
        &self.inbox
    }

    /// Whether a record may be waiting (a hint, read without the log's lock).
    fn may_have_waiting(&self) -> bool {
        self.cursor.load(Ordering::Relaxed) < self.log.end()
    }

    /// The sequence number of the next record, if any.
    fn peek(&self) -> Option<u64> {
        if !self.may_have_waiting() {
            return None;
        }
        let state = lock(&self.log.state);
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
        let state = lock(&self.log.state);
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

    fn waiting_bytes(&self) -> usize {
        let state = lock(&self.log.state);
        let waiting = state.waiting_from(self.cursor.load(Ordering::Relaxed));
        usize::try_from(waiting).unwrap_or(usize::MAX)
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
#[derive(Debug)]
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

    #[test]
    fn over_the_limit_the_drop_policy_drops_the_oldest_and_counts_them() {
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
        assert_eq!(drain_all(&slow), [2, 3, 4]);
        assert_eq!(slow.queued_bytes(), 0);
        let r = log.publish(&subs, message(5, 100), 0);
        assert_eq!(r.queued, 1);
        // What every cursor has passed is freed by the next publish.
        assert_eq!(records(&log), 1);
        assert_eq!(drain_all(&slow), [5]);
    }

    #[test]
    fn a_subscriber_that_never_reads_holds_the_log_to_its_limit() {
        let log = Arc::new(Log::default());
        let (fast, never) = (
            inbox(1 << 20, SlowPolicy::Drop),
            inbox(4 * cost100(), SlowPolicy::Drop),
        );
        let subs = [subscribe(&log, &fast), subscribe(&log, &never)];
        for n in 0..100 {
            log.publish(&subs, message(n, 100), 0);
            assert_eq!(drain_all(&fast), [n]);
            assert!(records(&log) <= 4, "{} records held", records(&log));
        }
        assert_eq!(never.dropped(), 96);
        assert_eq!(drain_all(&never), [96, 97, 98, 99]);
    }

    #[test]
    fn a_message_over_the_limit_reaches_a_socket_with_nothing_waiting() {
        let log = Arc::new(Log::default());
        let small = inbox(10, SlowPolicy::Drop);
        let subs = [subscribe(&log, &small)];
        assert_eq!(log.publish(&subs, message(1, 100), 0).queued, 1);
        assert_eq!(log.publish(&subs, message(2, 100), 0).dropped, 1);
        assert_eq!(drain_all(&small), [2]);
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
