//! Entry points into engine internals for the criterion benchmarks in `benches/`.
//!
//! Not part of the public API: hidden from the docs, unstable, and only here because a bench
//! target is a separate crate that cannot reach `pub(crate)` items.

use bytes::BytesMut;

use crate::proto::internals;

/// Masks `buf` with the runtime-dispatched kernel (AVX2 where the CPU has it).
pub fn mask(buf: &mut [u8], key: [u8; 4]) {
    internals::apply_mask(buf, key, 0);
}

/// Masks `buf` with the portable kernel only (SSE2 on x86-64, by the compiler).
pub fn mask_portable(buf: &mut [u8], key: [u8; 4]) {
    internals::apply_mask_portable(buf, key);
}

/// Masks `buf` one byte at a time: the reference.
pub fn mask_bytewise(buf: &mut [u8], key: [u8; 4]) {
    internals::apply_mask_bytewise(buf, key);
}

/// Decodes every frame in `wire` (masked client frames) as a server, returning the number of
/// messages.
///
/// # Panics
///
/// If `wire` breaks the protocol.
pub fn decode_all(wire: BytesMut) -> usize {
    internals::decode_all(wire)
}

/// Validates `text` incrementally in pieces of `piece` bytes.
pub fn utf8_in_pieces(text: &[u8], piece: usize) -> bool {
    internals::utf8_in_pieces(text, piece)
}
