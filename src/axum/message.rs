//! axum's message types: [`Message`], [`Utf8Bytes`], [`CloseFrame`], [`CloseCode`] and the
//! [`close_code`](super::close_code) constants, each a thin shell over this crate's own types
//! so that converting between the two never copies a payload.

use std::fmt;
use std::ops::Deref;

use axum_core::Error;
use bytes::Bytes;

use crate::proto;

/// Text known to be valid UTF-8, held in [`Bytes`]: axum's `Utf8Bytes`, over
/// [`tower_ws::Utf8Bytes`](crate::Utf8Bytes) (`From` both ways, without a copy).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Utf8Bytes(proto::Utf8Bytes);

impl Utf8Bytes {
    /// Wraps a static string without copying it.
    #[must_use]
    pub const fn from_static(text: &'static str) -> Self {
        Self(proto::Utf8Bytes::from_static(text))
    }

    /// The text.
    #[inline]
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl Deref for Utf8Bytes {
    type Target = str;

    #[inline]
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<Bytes> for Utf8Bytes {
    type Error = std::str::Utf8Error;

    /// Checks that `bytes` are UTF-8 and wraps them without a copy.
    fn try_from(bytes: Bytes) -> Result<Self, Self::Error> {
        std::str::from_utf8(&bytes)?;
        Ok(Self(proto::Utf8Bytes::from_validated(bytes)))
    }
}

impl TryFrom<Vec<u8>> for Utf8Bytes {
    type Error = std::str::Utf8Error;

    fn try_from(bytes: Vec<u8>) -> Result<Self, Self::Error> {
        Self::try_from(Bytes::from(bytes))
    }
}

impl From<String> for Utf8Bytes {
    fn from(text: String) -> Self {
        Self(text.into())
    }
}

impl From<&str> for Utf8Bytes {
    fn from(text: &str) -> Self {
        Self(text.into())
    }
}

impl From<&String> for Utf8Bytes {
    fn from(text: &String) -> Self {
        Self(text.as_str().into())
    }
}

impl From<Utf8Bytes> for Bytes {
    fn from(text: Utf8Bytes) -> Self {
        text.0.into_bytes()
    }
}

impl From<proto::Utf8Bytes> for Utf8Bytes {
    #[inline]
    fn from(text: proto::Utf8Bytes) -> Self {
        Self(text)
    }
}

impl From<Utf8Bytes> for proto::Utf8Bytes {
    #[inline]
    fn from(text: Utf8Bytes) -> Self {
        text.0
    }
}

impl<T> PartialEq<T> for Utf8Bytes
where
    for<'a> &'a str: PartialEq<T>,
{
    /// Compares the text with anything a `&str` compares with: `&str`, `String`, `&String`,
    /// `Cow<str>`.
    fn eq(&self, other: &T) -> bool {
        self.as_str() == *other
    }
}

/// A close status code, as a plain number (axum's alias). The named codes are in
/// [`close_code`](super::close_code); [`tower_ws::CloseCode`](crate::CloseCode) converts from
/// and into `u16`.
pub type CloseCode = u16;

/// The code and reason of a close frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code.
    pub code: CloseCode,
    /// Why the connection is closing: at most 123 bytes, or sending the frame fails.
    pub reason: Utf8Bytes,
}

impl From<proto::CloseFrame> for CloseFrame {
    #[inline]
    fn from(frame: proto::CloseFrame) -> Self {
        Self {
            code: frame.code.as_u16(),
            reason: frame.reason.into(),
        }
    }
}

impl From<CloseFrame> for proto::CloseFrame {
    #[inline]
    fn from(frame: CloseFrame) -> Self {
        Self::new(proto::CloseCode::from(frame.code), frame.reason.0)
    }
}

/// A WebSocket message, as axum's `extract::ws` has it.
///
/// Converts from and into [`tower_ws::Message`](crate::Message) (same variants) without
/// copying the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message.
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping (payload at most 125 bytes). Received pings are answered with a pong by the
    /// engine, and still delivered here.
    Ping(Bytes),
    /// A pong (payload at most 125 bytes).
    Pong(Bytes),
    /// A close frame. Sending one starts the close handshake: the socket then reads on until
    /// the peer's answer and sends nothing more. A received close is answered by the engine
    /// and is the last message.
    Close(Option<CloseFrame>),
}

impl Message {
    /// A text message.
    pub fn text<S: Into<Utf8Bytes>>(text: S) -> Self {
        Self::Text(text.into())
    }

    /// A binary message.
    pub fn binary<B: Into<Bytes>>(data: B) -> Self {
        Self::Binary(data.into())
    }

    /// The payload as bytes, without a copy: text, binary, ping or pong data; a close's
    /// reason.
    pub fn into_data(self) -> Bytes {
        proto::Message::from(self).into_payload()
    }

    /// The payload as text: a text message as it is, other payloads checked for UTF-8.
    ///
    /// # Errors
    ///
    /// A binary, ping or pong payload that is not UTF-8.
    pub fn into_text(self) -> Result<Utf8Bytes, Error> {
        match self {
            Self::Text(text) => Ok(text),
            Self::Binary(data) | Self::Ping(data) | Self::Pong(data) => {
                Utf8Bytes::try_from(data).map_err(Error::new)
            }
            Self::Close(None) => Ok(Utf8Bytes::default()),
            Self::Close(Some(frame)) => Ok(frame.reason),
        }
    }

    /// The payload as a `&str`, checking binary, ping and pong payloads for UTF-8.
    ///
    /// # Errors
    ///
    /// A binary, ping or pong payload that is not UTF-8.
    pub fn to_text(&self) -> Result<&str, Error> {
        match self {
            Self::Text(text) => Ok(text.as_str()),
            Self::Binary(data) | Self::Ping(data) | Self::Pong(data) => {
                std::str::from_utf8(data).map_err(Error::new)
            }
            Self::Close(None) => Ok(""),
            Self::Close(Some(frame)) => Ok(frame.reason.as_str()),
        }
    }
}

impl From<String> for Message {
    fn from(text: String) -> Self {
        Self::Text(text.into())
    }
}

impl From<&str> for Message {
    fn from(text: &str) -> Self {
        Self::Text(text.into())
    }
}

impl From<&[u8]> for Message {
    fn from(data: &[u8]) -> Self {
        Self::Binary(Bytes::copy_from_slice(data))
    }
}

impl From<Bytes> for Message {
    fn from(data: Bytes) -> Self {
        Self::Binary(data)
    }
}

impl From<Vec<u8>> for Message {
    fn from(data: Vec<u8>) -> Self {
        Self::Binary(data.into())
    }
}

impl From<Message> for Vec<u8> {
    fn from(message: Message) -> Self {
        message.into_data().into()
    }
}

impl From<proto::Message> for Message {
    #[inline]
    fn from(message: proto::Message) -> Self {
        match message {
            proto::Message::Text(text) => Self::Text(text.into()),
            proto::Message::Binary(data) => Self::Binary(data),
            proto::Message::Ping(data) => Self::Ping(data),
            proto::Message::Pong(data) => Self::Pong(data),
            proto::Message::Close(frame) => Self::Close(frame.map(Into::into)),
        }
    }
}

impl From<Message> for proto::Message {
    #[inline]
    fn from(message: Message) -> Self {
        match message {
            Message::Text(text) => Self::Text(text.0),
            Message::Binary(data) => Self::Binary(data),
            Message::Ping(data) => Self::Ping(data),
            Message::Pong(data) => Self::Pong(data),
            Message::Close(frame) => Self::Close(frame.map(Into::into)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_to_and_from_ours_keep_the_payload_where_it_is() {
        let data = Bytes::from(vec![b'x'; 64]);
        let text = Utf8Bytes::try_from(data.clone()).unwrap();
        let ours = proto::Message::from(Message::Text(text));
        assert_eq!(ours.as_payload().as_ptr(), data.as_ptr());
        let back = Message::from(ours);
        assert_eq!(back.into_data().as_ptr(), data.as_ptr());

        let frame = CloseFrame {
            code: super::super::close_code::AWAY,
            reason: "bye".into(),
        };
        let ours = proto::CloseFrame::from(frame.clone());
        assert_eq!(ours.code, proto::CloseCode::GOING_AWAY);
        assert_eq!(CloseFrame::from(ours), frame);
    }

    #[test]
    fn text_accessors_check_utf8_like_axum() {
        assert_eq!(Message::binary(&b"hi"[..]).to_text().unwrap(), "hi");
        assert!(Message::binary(vec![0xff]).to_text().is_err());
        assert!(
            Message::Ping(Bytes::from_static(b"\xff"))
                .into_text()
                .is_err()
        );
        assert_eq!(Message::Close(None).into_text().unwrap(), "");
        let text = Utf8Bytes::from_static("foo123");
        assert_eq!(text, "foo123");
        assert_eq!(text, "foo123".to_owned());
        assert_eq!(text, std::borrow::Cow::from("foo123"));
        assert_eq!(text.len(), 6);
        assert_eq!(Vec::from(Message::text("ab")), b"ab");
    }
}
