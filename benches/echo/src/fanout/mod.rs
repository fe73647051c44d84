//! The fan-out benchmark (`fanout` command): the broadcast bench protocol against tower-ws's
//! hub (behind the layer and behind the axum extractor), the `tokio::sync::broadcast` idiom on axum and tokio-websockets, uWebSockets' pub/sub
//! when `../shared/peers/uws/uws-broadcast` is there, and any server given as a command.
//!
//! Each server runs in its own process pinned to the server core (the built-in ones on a
//! current-thread runtime); the load generator runs pinned to the client core. Figures per
//! run: deliveries per server CPU-second, write system calls per delivery (`syscw` of
//! `/proc/PID/io`), delivery latency quantiles (a timestamp in every payload), server RSS per
//! subscriber (after the subscribers joined, over the server's RSS before), and the checks:
//! messages lost and frames that failed a check.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    clippy::too_many_lines,
    reason = "frame lengths checked by the match arms, low bytes as fill, rates and counts far \
              below 2^52; the run and table functions read best in one piece"
)]

mod load;
mod servers;

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Failure, float, sys};

pub(crate) use servers::run as serve_builtin;

/// Where the uWebSockets broadcast server is, when present: `shared/` beside the repository
/// (or beside the worktrees' folder), or `TOWER_WS_UWS_BROADCAST`.
fn uws_broadcast() -> Option<std::path::PathBuf> {
    if let Some(path) = std::env::var_os("TOWER_WS_UWS_BROADCAST") {
        return Some(path.into());
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    ["..", "../.."]
        .iter()
        .map(|up| root.join(up).join("shared/peers/uws/uws-broadcast"))
        .find(|p| p.exists())
}

/// A server to run: a built-in one, or a command line with `{port}`.
#[derive(Debug, Clone)]
struct Contender {
    name: String,
    about: String,
    command: Vec<String>,
}

/// One cell: rooms x subscribers, payload size.
#[derive(Debug, Clone, Copy)]
struct Cell {
    id: &'static str,
    rooms: usize,
    subscribers: usize,
    size: usize,
}

const CELLS: &[Cell] = &[
    Cell {
        id: "1x1k-16",
        rooms: 1,
        subscribers: 1_000,
        size: 16,
    },
    Cell {
        id: "1x1k-128",
        rooms: 1,
        subscribers: 1_000,
        size: 128,
    },
    Cell {
        id: "1x1k-1k",
        rooms: 1,
        subscribers: 1_000,
        size: 1024,
    },
    Cell {
        id: "1x10k-16",
        rooms: 1,
        subscribers: 10_000,
        size: 16,
    },
    Cell {
        id: "1x10k-128",
        rooms: 1,
        subscribers: 10_000,
        size: 128,
    },
    Cell {
        id: "1x10k-1k",
        rooms: 1,
        subscribers: 10_000,
        size: 1024,
    },
    Cell {
        id: "100x100-16",
        rooms: 100,
        subscribers: 100,
        size: 16,
    },
    Cell {
        id: "100x100-128",
        rooms: 100,
        subscribers: 100,
        size: 128,
    },
    Cell {
        id: "100x100-1k",
        rooms: 100,
        subscribers: 100,
        size: 1024,
    },
];

const USAGE: &str = "\
usage: cargo bench -p echo-bench --bench echo -- fanout [OPTIONS]

  --cells a,b          cells (default all): 1x1k-16 1x1k-128 1x1k-1k 1x10k-16 1x10k-128
                       1x10k-1k 100x100-16 100x100-128 100x100-1k
  --servers a,b        built-in servers (default all): tower-ws tower-ws-axum axum-broadcast
                       tokio-websockets-broadcast; uws joins when ../shared/peers/uws is there
  --server NAME=CMD    one more server: CMD is run with {port} replaced (repeatable)
  --window N           publisher window, messages in flight per room (default 8)
  --loads a,b          publisher paces (default sat,50,10): sat = saturating with the window,
                       a number = that percentage of the server's own saturated rate
  --stalled PCT        percent of each room's subscribers that never read (default 0)
  --warmup SECS        after every subscriber got a message (default 1)
  --measure SECS       measured window (default 3)
  --server-core N --client-core N   (default 0 and 1)
  --out FILE           also write the table to FILE
";

#[derive(Debug)]
struct Options {
    cells: Vec<Cell>,
    contenders: Vec<Contender>,
    window: u32,
    loads: Vec<Option<f64>>,
    stalled_percent: f64,
    warmup: Duration,
    measure: Duration,
    cores: crate::Cores,
    out: Option<std::path::PathBuf>,
}

fn value<T: std::str::FromStr>(
    args: &mut std::slice::Iter<'_, String>,
    name: &str,
) -> Result<T, Failure> {
    let text = args
        .next()
        .ok_or_else(|| Failure::new(format!("{name} needs a value")))?;
    text.parse()
        .map_err(|_| Failure::new(format!("{name}: cannot use {text:?}")))
}

fn parse(args: &[String]) -> Result<Options, Failure> {
    let exe = std::env::current_exe()?.display().to_string();
    let mut cells: Option<Vec<String>> = None;
    let mut builtins: Option<Vec<String>> = None;
    let mut extra = Vec::new();
    let mut options = Options {
        cells: Vec::new(),
        contenders: Vec::new(),
        window: 8,
        loads: vec![None, Some(50.0), Some(10.0)],
        stalled_percent: 0.0,
        warmup: Duration::from_secs(1),
        measure: Duration::from_secs(3),
        cores: crate::Cores {
            server: 0,
            client: 1,
        },
        out: None,
    };
    let list = |s: String| s.split(',').map(str::to_string).collect::<Vec<_>>();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let name = arg.as_str();
        match name {
            "--bench" => {}
            "--cells" => cells = Some(list(value(&mut iter, name)?)),
            "--servers" => builtins = Some(list(value(&mut iter, name)?)),
            "--server" => {
                let spec: String = value(&mut iter, name)?;
                let (n, cmd) = spec
                    .split_once('=')
                    .ok_or_else(|| Failure::new("--server takes NAME=CMD"))?;
                extra.push(Contender {
                    name: n.to_string(),
                    about: format!("`{cmd}`"),
                    command: cmd.split_whitespace().map(str::to_string).collect(),
                });
            }
            "--window" => options.window = value::<u32>(&mut iter, name)?.max(1),
            "--loads" => {
                options.loads = list(value(&mut iter, name)?)
                    .iter()
                    .map(|l| {
                        if l == "sat" {
                            Ok(None)
                        } else {
                            l.parse()
                                .map(Some)
                                .map_err(|_| Failure::new(format!("--loads: {l:?}")))
                        }
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--stalled" => options.stalled_percent = value(&mut iter, name)?,
            "--warmup" => options.warmup = Duration::from_secs_f64(value(&mut iter, name)?),
            "--measure" => options.measure = Duration::from_secs_f64(value(&mut iter, name)?),
            "--server-core" => options.cores.server = value(&mut iter, name)?,
            "--client-core" => options.cores.client = value(&mut iter, name)?,
            "--out" => options.out = Some(value::<String>(&mut iter, name)?.into()),
            "-h" | "--help" => return Err(Failure::new(USAGE)),
            other => return Err(Failure::new(format!("unknown option {other}\n\n{USAGE}"))),
        }
    }
    options.cells = match cells {
        None => CELLS.to_vec(),
        Some(ids) => ids
            .iter()
            .map(|id| {
                CELLS
                    .iter()
                    .find(|c| c.id == id)
                    .copied()
                    .ok_or_else(|| Failure::new(format!("unknown cell {id:?}")))
            })
            .collect::<Result<_, _>>()?,
    };
    for server in servers::ALL {
        if builtins
            .as_ref()
            .is_none_or(|b| b.iter().any(|n| n == server.name))
        {
            options.contenders.push(Contender {
                name: server.name.to_string(),
                about: server.about.to_string(),
                command: vec![
                    exe.clone(),
                    "fanout-serve".into(),
                    server.name.into(),
                    "{port}".into(),
                ],
            });
        }
    }
    if let Some(uws) = uws_broadcast()
        && builtins
            .as_ref()
            .is_none_or(|b| b.iter().any(|n| n == "uws"))
    {
        options.contenders.push(Contender {
            name: "uws".into(),
            about: "uWebSockets pub/sub (`uws-broadcast`, maxBackpressure 1 MiB, drop)".into(),
            command: vec![uws.display().to_string(), "--port".into(), "{port}".into()],
        });
    }
    options.contenders.extend(extra);
    Ok(options)
}

/// A server process pinned to a core; killed when dropped.
struct Running {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(contender: &Contender, core: usize) -> Result<Running, Failure> {
    let port = StdListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut words = contender
        .command
        .iter()
        .map(|w| w.replace("{port}", &port.to_string()));
    let program = words
        .next()
        .ok_or_else(|| Failure::new("empty server command"))?;
    // taskset pins the server (and execs it: the pid stays the server's).
    let mut command = Command::new("taskset");
    command
        .args(["-c", &core.to_string(), &program])
        .args(words);
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let child = command.spawn()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(20);
    while StdStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            return Err(Failure::new(format!(
                "{} did not listen on {addr} within 20 s",
                contender.name
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Running { child, addr })
}

/// The `fanout-serve NAME PORT` command: a built-in server on 127.0.0.1:PORT, exiting when
/// stdin closes.
pub(crate) fn serve(name: &str, port: &str) -> Result<(), Failure> {
    sys::raise_nofile_limit()?;
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
        serve_builtin(name, listener).await
    })
}

struct Row {
    cell: Cell,
    load: String,
    server: String,
    result: Result<load::Outcome, Failure>,
}

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".into(), |d| format!("{:.2}", d.as_secs_f64() * 1e3))
}

fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| cell | load | server | deliveries / server CPU-s | vs tower-ws | deliveries/s | writes / delivery | p50 ms | p99 ms | p999 ms | RSS / subscriber | lost | errors |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for row in rows {
        let ours = rows
            .iter()
            .find(|r| r.cell.id == row.cell.id && r.load == row.load && r.server == "tower-ws")
            .and_then(|r| r.result.as_ref().ok())
            .map(per_cpu);
        match &row.result {
            Ok(o) => {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {:.0} | {} | {:.0} | {} | {} | {} | {} | {:.1} KB | {} | {} |",
                    row.cell.id,
                    row.load,
                    row.server,
                    per_cpu(o),
                    ours.map_or("-".into(), |ours| format!(
                        "{:.2}x",
                        ours / per_cpu(o).max(1.0)
                    )),
                    float(o.deliveries) / o.window.as_secs_f64(),
                    o.writes_per_delivery
                        .map_or("-".into(), |w| format!("{w:.3}")),
                    ms(o.latency.quantile(0.5)),
                    ms(o.latency.quantile(0.99)),
                    ms(o.latency.quantile(0.999)),
                    o.rss_per_subscriber / 1000.0,
                    o.lost,
                    o.errors,
                );
            }
            Err(e) => {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | failed: {e} |",
                    row.cell.id, row.load, row.server
                );
            }
        }
    }
    out
}

fn per_cpu(o: &load::Outcome) -> f64 {
    float(o.deliveries) / o.server_cpu.as_secs_f64().max(1e-3)
}

/// The `fanout` command.
pub(crate) fn main(args: &[String]) -> Result<(), Failure> {
    let options = parse(args)?;
    sys::pin_to_core(options.cores.client)?;
    sys::raise_nofile_limit()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    for cell in &options.cells {
        for contender in &options.contenders {
            let mut saturated = None;
            for load in &options.loads {
                let label =
                    load.map_or_else(|| format!("window {}", options.window), |p| format!("{p}%"));
                let pace = match (load, saturated) {
                    (None, _) => load::Pace::Window(options.window),
                    (Some(p), Some(rate)) => load::Pace::Rate(rate * p / 100.0),
                    (Some(_), None) => {
                        rows.push(Row {
                            cell: *cell,
                            load: label,
                            server: contender.name.clone(),
                            result: Err(Failure::new("needs a saturated run first")),
                        });
                        continue;
                    }
                };
                let stalled =
                    (cell.subscribers as f64 * options.stalled_percent / 100.0).round() as usize;
                let spec = load::Spec {
                    rooms: cell.rooms,
                    subscribers: cell.subscribers,
                    stalled,
                    size: cell.size,
                    pace,
                    warmup: options.warmup,
                    window: options.measure,
                };
                let result = start(contender, options.cores.server).and_then(|server| {
                    let local = tokio::task::LocalSet::new();
                    local.block_on(&runtime, load::run(server.addr, server.child.id(), spec))
                });
                if let (None, Ok(o)) = (load, &result) {
                    // Publishes per second per room, for the fixed-rate runs.
                    saturated =
                        Some(float(o.published) / o.window.as_secs_f64() / cell.rooms as f64);
                }
                match &result {
                    Ok(o) => eprintln!(
                        "{:<12} {:<10} {:<28} {:>10.0} deliveries/CPU-s, {:.0} deliveries/s, {} writes/delivery, p50/p99/p999 {}/{}/{} ms, {:.1} KB/subscriber, lost {}, errors {}{}",
                        cell.id,
                        label,
                        contender.name,
                        per_cpu(o),
                        float(o.deliveries) / o.window.as_secs_f64(),
                        o.writes_per_delivery
                            .map_or("-".into(), |w| format!("{w:.3}")),
                        ms(o.latency.quantile(0.5)),
                        ms(o.latency.quantile(0.99)),
                        ms(o.latency.quantile(0.999)),
                        o.rss_per_subscriber / 1000.0,
                        o.lost,
                        o.errors,
                        o.first_error
                            .as_ref()
                            .map(|e| format!(" ({e})"))
                            .unwrap_or_default()
                    ),
                    Err(e) => eprintln!(
                        "{:<12} {:<10} {:<28} failed: {e}",
                        cell.id, label, contender.name
                    ),
                }
                rows.push(Row {
                    cell: *cell,
                    load: label,
                    server: contender.name.clone(),
                    result,
                });
            }
        }
    }
    let mut text = String::from("Servers:\n\n");
    for c in &options.contenders {
        let _ = writeln!(text, "- `{}`: {}", c.name, c.about);
    }
    let _ = writeln!(
        text,
        "\nPublisher window {}, warm-up {:?}, measured {:?}, {}% of subscribers stalled; server on core {}, load generator on core {}.\n",
        options.window,
        options.warmup,
        options.measure,
        options.stalled_percent,
        options.cores.server,
        options.cores.client
    );
    text.push_str(&table(&rows));
    // Printed first: a bad --out path must not lose the table.
    println!("{text}");
    if let Some(out) = &options.out {
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(out, &text)
            .map_err(|e| Failure::new(format!("writing {}: {e}", out.display())))?;
    }
    Ok(())
}
