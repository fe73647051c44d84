//! The HTTP side of the opening handshake: deciding whether a request asks for a WebSocket,
//! checking it, and building the answer. Pure functions over the request head; no IO.
//!
//! A request *asks for a WebSocket* when it is an HTTP/1.x request whose `Upgrade` header holds
//! the token `websocket` (in any case), or, with the `http2` feature, an HTTP/2 extended
//! CONNECT whose `:protocol` is `websocket` (RFC 8441). Everything else is not a handshake and
//! goes to the inner service. A handshake that fails a check gets a 4xx (see
//! [`HandshakeErrorKind`]), never a 101.

// Network input is parsed here: no panicking shortcuts outside tests.
#![cfg_attr(
    not(test),
    warn(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

#[cfg(feature = "deflate")]
pub(crate) mod deflate;
mod error;
#[cfg(feature = "http2")]
mod h2;
pub(crate) mod headers;
pub(crate) mod key;
mod policy;
mod response;

use bytes::Bytes;
use http::header::{CONNECTION, HeaderValue, SEC_WEBSOCKET_KEY, UPGRADE};
use http::request::Parts;
use http::{Method, Response, Version};

pub use error::{HandshakeError, HandshakeErrorKind};
pub use policy::{AllowOrigin, Protocols};
pub use response::{DefaultOnReject, OnReject};

use headers::{Single, has_token, is_version_13, single};

/// The server's handshake rules, from the layer's settings.
#[derive(Debug, Clone, Default)]
pub(crate) struct Rules {
    pub(crate) protocols: Protocols,
    pub(crate) require_protocol: bool,
    pub(crate) origin: AllowOrigin,
    /// permessage-deflate settings, when the layer's engine config turns compression on.
    #[cfg(feature = "deflate")]
    pub(crate) deflate: Option<crate::proto::DeflateConfig>,
    /// Requests for which compression is declined even when offered.
    #[cfg(feature = "deflate")]
    pub(crate) decline_deflate: Option<DeclineDeflate>,
}

/// A predicate over the request head that declines permessage-deflate (for user agents known to
/// mishandle it).
#[cfg(feature = "deflate")]
#[derive(Clone)]
pub(crate) struct DeclineDeflate(pub(crate) std::sync::Arc<dyn Fn(&Parts) -> bool + Send + Sync>);

#[cfg(feature = "deflate")]
impl std::fmt::Debug for DeclineDeflate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeclineDeflate(..)")
    }
}

/// What to do with a request.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Not a WebSocket handshake: the inner service's business.
    NotWebSocket,
    /// A handshake that fails a check.
    Reject(HandshakeError),
    /// A valid handshake: send `response`, then take the connection over.
    Accept(Accepted),
}

/// An accepted handshake.
#[derive(Debug)]
pub(crate) struct Accepted {
    /// `101 Switching Protocols` (HTTP/1.1) or `200 OK` (HTTP/2).
    pub(crate) response: Response<Bytes>,
    /// The chosen subprotocol.
    pub(crate) protocol: Option<HeaderValue>,
    /// permessage-deflate, if negotiated.
    #[cfg(feature = "deflate")]
    pub(crate) deflate: Option<crate::proto::DeflateParams>,
}

/// Classifies a request head under `rules`.
pub(crate) fn classify(parts: &Parts, rules: &Rules) -> Outcome {
    match check(parts, rules) {
        Ok(Some(accepted)) => Outcome::Accept(accepted),
        Ok(None) => Outcome::NotWebSocket,
        Err(kind) => Outcome::Reject(HandshakeError::new(kind)),
    }
}

fn check(parts: &Parts, rules: &Rules) -> Result<Option<Accepted>, HandshakeErrorKind> {
    let Some(valid) = validate(parts, &rules.origin)? else {
        return Ok(None);
    };
    let protocol = rules.protocols.select(parts);
    if protocol.is_none() && rules.require_protocol {
        return Err(HandshakeErrorKind::NoSubprotocol);
    }
    #[cfg_attr(
        not(feature = "deflate"),
        expect(unused_mut, reason = "only deflate adds headers")
    )]
    let mut response = accept_response(valid.key, protocol.clone());
    #[cfg(feature = "deflate")]
    let deflate = negotiate_deflate(parts, rules).map(|accepted| {
        response
            .headers_mut()
            .insert(http::header::SEC_WEBSOCKET_EXTENSIONS, accepted.response);
        accepted.params
    });
    Ok(Some(Accepted {
        response,
        protocol,
        #[cfg(feature = "deflate")]
        deflate,
    }))
}

/// A request that passed every check of a WebSocket handshake: what its answer needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Valid<'a> {
    /// `Sec-WebSocket-Key` of an HTTP/1.1 upgrade; `None` for an HTTP/2 extended CONNECT.
    pub(crate) key: Option<&'a HeaderValue>,
}

/// Checks a request that asks for a WebSocket against RFC 6455 (or RFC 8441) and the origin
/// policy: `Ok(None)` when it does not ask for one.
pub(crate) fn validate<'a>(
    parts: &'a Parts,
    origin: &AllowOrigin,
) -> Result<Option<Valid<'a>>, HandshakeErrorKind> {
    let key = if is_upgrade_request(parts) {
        if parts.version < Version::HTTP_11 {
            return Err(HandshakeErrorKind::HttpVersion);
        }
        if parts.method != Method::GET {
            return Err(HandshakeErrorKind::MethodNotAllowed);
        }
        if !has_connection_upgrade(parts) {
            return Err(HandshakeErrorKind::MissingConnectionUpgrade);
        }
        if !is_version_13(&parts.headers) {
            return Err(HandshakeErrorKind::UnsupportedVersion);
        }
        match single(&parts.headers, &SEC_WEBSOCKET_KEY) {
            Single::Missing => return Err(HandshakeErrorKind::MissingKey),
            Single::Repeated => return Err(HandshakeErrorKind::RepeatedKey),
            Single::One(key) if key::is_valid_key(key.as_bytes()) => Some(key),
            Single::One(_) => return Err(HandshakeErrorKind::InvalidKey),
        }
    } else if is_extended_connect(parts) {
        if !is_version_13(&parts.headers) {
            return Err(HandshakeErrorKind::UnsupportedVersion);
        }
        None
    } else {
        return Ok(None);
    };
    if !origin.allows(parts) {
        return Err(HandshakeErrorKind::OriginNotAllowed);
    }
    Ok(Some(Valid { key }))
}

/// The answer that accepts a valid handshake: `101 Switching Protocols` with the accept value
/// of `key` (HTTP/1.1), or `200 OK` (HTTP/2, no key), naming `protocol` if one was chosen.
pub(crate) fn accept_response(
    key: Option<&HeaderValue>,
    protocol: Option<HeaderValue>,
) -> Response<Bytes> {
    match key {
        Some(key) => response::switching_protocols(key, protocol),
        None => connect_response(protocol),
    }
}

/// Whether `Connection` holds the `upgrade` token.
pub(crate) fn has_connection_upgrade(parts: &Parts) -> bool {
    has_token(&parts.headers, &CONNECTION, "upgrade")
}

/// permessage-deflate for this request: the first offer the layer's settings can honour, unless
/// compression is off or declined for this request.
#[cfg(feature = "deflate")]
fn negotiate_deflate(parts: &Parts, rules: &Rules) -> Option<deflate::Accepted> {
    let config = rules.deflate.as_ref()?;
    if rules
        .decline_deflate
        .as_ref()
        .is_some_and(|decline| (decline.0)(parts))
    {
        return None;
    }
    deflate::accept(
        parts
            .headers
            .get_all(http::header::SEC_WEBSOCKET_EXTENSIONS),
        config,
    )
}

/// An HTTP/1.x request with `Upgrade: websocket`.
pub(crate) fn is_upgrade_request(parts: &Parts) -> bool {
    parts.version < Version::HTTP_2 && has_token(&parts.headers, &UPGRADE, "websocket")
}

#[cfg(feature = "http2")]
pub(crate) fn is_extended_connect(parts: &Parts) -> bool {
    h2::is_extended_connect(parts)
}

#[cfg(not(feature = "http2"))]
pub(crate) fn is_extended_connect(_: &Parts) -> bool {
    false
}

#[cfg(feature = "http2")]
fn connect_response(protocol: Option<HeaderValue>) -> Response<Bytes> {
    h2::connect_ok(protocol)
}

#[cfg(not(feature = "http2"))]
fn connect_response(_: Option<HeaderValue>) -> Response<Bytes> {
    // Unreachable: without the feature no request is an extended CONNECT.
    Response::new(Bytes::new())
}

#[cfg(test)]
mod tests {
    use http::Request;
    use http::header::SEC_WEBSOCKET_ACCEPT;

    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn request(lines: &[(&str, &str)]) -> http::request::Builder {
        let mut builder = Request::get("/ws");
        for (name, value) in lines {
            builder = builder.header(*name, *value);
        }
        builder
    }

    fn handshake() -> http::request::Builder {
        request(&[
            ("host", "example.com"),
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", KEY),
        ])
    }

    fn outcome(builder: http::request::Builder, rules: &Rules) -> Outcome {
        classify(&builder.body(()).unwrap().into_parts().0, rules)
    }

    fn rejected(builder: http::request::Builder) -> Option<HandshakeErrorKind> {
        match outcome(builder, &Rules::default()) {
            Outcome::Reject(e) => Some(e.kind()),
            _ => None,
        }
    }

    #[test]
    fn a_valid_handshake_is_accepted_with_the_rfc_accept_value() {
        let Outcome::Accept(accepted) = outcome(handshake(), &Rules::default()) else {
            panic!("not accepted");
        };
        assert_eq!(
            accepted.response.headers()[SEC_WEBSOCKET_ACCEPT],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(accepted.protocol, None);
    }

    #[test]
    fn requests_without_upgrade_websocket_are_not_handshakes() {
        assert!(matches!(
            outcome(request(&[("connection", "upgrade")]), &Rules::default()),
            Outcome::NotWebSocket
        ));
        assert!(matches!(
            outcome(request(&[("upgrade", "h2c")]), &Rules::default()),
            Outcome::NotWebSocket
        ));
    }

    #[test]
    fn each_rule_has_its_own_rejection() {
        use HandshakeErrorKind as K;
        assert_eq!(
            rejected(handshake().method("POST")),
            Some(K::MethodNotAllowed)
        );
        assert_eq!(
            rejected(handshake().version(Version::HTTP_10)),
            Some(K::HttpVersion)
        );
        let mut no_connection = handshake().body(()).unwrap();
        no_connection.headers_mut().remove(CONNECTION);
        assert!(matches!(
            classify(&no_connection.into_parts().0, &Rules::default()),
            Outcome::Reject(e) if e.kind() == K::MissingConnectionUpgrade
        ));
        assert_eq!(
            rejected(handshake().header("sec-websocket-version", "8")),
            Some(K::UnsupportedVersion)
        );
        assert_eq!(
            rejected(handshake().header("sec-websocket-key", KEY)),
            Some(K::RepeatedKey)
        );
        assert_eq!(
            rejected(request(&[
                ("connection", "upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-version", "13"),
            ])),
            Some(K::MissingKey)
        );
        assert_eq!(
            rejected(request(&[
                ("connection", "upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-version", "13"),
                ("sec-websocket-key", "c2hvcnQ="),
            ])),
            Some(K::InvalidKey)
        );
        assert_eq!(
            rejected(handshake().header("origin", "https://evil.com")),
            Some(K::OriginNotAllowed)
        );
    }

    #[test]
    fn a_required_protocol_that_is_not_offered_is_refused() {
        let rules = Rules {
            protocols: Protocols::new(["chat"]).unwrap(),
            require_protocol: true,
            ..Rules::default()
        };
        assert!(matches!(
            outcome(handshake(), &rules),
            Outcome::Reject(e) if e.kind() == HandshakeErrorKind::NoSubprotocol
        ));
        let Outcome::Accept(accepted) =
            outcome(handshake().header("sec-websocket-protocol", "chat"), &rules)
        else {
            panic!("not accepted");
        };
        assert_eq!(accepted.protocol.unwrap(), "chat");
    }
}
