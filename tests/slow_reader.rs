//! Clients that stop reading while the server sends, through a real hyper server and the layer:
//! the session's write queue stays under the high-water mark, `send` waits without spinning
//! (`Backpressure::Wait`) or fails at once (`Reject`, `Close`), and the other sessions on the
//! same server are not slowed.
//!
//! `tests/backpressure.rs` covers the engine on bare sockets; these run the layer's sessions.

mod support;

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::SinkExt;
use support::{
    bounded, client_frame, cpu_time, inner, raw_ws, read_frame, sees_eof, serve, within, write_raw,
};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tower::ServiceBuilder;
use tower_ws::{Backpressure, Config, ErrorKind, Message, Session, UpgradeLayer, handler_fn};

#[global_allocator]
static ALLOCATOR: peak_alloc::PeakAlloc = peak_alloc::PeakAlloc;

/// The tests measure the whole process (CPU time, heap): one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const HIGH_WATER: usize = 64 << 10;
const MESSAGE: usize = 1024;
/// A frame of [`MESSAGE`] bytes from the server: 4 bytes of header.
const FRAME: usize = MESSAGE + 4;

/// What the flooding sessions share with the test.
#[derive(Debug, Default)]
struct Flood {
    /// Messages `send` accepted, over every flooding session.
    sent: AtomicUsize,
    /// The most bytes any session had queued after a `send`.
    most_queued: AtomicUsize,
    /// Times any `send` future was polled.
    polls: AtomicUsize,
}

/// Runs `future`, counting its polls in `polls`.
async fn counting_polls<F: Future>(polls: &AtomicUsize, future: F) -> F::Output {
    let mut future = pin!(future);
    std::future::poll_fn(|cx| {
        polls.fetch_add(1, Ordering::Relaxed);
        future.as_mut().poll(cx)
    })
    .await
}

/// A server whose `/flood` sessions send 1 KiB messages from the client's first message until
/// `send` fails, and whose `/echo` sessions echo. Each flooding session reports how its last
/// `send` failed.
async fn flood_server(policy: Backpressure) -> (std::net::SocketAddr, Arc<Flood>, FailedSends) {
    let flood = Arc::new(Flood::default());
    let (failed_tx, failed) = mpsc::unbounded_channel();
    let shared = Arc::clone(&flood);
    let handler = handler_fn(
        move |Session {
                  mut socket,
                  handshake,
                  ..
              }| {
            let (flood, failed) = (Arc::clone(&shared), failed_tx.clone());
            async move {
                if handshake.uri().path() == "/echo" {
                    while let Some(Ok(message)) = socket.recv().await {
                        if message.is_binary() {
                            socket.send(message).await?;
                        }
                    }
                    return Ok(());
                }
                // The client says when to start, so its handshake's answer arrives alone.
                socket.recv().await.transpose()?;
                let payload = bytes::Bytes::from(vec![0x42_u8; MESSAGE]);
                // `send` writes before it returns; `feed` (the `Sink` way) only queues, and waits
                // when the queue is at the mark.
                let feed = handshake.uri().query() == Some("feed");
                let error = loop {
                    let message = Message::binary(payload.clone());
                    let sent = if feed {
                        counting_polls(&flood.polls, SinkExt::feed(&mut socket, message)).await
                    } else {
                        counting_polls(&flood.polls, socket.send(message)).await
                    };
                    if let Err(error) = sent {
                        break error;
                    }
                    flood.sent.fetch_add(1, Ordering::SeqCst);
                    flood
                        .most_queued
                        .fetch_max(socket.buffered_amount(), Ordering::SeqCst);
                };
                let _ = failed.send((error.kind(), socket.is_open(), socket.is_terminated()));
                // Under `Reject` the session goes on: wait for the client to read again and say so,
                // then send once more.
                if error.kind() == ErrorKind::Backpressure && socket.is_open() {
                    while let Some(message) = socket.recv().await {
                        if message?.as_text() == Some("reading again") {
                            socket.send("after").await?;
                        }
                    }
                }
                Ok::<_, tower_ws::Error>(())
            }
        },
    );
    let config = Config::default()
        .write_buffer_high_water(HIGH_WATER)
        .backpressure(policy);
    let layer = UpgradeLayer::new(handler).config(config);
    let addr = serve(ServiceBuilder::new().layer(layer).service(inner())).await;
    (addr, flood, failed)
}

type FailedSends = mpsc::UnboundedReceiver<(ErrorKind, bool, bool)>;

/// A client of `path` (`/flood` or `/flood?feed`) that never reads: the server starts sending
/// at once.
async fn flooded(addr: std::net::SocketAddr, path: &str) -> TcpStream {
    let mut client = raw_ws(addr, path).await;
    write_raw(&mut client, &client_frame(true, 1, b"start")).await;
    client
}

/// Echo round trips on `clients` connections to `/echo` at once, `rounds` each: every
/// round-trip time, sorted.
async fn echo_latencies(addr: std::net::SocketAddr, clients: usize, rounds: u32) -> Vec<Duration> {
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let mut client = raw_ws(addr, "/echo").await;
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            for round in 0..rounds {
                let payload = round.to_be_bytes().repeat(16);
                let started = tokio::time::Instant::now();
                write_raw(&mut client, &client_frame(true, 2, &payload)).await;
                let echo = read_frame(&mut client).await.unwrap();
                times.push(started.elapsed());
                assert_eq!(echo.payload, payload);
            }
            times
        }));
    }
    let mut times = Vec::new();
    for task in tasks {
        times.extend(within(60, task).await.unwrap());
    }
    times.sort();
    times
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

/// Waits until the flooding sessions have stopped sending for half a second.
async fn until_stuck(flood: &Flood) -> usize {
    within(60, async {
        let mut last = usize::MAX;
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let sent = flood.sent.load(Ordering::SeqCst);
            if sent == last {
                return sent;
            }
            last = sent;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_waits_under_the_mark_without_spinning_and_other_sessions_keep_their_pace() {
    const STUCK: usize = 16;
    let _serial = SERIAL.lock().await;
    let (addr, flood, _failed) = flood_server(Backpressure::Wait).await;
    let baseline = echo_latencies(addr, 8, 200).await;

    let heap_before = ALLOCATOR.current_usage();
    // Clients that complete the handshake and never read a byte.
    let mut silent = Vec::new();
    for i in 0..STUCK {
        let path = if i % 2 == 0 { "/flood" } else { "/flood?feed" };
        silent.push(flooded(addr, path).await);
    }
    let sent = until_stuck(&flood).await;
    let heap_stuck = ALLOCATOR.current_usage().saturating_sub(heap_before);

    // While they are stuck, nothing runs: no `send` is polled again, no CPU is spent.
    let (polls, cpu) = (flood.polls.load(Ordering::SeqCst), cpu_time());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let repolled = flood.polls.load(Ordering::SeqCst) - polls;
    let cpu = cpu_time().saturating_sub(cpu);
    assert_eq!(flood.sent.load(Ordering::SeqCst), sent, "send did not wait");
    assert!(
        repolled <= STUCK,
        "{repolled} polls of {STUCK} waiting sends in 1 s"
    );
    // A spinning task would burn a core (at least half of one on a loaded machine).
    assert!(cpu <= Duration::from_millis(250), "{cpu:?} of CPU in 1 s");

    // The other sessions echo at the pace they had before.
    let stuck = echo_latencies(addr, 8, 200).await;
    let most = flood.most_queued.load(Ordering::SeqCst);
    eprintln!(
        "{STUCK} sessions whose client never reads (half `send`, half `feed`): {sent} \
         messages of {MESSAGE} B accepted ({} KiB per session, mostly in the kernel's socket \
         buffers); the most any session queued: {most} B (high-water mark {HIGH_WATER} B); \
         heap {} KiB per stuck session; \
         echo round trip on 8 other sessions, p50/p99: {:?}/{:?} before, {:?}/{:?} while stuck",
        sent * FRAME / STUCK / 1024,
        heap_stuck / STUCK / 1024,
        percentile(&baseline, 50),
        percentile(&baseline, 99),
        percentile(&stuck, 50),
        percentile(&stuck, 99),
    );
    // `feed` queues a message whole while the queue is under the mark, then waits; `send`
    // also waits for its message to be written, so it never has more than one queued.
    assert!(most < HIGH_WATER + FRAME, "a session queued {most} bytes");
    assert!(most >= HIGH_WATER, "the queues never reached the mark");
    assert!(sent > STUCK * HIGH_WATER / FRAME, "the queues never filled");
    // The queue's buffer (grown by doubling) and the session: nothing else grows.
    assert!(
        heap_stuck <= STUCK * (2 * HIGH_WATER + (16 << 10)),
        "{heap_stuck} B of heap for {STUCK} stuck sessions"
    );
    // Latencies are wall-clock, so the bound is loose: the median may triple, plus 20 ms for
    // a neighbour's burst on a loaded machine, where a stuck session that blocked its thread
    // or spun would add whole seconds (or never let the echoes finish).
    let (before, during) = (percentile(&baseline, 50), percentile(&stuck, 50));
    assert!(
        during <= 3 * before + Duration::from_millis(20),
        "median echo {during:?} while stuck, {before:?} before"
    );
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_reject_a_full_queue_refuses_the_message_and_the_session_goes_on() {
    let _serial = SERIAL.lock().await;
    let (addr, flood, mut failed) = flood_server(Backpressure::Reject).await;
    let mut client = flooded(addr, "/flood").await;
    let (kind, open, terminated) = within(60, failed.recv()).await.unwrap();
    assert_eq!(kind, ErrorKind::Backpressure);
    assert!(open && !terminated, "the connection stays open");
    let sent = flood.sent.load(Ordering::SeqCst);
    assert!(flood.most_queued.load(Ordering::SeqCst) < HIGH_WATER + FRAME);

    // The client reads again: every accepted message arrives whole and in order, then the one
    // sent after the refusal.
    write_raw(&mut client, &client_frame(true, 1, b"reading again")).await;
    for i in 0..sent {
        let frame = within(10, read_frame(&mut client)).await.unwrap();
        assert_eq!(
            (frame.opcode, frame.payload.len()),
            (2, MESSAGE),
            "message {i}"
        );
    }
    let after = within(10, read_frame(&mut client)).await.unwrap();
    assert_eq!((after.opcode, after.payload), (1, b"after".to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_close_a_client_that_stops_reading_is_disconnected() {
    let _serial = SERIAL.lock().await;
    let (addr, flood, mut failed) = flood_server(Backpressure::Close).await;
    let mut client = flooded(addr, "/flood").await;
    let (kind, open, terminated) = within(60, failed.recv()).await.unwrap();
    assert_eq!(kind, ErrorKind::Backpressure);
    assert!(!open && terminated, "the connection is closed at once");
    assert!(flood.most_queued.load(Ordering::SeqCst) < HIGH_WATER + FRAME);

    // Reading at last, the client gets what the kernel held, then the end of the stream: the
    // queue was dropped, not sent, so no close frame can follow.
    let mut received = 0_usize;
    bounded(async {
        let mut chunk = vec![0_u8; 64 << 10];
        loop {
            match client.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received += n,
            }
        }
    })
    .await;
    let accepted = flood.sent.load(Ordering::SeqCst) * FRAME;
    assert!(
        received <= accepted,
        "{received} bytes arrived of {accepted} queued"
    );
    assert!(sees_eof(&mut client, 1).await);
}
