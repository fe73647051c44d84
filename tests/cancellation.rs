//! Cancel safety: dropping a pending `recv` loses nothing, even mid-frame; dropping a pending
//! `send` queues either the whole message or nothing.

mod support;

use std::time::Duration;

use support::{Rng, client_frame, within};
use tokio::io::AsyncWriteExt;
use tower_ws::{Config, Message, Role, WebSocket};

#[tokio::test]
async fn a_recv_cancelled_mid_frame_loses_nothing() {
    let (mut raw, io) = tokio::io::duplex(1 << 20);
    let mut server = WebSocket::new(io, Role::Server, Config::default());
    let mut rng = Rng::new(5);
    let text = rng.text(50_000);
    let mut wire = client_frame(false, 1, &text.as_bytes()[..20_000]);
    wire.extend(client_frame(true, 9, b"ping in between"));
    wire.extend(client_frame(true, 0, &text.as_bytes()[20_000..]));
    // Deliver the bytes in small pieces; between pieces, a `recv` is started and dropped.
    let mut delivered = Vec::new();
    for piece in wire.chunks(997) {
        raw.write_all(piece).await.unwrap();
        tokio::select! {
            got = server.recv() => delivered.push(got.unwrap().unwrap()),
            () = tokio::time::sleep(Duration::from_millis(1)) => {}
        }
    }
    while delivered.len() < 2 {
        delivered.push(within(5, server.recv()).await.unwrap().unwrap());
    }
    assert_eq!(delivered[0], Message::ping(&b"ping in between"[..]));
    assert_eq!(delivered[1].as_text(), Some(text.as_str()));
}

#[tokio::test]
async fn a_send_cancelled_while_waiting_queues_the_whole_message_or_nothing() {
    let (peer, io) = tokio::io::duplex(4096);
    let config = Config::default().write_buffer_high_water(8 << 10);
    let mut server = WebSocket::new(io, Role::Server, config);
    // Every send is given 20 ms; with nobody reading, they start timing out (dropped while
    // waiting for room or for the write), and keep being dropped.
    let mut cancelled = 0;
    for i in 0..100_u32 {
        let mut payload = vec![0_u8; 1000];
        payload[..4].copy_from_slice(&i.to_be_bytes());
        let send = server.send(Message::binary(payload));
        if tokio::time::timeout(Duration::from_millis(20), send)
            .await
            .is_err()
        {
            cancelled += 1;
        }
    }
    assert!(cancelled > 50, "the pipe should have filled up");
    // Now read everything: the wire holds whole frames only, numbered without gaps, then a
    // message sent afterwards.
    let reader = tokio::spawn(async move {
        let mut client = WebSocket::new(peer, Role::Client, Config::default());
        let mut got = Vec::new();
        while let Some(Ok(m)) = client.recv().await {
            let done = m.is_text();
            got.push(m);
            if done {
                break;
            }
        }
        got
    });
    within(5, server.send(Message::text("after")))
        .await
        .unwrap();
    let got = within(5, reader).await.unwrap();
    let (last, numbered) = got.split_last().unwrap();
    assert_eq!(last, &Message::text("after"));
    for (i, m) in numbered.iter().enumerate() {
        let payload = m.as_payload();
        assert_eq!(payload.len(), 1000, "message {i} is whole");
        assert_eq!(
            payload[..4],
            u32::try_from(i).unwrap().to_be_bytes(),
            "no gaps"
        );
    }
    assert!(!numbered.is_empty());
}
