//! sockudo-ws, with the echo loop of its `examples/simple_echo.rs`: its own handshake helpers
//! (`parse_request`, `generate_accept_key`, `build_response`), then `WebSocketStream::server`
//! with the default `Config`, `next()` and `SinkExt::send` for text and binary.

use bytes::BytesMut;
use futures_util::{SinkExt as _, StreamExt as _};
use sockudo_ws::handshake::{build_response, generate_accept_key, parse_request};
use sockudo_ws::protocol::Message;
use sockudo_ws::{Config, WebSocketStream};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::{Kind, Server, accept_each};

pub(crate) const SERVER: Server = Server {
    name: "sockudo-ws",
    kind: Kind::Peer,
    about: "sockudo-ws 3 (simd, tokio-runtime): its simple_echo example, `WebSocketStream::server` \
            with the default `Config`, `next()` then `SinkExt::send` for text and binary",
    run: |listener| Box::pin(accept_each(listener, echo)),
};

async fn echo(mut stream: TcpStream) {
    if handshake(&mut stream).await.is_none() {
        return;
    }
    let mut ws = WebSocketStream::server(stream, Config::default());
    while let Some(Ok(message)) = ws.next().await {
        let answer = match message {
            Message::Text(text) => Message::Text(text),
            Message::Binary(data) => Message::Binary(data),
            Message::Close(_) => return,
            Message::Ping(_) | Message::Pong(_) => continue,
        };
        if ws.send(answer).await.is_err() {
            return;
        }
    }
}

/// The example's `do_handshake`: read until the request parses, answer it.
async fn handshake(stream: &mut TcpStream) -> Option<()> {
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        if stream.read_buf(&mut buf).await.ok()? == 0 {
            return None;
        }
        if let Some((request, _)) = parse_request(&buf).ok()? {
            let response = build_response(&generate_accept_key(request.key), None, None);
            stream.write_all(&response).await.ok()?;
            return Some(());
        }
    }
}
