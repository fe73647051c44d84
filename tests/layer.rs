//! The layer as middleware: pass-through, origin policy, subprotocols, what the handler sees,
//! and how a session ends whatever the handler does.

pub mod support;

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::net::SocketAddr;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use support::{
    VALID, bounded, close_code, connect, connect_with, echo, handshake, inner, raw, request, serve,
    serve_http1, try_connect_with,
};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message as TMessage;
use tower::{Service, ServiceBuilder};
use tower_ws::{
    AllowOrigin, CloseCode, Config, Handler, Message, Protocols, Role, Session, UpgradeLayer,
    WebSocket, handler_fn,
};

async fn server_with(layer: UpgradeLayer<impl Handler + Sync>) -> SocketAddr {
    serve(ServiceBuilder::new().layer(layer).service(inner())).await
}

/// Reads the next text message from a tungstenite client.
async fn next_text(client: &mut support::Client) -> String {
    loop {
        match bounded(client.next()).await {
            Some(Ok(TMessage::Text(text))) => return text.as_str().to_owned(),
            Some(Ok(TMessage::Ping(_) | TMessage::Pong(_))) => {}
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// Sends `text` on a server that echoes and checks it comes back.
async fn assert_echoes(client: &mut support::Client, text: &str) {
    bounded(client.send(TMessage::text(text))).await.unwrap();
    assert_eq!(next_text(client).await, text);
}

// ----- pass-through -----------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
struct Marker(&'static str);

#[tokio::test]
async fn an_ordinary_request_reaches_the_inner_service_with_its_body_and_extensions() {
    let inner = tower::service_fn(|request: Request<Incoming>| async move {
        let marker = request.extensions().get::<Marker>().cloned();
        let peer = request.extensions().get::<SocketAddr>().is_some();
        let method = request.method().clone();
        let body = request.into_body().collect().await.unwrap().to_bytes();
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!(
            "{method} {marker:?} peer={peer} {}",
            String::from_utf8_lossy(&body)
        )))))
    });
    let service = ServiceBuilder::new()
        .map_request(|mut request: Request<Incoming>| {
            request.extensions_mut().insert(Marker("outer"));
            request
        })
        .layer(UpgradeLayer::new(echo()))
        .service(inner);
    let addr = serve(service).await;
    let body = "a request body that must arrive whole";
    let request = format!(
        "POST /api HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let response = raw(addr, request.as_bytes()).await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.body,
        format!("POST Some(Marker(\"outer\")) peer=true {body}")
    );
}

// ----- origin policy ----------------------------------------------------------------------

async fn status_with_origin(addr: SocketAddr, origin: Option<&str>) -> u16 {
    let origin_line = origin.map(|o| format!("Origin: {o}"));
    let mut lines: Vec<&str> = VALID.to_vec();
    if let Some(line) = &origin_line {
        lines.push(line);
    }
    // `handshake` sends `Host: localhost`.
    raw(addr, &handshake("GET", "/ws", &lines)).await.status
}

#[tokio::test]
async fn by_default_a_handshake_without_origin_is_accepted() {
    let addr = server_with(UpgradeLayer::new(echo())).await;
    assert_eq!(status_with_origin(addr, None).await, 101);
}

#[tokio::test]
async fn by_default_an_origin_of_the_same_host_is_accepted() {
    let addr = server_with(UpgradeLayer::new(echo())).await;
    assert_eq!(
        status_with_origin(addr, Some("http://localhost")).await,
        101
    );
    assert_eq!(
        status_with_origin(addr, Some("https://LOCALHOST")).await,
        101
    );
}

#[tokio::test]
async fn by_default_an_origin_of_another_host_or_port_is_403() {
    let addr = server_with(UpgradeLayer::new(echo())).await;
    for origin in [
        "http://evil.example",
        "http://localhost:8080",
        "http://localhost.evil.example",
        "null",
    ] {
        let line = format!("Origin: {origin}");
        let lines = [VALID.as_slice(), &[line.as_str()]].concat();
        let response = raw(addr, &handshake("GET", "/ws", &lines)).await;
        assert_eq!(response.status, 403, "{origin}");
        assert_eq!(response.body, "origin not allowed\n");
    }
}

#[tokio::test]
async fn an_origin_in_the_allow_list_is_accepted_and_others_still_refused() {
    let policy = AllowOrigin::list(["https://app.example.com"]).unwrap();
    let addr = server_with(UpgradeLayer::new(echo()).allow_origin(policy)).await;
    assert_eq!(
        status_with_origin(addr, Some("https://app.example.com")).await,
        101
    );
    assert_eq!(
        status_with_origin(addr, Some("http://localhost")).await,
        101
    );
    assert_eq!(
        status_with_origin(addr, Some("https://evil.example")).await,
        403
    );
}

#[tokio::test]
async fn a_predicate_decides_origins_of_other_hosts() {
    let policy =
        AllowOrigin::predicate(|origin, _| origin.as_bytes().ends_with(b".trusted.example"));
    let addr = server_with(UpgradeLayer::new(echo()).allow_origin(policy)).await;
    assert_eq!(
        status_with_origin(addr, Some("https://a.trusted.example")).await,
        101
    );
    assert_eq!(
        status_with_origin(addr, Some("https://untrusted.example")).await,
        403
    );
}

#[tokio::test]
async fn allow_origin_any_accepts_every_origin() {
    let addr = server_with(UpgradeLayer::new(echo()).allow_origin(AllowOrigin::any())).await;
    assert_eq!(
        status_with_origin(addr, Some("https://evil.example")).await,
        101
    );
    assert_eq!(status_with_origin(addr, Some("null")).await, 101);
}

// ----- subprotocols -----------------------------------------------------------------------

fn tell_protocol() -> impl Handler + Sync {
    handler_fn(
        |Session {
             mut socket,
             handshake,
             ..
         }| async move {
            let protocol = handshake.protocol().unwrap_or("none").to_owned();
            socket.send(protocol.as_str()).await?;
            socket.close(CloseCode::NORMAL, "").await
        },
    )
}

#[tokio::test]
async fn the_servers_most_preferred_offered_subprotocol_is_chosen_and_seen_by_the_handler() {
    let protocols = Protocols::new(["v3", "v2", "v1"]).unwrap();
    let addr = server_with(UpgradeLayer::new(tell_protocol()).protocols(protocols)).await;
    let offer = request(addr, "/ws")
        .with_sub_protocol("v1")
        .with_sub_protocol("v2");
    let (mut client, response) = try_connect_with(addr, offer).await.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "v2");
    assert_eq!(next_text(&mut client).await, "v2");
}

#[tokio::test]
async fn no_matching_subprotocol_means_no_header_and_none_for_the_handler() {
    let protocols = Protocols::new(["v1"]).unwrap();
    let addr = server_with(UpgradeLayer::new(tell_protocol()).protocols(protocols)).await;
    let lines = [VALID.as_slice(), &["Sec-WebSocket-Protocol: other, v1x"]].concat();
    let response = raw(addr, &handshake("GET", "/ws", &lines)).await;
    assert_eq!(response.status, 101);
    assert!(response.header("sec-websocket-protocol").is_empty());
    let mut socket = WebSocket::from_partially_read(
        response.stream,
        &response.rest[..],
        Role::Client,
        Config::default(),
    );
    let message = bounded(socket.recv()).await.unwrap().unwrap();
    assert_eq!(message.as_text(), Some("none"));
}

#[tokio::test]
async fn a_required_subprotocol_that_is_not_offered_is_400() {
    let protocols = Protocols::new(["v1"]).unwrap();
    let layer = UpgradeLayer::new(echo())
        .protocols(protocols)
        .require_protocol(true);
    let addr = server_with(layer).await;
    let response = raw(addr, &handshake("GET", "/ws", &VALID)).await;
    assert_eq!(response.status, 400);
    let lines = [VALID.as_slice(), &["Sec-WebSocket-Protocol: v1"]].concat();
    let response = raw(addr, &handshake("GET", "/ws", &lines)).await;
    assert_eq!(response.status, 101);
    assert_eq!(response.header("sec-websocket-protocol"), ["v1"]);
}

// ----- what the handler sees --------------------------------------------------------------

#[derive(Clone, Debug)]
struct User(&'static str);

#[tokio::test]
async fn the_handler_reads_the_request_head_and_an_extension_set_by_an_outer_layer() {
    let handler = handler_fn(
        |Session {
             mut socket,
             handshake,
             ..
         }| async move {
            let user = handshake
                .extensions()
                .get::<User>()
                .map_or("nobody", |u| u.0);
            let peer = handshake.extensions().get::<SocketAddr>().is_some();
            let summary = format!(
                "{user} {} {} {:?} agent={} peer={peer}",
                handshake.method(),
                handshake.uri(),
                handshake.version(),
                handshake.headers()["user-agent"].to_str().unwrap_or("?"),
            );
            socket.send(summary.as_str()).await?;
            socket.close(CloseCode::NORMAL, "").await
        },
    );
    let service = ServiceBuilder::new()
        .map_request(|mut request: Request<Incoming>| {
            request.extensions_mut().insert(User("alice"));
            request
        })
        .layer(UpgradeLayer::new(handler))
        .service(inner());
    let addr = serve(service).await;
    let mut client = connect_with(
        addr,
        request(addr, "/room?x=1").with_header("User-Agent", "layer-test"),
    )
    .await;
    assert_eq!(
        next_text(&mut client).await,
        "alice GET /room?x=1 HTTP/1.1 agent=layer-test peer=true"
    );
}

// ----- how sessions end -------------------------------------------------------------------

#[tokio::test]
async fn a_handler_error_closes_the_socket_with_1011() {
    let handler = handler_fn(|Session { mut socket, .. }| async move {
        socket.send("about to fail").await?;
        Err::<(), support::BoxError>("the database is down".into())
    });
    let addr = server_with(UpgradeLayer::new(handler)).await;
    let mut client = connect(addr, "/ws").await;
    assert_eq!(next_text(&mut client).await, "about to fail");
    assert_eq!(close_code(&mut client).await, Some(1011));
}

#[tokio::test]
async fn a_handler_panic_closes_the_socket_with_1011() {
    let handler = handler_fn(|Session { mut socket, .. }| async move {
        let _ = socket.send("about to panic").await;
        let items: Vec<u8> = Vec::new();
        let _ = items[usize::from(items.is_empty())];
    });
    let addr = server_with(UpgradeLayer::new(handler)).await;
    let mut client = connect(addr, "/ws").await;
    assert_eq!(next_text(&mut client).await, "about to panic");
    assert_eq!(close_code(&mut client).await, Some(1011));
}

#[tokio::test]
async fn a_handler_returning_ok_without_closing_closes_with_1000() {
    let handler = handler_fn(|Session { mut socket, .. }| async move {
        let _ = socket.send("done").await;
    });
    let addr = server_with(UpgradeLayer::new(handler)).await;
    let mut client = connect(addr, "/ws").await;
    assert_eq!(next_text(&mut client).await, "done");
    assert_eq!(close_code(&mut client).await, Some(1000));
}

#[tokio::test]
async fn a_handler_that_drops_both_split_halves_closes_with_1000() {
    let handler = handler_fn(|Session { socket, .. }| async move {
        let (_read, mut write) = socket.split();
        let _ = write.send("split").await;
    });
    let addr = server_with(UpgradeLayer::new(handler)).await;
    let mut client = connect(addr, "/ws").await;
    assert_eq!(next_text(&mut client).await, "split");
    assert_eq!(close_code(&mut client).await, Some(1000));
}

#[tokio::test]
async fn a_handler_that_closes_the_socket_itself_keeps_its_code() {
    let handler = handler_fn(|Session { mut socket, .. }| async move {
        socket.close(CloseCode::from(4001), "bye").await
    });
    let addr = server_with(UpgradeLayer::new(handler)).await;
    let mut client = connect(addr, "/ws").await;
    assert_eq!(close_code(&mut client).await, Some(4001));
}

#[derive(Clone)]
struct NeverReady;

impl Service<Session> for NeverReady {
    type Response = ();
    type Error = std::io::Error;
    type Future = Ready<Result<(), std::io::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Err(std::io::Error::other("out of capacity")))
    }

    fn call(&mut self, _: Session) -> Self::Future {
        ready(Ok(()))
    }
}

#[tokio::test]
async fn a_handler_that_is_not_ready_closes_the_socket_with_1011() {
    let addr = server_with(UpgradeLayer::new(NeverReady)).await;
    let mut client = connect(addr, "/ws").await;
    assert_eq!(close_code(&mut client).await, Some(1011));
}

#[tokio::test]
async fn a_socket_the_handler_moves_into_its_own_task_is_left_alone() {
    let handler = handler_fn(|Session { mut socket, .. }| async move {
        tokio::spawn(async move {
            while let Some(Ok(message)) = socket.recv().await {
                if message.is_text() && socket.send(message).await.is_err() {
                    break;
                }
            }
        });
    });
    let addr = server_with(UpgradeLayer::new(handler)).await;
    let mut client = connect(addr, "/ws").await;
    // The handler returned at once; its socket lives on in the spawned task.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_echoes(&mut client, "still here").await;
}

// ----- transports -------------------------------------------------------------------------

fn tell_transport() -> impl Handler + Sync {
    handler_fn(|Session { mut socket, .. }| async move {
        let kind = if socket.get_ref().peer_addr().is_some() {
            "tcp"
        } else {
            "upgraded"
        };
        socket.send(kind).await?;
        socket.close(CloseCode::NORMAL, "").await
    })
}

#[tokio::test]
async fn hypers_own_http1_connection_hands_over_the_tcp_stream() {
    let addr = serve_http1(
        ServiceBuilder::new()
            .layer(UpgradeLayer::new(tell_transport()))
            .service(inner()),
    )
    .await;
    let mut client = connect(addr, "/ws").await;
    assert_eq!(next_text(&mut client).await, "tcp");
}

/// Unwrapping the auto builder's connection needs hyper-util's `server-auto`, which the
/// `http2` feature brings.
#[cfg(feature = "http2")]
#[tokio::test]
async fn the_auto_builders_connection_hands_over_the_tcp_stream() {
    let addr = server_with(UpgradeLayer::new(tell_transport())).await;
    let mut client = connect(addr, "/ws").await;
    assert_eq!(next_text(&mut client).await, "tcp");
}

/// A masked client text frame.
fn client_text_frame(text: &str) -> Vec<u8> {
    let key = [0x12, 0x34, 0x56, 0x78];
    let mut frame = vec![0x81, 0x80 | u8::try_from(text.len()).unwrap()];
    frame.extend_from_slice(&key);
    frame.extend(text.bytes().enumerate().map(|(i, b)| b ^ key[i % 4]));
    frame
}

#[tokio::test]
async fn frames_sent_with_the_handshake_are_not_lost() {
    for addr in [
        server_with(UpgradeLayer::new(echo())).await,
        serve_http1(
            ServiceBuilder::new()
                .layer(UpgradeLayer::new(echo()))
                .service(inner()),
        )
        .await,
    ] {
        let mut bytes = handshake("GET", "/ws", &VALID);
        bytes.extend(client_text_frame("early"));
        bytes.extend(client_text_frame("bird"));
        let response = raw(addr, &bytes).await;
        assert_eq!(response.status, 101);
        let mut socket = WebSocket::from_partially_read(
            response.stream,
            &response.rest[..],
            Role::Client,
            Config::default(),
        );
        for expected in ["early", "bird"] {
            let message = bounded(socket.recv()).await.unwrap().unwrap();
            assert_eq!(message, Message::text(expected));
        }
        bounded(socket.close(CloseCode::NORMAL, "")).await.unwrap();
    }
}

#[tokio::test]
async fn echo_works_end_to_end_with_an_independent_client() {
    let addr = server_with(UpgradeLayer::new(echo())).await;
    let mut client = connect(addr, "/ws").await;
    assert_echoes(&mut client, "hello").await;
    let big = "x".repeat(200_000);
    assert_echoes(&mut client, &big).await;
    bounded(client.send(TMessage::binary(vec![1_u8, 2, 3])))
        .await
        .unwrap();
    match bounded(client.next()).await {
        Some(Ok(TMessage::Binary(data))) => assert_eq!(&data[..], [1, 2, 3]),
        other => panic!("expected binary, got {other:?}"),
    }
    bounded(client.close(None)).await.unwrap();
    // The server answers the close and the stream ends.
    assert!(matches!(
        bounded(client.next()).await,
        Some(Ok(TMessage::Close(_))) | None
    ));
}

#[tokio::test]
async fn a_raw_stream_can_send_the_handshake_and_frames_in_pieces() {
    let addr = server_with(UpgradeLayer::new(echo())).await;
    let mut stream = bounded(tokio::net::TcpStream::connect(addr)).await.unwrap();
    let bytes = handshake("GET", "/ws", &VALID);
    for chunk in bytes.chunks(7) {
        stream.write_all(chunk).await.unwrap();
        stream.flush().await.unwrap();
    }
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0_u8; 1];
        tokio::io::AsyncReadExt::read_exact(&mut stream, &mut byte)
            .await
            .unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    let mut socket = WebSocket::new(stream, Role::Client, Config::default());
    bounded(socket.send("pieces")).await.unwrap();
    let message = bounded(socket.recv()).await.unwrap().unwrap();
    assert_eq!(message.as_text(), Some("pieces"));
}
