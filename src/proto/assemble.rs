//! Fragment reassembly (RFC 6455 section 5.4): which frame may follow which, the message size
//! limit, UTF-8 validation of text as it arrives, and inflating compressed messages (RFC 7692).

use bytes::{Bytes, BytesMut};

use super::config::Limit;
use super::deflate::Codec;
use super::frame::{FrameHeader, OpCode};
use super::message::{Message, Utf8Bytes};
use super::utf8::Utf8Validator;
use crate::error::ProtocolError;

/// The type of the data message in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Binary,
}

/// Reassembles data frames into messages.
#[derive(Debug, Default)]
pub(crate) struct Assembler {
    /// The message in progress, from its first frame's header until its last frame's payload.
    kind: Option<Kind>,
    /// The message in progress is compressed (its first frame had RSV1 set).
    compressed: bool,
    /// The buffers of a fragmented or compressed message in progress; `None` otherwise
    /// (single-frame messages are handed over without a copy), so an idle socket holds a
    /// pointer here rather than two empty buffers.
    spill: Option<Box<Spill>>,
    /// Whether any compressed bytes of the message in progress have arrived.
    compressed_input: bool,
    utf8: Utf8Validator,
}

/// What a message that does not arrive in one plain frame is gathered in.
#[derive(Debug, Default)]
struct Spill {
    /// Payload of the message's earlier fragments.
    fragments: BytesMut,
    /// The inflated payload of a compressed message so far.
    inflated: Vec<u8>,
}

impl Assembler {
    /// Checks a data frame's header against the message in progress and the size limit, and
    /// starts a new message if the frame begins one.
    ///
    /// The reader lets RSV1 through only when compression was negotiated, so a frame with it set
    /// here starts a compressed message.
    ///
    /// # Errors
    ///
    /// A continuation with nothing to continue or with RSV1 set, a new message inside a
    /// fragmented one, or a message that would exceed `max_message_size`.
    pub(crate) fn begin_frame(
        &mut self,
        header: &FrameHeader,
        max_message_size: Limit,
    ) -> Result<(), ProtocolError> {
        let rsv1 = header.rsv & 0b100 != 0;
        match (header.opcode, self.kind) {
            (OpCode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
            (OpCode::Continuation, Some(_)) if rsv1 => {
                return Err(ProtocolError::CompressedContinuation);
            }
            (OpCode::Text | OpCode::Binary, Some(_)) => {
                return Err(ProtocolError::ExpectedContinuation);
            }
            (OpCode::Text, None) => self.start(Kind::Text, rsv1),
            (OpCode::Binary, None) => self.start(Kind::Binary, rsv1),
            _ => {}
        }
        if self.compressed {
            // The limit applies to the inflated size, checked while inflating.
            return Ok(());
        }
        let gathered = self.spill.as_ref().map_or(0, |spill| spill.fragments.len());
        let size = (gathered as u64).saturating_add(header.payload_len);
        if max_message_size.exceeded_by(size) {
            return Err(ProtocolError::MessageTooLarge {
                size,
                limit: max_message_size.get_u64(),
            });
        }
        Ok(())
    }

    fn start(&mut self, kind: Kind, compressed: bool) {
        self.kind = Some(kind);
        self.compressed = compressed;
    }

    /// Whether no message is in progress (the next data frame must start one).
    pub(crate) fn is_idle(&self) -> bool {
        self.kind.is_none()
    }

    /// Whether the frame being read carries text as sent (uncompressed), which is validated as
    /// it arrives; compressed text is validated as it is inflated.
    pub(crate) fn in_text(&self) -> bool {
        self.kind == Some(Kind::Text) && !self.compressed
    }

    /// Validates newly arrived (unmasked) bytes of a text message.
    pub(crate) fn check_text(&mut self, bytes: &[u8]) -> Result<(), ProtocolError> {
        self.utf8
            .feed(bytes)
            .map_err(|_| ProtocolError::InvalidUtf8)
    }

    /// Takes a data frame's complete payload; returns the message when `fin` ends it.
    ///
    /// `codec` inflates compressed messages, whose inflated size `max_message_size` bounds.
    ///
    /// # Errors
    ///
    /// Text that is not UTF-8, a compressed message that does not inflate or inflates past the
    /// limit.
    #[inline]
    pub(crate) fn end_frame(
        &mut self,
        fin: bool,
        payload: Bytes,
        codec: Option<&mut Codec>,
        max_message_size: Limit,
    ) -> Result<Option<Message>, ProtocolError> {
        if self.compressed {
            return self.end_compressed_frame(fin, &payload, codec, max_message_size.get());
        }
        if !fin {
            let spill = self.spill.get_or_insert_with(Box::default);
            spill.fragments.extend_from_slice(&payload);
            return Ok(None);
        }
        // An uncompressed message ends: no compressed one is in progress, so the spill (if
        // any) holds only this message's earlier fragments.
        let data = match self.spill.take() {
            Some(mut spill) if !spill.fragments.is_empty() => {
                spill.fragments.extend_from_slice(&payload);
                std::mem::take(&mut spill.fragments).freeze()
            }
            _ => payload,
        };
        self.finish(data).map(Some)
    }

    fn end_compressed_frame(
        &mut self,
        fin: bool,
        payload: &[u8],
        codec: Option<&mut Codec>,
        max_message_size: usize,
    ) -> Result<Option<Message>, ProtocolError> {
        let codec = codec.ok_or(ProtocolError::InvalidCompressedData)?;
        let spill = self.spill.get_or_insert_with(Box::default);
        let start = spill.inflated.len();
        self.compressed_input |= !payload.is_empty();
        codec.inflate(payload, &mut spill.inflated, max_message_size)?;
        if fin {
            let had_input = std::mem::take(&mut self.compressed_input);
            codec.end_message(&mut spill.inflated, max_message_size, had_input)?;
        }
        if self.kind == Some(Kind::Text) {
            let fresh = spill.inflated.get(start..).unwrap_or_default();
            self.utf8
                .feed(fresh)
                .map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        if !fin {
            return Ok(None);
        }
        self.compressed = false;
        let data = Bytes::from(std::mem::take(&mut spill.inflated));
        self.spill = None;
        self.finish(data).map(Some)
    }

    fn finish(&mut self, data: Bytes) -> Result<Message, ProtocolError> {
        Ok(match self.kind.take() {
            Some(Kind::Text) => {
                self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
                Message::Text(Utf8Bytes::from_validated(data))
            }
            _ => Message::Binary(data),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(opcode: OpCode, fin: bool, len: u64) -> FrameHeader {
        FrameHeader {
            fin,
            rsv: 0,
            opcode,
            mask: None,
            payload_len: len,
        }
    }

    fn feed(
        a: &mut Assembler,
        opcode: OpCode,
        fin: bool,
        data: &[u8],
    ) -> Result<Option<Message>, ProtocolError> {
        a.begin_frame(&header(opcode, fin, data.len() as u64), Limit::new(100))?;
        if a.in_text() {
            a.check_text(data)?;
        }
        a.end_frame(fin, Bytes::copy_from_slice(data), None, Limit::new(100))
    }

    #[test]
    fn single_frame_messages_are_not_copied() {
        let mut a = Assembler::default();
        let payload = Bytes::from_static(b"hello");
        a.begin_frame(&header(OpCode::Binary, true, 5), Limit::new(100))
            .unwrap();
        let msg = a
            .end_frame(true, payload.clone(), None, Limit::new(100))
            .unwrap()
            .unwrap();
        let Message::Binary(data) = msg else { panic!() };
        assert_eq!(data.as_ptr(), payload.as_ptr());
    }

    #[test]
    fn fragments_join_into_one_message() {
        let mut a = Assembler::default();
        assert_eq!(feed(&mut a, OpCode::Text, false, "κό".as_bytes()), Ok(None));
        // Split inside the multi-byte sequence of 'σ'.
        assert_eq!(feed(&mut a, OpCode::Continuation, false, b"\xcf"), Ok(None));
        let msg = feed(&mut a, OpCode::Continuation, true, b"\x83\xce\xbc\xce\xb5");
        assert_eq!(msg, Ok(Some(Message::text("κόσμε"))));
    }

    #[test]
    fn continuation_without_a_message_is_rejected() {
        let mut a = Assembler::default();
        assert_eq!(
            feed(&mut a, OpCode::Continuation, true, b"x"),
            Err(ProtocolError::UnexpectedContinuation)
        );
    }

    #[test]
    fn new_message_inside_a_fragmented_one_is_rejected() {
        let mut a = Assembler::default();
        feed(&mut a, OpCode::Binary, false, b"x").unwrap();
        assert_eq!(
            feed(&mut a, OpCode::Text, true, b"y"),
            Err(ProtocolError::ExpectedContinuation)
        );
    }

    #[test]
    fn message_size_counts_every_fragment() {
        let mut a = Assembler::default();
        feed(&mut a, OpCode::Binary, false, &[0; 60]).unwrap();
        assert_eq!(
            a.begin_frame(&header(OpCode::Continuation, true, 41), Limit::new(100)),
            Err(ProtocolError::MessageTooLarge {
                size: 101,
                limit: 100
            })
        );
    }

    #[test]
    fn text_ending_inside_a_sequence_is_rejected_at_fin() {
        let mut a = Assembler::default();
        assert_eq!(feed(&mut a, OpCode::Text, false, b"ok \xe2\x82"), Ok(None));
        assert_eq!(
            feed(&mut a, OpCode::Continuation, true, b""),
            Err(ProtocolError::InvalidUtf8)
        );
    }

    #[test]
    fn invalid_text_fails_in_the_first_bad_fragment() {
        let mut a = Assembler::default();
        assert_eq!(feed(&mut a, OpCode::Text, false, b"fine"), Ok(None));
        assert_eq!(
            feed(&mut a, OpCode::Continuation, false, b"\xed\xa0\x80"),
            Err(ProtocolError::InvalidUtf8)
        );
    }
}
