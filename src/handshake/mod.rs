//! The HTTP side of the opening handshake.

#[cfg(feature = "deflate")]
pub(crate) mod deflate;
pub(crate) mod key;
