//! [`HandshakeRejected`]: the server's answer to a handshake that failed.

use std::error::Error as StdError;
use std::fmt;

use bytes::Bytes;
use http::response::Parts;
use http::{HeaderMap, Response, StatusCode, Version};

/// The server's answer to an opening handshake that failed: its status, headers and the start
/// of its body.
///
/// It is the [`source`](StdError::source) of the [`Error`](crate::Error) (of kind
/// [`Handshake`](crate::ErrorKind::Handshake)) returned when the server answered but the
/// answer was not an acceptable `101 Switching Protocols`: a refusal such as `403 Forbidden`,
/// or a 101 that failed a check (the error's own message names the check).
///
/// Only the start of a refusal's body is read: at most
/// [`BODY_LIMIT`](Self::BODY_LIMIT) bytes, for at most one second, so a server cannot hold the
/// client with an endless body.
///
/// ```
/// use std::error::Error as _;
/// use tower_ws::{ClientBuilder, ErrorKind, HandshakeRejected};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (io, mut server) = tokio::io::duplex(4096);
/// tokio::spawn(async move {
///     let mut request = [0; 1024];
///     let _ = server.read(&mut request).await;
///     let answer = "HTTP/1.1 403 Forbidden\r\ncontent-length: 9\r\n\r\ngo away!\n";
///     server.write_all(answer.as_bytes()).await.unwrap();
/// });
///
/// let error = ClientBuilder::new()
///     .handshake("ws://example.com/", io)
///     .await
///     .unwrap_err();
/// assert_eq!(error.kind(), ErrorKind::Handshake);
/// let rejected = error
///     .source()
///     .and_then(|source| source.downcast_ref::<HandshakeRejected>())
///     .unwrap();
/// assert_eq!(rejected.status(), 403);
/// assert_eq!(rejected.body(), "go away!\n");
/// # }
/// ```
pub struct HandshakeRejected {
    head: Parts,
    body: Bytes,
}

impl HandshakeRejected {
    /// The most bytes of a refusal's body that are kept: 1 KiB.
    pub const BODY_LIMIT: usize = 1024;

    pub(super) fn new(head: Parts, body: Bytes) -> Self {
        Self { head, body }
    }

    /// The response status.
    pub fn status(&self) -> StatusCode {
        self.head.status
    }

    /// The response's HTTP version.
    pub fn version(&self) -> Version {
        self.head.version
    }

    /// The response headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.head.headers
    }

    /// The start of the response body: at most [`BODY_LIMIT`](Self::BODY_LIMIT) bytes, and
    /// only what arrived within one second. Empty for a 101.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The response, with the start of its body.
    pub fn into_response(self) -> Response<Bytes> {
        Response::from_parts(self.head, self.body)
    }
}

impl fmt::Debug for HandshakeRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandshakeRejected")
            .field("status", &self.head.status)
            .field("version", &self.head.version)
            .field("headers", &self.head.headers)
            .field("body", &self.body)
            .finish()
    }
}

impl fmt::Display for HandshakeRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "server answered {}", self.head.status)
    }
}

impl StdError for HandshakeRejected {}
