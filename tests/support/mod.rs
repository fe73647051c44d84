//! Helpers shared by the integration tests: loopback socket pairs and real hyper servers, a
//! raw frame codec and a raw HTTP/1.1 client that do not use the crate (so tests check the
//! wire, not our own encoder), tokio-tungstenite as an independent peer, a seeded RNG and
//! timeouts.
// Each test binary uses a different subset of these helpers, so `expect` would be unfulfilled in
// some of them.
#![allow(dead_code, unreachable_pub, reason = "shared by several test binaries")]
// Test helpers fail the test by panicking; that is their whole contract.
#![allow(
    clippy::missing_panics_doc,
    clippy::missing_errors_doc,
    reason = "only the binaries that use the helpers see them"
)]

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::ClientRequestBuilder;
use tower::Service;
use tower::ServiceExt;
use tower_ws::{Config, Role, WebSocket};
use tower_ws::{Session, handler_fn};

#[cfg(any(feature = "redis", feature = "nats"))]
pub mod brokers;
pub mod child;
#[cfg(any(feature = "redis", feature = "nats"))]
pub mod cluster;

/// Runs `fut`, failing the test if it takes longer than `secs`.
pub async fn within<F: Future>(secs: u64, fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .expect("test step timed out")
}

/// A connected loopback TCP pair: (client end, server end).
pub async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let client = client.unwrap();
    let (server, _) = accepted.unwrap();
    client.set_nodelay(true).unwrap();
    server.set_nodelay(true).unwrap();
    (client, server)
}

/// A loopback pair of our own sockets: (client role, server role).
pub async fn ws_pair(config: Config) -> (WebSocket<TcpStream>, WebSocket<TcpStream>) {
    let (c, s) = tcp_pair().await;
    (
        WebSocket::new(c, Role::Client, config),
        WebSocket::new(s, Role::Server, config),
    )
}

/// Encodes one frame by hand (RFC 6455 section 5.2).
pub fn frame(fin: bool, rsv: u8, opcode: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | (rsv << 4) | opcode];
    push_length(&mut out, mask.is_some(), payload.len() as u64);
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// Appends the mask bit and a payload length in its shortest encoding.
pub fn push_length(out: &mut Vec<u8>, masked: bool, len: u64) {
    let mask_bit = if masked { 0x80 } else { 0 };
    if let Ok(short @ 0..=125) = u8::try_from(len) {
        out.push(mask_bit | short);
    } else if let Ok(medium) = u16::try_from(len) {
        out.push(mask_bit | 0x7e);
        out.extend_from_slice(&medium.to_be_bytes());
    } else {
        out.push(mask_bit | 0x7f);
        out.extend_from_slice(&len.to_be_bytes());
    }
}

/// A frame as a client sends it (masked with a fixed key).
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(fin, 0, opcode, Some([0x0f, 0x1e, 0x2d, 0x3c]), payload)
}

/// A close payload: code then reason.
pub fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

/// A frame read off the wire by [`read_frame`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    /// FIN bit.
    pub fin: bool,
    /// RSV1..3 as the low three bits.
    pub rsv: u8,
    /// The 4-bit opcode.
    pub opcode: u8,
    /// Whether the frame was masked.
    pub masked: bool,
    /// The payload, unmasked.
    pub payload: Vec<u8>,
}

impl RawFrame {
    /// The close code, for a close frame with one.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == 8 && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// Reads one frame by hand; `None` at end of stream (or a reset).
pub async fn read_frame(tcp: &mut TcpStream) -> Option<RawFrame> {
    let mut head = [0_u8; 2];
    tcp.read_exact(&mut head).await.ok()?;
    let masked = head[1] & 0x80 != 0;
    let len = match head[1] & 0x7f {
        126 => {
            let mut b = [0; 2];
            tcp.read_exact(&mut b).await.ok()?;
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0; 8];
            tcp.read_exact(&mut b).await.ok()?;
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    let mut key = [0; 4];
    if masked {
        tcp.read_exact(&mut key).await.ok()?;
    }
    let mut payload = vec![0; usize::try_from(len).ok()?];
    tcp.read_exact(&mut payload).await.ok()?;
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }
    Some(RawFrame {
        fin: head[0] & 0x80 != 0,
        rsv: (head[0] >> 4) & 7,
        opcode: head[0] & 0x0f,
        masked,
        payload,
    })
}

/// Reads frames until a close frame (returned) or the end of the stream (`None`).
pub async fn read_until_close(tcp: &mut TcpStream) -> Option<RawFrame> {
    loop {
        let f = read_frame(tcp).await?;
        if f.opcode == 8 {
            return Some(f);
        }
    }
}

/// Whether the peer closed the TCP connection (end of stream or reset) within `secs`.
pub async fn sees_eof(tcp: &mut TcpStream, secs: u64) -> bool {
    let mut buf = [0_u8; 1024];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// Writes raw bytes, ignoring a peer that already closed.
pub async fn write_raw(tcp: &mut TcpStream, bytes: &[u8]) {
    let _ = tcp.write_all(bytes).await;
}

/// xorshift64*: a small seeded generator, so random tests replay exactly.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator that always yields the same sequence for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next_u64() % n as u64).expect("below n")
    }

    /// A random byte.
    pub fn byte(&mut self) -> u8 {
        self.next_u64().to_le_bytes()[0]
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.byte()).collect()
    }

    /// Valid UTF-8 text of exactly `len` bytes, mixing 1- to 4-byte characters.
    pub fn text(&mut self, len: usize) -> String {
        const CHARS: &[char] = &[
            'a', 'Z', '0', ' ', 'é', 'ß', 'κ', '€', '✓', '日', '本', '🦀', '𝄞',
        ];
        let mut s = String::with_capacity(len);
        while s.len() + 4 <= len {
            s.push(CHARS[self.below(CHARS.len())]);
        }
        while s.len() < len {
            s.push('.');
        }
        s
    }
}

/// A transport that serves `data` in random pieces of 1 to `max_piece` bytes, optionally
/// answering a spurious `Pending` (after waking itself) one read in four, then end of stream.
/// Writes are discarded.
#[derive(Debug)]
pub struct Pieces {
    data: Vec<u8>,
    pos: usize,
    rng: Rng,
    max_piece: usize,
    spurious_pending: bool,
}

impl Pieces {
    /// Serves `data` in pieces of 1 to `max_piece` bytes chosen by `rng`.
    pub fn new(data: Vec<u8>, rng: Rng, max_piece: usize) -> Self {
        Self {
            data,
            pos: 0,
            rng,
            max_piece: max_piece.max(1),
            spurious_pending: false,
        }
    }

    /// Also answers `Pending` before one read in four, as a real socket may.
    #[must_use]
    pub fn with_spurious_pending(mut self) -> Self {
        self.spurious_pending = true;
        self
    }
}

impl AsyncRead for Pieces {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.spurious_pending && self.rng.below(4) == 0 {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let left = self.data.len() - self.pos;
        let max_piece = self.max_piece;
        let piece = (1 + self.rng.below(max_piece))
            .min(left)
            .min(buf.remaining());
        let start = self.pos;
        buf.put_slice(&self.data[start..start + piece]);
        self.pos += piece;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Pieces {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

// ----- HTTP-side helpers: hyper servers, raw HTTP, tokio-tungstenite -----

/// The bound on every test step.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The RFC 6455 sample key.
pub const SAMPLE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// The accept value RFC 6455 gives for [`SAMPLE_KEY`].
pub const SAMPLE_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// Runs `future` for at most [`TIMEOUT`].
pub async fn bounded<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(TIMEOUT, future)
        .await
        .expect("test step timed out")
}

/// Any error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Serves `service` on a loopback port with hyper-util's auto builder: HTTP/1.1 with upgrades
/// and cleartext HTTP/2 with the extended CONNECT protocol. Each request carries the peer's
/// `SocketAddr` in its extensions.
pub async fn serve<S, B>(service: S) -> SocketAddr
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            let service = with_peer(service.clone(), peer);
            tokio::spawn(async move {
                let mut builder = auto::Builder::new(TokioExecutor::new());
                builder.http2().enable_connect_protocol();
                let _ = builder
                    .serve_connection_with_upgrades(
                        TokioIo::new(stream),
                        TowerToHyperService::new(service),
                    )
                    .await;
            });
        }
    });
    addr
}

/// Serves `service` with hyper's own HTTP/1.1 connection (`serve_connection(..).with_upgrades()`).
pub async fn serve_http1<S, B>(service: S) -> SocketAddr
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            let service = with_peer(service.clone(), peer);
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

fn with_peer<S>(
    service: S,
    peer: SocketAddr,
) -> tower::util::MapRequest<S, impl FnMut(Request<Incoming>) -> Request<Incoming> + Clone>
where
    S: Service<Request<Incoming>>,
{
    service.map_request(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(peer);
        request
    })
}

/// The inner service of most tests: answers `inner <METHOD> <PATH> body=<BODY>`, in the body
/// and in the `x-inner` header.
pub fn inner()
-> impl Service<Request<Incoming>, Response = Response<Full<Bytes>>, Error = Infallible, Future: Send>
+ Clone
+ Send
+ Sync
+ 'static {
    tower::service_fn(|request: Request<Incoming>| async move {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let body = request
            .into_body()
            .collect()
            .await
            .map(http_body_util::Collected::to_bytes);
        let body = String::from_utf8_lossy(&body.unwrap_or_default()).into_owned();
        let text = format!("inner {method} {path} body={body}");
        let mut response = Response::new(Full::new(Bytes::from(text.clone())));
        // Also in a header: a 200 to an HTTP/2 CONNECT turns the stream into a tunnel and
        // hyper sends no body.
        response
            .headers_mut()
            .insert("x-inner", text.parse().unwrap());
        Ok::<_, Infallible>(response)
    })
}

/// A handler that echoes text and binary messages until the client closes.
pub fn echo() -> impl tower_ws::Handler + Sync {
    handler_fn(|Session { mut socket, .. }| async move { echo_until_closed(&mut socket).await })
}

/// Echoes text and binary messages on `socket` until the peer closes (or an error).
pub async fn echo_until_closed<Io: AsyncRead + AsyncWrite + Unpin>(
    socket: &mut WebSocket<Io>,
) -> tower_ws::Result<()> {
    while let Some(message) = socket.recv().await {
        let message = message?;
        if message.is_text() || message.is_binary() {
            socket.send(message).await?;
        }
    }
    Ok(())
}

/// permessage-deflate parameters, in the order of their names in RFC 7692.
#[cfg(feature = "deflate")]
pub fn deflate_params(
    server_nct: bool,
    client_nct: bool,
    server_bits: u8,
    client_bits: u8,
) -> tower_ws::DeflateParams {
    tower_ws::DeflateParams {
        server_no_context_takeover: server_nct,
        client_no_context_takeover: client_nct,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
    }
}

/// The tokio-tungstenite client.
pub type Client = WebSocketStream<TcpStream>;

/// Opens a WebSocket to `ws://addr{path}` with tokio-tungstenite.
pub async fn connect(addr: SocketAddr, path: &str) -> Client {
    connect_with(addr, request(addr, path)).await
}

/// A tokio-tungstenite handshake request for `ws://addr{path}`.
pub fn request(addr: SocketAddr, path: &str) -> ClientRequestBuilder {
    ClientRequestBuilder::new(format!("ws://{addr}{path}").parse().unwrap())
}

/// Opens a WebSocket with a prepared request.
pub async fn connect_with(addr: SocketAddr, request: ClientRequestBuilder) -> Client {
    try_connect_with(addr, request)
        .await
        .expect("websocket handshake failed")
        .0
}

/// Opens a WebSocket with a prepared request, returning the handshake response too.
pub async fn try_connect_with(
    addr: SocketAddr,
    request: ClientRequestBuilder,
) -> Result<
    (
        Client,
        tokio_tungstenite::tungstenite::handshake::client::Response,
    ),
    tokio_tungstenite::tungstenite::Error,
> {
    let stream = bounded(TcpStream::connect(addr)).await.unwrap();
    bounded(tokio_tungstenite::client_async(request, stream)).await
}

/// Reads messages until a close frame and returns its code (`None` for a close without one),
/// or panics if the stream ends without a close frame.
pub async fn close_code(client: &mut Client) -> Option<u16> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        match bounded(client.next()).await {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// A response read off the wire by [`raw`].
#[derive(Debug)]
pub struct RawResponse {
    /// The status code.
    pub status: u16,
    /// The header lines, in order.
    pub headers: Vec<(String, String)>,
    /// The body, when the response had a length.
    pub body: String,
    /// The connection, positioned after the response head (and body, if it had a length).
    pub stream: TcpStream,
    /// Bytes read past the head and body.
    pub rest: Vec<u8>,
}

impl RawResponse {
    /// The values of header `name` (any case).
    pub fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Sends `request` (raw bytes) on a new connection and reads the response head, and the body
/// when it has a `Content-Length`.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> RawResponse {
    bounded(async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut buf = Vec::new();
        let head_end = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let mut chunk = [0_u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed before a response head: {buf:?}");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.trim().to_owned(), v.trim().to_owned())
            })
            .collect();
        let mut rest = buf[head_end..].to_vec();
        let length = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse::<usize>().unwrap());
        let mut body = Vec::new();
        if let Some(length) = length {
            while rest.len() < length {
                let mut chunk = [0_u8; 4096];
                let n = stream.read(&mut chunk).await.unwrap();
                assert!(n > 0, "connection closed inside the body");
                rest.extend_from_slice(&chunk[..n]);
            }
            body = rest.drain(..length).collect();
        }
        RawResponse {
            status,
            headers,
            body: String::from_utf8(body).unwrap(),
            stream,
            rest,
        }
    })
    .await
}

/// A raw HTTP/1.1 handshake request for `path` with the given header lines (each
/// `"Name: value"`), ending the head.
pub fn handshake(method: &str, path: &str, lines: &[&str]) -> Vec<u8> {
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
    for line in lines {
        text.push_str(line);
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    text.into_bytes()
}

/// The header lines of a valid handshake with the RFC sample key.
pub const VALID: [&str; 4] = [
    "Connection: Upgrade",
    "Upgrade: websocket",
    "Sec-WebSocket-Version: 13",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
];

/// Opens a WebSocket by hand on `path` (raw HTTP/1.1, the RFC sample key) and returns the
/// connection after the `101`.
pub async fn raw_ws(addr: SocketAddr, path: &str) -> TcpStream {
    let response = raw(addr, &handshake("GET", path, &VALID)).await;
    assert_eq!(response.status, 101, "handshake refused");
    assert!(response.rest.is_empty(), "frames before the first message");
    response.stream.set_nodelay(true).unwrap();
    response.stream
}

/// CPU time (user + system, every thread) this process has used so far, from
/// `/proc/self/stat`, in the kernel's 10 ms ticks (`USER_HZ` is 100 on every Linux ABI).
pub fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // The command name may hold spaces; the fields after it do not.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}
