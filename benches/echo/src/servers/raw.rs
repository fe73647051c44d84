//! A raw TCP echo of the same bytes, no WebSocket: the physical limit of this machine.
//!
//! It answers the opening handshake like `tower_ws_bare` (so the load generator treats every
//! server alike), then returns every byte as it came, masked frames and all.
//!
//! It holds no buffer while idle: reads go into one buffer per thread (256 KiB) and are written
//! back before the next connection runs; only bytes the kernel cannot take at once are kept, in
//! a buffer of the connection's own, and reading waits until they are gone.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::{Kind, Server, accept_each};
use crate::handshake;

pub(crate) const SERVER: Server = Server {
    name: "raw-tcp",
    kind: Kind::Raw,
    about: "raw TCP echo (no WebSocket): read into a per-thread 256 KiB buffer, write straight back",
    run: |listener| Box::pin(accept_each(listener, echo)),
};

thread_local! {
    static BUFFER: RefCell<Vec<u8>> = RefCell::new(vec![0; 256 << 10]);
}

async fn echo(mut stream: TcpStream) {
    let Ok(early) = handshake::server(&mut stream).await else {
        return;
    };
    // Bytes that arrived with the request are echoed first.
    let mut pending = early.to_vec();
    let _ = poll_fn(|cx| poll_echo(&mut stream, &mut pending, cx)).await;
}

fn poll_echo(
    stream: &mut TcpStream,
    pending: &mut Vec<u8>,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    loop {
        while !pending.is_empty() {
            let n = ready!(Pin::new(&mut *stream).poll_write(cx, pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            pending.drain(..n);
        }
        if pending.capacity() > 0 {
            // Back to holding nothing while idle.
            *pending = Vec::new();
        }
        let step = BUFFER.with_borrow_mut(|buf| {
            let mut read = ReadBuf::new(buf);
            ready!(Pin::new(&mut *stream).poll_read(cx, &mut read))?;
            let data = read.filled();
            if data.is_empty() {
                return Poll::Ready(Ok(false));
            }
            let mut written = 0;
            while written < data.len() {
                match Pin::new(&mut *stream).poll_write(cx, &data[written..]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => written += n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => break,
                }
            }
            pending.extend_from_slice(&data[written..]);
            Poll::Ready(Ok(true))
        });
        if !ready!(step)? {
            return Poll::Ready(Ok(()));
        }
    }
}
