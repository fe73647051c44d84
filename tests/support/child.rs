//! An echo server in a child process, for the tests that measure the server's memory over
//! thousands of connections (`scale.rs`, `soak.rs`).
//!
//! The test binary runs itself again, with [`ROLE_VAR`] set, for the one test that asked; that
//! run calls [`serve`] instead of testing. So the server's RSS holds no client, and each process
//! needs one file descriptor per connection instead of two (10,000 sockets fit the usual 20,000
//! descriptor limit without raising it). The child serves like the examples: hyper-util's auto
//! builder with upgrades, and the layer with an echo handler that counts what it sees. It
//! answers `stats` on its stdin with one `STATS` line and exits on `exit` or when stdin closes
//! (the test ended or died), so no server outlives its test.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpListener;
use tokio::process::{Child, ChildStdin, ChildStdout};
use tower::ServiceBuilder;
use tower_ws::{Config, ErrorKind, Session, UpgradeLayer, handler_fn};

/// Set in the child's environment: the child serves instead of testing.
pub const ROLE_VAR: &str = "TOWER_WS_TEST_CHILD_SERVER";

/// Whether this process is a child server.
pub fn is_child() -> bool {
    std::env::var_os(ROLE_VAR).is_some()
}

/// What the child server counted, with its own RSS.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// `VmRSS` of the server process, KiB.
    pub rss_kib: u64,
    /// Sessions whose handler is running.
    pub active: u64,
    /// Sessions started.
    pub sessions: u64,
    /// Messages echoed.
    pub messages: u64,
    /// Payload bytes echoed.
    pub bytes: u64,
    /// Handlers whose stream ended cleanly (close handshake).
    pub clean: u64,
    /// Handlers whose stream ended with an I/O error (reset, end of stream without a close).
    pub io_errors: u64,
    /// Handlers that ended with any other error (each is also printed on the child's stderr).
    pub other_errors: u64,
}

#[derive(Debug, Default)]
struct Counters {
    sessions: AtomicU64,
    messages: AtomicU64,
    bytes: AtomicU64,
    clean: AtomicU64,
    io_errors: AtomicU64,
    other_errors: AtomicU64,
}

/// A child server process, killed when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl ServerProcess {
    /// Starts the child for `test`, the calling test's name as libtest knows it (the function
    /// name, for a test at the top of its file). That test must call [`serve`] when
    /// [`is_child`].
    pub async fn spawn(test: &str) -> Self {
        let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
            .args([test, "--exact", "--include-ignored", "--nocapture"])
            .env(ROLE_VAR, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start the child server");
        let stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let line = lines
                    .next_line()
                    .await
                    .unwrap()
                    .expect("child server exited");
                if let Some(addr) = line.strip_prefix("ADDR ") {
                    return addr.parse().unwrap();
                }
            }
        })
        .await
        .expect("child server did not start");
        Self {
            child,
            stdin,
            lines,
            addr,
        }
    }

    /// The child's counters and RSS, now.
    pub async fn stats(&mut self) -> Stats {
        self.stdin.write_all(b"stats\n").await.unwrap();
        let line = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let line = self.lines.next_line().await.unwrap().expect("child exited");
                if let Some(stats) = line.strip_prefix("STATS ") {
                    return stats.to_owned();
                }
            }
        })
        .await
        .expect("child server did not answer");
        let mut stats = Stats::default();
        for pair in line.split(' ') {
            let (key, value) = pair.split_once('=').unwrap();
            let value = value.parse().unwrap();
            match key {
                "rss_kib" => stats.rss_kib = value,
                "active" => stats.active = value,
                "sessions" => stats.sessions = value,
                "messages" => stats.messages = value,
                "bytes" => stats.bytes = value,
                "clean" => stats.clean = value,
                "io_errors" => stats.io_errors = value,
                "other_errors" => stats.other_errors = value,
                other => panic!("unknown stat {other}"),
            }
        }
        stats
    }

    /// Polls the stats until `done` holds (at most `secs` seconds), and returns them.
    pub async fn wait_for(&mut self, secs: u64, done: impl Fn(&Stats) -> bool) -> Stats {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let stats = self.stats().await;
            if done(&stats) {
                return stats;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "child server never reached the expected state: {stats:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Asks the child to exit and waits for it; fails if it did not exit cleanly.
    pub async fn exit(mut self) {
        self.stdin.write_all(b"exit\n").await.unwrap();
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("child server did not exit")
            .unwrap();
        assert!(status.success(), "child server: {status}");
    }
}

/// `VmRSS` of process `pid` (`"self"` for this one), in KiB.
pub fn rss_kib(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

/// The soft limit on open files (`Max open files` in `/proc/self/limits`).
pub fn open_files_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

/// The child's side: serves the echo until told to exit. `config` is the engine configuration
/// of every session.
pub async fn serve(config: Config) {
    let counters = Arc::new(Counters::default());
    let seen = Arc::clone(&counters);
    let echo = handler_fn(move |Session { mut socket, .. }| {
        let counters = Arc::clone(&seen);
        async move {
            counters.sessions.fetch_add(1, Ordering::Relaxed);
            let ended = loop {
                match socket.recv().await {
                    None => break Ok(()),
                    Some(Err(error)) => break Err(error),
                    Some(Ok(message)) if message.is_text() || message.is_binary() => {
                        let len = message.as_payload().len() as u64;
                        if let Err(error) = socket.send(message).await {
                            break Err(error);
                        }
                        counters.messages.fetch_add(1, Ordering::Relaxed);
                        counters.bytes.fetch_add(len, Ordering::Relaxed);
                    }
                    Some(Ok(_)) => {}
                }
            };
            match ended {
                Ok(()) => counters.clean.fetch_add(1, Ordering::Relaxed),
                Err(error) if error.kind() == ErrorKind::Io => {
                    counters.io_errors.fetch_add(1, Ordering::Relaxed)
                }
                Err(error) => {
                    eprintln!("child server: session failed: {error}");
                    counters.other_errors.fetch_add(1, Ordering::Relaxed)
                }
            };
        }
    });
    let layer = UpgradeLayer::new(echo).config(config);
    let sessions = layer.shutdown_handle();
    let app = ServiceBuilder::new().layer(layer).service(super::inner());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("ADDR {}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        // As the examples configure it.
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10));
        builder.http2().enable_connect_protocol();
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(error) => {
                    eprintln!("child server: accept: {error}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let (builder, service) = (builder.clone(), TowerToHyperService::new(app.clone()));
            tokio::spawn(async move {
                let _ = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let mut commands = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(command)) = commands.next_line().await {
        match command.as_str() {
            "stats" => {
                let c = &counters;
                println!(
                    "STATS rss_kib={} active={} sessions={} messages={} bytes={} clean={} \
                     io_errors={} other_errors={}",
                    rss_kib("self"),
                    sessions.active(),
                    c.sessions.load(Ordering::Relaxed),
                    c.messages.load(Ordering::Relaxed),
                    c.bytes.load(Ordering::Relaxed),
                    c.clean.load(Ordering::Relaxed),
                    c.io_errors.load(Ordering::Relaxed),
                    c.other_errors.load(Ordering::Relaxed),
                );
            }
            "exit" => break,
            other => panic!("child server: unknown command {other:?}"),
        }
    }
}
