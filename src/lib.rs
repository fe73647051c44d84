//! WebSocket upgrades as tower middleware, on a strict and fast RFC 6455 engine.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

mod error;

// The HTTP side, in the order a request meets it.
mod body;
mod future;
mod handler;
mod handshake;
mod io;
mod layer;
mod service;
mod shutdown;
mod upgrade;

// The engine.
mod proto;

pub use body::ResponseBody;
pub use future::ResponseFuture;
pub use handler::{
    Handler, HandlerFn, HandlerFuture, HandlerOutput, Handshake, Session, handler_fn,
};
pub use handshake::{
    AllowOrigin, ConfigError, DefaultOnReject, HandshakeError, HandshakeErrorKind, OnReject,
    Protocols,
};
pub use io::UpgradedIo;
pub use layer::UpgradeLayer;
pub use service::Upgrade;
pub use shutdown::Shutdown;

pub use error::{Error, ErrorKind, ProtocolError, Result};
pub use proto::{
    CloseCode, CloseFrame, Closer, Config, MAX_REASON_LEN, Message, OpCode, ReadHalf, Role,
    Utf8Bytes, WebSocket, WriteHalf,
};
