//! Close handshake edge cases through a real hyper server and the layer (`tests/close.rs` has
//! them on bare sockets): a peer that never answers our close frame is disconnected after the
//! close timeout, whether the handler closed or the layer did; both sides closing at once is a
//! clean close with one close frame each way; and data after a close frame is ignored.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use support::{
    client_frame, close_payload, connect, inner, raw_ws, read_frame, sees_eof, serve, within,
    write_raw,
};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as TMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame as TCloseFrame;
use tower::ServiceBuilder;
use tower_ws::{CloseCode, Config, ErrorKind, Message, Session, UpgradeLayer, handler_fn};

const CLOSE_TIMEOUT: Duration = Duration::from_millis(500);

/// What a handler reports: the messages its stream yielded, then how the session ended (the
/// result of its `close`, or of the stream).
#[derive(Debug)]
struct Report {
    messages: Vec<Message>,
    ended: Option<ErrorKind>,
}

/// A server whose handler does what the path says:
///
/// - `/close`: waits for a message, then calls `close(1001, "server")`;
/// - `/return`: waits for a message, then returns without closing (the layer closes, 1000);
/// - `/closer`: asks to close through a `Closer` after the first message, and reads on;
/// - anything else: reads until the stream ends.
async fn server() -> (SocketAddr, mpsc::UnboundedReceiver<Report>) {
    let (reports_tx, reports) = mpsc::unbounded_channel();
    let handler = handler_fn(
        move |Session {
                  mut socket,
                  handshake,
                  ..
              }| {
            let reports = reports_tx.clone();
            async move {
                let mut messages = Vec::new();
                let path = handshake.uri().path().to_owned();
                let closer = socket.closer();
                let mut ended = None;
                while let Some(item) = socket.recv().await {
                    match item {
                        Ok(message) => messages.push(message),
                        Err(error) => {
                            ended = Some(error.kind());
                            break;
                        }
                    }
                    match path.as_str() {
                        "/close" => {
                            ended = socket
                                .close(CloseCode::GOING_AWAY, "server")
                                .await
                                .err()
                                .map(|e| e.kind());
                            break;
                        }
                        "/return" => break,
                        "/closer" => closer.close(CloseCode::GOING_AWAY, "server"),
                        _ => {}
                    }
                }
                let _ = reports.send(Report { messages, ended });
            }
        },
    );
    let config = Config::default().close_timeout(CLOSE_TIMEOUT);
    let layer = UpgradeLayer::new(handler).config(config);
    let addr = serve(ServiceBuilder::new().layer(layer).service(inner())).await;
    (addr, reports)
}

#[tokio::test]
async fn a_peer_that_never_answers_our_close_is_disconnected_after_the_close_timeout() {
    let (addr, mut reports) = server().await;
    // The handler closes (`/close`), or returns and leaves it to the layer (`/return`).
    for (path, code) in [("/close", 1001), ("/return", 1000)] {
        let mut client = raw_ws(addr, path).await;
        write_raw(&mut client, &client_frame(true, 1, b"go")).await;
        let ours = within(5, read_frame(&mut client)).await.unwrap();
        let sent_at = Instant::now();
        assert_eq!(ours.close_code(), Some(code), "{path}");
        // The client reads on, but never answers.
        assert!(
            sees_eof(&mut client, 10).await,
            "{path}: never disconnected"
        );
        let after = sent_at.elapsed();
        eprintln!("{path}: disconnected {after:?} after our close frame");
        // The close timeout starts before the frame leaves, so a little under it here is fine;
        // the upper bound only allows for a loaded machine.
        assert!(
            after >= CLOSE_TIMEOUT.saturating_sub(Duration::from_millis(100)),
            "{path}: {after:?}"
        );
        assert!(
            after < CLOSE_TIMEOUT + Duration::from_secs(5),
            "{path}: {after:?}"
        );
        let report = within(5, reports.recv()).await.unwrap();
        if path == "/close" {
            assert_eq!(report.ended, Some(ErrorKind::Timeout), "{report:?}");
        }
    }
}

#[tokio::test]
async fn both_sides_closing_at_once_is_a_clean_close_with_one_frame_each_way() {
    let (addr, mut reports) = server().await;
    // The client's close frame is on its way (in the same write as the message that makes
    // the handler close) before the server's leaves: the two cross.
    let mut client = raw_ws(addr, "/close").await;
    let mut wire = client_frame(true, 1, b"go");
    wire.extend(client_frame(true, 8, &close_payload(1000, b"client")));
    write_raw(&mut client, &wire).await;
    let theirs = within(5, read_frame(&mut client)).await.unwrap();
    assert_eq!(theirs.close_code(), Some(1001));
    // Nothing follows the server's close frame, not even an answer to ours: the stream ends.
    let mut rest = Vec::new();
    within(5, client.read_to_end(&mut rest)).await.unwrap();
    assert_eq!(rest, b"", "after the close frame");
    let report = within(5, reports.recv()).await.unwrap();
    assert_eq!(report.ended, None, "close completes cleanly: {report:?}");
    assert_eq!(report.messages, [Message::text("go")]);

    // And with an independent client, closing as the server does, many times over.
    for round in 0..20 {
        let mut client = connect(addr, "/close").await;
        within(5, client.send(TMessage::text("go"))).await.unwrap();
        let frame = TCloseFrame {
            code: 1000.into(),
            reason: "client".into(),
        };
        within(5, client.close(Some(frame))).await.unwrap();
        while let Some(item) = within(5, client.next()).await {
            match item {
                Ok(TMessage::Close(_)) => {}
                other => panic!("round {round}: {other:?}"),
            }
        }
        let report = within(5, reports.recv()).await.unwrap();
        assert_eq!(report.ended, None, "round {round}: {report:?}");
    }
}

#[tokio::test]
async fn data_after_the_peers_close_is_ignored_and_data_before_its_answer_delivered() {
    let (addr, mut reports) = server().await;

    // The client closes, then sends a message and a ping: the handler sees only the close,
    // and the only frame the server sends is its answer.
    let mut client = raw_ws(addr, "/ws").await;
    let mut wire = client_frame(true, 8, &close_payload(1000, b""));
    wire.extend(client_frame(true, 1, b"too late"));
    wire.extend(client_frame(true, 9, b"ping too late"));
    write_raw(&mut client, &wire).await;
    let answer = within(5, read_frame(&mut client)).await.unwrap();
    assert_eq!(answer.close_code(), Some(1000));
    assert!(sees_eof(&mut client, 5).await);
    let report = within(5, reports.recv()).await.unwrap();
    assert_eq!(report.messages, [Message::close(CloseCode::NORMAL, "")]);
    assert_eq!(report.ended, None);

    // The server closes first: what the client sent before answering still reaches the
    // handler, and what it sent after does not.
    let mut client = raw_ws(addr, "/closer").await;
    write_raw(&mut client, &client_frame(true, 1, b"first")).await;
    let ours = within(5, read_frame(&mut client)).await.unwrap();
    assert_eq!(ours.close_code(), Some(1001));
    let mut wire = client_frame(true, 1, b"in flight");
    wire.extend(client_frame(true, 8, &close_payload(1001, b"")));
    wire.extend(client_frame(true, 1, b"after the answer"));
    write_raw(&mut client, &wire).await;
    assert!(sees_eof(&mut client, 5).await);
    let report = within(5, reports.recv()).await.unwrap();
    assert_eq!(
        report.messages,
        [
            Message::text("first"),
            Message::text("in flight"),
            Message::close(CloseCode::GOING_AWAY, "")
        ]
    );
    assert_eq!(report.ended, None);
}
