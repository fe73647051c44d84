//! Fan-out over real sockets: a hub behind the layer, speaking the broadcast bench protocol
//! (`/sub/{room}`, `/pub/{room}`) plus `/mix/{room}` (a subscriber that also sends on its own),
//! read by tokio-tungstenite clients or raw TCP.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use support::{Client, bounded, connect, read_frame, serve_http1};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message as TMessage;
use tower_ws::{Config, Hub, Message, Session, SlowPolicy, UpgradeLayer, handler_fn};

/// A server for `hub`: `/sub/{room}` subscribes, `/pub/{room}` publishes what it receives,
/// `/mix/{room}` subscribes and, for each text `n` it receives, sends `n` numbered messages
/// alternating a direct send and a publish to its own room (so the numbers arrive in order only
/// if direct sends and topic messages keep the order they were made in).
async fn server(hub: Hub, config: Config) -> SocketAddr {
    let handler = handler_fn(
        move |Session {
                  mut socket,
                  handshake,
                  ..
              }| {
            let hub = hub.clone();
            async move {
                let path = handshake.uri().path().to_owned();
                if let Some(room) = path.strip_prefix("/sub/") {
                    let member = hub.join(&mut socket);
                    member.subscribe(room);
                    while let Some(Ok(_)) = socket.recv().await {}
                } else if let Some(room) = path.strip_prefix("/pub/") {
                    while let Some(Ok(message)) = socket.recv().await {
                        hub.publish(room, message);
                    }
                } else if let Some(room) = path.strip_prefix("/mix/") {
                    let member = hub.join(&mut socket);
                    member.subscribe(room);
                    while let Some(Ok(message)) = socket.recv().await {
                        let Some(n) = message.as_text().and_then(|t| t.parse::<u32>().ok()) else {
                            continue;
                        };
                        for i in 0..n {
                            let text = format!("mix {i}");
                            if i % 2 == 0 {
                                if socket.send(Message::text(text)).await.is_err() {
                                    return;
                                }
                            } else {
                                hub.publish(room, Message::text(text));
                            }
                        }
                    }
                }
            }
        },
    );
    let fallback = tower::service_fn(|_: http::Request<hyper::body::Incoming>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(
            http_body_util::Empty::<bytes::Bytes>::new(),
        ))
    });
    serve_http1(tower::Layer::layer(
        &UpgradeLayer::new(handler).config(config),
        fallback,
    ))
    .await
}

/// Waits until `topic` has `n` subscribers.
async fn until_subscribed(hub: &Hub, topic: &str, n: usize) {
    bounded(async {
        while hub.subscriber_count(topic) != n {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
}

async fn next_text(client: &mut Client) -> String {
    loop {
        match bounded(client.next()).await {
            Some(Ok(TMessage::Text(text))) => return text.as_str().to_owned(),
            Some(Ok(TMessage::Ping(_) | TMessage::Pong(_))) => {}
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_topic_keeps_its_order_for_every_subscriber() {
    let hub = Hub::new();
    let addr = server(hub.clone(), Config::default()).await;
    let mut subscribers = Vec::new();
    for room in ["a", "b"] {
        for _ in 0..5 {
            subscribers.push((room, connect(addr, &format!("/sub/{room}")).await));
        }
    }
    until_subscribed(&hub, "a", 5).await;
    until_subscribed(&hub, "b", 5).await;
    let mut pub_a = connect(addr, "/pub/a").await;
    let mut pub_b = connect(addr, "/pub/b").await;
    tokio::join!(
        async {
            for i in 0..PER_TOPIC {
                pub_a.send(TMessage::text(format!("a {i}"))).await.unwrap();
            }
        },
        async {
            for i in 0..PER_TOPIC {
                pub_b.send(TMessage::text(format!("b {i}"))).await.unwrap();
            }
        }
    );
    for (room, client) in &mut subscribers {
        for i in 0..PER_TOPIC {
            assert_eq!(next_text(client).await, format!("{room} {i}"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_sends_and_topic_messages_keep_the_order_they_were_made_in() {
    let hub = Hub::new();
    let addr = server(hub.clone(), Config::default()).await;
    let mut mixer = connect(addr, "/mix/room").await;
    let mut watcher = connect(addr, "/sub/room").await;
    until_subscribed(&hub, "room", 2).await;
    mixer.send(TMessage::text(MIXED.to_string())).await.unwrap();
    for i in 0..MIXED {
        assert_eq!(next_text(&mut mixer).await, format!("mix {i}"));
    }
    // The other subscriber sees only the published half, in order.
    for i in (1..MIXED).step_by(2) {
        assert_eq!(next_text(&mut watcher).await, format!("mix {i}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_socket_is_unsubscribed() {
    let hub = Hub::new();
    let addr = server(hub.clone(), Config::default()).await;
    let mut first = connect(addr, "/sub/room").await;
    let second = connect(addr, "/sub/room").await;
    until_subscribed(&hub, "room", 2).await;
    first.close(None).await.unwrap();
    until_subscribed(&hub, "room", 1).await;
    // A socket that goes without a close handshake is unsubscribed too.
    drop(second);
    until_subscribed(&hub, "room", 0).await;
    assert_eq!(hub.topic_count(), 0);
    assert_eq!(hub.publish("room", Message::text("nobody")).matched, 0);
}

/// Reads binary messages until `last` arrives; checks they come in increasing order; returns
/// how many arrived.
async fn read_until(client: &mut Client, last: u32) -> u32 {
    let mut received = 0;
    let mut previous = None;
    loop {
        match bounded(client.next()).await {
            Some(Ok(TMessage::Binary(data))) => {
                let seq = u32::from_be_bytes(data[..4].try_into().unwrap());
                assert!(previous < Some(seq), "{seq} after {previous:?}");
                previous = Some(seq);
                received += 1;
                if seq == last {
                    return received;
                }
            }
            other => panic!("expected a binary message, got {other:?}"),
        }
    }
}

/// Messages per publisher in the ordering test.
const PER_TOPIC: usize = 500;
/// Messages the mixing socket makes.
const MIXED: u32 = 2_000;
/// Messages published in the slow-subscriber and churn tests.
const COUNT: u32 = 2_000;

const LIMIT: usize = 256 << 10;
const HIGH_WATER: usize = 16 << 10;
/// Messages in the slow-subscriber tests: 2,000 of them make 32 MB, more than loopback's
/// socket buffers take.
const SIZE: usize = 16 << 10;

/// [`raw_ws`] with a 4 KiB receive buffer, set before connecting (so the window stays small).
async fn raw_ws_small_buffer(addr: SocketAddr, path: &str) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = bounded(socket.connect(addr)).await.unwrap();
    stream
        .write_all(&support::handshake("GET", path, &support::VALID))
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0_u8];
        assert_eq!(bounded(stream.read(&mut byte)).await.unwrap(), 1);
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101 "));
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_does_not_read_loses_messages_counted_and_bounded() {
    let hub = Hub::builder().max_queued(LIMIT).build();
    let config = Config::default().write_buffer_high_water(HIGH_WATER);
    let addr = server(hub.clone(), config).await;
    // The slow one: a raw socket that never reads, with a small receive buffer.
    let mut slow = raw_ws_small_buffer(addr, "/sub/room").await;
    let mut fast = connect(addr, "/sub/room").await;
    until_subscribed(&hub, "room", 2).await;
    // The reader keeps the client (and so its subscription) until joined.
    let reader = tokio::spawn(async move { (read_until(&mut fast, COUNT - 1).await, fast) });
    let mut totals = [0; 4];
    for round in 0..COUNT / 2 {
        let report = publish_many_from(&hub, "room", round * 2, 2, SIZE);
        for (t, r) in totals.iter_mut().zip(report) {
            *t += r;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let [matched, queued, dropped, closed] = totals;
    assert_eq!(matched, 2 * COUNT as usize);
    assert_eq!(closed, 0);
    assert!(dropped > 0, "the slow subscriber never hit its limit");
    // The fast subscriber got everything, in order.
    let (received, _fast) = bounded(reader).await.unwrap();
    assert_eq!(received, COUNT);
    // Everything the slow one was not given was counted against it: 32 MB published to it, at
    // most its limit waiting in its queue, its write queue's high-water mark and what the
    // kernel's socket buffers took.
    assert_eq!(queued + dropped, matched);
    assert!(dropped > COUNT as usize / 2, "dropped only {dropped}");
    assert_eq!(hub.subscriber_count("room"), 2);
    // What was queued for it reaches it when it reads at last: the first messages, in order,
    // none missing (the new messages were dropped, not the ones already waiting).
    let for_slow = queued - COUNT as usize;
    for expected in 0..for_slow {
        let seq = bounded(read_raw_binary(&mut slow)).await;
        assert_eq!(seq, u32::try_from(expected).unwrap());
    }
}

/// Reads one unmasked binary frame from a raw server stream; returns its sequence number.
async fn read_raw_binary(stream: &mut tokio::net::TcpStream) -> u32 {
    use tokio::io::AsyncReadExt;
    let mut head = [0_u8; 2];
    stream.read_exact(&mut head).await.unwrap();
    assert_eq!(head[0], 0x82, "a final binary frame");
    let len = match head[1] {
        126 => usize::from(stream.read_u16().await.unwrap()),
        127 => usize::try_from(stream.read_u64().await.unwrap()).unwrap(),
        n => usize::from(n),
    };
    let mut payload = vec![0_u8; len];
    stream.read_exact(&mut payload).await.unwrap();
    u32::from_be_bytes(payload[..4].try_into().unwrap())
}

/// Publishes `count` binary messages of `size` bytes (a big-endian sequence number first,
/// from `first`) to `topic`; returns the summed reports: matched, queued, dropped, closed.
fn publish_many_from(hub: &Hub, topic: &str, first: u32, count: u32, size: usize) -> [usize; 4] {
    let mut totals = [0; 4];
    for seq in first..first + count {
        let mut payload = vec![0_u8; size];
        payload[..4].copy_from_slice(&seq.to_be_bytes());
        let report = hub.publish(topic, Message::binary(payload));
        assert_eq!(
            report.matched,
            report.queued + report.dropped + report.closed
        );
        for (t, r) in
            totals
                .iter_mut()
                .zip([report.matched, report.queued, report.dropped, report.closed])
        {
            *t += r;
        }
    }
    totals
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_close_policy_a_subscriber_that_does_not_read_is_closed_with_1008() {
    let hub = Hub::builder()
        .max_queued(LIMIT)
        .slow_policy(SlowPolicy::Close)
        .build();
    let config = Config::default().write_buffer_high_water(HIGH_WATER);
    let addr = server(hub.clone(), config).await;
    let mut slow = raw_ws_small_buffer(addr, "/sub/room").await;
    let mut fast = connect(addr, "/sub/room").await;
    until_subscribed(&hub, "room", 2).await;
    // The reader keeps the client (and so its subscription) until joined.
    let reader = tokio::spawn(async move { (read_until(&mut fast, COUNT - 1).await, fast) });
    let mut closed = 0;
    for round in 0..COUNT / 2 {
        let [_, _, dropped, c] = publish_many_from(&hub, "room", round * 2, 2, SIZE);
        assert_eq!(dropped, 0);
        closed += c;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(closed, 1, "the slow subscriber is closed once");
    assert_eq!(hub.subscriber_count("room"), 1);
    let (received, _fast) = bounded(reader).await.unwrap();
    assert_eq!(received, COUNT);
    // The slow socket, read at last: data frames in order (what was written before the limit),
    // then a close frame with 1008.
    let mut previous = None;
    loop {
        let frame = bounded(read_frame(&mut slow)).await.expect("a close frame");
        match frame.opcode {
            0x2 => {
                let seq = u32::from_be_bytes(frame.payload[..4].try_into().unwrap());
                assert!(previous < Some(seq));
                previous = Some(seq);
            }
            0x8 => {
                assert_eq!(
                    u16::from_be_bytes([frame.payload[0], frame.payload[1]]),
                    1008
                );
                assert_eq!(&frame.payload[2..], b"subscriber too slow");
                break;
            }
            other => panic!("unexpected opcode {other}"),
        }
    }
    // What reached it is bounded by its limit, the write queue and the socket buffers: far
    // less than the 32 MB published.
    assert!(previous.unwrap() < COUNT / 2, "received up to {previous:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_while_subscribers_come_and_go() {
    let hub = Hub::new();
    let addr = server(hub.clone(), Config::default()).await;
    let mut stayers = Vec::new();
    for _ in 0..4 {
        stayers.push(connect(addr, "/sub/room").await);
    }
    until_subscribed(&hub, "room", 4).await;
    let done = Arc::new(Notify::new());
    let churn = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut cycles = 0;
            loop {
                let mut visitors = Vec::new();
                for _ in 0..8 {
                    visitors.push(connect(addr, "/sub/room").await);
                }
                // Read a little, then leave: half with a close handshake, half abruptly.
                for (i, mut visitor) in visitors.into_iter().enumerate() {
                    let _ = tokio::time::timeout(Duration::from_millis(2), visitor.next()).await;
                    if i % 2 == 0 {
                        let _ = visitor.close(None).await;
                    }
                }
                cycles += 1;
                if tokio::time::timeout(Duration::from_millis(1), done.notified())
                    .await
                    .is_ok()
                {
                    return cycles;
                }
            }
        })
    };
    let readers: Vec<_> = stayers
        .into_iter()
        .map(|mut c| tokio::spawn(async move { (read_until(&mut c, COUNT - 1).await, c) }))
        .collect();
    for round in 0..COUNT / 50 {
        publish_many_from(&hub, "room", round * 50, 50, 64);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    done.notify_one();
    let cycles = bounded(churn).await.unwrap();
    assert!(cycles > 0);
    let mut stayers = Vec::new();
    for reader in readers {
        let (received, client) = bounded(reader).await.unwrap();
        assert_eq!(received, COUNT, "a stayer lost messages");
        stayers.push(client);
    }
    // Every visitor is gone, every stayer is still there.
    until_subscribed(&hub, "room", 4).await;
    drop(stayers);
    until_subscribed(&hub, "room", 0).await;
}
