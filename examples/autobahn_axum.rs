//! The Autobahn|Testsuite's echo server as an axum app on the `tower_ws::axum` extractor: the
//! suite's cases 1 to 10 run against it in CI (`autobahn/run-axum.sh`), strict, like the
//! layer's `autobahn_server`.
//!
//! ```sh
//! cargo run --features axum --example autobahn_axum      # 127.0.0.1:9001
//! ```
//!
//! Its handler is axum's echo with axum's builder calls; what it sets beyond axum's API is the
//! origin policy (the suite is not a browser). The message and frame limits leave room above
//! the suite's largest messages (16 MiB, cases 9.*).

use std::net::SocketAddr;

use axum::Router;
use axum::response::Response;
use tower_ws::AllowOrigin;
use tower_ws::axum::{Message, UpgradeSettings, WebSocket, WebSocketUpgrade};

async fn handler(ws: WebSocketUpgrade) -> Response {
    ws.max_message_size(64 << 20)
        .max_frame_size(64 << 20)
        .on_upgrade(echo)
}

async fn echo(mut socket: WebSocket) {
    while let Some(Ok(message)) = socket.recv().await {
        // Pings are answered by the engine; echoing them would send the suite pings of ours.
        if let Message::Text(_) | Message::Binary(_) = message
            && socket.send(message).await.is_err()
        {
            return;
        }
    }
}

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
    let app = Router::new()
        .fallback(handler)
        .layer(UpgradeSettings::new().allow_origin(AllowOrigin::any()));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    eprintln!("autobahn axum echo server on ws://{addr}");
    axum::serve(listener, app).await?;
    Ok(())
}
