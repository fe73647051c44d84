//! The WebSocket engine: RFC 6455 framing and messages over any tokio transport.
//!
//! Nothing in this module knows about HTTP: it starts after the opening handshake, so it serves
//! the server side behind the tower layer, the client side, and tests over in-memory pipes alike.
//!
//! Read path: transport → [`read`] (buffer, frame headers, unmasking, limits) →
//! [`assemble`] (fragments, UTF-8) → [`Message`]. Write path: [`Message`] → [`write`] (headers,
//! masking, coalescing, vectored writes) → transport. [`core`] holds the state machine between
//! them: control frames, the close handshake and failure.
#![cfg_attr(
    not(test),
    warn(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod assemble;
mod close;
mod closer;
mod config;
pub(crate) mod core;
#[cfg(feature = "deflate")]
mod deflate;
#[cfg(not(feature = "deflate"))]
#[path = "deflate_off.rs"]
mod deflate;
pub(crate) mod fanout;
mod frame;
pub(crate) mod internals;
mod mask;
mod message;
mod pool;
mod read;
mod socket;
mod split;
mod utf8;
mod write;

pub use close::{CloseCode, CloseFrame, MAX_REASON_LEN};
pub use closer::Closer;
pub use config::{Backpressure, Config, Role};
#[cfg(feature = "deflate")]
pub use deflate::{DeflateConfig, DeflateParams};
pub use fanout::SlowPolicy;
pub use frame::OpCode;
pub use message::{Frame, Message, Utf8Bytes};
pub use socket::WebSocket;
pub use split::{ReadHalf, WriteHalf};
