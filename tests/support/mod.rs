//! Shared test helpers: real hyper servers on loopback, a raw HTTP/1.1 client for exact
//! handshake bytes, and tokio-tungstenite as an independent WebSocket client.
#![expect(
    clippy::missing_panics_doc,
    clippy::missing_errors_doc,
    reason = "test helpers fail the test by panicking; that is their whole contract"
)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::ClientRequestBuilder;
use tower::Service;
use tower::ServiceExt;
use tower_ws::{Session, handler_fn};

/// The bound on every test step.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The RFC 6455 sample key.
pub const SAMPLE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// The accept value RFC 6455 gives for [`SAMPLE_KEY`].
pub const SAMPLE_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// Runs `future` for at most [`TIMEOUT`].
pub async fn within<F: Future>(future: F) -> F::Output {
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
    handler_fn(|Session { mut socket, .. }| async move {
        while let Some(message) = socket.recv().await {
            let message = message?;
            if message.is_text() || message.is_binary() {
                socket.send(message).await?;
            }
        }
        Ok::<_, tower_ws::Error>(())
    })
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
    let stream = within(TcpStream::connect(addr)).await.unwrap();
    within(tokio_tungstenite::client_async(request, stream)).await
}

/// Reads messages until a close frame and returns its code (`None` for a close without one),
/// or panics if the stream ends without a close frame.
pub async fn close_code(client: &mut Client) -> Option<u16> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        match within(client.next()).await {
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
    within(async {
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
