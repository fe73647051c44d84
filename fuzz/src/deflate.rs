//! permessage-deflate: the negotiation in both roles, and inflating under the message limit.

use arbitrary::{Arbitrary, Unstructured};
use flate2::{Compress, Compression, FlushCompress, Status};
use http::HeaderValue;
use tower_ws::internals::{self, DeflateCodec};
use tower_ws::{DeflateConfig, ProtocolError, Role};

use super::handshake::{check_accepted, check_answered};
use super::wire::{Params, Settings, peer};

/// Extension and parameter names worth trying, besides arbitrary ones.
const NAMES: [&str; 9] = [
    "permessage-deflate",
    "PerMessage-Deflate",
    "server_no_context_takeover",
    "client_no_context_takeover",
    "server_max_window_bits",
    "client_max_window_bits",
    "CLIENT_MAX_WINDOW_BITS",
    "x-webkit-deflate-frame",
    "mystery",
];

/// Parameter values worth trying.
const VALUES: [&str; 12] = [
    "8", "9", "10", "12", "15", "16", "7", "010", "0", "abc", "", "1",
];

#[derive(Debug, Arbitrary)]
enum Word {
    Known(u8),
    Other(String),
}

impl Word {
    fn get(&self, table: &[&'static str]) -> String {
        match self {
            Self::Known(i) => table[usize::from(*i) % table.len()].to_owned(),
            Self::Other(s) => s.clone(),
        }
    }
}

#[derive(Debug, Arbitrary)]
enum ParamValue {
    None,
    Token(Word),
    Quoted(Word),
}

#[derive(Debug, Arbitrary)]
struct Extension {
    name: Word,
    params: Vec<(Word, ParamValue)>,
    /// Spaces around the separators.
    spaced: bool,
}

impl Extension {
    fn render(&self) -> String {
        let sep = if self.spaced { " ; " } else { ";" };
        let mut out = self.name.get(&NAMES);
        for (name, value) in &self.params {
            out.push_str(sep);
            out.push_str(&name.get(&NAMES));
            match value {
                ParamValue::None => {}
                ParamValue::Token(v) => {
                    out.push('=');
                    out.push_str(&v.get(&VALUES));
                }
                ParamValue::Quoted(v) => {
                    out.push_str("=\"");
                    out.push_str(&v.get(&VALUES));
                    out.push('"');
                }
            }
        }
        out
    }
}

/// `Sec-WebSocket-Extensions` lines.
#[derive(Debug, Arbitrary)]
enum Lines {
    /// Lines of extensions built from known names and values.
    Built(Vec<Vec<Extension>>),
    /// Arbitrary lines.
    Raw(Vec<Vec<u8>>),
}

impl Lines {
    fn values(&self) -> Vec<HeaderValue> {
        match self {
            Self::Built(lines) => lines
                .iter()
                .filter_map(|line| {
                    let line: Vec<String> = line.iter().map(Extension::render).collect();
                    HeaderValue::from_str(&line.join(", ")).ok()
                })
                .collect(),
            Self::Raw(lines) => lines
                .iter()
                .filter_map(|line| HeaderValue::from_bytes(line).ok())
                .collect(),
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Offer {
    /// What our own client offers for its settings.
    Ours,
    Lines(Lines),
}

#[derive(Debug, Arbitrary)]
struct NegotiateInput {
    server: Settings,
    client: Settings,
    offer: Offer,
    answer: Lines,
}

/// Offers through the server's negotiation, answers through the client's check.
///
/// # Panics
///
/// When a property of the negotiation fails: a finding.
pub fn deflate_negotiate(data: &[u8]) {
    let Ok(input) = NegotiateInput::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let (server, client) = (input.server.get(), input.client.get());

    // The server's side.
    let offers = match &input.offer {
        Offer::Ours => vec![internals::deflate_offer(&client)],
        Offer::Lines(lines) => lines.values(),
    };
    let accepted = internals::deflate_accept(&offers, &server);
    if let Some((params, answer)) = &accepted {
        check_accepted(*params, answer, server, input.server.asks());
    }
    if let Offer::Ours = input.offer {
        // Our client and our server always agree, whatever their settings.
        let Some((params, answer)) = accepted else {
            panic!("the server declined our client's offer {offers:?}");
        };
        assert_eq!(
            internals::deflate_check_answer([&answer], &client),
            Ok(Some(params)),
            "our client reads our server's answer {answer:?} to {offers:?} otherwise"
        );
    }

    // The client's side.
    let answer = input.answer.values();
    if let Ok(Some(params)) = internals::deflate_check_answer(&answer, &client) {
        check_answered(params, client, input.client.asks());
    }
}

#[derive(Debug, Arbitrary)]
enum Compressed {
    /// Arbitrary bytes, in fragments.
    Raw(Vec<Vec<u8>>),
    /// A message the peer's compressor made, cut into fragments, maybe with one byte changed.
    Real {
        plain: Plain,
        cuts: Vec<u16>,
        corrupt: Option<(u16, u8)>,
    },
    /// A message from a fresh compressor: a peer that starts over, maybe ending its stream with
    /// a final block (RFC 7692 section 7.2.3.4). It must inflate whatever came before it, as
    /// long as that ended on a block boundary.
    Fresh {
        plain: Plain,
        finish: bool,
        level: u8,
        cuts: Vec<u16>,
    },
}

#[derive(Debug, Arbitrary)]
enum Plain {
    Bytes(Vec<u8>),
    /// A run of one byte (a small bomb: up to 256 KiB).
    Run {
        byte: u8,
        count: u16,
    },
}

impl Plain {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Self::Bytes(b) => b.clone(),
            Self::Run { byte, count } => vec![*byte; usize::from(*count) << 2],
        }
    }
}

#[derive(Debug, Arbitrary)]
struct InflateInput {
    params: Params,
    /// The receiver is the client.
    client: bool,
    level: u8,
    limit: u8,
    messages: Vec<Compressed>,
}

/// The limits inflating runs under.
const LIMITS: [usize; 8] = [0, 1, 16, 1000, 16 << 10, (16 << 10) + 1, 100_000, 1 << 20];

/// Compressed messages, made by the peer or arbitrary, inflated under a limit.
///
/// # Panics
///
/// When inflating passes the limit or changes a message: a finding.
pub fn deflate_inflate(data: &[u8]) {
    let Ok(input) = InflateInput::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let limit = LIMITS[usize::from(input.limit) % LIMITS.len()];
    let params = input.params.get();
    let role = if input.client {
        Role::Client
    } else {
        Role::Server
    };
    let config = DeflateConfig::default().level(u32::from(input.level % 10));
    let mut sender = DeflateCodec::new(config, params, peer(role));
    let mut receiver = DeflateCodec::new(DeflateConfig::default(), params, role);
    // The window the peer compresses with.
    let peer_bits = match role {
        Role::Server => params.client_max_window_bits,
        Role::Client => params.server_max_window_bits,
    }
    .clamp(9, 15);
    // Whether the receiver's state still matches the sender's.
    let mut in_step = true;
    // Whether every message so far was well-formed: the receiver is at a block boundary.
    let mut at_boundary = true;
    for message in &input.messages {
        let (fragments, expected) = match message {
            Compressed::Raw(fragments) => {
                in_step = false;
                at_boundary = false;
                (fragments.clone(), None)
            }
            Compressed::Fresh {
                plain,
                finish,
                level,
                cuts,
            } => {
                in_step = false;
                let plain = plain.bytes();
                let stream = fresh(&plain, *finish, *level, peer_bits);
                (split(&stream, cuts), at_boundary.then_some(plain))
            }
            Compressed::Real {
                plain,
                cuts,
                corrupt,
            } => {
                let plain = plain.bytes();
                let mut stream = sender.compress(&plain).to_vec();
                if let Some((at, byte)) = corrupt {
                    let len = stream.len();
                    if let Some(b) = stream.get_mut(usize::from(*at) % len.max(1))
                        && *b != *byte
                    {
                        *b = *byte;
                        in_step = false;
                        at_boundary = false;
                    }
                }
                (split(&stream, cuts), in_step.then_some(plain))
            }
        };
        let mut out = Vec::new();
        let mut had_input = false;
        let mut result = Ok(());
        for fragment in &fragments {
            had_input |= !fragment.is_empty();
            result = receiver.inflate(fragment, &mut out, limit);
            bounded(&out, limit, result);
            if result.is_err() {
                break;
            }
        }
        if result.is_ok() {
            result = receiver.end_message(&mut out, limit, had_input);
            bounded(&out, limit, result);
        }
        if let Some(plain) = expected {
            if plain.len() <= limit {
                assert_eq!(
                    result,
                    Ok(()),
                    "a message the peer compressed does not inflate"
                );
                assert_eq!(out, plain, "a message inflates to something else");
            } else {
                assert!(
                    matches!(result, Err(ProtocolError::MessageTooLarge { .. })),
                    "a message over the limit got {result:?}"
                );
            }
        }
        if result.is_err() {
            // The connection fails: nothing more is read.
            return;
        }
    }
}

/// `stream` cut at `cuts`.
fn split(stream: &[u8], cuts: &[u16]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = cuts
        .iter()
        .map(|&c| usize::from(c) % (stream.len() + 1))
        .collect();
    cuts.sort_unstable();
    cuts.push(stream.len());
    let mut start = 0;
    cuts.iter()
        .map(|&end| {
            let fragment = stream.get(start..end).unwrap_or_default().to_vec();
            start = end;
            fragment
        })
        .collect()
}

/// `plain` compressed by a fresh zlib compressor with a `bits` window: sync-flushed with the
/// trailer removed, as RFC 7692 section 7.2.1 says, or ended with a final block.
fn fresh(plain: &[u8], finish: bool, level: u8, bits: u8) -> Vec<u8> {
    let mut compressor =
        Compress::new_with_window_bits(Compression::new(u32::from(level % 10)), false, bits);
    let flush = if finish {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut out = Vec::with_capacity(plain.len() + 64);
    loop {
        out.reserve(out.capacity().max(64));
        let consumed = usize::try_from(compressor.total_in()).unwrap_or(usize::MAX);
        let rest = plain.get(consumed..).unwrap_or_default();
        let status = compressor.compress_vec(rest, &mut out, flush);
        let done = usize::try_from(compressor.total_in()).unwrap_or(usize::MAX) >= plain.len();
        match status {
            Ok(Status::StreamEnd) => break,
            Ok(_) if done && !finish && out.len() < out.capacity() => break,
            Ok(_) => {}
            Err(e) => panic!("compressing failed: {e}"),
        }
    }
    if !finish && out.ends_with(&[0, 0, 0xff, 0xff]) {
        out.truncate(out.len() - 4);
    }
    out
}

/// The output never holds more than one byte past the limit, and only errors go past it.
fn bounded(out: &Vec<u8>, limit: usize, result: Result<(), ProtocolError>) {
    assert!(
        out.capacity() <= limit.saturating_add(1),
        "inflating held {} bytes under a limit of {limit}",
        out.capacity()
    );
    match result {
        Ok(()) => assert!(
            out.len() <= limit,
            "{} bytes passed a limit of {limit}",
            out.len()
        ),
        Err(ProtocolError::MessageTooLarge { size, limit: l }) => {
            assert_eq!(l, limit as u64);
            assert!(size > l);
        }
        Err(ProtocolError::InvalidCompressedData) => {}
        Err(other) => panic!("inflating failed with {other:?}"),
    }
}
