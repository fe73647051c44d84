//! A chat room in an axum 0.8 router, on the `tower_ws::axum` extractor: axum's own
//! `WebSocketUpgrade` API, beside axum's `State`, `Query` and `ConnectInfo` extractors, JSON
//! routes and a page.
//!
//! ```sh
//! cargo run --example axum --features axum     # http://127.0.0.1:3000, open it in two tabs
//! ```
//!
//! Every message a member sends goes to every member, the sender too (the page shows what the
//! room says, its own lines included), through one `tower_ws::Hub` in the router's state: each
//! socket joins it from the extractor (`socket.join(&hub)`) and subscribes to the room, and a
//! line is framed once for all the members and written by each member's own task while it waits
//! in `recv`. No broadcast channel, no second task per member. `/chat` uses axum's `any`
//! method router so that HTTP/2 WebSocket handshakes (an extended CONNECT, not a GET) reach
//! the extractor; axum's `serve` enables the connect protocol when axum's `http2` feature is on.
//! Ctrl-C closes every member's socket with 1001 (going away) through the settings' `Shutdown`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{ConnectInfo, Query, State};
use axum::response::{Html, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use serde_json::{Value, json};
use tower_ws::axum::{Message, UpgradeSettings, WebSocket, WebSocketUpgrade};
use tower_ws::{Hub, Shutdown};

/// The room's topic in the hub.
const ROOM: &str = "room";

/// The chat room: the hub its members join, and a message counter.
#[derive(Clone, Debug)]
struct Room {
    hub: Hub,
    messages: Arc<AtomicU64>,
}

impl Room {
    fn new() -> Self {
        Self {
            hub: Hub::new(),
            messages: Arc::default(),
        }
    }

    /// Publishes `line` to every member, framed once for all of them. A member over its
    /// queue limit (a reader far behind) misses the line; the hub counts it.
    fn say(&self, line: String) {
        self.messages.fetch_add(1, Ordering::Relaxed);
        self.hub.publish(ROOM, line);
    }
}

/// The application: the router, with its WebSocket sockets' shutdown handle.
pub fn app_with_shutdown() -> (Router, Shutdown) {
    // Defaults: same-host origins only, tower-ws's engine limits. The handle closes every
    // socket the `/chat` extractor upgraded.
    let settings = UpgradeSettings::new();
    let shutdown = settings.shutdown_handle();
    let router = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route(
            "/api/health",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route("/api/stats", get(stats))
        // `any`: the route takes the HTTP/2 handshake too, which is a CONNECT.
        .route("/chat", any(chat))
        .layer(settings)
        .with_state(Room::new());
    (router, shutdown)
}

/// The application's router.
pub fn app() -> Router {
    app_with_shutdown().0
}

async fn stats(State(room): State<Room>) -> Json<Value> {
    Json(json!({
        "members": room.hub.subscriber_count(ROOM),
        "messages": room.messages.load(Ordering::Relaxed),
    }))
}

/// The handshake: axum's extractors for the room, the query and the peer, then the upgrade.
async fn chat(
    ws: WebSocketUpgrade,
    State(room): State<Room>,
    Query(query): Query<HashMap<String, String>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    let name = name(query.get("name").map(String::as_str));
    tracing::info!(%peer, name, "member joining");
    ws.on_upgrade(move |socket| member(room, name, socket))
}

/// The member's name: `?name=...` (letters, digits, `-` and `_`, at most 24), or `anonymous`.
fn name(asked: Option<&str>) -> String {
    let name: String = asked
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_'))
        .take(24)
        .collect();
    if name.is_empty() {
        "anonymous".to_owned()
    } else {
        name
    }
}

/// One member's socket: what they say goes to the room; what the room says reaches them while
/// their task waits in `recv` (the hub queues it, `recv` writes it).
async fn member(room: Room, name: String, mut socket: WebSocket) {
    let member = socket.join(&room.hub);
    member.subscribe(ROOM);
    room.say(format!("* {name} joined"));
    while let Some(Ok(message)) = socket.recv().await {
        if let Message::Text(text) = message {
            room.say(format!("{name}: {text}"));
        }
    }
    // Leaves the room (the end of the connection would too, at the next line said).
    drop(member);
    room.say(format!("* {name} left"));
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".to_owned())
        .parse()?;
    let (app, sockets) = app_with_shutdown();
    // No Nagle delays: over HTTP/2 hyper writes each frame separately (README, "HTTP/2").
    let listener =
        axum::serve::ListenerExt::tap_io(tokio::net::TcpListener::bind(addr).await?, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
    tracing::info!("chat on http://{addr}");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = tokio::signal::ctrl_c().await;
        // axum's graceful shutdown does not reach upgraded connections: close the sockets
        // (1001), refusing new handshakes meanwhile, then let axum finish.
        sockets.shutdown(Duration::from_secs(10)).await;
    })
    .await?;
    Ok(())
}

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>tower-ws chat</title>
<style>
  body { font: 16px system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; }
  #log { border: 1px solid #ccc; padding: .5rem; height: 16rem; overflow-y: auto; white-space: pre-wrap; }
</style>
<h1>tower-ws chat</h1>
<form id="form"><input id="text" autocomplete="off" placeholder="say something"> <button>Send</button></form>
<div id="log"></div>
<script>
  const name = prompt("Your name?", "guest") || "guest";
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/chat?name=${encodeURIComponent(name)}`);
  const log = document.getElementById("log");
  socket.onmessage = (event) => { log.textContent += event.data + "\n"; log.scrollTop = log.scrollHeight; };
  socket.onclose = (event) => { log.textContent += `* disconnected (${event.code})\n`; };
  document.getElementById("form").onsubmit = (event) => {
    event.preventDefault();
    const input = document.getElementById("text");
    if (input.value) { socket.send(input.value); input.value = ""; }
  };
</script>
</html>
"#;
