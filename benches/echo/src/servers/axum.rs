//! axum 0.8's `ws` extractor, with the handler of its module docs (`recv`, then `send` of every
//! message), served by `axum::serve` with `TCP_NODELAY` set through `tap_io` as its docs show.

use axum::Router;
use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::any;
use axum::serve::ListenerExt as _;

use super::{Kind, Server};

pub(crate) const SERVER: Server = Server {
    name: "axum",
    kind: Kind::Peer,
    about: "axum 0.8 `ws` (tokio-tungstenite inside): its docs' handler, \
            `while let Some(Ok(m)) = socket.recv().await { socket.send(m).await }`",
    run: |listener| {
        Box::pin(async move {
            let app = Router::new().route("/", any(handler));
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            axum::serve(listener, app).await
        })
    },
};

async fn handler(ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(handle_socket)
}

async fn handle_socket(mut socket: WebSocket) {
    while let Some(msg) = socket.recv().await {
        let Ok(msg) = msg else {
            return;
        };
        if socket.send(msg).await.is_err() {
            return;
        }
    }
}
