//! Why a handshake was refused ([`HandshakeError`]).

use std::fmt;

use http::StatusCode;

/// Why the layer refused a request that asked for a WebSocket upgrade.
///
/// The default rejection ([`DefaultOnReject`](crate::DefaultOnReject)) turns it into a 4xx
/// response with a short text body, and the layer puts it in the extensions of whatever
/// rejection response is sent, so outer middleware can see it:
///
/// ```
/// use tower_ws::{HandshakeError, HandshakeErrorKind};
/// # fn inspect(response: http::Response<()>) {
/// if let Some(error) = response.extensions().get::<HandshakeError>() {
///     if error.kind() == HandshakeErrorKind::OriginNotAllowed {
///         // Count cross-site attempts, for example.
///     }
/// }
/// # }
/// # inspect(http::Response::new(()));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeError {
    kind: HandshakeErrorKind,
}

/// What was wrong with a handshake request: see [`HandshakeError::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HandshakeErrorKind {
    /// An HTTP/1.1 upgrade request whose method is not `GET` (405, with `Allow: GET`).
    MethodNotAllowed,
    /// An upgrade request over HTTP/1.0: WebSocket needs HTTP/1.1 or later (400).
    HttpVersion,
    /// `Connection` does not hold the `upgrade` token (400).
    MissingConnectionUpgrade,
    /// `Sec-WebSocket-Version` is missing, repeated or not 13 (426, with
    /// `Sec-WebSocket-Version: 13`).
    UnsupportedVersion,
    /// No `Sec-WebSocket-Key` (400).
    MissingKey,
    /// More than one `Sec-WebSocket-Key` line (400).
    RepeatedKey,
    /// `Sec-WebSocket-Key` is not base64 of exactly 16 bytes (400).
    InvalidKey,
    /// The `Origin` is not allowed by the layer's [`AllowOrigin`](crate::AllowOrigin) (403).
    OriginNotAllowed,
    /// The layer requires a subprotocol and the client offered none that it supports (400).
    NoSubprotocol,
    /// The layer's [`Shutdown`](crate::Shutdown) has begun: no new sessions (503).
    ShuttingDown,
    /// The server cannot take the connection over: the request carries no hyper upgrade handle
    /// (it did not come from a hyper connection that supports upgrades) or no tokio runtime is
    /// running (500). A server setup error, not the client's.
    UpgradeUnavailable,
}

impl HandshakeError {
    pub(crate) const fn new(kind: HandshakeErrorKind) -> Self {
        Self { kind }
    }

    /// What was wrong with the request.
    pub fn kind(&self) -> HandshakeErrorKind {
        self.kind
    }

    /// The status code the default rejection answers with.
    pub fn status(&self) -> StatusCode {
        match self.kind {
            HandshakeErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            HandshakeErrorKind::UnsupportedVersion => StatusCode::UPGRADE_REQUIRED,
            HandshakeErrorKind::OriginNotAllowed => StatusCode::FORBIDDEN,
            HandshakeErrorKind::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            HandshakeErrorKind::UpgradeUnavailable => StatusCode::INTERNAL_SERVER_ERROR,
            HandshakeErrorKind::HttpVersion
            | HandshakeErrorKind::MissingConnectionUpgrade
            | HandshakeErrorKind::MissingKey
            | HandshakeErrorKind::RepeatedKey
            | HandshakeErrorKind::InvalidKey
            | HandshakeErrorKind::NoSubprotocol => StatusCode::BAD_REQUEST,
        }
    }

    /// A short sentence for the client saying what to fix (the default rejection's body).
    pub fn reason(&self) -> &'static str {
        match self.kind {
            HandshakeErrorKind::MethodNotAllowed => "a websocket handshake must use GET",
            HandshakeErrorKind::HttpVersion => "a websocket handshake needs HTTP/1.1 or later",
            HandshakeErrorKind::MissingConnectionUpgrade => {
                "a websocket handshake needs `Connection: upgrade`"
            }
            HandshakeErrorKind::UnsupportedVersion => {
                "unsupported websocket version: Sec-WebSocket-Version must be 13"
            }
            HandshakeErrorKind::MissingKey => "missing Sec-WebSocket-Key",
            HandshakeErrorKind::RepeatedKey => "more than one Sec-WebSocket-Key",
            HandshakeErrorKind::InvalidKey => {
                "Sec-WebSocket-Key must be base64 of exactly 16 bytes"
            }
            HandshakeErrorKind::OriginNotAllowed => "origin not allowed",
            HandshakeErrorKind::NoSubprotocol => {
                "none of the offered subprotocols (Sec-WebSocket-Protocol) is supported"
            }
            HandshakeErrorKind::ShuttingDown => "the server is shutting down",
            HandshakeErrorKind::UpgradeUnavailable => "this server cannot upgrade the connection",
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "websocket handshake refused: {}", self.reason())
    }
}

impl std::error::Error for HandshakeError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_send_sync_and_static() {
        fn assert_error<E: std::error::Error + Send + Sync + 'static>() {}
        assert_error::<HandshakeError>();
    }

    #[test]
    fn display_names_what_was_wrong() {
        let e = HandshakeError::new(HandshakeErrorKind::MissingKey);
        assert_eq!(
            e.to_string(),
            "websocket handshake refused: missing Sec-WebSocket-Key"
        );
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    }
}
