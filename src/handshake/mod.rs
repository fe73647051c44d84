//! The HTTP side of the opening handshake.

pub(crate) mod key;
