//! Close codes and close frames (RFC 6455 sections 5.5.1 and 7.4).

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use super::message::Utf8Bytes;
use super::utf8::Utf8Validator;
use crate::error::ProtocolError;

/// The longest close reason: a control payload is at most 125 bytes, two of them the code.
pub const MAX_REASON_LEN: usize = 123;

/// A close status code.
///
/// Any `u16` can be held, so codes from newer registries survive a round trip; the associated
/// constants name the ones RFC 6455 and IANA define. [`is_valid_on_wire`](Self::is_valid_on_wire)
/// says whether a code may appear in a close frame.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(u16);

impl CloseCode {
    /// 1000: the purpose of the connection has been fulfilled.
    pub const NORMAL: Self = Self(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: Self = Self(1001);
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL_ERROR: Self = Self(1002);
    /// 1003: the peer sent a kind of data this endpoint cannot accept.
    pub const UNSUPPORTED_DATA: Self = Self(1003);
    /// 1005: no code was present. Reserved: never sent in a close frame.
    pub const NO_STATUS: Self = Self(1005);
    /// 1006: the connection closed without a close frame. Reserved: never sent.
    pub const ABNORMAL: Self = Self(1006);
    /// 1007: a message's data did not match its type (text that is not UTF-8).
    pub const INVALID_PAYLOAD: Self = Self(1007);
    /// 1008: a message broke the endpoint's policy.
    pub const POLICY_VIOLATION: Self = Self(1008);
    /// 1009: a message was too big to process.
    pub const MESSAGE_TOO_BIG: Self = Self(1009);
    /// 1010: the client needed an extension the server did not negotiate.
    pub const MANDATORY_EXTENSION: Self = Self(1010);
    /// 1011: the server met an unexpected condition.
    pub const INTERNAL_ERROR: Self = Self(1011);
    /// 1012: the service is restarting.
    pub const SERVICE_RESTART: Self = Self(1012);
    /// 1013: try again later.
    pub const TRY_AGAIN_LATER: Self = Self(1013);
    /// 1014: a gateway received an invalid response upstream.
    pub const BAD_GATEWAY: Self = Self(1014);
    /// 1015: the TLS handshake failed. Reserved: never sent.
    pub const TLS_HANDSHAKE: Self = Self(1015);

    /// The numeric code.
    pub const fn as_u16(self) -> u16 {
        self.0
    }

    /// Whether the code may be sent in a close frame.
    ///
    /// Allowed: 1000-1003, 1007-1014 (defined by RFC 6455 and registered with IANA),
    /// 3000-3999 (registered for libraries and frameworks) and 4000-4999 (private use).
    /// Not allowed: anything below 1000, the reserved 1004, 1005, 1006 and 1015, the
    /// unassigned 1016-2999, and 5000 and up. Receiving a code that is not allowed fails the
    /// connection with 1002.
    pub const fn is_valid_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        Self(code)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> Self {
        code.0
    }
}

impl fmt::Debug for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CloseCode({})", self.0)
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// The code and reason of a close frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code.
    pub code: CloseCode,
    /// Why the connection is closing; at most [`MAX_REASON_LEN`] bytes.
    pub reason: Utf8Bytes,
}

impl CloseFrame {
    /// A close frame with `code` and `reason`.
    pub fn new(code: CloseCode, reason: impl Into<Utf8Bytes>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }

    /// Parses a received close payload.
    ///
    /// # Errors
    ///
    /// A one-byte payload or a code not allowed on the wire is a protocol error (1002); a reason
    /// that is not UTF-8 is [`ProtocolError::InvalidCloseReason`] (1007).
    pub(crate) fn parse(payload: &Bytes) -> Result<Option<Self>, ProtocolError> {
        let code = match payload.first_chunk::<2>() {
            Some(code) => CloseCode(u16::from_be_bytes(*code)),
            None if payload.is_empty() => return Ok(None),
            None => return Err(ProtocolError::ClosePayloadTooShort),
        };
        if !code.is_valid_on_wire() {
            return Err(ProtocolError::InvalidCloseCode(code.0));
        }
        let reason = payload.slice(2..);
        let mut v = Utf8Validator::default();
        if v.feed(&reason).and_then(|()| v.finish()).is_err() {
            return Err(ProtocolError::InvalidCloseReason);
        }
        Ok(Some(Self {
            code,
            reason: Utf8Bytes::from_validated(reason),
        }))
    }

    /// Checks that this frame may be sent.
    pub(crate) fn check_sendable(&self) -> Result<(), &'static str> {
        if !self.code.is_valid_on_wire() {
            return Err("close code may not be sent on the wire");
        }
        if self.reason.len() > MAX_REASON_LEN {
            return Err("close reason is longer than 123 bytes");
        }
        Ok(())
    }

    /// Writes the close payload (code, then reason) into `out`.
    pub(crate) fn encode(&self, out: &mut BytesMut) {
        out.put_u16(self.code.0);
        out.extend_from_slice(self.reason.as_bytes());
    }

    /// The payload length [`encode`](Self::encode) writes.
    pub(crate) fn encoded_len(&self) -> usize {
        2 + self.reason.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(code: u16, reason: &[u8]) -> Bytes {
        let mut b = code.to_be_bytes().to_vec();
        b.extend_from_slice(reason);
        Bytes::from(b)
    }

    #[test]
    fn every_code_is_classified_as_rfc_6455_and_iana_say() {
        for code in 0..=u16::MAX {
            let expected = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            assert_eq!(CloseCode(code).is_valid_on_wire(), expected, "{code}");
        }
        for code in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65_535,
        ] {
            assert_eq!(
                CloseFrame::parse(&payload(code, b"")),
                Err(ProtocolError::InvalidCloseCode(code))
            );
        }
    }

    #[test]
    fn empty_payload_is_a_close_without_code() {
        assert_eq!(CloseFrame::parse(&Bytes::new()), Ok(None));
    }

    #[test]
    fn one_byte_payload_is_a_protocol_error() {
        assert_eq!(
            CloseFrame::parse(&Bytes::from_static(&[3])),
            Err(ProtocolError::ClosePayloadTooShort)
        );
    }

    #[test]
    fn reason_must_be_utf8() {
        assert_eq!(
            CloseFrame::parse(&payload(
                1000,
                b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"
            )),
            Err(ProtocolError::InvalidCloseReason)
        );
        assert_eq!(
            CloseFrame::parse(&payload(1000, b"truncated \xe2\x82")),
            Err(ProtocolError::InvalidCloseReason)
        );
        let ok = CloseFrame::parse(&payload(4000, "bye ✓".as_bytes()))
            .unwrap()
            .unwrap();
        assert_eq!((ok.code.as_u16(), ok.reason.as_str()), (4000, "bye ✓"));
    }

    #[test]
    fn encode_round_trips_and_checks_what_may_be_sent() {
        let frame = CloseFrame::new(CloseCode::GOING_AWAY, "shutting down");
        let mut out = BytesMut::new();
        frame.encode(&mut out);
        assert_eq!(out.len(), frame.encoded_len());
        assert_eq!(CloseFrame::parse(&out.freeze()), Ok(Some(frame.clone())));
        assert!(frame.check_sendable().is_ok());
        assert!(
            CloseFrame::new(CloseCode::NO_STATUS, "")
                .check_sendable()
                .is_err()
        );
        assert!(
            CloseFrame::new(CloseCode::NORMAL, "x".repeat(124))
                .check_sendable()
                .is_err()
        );
        assert!(
            CloseFrame::new(CloseCode::NORMAL, "x".repeat(123))
                .check_sendable()
                .is_ok()
        );
    }
}
