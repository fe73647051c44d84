//! The WebSocket client (feature `client`): the opening handshake over any transport, and
//! `ws://` connections over TCP (`wss://` too, with feature `rustls`).
//!
//! [`ClientBuilder`] holds what every connection offers: subprotocols, an `Origin`, extra
//! headers, the engine [`Config`](crate::Config) and timeouts. It has one handshake entry
//! point, [`handshake`](ClientBuilder::handshake), which runs over any transport the caller has
//! already opened (a TLS stream, a unix socket, a proxy tunnel), and
//! [`connect`](ClientBuilder::connect), which opens a TCP (or TLS) connection for a `ws://`
//! (or `wss://`) URL first. Both return the client-role [`WebSocket`](crate::WebSocket) over the
//! caller's own transport type and the server's response head.
//!
//! The request goes out through hyper's HTTP/1.1 client connection with a fresh random
//! `Sec-WebSocket-Key` and `Sec-WebSocket-Version: 13`. The answer must be `101 Switching
//! Protocols` with `Upgrade: websocket`, a `Connection` header holding `upgrade`, the
//! `Sec-WebSocket-Accept` value for our key, no extension (none is offered), and a subprotocol
//! only if it is one of those offered. Any other answer fails with
//! [`ErrorKind::Handshake`](crate::ErrorKind::Handshake), whose source is a
//! [`HandshakeRejected`] with the server's status, headers and the start of its body. Connecting
//! and the handshake are bounded by timeouts (10 seconds each by default), and no answer, however
//! malformed, makes the client panic.
//!
//! ```
//! use tower_ws::{ClientBuilder, Message};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Any AsyncRead + AsyncWrite transport works; here, an in-memory pipe whose other end is
//! // served by a WebSocket echo server (hidden).
//! let (io, server_io) = tokio::io::duplex(4096);
//! # tokio::spawn(async move {
//! #     use futures_util::{SinkExt, StreamExt};
//! #     let cb = |_: &tokio_tungstenite::tungstenite::handshake::server::Request,
//! #               mut res: tokio_tungstenite::tungstenite::handshake::server::Response| {
//! #         res.headers_mut().insert("sec-websocket-protocol", "chat".parse().unwrap());
//! #         Ok(res)
//! #     };
//! #     let mut ws = tokio_tungstenite::accept_hdr_async(server_io, cb).await.unwrap();
//! #     while let Some(Ok(m)) = ws.next().await {
//! #         if m.is_text() && ws.send(m).await.is_err() { break; }
//! #     }
//! # });
//! let (mut ws, response) = ClientBuilder::new()
//!     .protocols(["chat"])?
//!     .handshake("ws://example.com/chat", io)
//!     .await?;
//! assert_eq!(response.status(), 101);
//! assert_eq!(response.headers()["sec-websocket-protocol"], "chat");
//!
//! ws.send(Message::text("hello")).await?;
//! assert_eq!(ws.recv().await.unwrap()?.as_text(), Some("hello"));
//! # Ok(())
//! # }
//! ```

mod builder;
mod handshake;
mod in_process;
mod io;
mod rejected;
#[cfg(feature = "rustls")]
mod tls;

pub use builder::ClientBuilder;
pub(crate) use handshake::{check as check_answer, extensions as check_extensions};
pub use io::ClientIo;
pub use rejected::HandshakeRejected;
