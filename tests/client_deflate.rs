//! The client negotiates permessage-deflate: it offers what its config says, compresses and
//! inflates with what the server answered, and refuses answers it did not ask for.

mod support {
    pub(crate) mod peers;
}

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use support::peers::{accept_for, bounded, read_head};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tower_ws::{ClientBuilder, Config, DeflateConfig, ErrorKind, Message};

/// A server that answers with `extensions`, records the request head, sends one compressed
/// text frame, and returns the first frame the client sends.
async fn deflate_server(
    extensions: &'static str,
) -> (
    std::net::SocketAddr,
    tokio::task::JoinHandle<(String, Vec<u8>, u8)>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let head = read_head(&mut tcp).await;
        let answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Extensions: {extensions}\r\n\r\n",
            accept_for(&head)
        );
        tcp.write_all(answer.as_bytes()).await.unwrap();
        // One compressed text message from the server (unmasked, RSV1 set).
        let mut c = Compress::new(Compression::default(), false);
        let mut payload = Vec::with_capacity(256);
        c.compress_vec(
            b"hello from a compressing server",
            &mut payload,
            FlushCompress::Sync,
        )
        .unwrap();
        payload.truncate(payload.len() - 4);
        let mut frame = vec![0xc1, u8::try_from(payload.len()).unwrap()];
        frame.extend_from_slice(&payload);
        tcp.write_all(&frame).await.unwrap();
        // The client's first frame: header, then masked payload.
        let mut h = [0_u8; 2];
        tcp.read_exact(&mut h).await.unwrap();
        let len = match h[1] & 0x7f {
            126 => {
                let mut b = [0; 2];
                tcp.read_exact(&mut b).await.unwrap();
                usize::from(u16::from_be_bytes(b))
            }
            n => usize::from(n),
        };
        let mut key = [0; 4];
        tcp.read_exact(&mut key).await.unwrap();
        let mut data = vec![0; len];
        tcp.read_exact(&mut data).await.unwrap();
        for (i, b) in data.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
        data.extend_from_slice(&[0, 0, 0xff, 0xff]);
        let mut d = Decompress::new(false);
        let mut inflated = Vec::with_capacity(4096);
        d.decompress_vec(&data, &mut inflated, FlushDecompress::Sync)
            .unwrap();
        (head, inflated, (h[0] >> 4) & 7)
    });
    (addr, task)
}

#[tokio::test]
async fn offers_deflate_and_speaks_it_both_ways() {
    bounded(async {
        let (addr, server) = deflate_server("permessage-deflate; server_no_context_takeover").await;
        let config = Config::default().deflate(DeflateConfig::default());
        let (mut ws, response) = ClientBuilder::new()
            .config(config)
            .connect(format!("ws://{addr}/"))
            .await
            .unwrap();
        assert_eq!(
            response.headers()["sec-websocket-extensions"],
            "permessage-deflate; server_no_context_takeover"
        );
        assert_eq!(
            ws.recv().await.unwrap().unwrap(),
            Message::text("hello from a compressing server")
        );
        let text = "a message long enough to be compressed by the client, ".repeat(4);
        ws.send(Message::text(text.clone())).await.unwrap();
        let (head, inflated, rsv) = server.await.unwrap();
        assert!(
            head.to_ascii_lowercase().contains(
                "sec-websocket-extensions: permessage-deflate; client_max_window_bits\r\n"
            ),
            "{head}"
        );
        assert_eq!(rsv, 0b100, "the client's message is compressed");
        assert_eq!(inflated, text.as_bytes());
    })
    .await;
}

#[tokio::test]
async fn refuses_a_deflate_answer_it_cannot_honour() {
    bounded(async {
        for answer in [
            "permessage-deflate; client_max_window_bits=8",
            "permessage-deflate; mystery",
            "permessage-deflate, permessage-deflate",
            "x-other-extension",
        ] {
            let (addr, server) = deflate_server(answer).await;
            let config = Config::default().deflate(DeflateConfig::default());
            let err = ClientBuilder::new()
                .config(config)
                .connect(format!("ws://{addr}/"))
                .await
                .map(|_| ())
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Handshake, "{answer}");
            server.abort();
        }
    })
    .await;
}

#[tokio::test]
async fn without_deflate_in_its_config_the_client_refuses_a_deflate_answer() {
    bounded(async {
        let (addr, server) = deflate_server("permessage-deflate").await;
        let err = ClientBuilder::new()
            .connect(format!("ws://{addr}/"))
            .await
            .map(|_| ())
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Handshake);
        assert!(err.to_string().contains("not offered"), "{err}");
        server.abort();
    })
    .await;
}
