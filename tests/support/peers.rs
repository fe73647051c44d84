//! Peers for the client tests: a tokio-tungstenite echo server, and a scripted HTTP server that
//! answers the handshake with whatever a test needs.
// Each test binary that includes this file uses a different subset of it, so `expect` would be
// unfulfilled in some of them.
#![allow(dead_code, reason = "shared by several test binaries")]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::HeaderMap;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

/// Runs a test body with a deadline, so no test can hang.
pub(crate) async fn bounded<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .expect("test took more than 20 s")
}

/// What the echo server saw of a handshake request.
#[derive(Debug)]
pub(crate) struct Seen {
    pub(crate) uri: http::Uri,
    pub(crate) headers: HeaderMap,
}

/// Echoes text and binary messages back until the peer closes.
pub(crate) async fn echo<S: AsyncRead + AsyncWrite + Unpin>(
    mut ws: tokio_tungstenite::WebSocketStream<S>,
) {
    while let Some(Ok(message)) = ws.next().await {
        if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
            break;
        }
    }
}

/// Accepts the handshake on `stream` as tokio-tungstenite does, choosing `protocol` when the
/// client offered it, reports the request, and echoes.
pub(crate) async fn serve_echo<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    protocol: Option<&'static str>,
    seen: mpsc::UnboundedSender<Seen>,
) {
    #[expect(
        clippy::result_large_err,
        reason = "tokio-tungstenite's callback signature"
    )]
    let callback = move |request: &Request, mut response: Response| {
        let _ = seen.send(Seen {
            uri: request.uri().clone(),
            headers: request.headers().clone(),
        });
        let offered = request
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if let Some(p) = protocol.filter(|p| offered.split(',').any(|o| o.trim() == *p)) {
            response
                .headers_mut()
                .insert("sec-websocket-protocol", p.parse().unwrap());
        }
        Ok(response)
    };
    if let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await {
        echo(ws).await;
    }
}

/// A tokio-tungstenite echo server on loopback; it serves every connection until the test
/// ends.
pub(crate) async fn echo_server(
    protocol: Option<&'static str>,
) -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_echo(stream, protocol, tx.clone()));
        }
    });
    (addr, rx)
}

/// Reads a request head (up to the blank line) and returns it as text.
pub(crate) async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0_u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// The `Sec-WebSocket-Accept` value for the key in a request head.
pub(crate) fn accept_for(head: &str) -> String {
    let key = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-key")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    derive_accept_key(key.as_bytes())
}

/// A server that answers one handshake with `answer(accept_value)` (written as given; `None`
/// writes nothing), then keeps the connection open until the client leaves.
pub(crate) async fn scripted_server<F>(answer: F) -> SocketAddr
where
    F: FnOnce(&str) -> Option<Vec<u8>> + Send + 'static,
{
    scripted(answer, false).await
}

/// Like [`scripted_server`], but closes the connection right after the answer.
pub(crate) async fn scripted_then_close<F>(answer: F) -> SocketAddr
where
    F: FnOnce(&str) -> Option<Vec<u8>> + Send + 'static,
{
    scripted(answer, true).await
}

async fn scripted<F>(answer: F, close: bool) -> SocketAddr
where
    F: FnOnce(&str) -> Option<Vec<u8>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        let head = read_head(&mut stream).await;
        if let Some(bytes) = answer(&accept_for(&head)) {
            let _ = stream.write_all(&bytes).await;
        }
        if close {
            return;
        }
        let mut sink = [0_u8; 1024];
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    });
    addr
}
