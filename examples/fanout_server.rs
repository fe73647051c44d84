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
//! Several nodes share their rooms through a broker: start each on its own port with the same
//! `--redis URL` (feature `redis`) or `--nats URL` (feature `nats`), and a publisher on one
//! node reaches the subscribers of every node:
//!
//! ```sh
//! cargo run --release --features redis --example fanout_server 127.0.0.1:3001 --redis redis://127.0.0.1:6379
//! cargo run --release --features redis --example fanout_server 127.0.0.1:3002 --redis redis://127.0.0.1:6379
//! ```
//!
//! With a broker, a publisher's messages are queued for the broker in order (what queues up
//! during a round trip goes in the next one), and every node, this one included, delivers
//! what the broker hands back. A publish the broker refuses is reported on stderr.
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
#[cfg(any(feature = "redis", feature = "nats"))]
use tower_ws::broker::{Broker, Cluster};
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

/// Where publishes go: this process's hub, or every node through a broker.
#[derive(Clone)]
enum Rooms {
    Local(Hub),
    #[cfg(any(feature = "redis", feature = "nats"))]
    Cluster(Cluster),
}

impl Rooms {
    fn hub(&self) -> &Hub {
        match self {
            Rooms::Local(hub) => hub,
            #[cfg(any(feature = "redis", feature = "nats"))]
            Rooms::Cluster(cluster) => cluster.hub(),
        }
    }

    fn publish(&self, room: &str, message: tower_ws::Message) {
        match self {
            Rooms::Local(hub) => {
                hub.publish(room, message);
            }
            #[cfg(any(feature = "redis", feature = "nats"))]
            Rooms::Cluster(cluster) => {
                // Queued now, in order; the answer is awaited aside, so the next message
                // need not wait for the broker's round trip.
                let published = cluster.publish(room, &message);
                tokio::spawn(async move {
                    if let Err(error) = published.await {
                        eprintln!("{error}");
                    }
                });
            }
        }
    }
}

/// One session of the protocol: the routing, in one place.
async fn session(
    rooms: Rooms,
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
            let member = rooms.hub().join(&mut socket);
            member.subscribe(room);
            // Published frames go out while the socket is polled; anything the subscriber
            // sends is ignored.
            while let Some(Ok(_)) = socket.recv().await {}
        }
        Some(Route::Publish(room)) => {
            while let Some(Ok(message)) = socket.recv().await {
                if message.is_text() || message.is_binary() {
                    rooms.publish(room, message);
                }
            }
        }
        None => {}
    }
}

/// The broker named on the command line, if any.
#[cfg_attr(
    not(all(feature = "redis", feature = "nats")),
    allow(dead_code, reason = "a URL is read only when its feature is on")
)]
enum BrokerArg {
    None,
    Redis(String),
    Nats(String),
}

#[cfg_attr(
    not(feature = "nats"),
    allow(
        clippy::unused_async,
        reason = "only the NATS client connects asynchronously"
    )
)]
async fn rooms(broker: BrokerArg) -> Result<Rooms, BoxError> {
    match broker {
        BrokerArg::None => Ok(Rooms::Local(Hub::new())),
        #[cfg(feature = "redis")]
        BrokerArg::Redis(url) => {
            let (broker, events) = Broker::redis(&url, tower_ws::broker::RedisConfig::default())?;
            Ok(Rooms::Cluster(Cluster::builder(broker, events).start()))
        }
        #[cfg(feature = "nats")]
        BrokerArg::Nats(url) => {
            let config = tower_ws::broker::NatsConfig::default();
            let (broker, events) = Broker::nats(&url, config).await?;
            Ok(Rooms::Cluster(Cluster::builder(broker, events).start()))
        }
        #[allow(
            unreachable_patterns,
            reason = "reachable when a broker feature is off"
        )]
        _ => Err("this build has no such broker: add --features redis or --features nats".into()),
    }
}

async fn serve(addr: SocketAddr, broker: BrokerArg) -> Result<(), BoxError> {
    let listener = TcpListener::bind(addr).await?;
    println!("fan-out server on ws://{}", listener.local_addr()?);
    let rooms = rooms(broker).await?;
    let handler = handler_fn(move |s: Session| session(rooms.clone(), s));
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
    let mut addr: SocketAddr = "127.0.0.1:3000".parse()?;
    let mut broker = BrokerArg::None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--redis" => broker = BrokerArg::Redis(args.next().ok_or("--redis URL")?),
            "--nats" => broker = BrokerArg::Nats(args.next().ok_or("--nats URL")?),
            _ => addr = arg.parse()?,
        }
    }
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
    runtime.block_on(serve(addr, broker))
}
