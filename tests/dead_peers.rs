//! Peers that vanish without a close frame, through a real hyper server and the layer: a TCP
//! reset ends the handler's stream with an I/O error at once, and a half-open connection (a
//! proxy in between that stops forwarding and never closes) is found by keepalive, which ends
//! the stream with a timeout error `interval + timeout` after the peer was last heard.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use support::{
    VALID, client_frame, connect, handshake, inner, raw, raw_ws, read_frame, serve, within,
    write_raw,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as TMessage;
use tower::ServiceBuilder;
use tower_ws::{Config, ErrorKind, Message, Session, UpgradeLayer, handler_fn};

const INTERVAL: Duration = Duration::from_secs(1);
const TIMEOUT: Duration = Duration::from_secs(1);

/// How a session's tasks ended: which task (`"reader"` or `"writer"`), the error kind it ended
/// with (`None` for a clean end), and when.
type Ended = mpsc::UnboundedReceiver<(&'static str, Option<ErrorKind>, Instant)>;

/// A server whose handler echoes text until its stream ends, and reports how it ended. On
/// `/talk` a second task also sends 16 KiB messages as fast as `send` takes them, over the
/// split socket, and reports how its `send` failed.
async fn server(config: Config) -> (SocketAddr, Ended) {
    let (ended_tx, ended) = mpsc::unbounded_channel();
    let handler = handler_fn(
        move |Session {
                  socket, handshake, ..
              }| {
            let ended = ended_tx.clone();
            async move {
                let (mut reader, writer) = socket.split();
                let writer = Arc::new(tokio::sync::Mutex::new(writer));
                if handshake.uri().path() == "/talk" {
                    let (ended, writer) = (ended.clone(), Arc::clone(&writer));
                    tokio::spawn(async move {
                        let payload = bytes::Bytes::from(vec![0x42_u8; 16 << 10]);
                        let error = loop {
                            let message = Message::binary(payload.clone());
                            if let Err(error) = writer.lock().await.send(message).await {
                                break error;
                            }
                        };
                        let _ = ended.send(("writer", Some(error.kind()), Instant::now()));
                    });
                }
                let outcome = loop {
                    match reader.recv().await {
                        Some(Ok(Message::Text(text))) => {
                            if let Err(error) = writer.lock().await.send(text).await {
                                break Some(error.kind());
                            }
                        }
                        Some(Ok(_)) => {}
                        Some(Err(error)) => break Some(error.kind()),
                        None => break None,
                    }
                };
                let _ = ended.send(("reader", outcome, Instant::now()));
            }
        },
    );
    let layer = UpgradeLayer::new(handler).config(config);
    let addr = serve(ServiceBuilder::new().layer(layer).service(inner())).await;
    (addr, ended)
}

/// Resets the connection: `SO_LINGER` 0, then close, so the kernel sends RST.
fn reset(stream: TcpStream) {
    stream.set_zero_linger().unwrap();
    drop(stream);
}

#[tokio::test]
async fn a_reset_ends_the_handlers_stream_with_an_io_error_at_once() {
    // Keepalive would take 60 s: whatever ends these sessions sooner is the reset itself.
    let config = Config::default().keepalive(Duration::from_secs(30), Duration::from_secs(30));
    let (addr, mut ended) = server(config).await;

    // A handler waiting in `recv`.
    let mut idle = raw_ws(addr, "/ws").await;
    write_raw(&mut idle, &client_frame(true, 1, b"hello")).await;
    assert_eq!(
        within(5, read_frame(&mut idle)).await.unwrap().payload,
        b"hello"
    );
    let reset_at = Instant::now();
    reset(idle);
    let (who, outcome, at) = within(10, ended.recv()).await.unwrap();
    assert_eq!((who, outcome), ("reader", Some(ErrorKind::Io)));
    eprintln!("reset seen by a reading handler after {:?}", at - reset_at);

    // A handler sending from another task while its reader waits.
    // The server talks at once: the answer to the handshake is not alone.
    let talker = raw(addr, &handshake("GET", "/talk", &VALID)).await.stream;
    tokio::time::sleep(Duration::from_millis(50)).await;
    reset(talker);
    let mut outcomes = Vec::new();
    for _ in 0..2 {
        let (who, outcome, _) = within(10, ended.recv()).await.unwrap();
        outcomes.push((who, outcome));
    }
    outcomes.sort_by_key(|(who, _)| *who);
    // The writer's `send` fails on the reset; the reader's stream ends with it too, or just
    // ends if the failed send ended the connection first.
    assert!(
        matches!(outcomes[0], ("reader", None | Some(ErrorKind::Io))),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[1], ("writer", Some(ErrorKind::Io)), "{outcomes:?}");
}

/// A TCP proxy in front of `upstream` that forwards both ways until `freeze` is notified, then
/// stops reading and writing on both sides and keeps both connections open: a half-open
/// connection as the server sees it when the client's machine or network disappears.
async fn freezing_proxy(upstream: SocketAddr, freeze: Arc<Notify>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut client, _) = listener.accept().await.unwrap();
            let freeze = Arc::clone(&freeze);
            tokio::spawn(async move {
                let mut server = TcpStream::connect(upstream).await.unwrap();
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    () = freeze.notified() => {}
                }
                // Hold both connections, silently, until the test ends.
                std::future::pending::<()>().await;
                drop((client, server));
            });
        }
    });
    addr
}

#[tokio::test]
async fn keepalive_ends_a_half_open_session_within_interval_plus_timeout() {
    let (addr, mut ended) = server(Config::default().keepalive(INTERVAL, TIMEOUT)).await;
    // The same server without keepalive: nothing ends its half-open session.
    let (addr_without, mut ended_without) = server(Config::default()).await;
    let freeze = Arc::new(Notify::new());
    let proxy = freezing_proxy(addr, Arc::clone(&freeze)).await;
    let proxy_without = freezing_proxy(addr_without, Arc::clone(&freeze)).await;

    let mut client = connect(proxy, "/ws").await;
    let mut client_without = connect(proxy_without, "/ws").await;
    let mut sent_at = Instant::now();
    for client in [&mut client_without, &mut client] {
        // The keepalive server last hears from its client after this instant (its read of the
        // message), and the freeze comes later: it is the earliest its timers may count from.
        sent_at = Instant::now();
        within(5, client.send(TMessage::text("through the proxy")))
            .await
            .unwrap();
        let echo = within(5, client.next()).await.unwrap().unwrap();
        assert_eq!(echo, TMessage::text("through the proxy"));
    }
    freeze.notify_waiters();

    let (who, outcome, at) = within(30, ended.recv()).await.unwrap();
    let after = at - sent_at;
    assert_eq!((who, outcome), ("reader", Some(ErrorKind::Timeout)));
    eprintln!("half-open session ended after {after:?} (keepalive {INTERVAL:?} + {TIMEOUT:?})");
    // Timers never fire early; the upper bound only allows for a loaded machine.
    assert!(after >= INTERVAL + TIMEOUT, "ended after {after:?}");
    assert!(
        after < INTERVAL + TIMEOUT + Duration::from_secs(10),
        "ended after {after:?}"
    );
    assert!(
        ended_without.try_recv().is_err(),
        "without keepalive, nothing tells a half-open connection from an idle one"
    );
    drop((client, client_without));
}

#[tokio::test]
async fn a_sender_stuck_on_a_half_open_session_is_released_when_keepalive_ends_it() {
    let config = Config::default()
        .keepalive(INTERVAL, TIMEOUT)
        .write_buffer_high_water(16 << 10)
        .close_timeout(Duration::from_secs(1));
    let (addr, mut ended) = server(config).await;
    let freeze = Arc::new(Notify::new());
    let proxy = freezing_proxy(addr, Arc::clone(&freeze)).await;
    // The client never sends a frame: the server last heard from it in the handshake.
    let heard_at = Instant::now();
    let client = connect(proxy, "/talk").await;
    freeze.notify_waiters();

    // The writer task fills the kernel's buffers and then the queue, and waits in `send`;
    // the reader's keepalive gives up. Both must end: the waiting `send` with an error.
    let mut outcomes = Vec::new();
    for _ in 0..2 {
        let (who, outcome, at) = within(30, ended.recv()).await.unwrap();
        outcomes.push((who, outcome, at - heard_at));
    }
    outcomes.sort_by_key(|(who, ..)| *who);
    eprintln!("half-open, writer stuck: {outcomes:?}");
    let [(_, read, read_after), (_, write, write_after)] = outcomes[..] else {
        unreachable!()
    };
    assert_eq!(read, Some(ErrorKind::Timeout), "{outcomes:?}");
    assert!(read_after >= INTERVAL + TIMEOUT, "{outcomes:?}");
    assert!(write.is_some(), "{outcomes:?}");
    // After keepalive gives up, the close frame cannot go out either (the queue is full): the
    // connection is closed after the close timeout, and the waiting `send` fails.
    let bound = INTERVAL + TIMEOUT + Duration::from_secs(1) + Duration::from_secs(10);
    assert!(read_after < bound && write_after < bound, "{outcomes:?}");
    drop(client);
}
