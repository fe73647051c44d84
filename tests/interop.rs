//! Interoperability with tokio-tungstenite over loopback TCP, in both roles: every size boundary,
//! fragmented messages, ping/pong and close codes.

mod support;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use support::{Rng, tcp_pair, within};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode as TCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame as TClose, Frame};
use tokio_tungstenite::tungstenite::protocol::{Role as TRole, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message as TMessage, Utf8Bytes as TUtf8};
use tower_ws::{CloseCode, Config, Message, Role, WebSocket};

const SIZES: &[usize] = &[0, 1, 125, 126, 65_535, 65_536, 1 << 20, 16 << 20];

fn their_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20))
}

async fn ours_vs_theirs(
    our_role: Role,
) -> (
    WebSocket<tokio::net::TcpStream>,
    WebSocketStream<tokio::net::TcpStream>,
) {
    let (c, s) = tcp_pair().await;
    let (ours, theirs, their_role) = match our_role {
        Role::Client => (c, s, TRole::Server),
        Role::Server => (s, c, TRole::Client),
    };
    let ours = WebSocket::new(ours, our_role, Config::default());
    let theirs = WebSocketStream::from_raw_socket(theirs, their_role, Some(their_config())).await;
    (ours, theirs)
}

/// tungstenite echoes; we send and check what comes back.
async fn we_send_they_echo(our_role: Role) {
    let (mut ours, mut theirs) = ours_vs_theirs(our_role).await;
    let echo = tokio::spawn(async move {
        while let Some(Ok(m)) = theirs.next().await {
            if m.is_text() || m.is_binary() {
                theirs.send(m).await.unwrap();
            }
        }
    });
    let mut rng = Rng::new(11);
    for &size in SIZES {
        let text = rng.text(size);
        within(20, ours.send(Message::text(text.clone())))
            .await
            .unwrap();
        let got = within(20, ours.recv()).await.unwrap().unwrap();
        assert_eq!(
            got.as_text(),
            Some(text.as_str()),
            "text {size} ({our_role:?})"
        );
        let data = Bytes::from(rng.bytes(size));
        within(20, ours.send(Message::binary(data.clone())))
            .await
            .unwrap();
        let got = within(20, ours.recv()).await.unwrap().unwrap();
        assert_eq!(got, Message::Binary(data), "binary {size} ({our_role:?})");
    }
    within(5, ours.close(CloseCode::NORMAL, "")).await.unwrap();
    within(5, echo).await.unwrap();
}

/// We echo; tungstenite sends and checks.
async fn they_send_we_echo(our_role: Role) {
    let (mut ours, mut theirs) = ours_vs_theirs(our_role).await;
    let echo = tokio::spawn(async move {
        while let Some(m) = ours.recv().await {
            let m = m.unwrap();
            if m.is_text() || m.is_binary() {
                ours.send(m).await.unwrap();
            }
        }
    });
    let mut rng = Rng::new(13);
    for &size in SIZES {
        let text = rng.text(size);
        within(20, theirs.send(TMessage::text(text.clone())))
            .await
            .unwrap();
        let got = within(20, theirs.next()).await.unwrap().unwrap();
        assert_eq!(got.to_text().unwrap(), text, "text {size} ({our_role:?})");
        let data = rng.bytes(size);
        within(20, theirs.send(TMessage::binary(data.clone())))
            .await
            .unwrap();
        let got = within(20, theirs.next()).await.unwrap().unwrap();
        assert_eq!(got.into_data(), data, "binary {size} ({our_role:?})");
    }
    within(5, theirs.close(None)).await.unwrap();
    // Read our answer, then drop the transport: a client waits for the server to close it.
    while let Some(Ok(_)) = within(5, theirs.next()).await {}
    drop(theirs);
    within(5, echo).await.unwrap();
}

#[tokio::test]
async fn our_client_round_trips_every_size_through_their_server() {
    we_send_they_echo(Role::Client).await;
}

#[tokio::test]
async fn our_server_round_trips_every_size_for_their_client() {
    they_send_we_echo(Role::Server).await;
}

#[tokio::test]
async fn our_server_round_trips_every_size_through_their_echoing_client() {
    we_send_they_echo(Role::Server).await;
}

#[tokio::test]
async fn our_client_echoes_every_size_for_their_server() {
    they_send_we_echo(Role::Client).await;
}

#[tokio::test]
async fn fragmented_messages_with_pings_between_fragments_are_reassembled() {
    for our_role in [Role::Server, Role::Client] {
        let (mut ours, mut theirs) = ours_vs_theirs(our_role).await;
        let frames = [
            Frame::message("κό", OpCode::Data(Data::Text), false),
            Frame::ping(b"between".to_vec()),
            Frame::message(&b"\xcf"[..], OpCode::Data(Data::Continue), false),
            Frame::message(
                &b"\x83\xce\xbc\xce\xb5"[..],
                OpCode::Data(Data::Continue),
                true,
            ),
            Frame::message(vec![1_u8; 70_000], OpCode::Data(Data::Binary), false),
            Frame::message(Vec::<u8>::new(), OpCode::Data(Data::Continue), false),
            Frame::message(vec![2_u8; 10], OpCode::Data(Data::Continue), true),
        ];
        for f in frames {
            within(5, theirs.feed(TMessage::Frame(f))).await.unwrap();
        }
        within(5, theirs.flush()).await.unwrap();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(m) = ours.recv().await {
                let m = m.unwrap();
                let close = m.is_close();
                got.push(m);
                if close {
                    break;
                }
            }
            got
        });
        // Their side sees our automatic pong, then closes.
        let pong = within(5, theirs.next()).await.unwrap().unwrap();
        assert_eq!(pong, TMessage::Pong(Bytes::from_static(b"between")));
        within(5, theirs.close(None)).await.unwrap();
        let got = within(5, reader).await.unwrap();
        assert_eq!(got[0], Message::ping(Bytes::from_static(b"between")));
        assert_eq!(got[1], Message::text("κόσμε"));
        let mut binary = vec![1_u8; 70_000];
        binary.extend_from_slice(&[2; 10]);
        assert_eq!(got[2], Message::binary(binary));
        assert_eq!(got[3], Message::Close(None));
    }
}

#[tokio::test]
async fn pings_are_answered_both_ways() {
    for our_role in [Role::Server, Role::Client] {
        let (mut ours, mut theirs) = ours_vs_theirs(our_role).await;
        // Ours pings, theirs answers while reading.
        within(5, ours.send(Message::ping(Bytes::from_static(b"ours"))))
            .await
            .unwrap();
        let their_reader = tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Some(Ok(m)) = theirs.next().await {
                seen.push(m);
            }
            seen
        });
        let pong = within(5, ours.recv()).await.unwrap().unwrap();
        assert_eq!(pong, Message::pong(Bytes::from_static(b"ours")));
        within(5, ours.close(CloseCode::NORMAL, "")).await.unwrap();
        let seen = within(5, their_reader).await.unwrap();
        assert!(seen.contains(&TMessage::Ping(Bytes::from_static(b"ours"))));
    }
}

#[tokio::test]
async fn close_codes_and_reasons_cross_in_both_directions() {
    for our_role in [Role::Server, Role::Client] {
        // They close with 4000; we see it and our stream ends cleanly.
        let (mut ours, mut theirs) = ours_vs_theirs(our_role).await;
        let closing = tokio::spawn(async move {
            theirs
                .close(Some(TClose {
                    code: TCode::from(4000),
                    reason: TUtf8::from_static("bye"),
                }))
                .await
                .unwrap();
            // Their stream ends after our echoed close.
            while let Some(Ok(_)) = theirs.next().await {}
        });
        let got = within(5, ours.recv()).await.unwrap().unwrap();
        assert_eq!(got, Message::close(CloseCode::from(4000), "bye"));
        assert!(within(5, ours.recv()).await.is_none());
        within(5, closing).await.unwrap();

        // We close with 1001; they see it.
        let (mut ours, mut theirs) = ours_vs_theirs(our_role).await;
        let their_side = tokio::spawn(async move {
            let mut close = None;
            while let Some(Ok(m)) = theirs.next().await {
                if let TMessage::Close(frame) = m {
                    close = frame;
                }
            }
            close
        });
        within(5, ours.close(CloseCode::GOING_AWAY, "restart"))
            .await
            .unwrap();
        let frame = within(5, their_side).await.unwrap().unwrap();
        assert_eq!(
            (u16::from(frame.code), frame.reason.as_str()),
            (1001, "restart")
        );
    }
}
