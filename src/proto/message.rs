//! Messages as the application sends and receives them.

use std::fmt;
use std::ops::Deref;

use bytes::Bytes;

use super::close::{CloseCode, CloseFrame};
use super::frame::OpCode;

/// Text that is known to be valid UTF-8, held in [`Bytes`] so that a received text message is
/// handed over without a copy.
///
/// [`as_str`](Self::as_str) re-checks the bytes with `simdutf8` (several GB/s) instead of using
/// an unchecked conversion: this crate keeps `unsafe` out of everything but its masking
/// kernels. An echo server never pays it; code that reads the text pays one fast pass.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Utf8Bytes(Bytes);

impl Utf8Bytes {
    /// An empty string.
    pub const fn new() -> Self {
        Self(Bytes::new())
    }

    /// Wraps a static string without copying it.
    pub const fn from_static(s: &'static str) -> Self {
        Self(Bytes::from_static(s.as_bytes()))
    }

    /// Wraps bytes that the caller has validated.
    pub(crate) fn from_validated(bytes: Bytes) -> Self {
        debug_assert!(std::str::from_utf8(&bytes).is_ok());
        Self(bytes)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Every constructor validates, so this never falls back; answering with an empty
        // string rather than panicking keeps the crate's no-panic promise unconditional.
        simdutf8::basic::from_utf8(&self.0).unwrap_or_default()
    }

    /// The text's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The underlying bytes, without a copy.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Deref for Utf8Bytes {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Utf8Bytes {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<[u8]> for Utf8Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<String> for Utf8Bytes {
    fn from(s: String) -> Self {
        Self(Bytes::from(s))
    }
}

impl From<&str> for Utf8Bytes {
    fn from(s: &str) -> Self {
        Self(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<Box<str>> for Utf8Bytes {
    fn from(s: Box<str>) -> Self {
        Self(Bytes::from(s.into_boxed_bytes()))
    }
}

impl TryFrom<Bytes> for Utf8Bytes {
    type Error = simdutf8::basic::Utf8Error;

    /// Validates `bytes` as UTF-8 and wraps them without a copy.
    fn try_from(bytes: Bytes) -> Result<Self, Self::Error> {
        simdutf8::basic::from_utf8(&bytes)?;
        Ok(Self(bytes))
    }
}

impl TryFrom<Vec<u8>> for Utf8Bytes {
    type Error = simdutf8::basic::Utf8Error;

    fn try_from(bytes: Vec<u8>) -> Result<Self, Self::Error> {
        Self::try_from(Bytes::from(bytes))
    }
}

impl From<Utf8Bytes> for Bytes {
    fn from(s: Utf8Bytes) -> Self {
        s.0
    }
}

impl PartialEq<str> for Utf8Bytes {
    fn eq(&self, other: &str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl PartialEq<&str> for Utf8Bytes {
    fn eq(&self, other: &&str) -> bool {
        self.0 == other.as_bytes()
    }
}

/// A WebSocket message.
///
/// Received text and binary payloads share the connection's read buffer: taking them costs no
/// copy. Ping and pong payloads are at most 125 bytes; a close reason at most 123.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message (valid UTF-8).
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping. The engine answers received pings itself unless told not to.
    Ping(Bytes),
    /// A pong.
    Pong(Bytes),
    /// A close frame, with its code and reason if it had any.
    Close(Option<CloseFrame>),
}

impl Message {
    /// A text message.
    pub fn text(text: impl Into<Utf8Bytes>) -> Self {
        Self::Text(text.into())
    }

    /// A binary message.
    pub fn binary(data: impl Into<Bytes>) -> Self {
        Self::Binary(data.into())
    }

    /// A ping with `payload` (at most 125 bytes).
    ///
    /// ```
    /// # use tower_ws::Message;
    /// let ping = Message::ping("are you there?");
    /// assert!(ping.is_control());
    /// ```
    pub fn ping(payload: impl Into<Bytes>) -> Self {
        Self::Ping(payload.into())
    }

    /// A pong with `payload` (at most 125 bytes).
    pub fn pong(payload: impl Into<Bytes>) -> Self {
        Self::Pong(payload.into())
    }

    /// A close frame with `code` and `reason` (at most 123 bytes).
    pub fn close(code: CloseCode, reason: impl Into<Utf8Bytes>) -> Self {
        Self::Close(Some(CloseFrame::new(code, reason)))
    }

    /// Whether this is a text message.
    pub fn is_text(&self) -> bool {
        matches!(self, Self::Text(_))
    }

    /// Whether this is a binary message.
    pub fn is_binary(&self) -> bool {
        matches!(self, Self::Binary(_))
    }

    /// Whether this is a ping, pong or close.
    pub fn is_control(&self) -> bool {
        matches!(self, Self::Ping(_) | Self::Pong(_) | Self::Close(_))
    }

    /// Whether this is a close frame.
    pub fn is_close(&self) -> bool {
        matches!(self, Self::Close(_))
    }

    /// The text, if this is a text message.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Self::Text(t) => Some(t.as_str()),
            _ => None,
        }
    }

    /// The payload bytes: text, binary, ping or pong data; for a close, the reason.
    pub fn as_payload(&self) -> &[u8] {
        match self {
            Self::Text(t) => t.as_bytes(),
            Self::Binary(b) | Self::Ping(b) | Self::Pong(b) => b,
            Self::Close(Some(frame)) => frame.reason.as_bytes(),
            Self::Close(None) => &[],
        }
    }

    /// The payload as [`Bytes`], without a copy (for a close, the reason).
    pub fn into_payload(self) -> Bytes {
        match self {
            Self::Text(t) => t.into_bytes(),
            Self::Binary(b) | Self::Ping(b) | Self::Pong(b) => b,
            Self::Close(Some(frame)) => frame.reason.into_bytes(),
            Self::Close(None) => Bytes::new(),
        }
    }
}

impl From<String> for Message {
    fn from(s: String) -> Self {
        Self::Text(s.into())
    }
}

impl From<&str> for Message {
    fn from(s: &str) -> Self {
        Self::Text(s.into())
    }
}

impl From<Utf8Bytes> for Message {
    fn from(s: Utf8Bytes) -> Self {
        Self::Text(s)
    }
}

impl From<Bytes> for Message {
    fn from(b: Bytes) -> Self {
        Self::Binary(b)
    }
}

impl From<Vec<u8>> for Message {
    fn from(b: Vec<u8>) -> Self {
        Self::Binary(b.into())
    }
}

/// One frame of an outgoing message, for sending a message in pieces with
/// [`WebSocket::send_frame`](crate::WebSocket::send_frame).
///
/// A message in pieces is a [`OpCode::Text`] or [`OpCode::Binary`] frame with `fin` unset,
/// then [`OpCode::Continuation`] frames, the last with `fin` set. Pings and pongs may go between
/// the pieces; other messages may not. Text pieces must add up to valid UTF-8.
///
/// ```
/// use tower_ws::{Config, Frame, Message, OpCode, Role, WebSocket};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower_ws::Error> {
/// let (a, b) = tokio::io::duplex(4096);
/// let mut client = WebSocket::new(a, Role::Client, Config::default());
/// let mut server = WebSocket::new(b, Role::Server, Config::default());
///
/// client.send_frame(Frame::new(OpCode::Text, "Hel").fin(false)).await?;
/// client.send_frame(Frame::new(OpCode::Ping, "between pieces")).await?;
/// client.send_frame(Frame::new(OpCode::Continuation, "lo")).await?;
///
/// assert_eq!(server.recv().await.unwrap()?, Message::ping("between pieces"));
/// assert_eq!(server.recv().await.unwrap()?, Message::text("Hello"));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub(crate) opcode: OpCode,
    pub(crate) fin: bool,
    pub(crate) payload: Bytes,
}

impl Frame {
    /// A frame with `opcode` and `payload`, with `fin` set (the last piece of its message).
    pub fn new(opcode: OpCode, payload: impl Into<Bytes>) -> Self {
        Self {
            opcode,
            fin: true,
            payload: payload.into(),
        }
    }

    /// Sets whether this is the last frame of its message.
    #[must_use]
    pub fn fin(mut self, fin: bool) -> Self {
        self.fin = fin;
        self
    }

    /// The frame's opcode.
    pub fn opcode(&self) -> OpCode {
        self.opcode
    }

    /// Whether this is the last frame of its message.
    pub fn is_fin(&self) -> bool {
        self.fin
    }

    /// The frame's payload.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_bytes_checks_on_conversion_and_shares_the_buffer() {
        let raw = Bytes::from_static("grüße".as_bytes());
        let text = Utf8Bytes::try_from(raw.clone()).unwrap();
        assert_eq!(text.as_str(), "grüße");
        assert_eq!(text.into_bytes().as_ptr(), raw.as_ptr());
        assert!(Utf8Bytes::try_from(Bytes::from_static(b"\xff")).is_err());
    }

    #[test]
    fn payload_accessors_cover_every_kind() {
        assert_eq!(Message::text("hi").as_payload(), b"hi");
        assert_eq!(
            Message::binary(vec![1, 2]).into_payload(),
            Bytes::from_static(&[1, 2])
        );
        assert_eq!(
            Message::close(CloseCode::NORMAL, "bye").as_payload(),
            b"bye"
        );
        assert_eq!(Message::Close(None).into_payload(), Bytes::new());
        assert!(Message::ping(Bytes::new()).is_control());
        assert_eq!(Message::from("x").as_text(), Some("x"));
    }
}
