//! The echo server: a WebSocket echo on `/ws`, a page that talks to it on `/`, and `/health`,
//! served by hyper with hyper-util's auto builder (HTTP/1.1, and cleartext HTTP/2 with
//! WebSocket sessions over extended CONNECT).
//!
//! ```sh
//! cargo run --example echo_server                       # http://127.0.0.1:3000
//! cargo run --example echo_server 0.0.0.0:8080
//! cargo run --features deflate --example echo_server    # with permessage-deflate
//! ```
//!
//! With the `deflate` feature, permessage-deflate is on: browsers offer it on every connection.
//! Each session logs what it negotiated, and the page shows what the browser agreed to
//! (`WebSocket.extensions`). On load the page sends a greeting, a 3 KB JSON text and a 4 KiB
//! binary message, and says `echo ok` once all three came back unchanged; `tests/interop/browser.sh`
//! checks exactly that with headless Chromium. `ECHO_DEFLATE=frugal` swaps the default settings
//! for the cheapest ones: no context takeover either way and small windows.
//!
//! `RUST_LOG=tower_ws=debug` shows each session's span and events. Ctrl-C shuts down
//! gracefully: HTTP connections finish, and open sockets get a 1001 close.
//!
//! Slow clients (README, "Slow and hostile clients"): hyper's `header_read_timeout` (10 s here;
//! hyper's default is 30 s once a timer is set) closes a connection whose request head has not
//! fully arrived in time, the slow-loris attack; hyper needs a timer for it (`TokioTimer`). It
//! starts only once hyper-util's auto builder has told HTTP/1 from HTTP/2, so a deadline for
//! each connection's first request covers the clients that send nothing, or the HTTP/2
//! preface slowly.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_ws::{Config, Session, UpgradeLayer, handler_fn};
use tracing_subscriber::EnvFilter;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = BoxBody<Bytes, Infallible>;

fn text(status: StatusCode, content_type: &'static str, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

/// Echoes every text and binary message until the client closes.
async fn echo(
    Session {
        mut socket,
        handshake,
        ..
    }: Session,
) -> Result<(), tower_ws::Error> {
    let agent = handshake.headers().get(header::USER_AGENT);
    #[cfg(feature = "deflate")]
    tracing::info!(deflate = ?handshake.deflate(), ?agent, "session open");
    #[cfg(not(feature = "deflate"))]
    tracing::info!(?agent, "session open");
    // Only the socket is kept: the request head is freed here, so an idle session costs a little
    // under 2 KiB (and, once compressed messages have gone both ways, the zlib state that
    // context takeover keeps: see `DeflateConfig`).
    drop(handshake);
    while let Some(message) = socket.recv().await {
        let message = message?;
        if message.is_text() || message.is_binary() {
            socket.send(message).await?;
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".to_owned())
        .parse()?;
    let listener = TcpListener::bind(addr).await?;
    tracing::info!("echo server on http://{addr} (WebSocket on ws://{addr}/ws)");
    serve(listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    Ok(())
}

/// Serves HTTP/1.1 and cleartext HTTP/2 connections from `listener` until `shutdown`
/// completes, then shuts down gracefully. The tests run the example through this function.
pub async fn serve(listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let echo = handler_fn(echo);
    // `/ws`: the layer answers handshakes; anything else sent there is told to upgrade.
    let config = Config::default();
    #[cfg(feature = "deflate")]
    let config = config.deflate(match std::env::var("ECHO_DEFLATE").as_deref() {
        Ok("frugal") => tower_ws::DeflateConfig::low_memory()
            .server_max_window_bits(11)
            .client_max_window_bits(10),
        _ => tower_ws::DeflateConfig::default(),
    });
    let websocket = UpgradeLayer::new(echo).config(config);
    let sessions = websocket.shutdown_handle();
    let ws = ServiceBuilder::new()
        .map_response(|response: Response<_>| response.map(BodyExt::boxed))
        .layer(websocket)
        .service_fn(|_: Request<Incoming>| async {
            Ok::<_, Infallible>(text(
                StatusCode::UPGRADE_REQUIRED,
                "text/plain; charset=utf-8",
                "this endpoint speaks WebSocket\n",
            ))
        });

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    builder.http2().enable_connect_protocol();
    let graceful = GracefulShutdown::new();
    let mut shutdown = pin!(shutdown);

    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Nagle's algorithm would hold back the tail of a message until the peer acknowledges
        // what came before, about 40 ms with delayed ACKs: over HTTP/2, where hyper writes each
        // frame separately, that is most round trips.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, %peer, "TCP_NODELAY not set");
        }
        let ws = ws.clone();
        let requested = Arc::new(AtomicBool::new(false));
        let seen = Arc::clone(&requested);
        let app = service_fn(move |mut request: Request<Incoming>| {
            seen.store(true, Ordering::Relaxed);
            // The layer puts the peer address in each session's span.
            request.extensions_mut().insert(peer);
            let ws = ws.clone();
            async move {
                match request.uri().path() {
                    "/ws" => ws.oneshot(request).await,
                    "/" => Ok(text(StatusCode::OK, "text/html; charset=utf-8", PAGE)),
                    "/health" => Ok(text(StatusCode::OK, "text/plain", "ok\n")),
                    _ => Ok(text(StatusCode::NOT_FOUND, "text/plain", "not found\n")),
                }
            }
        });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(app))
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            match first_request_within(FIRST_REQUEST, &requested, connection).await {
                Some(Err(error)) => {
                    tracing::debug!(%error, %peer, "connection ended with an error");
                }
                None => tracing::debug!(%peer, "no request in time: connection dropped"),
                Some(Ok(())) => {}
            }
        });
    }

    tracing::info!("shutting down");
    drop(listener);
    let (http, dropped) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()),
        sessions.shutdown(Duration::from_secs(10)),
    );
    if http.is_err() {
        tracing::warn!("some HTTP connections did not finish in time");
    }
    if dropped > 0 {
        tracing::warn!(dropped, "some WebSocket sessions did not close in time");
    }
}

/// How long a new connection has to send its first request.
const FIRST_REQUEST: Duration = Duration::from_secs(10);

/// Runs `connection`, unless no request has arrived on it (`requested` is still false) after
/// `deadline`: then drops it and returns `None`.
///
/// hyper-util's auto builder reads the first bytes to tell HTTP/1 from HTTP/2 before hyper's
/// `header_read_timeout` starts (hyperium/hyper#3756): without a deadline of its own, a client
/// that connects and sends nothing, or sends the HTTP/2 preface slowly, holds its connection
/// forever.
async fn first_request_within<F: Future>(
    deadline: Duration,
    requested: &AtomicBool,
    connection: F,
) -> Option<F::Output> {
    let mut connection = pin!(connection);
    tokio::select! {
        output = connection.as_mut() => Some(output),
        () = tokio::time::sleep(deadline) => {
            if requested.load(Ordering::Relaxed) {
                Some(connection.await)
            } else {
                None
            }
        }
    }
}

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>tower-ws echo</title>
<style>
  body { font: 16px system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; }
  #log { border: 1px solid #ccc; padding: .5rem; min-height: 8rem; white-space: pre-wrap; }
</style>
<h1>tower-ws echo</h1>
<form id="form"><input id="text" autocomplete="off" value="hello"> <button>Send</button></form>
<p id="state">connecting…</p>
<p id="check">checking the echo…</p>
<div id="log"></div>
<script>
  const log = (line) => { document.getElementById("log").textContent += line + "\n"; };
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/ws`);
  socket.binaryType = "arraybuffer";
  const state = document.getElementById("state");
  // What the page sends on open, and must get back unchanged, in order.
  const json = JSON.stringify(Array.from({ length: 60 }, (_, i) =>
    ({ id: i, user: "user" + (i % 7), text: "hello again", ok: i % 3 === 0 })));
  const bytes = new Uint8Array(4096).map((_, i) => (i * 7) % 251);
  const expected = ["hello from the page", json, bytes];
  const same = (got, want) => typeof want === "string" ? got === want
    : got instanceof ArrayBuffer && new Uint8Array(got).every((b, i) => b === want[i])
      && got.byteLength === want.length;
  socket.onopen = () => {
    state.textContent = `connected, extensions: ${socket.extensions || "none"}`;
    expected.forEach((message) => socket.send(message));
  };
  socket.onmessage = (event) => {
    if (expected.length > 0) {
      const want = expected.shift();
      const check = document.getElementById("check");
      if (!same(event.data, want)) {
        check.textContent = "echo differs";
        expected.length = 0;
      } else if (expected.length === 0) {
        check.textContent = `echo ok, extensions: ${socket.extensions || "none"}`;
      }
      if (typeof want !== "string" || want.length > 100) return;
    }
    log("echo: " + event.data);
  };
  socket.onclose = (event) => { state.textContent = `closed (${event.code})`; };
  document.getElementById("form").onsubmit = (event) => {
    event.preventDefault();
    const input = document.getElementById("text");
    socket.send(input.value);
    log("sent: " + input.value);
  };
</script>
</html>
"#;
