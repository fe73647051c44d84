//! The wire envelope: what a node puts on a broker channel around a published message.
//!
//! ```text
//!  offset size  field
//!  0      4     magic  b"tws1"  (format version 1)
//!  4      1     opcode 1 = text, 2 = binary (the WebSocket opcode)
//!  5      1     flags  0 (reserved: a receiver rejects any other value)
//!  6      8     origin the publishing node's id, u64 big-endian
//!  14     8     except the socket (`SocketId`) on the origin node that must not receive it, 0: none
//!  22     8     epoch  the topic's history epoch, u64 big-endian (0: no history, NATS)
//!  30     8     offset the message's offset in its topic, u64 big-endian (0: no history)
//!  38     ..    payload, as the publisher gave it
//! ```
//!
//! The first 22 bytes are built by the publisher; with Redis the script that stores the
//! message appends epoch and offset atomically with the store, so every node and every history
//! read sees the same numbers. A message that does not parse is bad data: the receiver reports
//! it and drops it.

use bytes::Bytes;

use super::error::BadData;
use super::position::Position;
use crate::proto::{Message, Utf8Bytes};

/// The four bytes every envelope starts with.
pub(crate) const MAGIC: &[u8; 4] = b"tws1";
/// The publisher-built part: magic, opcode, flags, origin, except.
pub(crate) const PREFIX_LEN: usize = 22;
/// The whole header, with epoch and offset.
pub(crate) const HEADER_LEN: usize = 38;

/// What a node decoded from the wire.
#[derive(Debug, Clone)]
pub(crate) struct Envelope {
    pub(crate) origin: u64,
    /// The socket on the origin node that must not receive it.
    pub(crate) except: Option<u64>,
    /// `None` when the backend keeps no history (epoch and offset 0).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) position: Option<Position>,
    pub(crate) message: Message,
}

/// The publisher's prefix for `message`: magic, opcode, flags, origin and except (0: none).
///
/// # Errors
///
/// `message` is neither text nor binary.
pub(crate) fn prefix(origin: u64, except: u64, message: &Message) -> Result<[u8; PREFIX_LEN], ()> {
    let opcode = match message {
        Message::Text(_) => 1,
        Message::Binary(_) => 2,
        _ => return Err(()),
    };
    let mut out = [0; PREFIX_LEN];
    out[..4].copy_from_slice(MAGIC);
    out[4] = opcode;
    out[6..14].copy_from_slice(&origin.to_be_bytes());
    out[14..22].copy_from_slice(&except.to_be_bytes());
    Ok(out)
}

/// A whole envelope without history numbers (NATS): one buffer, the payload copied once.
#[cfg(any(feature = "nats", test))]
pub(crate) fn encode_plain(prefix: &[u8; PREFIX_LEN], payload: &[u8]) -> Bytes {
    let mut out = bytes::BytesMut::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(prefix);
    out.extend_from_slice(&[0; 16]);
    out.extend_from_slice(payload);
    out.freeze()
}

/// Decodes an envelope, keeping the payload as a slice of `wire` (no copy).
pub(crate) fn decode(wire: &Bytes) -> Result<Envelope, BadData> {
    if wire.len() < HEADER_LEN {
        return Err(BadData::new("shorter than the 38-byte header", wire));
    }
    if &wire[..4] != MAGIC {
        return Err(BadData::new(
            "no tws1 magic: not published by tower-ws",
            wire,
        ));
    }
    if wire[5] != 0 {
        return Err(BadData::new("reserved flags set", wire));
    }
    let word = |at: usize| {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(&wire[at..at + 8]);
        u64::from_be_bytes(bytes)
    };
    let origin = word(6);
    let except = Some(word(14)).filter(|&id| id != 0);
    let epoch = word(22);
    let offset = word(30);
    let opcode = wire[4];
    let position = match (epoch, offset) {
        (0, 0) => None,
        (0, _) | (_, 0) => return Err(BadData::new("epoch or offset is zero", wire)),
        (epoch, offset) => Some(Position { epoch, offset }),
    };
    let payload = wire.slice(HEADER_LEN..);
    let message = match opcode {
        1 => match Utf8Bytes::try_from(payload) {
            Ok(text) => Message::Text(text),
            Err(_) => return Err(BadData::new("text payload is not UTF-8", wire)),
        },
        2 => Message::Binary(payload),
        _ => return Err(BadData::new("opcode is neither text nor binary", wire)),
    };
    Ok(Envelope {
        origin,
        except,
        position,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_position(prefix: &[u8; PREFIX_LEN], epoch: u64, offset: u64, payload: &[u8]) -> Bytes {
        let mut out = Vec::new();
        out.extend_from_slice(prefix);
        out.extend_from_slice(&epoch.to_be_bytes());
        out.extend_from_slice(&offset.to_be_bytes());
        out.extend_from_slice(payload);
        Bytes::from(out)
    }

    #[test]
    fn round_trips_text_and_binary() {
        let text = Message::text("héllo");
        let wire = encode_plain(&prefix(7, 0, &text).unwrap(), text.as_payload());
        let envelope = decode(&wire).unwrap();
        assert_eq!(envelope.origin, 7);
        assert_eq!(envelope.position, None);
        assert_eq!(envelope.except, None);
        assert_eq!(envelope.message, text);

        let binary = Message::binary(vec![0, 1, 2]);
        let wire = with_position(&prefix(9, 3, &binary).unwrap(), 5, 42, &[0, 1, 2]);
        let envelope = decode(&wire).unwrap();
        assert_eq!(
            envelope.position,
            Some(Position {
                epoch: 5,
                offset: 42
            })
        );
        assert_eq!(envelope.except, Some(3));
        assert_eq!(envelope.message, binary);
    }

    #[test]
    fn control_messages_have_no_prefix() {
        assert!(prefix(1, 0, &Message::ping(Bytes::new())).is_err());
    }

    #[test]
    fn rejects_foreign_and_broken_data() {
        let good = with_position(&prefix(1, 0, &Message::text("x")).unwrap(), 1, 1, b"x");
        let cases: Vec<(Bytes, &str)> = vec![
            (Bytes::from_static(b"hello"), "shorter"),
            (Bytes::from(vec![b'x'; 40]), "magic"),
            (
                {
                    let mut b = good.to_vec();
                    b[5] = 1;
                    b.into()
                },
                "flags",
            ),
            (
                {
                    let mut b = good.to_vec();
                    b[4] = 9;
                    b.into()
                },
                "opcode",
            ),
            (
                with_position(&prefix(1, 0, &Message::text("x")).unwrap(), 1, 0, b"x"),
                "zero",
            ),
            (
                with_position(&prefix(1, 0, &Message::text("x")).unwrap(), 1, 1, &[0xff]),
                "UTF-8",
            ),
        ];
        for (wire, what) in cases {
            let error = decode(&wire).unwrap_err();
            assert!(error.to_string().contains(what), "{error} lacks {what}");
        }
    }
}
