//! tokio-websockets, with the echo loop of its README and `examples/echo_server.rs`
//! (`StreamExt::next`, then `SinkExt::send` for text and binary, in an `unconstrained` task as
//! the example does), default configuration and limits.

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::TcpStream;
use tokio_websockets::ServerBuilder;

use super::{Kind, Server, accept_each};

pub(crate) const SERVER: Server = Server {
    name: "tokio-websockets",
    kind: Kind::Peer,
    about: "tokio-websockets (server, sha1_smol): `next()` then `SinkExt::send` for text and \
            binary, in `tokio::task::unconstrained` as its echo example",
    run: |listener| {
        Box::pin(accept_each(listener, |s| {
            tokio::task::unconstrained(echo(s))
        }))
    },
};

async fn echo(stream: TcpStream) {
    let Ok((_request, mut server)) = ServerBuilder::new().accept(stream).await else {
        return;
    };
    while let Some(Ok(item)) = server.next().await {
        if (item.is_text() || item.is_binary()) && server.send(item).await.is_err() {
            return;
        }
    }
}
