//! The write side: a queue of encoded frames, written with as few system calls as possible.
//!
//! Headers and small payloads are copied into one buffer, so a burst of small frames leaves in
//! one write. A large payload stays in its own `Bytes` and goes out in a vectored write beside
//! the headers around it, never copied. The queue is always a sequence of whole frames: a partial
//! write leaves the rest of the frame at its front, so a frame queued later (a pong, a close) can
//! never split another one.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::AsyncWrite;

use super::frame::{FrameHeader, MAX_HEADER_LEN, OpCode, encode_header};
use super::mask::apply_mask;
use super::pool;

/// Payloads up to this size are copied next to their header; larger ones are queued by
/// reference and written with a vectored write.
const INLINE_MAX: usize = 1024;

/// Slices handed to one vectored write.
const MAX_IOV: usize = 64;

/// A run of the queue.
#[derive(Debug)]
enum Segment {
    /// The next `n` bytes of the coalescing buffer.
    Inline(usize),
    /// A payload written from its own allocation.
    Shared(Bytes),
}

/// Encoded frames waiting to be written.
#[derive(Debug, Default)]
pub(crate) struct WriteQueue {
    /// Headers and small payloads, in order.
    buf: BytesMut,
    /// The queue up to the last shared payload; the part of `buf` not covered by an `Inline`
    /// segment follows all of them.
    segments: VecDeque<Segment>,
    /// Bytes of `buf` covered by `Inline` segments.
    inline_in_segments: usize,
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
        if self.buf.capacity() == 0 {
            self.buf = pool::take(pool::Kind::Write, MAX_HEADER_LEN + INLINE_MAX);
        }
        let before = self.buf.len();
        encode_header(&header, &mut self.buf);
        self.queued += self.buf.len() - before + payload.len();
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
        let tail = self.buf.len() - self.inline_in_segments;
        self.segments.push_back(Segment::Inline(tail));
        self.inline_in_segments += tail;
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
        let written = if io.is_write_vectored() {
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let count = self.fill_slices(&mut slices);
            let slices = slices.get(..count).unwrap_or_default();
            ready!(Pin::new(&mut *io).poll_write_vectored(cx, slices))?
        } else {
            let first = self.first_chunk();
            ready!(Pin::new(&mut *io).poll_write(cx, first))?
        };
        if written == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        self.consume(written);
        Poll::Ready(Ok(()))
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

    /// Removes `written` bytes from the front of the queue.
    fn consume(&mut self, written: usize) {
        self.queued -= written;
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
                    self.buf.advance(left);
                    left = 0;
                }
            }
        }
        // Empty `Inline(0)` segments left in front carry nothing.
        while let Some(Segment::Inline(0)) = self.segments.front() {
            self.segments.pop_front();
        }
        if self.queued == 0 {
            self.segments.clear();
            self.inline_in_segments = 0;
            pool::give_back(pool::Kind::Write, &mut self.buf);
        }
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
        let mut w = Chunked {
            out: Vec::new(),
            limit: usize::MAX,
            calls: 0,
            vectored: true,
        };
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
                let mut w = Chunked {
                    out: Vec::new(),
                    limit,
                    calls: 0,
                    vectored,
                };
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
    fn frames_queued_after_a_partial_write_follow_whole_frames() {
        let mut q = WriteQueue::default();
        q.push(OpCode::Binary, true, 0, Bytes::from(vec![9; 3000]), None);
        let mut w = Chunked {
            out: Vec::new(),
            limit: 1000,
            calls: 0,
            vectored: true,
        };
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
        match q.segments.back() {
            Some(Segment::Shared(b)) => assert_eq!(b.as_ptr(), owned_ptr, "masked without a copy"),
            other => panic!("expected a shared segment, got {other:?}"),
        }
        let shared = Bytes::from(vec![0x55; 4000]);
        let keep = shared.clone();
        q.push(OpCode::Binary, true, 0, shared, Some(key));
        assert_eq!(
            keep[0], 0x55,
            "a payload someone else holds is never modified"
        );
        let mut w = Chunked {
            out: Vec::new(),
            limit: usize::MAX,
            calls: 0,
            vectored: true,
        };
        flush_all(&mut q, &mut w);
        // Both frames carry the same masked bytes.
        let frame_len = 4 + 4 + 4000;
        assert_eq!(w.out.len(), 2 * frame_len);
        assert_eq!(w.out[..frame_len], w.out[frame_len..]);
        let mut payload = w.out[8..frame_len].to_vec();
        apply_mask(&mut payload, key, 0);
        assert!(payload.iter().all(|&b| b == 0x55));
    }
}
