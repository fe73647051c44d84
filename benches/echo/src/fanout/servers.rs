//! The fan-out servers built into the bench, each speaking the broadcast bench protocol
//! (`GET /sub/{room}` subscribes, `GET /pub/{room}` publishes every message it sends) on the
//! current-thread runtime of its own process, pinned to the server core.
//!
//! - `tower-ws`: the hub behind the layer, routed as `examples/fanout_server.rs` does.
//! - `tower-ws-axum`: the same hub from axum's side: an axum `Router` on the `tower_ws::axum`
//!   extractor, each socket joining through `WebSocket::join`, under `axum::serve`.
//! - `axum`: axum 0.8's `ws` with the idiom of axum's chat example: one
//!   `tokio::sync::broadcast` channel per room, and per subscriber a task that receives from
//!   it and `send`s each message on its own.
//! - `tokio-websockets`: the same idiom on tokio-websockets.
//!
//! The broadcast channels hold 128 messages (the chat example's 100, rounded); a subscriber
//! that lags past them skips what it missed (`RecvError::Lagged`) and goes on, where the chat
//! example would end its loop.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;

use crate::Failure;

/// A built-in fan-out server.
#[derive(Debug)]
pub(crate) struct FanoutServer {
    pub(crate) name: &'static str,
    pub(crate) about: &'static str,
    run: fn(TcpListener) -> crate::servers::Running,
}

pub(crate) const ALL: &[FanoutServer] = &[
    FanoutServer {
        name: "tower-ws",
        about: "tower-ws `Hub` behind hyper 1 and its `UpgradeLayer` (examples/fanout_server.rs)",
        run: |l| Box::pin(tower_ws_hub(l)),
    },
    FanoutServer {
        name: "tower-ws-axum",
        about: "tower-ws `Hub` on its axum extractor (`tower_ws::axum`, `socket.join(&hub)`) in an axum 0.8 `Router` under `axum::serve`",
        run: |l| Box::pin(tower_ws_axum_hub(l)),
    },
    FanoutServer {
        name: "axum-broadcast",
        about: "axum 0.8 `ws` + a `tokio::sync::broadcast` per room, a task per subscriber (axum's chat example)",
        run: |l| Box::pin(axum_broadcast(l)),
    },
    FanoutServer {
        name: "tokio-websockets-broadcast",
        about: "tokio-websockets + a `tokio::sync::broadcast` per room, a task per subscriber",
        run: |l| Box::pin(tokio_websockets_broadcast(l)),
    },
];

pub(crate) fn find(name: &str) -> Result<&'static FanoutServer, Failure> {
    ALL.iter()
        .find(|s| s.name == name)
        .ok_or_else(|| Failure::new(format!("unknown fan-out server {name:?}")))
}

/// Runs server `name` on `listener` until the process exits.
pub(crate) async fn run(name: &str, listener: TcpListener) -> Result<(), Failure> {
    (find(name)?.run)(listener).await?;
    Ok(())
}

enum Route {
    Sub(String),
    Pub(String),
}

fn route(path: &str) -> Option<Route> {
    if let Some(room) = path.strip_prefix("/sub/") {
        return Some(Route::Sub(room.to_owned()));
    }
    path.strip_prefix("/pub/").map(|r| Route::Pub(r.to_owned()))
}

async fn accept_each<F, Fut>(listener: TcpListener, mut handle: F) -> std::io::Result<()>
where
    F: FnMut(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(handle(stream));
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(1)).await,
        }
    }
}

// ----- tower-ws ---------------------------------------------------------------------------

async fn tower_ws_hub(listener: TcpListener) -> std::io::Result<()> {
    use http_body_util::Empty;
    use hyper::body::Incoming;
    use hyper_util::rt::TokioIo;
    use hyper_util::service::TowerToHyperService;
    use tower_ws::{Hub, Session, UpgradeLayer, handler_fn};

    let hub = Hub::builder().max_queued(1 << 20).build();
    let handler = handler_fn(
        move |Session {
                  mut socket,
                  handshake,
                  ..
              }| {
            let hub = hub.clone();
            async move {
                match route(handshake.uri().path()) {
                    Some(Route::Sub(room)) => {
                        drop(handshake);
                        let member = hub.join(&mut socket);
                        member.subscribe(&room);
                        while let Some(Ok(_)) = socket.recv().await {}
                    }
                    Some(Route::Pub(room)) => {
                        drop(handshake);
                        while let Some(Ok(message)) = socket.recv().await {
                            hub.publish(&room, message);
                        }
                    }
                    None => {}
                }
            }
        },
    );
    let layer = UpgradeLayer::new(handler);
    let fallback = tower::service_fn(|_: hyper::Request<Incoming>| async {
        Ok::<_, Infallible>(hyper::Response::new(Empty::<Bytes>::new()))
    });
    let service = tower::Layer::layer(&layer, fallback);
    accept_each(listener, move |stream| {
        let service = TowerToHyperService::new(service.clone());
        async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        }
    })
    .await
}

/// The hub behind axum: `Path` and `State` extractors beside `tower_ws::axum`'s
/// `WebSocketUpgrade`, the same hub settings as `tower-ws`.
async fn tower_ws_axum_hub(listener: TcpListener) -> std::io::Result<()> {
    use axum::Router;
    use axum::extract::{Path, State};
    use axum::response::Response;
    use axum::routing::any;
    use axum::serve::ListenerExt as _;
    use tower_ws::Hub;
    use tower_ws::axum::{WebSocket, WebSocketUpgrade};

    async fn sub(
        ws: WebSocketUpgrade,
        Path(room): Path<String>,
        State(hub): State<Hub>,
    ) -> Response {
        ws.on_upgrade(move |mut socket: WebSocket| async move {
            let member = socket.join(&hub);
            member.subscribe(&room);
            drop(room);
            while let Some(Ok(_)) = socket.recv().await {}
        })
    }
    async fn publish(
        ws: WebSocketUpgrade,
        Path(room): Path<String>,
        State(hub): State<Hub>,
    ) -> Response {
        ws.on_upgrade(move |mut socket: WebSocket| async move {
            while let Some(Ok(message)) = socket.recv().await {
                // With its opcode; pings and pongs publish nothing.
                hub.publish(&room, message);
            }
        })
    }
    let app = Router::new()
        .route("/sub/{room}", any(sub))
        .route("/pub/{room}", any(publish))
        .with_state(Hub::builder().max_queued(1 << 20).build());
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await
}

// ----- the broadcast idiom ----------------------------------------------------------------

/// Rooms: one broadcast channel each, made by the first socket that names the room.
#[derive(Clone, Default)]
struct Rooms(Arc<Mutex<HashMap<String, broadcast::Sender<Bytes>>>>);

impl Rooms {
    fn channel(&self, room: &str) -> broadcast::Sender<Bytes> {
        let mut rooms = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        rooms
            .entry(room.to_owned())
            .or_insert_with(|| broadcast::channel(128).0)
            .clone()
    }
}

/// What a subscriber receives next: a message, or `None` once the channel is closed. A lagging
/// subscriber skips what it missed.
async fn next(rx: &mut broadcast::Receiver<Bytes>) -> Option<Bytes> {
    loop {
        match rx.recv().await {
            Ok(message) => return Some(message),
            Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return None,
        }
    }
}

async fn axum_broadcast(listener: TcpListener) -> std::io::Result<()> {
    use axum::Router;
    use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
    use axum::extract::{Path, State};
    use axum::response::Response;
    use axum::routing::any;
    use axum::serve::ListenerExt as _;
    use futures_util::{SinkExt as _, StreamExt as _};

    async fn sub(
        ws: WebSocketUpgrade,
        Path(room): Path<String>,
        State(rooms): State<Rooms>,
    ) -> Response {
        let tx = rooms.channel(&room);
        ws.on_upgrade(move |socket: WebSocket| async move {
            // The chat example: split, a task forwarding the channel to the socket, and this
            // task reading the socket until it closes.
            let (mut sender, mut receiver) = socket.split();
            let mut rx = tx.subscribe();
            let mut send_task = tokio::spawn(async move {
                while let Some(message) = next(&mut rx).await {
                    if sender.send(Message::Binary(message)).await.is_err() {
                        break;
                    }
                }
            });
            let mut recv_task =
                tokio::spawn(async move { while let Some(Ok(_)) = receiver.next().await {} });
            tokio::select! {
                _ = &mut send_task => recv_task.abort(),
                _ = &mut recv_task => send_task.abort(),
            }
        })
    }
    async fn publish(
        ws: WebSocketUpgrade,
        Path(room): Path<String>,
        State(rooms): State<Rooms>,
    ) -> Response {
        let tx = rooms.channel(&room);
        ws.on_upgrade(move |mut socket: WebSocket| async move {
            while let Some(Ok(message)) = socket.recv().await {
                if let Message::Binary(data) = message {
                    let _ = tx.send(data);
                } else if let Message::Text(text) = message {
                    let _ = tx.send(Bytes::copy_from_slice(text.as_bytes()));
                }
            }
        })
    }
    let app = Router::new()
        .route("/sub/{room}", any(sub))
        .route("/pub/{room}", any(publish))
        .with_state(Rooms::default());
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await
}

async fn tokio_websockets_broadcast(listener: TcpListener) -> std::io::Result<()> {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_websockets::{Message, ServerBuilder};

    let rooms = Rooms::default();
    accept_each(listener, move |stream| {
        let rooms = rooms.clone();
        async move {
            let Ok((request, server)) = ServerBuilder::new().accept(stream).await else {
                return;
            };
            match route(request.uri().path()) {
                Some(Route::Sub(room)) => {
                    let tx = rooms.channel(&room);
                    let (mut sender, mut receiver) = server.split();
                    let mut rx = tx.subscribe();
                    let mut send_task = tokio::spawn(async move {
                        while let Some(message) = next(&mut rx).await {
                            if sender.send(Message::binary(message)).await.is_err() {
                                break;
                            }
                        }
                    });
                    let mut recv_task =
                        tokio::spawn(
                            async move { while let Some(Ok(_)) = receiver.next().await {} },
                        );
                    tokio::select! {
                        _ = &mut send_task => recv_task.abort(),
                        _ = &mut recv_task => send_task.abort(),
                    }
                }
                Some(Route::Pub(room)) => {
                    let tx = rooms.channel(&room);
                    let mut server = server;
                    while let Some(Ok(message)) = server.next().await {
                        if message.is_binary() || message.is_text() {
                            let _ = tx.send(Bytes::from(message.into_payload()));
                        }
                    }
                }
                None => {}
            }
        }
    })
    .await
}
