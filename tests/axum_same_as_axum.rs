//! The same handler source, compiled once against axum's `extract::ws` and once against
//! `tower_ws::axum` (only the `use` differs, through a macro), driven by the same client
//! script: the two transcripts must be equal, apart from the two differences the README
//! lists (the automatic pong goes out when the ping is read, before the handler's reply, where
//! tungstenite sends it after; the answer to a close frame echoes its code, not its reason).

mod support;

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use support::bounded;
use tokio_tungstenite::tungstenite::{
    self, protocol::CloseFrame, protocol::frame::coding::CloseCode,
};

/// A handler module written against axum's API, over the `ws` module at `$ws`.
macro_rules! handler_module {
    ($name:ident, $($ws:ident)::+) => {
        mod $name {
            use axum::{Router, response::Response, routing::any};
            use futures_util::{SinkExt, StreamExt};
            use $($ws)::+::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};

            pub(super) fn app() -> Router {
                Router::new().route("/", any(handler))
            }

            async fn handler(ws: WebSocketUpgrade) -> Response {
                let offered: Vec<String> = ws
                    .requested_protocols()
                    .map(|p| p.to_str().unwrap().to_owned())
                    .collect();
                let ws = ws.protocols(["a", "b"]).max_message_size(1 << 16);
                ws.on_upgrade(move |socket| session(socket, offered))
            }

            async fn session(mut socket: WebSocket, offered: Vec<String>) {
                let hello = format!("offered {offered:?}, chose {:?}", socket.protocol());
                if socket.send(Message::text(hello)).await.is_err() {
                    return;
                }
                while let Some(Ok(message)) = socket.recv().await {
                    let reply = match message {
                        Message::Text(text) => Message::text(format!("text {text} ({})", text.len())),
                        Message::Binary(data) => {
                            let utf8 = Message::Binary(data.clone()).to_text().is_ok();
                            Message::binary([&data[..], &[u8::from(utf8)]].concat())
                        }
                        Message::Ping(data) => Message::text(format!("ping {:?}", data)),
                        Message::Pong(data) => Message::text(format!("pong {:?}", data)),
                        Message::Close(frame) => {
                            let frame = frame.map(|f| (f.code, f.reason.to_string()));
                            let _ = SinkExt::send(&mut socket, Message::text(format!("{frame:?}"))).await;
                            break;
                        }
                    };
                    if reply.to_text().is_ok_and(|t| t.contains("goodbye")) {
                        let bye = CloseFrame {
                            code: close_code::AWAY,
                            reason: Utf8Bytes::from_static("server says goodbye"),
                        };
                        let _ = socket.send(Message::Close(Some(bye))).await;
                        continue;
                    }
                    // Through the Sink, as split halves use it.
                    if socket.feed(reply).await.is_err() || socket.flush().await.is_err() {
                        return;
                    }
                }
                // Read on after our close until the peer's answer ends the stream.
                while socket.next().await.is_some() {}
            }
        }
    };
}

handler_module!(theirs, axum::extract::ws);
handler_module!(ours, tower_ws::axum);

async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// Runs the client script against `addr` and returns what it saw.
async fn transcript(addr: SocketAddr, close_first: bool) -> Vec<String> {
    let uri = format!("ws://{addr}/").try_into().unwrap();
    let request = tungstenite::ClientRequestBuilder::new(uri).with_sub_protocol("c, b, a");
    let (mut client, response) = bounded(tokio_tungstenite::connect_async(request))
        .await
        .unwrap();
    let mut seen = vec![format!(
        "status {} protocol {:?}",
        response.status(),
        response.headers().get("sec-websocket-protocol")
    )];
    let script = [
        tungstenite::Message::text("héllo"),
        tungstenite::Message::binary(vec![0xff, 0]),
        tungstenite::Message::binary(b"abc".to_vec()),
        tungstenite::Message::Ping(b"p1".to_vec().into()),
        tungstenite::Message::Pong(b"unsolicited".to_vec().into()),
    ];
    for message in script {
        bounded(client.send(message)).await.unwrap();
    }
    if close_first {
        let frame = CloseFrame {
            code: CloseCode::from(4000),
            reason: "client done".into(),
        };
        bounded(client.send(tungstenite::Message::Close(Some(frame))))
            .await
            .unwrap();
    } else {
        bounded(client.send(tungstenite::Message::text("goodbye")))
            .await
            .unwrap();
    }
    while let Some(message) = bounded(client.next()).await {
        match message {
            Ok(message) => seen.push(format!("{message:?}")),
            Err(error) => {
                seen.push(format!("error {error}"));
                break;
            }
        }
    }
    seen
}

/// The automatic pong, taken out of the transcript (it must be there once).
fn without_auto_pong(mut seen: Vec<String>) -> Vec<String> {
    let pong = r#"Pong(b"p1")"#;
    assert_eq!(seen.iter().filter(|m| *m == pong).count(), 1, "{seen:?}");
    seen.retain(|m| m != pong);
    seen
}

#[tokio::test]
async fn the_same_handler_behaves_the_same_on_both_when_the_client_closes() {
    let theirs = without_auto_pong(transcript(serve(theirs::app()).await, true).await);
    let mut ours = without_auto_pong(transcript(serve(ours::app()).await, true).await);
    // tungstenite echoes the close reason; the engine answers with the code alone.
    let echoed =
        r#"Close(Some(CloseFrame { code: Library(4000), reason: Utf8Bytes(b"client done") }))"#;
    assert_eq!(theirs.last().map(String::as_str), Some(echoed));
    let answered = r#"Close(Some(CloseFrame { code: Library(4000), reason: Utf8Bytes(b"") }))"#;
    assert_eq!(ours.pop().as_deref(), Some(answered));
    assert_eq!(ours, theirs[..theirs.len() - 1]);
}

#[tokio::test]
async fn the_same_handler_behaves_the_same_on_both_when_the_server_closes() {
    let theirs = without_auto_pong(transcript(serve(theirs::app()).await, false).await);
    let ours = without_auto_pong(transcript(serve(ours::app()).await, false).await);
    assert_eq!(ours, theirs);
}
