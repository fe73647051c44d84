//! Writing to a peer that does not read: `send` waits at the high-water mark instead of
//! buffering without bound, and other connections are not slowed.

mod support;

use std::time::Duration;

use support::{tcp_pair, within, ws_pair};
use tower_ws::{Config, Message, Role, WebSocket};

#[tokio::test]
async fn send_waits_at_the_high_water_mark_when_the_peer_stops_reading() {
    let high_water = 64 << 10;
    let config = Config::default().write_buffer_high_water(high_water);
    let (_silent_peer, s) = tcp_pair().await;
    let mut server = WebSocket::new(s, Role::Server, config);
    let message = Message::binary(vec![0x42_u8; 1024]);
    let mut sent = 0_usize;
    let mut most = 0;
    while let Ok(result) =
        tokio::time::timeout(Duration::from_millis(300), server.send(message.clone())).await
    {
        result.unwrap();
        sent += 1;
        most = most.max(server.buffered_amount());
        assert!(
            sent < 100_000,
            "send never waited: {sent} messages accepted"
        );
    }
    // The kernel's socket buffers take a share; ours stays under the mark plus one message.
    assert!(most <= high_water + 1024 + 4, "queue grew to {most}");
    assert!(server.buffered_amount() <= high_water + 1024 + 4);
    assert!(sent > 64, "only {sent} sent before waiting");
}

#[tokio::test]
async fn a_stuck_connection_does_not_slow_the_others() {
    let config = Config::default().write_buffer_high_water(32 << 10);
    // One server socket whose peer never reads, blocked in send.
    let (_silent_peer, s) = tcp_pair().await;
    let stuck = tokio::spawn(async move {
        let mut server = WebSocket::new(s, Role::Server, config);
        loop {
            if server
                .send(Message::binary(vec![0_u8; 4096]))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Meanwhile a healthy pair echoes 1000 messages promptly.
    let (mut client, mut server) = ws_pair(config).await;
    let echo = tokio::spawn(async move {
        while let Some(Ok(m)) = server.recv().await {
            if m.is_binary() {
                server.send(m).await.unwrap();
            }
        }
    });
    within(5, async {
        for i in 0..1000_u32 {
            client
                .send(Message::binary(i.to_be_bytes().to_vec()))
                .await
                .unwrap();
            let got = client.recv().await.unwrap().unwrap();
            assert_eq!(got.as_payload(), i.to_be_bytes());
        }
    })
    .await;
    stuck.abort();
    drop(client);
    let _ = within(5, echo).await;
}

#[tokio::test]
async fn a_peer_that_reads_again_releases_the_waiting_sender() {
    let config = Config::default().write_buffer_high_water(16 << 10);
    let (mut client, mut server) = ws_pair(config).await;
    let sender = tokio::spawn(async move {
        for i in 0..1000_u32 {
            let mut payload = vec![0_u8; 32 << 10];
            payload[..4].copy_from_slice(&i.to_be_bytes());
            server.send(Message::binary(payload)).await.unwrap();
        }
        server
    });
    // Let the sender fill every buffer, then read everything.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !sender.is_finished(),
        "32 MB cannot all fit in the socket buffers"
    );
    for i in 0..1000_u32 {
        let got = within(5, client.recv()).await.unwrap().unwrap();
        assert_eq!(got.as_payload()[..4], i.to_be_bytes());
    }
    within(5, sender).await.unwrap();
}

#[tokio::test]
async fn under_the_reject_policy_a_full_queue_refuses_the_message_and_keeps_the_connection() {
    let config = Config::default()
        .write_buffer_high_water(32 << 10)
        .backpressure(tower_ws::Backpressure::Reject);
    let (mut client, mut server) = ws_pair(config).await;
    // Fill everything until a send is refused; none of these waits.
    let mut accepted = 0_u32;
    let refused = within(10, async {
        loop {
            let mut payload = vec![0_u8; 4096];
            payload[..4].copy_from_slice(&accepted.to_be_bytes());
            match server.send(Message::binary(payload)).await {
                Ok(()) => accepted += 1,
                Err(e) => break e,
            }
        }
    })
    .await;
    assert_eq!(refused.kind(), tower_ws::ErrorKind::Backpressure);
    assert!(
        server.is_open(),
        "refusing a message leaves the connection open"
    );
    assert!(server.buffered_amount() <= (32 << 10) + 4100);
    // The client reads every accepted message, in order, then a later one.
    let reader = tokio::spawn(async move {
        for i in 0..accepted {
            let got = client.recv().await.unwrap().unwrap();
            assert_eq!(got.as_payload()[..4], i.to_be_bytes());
        }
        client.recv().await.unwrap().unwrap()
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    within(5, server.send(Message::text("after")))
        .await
        .unwrap();
    assert_eq!(within(5, reader).await.unwrap(), Message::text("after"));
}

#[tokio::test]
async fn under_the_close_policy_a_peer_that_stops_reading_is_disconnected() {
    let config = Config::default()
        .write_buffer_high_water(32 << 10)
        .backpressure(tower_ws::Backpressure::Close);
    let (mut silent_peer, s) = tcp_pair().await;
    let mut server = WebSocket::new(s, Role::Server, config);
    let error = within(10, async {
        loop {
            if let Err(e) = server.send(Message::binary(vec![0_u8; 4096])).await {
                break e;
            }
        }
    })
    .await;
    assert_eq!(error.kind(), tower_ws::ErrorKind::Backpressure);
    assert!(server.is_terminated());
    assert_eq!(
        server.buffered_amount(),
        0,
        "the queue is dropped, not kept"
    );
    assert!(server.recv().await.is_none());
    // The peer, reading at last, finds the stream ends.
    assert!(support::sees_eof(&mut silent_peer, 5).await);
}
