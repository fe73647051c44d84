//! What can go wrong between a node and its broker.

use std::error::Error as StdError;
use std::fmt;

use crate::error::BoxError;

/// An operation on a [`Broker`](super::Broker) that failed.
///
/// [`kind`](Self::kind) says what to do about it; the text says which operation on which
/// topic, and [`source`](StdError::source) holds the client library's error, if any.
pub struct BrokerError {
    kind: BrokerErrorKind,
    context: String,
    source: Option<BoxError>,
}

/// What kind of failure a [`BrokerError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BrokerErrorKind {
    /// The broker could not be reached within the configured time (it is down, restarting or
    /// unreachable). A publish that fails this way was not delivered, except when the
    /// connection died after the command was written: then whether the broker ran it is
    /// unknown (retrying may deliver it twice; the Redis offsets let a client see that).
    Unavailable,
    /// The broker answered with an error (out of memory, a script error, a refused command).
    Server,
    /// The message cannot be published: only text and binary messages travel between nodes.
    InvalidMessage,
    /// The backend cannot do this: history is kept by the Redis backend only.
    Unsupported,
    /// The broker handle's background task has stopped (the runtime is shutting down).
    Closed,
}

impl BrokerError {
    pub(crate) fn new(kind: BrokerErrorKind, context: impl Into<String>) -> Self {
        Self {
            kind,
            context: context.into(),
            source: None,
        }
    }

    pub(crate) fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> BrokerErrorKind {
        self.kind
    }

    /// Whether the broker could not be reached: worth retrying later.
    pub fn is_unavailable(&self) -> bool {
        self.kind == BrokerErrorKind::Unavailable
    }
}

impl fmt::Debug for BrokerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerError")
            .field("kind", &self.kind)
            .field("context", &self.context)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for BrokerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            BrokerErrorKind::Unavailable => "broker unavailable",
            BrokerErrorKind::Server => "broker refused",
            BrokerErrorKind::InvalidMessage => "message cannot be published",
            BrokerErrorKind::Unsupported => "not supported by this broker",
            BrokerErrorKind::Closed => "broker task stopped",
        };
        write!(f, "{what}: {}", self.context)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl StdError for BrokerError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}

/// A message on a broker channel that this crate did not publish, or that arrived damaged.
///
/// Reported as [`Event::BadData`](super::Event::BadData) and dropped; it never reaches a
/// subscriber.
#[derive(Clone, PartialEq, Eq)]
pub struct BadData {
    reason: &'static str,
    len: usize,
    head: [u8; 16],
}

impl BadData {
    pub(crate) fn new(reason: &'static str, wire: &[u8]) -> Self {
        let mut head = [0; 16];
        let shown = wire.len().min(16);
        head[..shown].copy_from_slice(&wire[..shown]);
        Self {
            reason,
            len: wire.len(),
            head,
        }
    }

    /// Why the message was refused.
    pub fn reason(&self) -> &'static str {
        self.reason
    }

    /// How long the message was, in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the message was empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Debug for BadData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for BadData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let head = &self.head[..self.len.min(16)];
        write!(
            f,
            "bad data on a broker channel ({}): {} bytes starting {:?}",
            self.reason,
            self.len,
            String::from_utf8_lossy(head)
        )
    }
}

impl StdError for BadData {}
