//! The matrix: which cells run, how long, in which order, and collecting their results.

use std::time::Duration;

use crate::load::{self, IdleOutcome, Outcome, Spec, Until};
use crate::process::ServerProcess;
use crate::servers::{Kind, Server};
use crate::{Cores, Failure};

/// What a cell measures.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Workload {
    /// Echo traffic.
    Echo {
        conns: usize,
        in_flight: usize,
        size: usize,
        text: bool,
    },
    /// Resident memory per open, idle socket.
    Idle,
}

/// One row group of the results table.
#[derive(Debug)]
pub(crate) struct Cell {
    /// Short name for `--cells`.
    pub(crate) id: &'static str,
    pub(crate) title: &'static str,
    pub(crate) workload: Workload,
}

const fn echo(conns: usize, in_flight: usize, size: usize, text: bool) -> Workload {
    Workload::Echo {
        conns,
        in_flight,
        size,
        text,
    }
}

/// Every cell, in table order.
pub(crate) const CELLS: &[Cell] = &[
    Cell {
        id: "10x1k",
        title: "10 connections x 1 KiB",
        workload: echo(10, 1, 1 << 10, false),
    },
    Cell {
        id: "100x20",
        title: "100 connections x 20 B",
        workload: echo(100, 1, 20, false),
    },
    Cell {
        id: "200x16k",
        title: "200 connections x 16 KiB",
        workload: echo(200, 1, 16 << 10, false),
    },
    Cell {
        id: "500x16k",
        title: "500 connections x 16 KiB",
        workload: echo(500, 1, 16 << 10, false),
    },
    Cell {
        id: "pipe16",
        title: "pipelined: 64 connections x 16 in flight x 16 B",
        workload: echo(64, 16, 16, false),
    },
    Cell {
        id: "pipe1k",
        title: "pipelined: 64 connections x 16 in flight x 1 KiB",
        workload: echo(64, 16, 1 << 10, false),
    },
    Cell {
        id: "64k",
        title: "large: 10 connections x 64 KiB",
        workload: echo(10, 1, 64 << 10, false),
    },
    Cell {
        id: "1m",
        title: "large: 10 connections x 1 MiB",
        workload: echo(10, 1, 1 << 20, false),
    },
    Cell {
        id: "text64k",
        title: "long text: 10 connections x 64 KiB (UTF-8 validated)",
        workload: echo(10, 1, 64 << 10, true),
    },
    // The cells of issue 12, against uWebSockets: small frames on one and 64 connections, one
    // and 16 in flight, and large messages on 64 connections.
    Cell {
        id: "1x16b",
        title: "1 connection x 16 B",
        workload: echo(1, 1, 16, false),
    },
    Cell {
        id: "1x16x16b",
        title: "pipelined: 1 connection x 16 in flight x 16 B",
        workload: echo(1, 16, 16, false),
    },
    Cell {
        id: "64x16b",
        title: "64 connections x 16 B",
        workload: echo(64, 1, 16, false),
    },
    Cell {
        id: "1x16x1k",
        title: "pipelined: 1 connection x 16 in flight x 1 KiB",
        workload: echo(1, 16, 1 << 10, false),
    },
    Cell {
        id: "64x1k",
        title: "64 connections x 1 KiB",
        workload: echo(64, 1, 1 << 10, false),
    },
    Cell {
        id: "64x64k",
        title: "large: 64 connections x 64 KiB",
        workload: echo(64, 1, 64 << 10, false),
    },
    Cell {
        id: "64x1m",
        title: "large: 64 connections x 1 MiB",
        workload: echo(64, 1, 1 << 20, false),
    },
    Cell {
        id: "idle",
        title: "idle memory: RSS per open idle socket",
        workload: Workload::Idle,
    },
];

/// How long and how often cells run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub(crate) warmup: Duration,
    pub(crate) window: Duration,
    pub(crate) rounds: usize,
    pub(crate) idle_sockets: usize,
}

impl Timing {
    pub(crate) const FULL: Self = Self {
        warmup: Duration::from_secs(1),
        window: Duration::from_secs(4),
        rounds: 3,
        idle_sockets: 10_000,
    };

    pub(crate) const QUICK: Self = Self {
        warmup: Duration::from_millis(300),
        window: Duration::from_secs(1),
        rounds: 2,
        idle_sockets: 10_000,
    };
}

/// One run's result.
#[derive(Debug, Clone)]
pub(crate) enum RunResult {
    Echo(Outcome),
    Idle(IdleOutcome),
    Failed(String),
}

/// All runs of one server in one cell.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) server: &'static Server,
    pub(crate) runs: Vec<RunResult>,
}

/// All entries of one cell.
#[derive(Debug)]
pub(crate) struct CellResults {
    pub(crate) cell: &'static Cell,
    pub(crate) entries: Vec<Entry>,
}

/// Runs one server in one cell: its own fresh process, the load, then the process is stopped.
pub(crate) fn run_one(
    runtime: &tokio::runtime::Runtime,
    server: &Server,
    workload: Workload,
    timing: &Timing,
    cores: Cores,
) -> RunResult {
    let attempt = || -> Result<RunResult, Failure> {
        let process =
            ServerProcess::start(server.name, cores.server, &[], Duration::from_secs(10))?;
        let addr = process.addr;
        let pid = process.pid();
        let result = match workload {
            Workload::Echo {
                conns,
                in_flight,
                size,
                text,
            } => {
                let spec = Spec {
                    conns,
                    in_flight,
                    size,
                    text,
                    until: Until::Time {
                        warmup: timing.warmup,
                        window: timing.window,
                    },
                    raw: server.kind == Kind::Raw,
                };
                RunResult::Echo(runtime.block_on(load::run(addr, pid, spec))?)
            }
            Workload::Idle => RunResult::Idle(runtime.block_on(load::idle(
                addr,
                pid,
                timing.idle_sockets,
                server.kind == Kind::Raw,
            ))?),
        };
        process.stop(Duration::from_secs(5))?;
        Ok(result)
    };
    attempt().unwrap_or_else(|e| RunResult::Failed(e.to_string()))
}

/// Runs `cells` for `servers`, each cell `timing.rounds` times with the server order reversed
/// every other round, calling `progress` after each run.
pub(crate) fn run(
    runtime: &tokio::runtime::Runtime,
    cells: &[&'static Cell],
    servers: &[&'static Server],
    timing: &Timing,
    cores: Cores,
    mut progress: impl FnMut(&Cell, usize, &Server, &RunResult),
) -> Vec<CellResults> {
    let mut results = Vec::new();
    for &cell in cells {
        let mut entries: Vec<Entry> = servers
            .iter()
            .map(|&server| Entry {
                server,
                runs: Vec::new(),
            })
            .collect();
        for round in 0..timing.rounds {
            let order: Vec<usize> = if round % 2 == 0 {
                (0..servers.len()).collect()
            } else {
                (0..servers.len()).rev().collect()
            };
            for i in order {
                let result = run_one(runtime, entries[i].server, cell.workload, timing, cores);
                progress(cell, round, entries[i].server, &result);
                entries[i].runs.push(result);
            }
        }
        results.push(CellResults { cell, entries });
    }
    results
}

/// Roughly how long `cells` x `servers` take with `timing`, for the progress header.
pub(crate) fn estimate(cells: &[&Cell], servers: usize, timing: &Timing) -> Duration {
    let per_run: Duration = cells
        .iter()
        .map(|c| match c.workload {
            Workload::Echo { .. } => timing.warmup + timing.window + Duration::from_millis(400),
            Workload::Idle => Duration::from_secs(3),
        })
        .sum();
    per_run * u32::try_from(servers * timing.rounds).unwrap_or(u32::MAX)
}
