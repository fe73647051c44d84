//! `tower_ws::axum`: the `WebSocketUpgrade` extractor in axum routers, checked for what axum's
//! own `extract::ws` tests check (HTTP/1.0 refused, `on_failed_upgrade` with `axum::Error`,
//! subprotocol choice, echo over HTTP/1.1 and HTTP/2) and for what it adds (strict checks,
//! origin policy, deflate, keepalive, shutdown, the socket underneath, in-process tests).

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use axum::routing::{any, get};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Method, Request, StatusCode, Version};
use support::{bounded, handshake, raw, within};
use tokio_tungstenite::tungstenite;
use tower::ServiceExt;
use tower_ws::axum::rejection::WebSocketUpgradeRejection;
use tower_ws::axum::{Message, UpgradeSettings, WebSocket, WebSocketUpgrade, close_code};
use tower_ws::{AllowOrigin, ClientBuilder};

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A valid handshake request for `oneshot` tests (no hyper connection behind it).
fn handshake_request(version: Version) -> Request<Body> {
    Request::builder()
        .version(version)
        .method(Method::GET)
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-key", "6D69KGBOr4Re+Nj6zx9aQA==")
        .header("sec-websocket-version", "13")
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn an_http_1_0_request_is_not_upgradable() {
    let route = any(
        |ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>| async move {
            match ws {
                Err(WebSocketUpgradeRejection::ConnectionNotUpgradable(_)) => "not upgradable",
                Err(_) => "another rejection",
                Ok(_) => "accepted",
            }
        },
    );
    let response = route
        .oneshot(handshake_request(Version::HTTP_10))
        .await
        .unwrap();
    let body = axum::body::to_bytes(response.into_body(), 1024)
        .await
        .unwrap();
    assert_eq!(body, "not upgradable");

    // Over a real connection the rejection is the answer: 426 with its text.
    let addr = serve(Router::new().route("/ws", any(echo_handler))).await;
    let request = String::from_utf8(handshake("GET", "/ws", &support::VALID))
        .unwrap()
        .replacen("HTTP/1.1", "HTTP/1.0", 1);
    let response = raw(addr, request.as_bytes()).await;
    assert_eq!(response.status, 426);
    assert!(
        response.body.contains("couldn't be upgraded"),
        "{}",
        response.body
    );
}

/// axum's `on_failed_upgrade` takes any `FnOnce(axum::Error)`: this must compile as in axum.
#[expect(dead_code, reason = "compiled, not run: the signature is the test")]
fn on_failed_upgrade_takes_an_axum_error() {
    async fn handler(ws: WebSocketUpgrade) -> Response {
        ws.on_failed_upgrade(|_error: axum::Error| println!("oops!"))
            .on_upgrade(|_| async {})
    }
    let _: Router = Router::new().route("/", any(handler));
}

#[tokio::test]
async fn on_failed_upgrade_is_called_when_the_connection_is_not_handed_over() {
    let (failed, mut failures) = tokio::sync::mpsc::unbounded_channel::<axum::Error>();
    let route = any(move |ws: WebSocketUpgrade| async move {
        ws.on_failed_upgrade(move |error| {
            let _ = failed.send(error);
        })
        .on_upgrade(|_| async { panic!("never upgraded") })
    });
    let mut request = handshake_request(Version::HTTP_11);
    // An upgrade handle that can never complete: the one of a request no server holds.
    let never = hyper::upgrade::on(Request::new(()));
    request.extensions_mut().insert(never);
    let response = route.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    let error = within(10, failures.recv()).await.unwrap();
    assert!(error.into_inner().downcast::<hyper::Error>().is_ok());
}

async fn echo_handler(ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(|mut socket: WebSocket| async move {
        while let Some(Ok(message)) = socket.recv().await {
            if let Message::Text(_) | Message::Binary(_) = message
                && socket.send(message).await.is_err()
            {
                return;
            }
        }
    })
}

/// An echo that picks the subprotocol as axum's test does and reports pings it receives.
fn echo_app() -> Router {
    async fn handle_socket(mut socket: WebSocket) {
        assert_eq!(socket.protocol().unwrap(), "echo");
        while let Some(Ok(message)) = socket.recv().await {
            let reply = match message {
                Message::Text(_) | Message::Binary(_) | Message::Close(_) => message,
                // Pings reach the handler, as in axum; the engine has answered it already.
                Message::Ping(payload) => Message::text(format!("saw ping {payload:?}")),
                Message::Pong(_) => continue,
            };
            if socket.send(reply).await.is_err() {
                break;
            }
        }
    }
    Router::new().route(
        "/echo",
        any(|ws: WebSocketUpgrade| async move {
            let requested: Vec<_> = ws.requested_protocols().cloned().collect();
            assert_eq!(requested, ["echo", "echo3"], "sorted, as axum's set");
            let ws = ws.protocols(["echo2", "echo"]);
            assert_eq!(ws.selected_protocol().unwrap(), "echo");
            ws.on_upgrade(handle_socket)
        }),
    )
}

const OFFERED: &str = "echo3, echo";

async fn check_echo_app<S>(
    mut socket: tokio_tungstenite::WebSocketStream<S>,
    headers: &http::HeaderMap,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    assert_eq!(headers[http::header::SEC_WEBSOCKET_PROTOCOL], "echo");
    let input = tungstenite::Message::text("foobar");
    bounded(socket.send(input.clone())).await.unwrap();
    assert_eq!(bounded(socket.next()).await.unwrap().unwrap(), input);

    bounded(socket.send(tungstenite::Message::Ping(Bytes::from_static(b"ping"))))
        .await
        .unwrap();
    assert_eq!(
        bounded(socket.next()).await.unwrap().unwrap(),
        tungstenite::Message::Pong(Bytes::from_static(b"ping"))
    );
    assert_eq!(
        bounded(socket.next()).await.unwrap().unwrap(),
        tungstenite::Message::text("saw ping b\"ping\"")
    );
}

#[tokio::test]
async fn echo_over_http_1_1_with_a_subprotocol() {
    let addr = serve(echo_app()).await;
    let uri = format!("ws://{addr}/echo").try_into().unwrap();
    let request = tungstenite::ClientRequestBuilder::new(uri).with_sub_protocol(OFFERED);
    let (socket, response) = bounded(tokio_tungstenite::connect_async(request))
        .await
        .unwrap();
    check_echo_app(socket, response.headers()).await;
}

#[tokio::test]
async fn echo_over_http_2() {
    use http_body_util::BodyExt;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let addr = serve(echo_app()).await;
    let io = TokioIo::new(tokio::net::TcpStream::connect(addr).await.unwrap());
    let (mut send_request, connection) =
        hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .handshake(io)
            .await
            .unwrap();
    tokio::spawn(connection);
    // The server's SETTINGS (extended CONNECT on) arrive with the first exchange.
    let warmup = Request::get(format!("http://{addr}/"))
        .body(Body::empty())
        .unwrap();
    bounded(send_request.send_request(warmup)).await.unwrap();

    let request = Request::builder()
        .method(Method::CONNECT)
        .extension(hyper::ext::Protocol::from_static("websocket"))
        .uri(format!("http://{addr}/echo"))
        .header("sec-websocket-version", "13")
        .header("sec-websocket-protocol", OFFERED)
        .body(Body::empty())
        .unwrap();
    let mut response = bounded(send_request.send_request(request)).await.unwrap();
    if response.status() != StatusCode::OK {
        let body = response.into_body().collect().await.unwrap().to_bytes();
        panic!("refused: {body:?}");
    }
    let upgraded = bounded(hyper::upgrade::on(&mut response)).await.unwrap();
    let socket = tokio_tungstenite::WebSocketStream::from_raw_socket(
        TokioIo::new(upgraded),
        tungstenite::protocol::Role::Client,
        None,
    )
    .await;
    check_echo_app(socket, response.headers()).await;
}

#[tokio::test]
async fn a_route_is_tested_in_process_without_a_network() {
    let app = Router::new().route("/echo", any(echo_handler));
    let (mut socket, response) =
        bounded(ClientBuilder::new().connect_service("ws://localhost/echo", app.clone()))
            .await
            .unwrap();
    assert_eq!(response.status(), 101);
    bounded(socket.send("in process")).await.unwrap();
    let echoed = bounded(socket.recv()).await.unwrap().unwrap();
    assert_eq!(echoed.as_text(), Some("in process"));
    bounded(socket.close(tower_ws::CloseCode::NORMAL, ""))
        .await
        .unwrap();

    // A refusal comes back as the error, with the route's answer.
    let error = bounded(ClientBuilder::new().connect_service("ws://localhost/nowhere", app))
        .await
        .unwrap_err();
    let rejected = std::error::Error::source(&error)
        .and_then(|source| source.downcast_ref::<tower_ws::HandshakeRejected>())
        .expect("the route's answer");
    assert_eq!(rejected.status(), 404);
}

#[tokio::test]
async fn axum_checks_come_first_then_the_strict_ones() {
    let addr = serve(Router::new().route("/ws", any(echo_handler))).await;
    let cases: [(&str, &[&str], u16, &str); 6] = [
        ("POST", &support::VALID, 405, "must be `GET`"),
        ("GET", &["Connection: keep-alive"], 400, "Connection header"),
        (
            "GET",
            &["Connection: upgrade", "Upgrade: h2c"],
            400,
            "`Upgrade` header",
        ),
        (
            "GET",
            &[
                "Connection: upgrade",
                "Upgrade: websocket",
                "Sec-WebSocket-Version: 13",
                "Sec-WebSocket-Key: c2hvcnQ=",
            ],
            400,
            "base64 of exactly 16 bytes",
        ),
        (
            "GET",
            &[
                "Connection: upgrade",
                "Upgrade: websocket",
                "Sec-WebSocket-Version: 13",
            ],
            400,
            "`Sec-WebSocket-Key` header missing",
        ),
        (
            "GET",
            &[
                "Connection: upgrade",
                "Upgrade: websocket",
                "Sec-WebSocket-Version: 8",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            ],
            400,
            "'13'",
        ),
    ];
    for (method, lines, status, text) in cases {
        let response = raw(addr, &handshake(method, "/ws", lines)).await;
        assert_eq!(
            response.status, status,
            "{method} {lines:?}: {}",
            response.body
        );
        assert!(response.body.contains(text), "{lines:?}: {}", response.body);
    }
}

#[tokio::test]
async fn the_origin_policy_comes_from_the_settings_layer() {
    let cross_site = [support::VALID.as_slice(), &["Origin: https://evil.example"]].concat();
    let default = serve(Router::new().route("/ws", any(echo_handler))).await;
    let response = raw(default, &handshake("GET", "/ws", &cross_site)).await;
    assert_eq!(response.status, 403);
    assert!(response.body.contains("Origin"), "{}", response.body);

    let open = Router::new()
        .route("/ws", any(echo_handler))
        .layer(UpgradeSettings::new().allow_origin(AllowOrigin::any()));
    let response = raw(serve(open).await, &handshake("GET", "/ws", &cross_site)).await;
    assert_eq!(response.status, 101);
}

#[tokio::test]
async fn the_callback_returning_closes_with_1000_and_errors_downcast_to_ours() {
    let (errors, mut received) = tokio::sync::mpsc::unbounded_channel();
    let app = Router::new()
        .route(
            "/",
            any(move |ws: WebSocketUpgrade| async move {
                ws.max_message_size(16)
                    .on_upgrade(move |mut socket| async move {
                        // The first message is too big: the engine fails the connection with 1009.
                        if let Some(Err(error)) = socket.recv().await {
                            let ours = error.into_inner().downcast::<tower_ws::Error>().unwrap();
                            let _ = errors.send(ours.close_code());
                        }
                    })
            }),
        )
        .route(
            "/hello",
            any(|ws: WebSocketUpgrade| async move {
                ws.on_upgrade(|mut socket| async move {
                    let _ = socket.send(Message::text("hello")).await;
                })
            }),
        );
    let addr = serve(app).await;
    let mut client = support::connect(addr, "/").await;
    bounded(client.send(tungstenite::Message::binary(vec![0; 17])))
        .await
        .unwrap();
    assert_eq!(support::close_code(&mut client).await, Some(1009));
    assert_eq!(
        within(10, received.recv()).await.unwrap(),
        Some(tower_ws::CloseCode::MESSAGE_TOO_BIG)
    );

    let mut client = support::connect(addr, "/hello").await;
    let hello = bounded(client.next()).await.unwrap().unwrap();
    assert_eq!(hello, tungstenite::Message::text("hello"));
    assert_eq!(
        support::close_code(&mut client).await,
        Some(close_code::NORMAL)
    );
}

#[tokio::test]
async fn keepalive_pings_an_idle_client() {
    let app = Router::new().route(
        "/",
        any(|ws: WebSocketUpgrade| async move {
            ws.keepalive(Duration::from_millis(50), Duration::from_secs(5))
                .on_upgrade(|mut socket| async move { while socket.recv().await.is_some() {} })
        }),
    );
    let mut client = support::connect(serve(app).await, "/").await;
    let message = bounded(client.next()).await.unwrap().unwrap();
    assert!(message.is_ping(), "{message:?}");
}

#[tokio::test]
async fn the_socket_underneath_is_ours() {
    let app = Router::new().route(
        "/",
        get(|ws: WebSocketUpgrade| async move {
            ws.on_upgrade(|socket| async move {
                let mut ours: tower_ws::WebSocket<tower_ws::UpgradedIo> = socket.into_inner();
                let _ = ours.close(tower_ws::CloseCode::from(4000), "ours").await;
            })
        }),
    );
    let mut client = support::connect(serve(app).await, "/").await;
    assert_eq!(support::close_code(&mut client).await, Some(4000));
}

#[cfg(feature = "deflate")]
#[tokio::test]
async fn deflate_is_negotiated_when_the_extractor_asks_for_it() {
    use tower_ws::{Config, DeflateConfig};

    let app = Router::new()
        .route(
            "/plain",
            any(|ws: WebSocketUpgrade| async move { echo_handler(ws).await }),
        )
        .route(
            "/deflate",
            any(|ws: WebSocketUpgrade| async move {
                echo_handler(ws.deflate(DeflateConfig::default())).await
            }),
        );
    let addr = serve(app).await;
    let client = ClientBuilder::new().config(Config::default().deflate(DeflateConfig::default()));
    let (_, plain) = bounded(client.connect(format!("ws://{addr}/plain")))
        .await
        .unwrap();
    assert!(plain.headers().get("sec-websocket-extensions").is_none());
    let (mut ws, response) = bounded(client.connect(format!("ws://{addr}/deflate")))
        .await
        .unwrap();
    let extensions = response.headers()["sec-websocket-extensions"]
        .to_str()
        .unwrap();
    assert!(extensions.starts_with("permessage-deflate"), "{extensions}");
    let text = "compressible ".repeat(100);
    bounded(ws.send(text.as_str())).await.unwrap();
    assert_eq!(
        bounded(ws.recv()).await.unwrap().unwrap().as_text(),
        Some(text.as_str())
    );
}

/// axum's graceful shutdown stops at upgraded connections; the settings' `Shutdown` reaches
/// them: every socket gets 1001, and new handshakes 503.
#[tokio::test]
async fn shutdown_closes_upgraded_sockets_with_1001() {
    let settings = UpgradeSettings::new();
    let shutdown = settings.shutdown_handle();
    let app = Router::new().route("/", any(echo_handler)).layer(settings);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let sessions = shutdown.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
                assert_eq!(sessions.shutdown(Duration::from_secs(5)).await, 0);
            })
            .await
    });
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(support::connect(addr, "/").await);
    }
    assert_eq!(shutdown.active(), 3);
    stop.send(()).unwrap();
    for client in &mut clients {
        assert_eq!(support::close_code(client).await, Some(close_code::AWAY));
        // Reading on sends tungstenite's answer to the close, and sees the server hang up.
        assert!(bounded(client.next()).await.is_none());
    }
    within(10, server).await.unwrap().unwrap();
    assert_eq!(shutdown.active(), 0);
}

#[tokio::test]
async fn a_shutting_down_server_refuses_new_handshakes() {
    let settings = UpgradeSettings::new();
    let shutdown = settings.shutdown_handle();
    let addr = serve(Router::new().route("/", any(echo_handler)).layer(settings)).await;
    assert_eq!(
        within(10, shutdown.shutdown(Duration::from_secs(1))).await,
        0
    );
    let response = raw(addr, &handshake("GET", "/", &support::VALID)).await;
    assert_eq!(response.status, 503);
    assert!(response.body.contains("shutting down"), "{}", response.body);
}

/// Under `axum::serve` the connection is unwrapped to its `TcpStream`: no dynamic dispatch,
/// no hyper buffer per socket (the layer's fast path, shared by the extractor).
#[tokio::test]
async fn under_axum_serve_the_socket_runs_on_the_tcp_stream_itself() {
    let app = Router::new().route(
        "/",
        any(|ws: WebSocketUpgrade| async move {
            ws.on_upgrade(|mut socket| async move {
                let tcp = socket.get_ref().get_ref().peer_addr().is_some();
                let _ = socket.send(Message::text(format!("tcp: {tcp}"))).await;
            })
        }),
    );
    let mut client = support::connect(serve(app).await, "/").await;
    let answer = bounded(client.next()).await.unwrap().unwrap();
    assert_eq!(answer, tungstenite::Message::text("tcp: true"));
}
