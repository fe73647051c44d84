//! The write side: a queue of encoded frames, written with as few system calls as possible.
//!
//! A frame queued alone (the common case: one reply, written at once) is written straight from
//! its header and payload, with no buffer borrowed: joined on the stack into one plain write when
//! it is small, otherwise a vectored write of header and payload, the payload never copied. When
//! more frames queue up, headers and small payloads are copied into one buffer, so a burst of
//! small frames leaves in one write. A large payload stays in its own `Bytes` and goes out in a vectored write beside
//! the headers around it, never copied. The queue is always a sequence of whole frames: a partial
//! write leaves the rest of the frame at its front, so a frame queued later (a pong, a close) can
//! never split another one.

use std::cell::Cell;
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::AsyncWrite;

use super::frame::{FrameHeader, MAX_HEADER_LEN, OpCode, encode_header};
use super::mask::apply_mask;

/// Payloads up to this size are copied next to their header; larger ones are queued by
/// reference and written with a vectored write.
const INLINE_MAX: usize = 1024;

/// Encoded frames (fan-out frames, shared by many sockets) up to this size are copied into the
/// coalescing buffer rather than queued by reference: the frame of a payload that
/// [`push`](WriteQueue::push) would copy. The kernel's vectored path costs more per slice than
/// a small copy: with one room of 1,000 subscribers and 16 B messages, writing each socket's
/// burst of small frames from one buffer with a plain `write` instead of one slice per frame
/// with `writev` cut the server's time per extra frame in a write from 0.55 to 0.40 us, and
/// raised deliveries per server CPU-second by 8% to 39% across the fan-out bench's cells.
const CORK_MAX: usize = MAX_HEADER_LEN + INLINE_MAX;

/// Slices handed to one vectored write.
const MAX_IOV: usize = 64;

/// A lone frame up to this size (header and payload) is joined on the stack and written with a
/// plain `write`: for a small frame the copy costs less than the kernel's vectored path. The echo
/// bench's 100 x 20 B cell went from 0.94x to 0.99x fastwebsockets (which writes with `send`)
/// in messages per server CPU-second; joining 1 KiB frames as well gained nothing measurable.
const LONE_JOIN_MAX: usize = 512;

/// A run of the queue.
#[derive(Debug)]
enum Segment {
    /// The next `n` bytes of the coalescing buffer.
    Inline(usize),
    /// A payload written from its own allocation.
    Shared(Bytes),
}

/// A frame queued alone: its encoded header and what is left of its payload (advanced as it
/// is written, so no count of written bytes is kept).
#[derive(Debug)]
struct Lone {
    head: [u8; MAX_HEADER_LEN],
    /// Bytes of `head` already written.
    head_written: u8,
    head_len: u8,
    payload: Bytes,
}

impl Lone {
    /// What is left to write of the header and of the payload.
    fn rest(&self) -> (&[u8], &[u8]) {
        let head = self
            .head
            .get(usize::from(self.head_written)..usize::from(self.head_len))
            .unwrap_or_default();
        (head, &self.payload)
    }

    /// Marks `written` more bytes of the frame as written.
    fn advance(&mut self, written: usize) {
        let head_left = self.head_len.saturating_sub(self.head_written);
        let from_head = u8::try_from(written).map_or(head_left, |n| n.min(head_left));
        self.head_written += from_head;
        let from_payload = written - usize::from(from_head);
        self.payload.advance(from_payload.min(self.payload.len()));
    }
}

/// Frames queued together: headers and small payloads copied into one buffer, large payloads
/// by reference beside them.
#[derive(Debug, Default)]
struct Coalesced {
    /// Headers and small payloads, in order.
    buf: BytesMut,
    /// The queue up to the last shared payload; the part of `buf` not covered by an `Inline`
    /// segment follows all of them.
    segments: VecDeque<Segment>,
    /// Bytes of `buf` covered by `Inline` segments.
    inline_in_segments: usize,
}

thread_local! {
    /// This thread's spare [`Coalesced`], with its buffer: polling is synchronous, so one spare
    /// serves every connection the thread drives in turn, and a connection holds one only while
    /// more than one frame waits in its queue.
    static SPARE: Cell<Option<Box<Coalesced>>> = const { Cell::new(None) };
}

/// Spare buffers larger than this are freed rather than kept.
const MAX_SPARE_BUF: usize = 512 << 10;

impl Coalesced {
    /// This thread's spare, or a new one; its buffer empty, with room for a small frame.
    #[inline(never)]
    #[expect(
        clippy::unnecessary_box_returns,
        reason = "the box is what is kept spare and held by the queue"
    )]
    fn take() -> Box<Self> {
        let mut spare = SPARE
            .try_with(Cell::take)
            .ok()
            .flatten()
            .unwrap_or_default();
        if !spare.buf.try_reclaim(MAX_HEADER_LEN + INLINE_MAX) {
            spare.buf = BytesMut::with_capacity(MAX_HEADER_LEN + INLINE_MAX);
        }
        spare
    }

    /// Keeps `spare` (emptied) as this thread's spare, unless the one kept has a larger buffer.
    #[inline(never)]
    fn give_back(mut spare: Box<Self>) {
        spare.segments.clear();
        spare.inline_in_segments = 0;
        spare.buf.clear();
        if spare.buf.capacity() > MAX_SPARE_BUF {
            spare.buf = BytesMut::new();
        }
        let _ = SPARE.try_with(|slot| {
            let kept = match slot.take() {
                Some(previous) if previous.buf.capacity() > spare.buf.capacity() => previous,
                _ => spare,
            };
            slot.set(Some(kept));
        });
    }

    /// Appends the rest of a lone frame, ahead of the frames that follow it.
    fn spill(&mut self, lone: Lone) {
        let (head, payload) = lone.rest();
        self.buf.extend_from_slice(head);
        if payload.len() <= INLINE_MAX {
            self.buf.extend_from_slice(payload);
        } else {
            self.close_inline_run();
            self.segments.push_back(Segment::Shared(lone.payload));
        }
    }

    /// Ends the run of `buf` not yet covered by a segment, so a shared payload can follow it.
    fn close_inline_run(&mut self) {
        let tail = self.buf.len() - self.inline_in_segments;
        self.segments.push_back(Segment::Inline(tail));
        self.inline_in_segments += tail;
    }

    /// Appends a payload after its header: copied (and masked) when small or shared, by
    /// reference when large.
    fn push_payload(&mut self, payload: Bytes, mask: Option<[u8; 4]>) {
        if payload.len() <= INLINE_MAX {
            self.push_inline(&payload, mask);
            return;
        }
        let payload = match mask {
            None => payload,
            // Mask in place when nobody else holds the payload; copy only when we must.
            Some(key) => match payload.try_into_mut() {
                Ok(mut owned) => {
                    apply_mask(&mut owned, key, 0);
                    owned.freeze()
                }
                Err(shared) => {
                    self.push_inline(&shared, mask);
                    return;
                }
            },
        };
        self.close_inline_run();
        self.segments.push_back(Segment::Shared(payload));
    }

    fn push_inline(&mut self, payload: &[u8], mask: Option<[u8; 4]>) {
        let start = self.buf.len();
        self.buf.extend_from_slice(payload);
        if let Some(key) = mask
            && let Some(appended) = self.buf.get_mut(start..)
        {
            apply_mask(appended, key, 0);
        }
    }

    /// The queue's chunks in order: inline runs, shared payloads, then the inline tail.
    fn chunks(&self) -> impl Iterator<Item = &[u8]> {
        let mut offset = 0;
        let runs = self.segments.iter().map(move |segment| match segment {
            Segment::Inline(n) => {
                let run = self.buf.get(offset..offset + n).unwrap_or_default();
                offset += n;
                run
            }
            Segment::Shared(bytes) => bytes,
        });
        let tail = self.buf.get(self.inline_in_segments..).unwrap_or_default();
        runs.chain(std::iter::once(tail))
            .filter(|chunk| !chunk.is_empty())
    }

    fn fill_slices<'a>(&'a self, slices: &mut [IoSlice<'a>; MAX_IOV]) -> usize {
        let mut count = 0;
        for (slot, chunk) in slices.iter_mut().zip(self.chunks()) {
            *slot = IoSlice::new(chunk);
            count += 1;
        }
        count
    }

    fn first_chunk(&self) -> &[u8] {
        self.chunks().next().unwrap_or_default()
    }

    /// Removes `written` bytes from the front.
    fn consume(&mut self, written: usize) {
        let mut left = written;
        while left > 0 {
            match self.segments.front_mut() {
                Some(Segment::Inline(n)) => {
                    let take = left.min(*n);
                    self.buf.advance(take);
                    *n -= take;
                    self.inline_in_segments -= take;
                    left -= take;
                    if *n == 0 {
                        self.segments.pop_front();
                    }
                }
                Some(Segment::Shared(bytes)) => {
                    let take = left.min(bytes.len());
                    bytes.advance(take);
                    left -= take;
                    if bytes.is_empty() {
                        self.segments.pop_front();
                    }
                }
                None => {
                    self.buf.advance(left.min(self.buf.len()));
                    left = 0;
                }
            }
        }
        // Empty `Inline(0)` segments left in front carry nothing.
        while let Some(Segment::Inline(0)) = self.segments.front() {
            self.segments.pop_front();
        }
    }
}

/// Encoded frames waiting to be written.
///
/// Laid out for the idle socket, which holds one per connection: 64 bytes, with no
/// allocation. A frame queued alone stays inline ([`Lone`]); the state of a longer queue
/// ([`Coalesced`], with its buffer) is taken from this thread's spare when a second frame joins
/// the first and given back when the queue empties.
#[derive(Debug, Default)]
pub(crate) struct WriteQueue {
    /// The only frame queued, while it is the only one; `more` is `None` then.
    lone: Option<Lone>,
    /// Frames queued together, while more than one waits.
    more: Option<Box<Coalesced>>,
    /// Total bytes queued.
    queued: usize,
}

impl WriteQueue {
    /// Bytes waiting to be written.
    pub(crate) fn len(&self) -> usize {
        self.queued
    }

    /// Whether nothing waits to be written.
    pub(crate) fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// The coalescing state, taken from this thread's spare on first use, with what is left
    /// of a lone frame moved into it first.
    #[inline]
    fn more(&mut self) -> &mut Coalesced {
        if self.lone.is_some() {
            self.spill_lone();
        }
        self.more.get_or_insert_with(Coalesced::take)
    }

    #[inline(never)]
    fn spill_lone(&mut self) {
        let more = self.more.get_or_insert_with(Coalesced::take);
        if let Some(lone) = self.lone.take() {
            more.spill(lone);
        }
    }

    /// Queues one frame. `mask` is the client's masking key, or `None` for a server.
    pub(crate) fn push(
        &mut self,
        opcode: OpCode,
        fin: bool,
        rsv: u8,
        payload: Bytes,
        mask: Option<[u8; 4]>,
    ) {
        let header = FrameHeader {
            fin,
            rsv,
            opcode,
            mask,
            payload_len: payload.len() as u64,
        };
        let payload = if self.queued == 0 {
            match self.try_lone(&header, payload, mask) {
                Ok(()) => return,
                Err(payload) => payload,
            }
        } else {
            payload
        };
        let more = self.more();
        let before = more.buf.len();
        encode_header(&header, &mut more.buf);
        let added = more.buf.len() - before + payload.len();
        more.push_payload(payload, mask);
        self.queued += added;
    }

    /// Queues a whole frame encoded elsewhere (a fan-out frame shared by many sockets). A frame
    /// up to [`CORK_MAX`] bytes is copied into the coalescing buffer, as a direct send's small
    /// payload is, so a burst of small frames leaves in one plain write; a larger one is queued
    /// by reference, never copied, and goes out in a vectored write beside the frames around it.
    pub(crate) fn push_encoded(&mut self, frame: &Bytes) {
        if frame.is_empty() {
            return;
        }
        let more = self.more();
        let len = frame.len();
        if len <= CORK_MAX {
            more.buf.extend_from_slice(frame);
        } else {
            if more.buf.len() > more.inline_in_segments {
                more.close_inline_run();
            }
            more.segments.push_back(Segment::Shared(frame.clone()));
        }
        self.queued += len;
    }

    /// Queues the frame alone, if it can go out without a copy (a server's frame, or a client's
    /// whose payload nobody else holds, so it can be masked in place).
    fn try_lone(
        &mut self,
        header: &FrameHeader,
        payload: Bytes,
        mask: Option<[u8; 4]>,
    ) -> Result<(), Bytes> {
        let payload = match mask {
            None => payload,
            Some(key) => {
                let mut owned = payload.try_into_mut()?;
                apply_mask(&mut owned, key, 0);
                owned.freeze()
            }
        };
        let mut head = [0_u8; MAX_HEADER_LEN];
        let mut cursor = &mut head[..];
        encode_header(header, &mut cursor);
        let head_len = MAX_HEADER_LEN - cursor.len();
        self.queued = head_len + payload.len();
        self.lone = Some(Lone {
            head,
            head_written: 0,
            // At most `MAX_HEADER_LEN` (14).
            head_len: u8::try_from(head_len).unwrap_or(u8::MAX),
            payload,
        });
        Ok(())
    }

    /// Writes until the queue is empty, then flushes `io`.
    pub(crate) fn poll_flush<Io: AsyncWrite + Unpin>(
        &mut self,
        io: &mut Io,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while !self.is_empty() {
            ready!(self.poll_write_once(io, cx))?;
        }
        Pin::new(io).poll_flush(cx)
    }

    /// Writes until the queue holds fewer than `limit` bytes.
    pub(crate) fn poll_drain_below<Io: AsyncWrite + Unpin>(
        &mut self,
        io: &mut Io,
        cx: &mut Context<'_>,
        limit: usize,
    ) -> Poll<io::Result<()>> {
        while self.queued >= limit && !self.is_empty() {
            ready!(self.poll_write_once(io, cx))?;
        }
        Poll::Ready(Ok(()))
    }

    /// One write system call (vectored when the transport supports it).
    fn poll_write_once<Io: AsyncWrite + Unpin>(
        &mut self,
        io: &mut Io,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(lone) = &mut self.lone {
            let (head, payload) = lone.rest();
            let written = if head.is_empty() {
                ready!(Pin::new(&mut *io).poll_write(cx, payload))?
            } else if !payload.is_empty() && head.len() + payload.len() <= LONE_JOIN_MAX {
                let mut joined = [0_u8; LONE_JOIN_MAX];
                let frame = joined
                    .get_mut(..head.len() + payload.len())
                    .unwrap_or_default();
                if let Some((front, back)) = frame.split_at_mut_checked(head.len()) {
                    front.copy_from_slice(head);
                    back.copy_from_slice(payload);
                }
                ready!(Pin::new(&mut *io).poll_write(cx, frame))?
            } else if !payload.is_empty() && io.is_write_vectored() {
                let slices = [IoSlice::new(head), IoSlice::new(payload)];
                ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices))?
            } else {
                ready!(Pin::new(&mut *io).poll_write(cx, head))?
            };
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            let written = written.min(self.queued);
            lone.advance(written);
            self.queued -= written;
            if self.queued == 0 {
                self.lone = None;
            }
            return Poll::Ready(Ok(()));
        }
        let Some(more) = &mut self.more else {
            return Poll::Ready(Ok(()));
        };
        let written = if more.segments.is_empty() {
            // Only coalesced bytes: one plain write, no slice array to build.
            ready!(Pin::new(&mut *io).poll_write(cx, &more.buf))?
        } else if io.is_write_vectored() {
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let count = more.fill_slices(&mut slices);
            let slices = slices.get(..count).unwrap_or_default();
            ready!(Pin::new(&mut *io).poll_write_vectored(cx, slices))?
        } else {
            let first = more.first_chunk();
            ready!(Pin::new(&mut *io).poll_write(cx, first))?
        };
        if written == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        let written = written.min(self.queued);
        more.consume(written);
        self.queued -= written;
        if self.queued == 0
            && let Some(more) = self.more.take()
        {
            Coalesced::give_back(more);
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that accepts at most `limit` bytes per call and records calls.
    struct Chunked {
        out: Vec<u8>,
        limit: usize,
        calls: usize,
        vectored: bool,
    }

    impl Chunked {
        fn new(limit: usize, vectored: bool) -> Self {
            Self {
                out: Vec::new(),
                limit,
                calls: 0,
                vectored,
            }
        }
    }

    impl AsyncWrite for Chunked {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.limit);
            self.out.extend_from_slice(&buf[..n]);
            self.calls += 1;
            Poll::Ready(Ok(n))
        }
        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let mut left = self.limit;
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(left);
                self.out.extend_from_slice(&b[..take]);
                left -= take;
                n += take;
                if left == 0 {
                    break;
                }
            }
            self.calls += 1;
            Poll::Ready(Ok(n))
        }
        fn is_write_vectored(&self) -> bool {
            self.vectored
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn expected_wire(frames: &[(OpCode, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (op, payload) in frames {
            let header = FrameHeader {
                fin: true,
                rsv: 0,
                opcode: *op,
                mask: None,
                payload_len: payload.len() as u64,
            };
            encode_header(&header, &mut out);
            out.extend_from_slice(payload);
        }
        out
    }

    fn flush_all(q: &mut WriteQueue, w: &mut Chunked) {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(matches!(q.poll_flush(w, &mut cx), Poll::Ready(Ok(()))));
    }

    #[test]
    fn small_frames_coalesce_into_one_write() {
        let mut q = WriteQueue::default();
        let frames: Vec<_> = (0..16).map(|i| (OpCode::Binary, vec![i; 20])).collect();
        for (op, p) in &frames {
            q.push(*op, true, 0, Bytes::from(p.clone()), None);
        }
        let mut w = Chunked::new(usize::MAX, true);
        flush_all(&mut q, &mut w);
        assert_eq!(w.calls, 1);
        assert_eq!(w.out, expected_wire(&frames));
        assert!(q.is_empty());
    }

    #[test]
    fn mixed_sizes_survive_every_partial_write_size_vectored_or_not() {
        let frames = vec![
            (OpCode::Text, b"small".to_vec()),
            (OpCode::Binary, vec![1; 5000]),
            (OpCode::Ping, b"p".to_vec()),
            (OpCode::Binary, vec![2; 70_000]),
            (OpCode::Binary, vec![3; 2000]),
            (OpCode::Pong, Vec::new()),
        ];
        for vectored in [true, false] {
            for limit in [1, 7, 100, 4096, 65_536, usize::MAX] {
                let mut q = WriteQueue::default();
                for (op, p) in &frames {
                    q.push(*op, true, 0, Bytes::from(p.clone()), None);
                }
                let mut w = Chunked::new(limit, vectored);
                flush_all(&mut q, &mut w);
                assert_eq!(
                    w.out,
                    expected_wire(&frames),
                    "limit {limit} vectored {vectored}"
                );
                assert!(q.is_empty());
            }
        }
    }

    #[test]
    fn a_lone_frame_of_any_size_survives_every_partial_write_size() {
        let sizes = [
            0,
            1,
            125,
            126,
            400,
            LONE_JOIN_MAX - 4,
            LONE_JOIN_MAX - 3,
            600,
            70_000,
        ];
        for size in sizes {
            for vectored in [true, false] {
                for limit in [1, 3, 4, 5, 300, usize::MAX] {
                    let payload: Vec<u8> = (0..size).map(|i: usize| i.to_le_bytes()[0]).collect();
                    let mut q = WriteQueue::default();
                    q.push(OpCode::Binary, true, 0, Bytes::from(payload.clone()), None);
                    let mut w = Chunked::new(limit, vectored);
                    flush_all(&mut q, &mut w);
                    let what = format!("size {size} limit {limit} vectored {vectored}");
                    assert_eq!(w.out, expected_wire(&[(OpCode::Binary, payload)]), "{what}");
                    assert!(q.is_empty(), "{what}");
                }
            }
        }
    }

    #[test]
    fn a_small_lone_frame_leaves_in_one_plain_write() {
        for (size, calls) in [(20, 1), (LONE_JOIN_MAX - 4, 1), (LONE_JOIN_MAX - 3, 2)] {
            let mut q = WriteQueue::default();
            q.push(OpCode::Text, true, 0, Bytes::from(vec![b'a'; size]), None);
            // Not vectored: a frame that is not joined goes out as header, then payload.
            let mut w = Chunked::new(usize::MAX, false);
            flush_all(&mut q, &mut w);
            assert_eq!(w.calls, calls, "size {size}");
        }
    }

    #[test]
    fn frames_queued_after_a_partial_write_follow_whole_frames() {
        let mut q = WriteQueue::default();
        q.push(OpCode::Binary, true, 0, Bytes::from(vec![9; 3000]), None);
        let mut w = Chunked::new(1000, true);
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let _ = q.poll_write_once(&mut w, &mut cx);
        q.push(OpCode::Pong, true, 0, Bytes::from_static(b"x"), None);
        flush_all(&mut q, &mut w);
        assert_eq!(
            w.out,
            expected_wire(&[
                (OpCode::Binary, vec![9; 3000]),
                (OpCode::Pong, b"x".to_vec())
            ])
        );
    }

    #[test]
    fn large_unshared_payloads_are_masked_in_place_and_shared_ones_copied() {
        let key = [1, 2, 3, 4];
        let owned = Bytes::from(vec![0x55; 4000]);
        let owned_ptr = owned.as_ptr();
        let mut q = WriteQueue::default();
        q.push(OpCode::Binary, true, 0, owned, Some(key));
        assert_eq!(
            q.lone.as_ref().map(|l| l.payload.as_ptr()),
            Some(owned_ptr),
            "queued alone, masked without a copy"
        );
        let shared = Bytes::from(vec![0x55; 4000]);
        let keep = shared.clone();
        q.push(OpCode::Binary, true, 0, shared, Some(key));
        // The first frame moved behind the header buffer, still without a copy.
        assert!(
            q.more
                .iter()
                .flat_map(|m| &m.segments)
                .any(|s| matches!(s, Segment::Shared(b) if b.as_ptr() == owned_ptr))
        );
        assert_eq!(
            keep[0], 0x55,
            "a payload someone else holds is never modified"
        );
        let mut w = Chunked::new(usize::MAX, true);
        flush_all(&mut q, &mut w);
        // Both frames carry the same masked bytes.
        let frame_len = 4 + 4 + 4000;
        assert_eq!(w.out.len(), 2 * frame_len);
        assert_eq!(w.out[..frame_len], w.out[frame_len..]);
        let mut payload = w.out[8..frame_len].to_vec();
        apply_mask(&mut payload, key, 0);
        assert!(payload.iter().all(|&b| b == 0x55));
    }

    #[test]
    fn a_lone_frame_cut_by_a_partial_write_keeps_its_place_when_more_frames_queue() {
        for first in [10_usize, 3000] {
            for cut in [1, 2, 4, 5, 100] {
                let mut q = WriteQueue::default();
                q.push(OpCode::Binary, true, 0, Bytes::from(vec![1; first]), None);
                let mut w = Chunked::new(cut, true);
                let waker = std::task::Waker::noop();
                let mut cx = Context::from_waker(waker);
                let _ = q.poll_write_once(&mut w, &mut cx);
                q.push(OpCode::Text, true, 0, Bytes::from_static(b"next"), None);
                q.push(OpCode::Binary, true, 0, Bytes::from(vec![2; 2000]), None);
                w.limit = usize::MAX;
                flush_all(&mut q, &mut w);
                assert_eq!(
                    w.out,
                    expected_wire(&[
                        (OpCode::Binary, vec![1; first]),
                        (OpCode::Text, b"next".to_vec()),
                        (OpCode::Binary, vec![2; 2000]),
                    ]),
                    "first {first} cut {cut}"
                );
            }
        }
    }

    #[test]
    fn encoded_frames_keep_their_place_among_direct_frames_in_one_vectored_write() {
        let frames: Vec<_> = (0..12_u8)
            .map(|i| (OpCode::Binary, vec![i; if i % 3 == 0 { 3000 } else { 20 }]))
            .collect();
        let wire = expected_wire(&frames);
        for limit in [1, 9, 100, usize::MAX] {
            let mut q = WriteQueue::default();
            let mut shared = Vec::new();
            for (i, (op, payload)) in frames.iter().enumerate() {
                if i % 2 == 0 {
                    // As the hub queues it: one buffer, header and payload, never copied.
                    let encoded = Bytes::from(expected_wire(&[(*op, payload.clone())]));
                    // Held elsewhere too, as by the other subscribers.
                    shared.push(encoded.clone());
                    q.push_encoded(&encoded);
                } else {
                    q.push(*op, true, 0, Bytes::from(payload.clone()), None);
                }
            }
            let mut w = Chunked::new(limit, true);
            flush_all(&mut q, &mut w);
            assert_eq!(w.out, wire, "limit {limit}");
            if limit == usize::MAX {
                assert_eq!(w.calls, 1, "one vectored write");
            }
            assert!(q.is_empty());
        }
    }

    #[test]
    fn small_encoded_frames_are_copied_and_large_ones_shared_through_every_partial_write_size() {
        // Encoded frames on both sides of the copy threshold, after a lone direct frame and
        // between direct frames, as a socket's inbox and its own sends interleave.
        // Direct at 0, 3, 6 and 9; encoded otherwise.
        let sizes = [
            0,
            1,
            16,
            126,
            125,
            CORK_MAX - 4,
            CORK_MAX - 3,
            CORK_MAX - 3,
            3000,
            16,
        ];
        let frames: Vec<_> = sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| {
                let fill = u8::try_from(i).unwrap_or_default();
                (OpCode::Binary, vec![fill; size])
            })
            .collect();
        let wire = expected_wire(&frames);
        for vectored in [true, false] {
            for limit in (1..=wire.len() / 10).chain([wire.len(), usize::MAX]) {
                let mut q = WriteQueue::default();
                let mut held = Vec::new();
                for (i, (op, payload)) in frames.iter().enumerate() {
                    if i % 3 == 0 {
                        q.push(*op, true, 0, Bytes::from(payload.clone()), None);
                    } else {
                        let encoded = Bytes::from(expected_wire(&[(*op, payload.clone())]));
                        held.push(encoded.clone());
                        q.push_encoded(&encoded);
                    }
                }
                // Held by reference: encoded frames over the threshold (a frame of a payload
                // of CORK_MAX - 3 bytes or more has a 4-byte header), and direct payloads over
                // INLINE_MAX.
                let shared: Vec<usize> = q
                    .more
                    .iter()
                    .flat_map(|m| &m.segments)
                    .filter_map(|s| match s {
                        Segment::Shared(b) => Some(b.len()),
                        Segment::Inline(_) => None,
                    })
                    .collect();
                assert_eq!(shared, [CORK_MAX - 3, CORK_MAX + 1, 3000 + 4]);
                let mut w = Chunked::new(limit, vectored);
                flush_all(&mut q, &mut w);
                assert_eq!(w.out, wire, "limit {limit} vectored {vectored}");
                assert!(q.is_empty());
                if limit == usize::MAX && vectored {
                    assert_eq!(w.calls, 1, "one vectored write");
                }
            }
        }
    }

    #[test]
    fn a_burst_of_small_encoded_frames_leaves_in_one_plain_write() {
        let mut q = WriteQueue::default();
        let frames: Vec<_> = (0..8_u8).map(|i| (OpCode::Binary, vec![i; 16])).collect();
        for (op, payload) in &frames {
            q.push_encoded(&Bytes::from(expected_wire(&[(*op, payload.clone())])));
        }
        assert!(
            q.more.as_ref().is_none_or(|m| m.segments.is_empty()),
            "nothing held by reference"
        );
        // Not vectored: one plain write is possible only from one contiguous buffer.
        let mut w = Chunked::new(usize::MAX, false);
        flush_all(&mut q, &mut w);
        assert_eq!(w.calls, 1);
        assert_eq!(w.out, expected_wire(&frames));
    }

    #[test]
    fn an_encoded_frame_after_a_lone_frame_cut_by_a_partial_write_follows_it_whole() {
        for first in [10_usize, 3000] {
            for cut in [1, 2, 4, 5, 100] {
                for next in [16, 3000] {
                    let mut q = WriteQueue::default();
                    q.push(OpCode::Binary, true, 0, Bytes::from(vec![1; first]), None);
                    let mut w = Chunked::new(cut, true);
                    let waker = std::task::Waker::noop();
                    let mut cx = Context::from_waker(waker);
                    let _ = q.poll_write_once(&mut w, &mut cx);
                    let second = (OpCode::Text, vec![b'n'; next]);
                    q.push_encoded(&Bytes::from(expected_wire(std::slice::from_ref(&second))));
                    w.limit = usize::MAX;
                    flush_all(&mut q, &mut w);
                    assert_eq!(
                        w.out,
                        expected_wire(&[(OpCode::Binary, vec![1; first]), second]),
                        "first {first} cut {cut} next {next}"
                    );
                }
            }
        }
    }
}
