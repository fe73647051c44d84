//! Server processes: the bench binary re-executes itself as `serve <server> <addr>`, one server
//! per process, so each has a fresh heap and its own CPU and memory figures in `/proc`.
//!
//! The child reports its listening address on stdout and exits when its stdin closes, so a
//! server never outlives the harness, even when the harness itself is killed.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::{Failure, servers, sys};

/// A running server process; killed when dropped.
#[derive(Debug)]
pub(crate) struct ServerProcess {
    child: Child,
    pub(crate) addr: SocketAddr,
    /// A binary of its own (uWebSockets), stopped with `SIGTERM` rather than by closing stdin.
    external: bool,
}

impl ServerProcess {
    /// Starts server `name` pinned to `core`, optionally under a wrapper command (such as
    /// valgrind), and waits until it listens.
    pub(crate) fn start(
        name: &str,
        core: usize,
        wrapper: &[String],
        ready_within: Duration,
    ) -> Result<Self, Failure> {
        if name == servers::uws::NAME {
            return Self::start_uws(core, wrapper, ready_within);
        }
        let exe = std::env::current_exe()?;
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        command
            .args(["serve", name, "127.0.0.1:0", "--core", &core.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command.spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| Failure::new("no stdout"))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut process = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            external: false,
        };
        let line = rx.recv_timeout(ready_within).map_err(|_| {
            Failure::new(format!(
                "server {name} did not start within {ready_within:?}"
            ))
        })?;
        process.addr = line.trim().parse().map_err(|_| {
            Failure::new(format!(
                "server {name} printed {line:?} instead of its address"
            ))
        })?;
        Ok(process)
    }

    /// Starts the uWebSockets binary on a free port, pins it to `core` (it runs one thread),
    /// and waits for its `listening on` line.
    fn start_uws(core: usize, wrapper: &[String], ready_within: Duration) -> Result<Self, Failure> {
        let binary = servers::uws::binary().ok_or_else(|| {
            Failure::new("no uWebSockets binary: pass --uws PATH or set ECHO_BENCH_UWS")
        })?;
        // A port the kernel just handed out and nobody holds: free for the binary to bind.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&binary);
                c
            }
            None => Command::new(&binary),
        };
        command
            .args(servers::uws::args(port))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command
            .spawn()
            .map_err(|e| Failure::new(format!("starting {}: {e}", binary.display())))?;
        // Before it accepts anything; valgrind runs its guest on this same process.
        sys::pin_process(child.id(), core)?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| Failure::new("no stdout"))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let ready = lines.any(|l| l.is_ok_and(|l| servers::uws::is_ready_line(&l)));
            let _ = tx.send(ready);
            // Keep draining, so that the binary never blocks on a full pipe.
            lines.for_each(drop);
        });
        let process = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            external: true,
        };
        match rx.recv_timeout(ready_within) {
            Ok(true) => Ok(process),
            _ => Err(Failure::new(format!(
                "uWebSockets ({}) did not report listening on port {port} within {ready_within:?}",
                binary.display()
            ))),
        }
    }

    /// The server's process id (the wrapper's, which runs the server in-process).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Asks the server to exit (closes its stdin) and waits up to `within` before killing it.
    pub(crate) fn stop(mut self, within: Duration) -> Result<(), Failure> {
        drop(self.child.stdin.take());
        if self.external {
            // Under a wrapper that forks (perf stat), the server is the wrapper's child: stop it,
            // and the wrapper exits with it, writing its counts. Under valgrind, or alone, the
            // server is the process itself.
            let children = sys::children(self.child.id());
            if children.is_empty() {
                sys::terminate(self.child.id())?;
            }
            for pid in children {
                sys::terminate(pid)?;
            }
        }
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                // SIGTERM is how an external server is told to stop.
                return if status.success() || self.external {
                    Ok(())
                } else {
                    Err(Failure::new(format!("server exited with {status}")))
                };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(Failure::new(format!(
            "server did not exit within {within:?}; killed"
        )))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The `serve` subcommand: runs server `name` on a current-thread runtime pinned to `core`,
/// prints the bound address, and exits when stdin closes.
pub(crate) fn serve(name: &str, addr: &str, core: Option<usize>) -> Result<(), Failure> {
    let server = servers::find(name)?;
    if let Some(core) = core {
        sys::pin_to_core(core)?;
    }
    sys::raise_nofile_limit()?;
    // The harness closes our stdin to stop us (or dies, which closes it too).
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let mut stdout = std::io::stdout();
        writeln!(stdout, "{}", listener.local_addr()?)?;
        stdout.flush()?;
        (server.run)(listener).await?;
        Ok(())
    })
}
