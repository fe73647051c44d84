//! The frame decoder in either role: arbitrary bytes through the engine's reader until it fails
//! or needs more.
//!
//! Properties: the same bytes decode to the same messages and the same end whatever pieces they
//! arrive in; every message is within the limits (text is UTF-8, control payloads at most 125
//! bytes, close codes allowed on the wire); and the messages, encoded again by the crate's own
//! writer as the peer would send them, decode to the same messages.

use arbitrary::{Arbitrary, Unstructured};
use tower_ws::internals::{Decoder, Encoder};
use tower_ws::{DeflateConfig, Role};

use super::wire::{End, Limits, Params, check_message, drive, peer};

#[derive(Debug, Arbitrary)]
struct Input {
    limits: Limits,
    /// permessage-deflate as negotiated, if it was.
    deflate: Option<Params>,
    /// The key the peer masks the frames encoded again with.
    mask: [u8; 4],
    /// The sizes of the pieces the bytes arrive in (one byte at a time if empty).
    pieces: Vec<u8>,
    wire: Vec<u8>,
}

/// The server's decoder: frames must be masked.
///
/// # Panics
///
/// When a property fails: a finding.
pub fn decode_server(data: &[u8]) {
    decode(data, Role::Server);
}

/// The client's decoder: frames must not be masked.
///
/// # Panics
///
/// When a property fails: a finding.
pub fn decode_client(data: &[u8]) {
    decode(data, Role::Client);
}

fn decode(data: &[u8], role: Role) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let params = input.deflate.map(Params::get);
    let max_message_size = input.limits.max_message_size();
    let decoder = || input.limits.decoder(role, params);
    let whole = drive(&mut decoder(), &input.wire, &[]);
    let pieces = if input.pieces.is_empty() {
        &[0][..]
    } else {
        &input.pieces
    };
    let chunked = drive(&mut decoder(), &input.wire, pieces);
    assert_eq!(
        chunked, whole,
        "the same bytes decode differently when they arrive in other pieces"
    );
    for message in &whole.messages {
        check_message(message, max_message_size);
    }

    // The peer's writer encodes the messages again; a fresh reader reads them back.
    let mut encoder = Encoder::new(peer(role), input.mask);
    let mut again = Decoder::new(role, u64::MAX >> 1, usize::MAX);
    if let Some(params) = params {
        encoder = encoder.with_deflate(DeflateConfig::default(), params);
        again = again.with_deflate(params);
    }
    let wire: Vec<u8> = whole
        .messages
        .iter()
        .flat_map(|message| encoder.encode(message))
        .collect();
    let reread = drive(&mut again, &wire, &[]);
    assert_eq!(
        reread.messages, whole.messages,
        "messages encoded again decode differently"
    );
    let expected_end = if whole.end == End::Closed {
        End::Closed
    } else {
        End::NeedMore
    };
    assert_eq!(reread.end, expected_end);
}
