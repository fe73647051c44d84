//! The load generator: our own neutral client over raw TCP (its own handshake and masked frames,
//! none of the libraries under test), on one current-thread runtime.
//!
//! Each connection is one task that keeps `in_flight` messages outstanding: it writes a batch of
//! frames with one `writev`, reads whatever has arrived, verifies every echoed byte, and tops the
//! batch up again. Round trips are timed per message from the write that carried it to the read
//! that completed its echo.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::{StreamExt as _, TryStreamExt as _};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::task::LocalSet;

use crate::hist::Histogram;
use crate::wire::{Decoder, OutQueue, Payload};
use crate::{Failure, handshake, sys};

/// The masking key of every frame the load generator sends (any non-zero key costs a server
/// the same unmasking pass).
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// How long opening all connections may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(120);

/// How long, after the window, the last echoes may take to come back.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a counted run may take in all (servers under valgrind run some 50 times slower).
const COUNT_TIMEOUT: Duration = Duration::from_secs(600);

/// When a run ends.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Until {
    /// Run for `warmup`, then measure over `window`, then drain.
    Time { warmup: Duration, window: Duration },
    /// Send exactly `messages` on each connection, in bursts of `in_flight` (a burst is sent with
    /// one write only once every echo of the previous one is back), and measure all of them.
    /// The server then sees the same reads and writes every time, which makes instruction
    /// counts repeatable.
    Count { messages: u64 },
}

/// What one load run does.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spec {
    pub(crate) conns: usize,
    pub(crate) in_flight: usize,
    pub(crate) size: usize,
    pub(crate) text: bool,
    pub(crate) until: Until,
    /// The server is the raw TCP echo: frames come back exactly as sent, masked.
    pub(crate) raw: bool,
}

/// What one load run measured.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    /// Echoes received (and verified) inside the window.
    pub(crate) messages: u64,
    /// Payload bytes of those echoes (each message counted once).
    pub(crate) bytes: u64,
    pub(crate) window: Duration,
    /// CPU time the server process used inside the window.
    pub(crate) server_cpu: Duration,
    /// CPU time the load generator used inside the window.
    pub(crate) client_cpu: Duration,
    pub(crate) rtt: Histogram,
}

/// What an idle-memory run measured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdleOutcome {
    pub(crate) sockets: usize,
    pub(crate) rss_before: u64,
    pub(crate) rss_after: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Warmup,
    Measure,
    Stop,
}

/// State every connection task of a run shares (all on one thread).
#[derive(Debug)]
struct Shared {
    phase: Cell<Phase>,
    measured: Cell<u64>,
    rtt: RefCell<Histogram>,
}

/// One connection's task state.
#[derive(Debug)]
struct Conn<S> {
    stream: S,
    out: OutQueue,
    dec: Decoder,
    rbuf: Vec<u8>,
    filled: usize,
    next_seq: u32,
    /// Send time of each message whose echo is outstanding, oldest first.
    sent_at: VecDeque<Instant>,
    in_flight: usize,
    /// Messages still to send, when the run counts messages rather than time.
    budget: Option<u64>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    fn new(stream: S, leftover: &[u8], spec: &Spec) -> Self {
        // Room for a whole batch of echoes in one read, within reason.
        let batch = (spec.size + 14) * spec.in_flight;
        let mut rbuf = vec![0; (batch + 1024).next_power_of_two().clamp(4 << 10, 256 << 10)];
        rbuf[..leftover.len()].copy_from_slice(leftover);
        Self {
            stream,
            out: OutQueue::default(),
            dec: Decoder::new(spec.raw),
            rbuf,
            filled: leftover.len(),
            next_seq: 0,
            sent_at: VecDeque::with_capacity(spec.in_flight),
            in_flight: spec.in_flight,
            budget: match spec.until {
                Until::Time { .. } => None,
                Until::Count { messages } => Some(messages),
            },
        }
    }

    /// Queues messages up to the in-flight limit (in count mode: a whole burst, and only once
    /// the previous burst is back).
    fn top_up(&mut self, payload: &Payload, shared: &Shared, now: Instant) {
        if shared.phase.get() == Phase::Stop || (self.budget.is_some() && !self.sent_at.is_empty())
        {
            return;
        }
        while self.sent_at.len() < self.in_flight {
            if let Some(left) = &mut self.budget {
                if *left == 0 {
                    break;
                }
                *left -= 1;
            }
            payload.push_frame(&mut self.out, self.next_seq);
            self.next_seq = self.next_seq.wrapping_add(1);
            self.sent_at.push_back(now);
        }
    }

    fn finished(&self, shared: &Shared) -> bool {
        self.sent_at.is_empty() && (shared.phase.get() == Phase::Stop || self.budget == Some(0))
    }

    fn poll_run(
        &mut self,
        cx: &mut Context<'_>,
        payload: &Payload,
        shared: &Shared,
    ) -> Poll<Result<(), Failure>> {
        loop {
            if !self.out.is_empty()
                && let Poll::Ready(Err(e)) = self.out.poll_write(&mut self.stream, cx)
            {
                return Poll::Ready(Err(e.into()));
            }
            if self.finished(shared) {
                return Poll::Ready(Ok(()));
            }
            let mut buf = ReadBuf::new(&mut self.rbuf[self.filled..]);
            match Pin::new(&mut self.stream).poll_read(cx, &mut buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                    return Poll::Ready(Err(Failure::new(format!(
                        "server closed the connection with {} echoes outstanding",
                        self.sent_at.len()
                    ))));
                }
                Poll::Ready(Ok(())) => self.filled += buf.filled().len(),
            }
            let now = Instant::now();
            let mut echoes = 0;
            let used = self
                .dec
                .feed(payload, &self.rbuf[..self.filled], || echoes += 1)?;
            self.rbuf.copy_within(used..self.filled, 0);
            self.filled -= used;
            let measuring = shared.phase.get() == Phase::Measure;
            let mut rtt = measuring.then(|| shared.rtt.borrow_mut());
            for _ in 0..echoes {
                let sent = self
                    .sent_at
                    .pop_front()
                    .ok_or_else(|| Failure::new("more echoes than messages sent"))?;
                if let Some(rtt) = &mut rtt {
                    rtt.record(now - sent);
                }
            }
            drop(rtt);
            if measuring {
                shared.measured.set(shared.measured.get() + echoes);
            }
            self.top_up(payload, shared, now);
        }
    }
}

/// Opens connection number `n` and completes the opening handshake.
async fn connect(addr: SocketAddr, n: u64) -> Result<(TcpStream, Vec<u8>), Failure> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    // Closing with a reset leaves no TIME_WAIT behind, so runs never exhaust ephemeral ports.
    stream.set_zero_linger()?;
    let leftover =
        handshake::client(&mut stream, &addr.to_string(), &handshake::client_key(n)).await?;
    Ok((stream, leftover))
}

/// Opens `count` connections, `concurrency` at a time.
async fn connect_all(
    addr: SocketAddr,
    count: usize,
    concurrency: usize,
) -> Result<Vec<(TcpStream, Vec<u8>)>, Failure> {
    let all = futures_util::stream::iter(0..count as u64)
        .map(|n| connect(addr, n))
        .buffer_unordered(concurrency)
        .try_collect();
    tokio::time::timeout(CONNECT_TIMEOUT, all)
        .await
        .map_err(|_| {
            Failure::new(format!(
                "opening {count} connections took over {CONNECT_TIMEOUT:?}"
            ))
        })?
}

/// Runs `spec` against the server at `addr` (process `server_pid`).
pub(crate) async fn run(addr: SocketAddr, server_pid: u32, spec: Spec) -> Result<Outcome, Failure> {
    let conns = connect_all(addr, spec.conns, 64).await?;
    drive(conns, server_pid, spec).await
}

/// Runs `spec` over connections already open, each with the bytes read past its handshake.
pub(crate) async fn drive<S: AsyncRead + AsyncWrite + Unpin + 'static>(
    conns: Vec<(S, Vec<u8>)>,
    server_pid: u32,
    spec: Spec,
) -> Result<Outcome, Failure> {
    let payload = Rc::new(Payload::new(spec.size, spec.text, KEY));
    let shared = Rc::new(Shared {
        phase: Cell::new(match spec.until {
            Until::Time { .. } => Phase::Warmup,
            Until::Count { .. } => Phase::Measure,
        }),
        measured: Cell::new(0),
        rtt: RefCell::new(Histogram::default()),
    });
    let local = LocalSet::new();
    let mut tasks = Vec::with_capacity(conns.len());
    let start = Instant::now();
    for (stream, leftover) in conns {
        let mut conn = Conn::new(stream, &leftover, &spec);
        let payload = Rc::clone(&payload);
        let shared = Rc::clone(&shared);
        tasks.push(local.spawn_local(async move {
            conn.top_up(&payload, &shared, Instant::now());
            poll_fn(|cx| conn.poll_run(cx, &payload, &shared)).await
        }));
    }
    let me = std::process::id();
    local
        .run_until(async {
            let (t0, server0, client0) = match spec.until {
                Until::Time { warmup, .. } => {
                    tokio::time::sleep(warmup).await;
                    let mark = (
                        Instant::now(),
                        sys::cpu_time(server_pid)?,
                        sys::cpu_time(me)?,
                    );
                    shared.phase.set(Phase::Measure);
                    mark
                }
                Until::Count { .. } => (start, sys::cpu_time(server_pid)?, sys::cpu_time(me)?),
            };
            if let Until::Time { window, .. } = spec.until {
                tokio::time::sleep(window).await;
                shared.phase.set(Phase::Stop);
            }
            let (t1, server1, client1) = (
                Instant::now(),
                sys::cpu_time(server_pid)?,
                sys::cpu_time(me)?,
            );
            let limit = match spec.until {
                Until::Time { .. } => DRAIN_TIMEOUT,
                Until::Count { .. } => COUNT_TIMEOUT,
            };
            let drained = tokio::time::timeout(limit, futures_util::future::join_all(tasks))
                .await
                .map_err(|_| Failure::new(format!("echoes still outstanding after {limit:?}")))?;
            for result in drained {
                result.map_err(|e| Failure::new(format!("connection task: {e}")))??;
            }
            // In count mode the window is the whole run, ending when the last echo is back.
            let (t1, server1, client1) = match spec.until {
                Until::Time { .. } => (t1, server1, client1),
                Until::Count { .. } => (
                    Instant::now(),
                    sys::cpu_time(server_pid)?,
                    sys::cpu_time(me)?,
                ),
            };
            let messages = shared.measured.get();
            Ok(Outcome {
                messages,
                bytes: messages * spec.size as u64,
                window: t1 - t0,
                server_cpu: server1.saturating_sub(server0),
                client_cpu: client1.saturating_sub(client0),
                rtt: shared.rtt.borrow().clone(),
            })
        })
        .await
}

/// Opens a connection, exchanges one 16-byte message, and returns the idle connection.
async fn connect_and_echo(addr: SocketAddr, n: u64, raw: bool) -> Result<TcpStream, Failure> {
    let spec = Spec {
        conns: 1,
        in_flight: 1,
        size: 16,
        text: false,
        until: Until::Count { messages: 1 },
        raw,
    };
    let (stream, leftover) = connect(addr, n).await?;
    let payload = Payload::new(spec.size, spec.text, KEY);
    let shared = Shared {
        phase: Cell::new(Phase::Measure),
        measured: Cell::new(0),
        rtt: RefCell::new(Histogram::default()),
    };
    let mut conn = Conn::new(stream, &leftover, &spec);
    conn.top_up(&payload, &shared, Instant::now());
    poll_fn(|cx| conn.poll_run(cx, &payload, &shared)).await?;
    Ok(conn.stream)
}

/// Measures the server's resident memory before and after `sockets` connections are open, each
/// having exchanged one message and then gone idle.
pub(crate) async fn idle(
    addr: SocketAddr,
    server_pid: u32,
    sockets: usize,
    raw: bool,
) -> Result<IdleOutcome, Failure> {
    // One connection first, so that what any first connection sets up once (runtime, pools,
    // lazily built tables) is in the baseline, not in the per-socket figure.
    let first = connect_and_echo(addr, u64::MAX, raw).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_before = sys::resident_bytes(server_pid)?;
    // Few at a time, so that buffers a server holds only during the handshake are reused
    // rather than all alive at once.
    let all = futures_util::stream::iter(0..sockets as u64)
        .map(|n| connect_and_echo(addr, n, raw))
        .buffer_unordered(16)
        .try_collect::<Vec<_>>();
    let open = tokio::time::timeout(CONNECT_TIMEOUT, all)
        .await
        .map_err(|_| {
            Failure::new(format!(
                "opening {sockets} sockets took over {CONNECT_TIMEOUT:?}"
            ))
        })??;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = sys::resident_bytes(server_pid)?;
    drop((first, open));
    Ok(IdleOutcome {
        sockets,
        rss_before,
        rss_after,
    })
}
