//! tower-ws's engine on a bare `TcpStream`, after a hand-written handshake: what the engine
//! costs without hyper and the layer.

use tokio::net::TcpStream;
use tower_ws::{Config, Role, WebSocket};

use super::{Kind, Server, accept_each};
use crate::handshake;

pub(crate) const SERVER: Server = Server {
    name: "tower-ws-bare",
    kind: Kind::Ours,
    about: "tower-ws engine on a bare TcpStream (hand-written handshake): \
            `while let Some(Ok(m)) = ws.recv().await { ws.send(m).await }` for text and binary",
    run: |listener| Box::pin(accept_each(listener, echo)),
};

async fn echo(mut stream: TcpStream) {
    let Ok(read) = handshake::server(&mut stream).await else {
        return;
    };
    let mut ws = WebSocket::from_partially_read(stream, read, Role::Server, Config::default());
    while let Some(Ok(message)) = ws.recv().await {
        if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
            return;
        }
    }
}
