//! Incremental UTF-8 validation that fails on the first byte that cannot start or continue a
//! valid sequence, even when the text arrives split across frames or in pieces of one frame.
//!
//! Bulk validation is `simdutf8`'s; this module only carries the (at most three) bytes of a
//! sequence cut off at the end of one piece over to the next.

use simdutf8::compat;

/// The longest UTF-8 sequence, in bytes.
const MAX_SEQ: usize = 4;

/// The state of a text message being validated piece by piece.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Utf8Validator {
    /// Bytes of a sequence started at the end of the previous piece.
    pending: [u8; MAX_SEQ],
    pending_len: u8,
}

/// The input can never become valid UTF-8, whatever follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InvalidUtf8;

impl Utf8Validator {
    /// Validates the next piece of text.
    ///
    /// Fails as soon as the bytes seen so far cannot be a prefix of valid UTF-8; a sequence cut
    /// off at the end of `piece` is kept until the next call or [`finish`](Self::finish).
    pub(crate) fn feed(&mut self, mut piece: &[u8]) -> Result<(), InvalidUtf8> {
        if self.pending_len > 0 {
            piece = self.complete_pending(piece)?;
            if self.pending_len > 0 {
                // `piece` was too short to finish the pending sequence.
                return Ok(());
            }
        }
        let split = incomplete_tail_start(piece);
        let (body, tail) = piece.split_at(split);
        if simdutf8::basic::from_utf8(body).is_err() {
            return Err(InvalidUtf8);
        }
        if !tail.is_empty() {
            self.hold(tail)?;
        }
        Ok(())
    }

    /// Ends the message: a sequence still cut off is invalid.
    pub(crate) fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let complete = self.pending_len == 0;
        *self = Self::default();
        if complete { Ok(()) } else { Err(InvalidUtf8) }
    }

    /// Whether no partial sequence is pending.
    #[cfg(test)]
    pub(crate) fn is_at_boundary(self) -> bool {
        self.pending_len == 0
    }

    /// Moves bytes from `piece` into the pending sequence until it is complete, and returns the
    /// rest of `piece`.
    fn complete_pending<'a>(&mut self, piece: &'a [u8]) -> Result<&'a [u8], InvalidUtf8> {
        let have = usize::from(self.pending_len);
        let need = sequence_len(self.pending[0]).saturating_sub(have);
        let (head, rest) = piece.split_at(need.min(piece.len()));
        let mut seq = self.pending;
        // `have + head.len() <= sequence_len(..) <= MAX_SEQ`, so both slices are in bounds.
        let len = have + head.len();
        seq.get_mut(have..len)
            .ok_or(InvalidUtf8)?
            .copy_from_slice(head);
        let seq = seq.get(..len).ok_or(InvalidUtf8)?;
        self.pending_len = 0;
        match compat::from_utf8(seq) {
            Ok(_) => Ok(rest),
            Err(e) if e.error_len().is_none() => {
                // Still a valid prefix; `rest` is empty here because `take < need`.
                self.hold(seq)?;
                Ok(rest)
            }
            Err(_) => Err(InvalidUtf8),
        }
    }

    /// Keeps `tail` (a cut-off sequence of at most three bytes) if it can still become valid.
    fn hold(&mut self, tail: &[u8]) -> Result<(), InvalidUtf8> {
        match compat::from_utf8(tail) {
            Err(e) if e.error_len().is_none() && e.valid_up_to() == 0 => {
                self.pending
                    .get_mut(..tail.len())
                    .ok_or(InvalidUtf8)?
                    .copy_from_slice(tail);
                self.pending_len = u8::try_from(tail.len()).map_err(|_| InvalidUtf8)?;
                Ok(())
            }
            _ => Err(InvalidUtf8),
        }
    }
}

/// The length of the sequence that `lead` starts (1 for bytes that cannot start one).
fn sequence_len(lead: u8) -> usize {
    match lead {
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => 1,
    }
}

/// Where a multi-byte sequence that runs past the end of `piece` starts, or `piece.len()` if the
/// last sequence is complete (or the tail is malformed, which bulk validation then reports).
fn incomplete_tail_start(piece: &[u8]) -> usize {
    let len = piece.len();
    // Look back over at most three continuation bytes for the lead byte of the last sequence.
    for (back, &byte) in piece.iter().rev().take(MAX_SEQ - 1).enumerate() {
        if byte & 0b1100_0000 != 0b1000_0000 {
            // A lead byte (or ASCII): cut there only if its sequence runs past the end.
            let from_end = back + 1;
            return if sequence_len(byte) > from_end {
                len - from_end
            } else {
                len
            };
        }
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate_in_pieces(bytes: &[u8], cuts: &[usize]) -> Result<(), InvalidUtf8> {
        let mut v = Utf8Validator::default();
        let mut start = 0;
        for &cut in cuts {
            v.feed(&bytes[start..cut])?;
            start = cut;
        }
        v.feed(&bytes[start..])?;
        v.finish()
    }

    const SAMPLES: &[&str] = &[
        "",
        "hello",
        "κόσμε",
        "Hello-µ@ßöäüàá-UTF-8!!",
        "\u{10ffff}\u{10000}\u{ffff}\u{800}\u{7ff}\u{80}\u{7f}",
        "日本語のテキスト、そして 🦀🦀🦀 絵文字",
    ];

    #[test]
    fn valid_text_split_at_every_byte_is_accepted() {
        for s in SAMPLES {
            let b = s.as_bytes();
            for cut in 0..=b.len() {
                assert_eq!(validate_in_pieces(b, &[cut]), Ok(()), "{s:?} cut at {cut}");
            }
            for a in 0..=b.len() {
                for c in a..=b.len() {
                    assert_eq!(validate_in_pieces(b, &[a, c]), Ok(()), "{s:?} cuts {a},{c}");
                }
            }
        }
    }

    #[test]
    fn valid_text_fed_one_byte_at_a_time_is_accepted() {
        for s in SAMPLES {
            let mut v = Utf8Validator::default();
            for &byte in s.as_bytes() {
                v.feed(&[byte]).unwrap();
            }
            v.finish().unwrap();
        }
    }

    #[test]
    fn truncated_sequence_at_end_of_message_is_rejected() {
        for bad in [&b"\xce"[..], b"\xe2\x82", b"\xf0\x9f\x98", b"ok\xf0"] {
            let mut v = Utf8Validator::default();
            v.feed(bad).unwrap();
            assert!(!v.is_at_boundary());
            assert_eq!(v.finish(), Err(InvalidUtf8));
        }
    }

    /// The piece in which the validator must fail: the first one that contains a byte no valid
    /// UTF-8 can have at that position.
    #[test]
    fn invalid_bytes_fail_in_the_piece_where_they_arrive() {
        // (input, index of the first byte that makes it invalid)
        let cases: &[(&[u8], usize)] = &[
            (b"abc\xffdef", 3),
            (
                b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
                12,
            ), // surrogate
            (b"\xf4\x90\x80\x80", 1), // above U+10FFFF
            (b"\xc0\xaf", 0),         // overlong
            (b"\xe0\x80\xaf", 1),     // overlong
            (b"\x80", 0),             // lone continuation
            (b"\xce\xbaa", 2),        // fine, then ok
        ];
        for &(input, bad_at) in cases {
            if std::str::from_utf8(input).is_ok() {
                continue;
            }
            // Feeding one byte at a time must fail exactly at byte `bad_at`.
            let mut v = Utf8Validator::default();
            let mut failed_at = None;
            for (i, &byte) in input.iter().enumerate() {
                if v.feed(&[byte]).is_err() {
                    failed_at = Some(i);
                    break;
                }
            }
            assert_eq!(failed_at, Some(bad_at), "input {input:x?}");
        }
    }

    #[test]
    fn agrees_with_std_on_every_two_and_three_byte_input_fed_bytewise_and_whole() {
        let mut inputs: Vec<Vec<u8>> = Vec::new();
        for a in [
            0x41, 0x7f, 0x80, 0xbf, 0xc0, 0xc2, 0xdf, 0xe0, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff,
        ] {
            for b in [0x41, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0] {
                inputs.push(vec![a, b]);
                for c in [0x41, 0x80, 0xbf, 0xc0] {
                    inputs.push(vec![a, b, c]);
                    inputs.push(vec![a, b, c, 0x80]);
                }
            }
        }
        for input in inputs {
            let expected = std::str::from_utf8(&input).is_ok();
            let mut whole = Utf8Validator::default();
            let whole_ok = whole.feed(&input).is_ok() && whole.finish().is_ok();
            assert_eq!(whole_ok, expected, "whole {input:x?}");
            let mut v = Utf8Validator::default();
            let bytewise_ok = input.iter().all(|b| v.feed(&[*b]).is_ok()) && v.finish().is_ok();
            assert_eq!(bytewise_ok, expected, "bytewise {input:x?}");
        }
    }
}
