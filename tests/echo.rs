//! Messages of every size boundary cross a real loopback socket intact, in both directions, with
//! our engine on both ends.

mod support;

use bytes::Bytes;
use support::{Rng, within, ws_pair};
use tower_ws::{CloseCode, Config, Message};

const SIZES: &[usize] = &[0, 1, 125, 126, 127, 65_535, 65_536, 1 << 20, 16 << 20];

#[tokio::test]
async fn text_and_binary_of_every_boundary_size_echo_intact() {
    let (mut client, mut server) = ws_pair(Config::default()).await;
    let echo = tokio::spawn(async move {
        while let Some(message) = server.recv().await {
            match message.unwrap() {
                m @ (Message::Text(_) | Message::Binary(_)) => server.send(m).await.unwrap(),
                Message::Close(_) => break,
                _ => {}
            }
        }
    });
    let mut rng = Rng::new(7);
    for &size in SIZES {
        let text = rng.text(size);
        let binary = Bytes::from(rng.bytes(size));
        // One at a time: a synchronous echo of two 16 MiB messages in flight would deadlock
        // (each side blocked writing to a peer that is blocked writing too).
        within(20, client.send(Message::text(text.clone())))
            .await
            .unwrap();
        let got = within(20, client.recv()).await.unwrap().unwrap();
        assert_eq!(got.as_text(), Some(text.as_str()), "text of {size} bytes");
        within(20, client.send(Message::binary(binary.clone())))
            .await
            .unwrap();
        let got = within(20, client.recv()).await.unwrap().unwrap();
        assert_eq!(got, Message::Binary(binary), "binary of {size} bytes");
    }
    within(5, client.close(CloseCode::NORMAL, "done"))
        .await
        .unwrap();
    within(5, echo).await.unwrap();
}

#[tokio::test]
async fn a_burst_of_pipelined_messages_is_answered_in_order() {
    let (mut client, mut server) = ws_pair(Config::default()).await;
    let echo = tokio::spawn(async move {
        while let Some(Ok(message)) = server.recv().await {
            if message.is_text() {
                server.send(message).await.unwrap();
            }
        }
    });
    // Queue 500 messages without waiting for answers, then read them all back.
    let writer = async {
        for i in 0..500 {
            client.send(format!("message {i}")).await.unwrap();
        }
        client
    };
    let mut client = within(10, writer).await;
    for i in 0..500 {
        let got = within(10, client.recv()).await.unwrap().unwrap();
        assert_eq!(got.as_text(), Some(format!("message {i}").as_str()));
    }
    within(5, client.close(CloseCode::NORMAL, ""))
        .await
        .unwrap();
    within(5, echo).await.unwrap();
}

#[tokio::test]
async fn split_halves_send_and_receive_from_two_tasks_at_once() {
    let (client, mut server) = ws_pair(Config::default()).await;
    let echo = tokio::spawn(async move {
        while let Some(Ok(message)) = server.recv().await {
            if message.is_binary() {
                server.send(message).await.unwrap();
            }
        }
    });
    let (mut rx, mut tx) = client.split();
    assert!(rx.is_pair_of(&tx));
    let sender = tokio::spawn(async move {
        for i in 0..2000_u32 {
            tx.send(Message::binary(i.to_be_bytes().to_vec()))
                .await
                .unwrap();
        }
        tx
    });
    for i in 0..2000_u32 {
        let got = within(10, rx.recv()).await.unwrap().unwrap();
        assert_eq!(got.as_payload(), i.to_be_bytes());
    }
    let mut tx = within(10, sender).await.unwrap();
    within(5, tx.close(CloseCode::NORMAL, "")).await.unwrap();
    // The read half sees the server's answer and ends.
    let last = within(5, rx.recv()).await.unwrap().unwrap();
    assert!(last.is_close());
    assert!(within(5, rx.recv()).await.is_none());
    within(5, echo).await.unwrap();
}
