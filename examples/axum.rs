//! A chat room in an axum 0.8 router: the WebSocket layer on one route (`/chat`), beside
//! ordinary JSON routes and a page.
//!
//! ```sh
//! cargo run --example axum            # http://127.0.0.1:3000, open it in two tabs
//! ```
//!
//! Every message a member sends is broadcast to every member. `/chat` uses axum's `any`
//! method router so that HTTP/2 WebSocket handshakes (an extended CONNECT, not a GET) reach
//! the layer; axum's `serve` enables the connect protocol when axum's `http2` feature is on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse};
use axum::routing::{any, get};
use axum::{Json, Router, middleware};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tower_ws::{Message, Session, Shutdown, UpgradeLayer, handler_fn};

/// The chat room: a broadcast channel and a few counters.
#[derive(Clone, Debug)]
struct Room {
    lines: broadcast::Sender<String>,
    members: Arc<AtomicUsize>,
    messages: Arc<AtomicU64>,
}

impl Room {
    fn new() -> Self {
        Self {
            lines: broadcast::channel(256).0,
            members: Arc::default(),
            messages: Arc::default(),
        }
    }

    fn say(&self, line: String) {
        self.messages.fetch_add(1, Ordering::Relaxed);
        // No receivers is fine: nobody is listening.
        let _ = self.lines.send(line);
    }
}

/// The application: the router, with its WebSocket sessions' shutdown handle.
pub fn app_with_shutdown() -> (Router, Shutdown) {
    let room = Room::new();
    let chat = {
        let room = room.clone();
        UpgradeLayer::new(handler_fn(move |session| member(room.clone(), session)))
    };
    let shutdown = chat.shutdown_handle();
    let router = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route(
            "/api/health",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route("/api/stats", get(stats))
        // `any`: the route takes the HTTP/2 handshake too, which is a CONNECT.
        .route("/chat", any(not_a_websocket).layer(chat))
        .with_state(room)
        .layer(middleware::map_request(peer_address));
    (router, shutdown)
}

/// The application's router.
pub fn app() -> Router {
    app_with_shutdown().0
}

async fn stats(State(room): State<Room>) -> Json<Value> {
    Json(json!({
        "members": room.members.load(Ordering::Relaxed),
        "messages": room.messages.load(Ordering::Relaxed),
    }))
}

async fn not_a_websocket() -> impl IntoResponse {
    (StatusCode::UPGRADE_REQUIRED, "connect with a WebSocket\n")
}

/// Copies axum's `ConnectInfo` into a plain `SocketAddr` extension, where the layer looks for
/// the peer address of each session's tracing span.
async fn peer_address(mut request: Request) -> Request {
    if let Some(ConnectInfo(peer)) = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .copied()
    {
        request.extensions_mut().insert(peer);
    }
    request
}

/// The member's name: `?name=...` (letters, digits, `-` and `_`, at most 24), or `anonymous`.
fn name(query: Option<&str>) -> String {
    let name: String = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("name="))
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

/// One member's session: relay what they say to the room, and the room to them.
async fn member(
    room: Room,
    Session {
        mut socket,
        handshake,
        ..
    }: Session,
) -> Result<(), tower_ws::Error> {
    let name = name(handshake.uri().query());
    let mut lines = room.lines.subscribe();
    room.members.fetch_add(1, Ordering::Relaxed);
    room.say(format!("* {name} joined"));
    let result = async {
        loop {
            tokio::select! {
                // Both `recv`s are cancel safe: nothing is lost when the other one wins.
                message = socket.recv() => match message {
                    Some(Ok(Message::Text(text))) => room.say(format!("{name}: {}", text.as_str())),
                    Some(Ok(_)) => {}
                    Some(Err(error)) => return Err(error),
                    None => return Ok(()),
                },
                line = lines.recv() => match line {
                    Ok(line) => socket.send(line).await?,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        socket.send(format!("* you missed {missed} messages")).await?;
                    }
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                },
            }
        }
    }
    .await;
    room.members.fetch_sub(1, Ordering::Relaxed);
    room.say(format!("* {name} left"));
    result
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
    let (app, sessions) = app_with_shutdown();
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
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    // axum's graceful shutdown does not reach upgraded connections: close the sessions.
    sessions.shutdown(std::time::Duration::from_secs(10)).await;
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
