//! The close handshake over loopback TCP: who closes the transport, timeouts when the peer never
//! answers, both sides closing at once, data after a close, and a peer that vanishes.

mod support;

use std::time::Duration;

use tokio::net::TcpStream;

use futures_util::SinkExt;
use support::{
    client_frame, close_payload, read_frame, read_until_close, sees_eof, tcp_pair, within,
    write_raw, ws_pair,
};
use tower_ws::{CloseCode, Config, ErrorKind, Message, Role, WebSocket};

/// Reads `ws` to its end in a task, which returns every message it saw.
fn read_to_end(mut ws: WebSocket<TcpStream>) -> tokio::task::JoinHandle<Vec<Message>> {
    tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(m) = ws.recv().await {
            seen.push(m.unwrap());
        }
        seen
    })
}

/// The client closes; the server sees the close frame and the transport ends.
async fn client_close_completes(config: Config) {
    let (mut client, server) = ws_pair(config).await;
    let server_side = read_to_end(server);
    within(5, client.close(CloseCode::NORMAL, "bye"))
        .await
        .unwrap();
    assert!(client.is_terminated());
    let seen = within(5, server_side).await.unwrap();
    assert_eq!(seen, vec![Message::close(CloseCode::NORMAL, "bye")]);
}

/// The server closes; the client sees the close frame and the transport ends.
async fn server_close_completes(config: Config) {
    let (client, mut server) = ws_pair(config).await;
    let client_side = read_to_end(client);
    within(5, server.close(CloseCode::GOING_AWAY, "restart"))
        .await
        .unwrap();
    let seen = within(5, client_side).await.unwrap();
    assert_eq!(seen, vec![Message::close(CloseCode::GOING_AWAY, "restart")]);
}

#[tokio::test]
async fn client_initiated_close_completes_and_the_server_closes_the_transport() {
    client_close_completes(Config::default()).await;
}

#[tokio::test]
async fn server_initiated_close_completes_on_both_sides() {
    server_close_completes(Config::default()).await;
}

#[tokio::test]
async fn the_server_echoes_the_close_code_and_closes_tcp_even_if_the_app_stops_reading() {
    let (mut raw, s) = tcp_pair().await;
    let mut server = WebSocket::new(s, Role::Server, Config::default());
    write_raw(
        &mut raw,
        &client_frame(true, 8, &close_payload(4321, b"why")),
    )
    .await;
    let got = within(5, server.recv()).await.unwrap().unwrap();
    assert_eq!(got, Message::close(CloseCode::from(4321), "why"));
    // The application drops the socket right after seeing the close.
    drop(server);
    let reply = within(5, read_frame(&mut raw)).await.unwrap();
    assert_eq!(reply.close_code(), Some(4321));
    assert!(sees_eof(&mut raw, 5).await);
}

#[tokio::test]
async fn close_gives_up_when_the_peer_never_answers_and_closes_the_transport() {
    let (mut raw, s) = tcp_pair().await;
    let config = Config::default().close_timeout(Duration::from_millis(200));
    let mut server = WebSocket::new(s, Role::Server, config);
    let closing = tokio::spawn(async move { server.close(CloseCode::NORMAL, "").await });
    // The raw peer reads our close frame but never answers it.
    let ours = within(5, read_frame(&mut raw)).await.unwrap();
    assert_eq!(ours.close_code(), Some(1000));
    let result = within(5, closing).await.unwrap();
    assert_eq!(result.unwrap_err().kind(), ErrorKind::Timeout);
    assert!(sees_eof(&mut raw, 5).await);
}

#[tokio::test]
async fn both_sides_closing_at_once_is_not_an_error() {
    for _ in 0..20 {
        let (mut client, mut server) = ws_pair(Config::default()).await;
        let a = tokio::spawn(async move { client.close(CloseCode::NORMAL, "client").await });
        let b = tokio::spawn(async move { server.close(CloseCode::GOING_AWAY, "server").await });
        within(5, a).await.unwrap().unwrap();
        within(5, b).await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn data_after_a_close_frame_is_ignored() {
    let (mut raw, s) = tcp_pair().await;
    let mut server = WebSocket::new(s, Role::Server, Config::default());
    let mut wire = client_frame(true, 8, &close_payload(1000, b""));
    wire.extend(client_frame(true, 1, b"too late"));
    wire.extend(client_frame(true, 9, b"ping too late"));
    write_raw(&mut raw, &wire).await;
    let mut seen = Vec::new();
    while let Some(m) = within(5, server.recv()).await {
        seen.push(m.unwrap());
    }
    assert_eq!(seen, vec![Message::close(CloseCode::NORMAL, "")]);
    // Our only answer is the close frame: no pong for the late ping.
    let reply = within(5, read_frame(&mut raw)).await.unwrap();
    assert_eq!(reply.opcode, 8);
    assert!(sees_eof(&mut raw, 5).await);
}

#[tokio::test]
async fn nothing_can_be_sent_after_a_close_frame() {
    let (mut client, mut server) = ws_pair(Config::default()).await;
    client.send(Message::Close(None)).await.unwrap();
    let err = client.send(Message::text("late")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed);
    // A second close is accepted and adds nothing.
    client.send(Message::Close(None)).await.unwrap();
    let got = within(5, server.recv()).await.unwrap().unwrap();
    assert_eq!(got, Message::Close(None));
    // The server finishes its side (and closes the transport) when next polled.
    assert!(within(5, server.recv()).await.is_none());
    // Messages still arrive after our close, until the peer's answer.
    assert_eq!(
        within(5, client.recv()).await.unwrap().unwrap(),
        Message::Close(None)
    );
    assert!(within(5, client.recv()).await.is_none());
}

#[tokio::test]
async fn a_peer_that_vanishes_without_a_close_frame_is_an_io_error() {
    let (raw, s) = tcp_pair().await;
    let mut server = WebSocket::new(s, Role::Server, Config::default());
    drop(raw);
    let err = within(5, server.recv()).await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert!(within(5, server.recv()).await.is_none());
}

#[tokio::test]
async fn a_client_waits_for_the_server_to_close_the_transport_then_gives_up() {
    let (c, mut raw) = tcp_pair().await;
    let config = Config::default().close_timeout(Duration::from_millis(300));
    let mut client = WebSocket::new(c, Role::Client, config);
    // The raw server closes, reads our answer, and keeps the TCP connection open.
    write_raw(
        &mut raw,
        &support::frame(true, 0, 8, None, &close_payload(1000, b"")),
    )
    .await;
    let started = tokio::time::Instant::now();
    assert_eq!(
        within(5, client.recv()).await.unwrap().unwrap(),
        Message::close(CloseCode::NORMAL, "")
    );
    assert!(within(5, client.recv()).await.is_none());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "waited only {waited:?}"
    );
    let answer = within(5, read_until_close(&mut raw)).await.unwrap();
    assert!(answer.masked, "a client's frames are masked");
    assert_eq!(answer.close_code(), Some(1000));
}

#[tokio::test]
async fn sink_close_runs_the_close_handshake() {
    let (mut client, server) = ws_pair(Config::default()).await;
    let server_side = read_to_end(server);
    within(5, SinkExt::send(&mut client, Message::text("last words")))
        .await
        .unwrap();
    within(5, SinkExt::close(&mut client)).await.unwrap();
    let seen = within(5, server_side).await.unwrap();
    assert_eq!(
        seen,
        vec![
            Message::text("last words"),
            Message::close(CloseCode::NORMAL, "")
        ]
    );
}

#[tokio::test]
async fn a_closer_ends_a_session_from_another_task() {
    let (mut client, mut server) = ws_pair(Config::default()).await;
    let closer = server.closer();
    let handler = read_to_end(server);
    tokio::time::sleep(Duration::from_millis(20)).await;
    closer.close(CloseCode::POLICY_VIOLATION, "kicked");
    assert!(closer.is_requested());
    assert_eq!(
        within(5, client.recv()).await.unwrap().unwrap(),
        Message::close(CloseCode::POLICY_VIOLATION, "kicked")
    );
    assert!(within(5, client.recv()).await.is_none());
    // The handler's stream sees the echoed close and ends.
    let seen = within(5, handler).await.unwrap();
    assert_eq!(seen, vec![Message::close(CloseCode::POLICY_VIOLATION, "")]);
}

#[tokio::test]
async fn invalid_close_arguments_are_refused_without_touching_the_connection() {
    let (mut client, _server) = ws_pair(Config::default()).await;
    let err = client.close(CloseCode::ABNORMAL, "").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidMessage);
    let err = client
        .close(CloseCode::NORMAL, "x".repeat(124))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidMessage);
    assert!(client.is_open());
    let err = client
        .send(Message::ping(vec![0_u8; 126]))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidMessage);
    assert!(client.is_open());
}

#[tokio::test]
async fn a_close_timeout_of_duration_max_closes_normally_and_waits_without_panicking() {
    // Kept as u32::MAX milliseconds (about 49.7 days): the close timer starts from it without
    // overflowing `Instant` (`Duration::MAX` itself used to panic there).
    let config = Config::default().close_timeout(Duration::MAX);
    assert_eq!(
        config.get_close_timeout(),
        Duration::from_millis(u64::from(u32::MAX))
    );

    // Both close handshakes, each side starting the timer when it sends or answers.
    client_close_completes(config).await;
    server_close_completes(config).await;

    // A peer that never answers: the close waits (its timer is weeks away) until the peer
    // goes, and ends without a panic.
    let (mut raw, s) = tcp_pair().await;
    let mut server = WebSocket::new(s, Role::Server, config);
    let mut closing = tokio::spawn(async move { server.close(CloseCode::NORMAL, "").await });
    let ours = within(5, read_frame(&mut raw)).await.unwrap();
    assert_eq!(ours.close_code(), Some(1000));
    assert!(
        tokio::time::timeout(Duration::from_millis(200), &mut closing)
            .await
            .is_err(),
        "the close gave up long before its timeout"
    );
    drop(raw);
    let ended = within(5, closing).await;
    assert!(ended.is_ok(), "the closing task panicked: {ended:?}");
}

#[tokio::test]
async fn keepalive_of_duration_max_runs_without_panicking() {
    let config = Config::default().keepalive(Duration::MAX, Duration::MAX);
    let (mut client, mut server) = ws_pair(config).await;
    // The server arms its keepalive timer as soon as it waits for input.
    let echo = tokio::spawn(async move {
        while let Some(Ok(message)) = server.recv().await {
            if message.is_close() || server.send(message).await.is_err() {
                break;
            }
        }
    });
    for n in 0..3_u8 {
        within(5, client.send(Message::binary(vec![n; 16])))
            .await
            .unwrap();
        assert_eq!(
            within(5, client.recv()).await.unwrap().unwrap(),
            Message::binary(vec![n; 16])
        );
    }
    within(5, client.close(CloseCode::NORMAL, ""))
        .await
        .unwrap();
    let ended = within(5, echo).await;
    assert!(ended.is_ok(), "the echo task panicked: {ended:?}");
}
