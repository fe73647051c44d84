//! Slow handshakes (slow-loris) against a server set up like the examples: hyper-util's auto
//! builder (HTTP/1.1 and HTTP/2) with hyper's `header_read_timeout`.
//!
//! A request head sent one byte per second is cut off by the header read timeout. But the auto
//! builder first reads up to 24 bytes to tell HTTP/1 from HTTP/2, and the timeout only starts
//! once it has decided (hyperium/hyper#3756): a client that sends nothing, or the HTTP/2
//! preface slowly, or the whole preface and then nothing, is never cut off. A deadline for the
//! connection's first request, which the examples add, closes them all.

mod support;

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use support::{connect, echo, inner, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as TMessage;
use tower::{ServiceBuilder, ServiceExt};
use tower_ws::UpgradeLayer;

/// The examples use 10 s; shorter here to keep the test short.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// The deadline for a connection's first request, when the server sets one.
const FIRST_REQUEST: Duration = Duration::from_secs(3);

const HEAD: &[u8] = b"GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n\
    Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// An echo server configured as the examples are, with or without the first-request deadline.
async fn serve_like_the_examples(first_request: Option<Duration>) -> SocketAddr {
    let app = ServiceBuilder::new()
        .layer(UpgradeLayer::new(echo()))
        .service(inner());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().enable_connect_protocol();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (builder, app) = (builder.clone(), app.clone());
            tokio::spawn(async move {
                // The workaround, as in `examples/echo_server.rs`: a request sets the flag, and a
                // connection without one at the deadline is dropped.
                let requested = Arc::new(AtomicBool::new(false));
                let flag = Arc::clone(&requested);
                let app = app.map_request(move |request: http::Request<_>| {
                    flag.store(true, Ordering::Relaxed);
                    request
                });
                let connection = builder.serve_connection_with_upgrades(
                    TokioIo::new(stream),
                    TowerToHyperService::new(app),
                );
                let mut connection = pin!(connection);
                let Some(first_request) = first_request else {
                    let _ = connection.await;
                    return;
                };
                tokio::select! {
                    _ = connection.as_mut() => {}
                    () = tokio::time::sleep(first_request) => {
                        if requested.load(Ordering::Relaxed) {
                            let _ = connection.await;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// A client that sends `bytes` one per `every` (all at once for `Duration::ZERO`, nothing for
/// an empty slice) and reports how long the server kept the connection: `None` if it was
/// still open after `watch`.
async fn kept_open_for(
    addr: SocketAddr,
    bytes: &'static [u8],
    every: Duration,
    watch: Duration,
) -> Option<Duration> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let (mut reader, mut writer) = stream.into_split();
    let sender = tokio::spawn(async move {
        if every.is_zero() {
            let _ = writer.write_all(bytes).await;
        } else {
            for byte in bytes {
                if writer.write_all(&[*byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(every).await;
            }
        }
        // Keep the write side open: a client that closed it would be cut off by that.
        std::future::pending::<()>().await;
    });
    let closed = tokio::time::timeout(watch, async {
        let mut buf = [0_u8; 1024];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok();
    sender.abort();
    closed
}

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test]
async fn a_request_head_sent_one_byte_per_second_is_cut_off_by_the_header_read_timeout() {
    let addr = serve_like_the_examples(None).await;
    let watch = HEADER_READ_TIMEOUT + Duration::from_secs(15);
    let closed = kept_open_for(addr, HEAD, SECOND, watch).await;
    let closed = closed.expect("the slow head was never cut off");
    eprintln!("a head sent one byte per second was cut off after {closed:?}");
    // The whole head would take over 150 s; the timeout runs from the first byte, and timers
    // do not fire early. The upper bound only allows for a loaded machine.
    assert!(closed >= HEADER_READ_TIMEOUT, "closed after {closed:?}");
    assert!(closed < HEADER_READ_TIMEOUT + Duration::from_secs(10));
}

#[tokio::test]
async fn the_auto_builders_version_sniff_is_not_covered_by_the_header_read_timeout() {
    // This documents hyper-util 0.1's behaviour (hyperium/hyper#3756); when it changes, update
    // the README's "Slow clients" section and the examples.
    let addr = serve_like_the_examples(None).await;
    let watch = HEADER_READ_TIMEOUT * 3;
    let (silent, slow_preface, stalled_preface) = tokio::join!(
        kept_open_for(addr, b"", SECOND, watch),
        kept_open_for(addr, H2_PREFACE, SECOND, watch),
        kept_open_for(addr, H2_PREFACE, Duration::ZERO, watch),
    );
    assert_eq!(silent, None, "a client that sends nothing is cut off");
    assert_eq!(slow_preface, None, "a slow HTTP/2 preface is cut off");
    assert_eq!(
        stalled_preface, None,
        "a stalled HTTP/2 handshake is cut off"
    );
}

#[tokio::test]
async fn hypers_own_http1_builder_times_out_a_client_that_sends_nothing() {
    // For servers without HTTP/2: hyper's HTTP/1 connection starts the header read timeout
    // when it starts, so it needs no deadline of its own.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = ServiceBuilder::new()
        .layer(UpgradeLayer::new(echo()))
        .service(inner());
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = TowerToHyperService::new(app.clone());
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades(),
            );
        }
    });
    let watch = HEADER_READ_TIMEOUT + Duration::from_secs(15);
    let closed = kept_open_for(addr, b"", SECOND, watch).await;
    let closed = closed.expect("a client that sends nothing was never cut off");
    assert!(closed >= HEADER_READ_TIMEOUT, "closed after {closed:?}");
}

#[tokio::test]
async fn a_first_request_deadline_cuts_off_what_the_header_read_timeout_does_not() {
    let addr = serve_like_the_examples(Some(FIRST_REQUEST)).await;
    // A WebSocket session opened in time outlives the deadline.
    let mut session = connect(addr, "/ws").await;
    let watch = FIRST_REQUEST + Duration::from_secs(15);
    let (silent, slow_preface, stalled_preface, slow_head) = tokio::join!(
        kept_open_for(addr, b"", SECOND, watch),
        kept_open_for(addr, H2_PREFACE, SECOND, watch),
        kept_open_for(addr, H2_PREFACE, Duration::ZERO, watch),
        kept_open_for(addr, HEAD, SECOND, watch),
    );
    for (what, closed) in [
        ("sends nothing", silent),
        ("sends the HTTP/2 preface slowly", slow_preface),
        ("stalls after the HTTP/2 preface", stalled_preface),
    ] {
        let closed = closed.unwrap_or_else(|| panic!("a client that {what} was never cut off"));
        assert!(closed >= FIRST_REQUEST, "{what}: closed after {closed:?}");
    }
    let slow_head = slow_head.expect("the slow head was never cut off");
    assert!(
        slow_head >= HEADER_READ_TIMEOUT,
        "closed after {slow_head:?}"
    );
    eprintln!(
        "cut off after: {silent:?} (nothing sent), {slow_preface:?} (slow preface), \
         {stalled_preface:?} (stalled preface), {slow_head:?} (slow head)"
    );

    within(10, session.send(TMessage::text("still here")))
        .await
        .unwrap();
    let echoed = within(10, session.next()).await.unwrap().unwrap();
    assert_eq!(echoed, TMessage::text("still here"));
}
