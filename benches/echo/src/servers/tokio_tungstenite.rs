//! tokio-tungstenite, with its `examples/echo-server.rs`: `accept_async`, `split`, then the read
//! half filtered to text and binary and `forward`ed into the write half (which feeds messages
//! and flushes when the read half has nothing ready).

use futures_util::{StreamExt as _, TryStreamExt as _, future};
use tokio::net::TcpStream;

use super::{Kind, Server, accept_each};

pub(crate) const SERVER: Server = Server {
    name: "tokio-tungstenite",
    kind: Kind::Peer,
    about: "tokio-tungstenite: its echo-server example, `read.try_filter(text or binary)\
            .forward(write)` after `split()`",
    run: |listener| Box::pin(accept_each(listener, echo)),
};

async fn echo(stream: TcpStream) {
    let Ok(ws_stream) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (write, read) = ws_stream.split();
    // The example ends with `.expect(..)`; a peer resetting the connection is no failure here.
    let _ = read
        .try_filter(|msg| future::ready(msg.is_text() || msg.is_binary()))
        .forward(write)
        .await;
}
