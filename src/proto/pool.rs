//! Per-thread spare buffers, so that an idle connection holds no read or write buffer.
//!
//! A connection borrows a buffer when bytes arrive (or are queued) and gives it back when it has
//! consumed (or written) all of them. Each thread keeps at most one spare of each kind: polling
//! is synchronous, so one spare serves every connection the thread drives in turn, and a busy
//! connection keeps its buffer for as long as it holds data.

use std::cell::Cell;

use bytes::BytesMut;

/// Spares larger than this are freed rather than kept.
const MAX_SPARE: usize = 512 << 10;

thread_local! {
    static READ_SPARE: Cell<Option<BytesMut>> = const { Cell::new(None) };
    static WRITE_SPARE: Cell<Option<BytesMut>> = const { Cell::new(None) };
}

/// Which spare slot a buffer belongs to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Read,
    Write,
}

fn slot(kind: Kind) -> &'static std::thread::LocalKey<Cell<Option<BytesMut>>> {
    match kind {
        Kind::Read => &READ_SPARE,
        Kind::Write => &WRITE_SPARE,
    }
}

/// An empty buffer with room for at least `capacity` bytes.
pub(crate) fn take(kind: Kind, capacity: usize) -> BytesMut {
    if let Some(mut buf) = slot(kind).try_with(Cell::take).ok().flatten()
        && buf.try_reclaim(capacity)
    {
        return buf;
    }
    BytesMut::with_capacity(capacity)
}

/// Takes `buf` (which must be empty) out of its owner and keeps it as this thread's spare, if
/// the slot is free and the buffer is worth keeping; otherwise frees it.
pub(crate) fn give_back(kind: Kind, buf: &mut BytesMut) {
    debug_assert!(buf.is_empty());
    let mut buf = std::mem::take(buf);
    if buf.capacity() == 0 || buf.capacity() > MAX_SPARE {
        return;
    }
    buf.clear();
    let _ = slot(kind).try_with(|s| {
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
        let mut buf = take(Kind::Read, 4096);
        let ptr = buf.as_ptr();
        give_back(Kind::Read, &mut buf);
        assert_eq!(buf.capacity(), 0, "the owner is left without a buffer");
        let again = take(Kind::Read, 1024);
        assert_eq!(again.as_ptr(), ptr);
        // The slot is now empty: a second take allocates.
        let other = take(Kind::Read, 1024);
        assert_ne!(other.as_ptr(), ptr);
    }

    #[test]
    fn huge_buffers_are_not_kept() {
        let mut big = BytesMut::with_capacity(MAX_SPARE * 2);
        give_back(Kind::Write, &mut big);
        let next = take(Kind::Write, 16);
        assert!(next.capacity() < MAX_SPARE * 2);
    }
}
