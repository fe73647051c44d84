//! tower-ws's axum extractor (`tower_ws::axum`, feature `axum`): the `axum` server's code with
//! its `use axum::extract::ws::...` changed to `use tower_ws::axum::...`, served the same way
//! by `axum::serve` with `TCP_NODELAY` set through `tap_io`.

use axum::Router;
use axum::response::Response;
use axum::routing::any;
use axum::serve::ListenerExt as _;
use tower_ws::axum::{WebSocket, WebSocketUpgrade};

use super::{Kind, Server};

pub(crate) const SERVER: Server = Server {
    name: "tower-ws-axum",
    kind: Kind::Ours,
    about: "tower-ws's axum extractor (`tower_ws::axum::WebSocketUpgrade`) under `axum::serve`: \
            the `axum` server's handler with only its import changed",
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
