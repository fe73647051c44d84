//! Reads and writes per message over a real socket: a burst of pipelined frames that is larger
//! than one read chunk is taken in with reads that grow (not in chunk-sized reads), and the
//! answers to everything one read produced leave in one write.

mod support;

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use support::{client_frame, read_frame, tcp_pair, within};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tower_ws::{Config, Message, Role, WebSocket};

/// System calls the engine made on its transport, as far as the transport can tell.
#[derive(Debug, Default)]
struct Calls {
    /// Reads that returned bytes.
    reads: AtomicUsize,
    /// Writes (plain or vectored) that wrote bytes.
    writes: AtomicUsize,
}

/// A `TcpStream` that counts the reads and writes made on it.
struct Counted {
    tcp: TcpStream,
    calls: Arc<Calls>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.calls.reads.fetch_add(1, Ordering::Relaxed);
        }
        result
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.tcp).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.calls.writes.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.calls.writes.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// Payload `i` of a burst: 1 KiB stamped with its number, so a reordered echo fails.
fn payload(i: usize) -> Vec<u8> {
    let mut p = vec![u8::try_from(i % 251).unwrap(); 1024];
    p[..8].copy_from_slice(&(i as u64).to_be_bytes());
    p
}

/// Waits until `len` bytes are in `tcp`'s receive queue (without taking them).
async fn wait_until_buffered(tcp: &TcpStream, len: usize) {
    let mut scratch = vec![0_u8; len];
    while tcp.peek(&mut scratch).await.unwrap() < len {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_pipelined_burst_takes_growing_reads_and_one_write_per_read() {
    const BURST: usize = 32;
    within(10, async {
        let (mut client, server) = tcp_pair().await;
        let burst: Vec<u8> = (0..BURST)
            .flat_map(|i| client_frame(true, 2, &payload(i)))
            .collect();
        client.write_all(&burst).await.unwrap();
        // The whole burst (33 KiB, four 8 KiB read chunks) waits in the socket before the
        // engine reads, so the count of reads depends on the engine alone.
        wait_until_buffered(&server, burst.len()).await;

        let calls = Arc::new(Calls::default());
        let transport = Counted {
            tcp: server,
            calls: calls.clone(),
        };
        let config = Config::default();
        let mut ws = WebSocket::new(transport, Role::Server, config);
        for _ in 0..BURST {
            let message = ws.recv().await.unwrap().unwrap();
            assert!(matches!(message, Message::Binary(_)));
            ws.send(message).await.unwrap();
        }
        let reads = calls.reads.load(Ordering::Relaxed);
        let writes = calls.writes.load(Ordering::Relaxed);
        // 8 KiB chunks would take five reads; reads that double while they fill take three
        // (8, 16, then the last 9 KiB into 32 KiB of room).
        assert!(reads <= 3, "{reads} reads for a {} byte burst", burst.len());
        assert!(
            writes <= reads,
            "{writes} writes for the answers of {reads} reads"
        );

        for i in 0..BURST {
            let echo = read_frame(&mut client).await.unwrap();
            assert_eq!((echo.opcode, echo.masked), (2, false));
            assert_eq!(echo.payload, payload(i), "echo {i}");
        }
    })
    .await;
}
