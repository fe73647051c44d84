//! Server nodes for the cluster tests: each node its own thread, Tokio runtime, TCP listener,
//! broker connection and hub, speaking the broadcast bench protocol.
//!
//! - `GET /sub/{room}[?since=EPOCH:OFFSET]`: the socket subscribes to `room`; with `since` it
//!   first gets what history holds after that position, or `RESET <reason> <top>`.
//! - `GET /pub/{room}`: every message the socket sends is published to `room` on every node;
//!   a publish that fails is answered with `ERR <error>`.
//!
//! Text deliveries are rendered `POSITION PAYLOAD` (`-` for no position, NATS), so clients
//! know where to resume.
#![allow(missing_docs, missing_debug_implementations, reason = "test helpers")]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread;

use futures_util::{SinkExt, StreamExt};
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite;
use tower::ServiceBuilder;
#[cfg(feature = "nats")]
use tower_ws::broker::NatsConfig;
#[cfg(feature = "redis")]
use tower_ws::broker::RedisConfig;
use tower_ws::broker::{Broker, Cluster, Delivery, Event, Position, Recovery};
use tower_ws::{Message, Session, UpgradeLayer, handler_fn};

/// Which broker a node uses.
#[derive(Clone)]
pub enum Spec {
    #[cfg(feature = "redis")]
    Redis(String, RedisConfig),
    #[cfg(feature = "nats")]
    Nats(String, NatsConfig),
}

/// A running node; stopped (its runtime dropped, every socket closed) when dropped.
pub struct Node {
    pub addr: SocketAddr,
    pub broker: Broker,
    /// Every event but messages, in order.
    pub events: Arc<Mutex<Vec<Event>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// How a delivery reaches a test client.
pub fn render(delivery: &Delivery) -> Message {
    match &delivery.message {
        Message::Text(text) => {
            let position = delivery
                .position
                .map_or_else(|| String::from("-"), |p| p.to_string());
            Message::text(format!("{position} {}", text.as_str()))
        }
        other => other.clone(),
    }
}

impl Node {
    /// Starts a node on `port` (0: any free port).
    pub fn start(spec: Spec, port: u16) -> Node {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let thread = thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(run(spec, port, ready_tx, stop_rx));
        });
        let (addr, broker, events) = ready_rx.recv().expect("node failed to start");
        Node {
            addr,
            broker,
            events,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// The gap events this node reported.
    pub fn gaps(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| matches!(e, Event::Gap { .. }))
            .cloned()
            .collect()
    }
}

type Ready = (SocketAddr, Broker, Arc<Mutex<Vec<Event>>>);

async fn run(
    spec: Spec,
    port: u16,
    ready: std::sync::mpsc::Sender<Ready>,
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    let (broker, events) = match spec {
        #[cfg(feature = "redis")]
        Spec::Redis(url, config) => Broker::redis(&url, config).unwrap(),
        #[cfg(feature = "nats")]
        Spec::Nats(url, config) => Broker::nats(&url, config).await.unwrap(),
    };
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let record = recorded.clone();
    let cluster = Cluster::builder(broker.clone(), events)
        .render(render)
        .on_event(move |event| {
            if !matches!(event, Event::Message(_)) {
                record.lock().unwrap().push(event.clone());
            }
        })
        .start();
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    ready
        .send((listener.local_addr().unwrap(), broker, recorded))
        .unwrap();

    let handler = handler_fn(move |session: Session| {
        let cluster = cluster.clone();
        async move { serve_socket(cluster, session).await }
    });
    let service = ServiceBuilder::new()
        .layer(UpgradeLayer::new(handler))
        .service_fn(|_: Request<Incoming>| async {
            Ok::<_, Infallible>(Response::new(Full::new(bytes::Bytes::from_static(
                b"not found",
            ))))
        });
    let accept = async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let service = service.clone();
            tokio::spawn(async move {
                let builder = auto::Builder::new(TokioExecutor::new());
                let _ = builder
                    .serve_connection_with_upgrades(
                        TokioIo::new(stream),
                        TowerToHyperService::new(service),
                    )
                    .await;
            });
        }
    };
    tokio::select! {
        _ = stop => {}
        () = accept => {}
    }
}

async fn serve_socket(cluster: Cluster, session: Session) -> Result<(), tower_ws::Error> {
    let Session {
        mut socket,
        handshake,
        ..
    } = session;
    let path = handshake.uri().path().to_owned();
    let query = handshake.uri().query().unwrap_or("").to_owned();
    if let Some(room) = path.strip_prefix("/sub/") {
        let member = cluster.hub().join(&mut socket);
        member.subscribe(room);
        if let Some(since) = query.strip_prefix("since=") {
            let since: Position = since.parse().expect("since=EPOCH:OFFSET");
            match cluster.broker().history(room, since, 100_000).await {
                Ok(Recovery::Messages { messages, .. }) => {
                    for delivery in &messages {
                        socket.send(render(delivery)).await?;
                    }
                }
                Ok(Recovery::TooOld { top }) => {
                    socket
                        .send(Message::text(format!("RESET too-old {top}")))
                        .await?;
                }
                Ok(Recovery::EpochChanged { top }) => {
                    socket
                        .send(Message::text(format!("RESET epoch {top}")))
                        .await?;
                }
                Ok(_) => unreachable!(),
                Err(error) => {
                    socket.send(Message::text(format!("ERR {error}"))).await?;
                }
            }
        }
        while let Some(message) = socket.recv().await {
            message?;
        }
    } else if let Some(room) = path.strip_prefix("/pub/") {
        while let Some(message) = socket.recv().await {
            let message = message?;
            if !message.is_text() && !message.is_binary() {
                continue;
            }
            if let Err(error) = cluster.publish(room, &message).await {
                socket.send(Message::text(format!("ERR {error}"))).await?;
            }
        }
    }
    Ok(())
}

/// A subscriber client: what it received, parsed.
pub struct Sub {
    pub client: super::Client,
    /// `(position, payload)` in arrival order.
    pub got: Vec<(Option<Position>, String)>,
    pub resets: Vec<String>,
    /// Why the last [`read_until`](Self::read_until) stopped short, if it did.
    pub ended: Option<String>,
}

impl Sub {
    pub async fn connect(addr: SocketAddr, room: &str, since: Option<Position>) -> Sub {
        let path = match since {
            Some(since) => format!("/sub/{room}?since={since}"),
            None => format!("/sub/{room}"),
        };
        Sub {
            client: super::connect(addr, &path).await,
            got: Vec::new(),
            resets: Vec::new(),
            ended: None,
        }
    }

    /// Reads until `count` payloads arrived (resets and errors are kept apart); false if the
    /// connection ended or `secs` passed first.
    pub async fn read_until(&mut self, count: usize, secs: u64) -> bool {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
        while self.got.len() < count {
            let next = tokio::time::timeout_at(deadline, self.client.next()).await;
            let message = match next {
                Ok(Some(Ok(message))) => message,
                Ok(Some(Err(error))) => {
                    self.ended = Some(format!("error: {error}"));
                    return false;
                }
                Ok(None) => {
                    self.ended = Some("the connection ended".to_owned());
                    return false;
                }
                Err(_) => {
                    self.ended = Some(format!("nothing more within {secs} s"));
                    return false;
                }
            };
            if let tungstenite::Message::Text(text) = message {
                let text = text.as_str();
                if text.starts_with("RESET ") || text.starts_with("ERR ") {
                    self.resets.push(text.to_owned());
                    continue;
                }
                let (position, payload) = text.split_once(' ').expect("POSITION PAYLOAD");
                self.got.push((position.parse().ok(), payload.to_owned()));
            }
        }
        true
    }

    /// Reads for `millis` and returns how many payloads came meanwhile.
    pub async fn read_for(&mut self, millis: u64) -> usize {
        let before = self.got.len();
        let _ = tokio::time::timeout(
            std::time::Duration::from_millis(millis),
            self.read_until(usize::MAX, 3600),
        )
        .await;
        self.got.len() - before
    }

    /// The newest position received.
    pub fn last(&self) -> Option<Position> {
        self.got
            .iter()
            .filter_map(|(p, _)| *p)
            .max_by_key(|p| p.offset)
    }

    pub async fn close(mut self) {
        let _ = self.client.close(None).await;
    }
}

/// A publisher client on `/pub/{room}`.
pub async fn publisher(addr: SocketAddr, room: &str) -> super::Client {
    super::connect(addr, &format!("/pub/{room}")).await
}

/// Sends `payloads` as text messages.
pub async fn send_all(client: &mut super::Client, payloads: impl IntoIterator<Item = String>) {
    for payload in payloads {
        client
            .send(tungstenite::Message::text(payload))
            .await
            .unwrap();
    }
}

/// Waits (at most 20 s) until `node`'s broker has `topics` subscriptions in place: they are
/// asynchronous to the WebSocket handshakes that caused them, and a fixed pause is not enough on
/// a loaded machine (a message published before them does not reach the new subscriber).
pub async fn until_subscribed(node: &Node, topics: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while node.broker.stats().subscribed < topics {
        assert!(
            std::time::Instant::now() < deadline,
            "the node's broker subscriptions never came up: {:?}",
            node.broker.stats()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A little time for what the nodes do in the background (a join, a leave, an unsubscribe) to
/// land.
pub async fn settle() {
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
}

/// The payloads a subscriber received, in order.
pub fn payloads(sub: &Sub) -> Vec<String> {
    sub.got.iter().map(|(_, p)| p.clone()).collect()
}

/// Waits for the broker's first `Event::Connected` (events before it are dropped), then a
/// little more for its subscriptions to land.
pub async fn until_connected(events: &mut tower_ws::broker::Events) {
    loop {
        match events.recv().await {
            Some(Event::Connected) => break,
            Some(_) => {}
            None => panic!("the broker's event stream ended before it connected"),
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
}

/// Three nodes A, B, C on `spec`; subscribers of `topic` on every node (two on each of
/// `doubled`'s nodes), one subscriber of `other` on C; `count` messages published on A, then 50
/// on B to `other`. Checks what is common to every broker: each subscriber of `topic` got the
/// `count` payloads exactly once and in order, `other`'s subscriber its 50, and each node
/// received from the broker only the topics it holds (A and B `count`, C `count + 50`).
/// Returns the subscribers of `topic` and the three nodes for the broker-specific checks.
pub async fn fan_out_across_three_nodes(
    spec: Spec,
    topic: &str,
    count: usize,
    doubled: &[usize],
) -> (Vec<Sub>, [Node; 3]) {
    let nodes = [
        Node::start(spec.clone(), 0),
        Node::start(spec.clone(), 0),
        Node::start(spec, 0),
    ];
    let mut subs = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        for _ in 0..if doubled.contains(&i) { 2 } else { 1 } {
            subs.push(Sub::connect(node.addr, topic, None).await);
        }
    }
    // Node C holds "other" too; A and B do not.
    let mut other = Sub::connect(nodes[2].addr, "other", None).await;
    for (node, topics) in nodes.iter().zip([1, 1, 2]) {
        until_subscribed(node, topics).await;
    }
    settle().await;

    let mut pub_a = publisher(nodes[0].addr, topic).await;
    send_all(&mut pub_a, (0..count).map(|i| format!("a{i}"))).await;
    let expected: Vec<String> = (0..count).map(|i| format!("a{i}")).collect();
    for sub in &mut subs {
        assert!(
            sub.read_until(count, 20).await,
            "got {} of {count}",
            sub.got.len()
        );
        assert_eq!(payloads(sub), expected);
    }
    // Nothing more: exactly once.
    for sub in &mut subs {
        assert_eq!(sub.read_for(200).await, 0, "exactly once");
    }

    // "other" from B reaches only C; A and B never subscribed it.
    let mut pub_b = publisher(nodes[1].addr, "other").await;
    send_all(&mut pub_b, (0..50).map(|i| format!("o{i}"))).await;
    assert!(other.read_until(50, 20).await);

    // Broker traffic per node: each node received each message of `topic` once, and "other"
    // only on C. The counters are the nodes' own, updated on their threads: wait (bounded) until
    // they reach the expected figures, then check they do not pass them. A message a node took
    // from history (Redis: it missed it live, under load) counts as received; one it then also
    // received live, once.
    let count = count as u64;
    let expected = [count, count, count + 50];
    let received = || {
        nodes.each_ref().map(|node| {
            let stats = node.broker.stats();
            stats.received + stats.recovered - stats.duplicates
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while received() != expected && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        received(),
        expected,
        "messages each node received from the broker"
    );
    (subs, nodes)
}
