//! tower-ws through hyper and its tower layer: the path users run. hyper's HTTP/1 connection
//! serves a `ServiceBuilder`-free stack of `UpgradeLayer` around a fallback service; the
//! handler runs the same echo loop as `tower_ws_bare`.

use std::convert::Infallible;

use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpStream;
use tower_ws::{Session, UpgradeLayer, handler_fn};

use super::{Kind, Server, accept_each};

pub(crate) const SERVER: Server = Server {
    name: "tower-ws",
    kind: Kind::Ours,
    about: "tower-ws through hyper 1 (http1, with_upgrades) and its `UpgradeLayer`: a \
            `handler_fn` with `while let Some(Ok(m)) = socket.recv().await { socket.send(m) }`",
    run: |listener| Box::pin(accept_each(listener, serve_connection)),
};

async fn serve_connection(stream: TcpStream) {
    let echo = handler_fn(|Session { mut socket, .. }| async move {
        while let Some(Ok(message)) = socket.recv().await {
            if (message.is_text() || message.is_binary()) && socket.send(message).await.is_err() {
                return;
            }
        }
    });
    let fallback = tower::service_fn(|_: Request<Incoming>| async {
        Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
    });
    let service = tower::Layer::layer(&UpgradeLayer::new(echo), fallback);
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
        .with_upgrades()
        .await;
}
