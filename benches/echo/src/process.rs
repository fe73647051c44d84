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

    /// The server's process id (the wrapper's, which runs the server in-process).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Asks the server to exit (closes its stdin) and waits up to `within` before killing it.
    pub(crate) fn stop(mut self, within: Duration) -> Result<(), Failure> {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return if status.success() {
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
