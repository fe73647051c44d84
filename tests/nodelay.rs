//! No Nagle stalls: 100 exchanges must take well under 100 x 40 ms, the delay Nagle's algorithm
//! meeting delayed ACKs adds to each.
//!
//! Over HTTP/2, 100 round trips of a 64 KiB message through the echo example's own accept loop
//! (it sets `TCP_NODELAY`: hyper writes each HTTP/2 frame separately, and the layer cannot reach
//! a connection hyper keeps). Over HTTP/1.1, 100 messages each answered with two (write, write,
//! read: the pattern Nagle's algorithm stalls on) through a server that leaves `TCP_NODELAY`
//! off (the layer sets it on the connection it takes over).
#![cfg(feature = "http2")]

pub mod support;

#[path = "../examples/echo_server.rs"]
#[expect(dead_code, reason = "the example's `main` is not run by the tests")]
pub mod example;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Empty;
use hyper::ext::Protocol;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{bounded, inner, raw_ws, serve};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceBuilder;
use tower_ws::{Config, Message, Role, UpgradeLayer, WebSocket};

/// Round trips per run, and the size of each message.
const ROUND_TRIPS: u32 = 100;
const SIZE: usize = 64 << 10;

/// Half of `ROUND_TRIPS` x 40 ms: a stall on even half of the round trips fails the test, while
/// a debug build on a busy machine stays far below it (a few milliseconds per round trip).
const LIMIT: Duration = Duration::from_secs(2);

/// Echoes a 64 KiB message `ROUND_TRIPS` times and returns how long it took.
async fn round_trips<Io: AsyncRead + AsyncWrite + Unpin>(socket: &mut WebSocket<Io>) -> Duration {
    let payload = Bytes::from((0..SIZE).map(|i| i.to_le_bytes()[0]).collect::<Vec<_>>());
    // One round trip first, so that connection setup is not timed.
    bounded(socket.send(Message::binary(payload.clone())))
        .await
        .unwrap();
    bounded(socket.recv()).await.unwrap().unwrap();
    let start = Instant::now();
    for _ in 0..ROUND_TRIPS {
        bounded(socket.send(Message::binary(payload.clone())))
            .await
            .unwrap();
        let echoed = bounded(socket.recv()).await.unwrap().unwrap();
        assert_eq!(echoed.as_payload().len(), SIZE);
    }
    start.elapsed()
}

/// A client TCP connection with `TCP_NODELAY`, so that only the server's side can stall.
async fn connect(addr: SocketAddr) -> TcpStream {
    let stream = bounded(TcpStream::connect(addr)).await.unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_echo_example_over_http2_has_no_nagle_stall() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(example::serve(listener, std::future::pending()));

    let (mut sender, connection) = bounded(
        hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .handshake(TokioIo::new(connect(addr).await)),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    // An ordinary request first, so the server's SETTINGS (extended CONNECT allowed) are in.
    let health = Request::get(format!("http://{addr}/health"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    assert_eq!(
        bounded(sender.send_request(health)).await.unwrap().status(),
        StatusCode::OK
    );
    let mut request = Request::builder()
        .method(Method::CONNECT)
        .uri(format!("http://{addr}/ws"))
        .header("sec-websocket-version", "13")
        .body(Empty::new())
        .unwrap();
    request
        .extensions_mut()
        .insert(Protocol::from_static("websocket"));
    let mut response = bounded(sender.send_request(request)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let upgraded = bounded(hyper::upgrade::on(&mut response)).await.unwrap();
    let mut socket = WebSocket::new(TokioIo::new(upgraded), Role::Client, Config::default());

    let took = round_trips(&mut socket).await;
    assert!(
        took < LIMIT,
        "{ROUND_TRIPS} round trips of {SIZE} B over HTTP/2 took {took:?}: a Nagle stall is back"
    );
}

/// Answers each message with two: the write-write-read pattern Nagle's algorithm stalls on,
/// whatever the size (the second write waits for the ACK of the first, which the client delays
/// because it is waiting for the second).
fn answer_twice() -> impl tower_ws::Handler + Sync {
    tower_ws::handler_fn(|tower_ws::Session { mut socket, .. }| async move {
        while let Some(message) = socket.recv().await {
            let message = message?;
            if message.is_binary() {
                socket.send(message.clone()).await?;
                socket.send(message).await?;
            }
        }
        Ok::<_, tower_ws::Error>(())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layer_turns_nagle_off_on_http1_connections() {
    // `serve` leaves TCP_NODELAY off on the connections it accepts.
    let addr = serve(
        ServiceBuilder::new()
            .layer(UpgradeLayer::new(answer_twice()))
            .service(inner()),
    )
    .await;
    // The handshake by hand; the client's side has TCP_NODELAY.
    let stream = raw_ws(addr, "/ws").await;
    let mut socket = WebSocket::new(stream, Role::Client, Config::default());
    let payload = Bytes::from_static(b"sixteen bytes ..");
    let start = Instant::now();
    for _ in 0..ROUND_TRIPS {
        bounded(socket.send(Message::binary(payload.clone())))
            .await
            .unwrap();
        for _ in 0..2 {
            let echoed = bounded(socket.recv()).await.unwrap().unwrap();
            assert_eq!(echoed.as_payload(), &payload);
        }
    }
    let took = start.elapsed();
    assert!(
        took < LIMIT,
        "{ROUND_TRIPS} exchanges over HTTP/1.1 took {took:?}: a Nagle stall is back"
    );
}

#[tokio::test]
async fn the_handler_reaches_the_tcp_stream_and_sees_nagle_off() {
    let report = tower_ws::handler_fn(|tower_ws::Session { mut socket, .. }| async move {
        // Asked first, so the answer cannot arrive with the handshake response.
        let _ = socket.recv().await;
        let nodelay = socket
            .get_ref()
            .tcp_stream()
            .map(|tcp| tcp.nodelay().unwrap());
        socket.send(format!("{nodelay:?}")).await
    });
    let addr = serve(
        ServiceBuilder::new()
            .layer(UpgradeLayer::new(report))
            .service(inner()),
    )
    .await;
    let mut socket = WebSocket::new(raw_ws(addr, "/ws").await, Role::Client, Config::default());
    bounded(socket.send("nodelay?")).await.unwrap();
    let message = bounded(socket.recv()).await.unwrap().unwrap();
    assert_eq!(message.as_text(), Some("Some(true)"));
}
