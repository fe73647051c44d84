//! Runtime-dispatched wide masking kernels: the only module allowed to use `unsafe`.
//!
//! The kernels are the portable block loop ([`super::apply_blocks`]) compiled with wider
//! target features. Calling a `#[target_feature]` function is `unsafe` because running it on a
//! CPU without the feature is undefined behaviour; every call below is guarded by runtime
//! detection, which `std` caches after the first query. The tests in [`super`] hold each path
//! against byte-at-a-time masking.
#![allow(unsafe_code)]

/// Masks `buf` with `key` (already rotated to the slice's offset) using the widest kernel this
/// CPU supports.
#[inline]
pub(super) fn apply(buf: &mut [u8], key: [u8; 4]) {
    #[cfg(all(target_arch = "x86_64", not(target_feature = "avx2")))]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: `apply_avx2` only requires the AVX2 target feature, and the check above
            // just confirmed that the running CPU supports it.
            unsafe { apply_avx2(buf, key) };
            return;
        }
    }
    super::apply_blocks(buf, key);
}

/// [`super::apply_blocks`] compiled for AVX2: 64-byte blocks become two 256-bit XORs.
///
/// # Safety
///
/// The caller must ensure that the CPU supports AVX2.
#[cfg(all(target_arch = "x86_64", not(target_feature = "avx2")))]
#[target_feature(enable = "avx2")]
unsafe fn apply_avx2(buf: &mut [u8], key: [u8; 4]) {
    super::apply_blocks(buf, key);
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(target_arch = "x86_64", not(target_feature = "avx2")))]
    fn avx2_kernel_matches_portable_kernel_when_the_cpu_has_avx2() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            return;
        }
        let key = [0x11, 0x22, 0x33, 0x44];
        for len in 0..=300 {
            let original: Vec<u8> = (0..len)
                .map(|i: usize| i.to_le_bytes()[0].wrapping_mul(7).wrapping_add(3))
                .collect();
            let mut wide = original.clone();
            let mut portable = original;
            // SAFETY: the early return above ensures the CPU supports AVX2.
            unsafe { super::apply_avx2(&mut wide, key) };
            super::super::apply_blocks(&mut portable, key);
            assert_eq!(wide, portable, "len {len}");
        }
    }
}
