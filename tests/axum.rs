//! The axum example's router, served by `axum::serve`: JSON routes beside the chat room (on the
//! `tower_ws::axum` extractor), over HTTP/1.1 and HTTP/2; and the layer inside axum routers.

pub mod support;

#[path = "../examples/axum.rs"]
#[expect(dead_code, reason = "the example's `main` is not run by the tests")]
pub mod example;

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use support::{Client, VALID, bounded, connect, handshake, raw};
use tokio_tungstenite::tungstenite::Message;

async fn serve_example() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = example::app().into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

async fn next_text(client: &mut Client) -> String {
    loop {
        match bounded(client.next()).await {
            Some(Ok(Message::Text(text))) => return text.as_str().to_owned(),
            Some(Ok(_)) => {}
            other => panic!("expected text, got {other:?}"),
        }
    }
}

async fn json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let response = raw(addr, &handshake("GET", path, &["Connection: close"])).await;
    assert_eq!(response.status, 200);
    serde_json::from_str(&response.body).unwrap()
}

#[tokio::test]
async fn json_routes_answer_beside_the_websocket_route() {
    let addr = serve_example().await;
    assert_eq!(
        json(addr, "/api/health").await,
        serde_json::json!({ "status": "ok" })
    );
    let stats = json(addr, "/api/stats").await;
    assert_eq!(stats["members"], 0);
}

#[tokio::test]
async fn every_member_receives_every_message() {
    let addr = serve_example().await;
    let mut alice = connect(addr, "/chat?name=alice").await;
    assert_eq!(next_text(&mut alice).await, "* alice joined");
    let mut bob = connect(addr, "/chat?name=bob").await;
    assert_eq!(next_text(&mut bob).await, "* bob joined");
    assert_eq!(next_text(&mut alice).await, "* bob joined");
    assert_eq!(json(addr, "/api/stats").await["members"], 2);

    bounded(alice.send(Message::text("hi bob"))).await.unwrap();
    assert_eq!(next_text(&mut alice).await, "alice: hi bob");
    assert_eq!(next_text(&mut bob).await, "alice: hi bob");
    bounded(bob.send(Message::text("hi alice"))).await.unwrap();
    assert_eq!(next_text(&mut bob).await, "bob: hi alice");
    assert_eq!(next_text(&mut alice).await, "bob: hi alice");

    bounded(bob.close(None)).await.unwrap();
    assert_eq!(next_text(&mut alice).await, "* bob left");
    // Bob's member left the hub before the line was said.
    assert_eq!(json(addr, "/api/stats").await["members"], 1);
    assert_eq!(json(addr, "/api/stats").await["messages"], 5);
}

#[tokio::test]
async fn shutdown_closes_every_member_with_1001() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (app, sockets) = example::app_with_shutdown();
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut alice = connect(addr, "/chat?name=alice").await;
    assert_eq!(next_text(&mut alice).await, "* alice joined");
    let closing =
        tokio::spawn(async move { sockets.shutdown(std::time::Duration::from_secs(5)).await });
    assert_eq!(support::close_code(&mut alice).await, Some(1001));
    // Reading on answers the close; the member's socket then ends in time.
    assert!(bounded(alice.next()).await.is_none());
    assert_eq!(bounded(closing).await.unwrap(), 0);
}

#[tokio::test]
async fn the_chat_route_refuses_plain_requests_and_foreign_origins() {
    let addr = serve_example().await;
    let response = raw(addr, &handshake("GET", "/chat", &["Connection: close"])).await;
    assert_eq!(response.status, 400);
    let lines = [VALID.as_slice(), &["Origin: https://evil.example"]].concat();
    let response = raw(addr, &handshake("GET", "/chat", &lines)).await;
    assert_eq!(response.status, 403);
}

/// An HTTP/2 connection to `addr`, after one ordinary request so the server's settings (connect
/// protocol on) have arrived, and an extended CONNECT to `path`.
#[cfg(feature = "http2")]
async fn h2_connect(addr: SocketAddr, path: &str) -> http::Response<hyper::body::Incoming> {
    use bytes::Bytes;
    use http_body_util::Empty;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let stream = bounded(tokio::net::TcpStream::connect(addr)).await.unwrap();
    let (mut sender, connection) = bounded(
        hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .handshake(TokioIo::new(stream)),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let warmup = http::Request::get(format!("http://{addr}/"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    bounded(sender.send_request(warmup)).await.unwrap();

    let mut connect = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("http://{addr}{path}"))
        .header("sec-websocket-version", "13")
        .body(Empty::<Bytes>::new())
        .unwrap();
    connect
        .extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    bounded(sender.send_request(connect)).await.unwrap()
}

#[cfg(feature = "http2")]
#[tokio::test]
async fn the_chat_route_takes_http2_websockets() {
    use hyper_util::rt::TokioIo;
    use tower_ws::{Config, Role, WebSocket};

    let addr = serve_example().await;
    let mut response = h2_connect(addr, "/chat?name=carol").await;
    assert_eq!(response.status(), 200);
    let upgraded = bounded(hyper::upgrade::on(&mut response)).await.unwrap();
    let mut socket = WebSocket::new(TokioIo::new(upgraded), Role::Client, Config::default());
    let joined = bounded(socket.recv()).await.unwrap().unwrap();
    assert_eq!(joined.as_text(), Some("* carol joined"));
    bounded(socket.send("over h2")).await.unwrap();
    let echoed = bounded(socket.recv()).await.unwrap().unwrap();
    assert_eq!(echoed.as_text(), Some("carol: over h2"));
}

/// The pitfall the README warns about: `MethodRouter::route_layer` wraps only the methods a
/// route has, so `get(..).route_layer(ws)` answers the CONNECT with 405 before the layer sees
/// it; a filter that lets CONNECT in, or `MethodRouter::layer` (which also wraps the method
/// router's fallback), lets it through.
#[cfg(feature = "http2")]
#[tokio::test]
async fn a_method_filter_outside_the_layer_must_let_connect_in() {
    use axum::routing::{MethodFilter, any, get, on};
    use tower_ws::{Session, UpgradeLayer, handler_fn};

    let ws = UpgradeLayer::new(handler_fn(|_: Session| async {}));
    let page = || async { "page" };
    let app = axum::Router::new()
        .route("/get-route-layer", get(page).route_layer(ws.clone()))
        .route("/any-layer", any(page).layer(ws.clone()))
        .route(
            "/on-route-layer",
            on(MethodFilter::GET.or(MethodFilter::CONNECT), page).route_layer(ws.clone()),
        )
        .route("/get-layer", get(page).layer(ws));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    assert_eq!(h2_connect(addr, "/get-route-layer").await.status(), 405);
    assert_eq!(h2_connect(addr, "/any-layer").await.status(), 200);
    assert_eq!(h2_connect(addr, "/on-route-layer").await.status(), 200);
    assert_eq!(h2_connect(addr, "/get-layer").await.status(), 200);
}

/// The response body works whichever way axum applies the layer.
#[tokio::test]
async fn the_layer_works_as_router_layer_and_route_layer() {
    use axum::routing::get;
    use tower_ws::UpgradeLayer;

    for app in [
        axum::Router::new()
            .route("/ws", get(|| async { "page" }))
            .layer(UpgradeLayer::new(support::echo())),
        axum::Router::new()
            .route("/ws", get(|| async { "page" }))
            .route_layer(UpgradeLayer::new(support::echo())),
    ] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let response = raw(addr, &handshake("GET", "/ws", &["Connection: close"])).await;
        assert_eq!(response.body, "page");
        let mut client = connect(addr, "/ws").await;
        bounded(client.send(Message::text("through axum")))
            .await
            .unwrap();
        assert_eq!(next_text(&mut client).await, "through axum");
    }
}
