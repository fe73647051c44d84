//! WebSocket upgrades as tower middleware, on a strict and fast RFC 6455 engine.
//!
//! [`UpgradeLayer`] is a tower [`Layer`](tower_layer::Layer): put it in a `ServiceBuilder`, an
//! axum `Router` or a plain hyper service. It answers WebSocket handshakes (HTTP/1.1 upgrades
//! and, with the `http2` feature, RFC 8441 extended CONNECTs) and runs your [`Handler`] on each
//! connection; every other request reaches the inner service untouched.
//!
//! ```
//! use tower::ServiceBuilder;
//! use tower_ws::{Session, UpgradeLayer, handler_fn};
//! # use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let echo = handler_fn(|Session { mut socket, .. }| async move {
//!     while let Some(message) = socket.recv().await {
//!         let message = message?;
//!         if message.is_text() || message.is_binary() {
//!             socket.send(message).await?;
//!         }
//!     }
//!     Ok::<_, tower_ws::Error>(())
//! });
//! let app = ServiceBuilder::new()
//!     .layer(UpgradeLayer::new(echo))
//!     .service_fn(|_: http::Request<hyper::body::Incoming>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(String::from("a page")))
//!     });
//!
//! // Serve one hyper connection over an in-memory pipe (a TCP listener works the same).
//! # let (mut client, server) = tokio::io::duplex(4096);
//! # let service = hyper_util::service::TowerToHyperService::new(app);
//! # tokio::spawn(
//! #     hyper::server::conn::http1::Builder::new()
//! #         .serve_connection(hyper_util::rt::TokioIo::new(server), service)
//! #         .with_upgrades(),
//! # );
//! // An ordinary request reaches the inner service...
//! # client.write_all(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n").await?;
//! # let mut response = vec![0; 1024];
//! # let n = client.read(&mut response).await?;
//! # let response = String::from_utf8_lossy(&response[..n]);
//! assert!(response.starts_with("HTTP/1.1 200 OK") && response.ends_with("a page"));
//!
//! // ...and the RFC 6455 sample handshake gets its 101 and accept value.
//! client
//!     .write_all(
//!         b"GET /chat HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\n\
//!           Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
//!           Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
//!     )
//!     .await?;
//! # let mut response = vec![0; 1024];
//! # let n = client.read(&mut response).await?;
//! # let response = String::from_utf8_lossy(&response[..n]);
//! assert!(response.starts_with("HTTP/1.1 101 Switching Protocols"));
//! assert!(response.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
//! # Ok(())
//! # }
//! ```
//!
//! # The path of a request
//!
//! [`UpgradeLayer`] builds [`Upgrade`] services. Each request is classified: not a handshake
//! (to the inner service), a handshake that fails a check (a 4xx from [`OnReject`], with the
//! [`HandshakeError`] in its extensions), or a valid one: `101 Switching Protocols` (or `200`
//! on HTTP/2) is returned at once and a task is spawned that waits for hyper to hand over the
//! connection ([`UpgradedIo`]), wraps it in a [`WebSocket`] and calls the handler with a
//! [`Session`]: the socket plus the [`Handshake`] (request head, extensions set by earlier
//! middleware, chosen subprotocol). When the handler returns, the layer closes what it left
//! open: 1000 after `Ok`, 1011 after an error or a panic.
//!
//! Each session runs in a DEBUG-level `tracing` span named `websocket` (peer address, path,
//! HTTP version, subprotocol), inside the request's span when tower-http's `TraceLayer` is
//! outside the layer; the handshake, the session's start and end, its close (the engine's
//! events say who closed, with the code and reason) and handler errors are events in it.
//!
//! # Features
//!
//! | feature | default | what |
//! |---|---|---|
//! | `http2` | on | WebSocket over HTTP/2 (RFC 8441): see [`Handshake::version`] and the README |
//! | `client` | off | the client: `ClientBuilder`, a handshake over any transport, `ws://` over TCP |
//! | `rustls` | off | `wss://` for the client, with rustls and the webpki roots |
//! | `deflate` | off | permessage-deflate (RFC 7692), negotiated by the layer and the client: `DeflateConfig` |
//! | `axum` | off | [`tower_ws::axum`](mod@crate::axum): axum 0.8's `WebSocketUpgrade` extractor API on this engine |
//! | `redis` | off | topics across nodes through Redis 7, with per-topic history: `broker` |
//! | `nats` | off | topics across nodes through core NATS (at most once): `broker` |
//!
//! # Limits
//!
//! Every limit is on by default ([`Config`]): 16 MiB per message and per frame (decided from
//! the frame header, before any payload is buffered), a 128 KiB write-queue high-water mark,
//! a 5 s close timeout. Set them per layer with [`UpgradeLayer::config`]. An idle socket
//! holds no read or write buffer. What `send` does when a peer stops reading (wait, refuse the
//! message, or drop the peer) is [`Backpressure`].
//!
//! # Cancel safety
//!
//! [`WebSocket::recv`] is cancel safe (use it in `select!`); a dropped `send` has queued the
//! whole message or nothing. See [`WebSocket`].
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;
#[cfg(feature = "client")]
mod client;
mod error;

// The HTTP side, in the order a request meets it.
mod body;
mod future;
mod handler;
mod handshake;
mod hub;
mod io;
mod layer;
mod service;
mod shutdown;
mod upgrade;

// The engine.
mod proto;

// Beyond one node.
#[cfg(any(feature = "redis", feature = "nats"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "redis", feature = "nats"))))]
pub mod broker;

#[doc(hidden)]
pub mod internals;

pub use body::ResponseBody;
#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
pub use client::{ClientBuilder, ClientIo, HandshakeRejected};
pub use future::ResponseFuture;
pub use handler::{
    Handler, HandlerFn, HandlerFuture, HandlerOutput, Handshake, Session, handler_fn,
};
pub use handshake::{
    AllowOrigin, DefaultOnReject, HandshakeError, HandshakeErrorKind, OnReject, Protocols,
};
pub use hub::{DEFAULT_MAX_QUEUED, Hub, HubBuilder, Member, Published, SocketId, TopicEvent};
pub use io::UpgradedIo;
pub use layer::UpgradeLayer;
pub use service::Upgrade;
pub use shutdown::Shutdown;

pub use error::{ConfigError, Error, ErrorKind, ProtocolError, Result};
pub use proto::{
    Backpressure, CloseCode, CloseFrame, Closer, Config, Frame, MAX_REASON_LEN, Message, OpCode,
    ReadHalf, Role, SlowPolicy, Utf8Bytes, WebSocket, WriteHalf,
};
#[cfg(feature = "deflate")]
#[cfg_attr(docsrs, doc(cfg(feature = "deflate")))]
pub use proto::{DeflateConfig, DeflateParams};

/// The README's snippets, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
