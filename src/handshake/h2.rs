//! WebSocket sessions over HTTP/2 (RFC 8441): an extended CONNECT whose `:protocol` is `websocket`,
//! answered with `200` and no key exchange; the stream then carries the WebSocket frames.
//!
//! hyper exposes `:protocol` as the [`hyper::ext::Protocol`] request extension, on servers
//! that advertise `SETTINGS_ENABLE_CONNECT_PROTOCOL` (hyper-util's auto builder:
//! `builder.http2().enable_connect_protocol()`; hyper's `http2::Builder` has the same method).

use bytes::Bytes;
use http::header::{HeaderValue, SEC_WEBSOCKET_PROTOCOL};
use http::request::Parts;
use http::{Method, Response, StatusCode, Version};

/// Whether the request is an RFC 8441 extended CONNECT for a WebSocket.
pub(crate) fn is_extended_connect(parts: &Parts) -> bool {
    parts.version == Version::HTTP_2
        && parts.method == Method::CONNECT
        && parts
            .extensions
            .get::<hyper::ext::Protocol>()
            .is_some_and(|protocol| protocol.as_str().eq_ignore_ascii_case("websocket"))
}

/// `200 OK` accepting an extended CONNECT: no `Sec-WebSocket-Accept` (RFC 8441 section 5) and
/// no content length (the stream stays open for frames).
pub(crate) fn connect_ok(protocol: Option<HeaderValue>) -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = StatusCode::OK;
    if let Some(protocol) = protocol {
        response
            .headers_mut()
            .insert(SEC_WEBSOCKET_PROTOCOL, protocol);
    }
    response
}

#[cfg(test)]
mod tests {
    use http::Request;

    use super::*;

    fn connect(protocol: Option<&'static str>, version: Version) -> Parts {
        let mut request = Request::builder()
            .method(Method::CONNECT)
            .version(version)
            .uri("https://example.com/ws")
            .body(())
            .unwrap();
        if let Some(protocol) = protocol {
            request
                .extensions_mut()
                .insert(hyper::ext::Protocol::from_static(protocol));
        }
        request.into_parts().0
    }

    #[test]
    fn only_an_http2_connect_with_protocol_websocket_is_a_handshake() {
        assert!(is_extended_connect(&connect(
            Some("websocket"),
            Version::HTTP_2
        )));
        assert!(!is_extended_connect(&connect(None, Version::HTTP_2)));
        assert!(!is_extended_connect(&connect(
            Some("webtransport"),
            Version::HTTP_2
        )));
        assert!(!is_extended_connect(&connect(
            Some("websocket"),
            Version::HTTP_11
        )));
    }
}
