//! The server the Autobahn|Testsuite fuzzing client runs against: echoes every text and
//! binary message, on any path, through hyper and the layer like every other example.
//!
//! ```sh
//! cargo run --release --features deflate --example autobahn_server     # 127.0.0.1:9001
//! ```
//!
//! Limits: Autobahn's largest messages (cases 9.*) are 16 MiB; the limits here leave room
//! above that. Origins are not checked: the suite is not a browser.
//!
//! permessage-deflate is on with the default settings, which accept every offer of cases 12.*
//! and 13.* (window bits 9 and 15, with and without context takeover, several offers at once).
//! The threshold is 0: every message is compressed, even the short ones the default (64 bytes)
//! would send as they are, so that no case leaves a path of the codec untried.

use std::net::SocketAddr;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_ws::{AllowOrigin, Config, DeflateConfig, Session, UpgradeLayer, handler_fn};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".to_owned())
        .parse()?;
    let config = Config::default()
        .max_message_size(64 << 20)
        .max_frame_size(64 << 20)
        .deflate(DeflateConfig::default().threshold(0));
    let echo = handler_fn(|Session { mut socket, .. }| async move {
        // Only the socket is kept: the request head is freed at once, so an idle session
        // costs a little under 2 KiB.
        while let Some(message) = socket.recv().await {
            let message = message?;
            if message.is_text() || message.is_binary() {
                socket.send(message).await?;
            }
        }
        Ok::<_, tower_ws::Error>(())
    });
    let service = ServiceBuilder::new()
        .layer(
            UpgradeLayer::new(echo)
                .config(config)
                .allow_origin(AllowOrigin::any()),
        )
        .service_fn(|_: http::Request<hyper::body::Incoming>| async {
            let mut response = http::Response::new(String::from("autobahn echo server\n"));
            *response.status_mut() = http::StatusCode::UPGRADE_REQUIRED;
            Ok::<_, std::convert::Infallible>(response)
        });
    let listener = TcpListener::bind(addr).await?;
    eprintln!("autobahn echo server on ws://{addr}");
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http2().enable_connect_protocol();
    loop {
        let (stream, _) = listener.accept().await?;
        // Nagle's algorithm would hold back the tail of each message for the peer's delayed
        // ACK (about 40 ms): over HTTP/2, hyper writes each frame separately.
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(service.clone());
        let builder = builder.clone();
        tokio::spawn(async move {
            let _ = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await;
        });
    }
}
