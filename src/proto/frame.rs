//! Frame headers (RFC 6455 section 5.2): decoding with every header-level rule checked as soon
//! as the bytes that carry it have arrived, and encoding into a fixed 14-byte array.
//!
//! ```text
//!  0               1               2               3
//!  0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! |     Extended payload length continued, if payload len == 127  |
//! + - - - - - - - - - - - - - - - +-------------------------------+
//! |                               |Masking-key, if MASK set to 1  |
//! +-------------------------------+-------------------------------+
//! ```
//!
//! No IO and no allocation happen here.

use bytes::BufMut;

use super::config::Limit;
use crate::error::ProtocolError;

/// The largest header: 2 bytes, an 8-byte extended length and a 4-byte masking key.
pub(crate) const MAX_HEADER_LEN: usize = 14;

/// The largest payload a control frame may carry.
pub(crate) const MAX_CONTROL_PAYLOAD: usize = 125;

/// A frame's opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// Continues a fragmented message.
    Continuation,
    /// The first frame of a text message.
    Text,
    /// The first frame of a binary message.
    Binary,
    /// A close frame.
    Close,
    /// A ping.
    Ping,
    /// A pong.
    Pong,
}

impl OpCode {
    /// The opcode's 4-bit value on the wire.
    pub const fn as_u8(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xa,
        }
    }

    /// Parses a 4-bit opcode; reserved values are `None`.
    pub const fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xa => Self::Pong,
            _ => return None,
        })
    }

    /// Whether this is a control opcode (close, ping or pong).
    pub const fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    pub(crate) fin: bool,
    /// RSV1..RSV3 in the low three bits (RSV1 is `0b100`).
    pub(crate) rsv: u8,
    pub(crate) opcode: OpCode,
    pub(crate) mask: Option<[u8; 4]>,
    pub(crate) payload_len: u64,
}

/// RSV1, which permessage-deflate uses to mark a compressed message, in [`FrameHeader::rsv`].
#[cfg(feature = "deflate")]
pub(crate) const RSV1: u8 = 0b100;

/// What the reader accepts; everything else is a protocol violation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeaderRules {
    /// Frames must be masked (we are the server) or unmasked (we are the client).
    pub(crate) expect_masked: bool,
    /// RSV bits an extension has claimed; any other set bit fails the connection.
    pub(crate) allowed_rsv: u8,
    /// Largest payload accepted in one frame.
    pub(crate) max_frame_size: Limit,
}

/// Decodes the header at the start of `buf`.
///
/// Returns `Ok(None)` while more bytes are needed, and the header with its encoded length once it
/// is complete. Rules that depend only on the first two bytes are checked as soon as those two
/// bytes are present, before the extended length or key has arrived.
///
/// # Errors
///
/// The protocol rule the header breaks.
#[inline]
pub(crate) fn decode_header(
    buf: &[u8],
    rules: HeaderRules,
) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
    let [b0, b1, rest @ ..] = buf else {
        return Ok(None);
    };
    let (b0, b1) = (*b0, *b1);
    let fin = b0 & 0x80 != 0;
    let rsv = (b0 >> 4) & 0b111;
    if rsv & !rules.allowed_rsv != 0 {
        return Err(ProtocolError::ReservedBits(rsv));
    }
    let opcode = OpCode::from_u8(b0 & 0x0f).ok_or(ProtocolError::ReservedOpCode(b0 & 0x0f))?;
    let masked = b1 & 0x80 != 0;
    let len7 = b1 & 0x7f;
    if opcode.is_control() {
        if !fin {
            return Err(ProtocolError::FragmentedControlFrame);
        }
        if usize::from(len7) > MAX_CONTROL_PAYLOAD {
            return Err(ProtocolError::ControlFrameTooLong);
        }
    }
    if masked != rules.expect_masked {
        return Err(if masked {
            ProtocolError::MaskedFrameFromServer
        } else {
            ProtocolError::UnmaskedFrameFromClient
        });
    }
    let (payload_len, rest) = match len7 {
        126 => {
            let Some((ext, rest)) = rest.split_first_chunk::<2>() else {
                return Ok(None);
            };
            (u64::from(u16::from_be_bytes(*ext)), rest)
        }
        127 => {
            let Some((ext, rest)) = rest.split_first_chunk::<8>() else {
                return Ok(None);
            };
            let len = u64::from_be_bytes(*ext);
            if len >> 63 != 0 {
                return Err(ProtocolError::PayloadLengthTopBit);
            }
            (len, rest)
        }
        n => (u64::from(n), rest),
    };
    if rules.max_frame_size.exceeded_by(payload_len) {
        return Err(ProtocolError::FrameTooLarge {
            size: payload_len,
            limit: rules.max_frame_size.get_u64(),
        });
    }
    let mask = if masked {
        let Some((key, _)) = rest.split_first_chunk::<4>() else {
            return Ok(None);
        };
        Some(*key)
    } else {
        None
    };
    let header_len = buf.len() - rest.len() + if masked { 4 } else { 0 };
    Ok(Some((
        FrameHeader {
            fin,
            rsv,
            opcode,
            mask,
            payload_len,
        },
        header_len,
    )))
}

/// Appends the encoded header to `out` (at most [`MAX_HEADER_LEN`] bytes).
/// The whole length (header and payload) of the frame at the front of `buf`, once enough of its
/// header has arrived to tell: a quick look for deciding whether more input is already waiting,
/// without [`decode_header`]'s checks (a frame that breaks a rule fails when it is decoded).
pub(crate) fn frame_len(buf: &[u8]) -> Option<u64> {
    let [_, b1, rest @ ..] = buf else {
        return None;
    };
    let mask_len = if b1 & 0x80 != 0 { 4 } else { 0 };
    match b1 & 0x7f {
        126 => {
            let (ext, _) = rest.split_first_chunk::<2>()?;
            Some(4 + mask_len + u64::from(u16::from_be_bytes(*ext)))
        }
        127 => {
            let (ext, _) = rest.split_first_chunk::<8>()?;
            Some((10 + mask_len).saturating_add(u64::from_be_bytes(*ext)))
        }
        len7 => Some(2 + mask_len + u64::from(len7)),
    }
}

#[inline]
pub(crate) fn encode_header(header: &FrameHeader, out: &mut impl BufMut) {
    let b0 = (u8::from(header.fin) << 7) | ((header.rsv & 0b111) << 4) | header.opcode.as_u8();
    let mask_bit = if header.mask.is_some() { 0x80 } else { 0 };
    let len = header.payload_len;
    if let Ok(len7 @ 0..=125) = u8::try_from(len) {
        // Both bytes in one store: a small frame's whole header when unmasked.
        out.put_u16(u16::from_be_bytes([b0, mask_bit | len7]));
    } else if let Ok(len16) = u16::try_from(len) {
        out.put_u16(u16::from_be_bytes([b0, mask_bit | 0x7e]));
        out.put_u16(len16);
    } else {
        out.put_u16(u16::from_be_bytes([b0, mask_bit | 0x7f]));
        out.put_u64(len);
    }
    if let Some(key) = header.mask {
        out.put_slice(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: HeaderRules = HeaderRules {
        expect_masked: true,
        allowed_rsv: 0,
        max_frame_size: Limit::NONE,
    };
    const CLIENT: HeaderRules = HeaderRules {
        expect_masked: false,
        ..SERVER
    };

    #[test]
    fn frame_len_agrees_with_decode_header_for_every_length_form() {
        for len in [0, 1, 125, 126, 300, 65_535, 65_536, 1 << 40] {
            for mask in [None, Some([1, 2, 3, 4])] {
                let mut wire = Vec::new();
                encode_header(&header(OpCode::Binary, len, mask), &mut wire);
                let rules = if mask.is_some() { SERVER } else { CLIENT };
                let (_, header_len) = decode_header(&wire, rules).unwrap().unwrap();
                assert_eq!(frame_len(&wire), Some(header_len as u64 + len));
                // Until the length fields have arrived, it cannot tell.
                let len_fields = match len {
                    0..=125 => 2,
                    126..=65_535 => 4,
                    _ => 10,
                };
                for cut in 0..len_fields {
                    assert_eq!(frame_len(&wire[..cut]), None, "len {len} cut {cut}");
                }
            }
        }
    }

    fn header(opcode: OpCode, len: u64, mask: Option<[u8; 4]>) -> FrameHeader {
        FrameHeader {
            fin: true,
            rsv: 0,
            opcode,
            mask,
            payload_len: len,
        }
    }

    #[test]
    fn headers_round_trip_at_every_length_boundary() {
        let lens = [
            0,
            1,
            125,
            126,
            127,
            65_535,
            65_536,
            u64::from(u32::MAX) + 1,
            (1 << 63) - 1,
        ];
        for len in lens {
            for (mask, rules) in [(Some([1, 2, 3, 4]), SERVER), (None, CLIENT)] {
                let h = header(OpCode::Binary, len, mask);
                let mut out = Vec::new();
                encode_header(&h, &mut out);
                let n = out.len();
                assert!(n <= MAX_HEADER_LEN);
                let expected_len = match len {
                    0..=125 => 2,
                    126..=65_535 => 4,
                    _ => 10,
                } + if mask.is_some() { 4 } else { 0 };
                assert_eq!(n, expected_len, "len {len}");
                assert_eq!(
                    decode_header(&out[..n], rules),
                    Ok(Some((h, n))),
                    "len {len}"
                );
                // Every strict prefix is incomplete, never an error.
                for cut in 0..n {
                    assert_eq!(
                        decode_header(&out[..cut], rules),
                        Ok(None),
                        "len {len} cut {cut}"
                    );
                }
            }
        }
    }

    #[test]
    fn decodes_rfc_examples() {
        // RFC 6455 5.7: unmasked "Hello" and masked "Hello".
        let (h, n) = decode_header(&[0x81, 0x05, 0x48], CLIENT).unwrap().unwrap();
        assert_eq!(
            (h.opcode, h.fin, h.payload_len, n),
            (OpCode::Text, true, 5, 2)
        );
        let masked = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f];
        let (h, n) = decode_header(&masked, SERVER).unwrap().unwrap();
        assert_eq!((h.mask, n), (Some([0x37, 0xfa, 0x21, 0x3d]), 6));
        // A 256-byte binary frame uses the 16-bit length.
        let (h, n) = decode_header(&[0x82, 0x7e, 0x01, 0x00], CLIENT)
            .unwrap()
            .unwrap();
        assert_eq!((h.payload_len, n), (256, 4));
    }

    #[test]
    fn rejects_reserved_bits_without_an_extension() {
        for rsv in 1..8_u8 {
            let b0 = 0x81 | (rsv << 4);
            assert_eq!(
                decode_header(&[b0, 0x80], SERVER),
                Err(ProtocolError::ReservedBits(rsv))
            );
        }
        let deflate = HeaderRules {
            allowed_rsv: 0b100,
            ..SERVER
        };
        assert!(decode_header(&[0xc1, 0x80, 0, 0, 0, 0], deflate).is_ok());
        assert!(decode_header(&[0xa1, 0x80], deflate).is_err());
    }

    #[test]
    fn rejects_reserved_opcodes() {
        for op in [3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] {
            assert_eq!(
                decode_header(&[0x80 | op, 0x80], SERVER),
                Err(ProtocolError::ReservedOpCode(op))
            );
        }
    }

    #[test]
    fn rejects_fragmented_and_oversized_control_frames() {
        assert_eq!(
            decode_header(&[0x09, 0x80], SERVER),
            Err(ProtocolError::FragmentedControlFrame)
        );
        assert_eq!(
            decode_header(&[0x89, 0xfe], SERVER),
            Err(ProtocolError::ControlFrameTooLong)
        );
        assert_eq!(
            decode_header(&[0x88, 0x7e], CLIENT),
            Err(ProtocolError::ControlFrameTooLong)
        );
        assert!(decode_header(&[0x89, 0xfd], SERVER).unwrap().is_none());
    }

    #[test]
    fn rejects_wrong_masking_for_the_role() {
        assert_eq!(
            decode_header(&[0x81, 0x05], SERVER),
            Err(ProtocolError::UnmaskedFrameFromClient)
        );
        assert_eq!(
            decode_header(&[0x81, 0x85], CLIENT),
            Err(ProtocolError::MaskedFrameFromServer)
        );
    }

    #[test]
    fn rejects_64_bit_length_with_top_bit_set() {
        let mut b = vec![0x82, 0x7f];
        b.extend_from_slice(&(1_u64 << 63).to_be_bytes());
        assert_eq!(
            decode_header(&b, CLIENT),
            Err(ProtocolError::PayloadLengthTopBit)
        );
    }

    #[test]
    fn frame_size_limit_is_decided_from_the_header_alone() {
        let rules = HeaderRules {
            max_frame_size: Limit::new(1000),
            ..CLIENT
        };
        let mut b = vec![0x82, 0x7f];
        b.extend_from_slice(&(1_u64 << 62).to_be_bytes());
        assert_eq!(
            decode_header(&b, rules),
            Err(ProtocolError::FrameTooLarge {
                size: 1 << 62,
                limit: 1000
            })
        );
        assert!(
            decode_header(&[0x82, 0x7e, 0x03, 0xe8], rules)
                .unwrap()
                .is_some()
        );
        assert!(decode_header(&[0x82, 0x7e, 0x03, 0xe9], rules).is_err());
    }
}
