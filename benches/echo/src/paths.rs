//! The `paths` command: the same tower-ws server (hyper-util's auto builder, as
//! `examples/echo_server.rs` serves) driven over HTTP/1.1 and over HTTP/2 (RFC 8441 extended
//! CONNECT, one HTTP/2 connection per WebSocket), cell by cell, to show what the HTTP/2 path
//! costs: messages per server CPU-second and round-trip p50/p99 side by side, each as a ratio
//! to HTTP/1.1.

use std::fmt::Write as _;
use std::time::Duration;

use crate::load::{self, Spec, Until};
use crate::matrix::{Entry, RunResult, Timing};
use crate::process::ServerProcess;
use crate::report::{self, EchoSummary};
use crate::{Cores, Failure, h2, servers};

/// One cell: sockets, message size, messages in flight per socket (binary messages).
#[derive(Debug)]
pub(crate) struct Cell {
    pub(crate) id: &'static str,
    conns: usize,
    size: usize,
    in_flight: usize,
}

impl Cell {
    fn title(&self) -> String {
        let size = match self.size {
            s if s >= 1 << 10 => format!("{} KiB", s >> 10),
            s => format!("{s} B"),
        };
        let sockets = if self.conns == 1 { "socket" } else { "sockets" };
        format!(
            "{} {sockets} x {size} x {} in flight",
            self.conns, self.in_flight
        )
    }
}

const fn cell(id: &'static str, conns: usize, size: usize, in_flight: usize) -> Cell {
    Cell {
        id,
        conns,
        size,
        in_flight,
    }
}

/// One socket and 64; 16 B, 1 KiB and 64 KiB; 1 and 16 messages in flight.
pub(crate) const CELLS: &[Cell] = &[
    cell("1-16-1", 1, 16, 1),
    cell("1-16-16", 1, 16, 16),
    cell("1-1k-1", 1, 1 << 10, 1),
    cell("1-1k-16", 1, 1 << 10, 16),
    cell("1-64k-1", 1, 64 << 10, 1),
    cell("1-64k-16", 1, 64 << 10, 16),
    cell("64-16-1", 64, 16, 1),
    cell("64-16-16", 64, 16, 16),
    cell("64-1k-1", 64, 1 << 10, 1),
    cell("64-1k-16", 64, 1 << 10, 16),
    cell("64-64k-1", 64, 64 << 10, 1),
    cell("64-64k-16", 64, 64 << 10, 16),
];

/// How the load generator reaches a server.
#[derive(Debug)]
pub(crate) struct Path {
    pub(crate) id: &'static str,
    label: &'static str,
    /// The server process (`servers::PATHS`).
    server: &'static str,
    /// Over HTTP/2: the largest DATA frame the load generator accepts (its
    /// `SETTINGS_MAX_FRAME_SIZE`), so the largest the server sends.
    http2: Option<u32>,
}

/// HTTP/1.1 first: the others are compared with it.
pub(crate) const PATHS: &[Path] = &[
    Path {
        id: "h1",
        label: "HTTP/1.1",
        server: "tower-ws-auto",
        http2: None,
    },
    Path {
        id: "h2",
        label: "HTTP/2",
        server: "tower-ws-auto",
        http2: Some(h2::DEFAULT_MAX_FRAME),
    },
    Path {
        id: "h2-wide",
        label: "HTTP/2, wide windows",
        server: "tower-ws-auto-wide",
        http2: Some(h2::DEFAULT_MAX_FRAME),
    },
    // Not what browsers do (they keep the default 16 KiB): shows what h2's one system call per
    // DATA frame costs the server when a whole burst fits in one frame.
    Path {
        id: "h2-wide-frames",
        label: "HTTP/2, wide windows, 1 MiB frames to the client",
        server: "tower-ws-auto-wide",
        http2: Some(1 << 20),
    },
];

/// Each cell with each path's runs.
pub(crate) type Results = Vec<(&'static Cell, Vec<(&'static Path, Entry)>)>;

/// One run: a fresh server process, the load over `path`, the process stopped.
fn run_one(
    runtime: &tokio::runtime::Runtime,
    path: &Path,
    cell: &Cell,
    timing: &Timing,
    cores: Cores,
) -> RunResult {
    let attempt = || -> Result<RunResult, Failure> {
        let process =
            ServerProcess::start(path.server, cores.server, &[], Duration::from_secs(10))?;
        let (addr, pid) = (process.addr, process.pid());
        let spec = Spec {
            conns: cell.conns,
            in_flight: cell.in_flight,
            size: cell.size,
            text: false,
            until: Until::Time {
                warmup: timing.warmup,
                window: timing.window,
            },
            raw: false,
        };
        let outcome = runtime.block_on(async {
            if let Some(max_frame) = path.http2 {
                let conns = h2::connect_all(addr, cell.conns, 64, max_frame).await?;
                load::drive(conns, pid, spec).await
            } else {
                load::run(addr, pid, spec).await
            }
        })?;
        process.stop(Duration::from_secs(5))?;
        Ok(RunResult::Echo(outcome))
    };
    attempt().unwrap_or_else(|e| RunResult::Failed(e.to_string()))
}

/// Every cell over every path, `timing.rounds` times, the path order reversed every other
/// round; `progress` after each run. Returns, per cell, each path's runs.
pub(crate) fn run(
    runtime: &tokio::runtime::Runtime,
    cells: &[&'static Cell],
    paths: &[&'static Path],
    timing: &Timing,
    cores: Cores,
    mut progress: impl FnMut(&Cell, usize, &Path, &RunResult),
) -> Result<Results, Failure> {
    let mut results = Vec::new();
    for &cell in cells {
        let mut entries = Vec::new();
        for &path in paths {
            let server = servers::find(path.server)?;
            entries.push((
                path,
                Entry {
                    server,
                    runs: Vec::new(),
                },
            ));
        }
        for round in 0..timing.rounds {
            let mut order: Vec<usize> = (0..entries.len()).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for i in order {
                let path = entries[i].0;
                let result = run_one(runtime, path, cell, timing, cores);
                progress(cell, round, path, &result);
                entries[i].1.runs.push(result);
            }
        }
        results.push((cell, entries));
    }
    Ok(results)
}

/// Roughly how long the runs take, for the progress header.
pub(crate) fn estimate(cells: usize, paths: usize, timing: &Timing) -> Duration {
    (timing.warmup + timing.window + Duration::from_millis(600))
        * u32::try_from(cells * paths * timing.rounds).unwrap_or(u32::MAX)
}

fn ratio(x: Option<f64>, of: Option<f64>) -> String {
    match (x, of) {
        (Some(x), Some(of)) if of > 0.0 => format!("{:.2}x", x / of),
        _ => "-".into(),
    }
}

fn secs(d: Option<Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64())
}

/// The table: one row per cell and path, ratios to the cell's HTTP/1.1 row; then the worst
/// ratio of each path over all cells.
pub(crate) fn markdown(results: &Results) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| cell | path | msgs/s | p50 | p50 x HTTP/1.1 | p99 | p99 x HTTP/1.1 | server CPU | load gen CPU | msgs per server CPU-s | spread | x HTTP/1.1 |"
    );
    let _ = writeln!(
        out,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    // Per path: the worst p50 and CPU ratios, with their cells, and the largest p99.
    let mut worst: Vec<(f64, &str, f64, &str, Duration)> = Vec::new();
    for (cell, entries) in results {
        let summaries: Vec<(&Path, Result<EchoSummary, String>)> = entries
            .iter()
            .map(|(path, entry)| (*path, report::summarize_echo(entry)))
            .collect();
        let base = summaries.first().and_then(|(_, s)| s.as_ref().ok());
        for (i, (path, summary)) in summaries.iter().enumerate() {
            let title = if i == 0 { cell.title() } else { String::new() };
            let s = match summary {
                Ok(s) => s,
                Err(e) => {
                    let _ = writeln!(
                        out,
                        "| {title} | {} | FAILED: {} | | | | | | | | | |",
                        path.label,
                        e.replace('|', "/")
                    );
                    continue;
                }
            };
            let _ = writeln!(
                out,
                "| {title} | {} | {} | {} | {} | {} | {} | {:.0}% | {:.0}% | {} | ±{:.0}% | {} |",
                path.label,
                report::si(s.rate),
                report::micros(s.p50),
                ratio(secs(s.p50), base.and_then(|b| secs(b.p50))),
                report::micros(s.p99),
                ratio(secs(s.p99), base.and_then(|b| secs(b.p99))),
                s.cpu_share * 100.0,
                s.client_share * 100.0,
                report::si(s.per_cpu_second),
                s.spread * 100.0,
                ratio(Some(s.per_cpu_second), base.map(|b| b.per_cpu_second)),
            );
            if worst.len() <= i {
                worst.push((0.0, "", f64::MAX, "", Duration::ZERO));
            }
            if let Some(b) = base {
                let w = &mut worst[i];
                if let (Some(p50), Some(b50)) = (secs(s.p50), secs(b.p50))
                    && p50 / b50 > w.0
                {
                    (w.0, w.1) = (p50 / b50, cell.id);
                }
                let cpu = s.per_cpu_second / b.per_cpu_second.max(1e-9);
                if cpu < w.2 {
                    (w.2, w.3) = (cpu, cell.id);
                }
                w.4 = w.4.max(s.p99.unwrap_or_default());
            }
        }
    }
    let _ = writeln!(out);
    let labels: Vec<&str> = results
        .first()
        .map(|(_, entries)| entries.iter().map(|(p, _)| p.label).collect())
        .unwrap_or_default();
    for (i, w) in worst.iter().enumerate().skip(1) {
        let _ = writeln!(
            out,
            "{}: worst p50 {:.2}x HTTP/1.1 ({}), worst msgs per server CPU-s {:.2}x HTTP/1.1 ({}), \
             largest p99 {}.",
            labels.get(i).unwrap_or(&"?"),
            w.0,
            w.1,
            w.2,
            w.3,
            report::micros(Some(w.4)),
        );
    }
    out
}
