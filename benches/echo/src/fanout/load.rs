//! The fan-out load generator: subscribers and publishers over raw TCP on one current-thread
//! runtime (pinned to the client core), every delivery checked.
//!
//! Each payload starts with the publisher's sequence number (u32) and the send time (u64 ns
//! since the run's start); the rest repeats the sequence number's low byte. A subscriber checks
//! every frame: a final binary frame, unmasked, of the published size, its fill byte, and its
//! sequence number one past the previous one from that room (a jump is counted as lost
//! messages, a step back as an error). Delivery latency is the receive time minus the stamp.
//!
//! Saturating publishers keep `window` messages in flight: a message is done once every
//! (reading) subscriber of its room has it. Fixed-rate publishers send on a 1 ms tick as many
//! messages as the rate calls for.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    clippy::too_many_lines,
    reason = "frame lengths checked by the match arms, low bytes as fill, rates and counts far \
              below 2^52; the run and table functions read best in one piece"
)]

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Notify, Semaphore};

use crate::hist::Histogram;
use crate::{Failure, handshake, sys};

/// Payload header: sequence number and send time.
const STAMP: usize = 12;
/// Slots of the per-room completion ring (more than any window).
const RING: usize = 1 << 12;
/// Handshakes in flight while connecting.
const CONNECTING: usize = 256;

/// How publishers send.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pace {
    /// `window` messages in flight per publisher.
    Window(u32),
    /// Messages per second, per publisher.
    Rate(f64),
}

/// One run's shape.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spec {
    pub(crate) rooms: usize,
    pub(crate) subscribers: usize,
    /// Subscribers per room that never read (with a 4 KiB receive buffer).
    pub(crate) stalled: usize,
    pub(crate) size: usize,
    pub(crate) pace: Pace,
    pub(crate) warmup: Duration,
    pub(crate) window: Duration,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub(crate) deliveries: u64,
    pub(crate) published: u64,
    pub(crate) window: Duration,
    pub(crate) server_cpu: Duration,
    /// Write-type system calls per delivery (`None` without strace).
    pub(crate) writes_per_delivery: Option<f64>,
    pub(crate) rss_per_subscriber: f64,
    pub(crate) latency: Histogram,
    /// Messages a reading subscriber never got (gaps, and what was missing at the end).
    pub(crate) lost: u64,
    /// Frames that failed a check.
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
}

struct Room {
    /// Reading subscribers.
    readers: usize,
    /// Deliveries per sequence number, for the window.
    ring: RefCell<Vec<u32>>,
    /// Sequence numbers delivered to every reader.
    done: Cell<u64>,
    /// Sequence numbers from which completion is counted (set when every reader has seen a
    /// message).
    epoch: Cell<Option<u32>>,
    /// Next sequence number to publish.
    next: Cell<u32>,
    /// Readers that have seen a message.
    ready: Cell<usize>,
    progress: Notify,
}

struct Shared {
    start: Instant,
    size: usize,
    rooms: Vec<Room>,
    deliveries: Cell<u64>,
    recording: Cell<bool>,
    stop: Cell<bool>,
    latency: RefCell<Histogram>,
    lost: Cell<u64>,
    errors: Cell<u64>,
    first_error: RefCell<Option<String>>,
    /// Per reader: last sequence number seen (to count what is missing at the end).
    last_seen: RefCell<Vec<Option<u32>>>,
}

impl Shared {
    fn error(&self, what: String) {
        self.errors.set(self.errors.get() + 1);
        self.first_error.borrow_mut().get_or_insert(what);
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

async fn open(
    addr: SocketAddr,
    path: &str,
    n: u64,
    small_buffer: bool,
) -> Result<(TcpStream, Vec<u8>), Failure> {
    let socket = TcpSocket::new_v4()?;
    if small_buffer {
        socket.set_recv_buffer_size(4096)?;
    }
    let mut stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    let key = handshake::client_key(n);
    let rest = handshake::client_at(&mut stream, &addr.to_string(), path, &key).await?;
    Ok((stream, rest))
}

/// Checks and counts the frames in `buf`; returns the bytes consumed.
fn on_frames(shared: &Shared, room: usize, reader: usize, buf: &[u8]) -> usize {
    let mut pos = 0;
    let size = shared.size;
    loop {
        let rest = &buf[pos..];
        if rest.len() < 2 {
            return pos;
        }
        let (len, header) = match rest[1] {
            126 => {
                if rest.len() < 4 {
                    return pos;
                }
                (usize::from(u16::from_be_bytes([rest[2], rest[3]])), 4)
            }
            127 => {
                if rest.len() < 10 {
                    return pos;
                }
                let mut b = [0; 8];
                b.copy_from_slice(&rest[2..10]);
                (
                    usize::try_from(u64::from_be_bytes(b)).unwrap_or(usize::MAX),
                    10,
                )
            }
            short => (usize::from(short), 2),
        };
        if rest.len() < header + len {
            return pos;
        }
        let payload = &rest[header..header + len];
        pos += header + len;
        if rest[0] != 0x82 || len != size {
            shared.error(format!(
                "frame {:#04x} of {len} B, expected a final binary frame of {size} B",
                rest[0]
            ));
            continue;
        }
        let seq = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
        let mut stamp = [0; 8];
        stamp.copy_from_slice(&payload[4..STAMP]);
        let sent = u64::from_be_bytes(stamp);
        if payload[STAMP..].iter().any(|&b| b != seq as u8) {
            shared.error(format!("message {seq}: payload corrupted"));
        }
        let mut last_seen = shared.last_seen.borrow_mut();
        let r = &shared.rooms[room];
        match last_seen[reader] {
            None => r.ready.set(r.ready.get() + 1),
            Some(last) if seq == last.wrapping_add(1) => {}
            Some(last) if seq > last => shared
                .lost
                .set(shared.lost.get() + u64::from(seq - last - 1)),
            Some(last) => shared.error(format!("message {seq} after {last}")),
        }
        last_seen[reader] = Some(seq);
        drop(last_seen);
        shared.deliveries.set(shared.deliveries.get() + 1);
        if shared.recording.get() {
            let now = shared.now_ns();
            shared
                .latency
                .borrow_mut()
                .record(Duration::from_nanos(now.saturating_sub(sent)));
        }
        if let Some(epoch) = r.epoch.get()
            && seq >= epoch
        {
            let mut ring = r.ring.borrow_mut();
            let slot = &mut ring[seq as usize % RING];
            *slot += 1;
            if *slot as usize == r.readers {
                *slot = 0;
                r.done.set(r.done.get() + 1);
                r.progress.notify_one();
            }
        }
    }
}

async fn subscriber(
    shared: Rc<Shared>,
    room: usize,
    reader: usize,
    mut stream: TcpStream,
    first: Vec<u8>,
) {
    let mut buf = vec![0_u8; 256 << 10];
    let mut have = first.len().min(buf.len());
    buf[..have].copy_from_slice(&first[..have]);
    loop {
        let used = on_frames(&shared, room, reader, &buf[..have]);
        buf.copy_within(used..have, 0);
        have -= used;
        if have == buf.len() {
            shared.error("frame larger than the read buffer".into());
            return;
        }
        match stream.read(&mut buf[have..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => have += n,
        }
    }
}

/// One masked client frame (key 0: the payload goes out as it is) of `payload`.
fn client_frame(out: &mut Vec<u8>, payload: &[u8]) {
    out.push(0x82);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 0x7e);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 0x7f);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(payload);
}

async fn publisher(shared: Rc<Shared>, room: usize, mut stream: TcpStream, pace: Pace) {
    let r = &shared.rooms[room];
    let mut frame = Vec::with_capacity(shared.size + 14);
    let mut payload = vec![0_u8; shared.size];
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut sent_by_rate = 0_u64;
    loop {
        if shared.stop.get() {
            return;
        }
        let mut batch = 1;
        match pace {
            Pace::Window(window) => {
                if r.epoch.get().is_none() {
                    // Until every reader has seen a message, one every 5 ms.
                    if r.ready.get() == r.readers {
                        r.epoch.set(Some(r.next.get()));
                    } else {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                } else {
                    let epoch = u64::from(r.epoch.get().unwrap_or(0));
                    while u64::from(r.next.get()) - epoch - r.done.get() >= u64::from(window) {
                        if shared.stop.get() {
                            return;
                        }
                        r.progress.notified().await;
                    }
                }
            }
            Pace::Rate(rate) => {
                tick.tick().await;
                let due = (started.elapsed().as_secs_f64() * rate) as u64;
                batch = due.saturating_sub(sent_by_rate);
                sent_by_rate = due;
            }
        }
        frame.clear();
        for _ in 0..batch {
            let seq = r.next.get();
            r.next.set(seq + 1);
            payload[..4].copy_from_slice(&seq.to_be_bytes());
            payload[4..STAMP].copy_from_slice(&shared.now_ns().to_be_bytes());
            payload[STAMP..].fill(seq as u8);
            client_frame(&mut frame, &payload);
        }
        if !frame.is_empty() && stream.write_all(&frame).await.is_err() {
            shared.error("publisher connection failed".into());
            return;
        }
    }
}

/// Write-type system calls (write, writev, send, sendto, sendmsg, sendmmsg) of `pid` over
/// `span`, counted by `strace -c`; `None` if strace is missing or fails.
async fn count_writes(pid: u32, span: Duration) -> Option<u64> {
    let out = std::env::temp_dir().join(format!("fanout-strace-{pid}.txt"));
    let mut child = tokio::process::Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-c",
            "-e",
            "trace=write,writev,sendto,sendmsg,sendmmsg",
            "-o",
        ])
        .arg(&out)
        .args(["-p", &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    tokio::time::sleep(span).await;
    let strace = child.id()?;
    let _ = tokio::process::Command::new("kill")
        .args(["-INT", &strace.to_string()])
        .status()
        .await;
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    let summary = std::fs::read_to_string(&out).ok()?;
    let _ = std::fs::remove_file(&out);
    let total = summary
        .lines()
        .rev()
        .find(|l| l.trim_end().ends_with("total"))?;
    total.split_whitespace().nth(3)?.parse().ok()
}

/// Runs one cell against the server at `addr` (process `pid`).
pub(crate) async fn run(addr: SocketAddr, pid: u32, spec: Spec) -> Result<Outcome, Failure> {
    let rss_base = sys::resident_bytes(pid)?;
    let readers_per_room = spec.subscribers - spec.stalled;
    let shared = Rc::new(Shared {
        start: Instant::now(),
        size: spec.size.max(STAMP),
        rooms: (0..spec.rooms)
            .map(|_| Room {
                readers: readers_per_room,
                ring: RefCell::new(vec![0; RING]),
                done: Cell::new(0),
                epoch: Cell::new(None),
                next: Cell::new(0),
                ready: Cell::new(0),
                progress: Notify::new(),
            })
            .collect(),
        deliveries: Cell::new(0),
        recording: Cell::new(false),
        stop: Cell::new(false),
        latency: RefCell::new(Histogram::default()),
        lost: Cell::new(0),
        errors: Cell::new(0),
        first_error: RefCell::new(None),
        last_seen: RefCell::new(vec![None; spec.rooms * readers_per_room]),
    });
    // Subscribers, readers and stalled ones, room by room, CONNECTING handshakes at a time.
    let gate = Rc::new(Semaphore::new(CONNECTING));
    let mut opening = Vec::new();
    let mut n = 0_u64;
    for room in 0..spec.rooms {
        for i in 0..spec.subscribers {
            n += 1;
            let gate = gate.clone();
            let path = format!("/sub/room{room}");
            let small = i >= readers_per_room;
            opening.push(tokio::task::spawn_local(async move {
                let _permit = gate.acquire().await;
                open(addr, &path, n, small).await.map(|c| (room, i, c))
            }));
        }
    }
    let mut stalled = Vec::new();
    let mut tasks = Vec::new();
    for handle in opening {
        let (room, i, (stream, first)) = handle
            .await
            .map_err(|e| Failure::new(format!("connecting task: {e}")))??;
        if i >= readers_per_room {
            stalled.push(stream);
        } else {
            let reader = room * readers_per_room + i;
            tasks.push(tokio::task::spawn_local(subscriber(
                shared.clone(),
                room,
                reader,
                stream,
                first,
            )));
        }
    }
    for room in 0..spec.rooms {
        n += 1;
        let (stream, _) = open(addr, &format!("/pub/room{room}"), n, false).await?;
        tasks.push(tokio::task::spawn_local(publisher(
            shared.clone(),
            room,
            stream,
            spec.pace,
        )));
    }
    // Warm-up: every reader has seen a message, then `warmup` more.
    let ready_by = Instant::now() + Duration::from_secs(60);
    while shared.rooms.iter().any(|r| r.ready.get() < r.readers) {
        if Instant::now() > ready_by {
            return Err(Failure::new(
                "subscribers still waiting for a first message after 60 s",
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(spec.warmup).await;
    let rss_ready = sys::resident_bytes(pid)?;
    // The measured window.
    let cpu_before = sys::cpu_time(pid)?;
    let deliveries_before = shared.deliveries.get();
    let published_before: u64 = shared.rooms.iter().map(|r| u64::from(r.next.get())).sum();
    let lost_before = shared.lost.get();
    let started = Instant::now();
    shared.recording.set(true);
    tokio::time::sleep(spec.window).await;
    shared.recording.set(false);
    let window = started.elapsed();
    let server_cpu = sys::cpu_time(pid)?.saturating_sub(cpu_before);
    let deliveries = shared.deliveries.get() - deliveries_before;
    let published = shared
        .rooms
        .iter()
        .map(|r| u64::from(r.next.get()))
        .sum::<u64>()
        - published_before;
    // Write system calls, counted by strace over one more second (a separate window: tracing
    // slows the server, so no CPU figure comes from it).
    let traced_before = shared.deliveries.get();
    let server_writes = count_writes(pid, Duration::from_secs(1)).await;
    let traced = shared.deliveries.get() - traced_before;
    let writes_per_delivery = server_writes.map(|w| crate::float(w) / crate::float(traced.max(1)));
    // Stop publishing; every reader must then get to its room's last message.
    shared.stop.set(true);
    for room in &shared.rooms {
        room.progress.notify_one();
    }
    let drain_by = Instant::now() + Duration::from_secs(10);
    let missing = || -> u64 {
        let last_seen = shared.last_seen.borrow();
        let mut missing = 0;
        for (room, r) in shared.rooms.iter().enumerate() {
            let last = r.next.get().saturating_sub(1);
            for reader in 0..r.readers {
                let seen = last_seen[room * r.readers + reader].unwrap_or(0);
                missing += u64::from(last.saturating_sub(seen));
            }
        }
        missing
    };
    while missing() > 0 && Instant::now() < drain_by {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let lost = shared.lost.get() - lost_before + missing();
    for task in &tasks {
        task.abort();
    }
    drop(stalled);
    let subscribers = spec.rooms * spec.subscribers;
    let latency = shared.latency.borrow().clone();
    let first_error = shared.first_error.borrow().clone();
    Ok(Outcome {
        deliveries,
        published,
        window,
        server_cpu,
        writes_per_delivery,
        rss_per_subscriber: crate::float(rss_ready.saturating_sub(rss_base)) / subscribers as f64,
        latency,
        lost,
        errors: shared.errors.get(),
        first_error,
    })
}
