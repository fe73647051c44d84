//! Why the [`WebSocketUpgrade`](super::WebSocketUpgrade) extractor refused a request: axum's
//! rejections, with the same names, statuses and bodies, plus the checks axum does not make.
//!
//! Each rejection is a response (status and a one-line text body), and
//! [`WebSocketUpgradeRejection`] has one variant for each. Take
//! `Result<WebSocketUpgrade, WebSocketUpgradeRejection>` as the extractor to see why a request
//! was refused and answer it yourself.

use std::fmt;

use axum_core::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::{HeaderValue, SEC_WEBSOCKET_VERSION};

use crate::handshake::HandshakeErrorKind;

/// Defines one rejection: a unit struct with its status and body.
macro_rules! rejection {
    ($(#[$doc:meta])* $name:ident, $status:ident, $body:literal) => {
        $(#[$doc])*
        #[derive(Debug, Default)]
        #[non_exhaustive]
        pub struct $name;

        impl $name {
            /// The response body: one line saying what was wrong.
            pub fn body_text(&self) -> String {
                $body.to_owned()
            }

            /// The response status.
            pub fn status(&self) -> StatusCode {
                StatusCode::$status
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str($body)
            }
        }

        impl std::error::Error for $name {}
    };
}

/// The plain answer of a rejection: its status and body.
macro_rules! plain_response {
    ($($name:ident),+) => {
        $(
            impl IntoResponse for $name {
                fn into_response(self) -> Response {
                    (self.status(), self.body_text()).into_response()
                }
            }
        )+
    };
}

rejection!(
    /// An HTTP/1.1 handshake whose method is not `GET` (405).
    MethodNotGet,
    METHOD_NOT_ALLOWED,
    "Request method must be `GET`"
);
rejection!(
    /// An HTTP/2 request to a WebSocket route whose method is not `CONNECT` (405).
    MethodNotConnect,
    METHOD_NOT_ALLOWED,
    "Request method must be `CONNECT`"
);
rejection!(
    /// `Connection` does not hold the `upgrade` token (400).
    InvalidConnectionHeader,
    BAD_REQUEST,
    "Connection header did not include 'upgrade'"
);
rejection!(
    /// `Upgrade` does not hold the `websocket` token (400).
    InvalidUpgradeHeader,
    BAD_REQUEST,
    "`Upgrade` header did not include 'websocket'"
);
rejection!(
    /// An HTTP/2 `CONNECT` whose `:protocol` is not `websocket` (400).
    InvalidProtocolPseudoheader,
    BAD_REQUEST,
    "`:protocol` pseudo-header did not include 'websocket'"
);
rejection!(
    /// `Sec-WebSocket-Version` is missing, repeated or not 13 (400, with
    /// `Sec-WebSocket-Version: 13` as RFC 6455 section 4.4 requires).
    InvalidWebSocketVersionHeader,
    BAD_REQUEST,
    "`Sec-WebSocket-Version` header did not include '13'"
);
rejection!(
    /// No `Sec-WebSocket-Key` (400).
    WebSocketKeyHeaderMissing,
    BAD_REQUEST,
    "`Sec-WebSocket-Key` header missing"
);
rejection!(
    /// The connection cannot be upgraded (426): an HTTP/1.0 request, a request that did not
    /// come from a hyper connection serving upgrades (no upgrade handle in its extensions),
    /// or no tokio runtime to run the socket in.
    ConnectionNotUpgradable,
    UPGRADE_REQUIRED,
    "WebSocket request couldn't be upgraded since no upgrade state was present"
);
rejection!(
    /// `Sec-WebSocket-Key` is not base64 of exactly 16 bytes, as RFC 6455 requires (400).
    /// Not checked by axum.
    InvalidWebSocketKey,
    BAD_REQUEST,
    "`Sec-WebSocket-Key` header must be base64 of exactly 16 bytes"
);
rejection!(
    /// More than one `Sec-WebSocket-Key` line (400). Not checked by axum.
    RepeatedWebSocketKey,
    BAD_REQUEST,
    "`Sec-WebSocket-Key` header appears more than once"
);
rejection!(
    /// The request's `Origin` is not allowed by the
    /// [`UpgradeSettings`](super::UpgradeSettings)' [`AllowOrigin`](crate::AllowOrigin) (403):
    /// by default, a web page from another host. Not checked by axum.
    OriginNotAllowed,
    FORBIDDEN,
    "`Origin` not allowed to open a WebSocket on this server"
);
rejection!(
    /// The [`Shutdown`](crate::Shutdown) of the [`UpgradeSettings`](super::UpgradeSettings)
    /// has begun: no new sockets (503). axum has no shutdown for sockets.
    ShuttingDown,
    SERVICE_UNAVAILABLE,
    "The server is shutting down"
);

plain_response!(
    MethodNotGet,
    MethodNotConnect,
    InvalidConnectionHeader,
    InvalidUpgradeHeader,
    InvalidProtocolPseudoheader,
    WebSocketKeyHeaderMissing,
    ConnectionNotUpgradable,
    InvalidWebSocketKey,
    RepeatedWebSocketKey,
    OriginNotAllowed,
    ShuttingDown
);

impl IntoResponse for InvalidWebSocketVersionHeader {
    fn into_response(self) -> Response {
        let mut response = (self.status(), self.body_text()).into_response();
        response
            .headers_mut()
            .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        response
    }
}

/// Defines the rejection enum: one tuple variant for each rejection.
macro_rules! composite {
    ($(#[$doc:meta])* $name:ident { $($variant:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug)]
        #[non_exhaustive]
        pub enum $name {
            $(
                #[allow(missing_docs, reason = "each variant is its rejection type")]
                $variant($variant),
            )+
        }

        impl $name {
            /// The response body: one line saying what was wrong.
            pub fn body_text(&self) -> String {
                match self {
                    $(Self::$variant(inner) => inner.body_text(),)+
                }
            }

            /// The response status.
            pub fn status(&self) -> StatusCode {
                match self {
                    $(Self::$variant(inner) => inner.status(),)+
                }
            }
        }

        impl IntoResponse for $name {
            fn into_response(self) -> Response {
                tracing::debug!(
                    status = self.status().as_u16(),
                    reason = %self,
                    "websocket handshake refused"
                );
                match self {
                    $(Self::$variant(inner) => inner.into_response(),)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $(Self::$variant(inner) => fmt::Display::fmt(inner, f),)+
                }
            }
        }

        impl std::error::Error for $name {}

        $(
            impl From<$variant> for $name {
                fn from(inner: $variant) -> Self {
                    Self::$variant(inner)
                }
            }
        )+
    };
}

composite!(
    /// Every way the [`WebSocketUpgrade`](super::WebSocketUpgrade) extractor can refuse a
    /// request: axum's eight, then ours.
    WebSocketUpgradeRejection {
        MethodNotGet,
        MethodNotConnect,
        InvalidConnectionHeader,
        InvalidUpgradeHeader,
        InvalidProtocolPseudoheader,
        InvalidWebSocketVersionHeader,
        WebSocketKeyHeaderMissing,
        ConnectionNotUpgradable,
        InvalidWebSocketKey,
        RepeatedWebSocketKey,
        OriginNotAllowed,
        ShuttingDown,
    }
);

impl From<HandshakeErrorKind> for WebSocketUpgradeRejection {
    /// The rejection for what the layer's checks found.
    fn from(kind: HandshakeErrorKind) -> Self {
        match kind {
            HandshakeErrorKind::MethodNotAllowed => MethodNotGet.into(),
            HandshakeErrorKind::MissingConnectionUpgrade => InvalidConnectionHeader.into(),
            HandshakeErrorKind::UnsupportedVersion => InvalidWebSocketVersionHeader.into(),
            HandshakeErrorKind::MissingKey => WebSocketKeyHeaderMissing.into(),
            HandshakeErrorKind::RepeatedKey => RepeatedWebSocketKey.into(),
            HandshakeErrorKind::InvalidKey => InvalidWebSocketKey.into(),
            HandshakeErrorKind::OriginNotAllowed => OriginNotAllowed.into(),
            HandshakeErrorKind::ShuttingDown => ShuttingDown.into(),
            // The extractor never requires a subprotocol (`protocols` picks one or none after
            // extraction), so `NoSubprotocol` cannot arise; HTTP/1.0 and a missing upgrade
            // handle are what axum calls not upgradable.
            HandshakeErrorKind::HttpVersion
            | HandshakeErrorKind::UpgradeUnavailable
            | HandshakeErrorKind::NoSubprotocol => ConnectionNotUpgradable.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rejection_answers_with_its_status_and_text() {
        let rejection = WebSocketUpgradeRejection::from(HandshakeErrorKind::HttpVersion);
        assert!(matches!(
            rejection,
            WebSocketUpgradeRejection::ConnectionNotUpgradable(_)
        ));
        assert_eq!(rejection.status(), StatusCode::UPGRADE_REQUIRED);
        let origin = WebSocketUpgradeRejection::from(HandshakeErrorKind::OriginNotAllowed);
        assert_eq!(origin.status(), StatusCode::FORBIDDEN);
        assert_eq!(origin.to_string(), origin.body_text());
        let version = InvalidWebSocketVersionHeader.into_response();
        assert_eq!(version.status(), StatusCode::BAD_REQUEST);
        assert_eq!(version.headers()[SEC_WEBSOCKET_VERSION], "13");
    }
}
