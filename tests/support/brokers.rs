//! Real `redis-server` and `nats-server` processes for the cluster tests.
//!
//! `.ci/run` starts one of each and exports `TOWER_WS_REDIS_URL` and `TOWER_WS_NATS_URL`;
//! tests that only need a broker use those ([`shared_redis`], [`shared_nats`]), each under its
//! own key prefix. Tests that kill and restart a broker start their own ([`Server`]). Without
//! the URLs a test starts a private server when the binary is installed; without the binary it
//! skips with a message, except in CI (`CI=true`), where it fails.
#![allow(missing_docs, missing_debug_implementations, reason = "test helpers")]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Which broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Redis,
    Nats,
}

impl Kind {
    fn binary(self) -> &'static str {
        match self {
            Kind::Redis => "redis-server",
            Kind::Nats => "nats-server",
        }
    }

    fn url_var(self) -> &'static str {
        match self {
            Kind::Redis => "TOWER_WS_REDIS_URL",
            Kind::Nats => "TOWER_WS_NATS_URL",
        }
    }
}

/// `binary` on the PATH or in the sbin directories Debian puts `nats-server` in.
fn find(binary: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([
            "/usr/sbin".into(),
            "/usr/local/sbin".into(),
            "/usr/bin".into(),
        ])
        .map(|dir| dir.join(binary))
        .find(|candidate| candidate.is_file())
}

/// What to do when a broker is missing: fail in CI, skip by hand.
fn missing(what: &str) {
    let message = format!(
        "{what} not found: install Debian's redis-server and nats-server (.ci/run does), \
         or set TOWER_WS_REDIS_URL / TOWER_WS_NATS_URL"
    );
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI: {message}"
    );
    eprintln!("SKIPPED: {message}");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A broker process this test owns: killed when dropped.
pub struct Server {
    kind: Kind,
    binary: PathBuf,
    port: u16,
    dir: PathBuf,
    persistent: bool,
    child: Option<Child>,
}

impl Server {
    /// Starts a private `kind` server; `None` (after the skip message) when the binary is
    /// missing. `persistent` (Redis): an append-only file synced on every write, so a killed
    /// server comes back with every acknowledged message.
    pub fn start(kind: Kind, persistent: bool) -> Option<Server> {
        static N: AtomicU64 = AtomicU64::new(0);
        let Some(binary) = find(kind.binary()) else {
            missing(kind.binary());
            return None;
        };
        let dir = std::env::temp_dir().join(format!(
            "tower-ws-{}-{}-{}",
            kind.binary(),
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = Server {
            kind,
            binary,
            port: free_port(),
            dir,
            persistent,
            child: None,
        };
        server.restart();
        Some(server)
    }

    pub fn url(&self) -> String {
        match self.kind {
            Kind::Redis => format!("redis://127.0.0.1:{}", self.port),
            Kind::Nats => format!("nats://127.0.0.1:{}", self.port),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Kills the server at once (SIGKILL): no shutdown, no final save.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it (again) on the same port and directory, and waits until it accepts.
    pub fn restart(&mut self) {
        self.kill();
        let port = self.port.to_string();
        let mut command = Command::new(&self.binary);
        match self.kind {
            Kind::Redis => {
                command.args(["--bind", "127.0.0.1", "--port", &port, "--save", ""]);
                command.arg("--dir").arg(&self.dir);
                if self.persistent {
                    command.args(["--appendonly", "yes", "--appendfsync", "always"]);
                } else {
                    command.args(["--appendonly", "no"]);
                }
            }
            Kind::Nats => {
                command.args(["-a", "127.0.0.1", "-p", &port]);
            }
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.binary.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(self.addr()).is_err() {
            assert!(
                Instant::now() < deadline,
                "{} did not start",
                self.kind.binary()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A broker for tests that do not kill it: CI's, or a private one.
pub enum Shared {
    Url(String),
    Private(Server),
}

impl Shared {
    pub fn url(&self) -> String {
        match self {
            Shared::Url(url) => url.clone(),
            Shared::Private(server) => server.url(),
        }
    }
}

fn shared(kind: Kind) -> Option<Shared> {
    if let Ok(url) = std::env::var(kind.url_var()) {
        return Some(Shared::Url(url));
    }
    Server::start(kind, false).map(Shared::Private)
}

/// CI's Redis, or a private one; `None`: skip.
pub fn shared_redis() -> Option<Shared> {
    shared(Kind::Redis)
}

/// CI's NATS, or a private one; `None`: skip.
pub fn shared_nats() -> Option<Shared> {
    shared(Kind::Nats)
}

/// A key prefix no other test run uses, so tests can share one broker.
pub fn unique_prefix(test: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "t-{test}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
