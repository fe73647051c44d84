//! `Sec-WebSocket-Key` and `Sec-WebSocket-Accept` (RFC 6455 sections 4.1 and 4.2.2).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderValue;
use sha1::{Digest, Sha1};

/// The GUID RFC 6455 appends to the key before hashing.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Whether `key` is what RFC 6455 requires: base64 that decodes to exactly 16 bytes.
///
/// A 16-byte nonce is always 24 base64 characters ending in `==`, so anything of another length
/// is refused before decoding.
pub(crate) fn is_valid_key(key: &[u8]) -> bool {
    let mut decoded = [0_u8; 18];
    key.len() == 24 && matches!(STANDARD.decode_slice(key, &mut decoded), Ok(16))
}

/// `Sec-WebSocket-Accept` for `key`: base64(SHA-1(key + GUID)).
pub(crate) fn accept_value(key: &[u8]) -> HeaderValue {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID);
    let mut encoded = [0_u8; 28];
    let written = STANDARD
        .encode_slice(sha.finalize(), &mut encoded)
        .unwrap_or_default();
    // Base64 output is always a valid header value.
    HeaderValue::from_bytes(encoded.get(..written).unwrap_or_default())
        .unwrap_or(HeaderValue::from_static(""))
}

/// A fresh `Sec-WebSocket-Key`: 16 bytes from a `SipHash` keyed by `std` from the operating
/// system's randomness, base64-encoded.
#[cfg(any(test, feature = "client"))]
pub(crate) fn generate_key() -> HeaderValue {
    use std::hash::{BuildHasher, RandomState};
    let state = RandomState::new();
    let mut nonce = [0_u8; 16];
    nonce[..8].copy_from_slice(&state.hash_one(1_u8).to_le_bytes());
    nonce[8..].copy_from_slice(&state.hash_one(2_u8).to_le_bytes());
    let mut encoded = [0_u8; 24];
    let written = STANDARD
        .encode_slice(nonce, &mut encoded)
        .unwrap_or_default();
    HeaderValue::from_bytes(encoded.get(..written).unwrap_or_default())
        .unwrap_or(HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_sample_key_gives_the_rfc_accept_value() {
        assert_eq!(
            accept_value(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn accepts_only_base64_of_exactly_16_bytes() {
        assert!(is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!is_valid_key(b""));
        // 15 and 17 bytes.
        assert!(!is_valid_key(STANDARD.encode([7_u8; 15]).as_bytes()));
        assert!(!is_valid_key(STANDARD.encode([7_u8; 17]).as_bytes()));
        // Right length, not base64.
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ!!"));
        // Padding in the wrong place.
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25j=Q=="));
        // Non-canonical trailing bits are refused by the strict decoder.
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZR=="));
    }

    #[test]
    fn generated_keys_are_valid_and_differ() {
        let a = generate_key();
        let b = generate_key();
        assert!(is_valid_key(a.as_bytes()));
        assert!(is_valid_key(b.as_bytes()));
        assert_ne!(a, b);
    }
}
