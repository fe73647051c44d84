//! What a broker costs: the broadcast bench protocol served by one process, and by two node
//! processes sharing the room through Redis and through NATS.
//!
//! ```sh
//! cargo run --release --features redis,nats --example cluster_bench -- [--secs 3] [--subs 1000] [--only redis|nats|oneprocess]
//! ```
//!
//! It starts its own `redis-server` and `nats-server` (Debian's packages) on free loopback
//! ports, and runs itself again as the server nodes (`--node`), so that each node's CPU time
//! and memory are its own: a node is the `fanout_server` routing (`/sub/{room}`, `/pub/{room}`)
//! on a current-thread runtime. The subscribers (spread evenly over the nodes) and the
//! publisher are tokio-tungstenite clients in this process. Per cell it reports:
//!
//! - deliveries per server CPU-second, with the publisher keeping a window of 16 messages in
//!   flight (counted against the slowest subscriber's node), all nodes' CPU added up;
//! - the broker's CPU per delivery and per published message;
//! - delivery latency p50/p99 at a fixed rate of 100 messages a second (a timestamp in each
//!   payload), from which the broker's share is the difference to the one-process line;
//! - each node's RSS per connected subscriber (after connecting, before publishing).
//!
//! Every delivery is checked: each subscriber must see the publisher's sequence in order with
//! none missing or repeated, or the run fails.

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tower_ws::broker::{Broker, Cluster, NatsConfig, RedisConfig};
use tower_ws::{Hub, Session, UpgradeLayer, handler_fn};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

// ---------------------------------------------------------------- the node (child process)

#[derive(Clone)]
enum Rooms {
    Local(Hub),
    Cluster(Cluster),
}

async fn node_session(rooms: Rooms, session: Session) {
    let Session {
        mut socket,
        handshake,
        ..
    } = session;
    let path = handshake.uri().path().to_owned();
    if let Some(room) = path.strip_prefix("/sub/") {
        let hub = match &rooms {
            Rooms::Local(hub) => hub,
            Rooms::Cluster(cluster) => cluster.hub(),
        };
        let member = hub.join(&mut socket);
        member.subscribe(room);
        while let Some(Ok(_)) = socket.recv().await {}
    } else if let Some(room) = path.strip_prefix("/pub/") {
        while let Some(Ok(message)) = socket.recv().await {
            match &rooms {
                Rooms::Local(hub) => {
                    hub.publish(room, message);
                }
                Rooms::Cluster(cluster) => {
                    let published = cluster.publish(room, &message);
                    tokio::spawn(async move {
                        if let Err(error) = published.await {
                            eprintln!("node: {error}");
                        }
                    });
                }
            }
        }
    }
}

fn run_node(port: u16, broker: &str) -> Result<(), BoxError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let rooms = if let Some(url) = broker.strip_prefix("redis=") {
            let (broker, events) = Broker::redis(url, RedisConfig::default().history_len(0))?;
            Rooms::Cluster(Cluster::builder(broker, events).start())
        } else if let Some(url) = broker.strip_prefix("nats=") {
            let (broker, events) = Broker::nats(url, NatsConfig::default()).await?;
            Rooms::Cluster(Cluster::builder(broker, events).start())
        } else {
            Rooms::Local(Hub::new())
        };
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
        let handler = handler_fn(move |s: Session| node_session(rooms.clone(), s));
        let not_found = tower::service_fn(|_: Request<Incoming>| async {
            let mut response = Response::new(Empty::<Bytes>::new());
            *response.status_mut() = StatusCode::NOT_FOUND;
            Ok::<_, Infallible>(response)
        });
        let service = tower::Layer::layer(&UpgradeLayer::new(handler), not_found);
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    })
}

// ---------------------------------------------------------------- processes and /proc

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_or(0, |a| a.port())
}

fn wait_port(port: u16) -> Result<(), BoxError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while StdStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(format!("nothing listens on {port}").into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn find(binary: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/bin".into()])
        .map(|dir| dir.join(binary))
        .find(|candidate| candidate.is_file())
}

/// A child process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Process {
    fn spawn(command: &mut Command) -> Result<Self, BoxError> {
        Ok(Self(
            command
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()?,
        ))
    }

    /// User + system CPU time so far.
    fn cpu(&self) -> Duration {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.0.id())) else {
            return Duration::ZERO;
        };
        let Some(end) = stat.rfind(')') else {
            return Duration::ZERO;
        };
        let fields: Vec<&str> = stat[end + 2..].split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Duration::from_millis((ticks(11) + ticks(12)) * 10)
    }

    fn rss(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.0.id()))
            .ok()
            .and_then(|status| {
                status.lines().find_map(|line| {
                    let kb = line.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?;
                    kb.trim().parse::<u64>().ok()
                })
            })
            .unwrap_or(0)
            * 1024
    }
}

// ---------------------------------------------------------------- the load

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    OneProcess,
    Redis,
    Nats,
}

struct Cell {
    mode: Mode,
    subs: usize,
    payload: usize,
}

struct Figures {
    deliveries: u64,
    node_cpu: Duration,
    broker_cpu: Duration,
    published: u64,
    p50: Duration,
    p99: Duration,
    rss_per_sub: f64,
}

/// A subscriber: checks the sequence, counts, samples latency.
async fn subscriber(
    addr: SocketAddr,
    delivered: Arc<AtomicU64>,
    latencies: Option<Arc<std::sync::Mutex<Vec<u64>>>>,
    base: Instant,
    ready: tokio::sync::mpsc::Sender<()>,
) -> Result<(), BoxError> {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/sub/room")).await?;
    ready.send(()).await?;
    let mut expected = 0u64;
    while let Some(message) = ws.next().await {
        let WsMessage::Binary(payload) = message? else {
            continue;
        };
        let mut word = [0; 8];
        word.copy_from_slice(&payload[..8]);
        let sequence = u64::from_be_bytes(word);
        assert_eq!(
            sequence, expected,
            "a delivery missing, repeated or out of order"
        );
        expected += 1;
        delivered.fetch_add(1, Ordering::Relaxed);
        if let Some(latencies) = &latencies {
            word.copy_from_slice(&payload[8..16]);
            let sent = u64::from_be_bytes(word);
            let now = u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX);
            if let Ok(mut samples) = latencies.lock() {
                samples.push(now.saturating_sub(sent));
            }
        }
    }
    Ok(())
}

fn payload(sequence: u64, base: Instant, len: usize) -> Vec<u8> {
    let mut out = vec![b'x'; len.max(16)];
    out[..8].copy_from_slice(&sequence.to_be_bytes());
    let now = u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX);
    out[8..16].copy_from_slice(&now.to_be_bytes());
    out
}

fn percentile(sorted: &[u64], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "an index into a sample of at most millions"
    )]
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    Duration::from_nanos(sorted[index])
}

#[allow(
    clippy::too_many_lines,
    reason = "one cell, start to end, reads best whole"
)]
async fn run_cell(
    cell: &Cell,
    secs: u64,
    redis: &(Process, String),
    nats: &(Process, String),
) -> Result<Figures, BoxError> {
    let me = std::env::current_exe()?;
    let (broker_arg, broker) = match cell.mode {
        Mode::OneProcess => (String::from("local"), None),
        Mode::Redis => (format!("redis={}", redis.1), Some(&redis.0)),
        Mode::Nats => (format!("nats={}", nats.1), Some(&nats.0)),
    };
    let node_count = if cell.mode == Mode::OneProcess { 1 } else { 2 };
    let mut nodes = Vec::new();
    let mut addrs = Vec::new();
    for _ in 0..node_count {
        let port = free_port();
        nodes.push(Process::spawn(Command::new(&me).args([
            "--node",
            &port.to_string(),
            &broker_arg,
        ]))?);
        wait_port(port)?;
        addrs.push(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    let rss_before: u64 = nodes.iter().map(Process::rss).sum();

    let base = Instant::now();
    let delivered = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(cell.subs);
    let mut tasks = Vec::new();
    // Subscriber i goes to node i % nodes; every 50th samples latency; the last subscriber
    // (on the last node) is the window's probe.
    let probe = Arc::new(AtomicU64::new(0));
    for i in 0..cell.subs {
        let counter = if i == cell.subs - 1 {
            probe.clone()
        } else {
            delivered.clone()
        };
        let sample = (i % 50 == 0).then(|| latencies.clone());
        tasks.push(tokio::spawn(subscriber(
            addrs[i % addrs.len()],
            counter,
            sample,
            base,
            ready_tx.clone(),
        )));
    }
    for _ in 0..cell.subs {
        ready_rx
            .recv()
            .await
            .ok_or("a subscriber failed to connect")?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after: u64 = nodes.iter().map(Process::rss).sum();

    let (mut publisher, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/pub/room", addrs[0])).await?;
    let cpu = |nodes: &[Process]| nodes.iter().map(Process::cpu).sum::<Duration>();

    // Throughput: a window of 16 messages in flight, measured at the probe.
    let (node_cpu_0, broker_cpu_0) = (cpu(&nodes), broker.map_or(Duration::ZERO, Process::cpu));
    let (delivered_0, probe_0) = (
        delivered.load(Ordering::Relaxed),
        probe.load(Ordering::Relaxed),
    );
    let started = Instant::now();
    let mut sequence = 0u64;
    while started.elapsed() < Duration::from_secs(secs) {
        while sequence < probe.load(Ordering::Relaxed) + 16 {
            let message = WsMessage::binary(payload(sequence, base, cell.payload));
            publisher.feed(message).await?;
            sequence += 1;
        }
        publisher.flush().await?;
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    // Let the window drain before reading the counters.
    let drain = Instant::now();
    while probe.load(Ordering::Relaxed) < sequence && drain.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let deliveries =
        delivered.load(Ordering::Relaxed) - delivered_0 + probe.load(Ordering::Relaxed) - probe_0;
    let node_cpu = cpu(&nodes).saturating_sub(node_cpu_0);
    let broker_cpu = broker
        .map_or(Duration::ZERO, Process::cpu)
        .saturating_sub(broker_cpu_0);
    let sequence_after_throughput = sequence;

    // Every subscriber drains its backlog before the latency phase, which must not measure it.
    let total = || delivered.load(Ordering::Relaxed) + probe.load(Ordering::Relaxed);
    let expected = sequence * u64::try_from(cell.subs).unwrap_or(u64::MAX);
    let drain = Instant::now();
    while total() < expected && drain.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if total() < expected {
        return Err(format!("{} deliveries of {expected} after 30 s", total()).into());
    }
    // Latency: 100 messages a second for three seconds (with 1,000 subscribers, 100,000
    // deliveries a second: well under what the servers and this generator sustain, so the
    // figure is the path's latency, not a queue's).
    if let Ok(mut samples) = latencies.lock() {
        samples.clear();
    }
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    for _ in 0..300 {
        tick.tick().await;
        publisher
            .send(WsMessage::binary(payload(sequence, base, cell.payload)))
            .await?;
        sequence += 1;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut samples = latencies.lock().map(|s| s.clone()).unwrap_or_default();
    samples.sort_unstable();
    for task in &tasks {
        task.abort();
    }
    #[allow(clippy::cast_precision_loss, reason = "a figure")]
    let rss_per_sub = rss_after.saturating_sub(rss_before) as f64 / cell.subs as f64;
    Ok(Figures {
        deliveries,
        node_cpu,
        broker_cpu,
        published: sequence_after_throughput,
        p50: percentile(&samples, 0.50),
        p99: percentile(&samples, 0.99),
        rss_per_sub,
    })
}

#[allow(clippy::cast_precision_loss, reason = "figures")]
fn report(cell: &Cell, figures: &Figures) {
    let per_cpu = figures.deliveries as f64 / figures.node_cpu.as_secs_f64().max(1e-3);
    let broker_per_delivery =
        figures.broker_cpu.as_secs_f64() * 1e9 / figures.deliveries.max(1) as f64;
    let broker_per_message =
        figures.broker_cpu.as_secs_f64() * 1e6 / figures.published.max(1) as f64;
    println!(
        "| {:?} | {} | {} B | {:.2} M | {:.0} ns | {:.1} µs | {:.0} µs | {:.0} µs | {:.1} KB |",
        cell.mode,
        cell.subs,
        cell.payload,
        per_cpu / 1e6,
        broker_per_delivery,
        broker_per_message,
        figures.p50.as_secs_f64() * 1e6,
        figures.p99.as_secs_f64() * 1e6,
        figures.rss_per_sub / 1e3,
    );
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--node") {
        let port = args.get(1).ok_or("--node PORT BROKER")?.parse()?;
        return run_node(port, args.get(2).map_or("local", String::as_str));
    }
    let value = |name: &str, default: u64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let secs = value("--secs", 3);
    let subs = usize::try_from(value("--subs", 1000))?;

    let redis_port = free_port();
    let redis = Process::spawn(
        Command::new(find("redis-server").ok_or("redis-server not found")?).args([
            "--bind",
            "127.0.0.1",
            "--port",
            &redis_port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ]),
    )?;
    let nats_port = free_port();
    let nats = Process::spawn(
        Command::new(find("nats-server").ok_or("nats-server not found")?).args([
            "-a",
            "127.0.0.1",
            "-p",
            &nats_port.to_string(),
        ]),
    )?;
    wait_port(redis_port)?;
    wait_port(nats_port)?;
    let redis = (redis, format!("redis://127.0.0.1:{redis_port}"));
    let nats = (nats, format!("nats://127.0.0.1:{nats_port}"));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    println!(
        "| server | subscribers | payload | deliveries per server CPU-s | broker CPU per delivery | broker CPU per message | p50 at 100 msg/s | p99 | RSS per subscriber |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|m| m.to_lowercase());
    for payload in [16, 128] {
        for mode in [Mode::OneProcess, Mode::Redis, Mode::Nats] {
            let name = format!("{mode:?}").to_lowercase();
            if only.as_ref().is_some_and(|only| *only != name) {
                continue;
            }
            let cell = Cell {
                mode,
                subs,
                payload,
            };
            let figures = runtime.block_on(run_cell(&cell, secs, &redis, &nats))?;
            report(&cell, &figures);
        }
    }
    Ok(())
}
