//! Per-thread spare read buffers, so that an idle connection holds no read buffer (the write
//! queue keeps its own spare, see `write.rs`).
//!
//! A connection borrows a buffer when bytes arrive and gives it back when it has consumed all
//! of them. Each thread keeps at most one spare: polling is synchronous, so one spare serves
//! every connection the thread drives in turn, and a busy connection keeps its buffer for as
//! long as it holds data.

use std::cell::Cell;

use bytes::BytesMut;

/// Spares larger than this are freed rather than kept.
const MAX_SPARE: usize = 512 << 10;

thread_local! {
    static SPARE: Cell<Option<BytesMut>> = const { Cell::new(None) };
}

/// An empty buffer with room for at least `capacity` bytes.
pub(crate) fn take(capacity: usize) -> BytesMut {
    if let Some(mut buf) = SPARE.try_with(Cell::take).ok().flatten()
        && buf.try_reclaim(capacity)
    {
        return buf;
    }
    BytesMut::with_capacity(capacity)
}

/// Takes `buf` (which must be empty) out of its owner and keeps it as this thread's spare, if
/// the slot is free and the buffer is worth keeping; otherwise frees it.
pub(crate) fn give_back(buf: &mut BytesMut) {
    debug_assert!(buf.is_empty());
    let mut buf = std::mem::take(buf);
    if buf.capacity() == 0 || buf.capacity() > MAX_SPARE {
        return;
    }
    buf.clear();
    let _ = SPARE.try_with(|s| {
        let previous = s.replace(Some(buf));
        // Keep the larger of the two.
        if let Some(previous) = previous
            && let Some(current) = s.take()
        {
            s.set(Some(if previous.capacity() > current.capacity() {
                previous
            } else {
                current
            }));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_returned_buffer_is_reused_by_the_next_take() {
        let mut buf = take(4096);
        let ptr = buf.as_ptr();
        give_back(&mut buf);
        assert_eq!(buf.capacity(), 0, "the owner is left without a buffer");
        let again = take(1024);
        assert_eq!(again.as_ptr(), ptr);
        // The slot is now empty: a second take allocates.
        let other = take(1024);
        assert_ne!(other.as_ptr(), ptr);
    }

    #[test]
    fn huge_buffers_are_not_kept() {
        let mut big = BytesMut::with_capacity(MAX_SPARE * 2);
        give_back(&mut big);
        let next = take(16);
        assert!(next.capacity() < MAX_SPARE * 2);
    }
}
