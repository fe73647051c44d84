//! The crate's error type.

use std::error::Error as StdError;
use std::fmt;
use std::io;

use crate::proto::CloseCode;

/// A boxed error from a source we do not name.
pub(crate) type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error from a WebSocket connection.
///
/// Opaque and pointer-sized: ask it what happened with [`kind`](Self::kind), which close code was
/// sent to the peer with [`close_code`](Self::close_code), and which protocol rule was broken
/// with [`protocol_error`](Self::protocol_error). The underlying IO or handshake error, if any, is
/// its [`source`](StdError::source).
///
/// A normal close handshake is not an error: the message stream simply ends.
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    protocol: Option<ProtocolError>,
    close_code: Option<CloseCode>,
    context: Option<&'static str>,
    source: Option<BoxError>,
}

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Reading from or writing to the transport failed, the peer dropped the connection
    /// without a close frame, or (client side) the TCP connection could not be opened.
    Io,
    /// The peer broke a rule of RFC 6455; the connection was failed with close code 1002.
    Protocol,
    /// The peer sent text that is not UTF-8; the connection was failed with close code 1007.
    InvalidUtf8,
    /// A frame or message exceeded a configured limit; the connection was failed with 1009.
    TooLarge,
    /// The connection is closed (or closing): nothing more can be sent.
    Closed,
    /// The peer did not answer in time: a close handshake or a keepalive ping timed out, or
    /// (client side) connecting or the opening handshake took longer than allowed.
    Timeout,
    /// A message the application asked to send cannot be sent as given (for example a ping
    /// payload over 125 bytes). The connection is unaffected.
    InvalidMessage,
    /// The opening handshake failed (client side): the transport could not be reached, the
    /// server refused the upgrade, or its answer broke RFC 6455. When the server answered, the
    /// error's [`source`](StdError::source) is a `HandshakeRejected` (feature `client`) holding
    /// the status, the headers and the start of the body.
    Handshake,
    /// The peer is not reading and the write queue is full: the message was refused, or the
    /// connection closed, as [`Config::backpressure`](crate::Config::backpressure) says.
    Backpressure,
}

/// The RFC 6455 rule a peer broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProtocolError {
    /// RSV bits that no negotiated extension uses were set (the bits, RSV1 as `0b100`).
    ReservedBits(u8),
    /// A reserved opcode was used.
    ReservedOpCode(u8),
    /// A control frame did not have FIN set.
    FragmentedControlFrame,
    /// A control frame carried more than 125 bytes.
    ControlFrameTooLong,
    /// A client sent an unmasked frame.
    UnmaskedFrameFromClient,
    /// A server sent a masked frame.
    MaskedFrameFromServer,
    /// A 64-bit payload length had its most significant bit set.
    PayloadLengthTopBit,
    /// A continuation frame arrived with no fragmented message in progress.
    UnexpectedContinuation,
    /// A new text or binary frame arrived while a fragmented message was in progress.
    ExpectedContinuation,
    /// A close frame carried a one-byte payload.
    ClosePayloadTooShort,
    /// A close frame carried a code that may not appear on the wire.
    InvalidCloseCode(u16),
    /// A close frame's reason was not UTF-8.
    InvalidCloseReason,
    /// A text message was not UTF-8.
    InvalidUtf8,
    /// A frame announced a payload larger than the configured frame limit.
    FrameTooLarge {
        /// The announced payload length.
        size: u64,
        /// The configured limit.
        limit: u64,
    },
    /// A message grew larger than the configured message limit.
    MessageTooLarge {
        /// The size the message would reach.
        size: u64,
        /// The configured limit.
        limit: u64,
    },
    /// A control frame had RSV1 (compression) set.
    CompressedControlFrame,
    /// A continuation frame had RSV1 (compression) set: only a message's first frame may.
    CompressedContinuation,
    /// A compressed message could not be decompressed.
    InvalidCompressedData,
}

impl ProtocolError {
    /// The close code the connection is failed with for this violation.
    pub fn close_code(self) -> CloseCode {
        match self {
            Self::InvalidUtf8 | Self::InvalidCloseReason => CloseCode::INVALID_PAYLOAD,
            Self::FrameTooLarge { .. } | Self::MessageTooLarge { .. } => CloseCode::MESSAGE_TOO_BIG,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }

    fn kind(self) -> ErrorKind {
        match self.close_code() {
            CloseCode::INVALID_PAYLOAD => ErrorKind::InvalidUtf8,
            CloseCode::MESSAGE_TOO_BIG => ErrorKind::TooLarge,
            _ => ErrorKind::Protocol,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::ReservedBits(bits) => {
                write!(
                    f,
                    "reserved bits {bits:03b} set without a negotiated extension"
                )
            }
            Self::ReservedOpCode(op) => write!(f, "reserved opcode {op:#x}"),
            Self::FragmentedControlFrame => f.write_str("fragmented control frame"),
            Self::ControlFrameTooLong => f.write_str("control frame payload over 125 bytes"),
            Self::UnmaskedFrameFromClient => f.write_str("unmasked frame from a client"),
            Self::MaskedFrameFromServer => f.write_str("masked frame from a server"),
            Self::PayloadLengthTopBit => {
                f.write_str("64-bit payload length with the most significant bit set")
            }
            Self::UnexpectedContinuation => {
                f.write_str("continuation frame with no message in progress")
            }
            Self::ExpectedContinuation => f.write_str("new data frame inside a fragmented message"),
            Self::ClosePayloadTooShort => f.write_str("close frame with a one-byte payload"),
            Self::InvalidCloseCode(code) => {
                write!(f, "close code {code} is not allowed on the wire")
            }
            Self::InvalidCloseReason => f.write_str("close reason is not valid utf-8"),
            Self::InvalidUtf8 => f.write_str("text message is not valid utf-8"),
            Self::FrameTooLarge { size, limit } => {
                write!(
                    f,
                    "frame of {size} bytes exceeds the frame size limit of {limit}"
                )
            }
            Self::MessageTooLarge { size, limit } => {
                write!(
                    f,
                    "message of {size} bytes exceeds the message size limit of {limit}"
                )
            }
            Self::CompressedControlFrame => {
                f.write_str("control frame with the compression bit set")
            }
            Self::CompressedContinuation => {
                f.write_str("continuation frame with the compression bit set")
            }
            Self::InvalidCompressedData => f.write_str("compressed message could not be inflated"),
        }
    }
}

impl Error {
    fn new(kind: ErrorKind) -> Self {
        Self {
            inner: Box::new(Inner {
                kind,
                protocol: None,
                close_code: None,
                context: None,
                source: None,
            }),
        }
    }

    /// The peer broke `rule`; the connection was failed with the rule's close code.
    pub(crate) fn protocol(rule: ProtocolError) -> Self {
        let mut e = Self::new(rule.kind());
        e.inner.protocol = Some(rule);
        e.inner.close_code = Some(rule.close_code());
        e
    }

    pub(crate) fn io(err: io::Error) -> Self {
        Self::new(ErrorKind::Io).with_source(err)
    }

    /// The peer closed the transport without a close frame.
    pub(crate) fn abrupt_eof() -> Self {
        Self::new(ErrorKind::Io)
            .with_context("connection closed without a close frame")
            .with_source(io::Error::from(io::ErrorKind::UnexpectedEof))
    }

    pub(crate) fn closed() -> Self {
        Self::new(ErrorKind::Closed).with_context("connection is closed")
    }

    pub(crate) fn timeout(what: &'static str) -> Self {
        Self::new(ErrorKind::Timeout).with_context(what)
    }

    pub(crate) fn backpressure() -> Self {
        Self::new(ErrorKind::Backpressure)
            .with_context("the peer is not reading: the write queue is over its high-water mark")
    }

    pub(crate) fn invalid_message(what: &'static str) -> Self {
        Self::new(ErrorKind::InvalidMessage).with_context(what)
    }

    /// The opening handshake failed for the reason `what`; add the server's answer or the
    /// transport's error as the source.
    #[cfg_attr(
        not(any(test, feature = "client")),
        expect(
            dead_code,
            reason = "only the client performs a handshake that can fail"
        )
    )]
    pub(crate) fn handshake(what: &'static str) -> Self {
        Self::new(ErrorKind::Handshake).with_context(what)
    }

    pub(crate) fn with_context(mut self, context: &'static str) -> Self {
        self.inner.context = Some(context);
        self
    }

    pub(crate) fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.inner.source = Some(source.into());
        self
    }

    /// Records the close code that was sent to the peer because of this error.
    pub(crate) fn with_close_code(mut self, code: CloseCode) -> Self {
        self.inner.close_code = Some(code);
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The close code this endpoint sent (or tried to send) when it failed the connection.
    pub fn close_code(&self) -> Option<CloseCode> {
        self.inner.close_code
    }

    /// The protocol rule the peer broke, for protocol, UTF-8 and size errors.
    pub fn protocol_error(&self) -> Option<ProtocolError> {
        self.inner.protocol
    }

    /// Whether the transport failed (see [`ErrorKind::Io`]).
    pub fn is_io(&self) -> bool {
        self.inner.kind == ErrorKind::Io
    }

    /// Whether the connection was already closed (see [`ErrorKind::Closed`]).
    pub fn is_closed(&self) -> bool {
        self.inner.kind == ErrorKind::Closed
    }

    /// Whether the peer broke the protocol, sent invalid UTF-8 or exceeded a limit.
    pub fn is_protocol(&self) -> bool {
        self.inner.protocol.is_some()
    }

    /// Whether the peer did not answer in time (see [`ErrorKind::Timeout`]).
    pub fn is_timeout(&self) -> bool {
        self.inner.kind == ErrorKind::Timeout
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("tower_ws::Error");
        d.field("kind", &self.inner.kind);
        if let Some(rule) = &self.inner.protocol {
            d.field("protocol", rule);
        }
        if let Some(code) = &self.inner.close_code {
            d.field("close_code", code);
        }
        if let Some(context) = &self.inner.context {
            d.field("context", context);
        }
        if let Some(source) = &self.inner.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.inner.protocol, self.inner.context) {
            (Some(rule), _) => write!(f, "{rule}")?,
            (None, Some(context)) => f.write_str(context)?,
            (None, None) => f.write_str(match self.inner.kind {
                ErrorKind::Io => "i/o error",
                ErrorKind::Closed => "connection is closed",
                ErrorKind::Timeout => "timed out",
                ErrorKind::Handshake => "handshake failed",
                _ => "websocket error",
            })?,
        }
        if let Some(code) = self.inner.close_code {
            write!(f, " (sent close {code})")?;
        }
        Ok(())
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.inner
            .source
            .as_ref()
            .map(|e| &**e as &(dyn StdError + 'static))
    }
}

/// A setting that cannot work, refused when it is set rather than when it is used.
///
/// For example a subprotocol that is not an HTTP token, an origin that is not a URL origin, or
/// an extra client header that the handshake itself must set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    what: &'static str,
    value: Box<str>,
}

impl ConfigError {
    pub(crate) fn new(what: &'static str, value: impl Into<Box<str>>) -> Self {
        Self {
            what,
            value: value.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {:?}", self.what, self.value)
    }
}

impl StdError for ConfigError {}

impl From<io::Error> for Error {
    fn from(err: io::Error) -> Self {
        Self::io(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_send_sync_static_and_pointer_sized() {
        fn assert_bounds<T: Send + Sync + 'static>() {}
        assert_bounds::<Error>();
        assert_eq!(std::mem::size_of::<Error>(), std::mem::size_of::<usize>());
    }

    #[test]
    fn display_names_the_rule_and_the_code_sent() {
        let e = Error::protocol(ProtocolError::UnexpectedContinuation);
        assert_eq!(e.kind(), ErrorKind::Protocol);
        assert_eq!(e.close_code(), Some(CloseCode::PROTOCOL_ERROR));
        assert_eq!(
            e.to_string(),
            "continuation frame with no message in progress (sent close 1002)"
        );
        let e = Error::protocol(ProtocolError::InvalidUtf8);
        assert_eq!(
            (e.kind(), e.close_code()),
            (ErrorKind::InvalidUtf8, Some(CloseCode::INVALID_PAYLOAD))
        );
        let e = Error::protocol(ProtocolError::MessageTooLarge { size: 10, limit: 5 });
        assert_eq!(e.kind(), ErrorKind::TooLarge);
        assert_eq!(
            e.to_string(),
            "message of 10 bytes exceeds the message size limit of 5 (sent close 1009)"
        );
    }

    #[test]
    fn handshake_errors_name_the_check_and_keep_the_answer_as_source() {
        let answer = io::Error::other("403 Forbidden");
        let e = Error::handshake("server refused the upgrade").with_source(answer);
        assert_eq!(e.kind(), ErrorKind::Handshake);
        assert_eq!(e.close_code(), None);
        assert_eq!(e.to_string(), "server refused the upgrade");
        assert_eq!(e.source().unwrap().to_string(), "403 Forbidden");
    }

    #[test]
    fn config_errors_quote_the_refused_value() {
        let e = ConfigError::new("subprotocol is not an HTTP token", "a b");
        assert_eq!(e.to_string(), r#"subprotocol is not an HTTP token: "a b""#);
    }

    #[test]
    fn io_errors_keep_their_source_and_do_not_repeat_it() {
        let e = Error::io(io::Error::new(io::ErrorKind::BrokenPipe, "pipe gone"));
        assert!(e.is_io());
        assert_eq!(e.to_string(), "i/o error");
        assert_eq!(e.source().unwrap().to_string(), "pipe gone");
    }
}
