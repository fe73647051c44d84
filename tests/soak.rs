//! Soak: 256 connections echoing messages of random sizes through the layer for about two
//! minutes, with random disconnects (clean closes, dropped connections, resets, connections
//! dropped in the middle of a frame). Opt-in, as it takes that long:
//!
//! ```sh
//! cargo test --release --test soak -- --ignored --nocapture
//! TOWER_WS_SOAK_SECS=600 TOWER_WS_SOAK_SEED=7 cargo test --release --test soak -- --ignored --nocapture
//! ```
//!
//! It checks that nothing fails but what was injected, on either side: every error the
//! server's handlers see is one of the injected disconnects, one for one; that every byte
//! sent is echoed; and that the server's RSS at the end is no higher than after warming up.
//! The server runs in a child process (`support::child`), so its RSS is its own.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use support::child::{self, ServerProcess, Stats};
use support::{Rng, VALID, client_frame, close_payload, handshake, read_frame, sees_eof};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tower_ws::Config;

const CONNECTIONS: usize = 256;
const TEST: &str = "soak_random_echoes_and_disconnects_lose_nothing_and_leak_nothing";

/// What the clients did, summed over all of them.
#[derive(Debug, Default)]
struct Tally {
    connections: AtomicU64,
    messages: AtomicU64,
    bytes_sent: AtomicU64,
    bytes_echoed: AtomicU64,
    pings: AtomicU64,
    /// Injected: a close handshake in the middle of the run.
    closed: AtomicU64,
    /// Injected: the TCP connection dropped (FIN) without a close frame.
    dropped: AtomicU64,
    /// Injected: the TCP connection reset (RST).
    reset: AtomicU64,
    /// Injected: dropped in the middle of a frame.
    cut: AtomicU64,
    /// The close handshake of every connection open at the end.
    closed_at_end: AtomicU64,
}

fn add(counter: &AtomicU64, n: usize) {
    counter.fetch_add(n as u64, Ordering::Relaxed);
}

/// Opens a WebSocket by hand and returns the connection after the `101`.
async fn open(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    stream
        .write_all(&handshake("GET", "/ws", &VALID))
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0_u8];
        assert_eq!(
            stream.read(&mut byte).await.unwrap(),
            1,
            "closed in handshake"
        );
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101 "), "{head:?}");
    stream
}

/// A message size: every power of two up to 64 KiB is as likely, so most messages are small
/// and some are large.
fn size(rng: &mut Rng) -> usize {
    let bits = rng.below(17);
    rng.below(1 << bits)
}

/// Closes `stream` with a close handshake, checking the answer and the end of the stream.
async fn close(mut stream: TcpStream, who: usize) {
    let frame = client_frame(true, 8, &close_payload(1000, b"bye"));
    stream.write_all(&frame).await.unwrap();
    loop {
        let frame = read_frame(&mut stream).await;
        let frame = frame.unwrap_or_else(|| panic!("client {who}: no close answer"));
        match frame.opcode {
            8 => break,
            10 => {}
            other => panic!("client {who}: frame {other} after our close"),
        }
    }
    assert!(sees_eof(&mut stream, 10).await, "client {who}: not closed");
}

/// Sends one random message (text or binary, in one to three frames, sometimes with a ping
/// among them) and checks its echo.
async fn echo_one(stream: &mut TcpStream, rng: &mut Rng, tally: &Tally, who: usize) {
    let len = size(rng);
    let text = rng.below(2) == 0;
    let payload = if text {
        rng.text(len).into_bytes()
    } else {
        rng.bytes(len)
    };
    let pieces = 1 + rng.below(3);
    let mut wire = Vec::with_capacity(len + 64);
    let mut start = 0;
    let mut ping = None;
    for piece in 0..pieces {
        let end = if piece + 1 == pieces {
            len
        } else {
            start + rng.below(len - start + 1)
        };
        let opcode = match (piece, text) {
            (0, true) => 1,
            (0, false) => 2,
            _ => 0,
        };
        wire.extend(client_frame(
            piece + 1 == pieces,
            opcode,
            &payload[start..end],
        ));
        start = end;
        if ping.is_none() && rng.below(50) == 0 {
            let len = rng.below(126);
            let data = rng.bytes(len);
            wire.extend(client_frame(true, 9, &data));
            ping = Some(data);
        }
    }
    stream
        .write_all(&wire)
        .await
        .unwrap_or_else(|e| panic!("client {who}: write: {e}"));
    let mut answer = None;
    let echo = loop {
        let frame = read_frame(stream).await;
        let frame = frame.unwrap_or_else(|| panic!("client {who}: connection lost"));
        match frame.opcode {
            10 => answer = Some(frame.payload),
            _ => break frame,
        }
    };
    assert_eq!(echo.opcode, if text { 1 } else { 2 }, "client {who}");
    assert!(
        echo.payload == payload,
        "client {who}: echo differs ({len} bytes)"
    );
    if let Some(ping) = ping {
        // Before the echo if the ping came between the message's frames, after it otherwise.
        if answer.is_none() {
            answer = read_frame(stream).await.map(|f| f.payload);
        }
        assert_eq!(answer, Some(ping), "client {who}: pong");
        add(&tally.pings, 1);
    }
    add(&tally.messages, 1);
    add(&tally.bytes_sent, len);
    add(&tally.bytes_echoed, echo.payload.len());
}

/// One client: connects, echoes, disconnects at random in one of the injected ways, connects
/// again, until `until`; then closes properly.
async fn client(addr: SocketAddr, seed: u64, until: Instant, tally: Arc<Tally>, who: usize) {
    let mut rng = Rng::new(seed);
    let step = Duration::from_secs(60);
    loop {
        let mut stream = tokio::time::timeout(step, open(addr))
            .await
            .expect("handshake");
        add(&tally.connections, 1);
        loop {
            if Instant::now() >= until {
                tokio::time::timeout(step, close(stream, who))
                    .await
                    .expect("close");
                add(&tally.closed_at_end, 1);
                return;
            }
            match rng.below(1000) {
                0..5 => {
                    tokio::time::timeout(step, close(stream, who))
                        .await
                        .expect("close");
                    add(&tally.closed, 1);
                    break;
                }
                5..10 => {
                    drop(stream);
                    add(&tally.dropped, 1);
                    break;
                }
                10..15 => {
                    stream.set_zero_linger().unwrap();
                    drop(stream);
                    add(&tally.reset, 1);
                    break;
                }
                15..20 => {
                    let len = 1 + rng.below(4096);
                    let frame = client_frame(true, 2, &rng.bytes(len));
                    let cut = 1 + rng.below(frame.len() - 1);
                    stream.write_all(&frame[..cut]).await.unwrap();
                    drop(stream);
                    add(&tally.cut, 1);
                    break;
                }
                _ => {
                    let echoed = echo_one(&mut stream, &mut rng, &tally, who);
                    tokio::time::timeout(step, echoed).await.expect("echo");
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs about two minutes: cargo test --release --test soak -- --ignored"]
async fn soak_random_echoes_and_disconnects_lose_nothing_and_leak_nothing() {
    if child::is_child() {
        return child::serve(Config::default()).await;
    }
    let env = |name, default| {
        std::env::var(name)
            .ok()
            .map_or(default, |v: String| v.parse().unwrap())
    };
    let secs = env("TOWER_WS_SOAK_SECS", 120);
    assert!(secs >= 20, "the RSS check needs two samples, 10 s apart");
    let seed = env("TOWER_WS_SOAK_SEED", 1);
    let mut server = ServerProcess::spawn(TEST).await;
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let tally = Arc::new(Tally::default());
    let mut clients = Vec::new();
    for who in 0..CONNECTIONS {
        let tally = Arc::clone(&tally);
        let seed = seed.wrapping_mul(1_000_003).wrapping_add(who as u64);
        clients.push(tokio::spawn(client(server.addr, seed, until, tally, who)));
    }

    // The server's RSS every 10 s while the clients run.
    let mut samples: Vec<(u64, Stats)> = Vec::new();
    let mut next = started;
    while next < until {
        next += Duration::from_secs(10);
        tokio::time::sleep_until(next.min(until)).await;
        samples.push((started.elapsed().as_secs(), server.stats().await));
    }
    for client in clients {
        tokio::time::timeout(Duration::from_secs(120), client)
            .await
            .expect("a client never finished")
            .unwrap();
    }
    let end = server.wait_for(60, |s| s.active == 0).await;
    let t = |c: &AtomicU64| c.load(Ordering::Relaxed);
    for (at, s) in &samples {
        eprintln!(
            "t={at:>4}s rss={:>7} KiB active={:>3} sessions={:>6} messages={:>9}",
            s.rss_kib, s.active, s.sessions, s.messages
        );
    }
    eprintln!("seed {seed}, {secs} s: {tally:?}");
    eprintln!("server at the end: {end:?}");

    // Nothing lost: every message and byte sent came back, and the server echoed those.
    assert_eq!(t(&tally.bytes_echoed), t(&tally.bytes_sent));
    assert_eq!(end.bytes, t(&tally.bytes_sent), "bytes the server echoed");
    assert_eq!(
        end.messages,
        t(&tally.messages),
        "messages the server echoed"
    );
    assert_eq!(end.sessions, t(&tally.connections), "sessions");
    // No error but the injected ones, one for one.
    let injected_io = t(&tally.dropped) + t(&tally.reset) + t(&tally.cut);
    assert_eq!(
        end.io_errors, injected_io,
        "I/O errors, against the disconnects injected"
    );
    assert_eq!(end.other_errors, 0, "errors of any other kind");
    assert_eq!(
        end.clean,
        t(&tally.closed) + t(&tally.closed_at_end),
        "clean closes"
    );
    // No growth: the RSS at the end of the run is not above its level after the first
    // quarter (the allocator's pools and the buffers' high-water marks are reached by then).
    let warm = samples[samples.len() / 4..samples.len() / 2]
        .iter()
        .map(|(_, s)| s.rss_kib)
        .max()
        .unwrap();
    let last = samples.last().unwrap().1.rss_kib;
    eprintln!(
        "server RSS: {warm} KiB after warming up, {last} KiB at the end of the run, {} KiB \
         after every connection closed",
        end.rss_kib
    );
    // 5% and 1 MiB of slack for the allocator's arenas, which settle slowly in a short run: a
    // leak of a kilobyte per connection or a hundred bytes per message would exceed it.
    assert!(
        last <= warm + warm / 20 + 1024,
        "RSS grew from {warm} KiB to {last} KiB"
    );
    server.exit().await;
}
