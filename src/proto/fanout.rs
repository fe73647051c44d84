//! A socket's inbox for fan-out: frames that publishers queued for it, encoded once and shared.
//!
//! The [`Hub`](crate::hub::Hub) frames a published message once (a server frame is unmasked, so
//! the same bytes serve every subscriber) and offers the frame to each subscriber's [`Inbox`]: a
//! reference-counted [`Bytes`] pushed onto a queue, no copy and, once the queue has grown to its
//! working size, no allocation. The socket's task moves the frames into its write queue when it
//! wakes (see `WriteQueue::push_encoded`: a small frame is copied into the socket's write buffer,
//! a large one queued by reference), ahead of any message it sends itself afterwards, so one
//! write carries both, in the order they were made.
//!
//! The inbox is bounded: [`Inbox::offer`] refuses a frame that would take the bytes waiting past
//! the socket's limit, and then either drops it for this socket (counted) or closes the socket,
//! as the [`SlowPolicy`] says. The socket moves frames out only while its own write queue is
//! under its high-water mark, so a socket that does not read holds at most its limit here plus
//! its write queue's high-water mark.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::Waker;

use bytes::{Bytes, BytesMut};

use super::close::CloseCode;
use super::frame::{FrameHeader, MAX_HEADER_LEN, OpCode, encode_header};

/// What happens to a subscriber whose queued bytes would pass its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SlowPolicy {
    /// The message is not queued for that subscriber; the subscriber stays, and the drop is
    /// counted (in the publish report and per socket). The default.
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

/// A frame waiting in an inbox.
#[derive(Debug)]
pub(crate) enum Entry {
    /// A whole encoded frame, written as it is.
    Frame(Bytes),
    /// A plain encoded frame whose payload (after `header_len` bytes) the socket compresses with
    /// its own context before writing (or writes as it is, under its compression threshold).
    Compress {
        frame: Bytes,
        header_len: u8,
        opcode: OpCode,
    },
}

impl Entry {
    /// What the entry counts against the limit: its frame and its slot in the queue.
    fn cost(&self) -> usize {
        let frame = match self {
            Self::Frame(frame) | Self::Compress { frame, .. } => frame.len(),
        };
        frame + size_of::<Self>()
    }
}

/// What [`Inbox::offer`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offered {
    Queued,
    Dropped,
    /// Closed now, under [`SlowPolicy::Close`].
    Closed,
    /// The socket had already gone (or been closed).
    Gone,
}

#[derive(Debug, Default)]
struct State {
    entries: VecDeque<Entry>,
    /// The entries' cost.
    bytes: usize,
    /// The socket's task, registered while it waits with an empty inbox.
    waker: Option<Waker>,
    /// A close asked for by the slow-subscriber policy, not yet taken by the socket.
    close: Option<CloseCode>,
}

/// Frames queued for one socket by publishers, shared between the socket and the hub.
#[derive(Debug)]
pub(crate) struct Inbox {
    id: u64,
    encoding: Encoding,
    limit: usize,
    policy: SlowPolicy,
    /// No more frames are accepted: the socket closed, or the policy closed it.
    closed: AtomicBool,
    dropped: AtomicU64,
    state: Mutex<State>,
}

/// A queue capacity above which a drained queue gives its memory back.
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
            dropped: AtomicU64::new(0),
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock (no user code runs under it).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The socket's id, unique in the process.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn encoding(&self) -> Encoding {
        self.encoding
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Messages not queued for this socket because it was over its limit.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Bytes waiting here (frames and their queue slots).
    pub(crate) fn queued_bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Queues `entry` for the socket, or applies the slow-subscriber policy. Wakes the socket's
    /// task when the inbox was empty (a task woken earlier has not drained it yet otherwise).
    pub(crate) fn offer(&self, entry: Entry) -> Offered {
        if self.is_closed() {
            return Offered::Gone;
        }
        let cost = entry.cost();
        let mut state = self.lock();
        if self.is_closed() {
            return Offered::Gone;
        }
        // A message larger than the limit still reaches a socket that has nothing waiting.
        if state.bytes > 0 && state.bytes + cost > self.limit {
            return match self.policy {
                SlowPolicy::Drop => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    Offered::Dropped
                }
                SlowPolicy::Close => {
                    self.closed.store(true, Ordering::Release);
                    state.entries = VecDeque::new();
                    state.bytes = 0;
                    state.close = Some(SLOW_CLOSE_CODE);
                    let waker = state.waker.take();
                    drop(state);
                    if let Some(waker) = waker {
                        waker.wake();
                    }
                    Offered::Closed
                }
            };
        }
        let was_empty = state.entries.is_empty();
        state.entries.push_back(entry);
        state.bytes += cost;
        let waker = if was_empty { state.waker.take() } else { None };
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        Offered::Queued
    }

    /// The socket went away: accept nothing more and free what waits.
    pub(crate) fn shut(&self) {
        self.closed.store(true, Ordering::Release);
        let mut state = self.lock();
        state.entries = VecDeque::new();
        state.bytes = 0;
        state.waker = None;
    }

    /// Moves entries to `sink` in order, from the first (if `start`) for as long as `sink`
    /// returns `true`; returns a close the policy asked for, if any (and then moves nothing).
    pub(crate) fn drain(
        &self,
        start: bool,
        mut sink: impl FnMut(Entry) -> bool,
    ) -> Option<CloseCode> {
        let mut state = self.lock();
        if let Some(code) = state.close.take() {
            return Some(code);
        }
        let mut more = start;
        while more {
            let Some(entry) = state.entries.pop_front() else {
                break;
            };
            state.bytes -= entry.cost();
            more = sink(entry);
        }
        if state.entries.is_empty() && state.entries.capacity() > KEEP_CAPACITY {
            state.entries.shrink_to(KEEP_CAPACITY);
        }
        None
    }

    /// Registers the socket's task to be woken by the next frame, unless frames (or a close)
    /// are already waiting: then `true`, and the caller drains again.
    pub(crate) fn register(&self, waker: &Waker) -> bool {
        let mut state = self.lock();
        if !state.entries.is_empty() || state.close.is_some() {
            return true;
        }
        match &state.waker {
            Some(w) if w.will_wake(waker) => {}
            _ => state.waker = Some(waker.clone()),
        }
        false
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

    /// What a socket with `encoding` gets: the shared frame (plain, or compressed once for its
    /// settings), or the plain frame for it to compress with its own context.
    pub(crate) fn entry_for(&mut self, encoding: Encoding) -> Entry {
        match encoding {
            Encoding::Plain => Entry::Frame(self.frame.clone()),
            Encoding::Own => Entry::Compress {
                frame: self.frame.clone(),
                header_len: self.header_len,
                opcode: self.opcode,
            },
            Encoding::Shared(settings) => Entry::Frame(self.shared_compressed(settings)),
        }
    }

    #[cfg(feature = "deflate")]
    fn shared_compressed(&mut self, settings: SharedDeflate) -> Bytes {
        let payload = self
            .frame
            .get(usize::from(self.header_len)..)
            .unwrap_or_default();
        if payload.len() < settings.threshold {
            return self.frame.clone();
        }
        if let Some((_, frame)) = self.compressed.iter().find(|(s, _)| *s == settings) {
            return frame.clone();
        }
        let compressed = super::deflate::Codec::compress_shared(settings, payload);
        let (frame, _) = encode(self.opcode, super::frame::RSV1, &compressed);
        self.compressed.push((settings, frame.clone()));
        frame
    }

    #[cfg(not(feature = "deflate"))]
    fn shared_compressed(&mut self, _: SharedDeflate) -> Bytes {
        self.frame.clone()
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
    use super::*;

    fn frame(len: usize) -> Entry {
        Entry::Frame(Bytes::from(vec![0; len]))
    }

    #[test]
    fn over_the_limit_the_drop_policy_counts_and_keeps_the_socket() {
        let inbox = Inbox::new(
            Encoding::Plain,
            3 * (100 + size_of::<Entry>()),
            SlowPolicy::Drop,
        );
        for _ in 0..3 {
            assert_eq!(inbox.offer(frame(100)), Offered::Queued);
        }
        assert_eq!(inbox.offer(frame(100)), Offered::Dropped);
        assert_eq!(inbox.dropped(), 1);
        let mut taken = 0;
        assert_eq!(
            inbox.drain(true, |_| {
                taken += 1;
                true
            }),
            None
        );
        assert_eq!(taken, 3);
        assert_eq!(inbox.queued_bytes(), 0);
        assert_eq!(inbox.offer(frame(100)), Offered::Queued);
    }

    #[test]
    fn over_the_limit_the_close_policy_frees_the_queue_and_asks_for_a_close() {
        let inbox = Inbox::new(Encoding::Plain, 150, SlowPolicy::Close);
        assert_eq!(inbox.offer(frame(50)), Offered::Queued);
        assert_eq!(inbox.offer(frame(100)), Offered::Closed);
        assert_eq!(inbox.queued_bytes(), 0);
        assert_eq!(inbox.offer(frame(1)), Offered::Gone);
        assert_eq!(
            inbox.drain(true, |_| panic!("nothing queued")),
            Some(SLOW_CLOSE_CODE)
        );
    }

    #[test]
    fn register_reports_waiting_frames_instead_of_sleeping() {
        let inbox = Inbox::new(Encoding::Plain, 1 << 20, SlowPolicy::Drop);
        assert!(!inbox.register(Waker::noop()));
        inbox.offer(frame(10));
        assert!(inbox.register(Waker::noop()));
    }
}
