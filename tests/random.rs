//! Seeded random message sequences, written by our client role and read by our server role
//! through random chunkings of the byte stream (one byte at a time up to all at once, with
//! spurious `Pending`s), arrive equal.

mod support;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use support::{Pieces, Rng, client_frame};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tower_ws::{CloseCode, Config, Message, Role, WebSocket};

/// Collects everything written; reads never complete.
#[derive(Default)]
struct Collect(Vec<u8>);

impl AsyncRead for Collect {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Poll::Pending
    }
}

impl AsyncWrite for Collect {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.0.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn random_size(rng: &mut Rng, large: bool) -> usize {
    match (rng.below(10), large) {
        (0..=4, _) => rng.below(126),
        (_, false) => rng.below(1000),
        (5..=7, true) => rng.below(70_000),
        (8, true) => [0, 125, 126, 65_535, 65_536][rng.below(5)],
        (_, true) => rng.below(300_000),
    }
}

/// Writes a random sequence with our client; returns the bytes and what the server must see.
async fn write_sequence(rng: &mut Rng, count: usize, large: bool) -> (Vec<u8>, Vec<Message>) {
    let mut client = WebSocket::new(Collect::default(), Role::Client, Config::default());
    let mut expected = Vec::new();
    for _ in 0..count {
        let size = random_size(rng, large);
        let small = rng.below(126);
        let message = match rng.below(6) {
            0 | 1 => Message::text(rng.text(size)),
            2 | 3 => Message::binary(rng.bytes(size)),
            4 => Message::ping(rng.bytes(small)),
            _ => Message::pong(rng.bytes(small)),
        };
        if rng.below(5) == 0 {
            // A message in fragments (written by hand: masked, with a ping in the middle).
            client.flush().await.unwrap();
            let size = random_size(rng, large);
            let text = rng.text(size);
            let bytes = text.as_bytes();
            let cut = rng.below(bytes.len() + 1);
            let wire = &mut client.get_mut().0;
            wire.extend(client_frame(false, 1, &bytes[..cut]));
            wire.extend(client_frame(true, 9, b"mid"));
            wire.extend(client_frame(true, 0, &bytes[cut..]));
            expected.push(Message::ping(&b"mid"[..]));
            expected.push(Message::text(text));
        }
        client.send(message.clone()).await.unwrap();
        expected.push(message);
    }
    client
        .send(Message::close(CloseCode::NORMAL, "end"))
        .await
        .unwrap();
    client.flush().await.unwrap();
    expected.push(Message::close(CloseCode::NORMAL, "end"));
    (std::mem::take(&mut client.get_mut().0), expected)
}

async fn read_through_chunks(seed: u64, wire: &[u8], max_piece: usize, expected: &[Message]) {
    let io = Pieces::new(
        wire.to_vec(),
        Rng::new(seed * 31 + max_piece as u64),
        max_piece.min(wire.len().max(1)),
    )
    .with_spurious_pending();
    let mut server = WebSocket::new(io, Role::Server, Config::default());
    let mut got = Vec::new();
    while let Some(item) = server.recv().await {
        got.push(item.unwrap_or_else(|e| panic!("seed {seed} piece {max_piece}: {e}")));
    }
    assert_eq!(got.len(), expected.len(), "seed {seed} piece {max_piece}");
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        assert!(g == e, "seed {seed} piece {max_piece}: message {i} differs");
    }
}

#[tokio::test]
async fn small_message_sequences_survive_byte_by_byte_and_small_chunks() {
    for seed in 1..=40 {
        let mut rng = Rng::new(seed);
        let (wire, expected) = write_sequence(&mut rng, 40, false).await;
        for max_piece in [1, 2, 7, 64, usize::MAX / 2] {
            read_through_chunks(seed, &wire, max_piece, &expected).await;
        }
    }
}

#[tokio::test]
async fn large_message_sequences_survive_random_chunking() {
    for seed in 100..=115 {
        let mut rng = Rng::new(seed);
        let (wire, expected) = write_sequence(&mut rng, 30, true).await;
        for max_piece in [997, 70_000, usize::MAX / 2] {
            read_through_chunks(seed, &wire, max_piece, &expected).await;
        }
    }
}
