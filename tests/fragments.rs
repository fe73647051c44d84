//! Sending a message in pieces with `send_frame`: the pieces reach the peer as the frames they
//! are, reassemble into one message, and out-of-order or invalid pieces are refused before
//! anything reaches the wire.

mod support;

use futures_util::StreamExt;
use support::{read_frame, tcp_pair, within, ws_pair};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as TMessage;
use tokio_tungstenite::tungstenite::protocol::Role as TRole;
use tower_ws::{Config, ErrorKind, Frame, Message, OpCode, Role, WebSocket};

#[tokio::test]
async fn pieces_go_out_as_separate_frames_with_pings_between() {
    let (c, mut raw) = tcp_pair().await;
    let mut client = WebSocket::new(c, Role::Client, Config::default());
    client
        .send_frame(Frame::new(OpCode::Binary, vec![1_u8; 3]).fin(false))
        .await
        .unwrap();
    client
        .send_frame(Frame::new(OpCode::Ping, "p"))
        .await
        .unwrap();
    client
        .send_frame(Frame::new(OpCode::Continuation, vec![2_u8; 2]).fin(false))
        .await
        .unwrap();
    client
        .send_frame(Frame::new(OpCode::Continuation, vec![3_u8; 1]))
        .await
        .unwrap();
    let frames: Vec<_> = [
        within(5, read_frame(&mut raw)).await.unwrap(),
        within(5, read_frame(&mut raw)).await.unwrap(),
        within(5, read_frame(&mut raw)).await.unwrap(),
        within(5, read_frame(&mut raw)).await.unwrap(),
    ]
    .into_iter()
    .map(|f| (f.opcode, f.fin, f.masked, f.payload))
    .collect();
    assert_eq!(
        frames,
        vec![
            (2, false, true, vec![1; 3]),
            (9, true, true, b"p".to_vec()),
            (0, false, true, vec![2; 2]),
            (0, true, true, vec![3]),
        ]
    );
}

#[tokio::test]
async fn a_message_sent_in_pieces_reassembles_on_another_implementation() {
    let (c, s) = tcp_pair().await;
    let mut ours = WebSocket::new(s, Role::Server, Config::default());
    let mut theirs = WebSocketStream::from_raw_socket(c, TRole::Client, None).await;
    let text = "κόσμε, piece by piece";
    let bytes = text.as_bytes();
    // Cut inside the two-byte 'ό' and inside 'σ'.
    for piece in [&bytes[..3], &bytes[3..7], &bytes[7..]] {
        let opcode = if piece.as_ptr() == bytes.as_ptr() {
            OpCode::Text
        } else {
            OpCode::Continuation
        };
        let last = piece.as_ptr_range().end == bytes.as_ptr_range().end;
        ours.send_frame(Frame::new(opcode, piece.to_vec()).fin(last))
            .await
            .unwrap();
    }
    let got = within(5, theirs.next()).await.unwrap().unwrap();
    assert_eq!(got, TMessage::text(text));
}

#[tokio::test]
async fn out_of_order_or_invalid_pieces_are_refused_and_nothing_is_sent() {
    let (mut client, mut server) = ws_pair(Config::default()).await;
    let refused =
        |r: tower_ws::Result<()>| assert_eq!(r.unwrap_err().kind(), ErrorKind::InvalidMessage);
    refused(
        client
            .send_frame(Frame::new(OpCode::Continuation, "orphan"))
            .await,
    );
    refused(
        client
            .send_frame(Frame::new(OpCode::Ping, "x").fin(false))
            .await,
    );
    refused(client.send_frame(Frame::new(OpCode::Close, "")).await);
    refused(
        client
            .send_frame(Frame::new(OpCode::Text, &b"\xff"[..]))
            .await,
    );
    client
        .send_frame(Frame::new(OpCode::Text, &b"ok \xe2\x82"[..]).fin(false))
        .await
        .unwrap();
    refused(
        client
            .send_frame(Frame::new(OpCode::Binary, "new message"))
            .await,
    );
    refused(client.send(Message::text("whole message")).await);
    // The cut-off character must be completed by the last piece.
    refused(
        client
            .send_frame(Frame::new(OpCode::Continuation, "x"))
            .await,
    );
    client
        .send_frame(Frame::new(OpCode::Continuation, &b"\xac"[..]))
        .await
        .unwrap();
    assert_eq!(
        within(5, server.recv()).await.unwrap().unwrap(),
        Message::text("ok €")
    );
    client.send(Message::text("whole again")).await.unwrap();
    assert_eq!(
        within(5, server.recv()).await.unwrap().unwrap(),
        Message::text("whole again")
    );
}
