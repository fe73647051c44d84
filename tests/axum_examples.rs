//! axum's `chat`, `websockets` and `testing-websockets` examples, written against
//! `tower_ws::axum` with the same API calls they make on `axum::extract::ws` (the imports are
//! the only thing that names this crate), and run: two chat members, a taken name, broadcast
//! and leaving; the ping the `websockets` handler sends first and the pong it reads back, its
//! split socket and final close; the integration test and the channel-driven unit test.
//!
//! Printing is replaced by a log the test reads, and the `websockets` timings are shortened.

mod support;

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use support::bounded;
use tokio_tungstenite::tungstenite;

async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

async fn next_text<S>(client: &mut tokio_tungstenite::WebSocketStream<S>) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match bounded(client.next()).await {
            Some(Ok(tungstenite::Message::Text(text))) => return text.as_str().to_owned(),
            Some(Ok(_)) => {}
            other => panic!("expected text, got {other:?}"),
        }
    }
}

/// axum's `chat` example: a name first, then every line to everyone.
mod chat {
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};

    use axum::{Router, extract::State, response::IntoResponse, routing::get};
    use futures_util::{sink::SinkExt, stream::StreamExt};
    use tokio::sync::broadcast;
    // The one changed import: `axum::extract::ws::{...}` in axum's example.
    use tower_ws::axum::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};

    pub(super) struct AppState {
        names: Mutex<HashSet<String>>,
        lines: broadcast::Sender<String>,
    }

    pub(super) fn app() -> Router {
        let state = Arc::new(AppState {
            names: Mutex::new(HashSet::new()),
            lines: broadcast::channel(100).0,
        });
        Router::new()
            .route("/websocket", get(websocket_handler))
            .with_state(state)
    }

    async fn websocket_handler(
        ws: WebSocketUpgrade,
        State(state): State<Arc<AppState>>,
    ) -> impl IntoResponse {
        ws.on_upgrade(|socket| member(socket, state))
    }

    async fn member(socket: WebSocket, state: Arc<AppState>) {
        let (mut sender, mut receiver) = socket.split();
        let mut name = String::new();
        while let Some(Ok(message)) = receiver.next().await {
            if let Message::Text(wanted) = message {
                if state.names.lock().unwrap().insert(wanted.to_string()) {
                    name.push_str(&wanted);
                    break;
                }
                let taken = Utf8Bytes::from_static("Username already taken.");
                let _ = sender.send(Message::Text(taken)).await;
                return;
            }
        }
        let mut lines = state.lines.subscribe();
        let _ = state.lines.send(format!("{name} joined."));
        let mut send_task = tokio::spawn(async move {
            while let Ok(line) = lines.recv().await {
                if sender.send(Message::text(line)).await.is_err() {
                    break;
                }
            }
        });
        let (tx, who) = (state.lines.clone(), name.clone());
        let mut recv_task = tokio::spawn(async move {
            while let Some(Ok(Message::Text(text))) = receiver.next().await {
                let _ = tx.send(format!("{who}: {text}"));
            }
        });
        tokio::select! {
            _ = &mut send_task => recv_task.abort(),
            _ = &mut recv_task => send_task.abort(),
        }
        let _ = state.lines.send(format!("{name} left."));
        state.names.lock().unwrap().remove(&name);
    }
}

#[tokio::test]
async fn chat_two_members_a_taken_name_broadcast_and_leaving() {
    let addr = serve(chat::app()).await;
    let mut alice = support::connect(addr, "/websocket").await;
    bounded(alice.send(tungstenite::Message::text("alice")))
        .await
        .unwrap();
    assert_eq!(next_text(&mut alice).await, "alice joined.");

    let mut impostor = support::connect(addr, "/websocket").await;
    bounded(impostor.send(tungstenite::Message::text("alice")))
        .await
        .unwrap();
    assert_eq!(next_text(&mut impostor).await, "Username already taken.");

    let mut bob = support::connect(addr, "/websocket").await;
    bounded(bob.send(tungstenite::Message::text("bob")))
        .await
        .unwrap();
    assert_eq!(next_text(&mut bob).await, "bob joined.");
    assert_eq!(next_text(&mut alice).await, "bob joined.");

    bounded(alice.send(tungstenite::Message::text("hi bob")))
        .await
        .unwrap();
    assert_eq!(next_text(&mut alice).await, "alice: hi bob");
    assert_eq!(next_text(&mut bob).await, "alice: hi bob");

    bounded(bob.close(None)).await.unwrap();
    assert_eq!(next_text(&mut alice).await, "bob left.");
    // The name is free again.
    let mut bob_again = support::connect(addr, "/websocket").await;
    bounded(bob_again.send(tungstenite::Message::text("bob")))
        .await
        .unwrap();
    assert_eq!(next_text(&mut bob_again).await, "bob joined.");
}

/// axum's `websockets` example: ping first, greetings, then a split socket that sends a few
/// messages and a close while the other half logs what the client sends.
mod websockets {
    use std::net::SocketAddr;
    use std::ops::ControlFlow;
    use std::time::Duration;

    use axum::{
        Router, body::Bytes, extract::connect_info::ConnectInfo, response::IntoResponse,
        routing::any,
    };
    use futures_util::{sink::SinkExt, stream::StreamExt};
    use tokio::sync::mpsc::UnboundedSender;
    // The one changed import: `axum::extract::ws::{...}` in axum's example.
    use tower_ws::axum::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};

    /// What the example prints, for the test to read.
    pub(super) type Log = UnboundedSender<String>;

    const SERVER_MESSAGES: usize = 3;

    pub(super) fn app(log: Log) -> Router {
        Router::new().route(
            "/ws",
            any(
                move |ws: WebSocketUpgrade, ConnectInfo(addr): ConnectInfo<SocketAddr>| async move {
                    ws_handler(ws, addr, log)
                },
            ),
        )
    }

    fn ws_handler(ws: WebSocketUpgrade, who: SocketAddr, log: Log) -> impl IntoResponse {
        ws.on_upgrade(move |socket| handle_socket(socket, who, log))
    }

    async fn handle_socket(mut socket: WebSocket, who: SocketAddr, log: Log) {
        if socket
            .send(Message::Ping(Bytes::from_static(&[1, 2, 3])))
            .await
            .is_err()
        {
            return;
        }
        if let Some(Ok(message)) = socket.recv().await
            && process_message(message, who, &log).is_break()
        {
            return;
        }
        for i in 1..3 {
            if socket
                .send(Message::Text(format!("Hi {i} times!").into()))
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (mut sender, mut receiver) = socket.split();
        let mut send_task = tokio::spawn(async move {
            for i in 0..SERVER_MESSAGES {
                let text = format!("Server message {i} ...");
                if sender.send(Message::Text(text.into())).await.is_err() {
                    return i;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let _ = sender
                .send(Message::Close(Some(CloseFrame {
                    code: tower_ws::axum::close_code::NORMAL,
                    reason: Utf8Bytes::from_static("Goodbye"),
                })))
                .await;
            SERVER_MESSAGES
        });
        let recv_log = log.clone();
        let mut recv_task = tokio::spawn(async move {
            let mut count = 0;
            while let Some(Ok(message)) = receiver.next().await {
                count += 1;
                if process_message(message, who, &recv_log).is_break() {
                    break;
                }
            }
            count
        });
        tokio::select! {
            sent = &mut send_task => {
                let _ = log.send(format!("{} messages sent", sent.unwrap()));
                recv_task.abort();
            }
            count = &mut recv_task => {
                let _ = log.send(format!("{} messages received", count.unwrap()));
                send_task.abort();
            }
        }
    }

    fn process_message(message: Message, who: SocketAddr, log: &Log) -> ControlFlow<()> {
        let line = match message {
            Message::Text(text) => format!("{who} sent text {text:?}"),
            Message::Binary(data) => format!("{who} sent {} bytes", data.len()),
            Message::Close(Some(frame)) => {
                let _ = log.send(format!("{who} closed with {} {}", frame.code, frame.reason));
                return ControlFlow::Break(());
            }
            Message::Close(None) => {
                let _ = log.send(format!("{who} closed without a code"));
                return ControlFlow::Break(());
            }
            Message::Pong(data) => format!("{who} sent pong {data:?}"),
            Message::Ping(data) => format!("{who} sent ping {data:?}"),
        };
        let _ = log.send(line);
        ControlFlow::Continue(())
    }
}

#[tokio::test]
async fn websockets_pings_first_reads_the_pong_and_closes_with_goodbye() {
    let (log, mut lines) = tokio::sync::mpsc::unbounded_channel();
    let addr = serve(websockets::app(log)).await;
    let mut client = support::connect(addr, "/ws").await;
    let me = client.get_ref().local_addr().unwrap();
    // The ping comes first; tungstenite answers it on the next read.
    let ping = bounded(client.next()).await.unwrap().unwrap();
    assert_eq!(ping, tungstenite::Message::Ping(vec![1, 2, 3].into()));
    assert_eq!(next_text(&mut client).await, "Hi 1 times!");
    assert_eq!(
        bounded(lines.recv()).await.unwrap(),
        format!("{me} sent pong b\"\\x01\\x02\\x03\"")
    );
    assert_eq!(next_text(&mut client).await, "Hi 2 times!");
    for i in 0..3 {
        assert_eq!(
            next_text(&mut client).await,
            format!("Server message {i} ...")
        );
    }
    match bounded(client.next()).await {
        Some(Ok(tungstenite::Message::Close(Some(frame)))) => {
            assert_eq!(u16::from(frame.code), 1000);
            assert_eq!(frame.reason.as_str(), "Goodbye");
        }
        other => panic!("expected the close, got {other:?}"),
    }
    // Answering the close ends the receiving half too; one of the two tasks reports.
    assert!(bounded(client.next()).await.is_none());
    let last = bounded(lines.recv()).await.unwrap();
    assert!(
        last == "3 messages sent" || last.ends_with("messages received"),
        "{last}"
    );
}

/// axum's `testing-websockets` example: one handler on the socket, one on `Sink` + `Stream`.
mod testing {
    use axum::{Router, response::Response, routing::get};
    use futures_util::{Sink, SinkExt, Stream, StreamExt};
    // The one changed import: `axum::extract::{ws::{Message, WebSocket}, WebSocketUpgrade}`.
    use tower_ws::axum::{Message, WebSocket, WebSocketUpgrade};

    pub(super) fn app() -> Router {
        Router::new()
            .route("/integration-testable", get(integration_testable_handler))
            .route("/unit-testable", get(unit_testable_handler))
    }

    async fn integration_testable_handler(ws: WebSocketUpgrade) -> Response {
        ws.on_upgrade(integration_testable_handle_socket)
    }

    async fn integration_testable_handle_socket(mut socket: WebSocket) {
        while let Some(Ok(message)) = socket.recv().await {
            if let Message::Text(text) = message
                && socket
                    .send(Message::Text(format!("You said: {text}").into()))
                    .await
                    .is_err()
            {
                break;
            }
        }
    }

    async fn unit_testable_handler(ws: WebSocketUpgrade) -> Response {
        ws.on_upgrade(|socket| {
            let (write, read) = socket.split();
            unit_testable_handle_socket(write, read)
        })
    }

    pub(super) async fn unit_testable_handle_socket<W, R>(mut write: W, mut read: R)
    where
        W: Sink<Message> + Unpin,
        R: Stream<Item = Result<Message, axum::Error>> + Unpin,
    {
        while let Some(Ok(message)) = read.next().await {
            if let Message::Text(text) = message
                && write
                    .send(Message::Text(format!("You said: {text}").into()))
                    .await
                    .is_err()
            {
                break;
            }
        }
    }
}

#[tokio::test]
async fn testing_websockets_integration_test() {
    let addr = serve(testing::app()).await;
    let (mut socket, _) = bounded(tokio_tungstenite::connect_async(format!(
        "ws://{addr}/integration-testable"
    )))
    .await
    .unwrap();
    bounded(socket.send(tungstenite::Message::text("foo")))
        .await
        .unwrap();
    assert_eq!(next_text(&mut socket).await, "You said: foo");
}

#[tokio::test]
async fn testing_websockets_unit_test_with_channels() {
    use tower_ws::axum::Message;

    let (socket_write, mut test_rx) = futures_channel::mpsc::channel(1024);
    let (mut test_tx, socket_read) = futures_channel::mpsc::channel(1024);
    tokio::spawn(testing::unit_testable_handle_socket(
        socket_write,
        socket_read,
    ));
    bounded(test_tx.send(Ok(Message::Text("foo".into()))))
        .await
        .unwrap();
    match bounded(test_rx.next()).await.unwrap() {
        Message::Text(text) => assert_eq!(text.as_str(), "You said: foo"),
        other => panic!("expected text, got {other:?}"),
    }
}

/// The split handler on a real socket, reached in-process through our client.
#[tokio::test]
async fn testing_websockets_split_handler_in_process() {
    let (mut socket, _) = bounded(
        tower_ws::ClientBuilder::new()
            .connect_service("ws://localhost/unit-testable", testing::app()),
    )
    .await
    .unwrap();
    bounded(socket.send("bar")).await.unwrap();
    let reply = bounded(socket.recv()).await.unwrap().unwrap();
    assert_eq!(reply.as_text(), Some("You said: bar"));
}
