//! The handshake's answers: the `101 Switching Protocols` that accepts an HTTP/1.1 upgrade,
//! and the rejections, which [`OnReject`] lets the user replace.

use bytes::Bytes;
use http::header::{
    ALLOW, CONNECTION, CONTENT_TYPE, HeaderValue, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_PROTOCOL,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{Response, StatusCode};

use super::error::{HandshakeError, HandshakeErrorKind};
use super::key::accept_value;

/// Builds the response to a handshake the layer refuses.
///
/// The layer calls it with the reason and then puts the [`HandshakeError`] in the response's
/// extensions (so it is there whatever the responder does). [`DefaultOnReject`] is used unless
/// [`UpgradeLayer::on_reject`](crate::UpgradeLayer::on_reject) sets another; any
/// `Fn(&HandshakeError) -> Response<Bytes>` closure is a responder:
///
/// ```
/// use bytes::Bytes;
/// use http::{Response, StatusCode};
/// use tower_ws::{DefaultOnReject, HandshakeError, HandshakeErrorKind, OnReject, Session};
/// use tower_ws::{UpgradeLayer, handler_fn};
///
/// // Hide why an origin was refused; keep the default answer for everything else.
/// let responder = |error: &HandshakeError| match error.kind() {
///     HandshakeErrorKind::OriginNotAllowed => {
///         let mut response = Response::new(Bytes::new());
///         *response.status_mut() = StatusCode::NOT_FOUND;
///         response
///     }
///     _ => DefaultOnReject.on_reject(error),
/// };
/// let layer = UpgradeLayer::new(handler_fn(|_: Session| async {})).on_reject(responder);
/// # let _ = layer;
/// ```
pub trait OnReject: Send + Sync + 'static {
    /// The response to a refused handshake.
    fn on_reject(&self, error: &HandshakeError) -> Response<Bytes>;
}

impl<F> OnReject for F
where
    F: Fn(&HandshakeError) -> Response<Bytes> + Send + Sync + 'static,
{
    fn on_reject(&self, error: &HandshakeError) -> Response<Bytes> {
        self(error)
    }
}

/// The default rejection: the error's [status](HandshakeError::status) and a one-line text body
/// saying what to fix ([`HandshakeError::reason`]).
///
/// A wrong method adds `Allow: GET`; an unsupported version adds `Sec-WebSocket-Version: 13`
/// and `Upgrade: websocket`, as RFC 6455 section 4.4 and the 426 status require.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultOnReject;

impl OnReject for DefaultOnReject {
    fn on_reject(&self, error: &HandshakeError) -> Response<Bytes> {
        let mut body = String::with_capacity(error.reason().len() + 1);
        body.push_str(error.reason());
        body.push('\n');
        let mut response = Response::new(Bytes::from(body));
        *response.status_mut() = error.status();
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        match error.kind() {
            HandshakeErrorKind::MethodNotAllowed => {
                headers.insert(ALLOW, HeaderValue::from_static("GET"));
            }
            HandshakeErrorKind::UnsupportedVersion => {
                headers.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
                headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
            }
            _ => {}
        }
        response
    }
}

/// `101 Switching Protocols` for an HTTP/1.1 handshake with `key`.
pub(crate) fn switching_protocols(
    key: &HeaderValue,
    protocol: Option<HeaderValue>,
) -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(SEC_WEBSOCKET_ACCEPT, accept_value(key.as_bytes()));
    if let Some(protocol) = protocol {
        headers.insert(SEC_WEBSOCKET_PROTOCOL, protocol);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switching_protocols_carries_the_accept_value_and_protocol() {
        let key = HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ==");
        let response = switching_protocols(&key, Some(HeaderValue::from_static("chat")));
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        let headers = response.headers();
        assert_eq!(
            headers[SEC_WEBSOCKET_ACCEPT],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(headers[UPGRADE], "websocket");
        assert_eq!(headers[CONNECTION], "upgrade");
        assert_eq!(headers[SEC_WEBSOCKET_PROTOCOL], "chat");
    }

    #[test]
    fn default_rejection_adds_the_headers_each_status_needs() {
        let version =
            DefaultOnReject.on_reject(&HandshakeError::new(HandshakeErrorKind::UnsupportedVersion));
        assert_eq!(version.status(), StatusCode::UPGRADE_REQUIRED);
        assert_eq!(version.headers()[SEC_WEBSOCKET_VERSION], "13");

        let method =
            DefaultOnReject.on_reject(&HandshakeError::new(HandshakeErrorKind::MethodNotAllowed));
        assert_eq!(method.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(method.headers()[ALLOW], "GET");

        let key = DefaultOnReject.on_reject(&HandshakeError::new(HandshakeErrorKind::InvalidKey));
        assert_eq!(key.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            key.body(),
            "Sec-WebSocket-Key must be base64 of exactly 16 bytes\n"
        );
    }
}
