//! tower-ws through hyper-util's auto builder, as `examples/echo_server.rs` serves: HTTP/1.1
//! with upgrades and cleartext HTTP/2 with extended CONNECT (RFC 8441) on the same port. The
//! `paths` command drives it over both, to show what a WebSocket over an HTTP/2 stream costs
//! beside one over its own HTTP/1.1 connection; the handler is `tower_ws_layer`'s echo loop.

use std::convert::Infallible;

use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpStream;
use tower_ws::{Session, UpgradeLayer, handler_fn};

use super::{Kind, Server, accept_each};

pub(crate) const SERVER: Server = Server {
    name: "tower-ws-auto",
    kind: Kind::Ours,
    about: "tower-ws through hyper-util's auto builder (HTTP/1.1 and h2c, \
            `enable_connect_protocol`, hyper's default HTTP/2 windows) and its `UpgradeLayer`, \
            the `tower-ws` echo handler",
    run: |listener| {
        Box::pin(accept_each(listener, |stream| {
            serve(stream, Windows::Default)
        }))
    },
};

pub(crate) const WIDE: Server = Server {
    name: "tower-ws-auto-wide",
    kind: Kind::Ours,
    about: "`tower-ws-auto` with wider HTTP/2 flow-control windows (4 MiB per stream, 8 MiB \
            per connection) and 64 KiB DATA frames accepted",
    run: |listener| Box::pin(accept_each(listener, |stream| serve(stream, Windows::Wide))),
};

/// The HTTP/2 settings a server runs with.
#[derive(Debug, Clone, Copy)]
enum Windows {
    /// hyper's defaults: 1 MiB per stream and per connection, 16 KiB frames.
    Default,
    /// Room for 16 messages of 64 KiB in flight on one stream, and frames that carry one.
    Wide,
}

async fn serve(stream: TcpStream, windows: Windows) {
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
    let mut builder = auto::Builder::new(TokioExecutor::new());
    let mut http2 = builder.http2();
    http2.enable_connect_protocol();
    if let Windows::Wide = windows {
        http2
            .initial_stream_window_size(4 << 20)
            .initial_connection_window_size(8 << 20)
            .max_frame_size(64 << 10);
    }
    let _ = builder
        .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service))
        .await;
}
