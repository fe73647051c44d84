//! Without the `deflate` feature no connection compresses: the codec type has no values, so the
//! compressed-message paths of the reader compile but can never run.

use crate::error::ProtocolError;

#[derive(Debug)]
pub(crate) enum Codec {}

impl Codec {
    pub(crate) fn inflate(
        &mut self,
        _: &[u8],
        _: &mut Vec<u8>,
        _: usize,
    ) -> Result<(), ProtocolError> {
        match *self {}
    }

    pub(crate) fn end_message(
        &mut self,
        _: &mut Vec<u8>,
        _: usize,
        _: bool,
    ) -> Result<(), ProtocolError> {
        match *self {}
    }
}
