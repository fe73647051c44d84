//! The RFC 6455 masking transform (section 5.3): every payload byte is `XOR`ed with
//! `key[i % 4]`, where `i` counts from the start of the frame's payload.
//!
//! [`apply_mask`] takes an `offset` so a payload can be unmasked piece by piece as it arrives:
//! the key is rotated so that byte 0 of the slice lines up with byte `offset` of the payload.
//! The kernel is safe code over 8-byte words, which the compiler turns into vector instructions
//! (SSE2 on every x86-64, NEON on every aarch64); [`simd`] adds an AVX2 build of the same
//! kernel behind runtime feature detection.

mod simd;

/// Payloads shorter than this are masked by the portable word loop, longer ones by the widest
/// kernel the CPU has. The AVX2 build of the loop pays only on longer payloads (on short ones
/// its wider unrolled body leaves most bytes to the remainder loop): `cargo bench --bench engine
/// -- mask/` measured 64 B at 9.8 (AVX2) against 18.0 GiB/s (portable), 256 B at 36.8 against
/// 38.2, 512 B at 56.0 against 47.3 and 4 KiB at 108 against 68.
const WIDE_MIN: usize = 512;

/// XORs `buf` in place with `key`, as if `buf` began `offset` bytes into a masked payload.
pub(crate) fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let key = rotate(key, offset);
    if buf.len() < WIDE_MIN {
        apply_blocks(buf, key);
    } else {
        simd::apply(buf, key);
    }
}

/// `key` rotated so that its byte `offset % 4` comes first: one rotate of a word (the slice
/// rotation costs a call and a loop per frame).
#[inline]
fn rotate(key: [u8; 4], offset: usize) -> [u8; 4] {
    // `offset % 4` is below 4, so the shift is below 32 and the cast exact.
    #[expect(clippy::cast_possible_truncation, reason = "below 32")]
    let bits = (offset % 4) as u32 * 8;
    u32::from_le_bytes(key).rotate_right(bits).to_le_bytes()
}

/// The portable kernel: 8-byte words `XOR`ed with the key repeated twice, then a byte tail.
///
/// Written over `[u8; 8]` chunks so the optimiser emits full-width vector `XOR`s for whatever
/// target features the calling function is compiled with.
#[expect(
    clippy::inline_always,
    reason = "inlined into each target-feature wrapper so it is compiled with that feature"
)]
#[inline(always)]
fn apply_blocks(buf: &mut [u8], key: [u8; 4]) {
    // The key twice over, in memory order (the same bytes as `[key, key].concat()` read as a
    // native-endian word whatever the endianness): two instructions, not a byte-by-byte build.
    let half = u64::from(u32::from_ne_bytes(key));
    let wide = half | (half << 32);
    let (words, tail) = buf.as_chunks_mut::<8>();
    for word in words {
        *word = (u64::from_ne_bytes(*word) ^ wide).to_ne_bytes();
    }
    // Words are a multiple of 4 bytes long, so the tail starts at key phase 0 again. It is
    // under 8 bytes: at most one 4-byte word, then under 4 bytes, each at phase 0.
    let (quads, tail) = tail.as_chunks_mut::<4>();
    for quad in quads {
        *quad = (u32::from_ne_bytes(*quad) ^ u32::from_ne_bytes(key)).to_ne_bytes();
    }
    for (b, k) in tail.iter_mut().zip(key) {
        *b ^= k;
    }
}

/// The portable kernel alone, without runtime dispatch (for the benchmarks).
pub(crate) fn apply_mask_portable(buf: &mut [u8], key: [u8; 4]) {
    apply_blocks(buf, key);
}

/// Byte-at-a-time masking (for the benchmarks' reference).
pub(crate) fn apply_mask_bytewise(buf: &mut [u8], key: [u8; 4]) {
    apply_bytewise(buf, key);
}

/// Byte-at-a-time masking: the reference the fast paths are tested against.
#[inline]
fn apply_bytewise(buf: &mut [u8], key: [u8; 4]) {
    for (b, k) in buf.iter_mut().zip(key.iter().cycle()) {
        *b ^= k;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(buf: &mut [u8], key: [u8; 4], offset: usize) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= key[(offset + i) % 4];
        }
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i: usize| i.to_le_bytes()[0].wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[test]
    fn fast_paths_match_bytewise_masking_for_every_length_and_key_offset() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        // Every length to 256, and every length around the switch to the wide kernel.
        for len in (0..=256).chain(WIDE_MIN - 70..=WIDE_MIN + 70) {
            for offset in 0..8 {
                // Also shift the slice start, so unaligned starts are covered.
                for start in 0..4 {
                    let original = pattern(len + start, len.to_le_bytes()[0]);
                    let mut fast = original.clone();
                    let mut slow = original.clone();
                    apply_mask(&mut fast[start..], key, offset);
                    reference(&mut slow[start..], key, offset);
                    assert_eq!(fast, slow, "len {len} offset {offset} start {start}");
                }
            }
        }
    }

    #[test]
    fn large_buffers_match_bytewise_masking() {
        let key = [1, 2, 3, 255];
        for len in [1000, 4096, 65_537, 1 << 20] {
            let original = pattern(len, 7);
            let mut fast = original.clone();
            let mut slow = original;
            apply_mask(&mut fast, key, 3);
            reference(&mut slow, key, 3);
            assert_eq!(fast, slow, "len {len}");
        }
    }

    #[test]
    fn unmasking_in_pieces_equals_unmasking_at_once() {
        let key = [0xde, 0xad, 0xbe, 0xef];
        let original = pattern(1000, 3);
        let mut whole = original.clone();
        apply_mask(&mut whole, key, 0);
        for cut in [1, 2, 3, 5, 63, 64, 65, 130, 999] {
            let mut pieces = original.clone();
            let (a, b) = pieces.split_at_mut(cut);
            apply_mask(a, key, 0);
            apply_mask(b, key, cut);
            assert_eq!(pieces, whole, "cut at {cut}");
        }
    }

    #[test]
    fn masking_twice_restores_the_payload() {
        let original = pattern(300, 9);
        let mut buf = original.clone();
        apply_mask(&mut buf, [9, 8, 7, 6], 1);
        apply_mask(&mut buf, [9, 8, 7, 6], 1);
        assert_eq!(buf, original);
    }
}
