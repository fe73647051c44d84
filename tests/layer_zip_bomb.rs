//! A zip bomb through the layer: a client that negotiated permessage-deflate sends a small
//! compressed message that would inflate far past the layer's message limit. The session fails
//! with 1009 (message too big) at the limit, and the server never holds much more than the limit
//! while inflating.
//!
//! Its own test binary: the counting allocator sees the whole process, so nothing else may run
//! beside it.

mod support;

use flate2::{Compress, Compression, FlushCompress};
use support::{bounded, frame, handshake, read_until_close, sees_eof, write_raw};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tower::ServiceBuilder;
use tower_ws::{Config, DeflateConfig, Session, UpgradeLayer, handler_fn};

/// Counts live heap bytes and their peak.
#[global_allocator]
static ALLOCATOR: peak_alloc::PeakAlloc = peak_alloc::PeakAlloc;

const LIMIT: usize = 1 << 20;

/// `len` zeros, raw-deflated as RFC 7692 sends a message (sync flush, trailer removed).
fn bomb(len: usize) -> Vec<u8> {
    let mut compressor = Compress::new(Compression::best(), false);
    let zeros = vec![0_u8; 1 << 20];
    let mut out = Vec::with_capacity(len / 500 + 1024);
    for _ in 0..len / zeros.len() {
        let before = compressor.total_in();
        compressor
            .compress_vec(&zeros, &mut out, FlushCompress::None)
            .unwrap();
        assert_eq!(compressor.total_in() - before, zeros.len() as u64);
    }
    compressor
        .compress_vec(&[], &mut out, FlushCompress::Sync)
        .unwrap();
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

/// Opens a socket through the layer at `addr`, offering permessage-deflate.
async fn open(addr: std::net::SocketAddr) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut lines = support::VALID.to_vec();
    lines.push("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits");
    let request = handshake("GET", "/ws", &lines);
    write_raw(&mut tcp, &request).await;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tcp.read_u8().await.unwrap());
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains("sec-websocket-extensions: permessage-deflate"),
        "{head}"
    );
    tcp
}

#[tokio::test]
async fn a_zip_bomb_through_the_layer_fails_with_1009_and_memory_stays_bounded() {
    // 256 MiB of zeros, about 250 KB compressed.
    let bomb = bomb(256 << 20);
    assert!(bomb.len() < 300_000, "{} bytes", bomb.len());
    let key = Some([9, 8, 7, 6]);
    let single = frame(true, 0b100, 2, key, &bomb);
    // The same bytes as a fragmented message: the limit counts the whole message.
    let pieces: Vec<&[u8]> = bomb.chunks(bomb.len() / 16 + 1).collect();
    let mut fragmented = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        let (rsv, opcode) = if i == 0 { (0b100, 2) } else { (0, 0) };
        fragmented.extend(frame(i + 1 == pieces.len(), rsv, opcode, key, piece));
    }

    let (errors, mut error_rx) = mpsc::unbounded_channel();
    let handler = handler_fn(move |Session { mut socket, .. }| {
        let errors = errors.clone();
        async move {
            while let Some(message) = socket.recv().await {
                if let Err(e) = message {
                    let _ = errors.send(e.protocol_error());
                    return Err(e);
                }
            }
            Ok(())
        }
    });
    let config = Config::default()
        .max_message_size(LIMIT)
        .deflate(DeflateConfig::default());
    let addr = support::serve(
        ServiceBuilder::new()
            .layer(UpgradeLayer::new(handler).config(config))
            .service(support::inner()),
    )
    .await;

    for wire in [single, fragmented] {
        let mut tcp = bounded(open(addr)).await;
        // Let the handshake's allocations settle before measuring from here.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let baseline = ALLOCATOR.current_usage();
        ALLOCATOR.reset_peak_usage();
        write_raw(&mut tcp, &wire).await;
        let close = bounded(read_until_close(&mut tcp))
            .await
            .expect("a close frame");
        assert_eq!(close.close_code(), Some(1009));
        assert!(bounded(async { sees_eof(&mut tcp, 5).await }).await);
        let error = bounded(error_rx.recv()).await.unwrap();
        assert!(
            matches!(error, Some(tower_ws::ProtocolError::MessageTooLarge { limit, .. }) if limit == LIMIT as u64),
            "{error:?}"
        );
        // The inflated output (at most the limit and one byte, and half as much again while the
        // buffer grows and is copied), the decompressor (about 45 KiB) and the compressed bytes
        // buffered from the socket (the bomb is under 300 KB): 2.4 MB when this test was written,
        // where inflating the whole bomb would have taken 256 MiB.
        let grew = ALLOCATOR.peak_usage().saturating_sub(baseline);
        assert!(
            grew < 3 * LIMIT,
            "the server held {grew} bytes above its baseline while inflating a bomb"
        );
    }
}
