//! WebSocket sessions over HTTP/2 (RFC 8441) with hyper's HTTP/2 client doing the extended CONNECT.
#![cfg(feature = "http2")]

pub mod support;

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2::SendRequest;
use hyper::ext::Protocol;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{bounded, echo, inner, serve};
use tokio::net::TcpStream;
use tower::ServiceBuilder;
use tower_ws::{
    CloseCode, Config, Handler, Message, Protocols, Role, Session, UpgradeLayer, WebSocket,
    handler_fn,
};

async fn server(layer: UpgradeLayer<impl Handler + Sync>) -> SocketAddr {
    serve(ServiceBuilder::new().layer(layer).service(inner())).await
}

/// An HTTP/2 connection (prior knowledge), after one ordinary request so the server's
/// SETTINGS (with `ENABLE_CONNECT_PROTOCOL`) have arrived.
async fn h2_client(addr: SocketAddr) -> SendRequest<Empty<Bytes>> {
    let stream = bounded(TcpStream::connect(addr)).await.unwrap();
    let (mut sender, connection) = bounded(
        hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .handshake(TokioIo::new(stream)),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let warmup = Request::get(format!("http://{addr}/warmup"))
        .body(Empty::new())
        .unwrap();
    let response = bounded(sender.send_request(warmup)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    sender
}

fn extended_connect(addr: SocketAddr, path: &str) -> http::request::Builder {
    let mut builder = Request::builder()
        .method(Method::CONNECT)
        .uri(format!("http://{addr}{path}"))
        .header("sec-websocket-version", "13");
    builder
        .extensions_mut()
        .unwrap()
        .insert(Protocol::from_static("websocket"));
    builder
}

async fn open(
    sender: &mut SendRequest<Empty<Bytes>>,
    request: Request<Empty<Bytes>>,
) -> (
    Response<hyper::body::Incoming>,
    WebSocket<TokioIo<hyper::upgrade::Upgraded>>,
) {
    let mut response = bounded(sender.send_request(request)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let upgraded = bounded(hyper::upgrade::on(&mut response)).await.unwrap();
    let socket = WebSocket::new(TokioIo::new(upgraded), Role::Client, Config::default());
    (response, socket)
}

#[tokio::test]
async fn extended_connect_gets_200_without_accept_or_length_and_the_stream_echoes() {
    let addr = server(UpgradeLayer::new(echo())).await;
    let mut sender = h2_client(addr).await;
    let request = extended_connect(addr, "/ws").body(Empty::new()).unwrap();
    let (response, mut socket) = open(&mut sender, request).await;
    assert!(response.headers().get("sec-websocket-accept").is_none());
    assert!(response.headers().get("content-length").is_none());

    for text in ["hello over h2", &"y".repeat(100_000)] {
        bounded(socket.send(text)).await.unwrap();
        let echoed = bounded(socket.recv()).await.unwrap().unwrap();
        assert_eq!(echoed, Message::text(text));
    }
    bounded(socket.send(Message::binary(vec![9_u8; 70_000])))
        .await
        .unwrap();
    let echoed = bounded(socket.recv()).await.unwrap().unwrap();
    assert_eq!(echoed.as_payload(), vec![9_u8; 70_000].as_slice());
    bounded(socket.close(CloseCode::NORMAL, "")).await.unwrap();
}

#[tokio::test]
async fn the_handler_sees_http2_and_connect_and_the_subprotocol() {
    let handler = handler_fn(
        |Session {
             mut socket,
             handshake,
             ..
         }| async move {
            let summary = format!(
                "{:?} {} {} {}",
                handshake.version(),
                handshake.method(),
                handshake.uri().path(),
                handshake.protocol().unwrap_or("none"),
            );
            socket.send(summary.as_str()).await?;
            socket.close(CloseCode::NORMAL, "").await
        },
    );
    let layer = UpgradeLayer::new(handler).protocols(Protocols::new(["chat"]).unwrap());
    let addr = server(layer).await;
    let mut sender = h2_client(addr).await;
    let request = extended_connect(addr, "/room")
        .header("sec-websocket-protocol", "other, chat")
        .body(Empty::new())
        .unwrap();
    let (response, mut socket) = open(&mut sender, request).await;
    assert_eq!(response.headers()["sec-websocket-protocol"], "chat");
    let message = bounded(socket.recv()).await.unwrap().unwrap();
    assert_eq!(message.as_text(), Some("HTTP/2.0 CONNECT /room chat"));
    let close = bounded(socket.recv()).await.unwrap().unwrap();
    assert_eq!(close, Message::close(CloseCode::NORMAL, ""));
}

#[tokio::test]
async fn several_websockets_share_one_http2_connection() {
    let addr = server(UpgradeLayer::new(echo())).await;
    let mut sender = h2_client(addr).await;
    let mut sockets = Vec::new();
    for _ in 0..4 {
        let request = extended_connect(addr, "/ws").body(Empty::new()).unwrap();
        sockets.push(open(&mut sender, request).await.1);
    }
    for (i, socket) in sockets.iter_mut().enumerate() {
        bounded(socket.send(format!("stream {i}"))).await.unwrap();
    }
    for (i, socket) in sockets.iter_mut().enumerate() {
        let echoed = bounded(socket.recv()).await.unwrap().unwrap();
        assert_eq!(echoed.as_text(), Some(format!("stream {i}").as_str()));
    }
}

#[tokio::test]
async fn extended_connect_with_another_version_is_426() {
    let addr = server(UpgradeLayer::new(echo())).await;
    let mut sender = h2_client(addr).await;
    let mut request = extended_connect(addr, "/ws").body(Empty::new()).unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-version", "8".parse().unwrap());
    let response = bounded(sender.send_request(request)).await.unwrap();
    assert_eq!(response.status(), StatusCode::UPGRADE_REQUIRED);
    assert_eq!(response.headers()["sec-websocket-version"], "13");
}

#[tokio::test]
async fn the_origin_is_checked_against_the_authority() {
    let addr = server(UpgradeLayer::new(echo())).await;
    let mut sender = h2_client(addr).await;
    let same = extended_connect(addr, "/ws")
        .header("origin", format!("http://{addr}"))
        .body(Empty::new())
        .unwrap();
    let response = bounded(sender.send_request(same)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let other = extended_connect(addr, "/ws")
        .header("origin", "https://evil.example")
        .body(Empty::new())
        .unwrap();
    let response = bounded(sender.send_request(other)).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn ordinary_http2_requests_and_other_connects_reach_the_inner_service() {
    let addr = server(UpgradeLayer::new(echo())).await;
    let mut sender = h2_client(addr).await;
    let get = Request::get(format!("http://{addr}/page"))
        .body(Empty::new())
        .unwrap();
    let response = bounded(sender.send_request(get)).await.unwrap();
    let body = bounded(response.into_body().collect()).await.unwrap();
    assert_eq!(body.to_bytes(), "inner GET /page body=");

    let mut other = extended_connect(addr, "/tunnel")
        .body(Empty::new())
        .unwrap();
    other
        .extensions_mut()
        .insert(Protocol::from_static("webtransport"));
    let response = bounded(sender.send_request(other)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-inner"], "inner CONNECT /tunnel body=");
}
