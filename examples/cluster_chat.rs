//! A chat served by several nodes that share their rooms through Redis, with clients that
//! resume where they left off.
//!
//! ```sh
//! redis-server --port 6379 --save '' &      # any Redis 7
//! cargo run --features redis --example cluster_chat -- 3001 3002 [--redis redis://127.0.0.1:6379]
//! ```
//!
//! Each port is a node: its own Tokio runtime, listener, Redis connection and hub, as if on
//! its own machine. Open <http://127.0.0.1:3001/> and <http://127.0.0.1:3002/> in two browser
//! windows and chat: each message goes to Redis once and reaches the subscribers of every node.
//!
//! Every message a browser receives starts with its position in the room's history
//! (`EPOCH:OFFSET`). The page's "restart this node" button stops the node it is connected to
//! (every socket on it closes) and starts it again two seconds later; the page reconnects
//! with `?since=` its last position and the node sends what it missed from Redis history
//! before going live, so nothing is lost. If the history no longer reaches back that far (or
//! Redis lost it), the node says `RESET` and the page starts over.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tower_ws::broker::{Broker, Cluster, Delivery, Position, Recovery, RedisConfig};
use tower_ws::{Message, Session, UpgradeLayer, handler_fn};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const ROOM: &str = "lobby";

/// What a browser receives: `EPOCH:OFFSET` and the message.
fn render(delivery: &Delivery) -> Message {
    let position = delivery
        .position
        .map_or_else(|| String::from("-"), |p| p.to_string());
    let text = delivery.message.as_text().unwrap_or("(binary)");
    Message::text(format!("{position} {text}"))
}

async fn chat(cluster: Cluster, port: u16, session: Session) -> Result<(), tower_ws::Error> {
    let Session {
        mut socket,
        handshake,
        ..
    } = session;
    let since = handshake
        .uri()
        .query()
        .and_then(|q| q.strip_prefix("since="))
        .and_then(|s| s.parse::<Position>().ok());
    drop(handshake);
    // Subscribe first, then read history: nothing published in between is missed (the page
    // drops what it already has by offset).
    let member = cluster.hub().join(&mut socket);
    member.subscribe(ROOM);
    let position = match since {
        Some(since) => match cluster.broker().history(ROOM, since, 10_000).await {
            Ok(Recovery::Messages { messages, .. }) => {
                for delivery in &messages {
                    socket.send(render(delivery)).await?;
                }
                None
            }
            Ok(Recovery::TooOld { top } | Recovery::EpochChanged { top }) => Some(top),
            Ok(_) => None,
            Err(error) => {
                socket.send(Message::text(format!("ERR {error}"))).await?;
                None
            }
        },
        None => cluster.broker().position(ROOM).await.ok(),
    };
    if let Some(top) = position {
        // A new client, or one that cannot resume: where the room stands now.
        let why = if since.is_some() {
            "cannot resume"
        } else {
            "joined"
        };
        socket
            .send(Message::text(format!("RESET {top} {why}")))
            .await?;
    }
    while let Some(message) = socket.recv().await {
        let Some(text) = message?.as_text().map(str::to_owned) else {
            continue;
        };
        let line = Message::text(format!("[node {port}] {text}"));
        if let Err(error) = cluster.publish(ROOM, &line).await {
            socket.send(Message::text(format!("ERR {error}"))).await?;
        }
    }
    Ok(())
}

/// Runs one node: its broker connection, hub, pages and chat sockets.
async fn node(port: u16, url: String, restart: mpsc::Sender<()>) -> Result<(), BoxError> {
    let (broker, events) = Broker::redis(&url, RedisConfig::default().prefix("cluster-chat"))?;
    let cluster = Cluster::builder(broker, events).render(render).start();
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    println!("node on http://127.0.0.1:{port}/");
    let chat_cluster = cluster.clone();
    let handler = handler_fn(move |s: Session| chat(chat_cluster.clone(), port, s));
    let pages = tower::service_fn(move |request: Request<Incoming>| {
        let restart = restart.clone();
        async move {
            let mut response = Response::new(Full::new(Bytes::new()));
            match (request.method(), request.uri().path()) {
                (&Method::GET, "/") => {
                    *response.body_mut() = Full::new(Bytes::from_static(PAGE.as_bytes()));
                    response.headers_mut().insert(
                        header::CONTENT_TYPE,
                        header::HeaderValue::from_static("text/html; charset=utf-8"),
                    );
                }
                (&Method::POST, "/restart") => {
                    let _ = restart.try_send(());
                }
                _ => *response.status_mut() = StatusCode::NOT_FOUND,
            }
            Ok::<_, Infallible>(response)
        }
    });
    let service = tower::Layer::layer(&UpgradeLayer::new(handler), pages);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        };
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

/// One node's thread: its own runtime, dropped (closing every socket) on a restart.
fn node_thread(port: u16, url: &str) {
    loop {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => return eprintln!("node {port}: {error}"),
        };
        let (restart_tx, mut restart_rx) = mpsc::channel(1);
        let url = url.to_owned();
        let outcome = runtime.block_on(async move {
            tokio::select! {
                result = node(port, url, restart_tx) => result,
                _ = restart_rx.recv() => Ok(()),
            }
        });
        drop(runtime);
        if let Err(error) = outcome {
            return eprintln!("node {port}: {error}");
        }
        println!("node {port} stopped; back in 2 s");
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn main() -> Result<(), BoxError> {
    let mut url = String::from("redis://127.0.0.1:6379");
    let mut ports = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--redis" {
            url = args.next().ok_or("--redis URL")?;
        } else {
            ports.push(arg.parse::<u16>()?);
        }
    }
    if ports.is_empty() {
        ports = vec![3001, 3002];
    }
    let threads: Vec<_> = ports
        .into_iter()
        .map(|port| {
            let url = url.clone();
            std::thread::spawn(move || node_thread(port, &url))
        })
        .collect();
    for thread in threads {
        let _ = thread.join();
    }
    Ok(())
}

const PAGE: &str = r#"<!doctype html>
<meta charset="utf-8">
<title>cluster chat</title>
<style>
  body { font: 15px system-ui, sans-serif; max-width: 44em; margin: 2em auto; }
  #log { border: 1px solid #ccc; height: 22em; overflow-y: auto; padding: .5em; }
  .meta { color: #888; } .pos { color: #36c; font-family: monospace; }
</style>
<h1>cluster chat <small id="node"></small></h1>
<div id="log"></div>
<form id="form"><input id="text" autocomplete="off" size="50" autofocus> <button>send</button>
<button type="button" id="restart">restart this node</button></form>
<p class="meta" id="state"></p>
<script>
const log = document.getElementById("log"), state = document.getElementById("state");
document.getElementById("node").textContent = "on " + location.host;
let socket = null, last = null;                  // last: "EPOCH:OFFSET" of the newest message shown
const seen = new Set();
function line(cls, text) {
  const div = document.createElement("div"); div.className = cls; div.textContent = text;
  log.appendChild(div); log.scrollTop = log.scrollHeight;
}
function offset(position) { return Number(position.split(":")[1]); }
function connect() {
  const query = last ? "?since=" + last : "";
  socket = new WebSocket("ws://" + location.host + "/chat" + query);
  state.textContent = last ? "resuming after " + last : "connecting";
  socket.onopen = () => { state.textContent = "connected" + (last ? ", resumed after " + last : ""); };
  socket.onmessage = (event) => {
    const text = event.data, space = text.indexOf(" ");
    const head = text.slice(0, space), rest = text.slice(space + 1);
    if (head === "RESET") {                       // rest: "EPOCH:OFFSET why"
      const top = rest.split(" ")[0];
      if (last) line("meta", "cannot resume after " + last + ": history starts again at " + top);
      last = top; seen.clear(); return;
    }
    if (head === "ERR") { line("meta", text); return; }
    if (seen.has(head)) return;                   // history and live overlap at the seam
    seen.add(head);
    if (!last || last.split(":")[0] !== head.split(":")[0] || offset(head) > offset(last)) last = head;
    const div = document.createElement("div");
    div.innerHTML = '<span class="pos"></span> <span></span>';
    div.firstChild.textContent = head; div.lastChild.textContent = rest;
    log.appendChild(div); log.scrollTop = log.scrollHeight;
  };
  socket.onclose = () => { state.textContent = "disconnected; retrying"; setTimeout(connect, 1000); };
}
document.getElementById("form").onsubmit = (event) => {
  event.preventDefault();
  const input = document.getElementById("text");
  if (socket && socket.readyState === 1 && input.value) { socket.send(input.value); input.value = ""; }
};
document.getElementById("restart").onclick = () => fetch("/restart", { method: "POST" });
connect();
</script>
"#;
