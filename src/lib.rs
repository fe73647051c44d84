//! WebSocket upgrades as tower middleware, on a strict and fast RFC 6455 engine.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

#[cfg(feature = "client")]
mod client;
mod error;
mod handshake;
mod proto;

#[doc(hidden)]
pub mod bench_api;

#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
pub use client::{ClientBuilder, ClientIo, HandshakeRejected};
pub use error::{ConfigError, Error, ErrorKind, ProtocolError, Result};
pub use proto::{
    CloseCode, CloseFrame, Closer, Config, Frame, MAX_REASON_LEN, Message, OpCode, ReadHalf, Role,
    Utf8Bytes, WebSocket, WriteHalf,
};
#[cfg(feature = "deflate")]
pub use proto::{DeflateConfig, DeflateParams};
