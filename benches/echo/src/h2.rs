//! The load generator's HTTP/2 transport: one cleartext HTTP/2 connection per WebSocket,
//! opened with hyper's client and an extended CONNECT (RFC 8441), so every socket has its own
//! TCP connection like its HTTP/1.1 counterpart and the two paths differ only in the framing
//! between the WebSocket and TCP. The WebSocket frames themselves are still the load generator's
//! own (`wire.rs`), written into the stream hyper hands back.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _};
use http_body_util::Empty;
use hyper::client::conn::http2::SendRequest;
use hyper::ext::Protocol;
use hyper::upgrade::Upgraded;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::Failure;

/// How long opening all connections may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(120);

/// A WebSocket's HTTP/2 stream, with the handle that keeps its connection open.
pub(crate) struct Stream {
    io: TokioIo<Upgraded>,
    _sender: SendRequest<Empty<Bytes>>,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("h2::Stream")
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

fn failed(what: &str) -> impl FnOnce(hyper::Error) -> Failure {
    move |e| Failure::new(format!("HTTP/2 {what}: {e}"))
}

/// Opens one WebSocket: TCP (`TCP_NODELAY`, closed with a reset like the HTTP/1.1
/// connections), the HTTP/2 preface, then an extended CONNECT that must get a `200`.
async fn connect(addr: SocketAddr) -> Result<(Stream, Vec<u8>), Failure> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    stream.set_zero_linger()?;
    let (mut sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(stream))
        .await
        .map_err(failed("handshake"))?;
    tokio::spawn(connection);
    // One ordinary request first: hyper sends an extended CONNECT only once the server's
    // SETTINGS (with ENABLE_CONNECT_PROTOCOL) have arrived.
    let warmup = Request::get(format!("http://{addr}/"))
        .body(Empty::new())
        .map_err(|e| Failure::new(e.to_string()))?;
    sender
        .send_request(warmup)
        .await
        .map_err(failed("first request"))?;
    let mut request = Request::builder()
        .method(Method::CONNECT)
        .uri(format!("http://{addr}/"))
        .header("sec-websocket-version", "13")
        .body(Empty::new())
        .map_err(|e| Failure::new(e.to_string()))?;
    request
        .extensions_mut()
        .insert(Protocol::from_static("websocket"));
    let response = sender
        .send_request(request)
        .await
        .map_err(failed("extended CONNECT"))?;
    if response.status() != StatusCode::OK {
        return Err(Failure::new(format!(
            "extended CONNECT answered {}",
            response.status()
        )));
    }
    let upgraded = hyper::upgrade::on(response)
        .await
        .map_err(failed("upgrade"))?;
    let stream = Stream {
        io: TokioIo::new(upgraded),
        _sender: sender,
    };
    Ok((stream, Vec::new()))
}

/// Opens `count` sockets over HTTP/2, `concurrency` at a time.
pub(crate) async fn connect_all(
    addr: SocketAddr,
    count: usize,
    concurrency: usize,
) -> Result<Vec<(Stream, Vec<u8>)>, Failure> {
    let all = futures_util::stream::iter(0..count)
        .map(|_| connect(addr))
        .buffer_unordered(concurrency)
        .try_collect();
    tokio::time::timeout(CONNECT_TIMEOUT, all)
        .await
        .map_err(|_| {
            Failure::new(format!(
                "opening {count} HTTP/2 connections took over {CONNECT_TIMEOUT:?}"
            ))
        })?
}
