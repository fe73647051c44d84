//! The engine's internals that [`crate::internals`] hands to the benchmarks, the fuzz targets
//! and the fuzz corpus replay.

use bytes::BytesMut;

pub(crate) use super::config::Limit;
pub(crate) use super::deflate::Codec;
pub(crate) use super::frame::{HeaderRules, OpCode};
pub(crate) use super::mask::{apply_mask, apply_mask_bytewise, apply_mask_portable};
pub(crate) use super::read::{Event, Reader};
pub(crate) use super::write::WriteQueue;

/// Decodes every frame in `wire` (masked client frames) as a server, returning the number of
/// messages.
pub(crate) fn decode_all(wire: BytesMut) -> usize {
    let rules = HeaderRules {
        expect_masked: true,
        allowed_rsv: 0,
        max_frame_size: Limit::NONE,
    };
    let mut reader = Reader::with_buffered(wire);
    let mut messages = 0;
    while let Ok(Some(_)) = reader.next_event(rules, Limit::NONE, None) {
        messages += 1;
    }
    messages
}

/// Validates `text` incrementally in pieces of `piece` bytes.
pub(crate) fn utf8_in_pieces(text: &[u8], piece: usize) -> bool {
    let mut v = super::utf8::Utf8Validator::default();
    text.chunks(piece.max(1)).all(|c| v.feed(c).is_ok()) && v.finish().is_ok()
}
