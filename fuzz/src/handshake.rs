//! The opening handshake: the server's checks of a request head, and the client's checks of a
//! 101 answer.
//!
//! Both are checked against oracles written from RFC 6455 section 4: a request the server
//! accepts passes every check and gets the accept value computed here from the key; one it
//! refuses is refused for the first check that fails; an answer the client accepts carries the
//! right accept value and only what was offered.

use arbitrary::{Arbitrary, Unstructured};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Version};
use sha1::{Digest, Sha1};
use tower_ws::internals::{self, Classified, Decoder, Encoder, ServerRules};
use tower_ws::{
    AllowOrigin, Config, DefaultOnReject, DeflateConfig, DeflateParams, HandshakeErrorKind,
    Message, OnReject, Protocols, Role,
};

use super::wire::{Asks, Settings, drive};

/// The subprotocols a server or a client may be configured with.
const PROTOCOLS: [&str; 4] = ["chat", "superchat", "v1.json", "graphql-ws"];

/// Header values worth trying in any field, besides arbitrary ones.
const VALUES: [&str; 36] = [
    "websocket",
    "WebSocket",
    " websocket ",
    "websocket, h2c",
    "h2c",
    "Upgrade",
    "upgrade",
    "keep-alive, Upgrade",
    "keep-alive,upgrade,",
    "close",
    "13",
    " 13 ",
    "8",
    "13, 8",
    "dGhlIHNhbXBsZSBub25jZQ==",
    "dGhlIHNhbXBsZSBub25jZQ",
    "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
    "example.com",
    "example.com:8080",
    "[::1]:3000",
    "http://example.com",
    "https://example.com:443",
    "https://app.example.com",
    "http://[::1]:3000",
    "null",
    "chat",
    "superchat, chat",
    "v1.json",
    "permessage-deflate",
    "permessage-deflate; client_max_window_bits",
    "permessage-deflate; server_max_window_bits=10; server_no_context_takeover",
    "permessage-deflate; client_max_window_bits=8, permessage-deflate",
    "x-webkit-deflate-frame",
    "",
    ",",
    "\t",
];

const NAMES: [HeaderName; 8] = [
    header::HOST,
    header::ORIGIN,
    header::CONNECTION,
    header::UPGRADE,
    header::SEC_WEBSOCKET_VERSION,
    header::SEC_WEBSOCKET_KEY,
    header::SEC_WEBSOCKET_PROTOCOL,
    header::SEC_WEBSOCKET_EXTENSIONS,
];

#[derive(Debug, Arbitrary)]
enum Name {
    Known(u8),
    Accept,
    Other(String),
}

impl Name {
    fn get(&self) -> Option<HeaderName> {
        match self {
            Self::Known(i) => Some(NAMES[usize::from(*i) % NAMES.len()].clone()),
            Self::Accept => Some(header::SEC_WEBSOCKET_ACCEPT),
            Self::Other(name) => HeaderName::from_bytes(name.as_bytes()).ok(),
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Value {
    Known(u8),
    /// A well-formed key.
    Key([u8; 16]),
    /// The accept value for the client's key (client target) or for these bytes.
    AcceptFor(Option<[u8; 16]>),
    /// Known values joined into a list.
    List(Vec<u8>),
    Text(String),
    Raw(Vec<u8>),
}

impl Value {
    fn get(&self, key: &[u8]) -> Option<HeaderValue> {
        let text = match self {
            Self::Known(i) => VALUES[usize::from(*i) % VALUES.len()].to_owned(),
            Self::Key(nonce) => STANDARD.encode(nonce),
            Self::AcceptFor(None) => accept_value(key),
            Self::AcceptFor(Some(nonce)) => accept_value(STANDARD.encode(nonce).as_bytes()),
            Self::List(items) => items
                .iter()
                .map(|i| VALUES[usize::from(*i) % VALUES.len()])
                .collect::<Vec<_>>()
                .join(", "),
            Self::Text(text) => text.clone(),
            Self::Raw(bytes) => return HeaderValue::from_bytes(bytes).ok(),
        };
        HeaderValue::from_str(&text).ok()
    }
}

fn headers(lines: &[(Name, Value)], key: &[u8]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in lines {
        if let (Some(name), Some(value)) = (name.get(), value.get(key)) {
            map.append(name, value);
        }
    }
    map
}

/// `Sec-WebSocket-Accept` for `key`, from RFC 6455 section 4.2.2.
fn accept_value(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    STANDARD.encode(sha.finalize())
}

/// HTTP's optional whitespace removed from both ends.
fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| !matches!(b, b' ' | b'\t'));
    let end = bytes.iter().rposition(|b| !matches!(b, b' ' | b'\t'));
    match (start, end) {
        (Some(start), Some(end)) => bytes.get(start..=end).unwrap_or_default(),
        _ => &[],
    }
}

/// The non-empty elements of the comma-separated lists on every line of `name`.
fn elements<'a>(map: &'a HeaderMap, name: &HeaderName) -> Vec<&'a [u8]> {
    map.get_all(name)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(trim)
        .filter(|e| !e.is_empty())
        .collect()
}

fn has_token(map: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    elements(map, name)
        .iter()
        .any(|e| e.eq_ignore_ascii_case(token.as_bytes()))
}

fn protocols(picks: &[u8]) -> Vec<&'static str> {
    let mut names: Vec<&str> = picks
        .iter()
        .map(|i| PROTOCOLS[usize::from(*i) % PROTOCOLS.len()])
        .collect();
    names.dedup();
    names
}

/// Encodes a message with `params` as `from` would and decodes it as the other end: the agreed
/// parameters must work in the engine.
fn round_trip(params: DeflateParams, sender: DeflateConfig, from: Role, message: &Message) {
    let to = match from {
        Role::Server => Role::Client,
        Role::Client => Role::Server,
    };
    let mut encoder = Encoder::new(from, [1, 2, 3, 4]).with_deflate(sender.threshold(0), params);
    let mut decoder = Decoder::new(to, u64::MAX >> 1, usize::MAX).with_deflate(params);
    let wire: Vec<u8> = [message, message]
        .into_iter()
        .flat_map(|m| encoder.encode(m))
        .collect();
    let run = drive(&mut decoder, &wire, &[]);
    assert_eq!(
        run.messages,
        [message.clone(), message.clone()],
        "{params:?} does not work from {from:?}"
    );
}

pub(crate) fn check_params_work(
    params: DeflateParams,
    server: DeflateConfig,
    client: DeflateConfig,
) {
    // Each combination once per process: building compressors is most of a run's time.
    thread_local! {
        static CHECKED: std::cell::RefCell<Vec<(DeflateParams, u32, u32)>> = const {
            std::cell::RefCell::new(Vec::new())
        };
    }
    let combination = (params, server.get_level(), client.get_level());
    let fresh = CHECKED.with(|checked| {
        let mut checked = checked.borrow_mut();
        let fresh = !checked.contains(&combination);
        if fresh {
            checked.push(combination);
        }
        fresh
    });
    if !fresh {
        return;
    }
    let message = Message::text("permessage-deflate ".repeat(20));
    round_trip(params, server, Role::Server, &message);
    round_trip(params, client, Role::Client, &message);
}

#[derive(Debug, Arbitrary)]
enum Origin {
    SameHost,
    Any,
    List,
}

#[derive(Debug, Arbitrary)]
struct RequestInput {
    method: u8,
    version: u8,
    uri: u8,
    /// The HTTP/2 `:protocol` pseudo-header.
    protocol: Option<u8>,
    protocols: Vec<u8>,
    require_protocol: bool,
    origin: Origin,
    deflate: Option<Settings>,
    headers: Vec<(Name, Value)>,
}

/// The server's checks of a request head.
///
/// # Panics
///
/// When the layer and the oracle disagree: a finding.
#[expect(
    clippy::too_many_lines,
    reason = "the oracle reads best as one pass, in the order the layer checks"
)]
pub fn handshake_server(data: &[u8]) {
    let Ok(input) = RequestInput::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let methods = [
        Method::GET,
        Method::POST,
        Method::CONNECT,
        Method::HEAD,
        Method::OPTIONS,
    ];
    let method = methods[usize::from(input.method) % methods.len()].clone();
    let versions = [
        Version::HTTP_09,
        Version::HTTP_10,
        Version::HTTP_11,
        Version::HTTP_2,
        Version::HTTP_3,
    ];
    let version = versions[usize::from(input.version) % versions.len()];
    let uris = [
        "/ws",
        "http://example.com/ws",
        "https://example.com:8443/chat?x=1",
        "*",
    ];
    let Ok(request) = Request::builder()
        .method(method.clone())
        .version(version)
        .uri(uris[usize::from(input.uri) % uris.len()])
        .body(())
    else {
        return;
    };
    let (mut parts, ()) = request.into_parts();
    parts.headers = headers(&input.headers, b"");
    let pseudo = ["websocket", "WebSocket", "webtransport", ""];
    let pseudo = input
        .protocol
        .map(|i| pseudo[usize::from(i) % pseudo.len()]);
    if let Some(protocol) = pseudo {
        parts
            .extensions
            .insert(hyper::ext::Protocol::from(protocol));
    }
    let supported = protocols(&input.protocols);
    let Ok(configured) = Protocols::new(&supported) else {
        panic!("valid subprotocol names refused");
    };
    let origin = match input.origin {
        Origin::SameHost => AllowOrigin::same_host(),
        Origin::Any => AllowOrigin::any(),
        Origin::List => match AllowOrigin::list(["https://app.example.com"]) {
            Ok(list) => list,
            Err(e) => panic!("valid origin refused: {e}"),
        },
    };
    let rules = ServerRules {
        protocols: configured,
        require_protocol: input.require_protocol,
        origin,
        deflate: input.deflate.map(Settings::get),
    };
    let outcome = internals::classify(&parts, &rules);
    let h = &parts.headers;

    // The oracle: RFC 6455 section 4.2.1 in the order the layer checks.
    let upgrade = version < Version::HTTP_2 && has_token(h, &header::UPGRADE, "websocket");
    let connect = version == Version::HTTP_2
        && method == Method::CONNECT
        && pseudo.is_some_and(|p| p.eq_ignore_ascii_case("websocket"));
    let lines = |name| h.get_all(name).iter().collect::<Vec<_>>();
    let version_13 =
        matches!(lines(header::SEC_WEBSOCKET_VERSION)[..], [v] if trim(v.as_bytes()) == b"13");
    let keys = lines(header::SEC_WEBSOCKET_KEY);
    let key_ok = |k: &HeaderValue| {
        k.len() == 24 && STANDARD.decode(k.as_bytes()).is_ok_and(|d| d.len() == 16)
    };
    let early = if upgrade {
        if version < Version::HTTP_11 {
            Some(HandshakeErrorKind::HttpVersion)
        } else if method != Method::GET {
            Some(HandshakeErrorKind::MethodNotAllowed)
        } else if !has_token(h, &header::CONNECTION, "upgrade") {
            Some(HandshakeErrorKind::MissingConnectionUpgrade)
        } else if !version_13 {
            Some(HandshakeErrorKind::UnsupportedVersion)
        } else {
            match keys[..] {
                [] => Some(HandshakeErrorKind::MissingKey),
                [k] if key_ok(k) => None,
                [_] => Some(HandshakeErrorKind::InvalidKey),
                _ => Some(HandshakeErrorKind::RepeatedKey),
            }
        }
    } else if connect && !version_13 {
        Some(HandshakeErrorKind::UnsupportedVersion)
    } else {
        None
    };
    let offered = elements(h, &header::SEC_WEBSOCKET_PROTOCOL);
    let chosen = supported
        .iter()
        .find(|p| offered.contains(&p.as_bytes()))
        .copied();
    let origins = lines(header::ORIGIN).len();

    match outcome {
        Classified::NotWebSocket => {
            assert!(
                !upgrade && !connect,
                "a handshake taken for another request"
            );
        }
        Classified::Reject(error) => {
            assert!(
                upgrade || connect,
                "an ordinary request refused as a handshake"
            );
            let kind = error.kind();
            match early {
                Some(expected) => assert_eq!(kind, expected),
                None => match kind {
                    HandshakeErrorKind::OriginNotAllowed => {
                        assert!(
                            origins > 0 && !matches!(input.origin, Origin::Any),
                            "origin refused without an origin to refuse"
                        );
                    }
                    HandshakeErrorKind::NoSubprotocol => {
                        assert!(input.require_protocol && chosen.is_none());
                    }
                    other => panic!("refused with {other:?} where every check passes"),
                },
            }
            let response = DefaultOnReject.on_reject(&error);
            assert!(response.status().is_client_error());
            assert_eq!(response.status(), error.status());
            assert!(!error.to_string().is_empty() && !error.reason().is_empty());
        }
        Classified::Accept {
            response,
            protocol,
            deflate: negotiated,
        } => {
            assert!(
                upgrade || connect,
                "an ordinary request accepted as a handshake"
            );
            assert_eq!(early, None, "accepted a request that fails a check");
            if origins > 1 {
                assert!(
                    matches!(input.origin, Origin::Any),
                    "two origins let through"
                );
            }
            if input.require_protocol {
                assert!(protocol.is_some(), "required subprotocol missing");
            }
            assert_eq!(
                protocol.as_ref().map(HeaderValue::as_bytes),
                chosen.map(str::as_bytes),
                "not the server's most preferred offered subprotocol"
            );
            let rh = response.headers();
            assert_eq!(rh.get(header::SEC_WEBSOCKET_PROTOCOL), protocol.as_ref());
            if upgrade {
                assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
                let expected = accept_value(keys[0].as_bytes());
                assert_eq!(
                    rh.get(header::SEC_WEBSOCKET_ACCEPT)
                        .map(HeaderValue::as_bytes),
                    Some(expected.as_bytes()),
                    "wrong accept value"
                );
                assert!(has_token(rh, &header::UPGRADE, "websocket"));
                assert!(has_token(rh, &header::CONNECTION, "upgrade"));
            } else {
                assert_eq!(response.status(), StatusCode::OK);
                assert!(rh.get(header::SEC_WEBSOCKET_ACCEPT).is_none());
            }
            check_server_deflate(&parts.headers, input.deflate, negotiated, &response);
        }
    }
}

/// permessage-deflate in an accepted handshake: as the standalone negotiation decides, within
/// the ranges, and readable by a client.
fn check_server_deflate(
    request: &HeaderMap,
    settings: Option<Settings>,
    negotiated: Option<DeflateParams>,
    response: &http::Response<Bytes>,
) {
    let answer = response.headers().get(header::SEC_WEBSOCKET_EXTENSIONS);
    let Some(settings) = settings else {
        assert_eq!(negotiated, None, "compression without a deflate config");
        assert!(answer.is_none());
        return;
    };
    let config = settings.get();
    let offers = request.get_all(header::SEC_WEBSOCKET_EXTENSIONS);
    let alone = internals::deflate_accept(offers, &config);
    assert_eq!(
        negotiated,
        alone.as_ref().map(|(params, _)| *params),
        "the handshake and the negotiation disagree"
    );
    assert_eq!(answer, alone.as_ref().map(|(_, value)| value));
    if let Some((params, value)) = alone {
        check_accepted(params, &value, config, settings.asks());
    }
}

/// What holds for any server answer: windows in range, the server's own settings honoured, and
/// a client that can take any answer reads the same parameters from it.
pub(crate) fn check_accepted(
    params: DeflateParams,
    answer: &HeaderValue,
    config: DeflateConfig,
    asks: Asks,
) {
    assert!(
        (9..=15).contains(&params.server_max_window_bits)
            && params.server_max_window_bits <= asks.server_max_window_bits,
        "server window {} out of range",
        params.server_max_window_bits
    );
    assert!(
        (8..=15).contains(&params.client_max_window_bits),
        "client window {} out of range",
        params.client_max_window_bits
    );
    assert!(!asks.server_no_context_takeover || params.server_no_context_takeover);
    assert!(!asks.client_no_context_takeover || params.client_no_context_takeover);
    let read = internals::deflate_check_answer([answer], &DeflateConfig::default());
    if params.client_max_window_bits == 8 {
        assert!(
            read.is_err(),
            "a client window of 8 is accepted by a client"
        );
    } else {
        assert_eq!(
            read,
            Ok(Some(params)),
            "a client reads {answer:?} otherwise"
        );
    }
    check_params_work(params, config, DeflateConfig::default());
}

#[derive(Debug, Arbitrary)]
struct AnswerInput {
    nonce: [u8; 16],
    offered: Vec<u8>,
    deflate: Option<Settings>,
    headers: Vec<(Name, Value)>,
}

/// The client's checks of a 101 answer.
///
/// # Panics
///
/// When the client and the oracle disagree: a finding.
pub fn handshake_client(data: &[u8]) {
    let Ok(input) = AnswerInput::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let key = STANDARD.encode(input.nonce);
    let Ok(key_value) = HeaderValue::from_str(&key) else {
        panic!("base64 is not a header value");
    };
    let offered: Vec<Box<str>> = protocols(&input.offered)
        .into_iter()
        .map(Box::from)
        .collect();
    let deflate = input.deflate.map(Settings::get);
    let config = match deflate {
        Some(deflate) => Config::default().deflate(deflate),
        None => Config::default(),
    };
    let h = headers(&input.headers, key.as_bytes());
    let result = internals::check_101(&h, &key_value, &offered, &config);

    // The oracle: RFC 6455 section 4.1, the client's checks 2 to 6.
    let accepts = h
        .get_all(header::SEC_WEBSOCKET_ACCEPT)
        .iter()
        .collect::<Vec<_>>();
    let expected = accept_value(key.as_bytes());
    let accept_ok = matches!(accepts[..], [v] if trim(v.as_bytes()) == expected.as_bytes());
    let upgrade = elements(&h, &header::UPGRADE);
    let upgrade_ok = matches!(upgrade[..], [u] if u.eq_ignore_ascii_case(b"websocket"));
    let connection_ok = has_token(&h, &header::CONNECTION, "upgrade");
    let chosen = elements(&h, &header::SEC_WEBSOCKET_PROTOCOL);
    let protocol_ok = match chosen[..] {
        [] => true,
        [p] => offered.iter().any(|o| o.as_bytes() == p),
        _ => false,
    };
    let extensions = h.get_all(header::SEC_WEBSOCKET_EXTENSIONS);
    let (extensions_ok, expected_deflate) = match deflate {
        Some(deflate) => match internals::deflate_check_answer(extensions, &deflate) {
            Ok(params) => (true, params),
            Err(_) => (false, None),
        },
        None => (
            elements(&h, &header::SEC_WEBSOCKET_EXTENSIONS).is_empty(),
            None,
        ),
    };
    let all_ok = accept_ok && upgrade_ok && connection_ok && protocol_ok && extensions_ok;
    match result {
        Ok(negotiated) => {
            assert!(all_ok, "accepted an answer that fails a check: {h:?}");
            assert_eq!(negotiated.deflate, expected_deflate);
            if let (Some(params), Some(deflate), Some(settings)) =
                (negotiated.deflate, deflate, input.deflate)
            {
                check_answered(params, deflate, settings.asks());
            }
        }
        Err(why) => {
            assert!(
                !all_ok,
                "refused an answer that passes every check ({why}): {h:?}"
            );
        }
    }
}

/// What holds for any answer a client takes: windows in range, its own settings honoured.
pub(crate) fn check_answered(params: DeflateParams, config: DeflateConfig, asks: Asks) {
    assert!(
        (9..=15).contains(&params.client_max_window_bits)
            && params.client_max_window_bits <= asks.client_max_window_bits,
        "client window {} out of range",
        params.client_max_window_bits
    );
    assert!(
        (8..=15).contains(&params.server_max_window_bits)
            && params.server_max_window_bits <= asks.server_max_window_bits,
        "server window {} out of range",
        params.server_max_window_bits
    );
    assert!(!asks.client_no_context_takeover || params.client_no_context_takeover);
    check_params_work(params, DeflateConfig::default(), config);
}
