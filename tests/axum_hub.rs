//! The hub from the axum extractor, over real sockets: members join through
//! `tower_ws::axum::WebSocket::join`, publish to each other, leave (and are unsubscribed), and a
//! member that only reads, or reads through the `Stream` half of `split`, gets what is published
//! to it while it waits.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::any;
use futures_util::{SinkExt, StreamExt};
use support::{Client, bounded, connect};
use tokio_tungstenite::tungstenite::Message as TMessage;
use tower_ws::Hub;
use tower_ws::axum::{Message, WebSocket, WebSocketUpgrade};

/// `/room/{room}`: joins, subscribes, publishes every text it receives to the room but itself.
/// `/listen/{room}`: joins, subscribes and only reads. `/split/{room}`: the same through the
/// `Stream` half of `split`, the `Sink` half held idle.
fn app(hub: Hub) -> Router {
    async fn room(
        ws: WebSocketUpgrade,
        Path(room): Path<String>,
        State(hub): State<Hub>,
    ) -> Response {
        ws.on_upgrade(move |mut socket: WebSocket| async move {
            let member = socket.join(&hub);
            assert!(member.subscribe(&room));
            while let Some(Ok(message)) = socket.recv().await {
                if let Message::Text(text) = message {
                    member.publish(&room, text.as_str());
                }
            }
        })
    }
    async fn listen(
        ws: WebSocketUpgrade,
        Path(room): Path<String>,
        State(hub): State<Hub>,
    ) -> Response {
        ws.on_upgrade(move |mut socket: WebSocket| async move {
            let member = socket.join(&hub);
            member.subscribe(&room);
            while let Some(Ok(_)) = socket.recv().await {}
        })
    }
    async fn split(
        ws: WebSocketUpgrade,
        Path(room): Path<String>,
        State(hub): State<Hub>,
    ) -> Response {
        ws.on_upgrade(move |mut socket: WebSocket| async move {
            let member = socket.join(&hub);
            member.subscribe(&room);
            let (_sender, mut receiver) = socket.split();
            while let Some(Ok(_)) = receiver.next().await {}
        })
    }
    Router::new()
        .route("/room/{room}", any(room))
        .route("/listen/{room}", any(listen))
        .route("/split/{room}", any(split))
        .with_state(hub)
}

async fn serve(hub: Hub) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app(hub)).await });
    addr
}

async fn next_text(client: &mut Client) -> String {
    loop {
        match bounded(client.next()).await {
            Some(Ok(TMessage::Text(text))) => return text.as_str().to_owned(),
            Some(Ok(_)) => {}
            other => panic!("expected text, got {other:?}"),
        }
    }
}

/// Waits until `topic` has `n` subscribers.
async fn subscribers(hub: &Hub, topic: &str, n: usize) {
    bounded(async {
        while hub.subscriber_count(topic) != n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn two_members_reach_each_other_and_leaving_unsubscribes() {
    let hub = Hub::new();
    let addr = serve(hub.clone()).await;
    let mut alice = connect(addr, "/room/lobby").await;
    let mut bob = connect(addr, "/room/lobby").await;
    subscribers(&hub, "lobby", 2).await;

    bounded(alice.send(TMessage::text("hi bob"))).await.unwrap();
    assert_eq!(next_text(&mut bob).await, "hi bob");
    bounded(bob.send(TMessage::text("hi alice"))).await.unwrap();
    // Alice's own line did not come back to her: the next thing she reads is Bob's.
    assert_eq!(next_text(&mut alice).await, "hi alice");

    // Bob closes: his member is dropped, the room has one subscriber left.
    bounded(bob.close(None)).await.unwrap();
    subscribers(&hub, "lobby", 1).await;
    let report = hub.publish("lobby", "only alice");
    assert_eq!((report.matched, report.queued), (1, 1));
    assert_eq!(next_text(&mut alice).await, "only alice");

    // A connection that ends without a close handshake unsubscribes too.
    let carol = connect(addr, "/room/lobby").await;
    subscribers(&hub, "lobby", 2).await;
    drop(carol);
    subscribers(&hub, "lobby", 1).await;
    bounded(alice.close(None)).await.unwrap();
    subscribers(&hub, "lobby", 0).await;
    assert_eq!(hub.topic_count(), 0);
}

/// A member parked in `recv` (its client never sends) is woken by each publish and writes it.
#[tokio::test]
async fn a_member_that_only_reads_gets_each_publish_while_it_waits() {
    let hub = Hub::new();
    let addr = serve(hub.clone()).await;
    for path in ["/listen/news", "/split/news"] {
        let mut client = connect(addr, path).await;
        subscribers(&hub, "news", 1).await;
        for i in 0..20 {
            // Let the member's task settle in `recv` with nothing to read.
            tokio::time::sleep(Duration::from_millis(2)).await;
            let report = hub.publish("news", format!("news {i}"));
            assert_eq!(report.queued, 1, "{path}");
            let received = tokio::time::timeout(Duration::from_secs(2), next_text(&mut client))
                .await
                .unwrap_or_else(|_| panic!("{path}: publish {i} not delivered"));
            assert_eq!(received, format!("news {i}"), "{path}");
        }
        bounded(client.close(None)).await.unwrap();
        subscribers(&hub, "news", 0).await;
    }
}

/// Many messages published while the member waits arrive in order, none lost.
#[tokio::test]
async fn a_burst_reaches_a_reading_member_in_order() {
    let hub = Hub::new();
    let addr = serve(hub.clone()).await;
    let mut client = connect(addr, "/listen/burst").await;
    subscribers(&hub, "burst", 1).await;
    for i in 0..1000 {
        assert_eq!(hub.publish("burst", format!("{i}")).queued, 1);
    }
    for i in 0..1000 {
        assert_eq!(next_text(&mut client).await, format!("{i}"));
    }
}
