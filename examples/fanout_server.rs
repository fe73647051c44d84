//! A fan-out server speaking the broadcast bench protocol, through hyper and the layer:
//!
//! - `GET /sub/{room}`: the socket subscribes to `room`;
//! - `GET /pub/{room}`: every text or binary message the socket sends is published to `room`'s
//!   subscribers, as sent; a publisher receives nothing;
//! - any other path: 404.
//!
//! ```sh
//! cargo run --release --example fanout_server              # 127.0.0.1:3000
//! cargo run --release --example fanout_server 0.0.0.0:8080
//! ```
//!
//! It runs on a current-thread runtime (one core, like the uWebSockets server it is compared
//! with; `TOWER_WS_THREADS=N` for a multi-threaded one), with the hub's defaults: 256 KiB queued
//! per subscriber, messages dropped for a subscriber over it. Measure it with any load
//! generator; `cargo bench -p echo-bench --bench echo -- fanout` is ours.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower_ws::{Hub, Session, UpgradeLayer, handler_fn};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a path asks for.
enum Route<'a> {
    Subscribe(&'a str),
    Publish(&'a str),
}

fn route(path: &str) -> Option<Route<'_>> {
    if let Some(room) = path.strip_prefix("/sub/") {
        return Some(Route::Subscribe(room));
    }
    path.strip_prefix("/pub/").map(Route::Publish)
}

/// One session of the protocol: the routing, in one place.
async fn session(
    hub: Hub,
    Session {
        mut socket,
        handshake,
        ..
    }: Session,
) {
    let path = handshake.uri().path().to_owned();
    drop(handshake);
    match route(&path) {
        Some(Route::Subscribe(room)) => {
            let member = hub.join(&mut socket);
            member.subscribe(room);
            // Published frames go out while the socket is polled; anything the subscriber
            // sends is ignored.
            while let Some(Ok(_)) = socket.recv().await {}
        }
        Some(Route::Publish(room)) => {
            while let Some(Ok(message)) = socket.recv().await {
                if message.is_text() || message.is_binary() {
                    hub.publish(room, message);
                }
            }
        }
        None => {}
    }
}

async fn serve(addr: SocketAddr) -> Result<(), BoxError> {
    let listener = TcpListener::bind(addr).await?;
    println!("fan-out server on ws://{}", listener.local_addr()?);
    let hub = Hub::new();
    let handler = handler_fn(move |s: Session| session(hub.clone(), s));
    let layer = UpgradeLayer::new(handler);
    let not_found = tower::service_fn(|request: Request<Incoming>| async move {
        let mut response = Response::new(Empty::<Bytes>::new());
        if route(request.uri().path()).is_none() {
            *response.status_mut() = StatusCode::NOT_FOUND;
        } else {
            *response.status_mut() = StatusCode::UPGRADE_REQUIRED;
        }
        Ok::<_, Infallible>(response)
    });
    let service = tower::Layer::layer(&layer, not_found);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors, or a connection reset before accept: keep serving.
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

fn main() -> Result<(), BoxError> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".to_owned())
        .parse()?;
    let threads: usize = std::env::var("TOWER_WS_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(1);
    let runtime = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    runtime.block_on(serve(addr))
}
