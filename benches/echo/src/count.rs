//! Instructions per echoed message, counted by `valgrind --tool=callgrind` on the server
//! process: a count, not a time, so it repeats on a busy machine and shows regressions that
//! the noise of a shared 2-core box hides.
//!
//! Each scenario runs twice per server, with `m1` and then `m2` messages on one connection,
//! every burst of messages written at once and the next sent only when all are echoed (so the
//! server's reads and writes are the same on every run). Startup, handshake and shutdown are
//! the same in both runs, so `(Ir(m2) - Ir(m1)) / (m2 - m1)` is the cost of one echo.
//!
//! Note: valgrind 3.19 emulates no AVX-512, so libraries that detect CPU features at run time
//! take their AVX2 (or SSE2) paths under it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::h2;
use crate::load::{self, Spec, Until};
use crate::process::ServerProcess;
use crate::servers::{Kind, Server};
use crate::{Cores, Failure};

/// One fixed workload.
#[derive(Debug)]
pub(crate) struct Scenario {
    pub(crate) id: &'static str,
    pub(crate) title: &'static str,
    burst: usize,
    size: usize,
    text: bool,
    m1: u64,
    m2: u64,
}

/// Every scenario, in table order.
pub(crate) const SCENARIOS: &[Scenario] = &[
    Scenario {
        id: "1k",
        title: "1 KiB",
        burst: 1,
        size: 1 << 10,
        text: false,
        m1: 200,
        m2: 2200,
    },
    Scenario {
        id: "16x16",
        title: "16 B, bursts of 16",
        burst: 16,
        size: 16,
        text: false,
        m1: 320,
        m2: 3520,
    },
    Scenario {
        id: "16x1k",
        title: "1 KiB, bursts of 16",
        burst: 16,
        size: 1 << 10,
        text: false,
        m1: 320,
        m2: 3520,
    },
    Scenario {
        id: "64k",
        title: "64 KiB",
        burst: 1,
        size: 64 << 10,
        text: false,
        m1: 20,
        m2: 220,
    },
    Scenario {
        id: "text64k",
        title: "64 KiB text",
        burst: 1,
        size: 64 << 10,
        text: true,
        m1: 20,
        m2: 220,
    },
];

/// Callgrind's total instruction count (`Ir`) from its output file.
fn total_ir(path: &Path) -> Result<u64, Failure> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .filter_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .next_back()
        .ok_or_else(|| Failure::new(format!("no totals in {}", path.display())))
}

/// What a counted run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tool {
    /// User-space instructions, under `valgrind --tool=callgrind`.
    Instructions,
    /// System calls that read or write the sockets, under `perf stat` (`SYSCALLS`).
    Syscalls,
}

/// How the load generator reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    /// An HTTP/1.1 upgrade (every server).
    Http1,
    /// An HTTP/2 extended CONNECT stream over h2c (RFC 8441), one connection per WebSocket,
    /// DATA frames of up to 16 KiB toward the client (servers built on hyper-util's auto
    /// builder: `tower-ws-auto`, `tower-ws-auto-wide`).
    Http2,
}

impl Via {
    /// What the output files of a run over this path are marked with.
    fn tag(self) -> &'static str {
        match self {
            Self::Http1 => "",
            Self::Http2 => ".h2",
        }
    }
}

/// How a run is measured: with what, over which path, on which cores.
#[derive(Debug, Clone, Copy)]
struct Measure {
    tool: Tool,
    via: Via,
    cores: Cores,
}

/// The system calls `Tool::Syscalls` counts: tokio reads with `recv` (`recvfrom`), writes with
/// `send` (`sendto`) and vectored writes with `writev`.
pub(crate) const SYSCALLS: [&str; 5] = [
    "syscalls:sys_enter_recvfrom",
    "syscalls:sys_enter_sendto",
    "syscalls:sys_enter_writev",
    "syscalls:sys_enter_epoll_wait",
    "syscalls:sys_enter_epoll_pwait",
];

/// The counts `perf stat -x,` wrote to `path`, in `SYSCALLS` order.
fn perf_counts(path: &Path) -> Result<Vec<u64>, Failure> {
    let text = std::fs::read_to_string(path)?;
    SYSCALLS
        .iter()
        .map(|event| {
            text.lines()
                .find(|l| l.contains(event))
                .and_then(|l| l.split(',').next()?.trim().parse().ok())
                .ok_or_else(|| Failure::new(format!("no {event} count in {}", path.display())))
        })
        .collect()
}

/// What the server does in a run of `messages` messages of `scenario`: its instruction count,
/// or its counts of `SYSCALLS`.
fn count_run(
    runtime: &tokio::runtime::Runtime,
    server: &Server,
    scenario: &Scenario,
    messages: u64,
    dir: &Path,
    how: Measure,
) -> Result<Vec<u64>, Failure> {
    let Measure { tool, via, cores } = how;
    let (wrapper, out) = match tool {
        Tool::Instructions => {
            let out = dir.join(format!(
                "{}.{}{}.{messages}.callgrind",
                server.name,
                scenario.id,
                via.tag()
            ));
            let wrapper = vec![
                "valgrind".to_string(),
                "--tool=callgrind".to_string(),
                "-q".to_string(),
                format!("--callgrind-out-file={}", out.display()),
            ];
            (wrapper, out)
        }
        Tool::Syscalls => {
            let out = dir.join(format!(
                "{}.{}{}.{messages}.perf",
                server.name,
                scenario.id,
                via.tag()
            ));
            let mut wrapper: Vec<String> = ["perf", "stat", "-x,", "-o"].map(String::from).to_vec();
            wrapper.push(out.display().to_string());
            for event in SYSCALLS {
                wrapper.extend(["-e".to_string(), event.to_string()]);
            }
            wrapper.push("--".to_string());
            (wrapper, out)
        }
    };
    let process = ServerProcess::start(
        server.name,
        cores.server,
        &wrapper,
        Duration::from_secs(120),
    )?;
    let spec = Spec {
        conns: 1,
        in_flight: scenario.burst,
        size: scenario.size,
        text: scenario.text,
        until: Until::Count { messages },
        raw: server.kind == Kind::Raw,
    };
    let (addr, pid) = (process.addr, process.pid());
    let outcome = runtime.block_on(async {
        match via {
            Via::Http1 => load::run(addr, pid, spec).await,
            Via::Http2 => {
                let conns = h2::connect_all(addr, 1, 1, h2::DEFAULT_MAX_FRAME).await?;
                load::drive(conns, pid, spec).await
            }
        }
    })?;
    if outcome.messages != messages {
        return Err(Failure::new(format!(
            "{} echoes of {messages}",
            outcome.messages
        )));
    }
    process.stop(Duration::from_secs(120))?;
    match tool {
        Tool::Instructions => Ok(vec![total_ir(&out)?]),
        Tool::Syscalls => perf_counts(&out),
    }
}

/// System calls per echoed message (`SYSCALLS`, each as `(count(m2) - count(m1)) / (m2 - m1)`)
/// for every server and scenario, as a markdown table.
pub(crate) fn run_syscalls(
    runtime: &tokio::runtime::Runtime,
    servers: &[&'static Server],
    scenarios: &[&'static Scenario],
    dir: &Path,
    cores: Cores,
    via: Via,
) -> Result<String, Failure> {
    use std::fmt::Write as _;
    let how = Measure {
        tool: Tool::Syscalls,
        via,
        cores,
    };
    std::fs::create_dir_all(dir)?;
    let mut out = String::from(
        "System calls per echoed message: `recvfrom` / `sendto` / `writev` / `epoll_wait` / `epoll_pwait` (perf stat, the \
         difference of two runs over the difference of their message counts).\n\n| server |",
    );
    for s in scenarios {
        let _ = write!(out, " {} |", s.title);
    }
    let _ = write!(out, "\n|---|");
    for _ in scenarios {
        let _ = write!(out, "---:|");
    }
    out.push('\n');
    for &server in servers {
        let _ = write!(out, "| {} |", server.name);
        for &scenario in scenarios {
            let per_message =
                count_run(runtime, server, scenario, scenario.m1, dir, how).and_then(|c1| {
                    let c2 = count_run(runtime, server, scenario, scenario.m2, dir, how)?;
                    let n = crate::float(scenario.m2 - scenario.m1);
                    Ok(c1
                        .iter()
                        .zip(&c2)
                        .map(|(a, b)| format!("{:.3}", crate::float(b.saturating_sub(*a)) / n))
                        .collect::<Vec<_>>()
                        .join(" / "))
                });
            let cell = per_message.unwrap_or_else(|e| format!("FAILED: {e}"));
            eprintln!("  {:<18} {:<20} {cell}", server.name, scenario.title);
            let _ = write!(out, " {cell} |");
        }
        out.push('\n');
    }
    Ok(out)
}

/// Instructions per echoed message for every server and scenario; `runs` repetitions each, so
/// that their agreement shows the figure is stable.
pub(crate) fn run(
    runtime: &tokio::runtime::Runtime,
    servers: &[&'static Server],
    scenarios: &[&'static Scenario],
    runs: usize,
    dir: &Path,
    cores: Cores,
    via: Via,
) -> Result<String, Failure> {
    let valgrind = std::process::Command::new("valgrind")
        .arg("--version")
        .output();
    if !valgrind.is_ok_and(|o| o.status.success()) {
        return Err(Failure::new(
            "`count` runs the servers under valgrind, which is not installed (apt-get install valgrind)",
        ));
    }
    std::fs::create_dir_all(dir)?;
    let mut rows = Vec::new();
    for &server in servers {
        let mut row = Vec::new();
        for &scenario in scenarios {
            let mut counts = Vec::new();
            for _ in 0..runs {
                let how = Measure {
                    tool: Tool::Instructions,
                    via,
                    cores,
                };
                let per_message = count_run(runtime, server, scenario, scenario.m1, dir, how)
                    .and_then(|ir1| {
                        let ir2 = count_run(runtime, server, scenario, scenario.m2, dir, how)?;
                        Ok(ir2[0].saturating_sub(ir1[0]) / (scenario.m2 - scenario.m1))
                    });
                match &per_message {
                    Ok(n) => eprintln!(
                        "  {:<18} {:<20} {n} instructions per message",
                        server.name, scenario.title
                    ),
                    Err(e) => eprintln!("  {:<18} {:<20} FAILED: {e}", server.name, scenario.title),
                }
                counts.push(per_message.map_err(|e| e.to_string()));
            }
            row.push(counts);
        }
        rows.push((server, row));
    }
    let mut out = table(&rows, scenarios);
    out.push_str(&owners_table(servers, scenarios, dir, via));
    Ok(out)
}

/// The last run's instructions per echo split by whose code ran them (`breakdown.rs`), one row
/// per server and scenario.
fn owners_table(
    servers: &[&'static Server],
    scenarios: &[&'static Scenario],
    dir: &Path,
    via: Via,
) -> String {
    use std::fmt::Write as _;
    let mut out = String::from(
        "\nWhere one echo's instructions go (the last run; own instructions of each function, \
         charged to the source file of each line, so code inlined from a crate counts as \
         that crate's):\n\n| server | scenario | instructions per echo, by whose code ran |\n|---|---|---|\n",
    );
    for &server in servers {
        for &scenario in scenarios {
            let file = |m: u64| {
                dir.join(format!(
                    "{}.{}{}.{m}.callgrind",
                    server.name,
                    scenario.id,
                    via.tag()
                ))
            };
            let cell = match crate::breakdown::per_message(
                &file(scenario.m1),
                &file(scenario.m2),
                scenario.m1,
                scenario.m2,
            ) {
                Ok(owners) => owners
                    .iter()
                    .map(|(owner, per)| format!("{owner} {per:.0}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                Err(e) => format!("FAILED: {e}"),
            };
            let _ = writeln!(out, "| {} | {} | {cell} |", server.name, scenario.title);
        }
    }
    out
}

type Row = (&'static Server, Vec<Vec<Result<u64, String>>>);

fn table(rows: &[Row], scenarios: &[&Scenario]) -> String {
    use std::fmt::Write as _;
    let mut out = String::from(
        "Instructions per echoed message (each run's figure; in parentheses, the first run over \
         the best Rust peer's, and over uWebSockets': lower is better).\n\n",
    );
    let _ = write!(out, "| server |");
    for s in scenarios {
        let _ = write!(out, " {} |", s.title);
    }
    let _ = write!(out, "\n|---|");
    for _ in scenarios {
        let _ = write!(out, "---:|");
    }
    out.push('\n');
    // Best peer per scenario: the fewest instructions (first run).
    let first = |row: &Row, i: usize| row.1[i].first().and_then(|r| r.as_ref().ok()).copied();
    let best: Vec<Option<u64>> = (0..scenarios.len())
        .map(|i| {
            rows.iter()
                .filter(|r| r.0.kind == Kind::Peer)
                .filter_map(|r| first(r, i))
                .min()
        })
        .collect();
    let reference: Vec<Option<u64>> = (0..scenarios.len())
        .map(|i| {
            rows.iter()
                .filter(|r| r.0.kind == Kind::Reference)
                .find_map(|r| first(r, i))
        })
        .collect();
    let over = |v: u64, of: Option<u64>, what: &str| match of {
        Some(b) if b > 0 => format!("{:.2}x{what}", crate::float(v) / crate::float(b)),
        _ => String::new(),
    };
    for row in rows {
        let name = match row.0.kind {
            Kind::Ours => format!("**{}**", row.0.name),
            _ => row.0.name.to_string(),
        };
        let _ = write!(out, "| {name} |");
        for (i, runs) in row.1.iter().enumerate() {
            let values: Vec<String> = runs
                .iter()
                .map(|r| {
                    r.as_ref()
                        .map_or_else(|_| "FAILED".to_string(), u64::to_string)
                })
                .collect();
            let ratios: Vec<String> = first(row, i)
                .map(|v| [over(v, best[i], ""), over(v, reference[i], " uWS")])
                .into_iter()
                .flatten()
                .filter(|r| !r.is_empty())
                .collect();
            let ratio = if ratios.is_empty() {
                String::new()
            } else {
                format!(" ({})", ratios.join(", "))
            };
            let _ = write!(out, " {}{ratio} |", values.join(" / "));
        }
        out.push('\n');
    }
    out
}

/// Where callgrind's files go: `<target>/echo-bench/callgrind`.
pub(crate) fn default_dir() -> PathBuf {
    crate::target_dir().join("echo-bench").join("callgrind")
}
