//! axum 0.8's `extract::ws` API on this crate's engine (feature `axum`).
//!
//! The names and signatures are axum's: moving a handler over is changing
//! `use axum::extract::ws::{...}` (and `axum::extract::WebSocketUpgrade`) to
//! `use tower_ws::axum::{...}`. The README's "Coming from `axum::extract::ws`" lists every
//! difference in behaviour and the setting that restores axum's.
//!
//! ```
//! use axum::{Router, response::Response, routing::any};
//! use tower_ws::axum::{WebSocket, WebSocketUpgrade};
//!
//! let app: Router = Router::new().route("/ws", any(handler));
//!
//! async fn handler(ws: WebSocketUpgrade) -> Response {
//!     ws.on_upgrade(handle_socket)
//! }
//!
//! async fn handle_socket(mut socket: WebSocket) {
//!     while let Some(Ok(msg)) = socket.recv().await {
//!         if socket.send(msg).await.is_err() {
//!             return;
//!         }
//!     }
//! }
//! # let _ = app;
//! ```
//!
//! Beyond axum: [`UpgradeSettings`], a layer with the origin policy, the engine
//! [`Config`](crate::Config) and a [`Shutdown`](crate::Shutdown) that reaches upgraded
//! sockets; [`WebSocketUpgrade::config`], [`keepalive`](WebSocketUpgrade::keepalive) and
//! `deflate` per handler; [`WebSocket::get_mut`] / [`into_inner`](WebSocket::into_inner) for
//! this crate's socket underneath; [`WebSocket::join`] for fan-out through a
//! [`Hub`](crate::Hub) (a chat room without a broadcast channel or a task per socket). To test a route without a network, see
//! `ClientBuilder::connect_service` (features `axum` and `client`).

mod message;
pub mod rejection;
mod settings;
mod socket;
mod upgrade;

pub use message::{CloseCode, CloseFrame, Message, Utf8Bytes};
pub use settings::{UpgradeSettings, WithUpgradeSettings};
pub use socket::WebSocket;
pub use upgrade::{DefaultOnFailedUpgrade, OnFailedUpgrade, WebSocketUpgrade};

pub mod close_code {
    //! The named [`CloseCode`](super::CloseCode)s, as axum names them.

    /// 1000: the purpose of the connection has been fulfilled.
    pub const NORMAL: u16 = 1000;
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const AWAY: u16 = 1001;
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL: u16 = 1002;
    /// 1003: the peer sent a kind of data this endpoint cannot accept.
    pub const UNSUPPORTED: u16 = 1003;
    /// 1005: no code was present (never sent in a close frame).
    pub const STATUS: u16 = 1005;
    /// 1006: the connection closed without a close frame (never sent).
    pub const ABNORMAL: u16 = 1006;
    /// 1007: a message's data did not match its type (text that is not UTF-8).
    pub const INVALID: u16 = 1007;
    /// 1008: a message broke the endpoint's policy.
    pub const POLICY: u16 = 1008;
    /// 1009: a message was too big to process.
    pub const SIZE: u16 = 1009;
    /// 1010: the client needed an extension the server did not negotiate.
    pub const EXTENSION: u16 = 1010;
    /// 1011: the server met an unexpected condition.
    pub const ERROR: u16 = 1011;
    /// 1012: the service is restarting.
    pub const RESTART: u16 = 1012;
    /// 1013: try again later.
    pub const AGAIN: u16 = 1013;
}
