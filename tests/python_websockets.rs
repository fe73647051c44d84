//! Interop with a real permessage-deflate peer: Python's `websockets` (pinned in
//! `tests/interop/requirements.txt`, driven through `tests/interop/peer.py`), in both roles, over every
//! context-takeover and window-bits combination either side can ask for.
//!
//! These tests need that Python package, so `cargo test` lists them as ignored;
//! `tests/interop/run.sh` (which CI runs) builds the virtualenv and runs them with
//! `TOWER_WS_PYTHON` pointing at its interpreter. Run by hand without it, they fail: they never
//! pass without having talked to the peer.
//!
//! Every connection goes through a counting TCP proxy, so each test also checks that compressed
//! messages really were compressed on the wire (in the direction the test is about), not only
//! that the handshake said so.

mod support;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};
use support::{Rng, deflate_params as params, within};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tower::ServiceBuilder;
use tower_ws::{
    ClientBuilder, CloseCode, Config, DeflateConfig, DeflateParams, Message, Session, UpgradeLayer,
    handler_fn,
};

const PYTHON: &str = "TOWER_WS_PYTHON";

/// The interpreter of the virtualenv `tests/interop/run.sh` made. Fails (never skips) without it.
fn python() -> String {
    std::env::var(PYTHON).unwrap_or_else(|_| {
        panic!("{PYTHON} is not set: run tests/interop/run.sh, which installs the pinned peer")
    })
}

fn peer_script() -> String {
    format!("{}/tests/interop/peer.py", env!("CARGO_MANIFEST_DIR"))
}

/// Runs `peer.py client` against `ws://{addr}/ws` with the extension offer `client` and returns
/// its report, after checking that its script passed and the connection closed with 1000.
async fn python_client(python: &str, addr: SocketAddr, client: &Value, what: &str) -> Value {
    let output = within(
        120,
        Command::new(python)
            .arg(peer_script())
            .args(["client", &format!("ws://{addr}/ws"), &client.to_string()])
            .kill_on_drop(true)
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{what}: peer.py failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["failures"], json!([]), "{what}");
    assert_eq!(report["close_code"], json!(1000), "{what}");
    report
}

/// Bytes that crossed a [`counting_proxy`] in each direction.
#[derive(Debug, Default)]
struct Counts {
    /// From the connecting side to the listening side.
    up: AtomicU64,
    /// From the listening side back.
    down: AtomicU64,
}

/// A loopback TCP proxy to `target` that counts the bytes of every connection through it.
async fn counting_proxy(target: SocketAddr) -> (SocketAddr, Arc<Counts>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counts = Arc::new(Counts::default());
    let shared = counts.clone();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let counts = shared.clone();
            tokio::spawn(async move {
                let Ok(outbound) = TcpStream::connect(target).await else {
                    return;
                };
                let _ = (inbound.set_nodelay(true), outbound.set_nodelay(true));
                let (in_read, in_write) = inbound.into_split();
                let (out_read, out_write) = outbound.into_split();
                tokio::join!(
                    forward(in_read, out_write, &counts.up),
                    forward(out_read, in_write, &counts.down),
                );
            });
        }
    });
    (addr, counts)
}

/// Copies `from` to `to` until the end of `from`, counting each chunk as it passes: the counts
/// are up to date as soon as the peer has read the bytes, not only once the connection ends.
async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    count: &AtomicU64,
) {
    let mut buf = vec![0_u8; 64 << 10];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                count.fetch_add(n as u64, Ordering::Relaxed);
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown().await;
}

/// The layer, echoing, behind hyper on loopback; each session reports what it negotiated.
async fn layer_server(
    config: Config,
) -> (SocketAddr, mpsc::UnboundedReceiver<Option<DeflateParams>>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let echo = handler_fn(
        move |Session {
                  mut socket,
                  handshake,
                  ..
              }| {
            let _ = tx.send(handshake.deflate().copied());
            async move { support::echo_until_closed(&mut socket).await }
        },
    );
    let service = ServiceBuilder::new()
        .layer(UpgradeLayer::new(echo).config(config))
        .service(support::inner());
    (support::serve(service).await, rx)
}

/// What `peer.py` reports of a connection, seen from its side (`local` is the peer itself).
fn python_view(negotiated: &Value, python_is_client: bool) -> Option<DeflateParams> {
    if negotiated.is_null() {
        return None;
    }
    let flag = |key: &str| negotiated[key].as_bool().unwrap();
    let bits = |key: &str| u8::try_from(negotiated[key].as_u64().unwrap()).unwrap();
    let (local_nct, remote_nct) = (
        flag("local_no_context_takeover"),
        flag("remote_no_context_takeover"),
    );
    let (local_bits, remote_bits) = (
        bits("local_max_window_bits"),
        bits("remote_max_window_bits"),
    );
    Some(if python_is_client {
        params(remote_nct, local_nct, remote_bits, local_bits)
    } else {
        params(local_nct, remote_nct, local_bits, remote_bits)
    })
}

/// Python's `websockets` as the client, our layer as the server: for each case, the layer's
/// config, the peer's `ClientPerMessageDeflateFactory` arguments, and what both must agree on.
#[tokio::test]
#[ignore = "needs Python's websockets: run tests/interop/run.sh"]
async fn python_client_against_the_layer() {
    let python = python();
    let default = DeflateConfig::default();
    let cases: Vec<(DeflateConfig, Value, Option<DeflateParams>)> = vec![
        // What `websockets.connect` offers by default.
        (
            default,
            json!({"client_max_window_bits": true, "compress_settings": {"memLevel": 5}}),
            Some(params(false, false, 15, 15)),
        ),
        // An offer without client_max_window_bits: the client's window stays 15.
        (
            default,
            json!({"client_max_window_bits": null}),
            Some(params(false, false, 15, 15)),
        ),
        (
            default,
            json!({"server_no_context_takeover": true, "client_no_context_takeover": true}),
            Some(params(true, true, 15, 15)),
        ),
        (
            default,
            json!({"server_no_context_takeover": true}),
            Some(params(true, false, 15, 15)),
        ),
        (
            default,
            json!({"server_max_window_bits": 9, "client_max_window_bits": 9}),
            Some(params(false, false, 9, 9)),
        ),
        (
            default,
            json!({"server_max_window_bits": 12, "client_max_window_bits": 10}),
            Some(params(false, false, 12, 10)),
        ),
        // The server asks for less memory: no context takeover and small windows.
        (
            DeflateConfig::low_memory(),
            json!({"client_max_window_bits": true}),
            Some(params(true, true, 15, 15)),
        ),
        (
            default
                .server_max_window_bits(10)
                .client_max_window_bits(11),
            json!({"client_max_window_bits": true}),
            Some(params(false, false, 10, 11)),
        ),
        (
            default.level(9).threshold(0),
            json!({"server_max_window_bits": 15, "client_no_context_takeover": true}),
            Some(params(false, true, 15, 15)),
        ),
        // zlib cannot compress with a 256-byte window, and RFC 7692 (7.1.2.1) forbids answering
        // a larger one than offered (websockets fails the connection on it): declined.
        (default, json!({"server_max_window_bits": 8}), None),
        // No offer: no compression, and everything still echoes.
        (default, Value::Null, None),
    ];
    for (server, client, expected) in cases {
        let what = format!("layer {server:?} / websockets client {client}");
        let (addr, mut negotiated) = layer_server(Config::default().deflate(server)).await;
        let (proxy, counts) = counting_proxy(addr).await;
        let report = python_client(&python, proxy, &client, &what).await;
        let ours = within(5, negotiated.recv()).await.unwrap();
        assert_eq!(ours, expected, "{what}: what the layer negotiated");
        assert_eq!(
            python_view(&report["negotiated"], true),
            expected,
            "{what}: what websockets negotiated (answer {})",
            report["answer"]
        );
        let payload = report["payload_bytes"].as_u64().unwrap();
        assert_wire(&what, &counts, payload, expected.is_some());
    }
}

/// Compressed runs carry well under half the payload each way (the script is mostly JSON and
/// zeros; 300 KB of it is random); uncompressed runs carry all of it.
fn assert_wire(what: &str, counts: &Counts, payload: u64, compressed: bool) {
    let (up, down) = (
        counts.up.load(Ordering::Relaxed),
        counts.down.load(Ordering::Relaxed),
    );
    if compressed {
        assert!(
            up < payload / 2,
            "{what}: {up} bytes up for {payload} of payload"
        );
        assert!(
            down < payload / 2,
            "{what}: {down} bytes down for {payload} of payload"
        );
    } else {
        assert!(
            up > payload && down > payload,
            "{what}: {up}/{down} bytes for {payload}"
        );
    }
}

/// A `peer.py server` process: its port, and its report lines (one per connection).
struct PythonServer {
    child: Child,
    port: u16,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl PythonServer {
    async fn start(python: &str, config: &Value) -> Self {
        let mut child = Command::new(python)
            .arg(peer_script())
            .args(["server", &config.to_string()])
            .kill_on_drop(true)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = within(30, lines.next_line()).await.unwrap().unwrap();
        let port = first
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("peer.py server said {first:?}"));
        Self { child, port, lines }
    }

    async fn next_report(&mut self) -> Value {
        let line = within(10, self.lines.next_line()).await.unwrap().unwrap();
        serde_json::from_str(&line).unwrap()
    }

    async fn stop(mut self) {
        // Closing its stdin tells it to stop.
        drop(self.child.stdin.take());
        let status = within(20, self.child.wait()).await.unwrap();
        assert!(status.success(), "peer.py server exited with {status}");
    }
}

/// The messages our client sends: text and binary, empty to megabytes, compressible and not,
/// repeated (for context takeover) and fragmented by nothing but size.
fn script() -> Vec<Message> {
    let mut rng = Rng::new(11);
    let record = |i: u32| {
        format!(
            r#"{{"id":{i},"type":"order","customer":{{"name":"customer-{}","tier":"b"}},"items":[{{"sku":"SKU-{:05}","qty":{},"price":{}.{:02}}}],"paid":true}}"#,
            i * 7 % 5000,
            i * 31 % 99_999,
            i % 9 + 1,
            i % 500,
            i % 100
        )
    };
    let large_json = format!("[{}]", (0..8000).map(record).collect::<Vec<_>>().join(","));
    let mut messages = vec![
        Message::text("hi"),
        Message::text(""),
        Message::binary(Vec::new()),
        Message::binary(vec![0, 1, 2, 255]),
    ];
    messages.extend((0..5).map(|_| Message::text(record(1))));
    messages.extend([
        Message::text(large_json),
        Message::binary(rng.bytes(300_000)),
        Message::binary(vec![0_u8; 2_000_000]),
        Message::text("\u{e9}t\u{e9} \u{2603} \u{1f600} ".repeat(5000)),
        Message::text(record(1)),
    ]);
    messages
}

/// Our client against Python's `websockets` as the server: for each case, the peer's
/// `ServerPerMessageDeflateFactory` arguments, our client's config, and what both must agree on.
#[tokio::test]
#[ignore = "needs Python's websockets: run tests/interop/run.sh"]
async fn our_client_against_a_python_server() {
    let python = python();
    let default = DeflateConfig::default();
    let cases: Vec<(Value, DeflateConfig, Option<DeflateParams>)> = vec![
        // What `websockets.serve` answers by default: 4 KiB windows both ways.
        (
            json!({"server_max_window_bits": 12, "client_max_window_bits": 12,
                   "compress_settings": {"memLevel": 5}}),
            default,
            Some(params(false, false, 12, 12)),
        ),
        (json!({}), default, Some(params(false, false, 15, 15))),
        (
            json!({"server_no_context_takeover": true, "client_no_context_takeover": true}),
            default,
            Some(params(true, true, 15, 15)),
        ),
        (
            json!({"client_max_window_bits": 9}),
            default,
            Some(params(false, false, 15, 9)),
        ),
        (
            json!({"server_max_window_bits": 9}),
            default.level(9).threshold(0),
            Some(params(false, false, 9, 15)),
        ),
        // Our client asks: no context takeover both ways (low_memory), small windows.
        (
            json!({}),
            DeflateConfig::low_memory(),
            Some(params(true, true, 15, 15)),
        ),
        (
            json!({}),
            default.server_max_window_bits(9).client_max_window_bits(10),
            Some(params(false, false, 9, 10)),
        ),
        // A server that declines compression: no extension, and everything still echoes.
        (Value::Null, default, None),
    ];
    // A server that limits our window to 8 bits, which zlib cannot compress with: the
    // handshake fails rather than risk distances the peer's window does not hold.
    let mut peer = PythonServer::start(&python, &json!({"client_max_window_bits": 8})).await;
    let refused = within(
        10,
        ClientBuilder::new()
            .config(Config::default().deflate(default))
            .connect(format!("ws://127.0.0.1:{}/", peer.port)),
    )
    .await;
    assert!(refused.is_err(), "a client window of 8 bits was accepted");
    // The server completed its handshake; ours failed the connection by closing TCP, without a
    // close frame (RFC 6455 4.1: the connection was never established on our side).
    peer.next_report().await;
    assert_eq!(peer.next_report().await["close_code"], json!(1006));
    peer.stop().await;
    for (server, client, expected) in cases {
        let what = format!("websockets server {server} / client {client:?}");
        let mut peer = PythonServer::start(&python, &server).await;
        let (proxy, counts) = counting_proxy(SocketAddr::from(([127, 0, 0, 1], peer.port))).await;
        let (mut ws, response) = within(
            10,
            ClientBuilder::new()
                .config(Config::default().deflate(client))
                .connect(format!("ws://{proxy}/")),
        )
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
        let answer = response
            .headers()
            .get("sec-websocket-extensions")
            .map(|v| v.to_str().unwrap().to_owned());
        let report = peer.next_report().await;
        assert_eq!(
            python_view(&report["negotiated"], false),
            expected,
            "{what}: what websockets negotiated (our offer {}, its answer {answer:?})",
            report["offer"]
        );
        assert_eq!(answer.is_some(), expected.is_some(), "{what}: {answer:?}");
        let mut payload = 0;
        for message in script() {
            payload += message.as_payload().len() as u64;
            within(30, ws.send(message.clone())).await.unwrap();
            let echoed = within(30, ws.recv()).await.unwrap().unwrap();
            assert!(
                echoed == message,
                "{what}: the echo of a {} byte message differs",
                message.as_payload().len()
            );
        }
        within(10, ws.close(CloseCode::NORMAL, "")).await.unwrap();
        let closed = peer.next_report().await;
        assert_eq!(
            closed["close_code"],
            json!(1000),
            "{what}: how websockets saw the close"
        );
        peer.stop().await;
        assert_wire(&what, &counts, payload, expected.is_some());
    }
}

/// The layer with a hub: each connection subscribes to a topic of its own and publishes every
/// message it receives there, so the peer's echo check reads back what the hub framed (and,
/// without server context takeover, compressed once for every such subscriber).
async fn hub_server(config: Config) -> SocketAddr {
    let hub = tower_ws::Hub::new();
    let handler = handler_fn(move |Session { mut socket, .. }| {
        let hub = hub.clone();
        async move {
            let member = hub.join(&mut socket);
            let topic = format!("echo-{}", member.id());
            member.subscribe(&topic);
            while let Some(message) = socket.recv().await {
                let message = message?;
                if message.is_text() || message.is_binary() {
                    let report = hub.publish(&topic, message);
                    assert_eq!(report.queued, 1, "published to its one subscriber");
                }
            }
            Ok::<_, tower_ws::Error>(())
        }
    });
    let service = ServiceBuilder::new()
        .layer(UpgradeLayer::new(handler).config(config))
        .service(support::inner());
    support::serve(service).await
}

/// Python's `websockets` reads back published messages: compressed once and shared (no server
/// context takeover), compressed by the socket's own context (context takeover), and plain.
#[tokio::test]
#[ignore = "needs Python's websockets: run tests/interop/run.sh"]
async fn python_client_reads_what_the_hub_published() {
    let python = python();
    let cases = [
        (json!({"server_no_context_takeover": true}), true),
        (json!({"client_max_window_bits": true}), true),
        (Value::Null, false),
    ];
    for (client, compressed) in cases {
        let what = format!("hub / websockets client {client}");
        let addr = hub_server(Config::default().deflate(DeflateConfig::default())).await;
        let (proxy, counts) = counting_proxy(addr).await;
        let report = python_client(&python, proxy, &client, &what).await;
        let payload = report["payload_bytes"].as_u64().unwrap();
        assert_wire(&what, &counts, payload, compressed);
    }
}
