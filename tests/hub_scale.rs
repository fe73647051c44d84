//! 10,000 subscribers of one topic, each receiving every published message exactly once and
//! in order, over real sockets.
//!
//! The server runs in a child process (this test binary again, with [`CHILD`] set), so that
//! each process needs one file descriptor per socket and 10,000 sockets fit the usual 20,000
//! open-file limit. The child serves `/sub/{room}` and `/pub/{room}` through the layer and a
//! hub, and answers `count ROOM` on its stdin with the room's subscriber count.

mod support;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use support::{VALID, client_frame, handshake};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tower_ws::{Hub, Session, UpgradeLayer, handler_fn};

const CHILD: &str = "TOWER_WS_TEST_HUB_CHILD";
const SUBSCRIBERS: usize = 10_000;
const MESSAGES: u32 = 20;
/// Handshakes in flight at once: under the listener's backlog.
const IN_FLIGHT: usize = 256;

/// The child: a fan-out server, until its stdin closes.
async fn serve_child() {
    let hub = Hub::new();
    let handler = {
        let hub = hub.clone();
        handler_fn(
            move |Session {
                      mut socket,
                      handshake,
                      ..
                  }| {
                let hub = hub.clone();
                async move {
                    let path = handshake.uri().path().to_owned();
                    drop(handshake);
                    if let Some(room) = path.strip_prefix("/sub/") {
                        let member = hub.join(&mut socket);
                        member.subscribe(room);
                        while let Some(Ok(_)) = socket.recv().await {}
                    } else if let Some(room) = path.strip_prefix("/pub/") {
                        while let Some(Ok(message)) = socket.recv().await {
                            hub.publish(room, message);
                        }
                    }
                }
            },
        )
    };
    let fallback = tower::service_fn(|_: http::Request<hyper::body::Incoming>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(
            http_body_util::Empty::<bytes::Bytes>::new(),
        ))
    });
    let service = tower::Layer::layer(&UpgradeLayer::new(handler), fallback);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("ADDR {}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(room) = line.strip_prefix("count ") {
                println!("COUNT {}", hub.subscriber_count(room));
            }
        }
        std::process::exit(0);
    });
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

/// Opens a WebSocket by hand on `path`; returns the stream and any bytes after the `101`.
async fn open(addr: SocketAddr, path: &str) -> (TcpStream, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(&handshake("GET", path, &VALID))
        .await
        .unwrap();
    let mut buf = Vec::with_capacity(512);
    loop {
        let mut chunk = [0_u8; 512];
        let n = stream.read(&mut chunk).await.unwrap();
        assert_ne!(n, 0, "connection closed during the handshake");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            assert!(buf.starts_with(b"HTTP/1.1 101 "));
            return (stream, buf.split_off(end + 4));
        }
    }
}

/// Reads unmasked binary frames of 4-byte sequence numbers until `last`; returns them.
async fn receive(mut stream: TcpStream, mut buf: Vec<u8>, last: u32) -> Vec<u32> {
    let mut seen = Vec::new();
    loop {
        while buf.len() >= 2 {
            let len = usize::from(buf[1] & 0x7f);
            assert!(len < 126, "unexpected frame length");
            if buf.len() < 2 + len {
                break;
            }
            assert_eq!(buf[0], 0x82, "a final binary frame");
            assert_eq!(len, 4);
            let seq = u32::from_be_bytes(buf[2..6].try_into().unwrap());
            seen.push(seq);
            buf.drain(..2 + len);
            if seq == last {
                return seen;
            }
        }
        let mut chunk = [0_u8; 256];
        let n = stream.read(&mut chunk).await.unwrap();
        assert_ne!(n, 0, "closed before message {last}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_subscribers_each_receive_every_message_once() {
    if std::env::var_os(CHILD).is_some() {
        return serve_child().await;
    }
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "ten_thousand_subscribers_each_receive_every_message_once",
            "--exact",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr: SocketAddr = support::within(30, async {
        loop {
            let line = lines.next_line().await.unwrap().expect("child exited");
            if let Some(addr) = line.strip_prefix("ADDR ") {
                return addr.parse().unwrap();
            }
        }
    })
    .await;

    let gate = Arc::new(Semaphore::new(IN_FLIGHT));
    let opening: Vec<_> = (0..SUBSCRIBERS)
        .map(|_| {
            let gate = gate.clone();
            tokio::spawn(async move {
                let _permit = gate.acquire().await.unwrap();
                open(addr, "/sub/room").await
            })
        })
        .collect();
    let mut subscribers = Vec::with_capacity(SUBSCRIBERS);
    for handle in opening {
        subscribers.push(support::within(60, handle).await.unwrap());
    }
    // Every subscription in place before the first publish.
    support::within(60, async {
        loop {
            stdin.write_all(b"count room\n").await.unwrap();
            let line = lines.next_line().await.unwrap().expect("child exited");
            if line == format!("COUNT {SUBSCRIBERS}") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    let readers: Vec<_> = subscribers
        .into_iter()
        .map(|(stream, rest)| tokio::spawn(receive(stream, rest, MESSAGES - 1)))
        .collect();
    let (mut publisher, _) = open(addr, "/pub/room").await;
    for seq in 0..MESSAGES {
        publisher
            .write_all(&client_frame(true, 0x2, &seq.to_be_bytes()))
            .await
            .unwrap();
    }
    let expected: Vec<u32> = (0..MESSAGES).collect();
    for reader in readers {
        let seen = support::within(60, reader).await.unwrap();
        assert_eq!(seen, expected, "each message once, in order");
    }
}
