//! End-to-end echo benchmark: tower-ws against its peers, side by side, on one machine.
//!
//! Every server runs in its own process on a current-thread tokio runtime pinned to one core;
//! our own load generator (raw TCP, its own handshake and masked frames, every echo verified)
//! runs pinned to the other. See `README.md` beside this crate for the commands and what each
//! figure means.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod breakdown;
mod count;
mod fanout;
mod h2;
mod handshake;
mod hist;
mod load;
mod matrix;
mod paths;
mod process;
mod report;
mod servers;
mod sys;
mod wire;

/// An error, as text: everything here ends up in a table cell or on stderr.
#[derive(Debug)]
pub(crate) struct Failure(String);

impl Failure {
    pub(crate) fn new(what: impl Into<String>) -> Self {
        Self(what.into())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Self(e.to_string())
    }
}

/// `n` as a float, for rates and ratios (every count here is far below 2^52).
#[expect(
    clippy::cast_precision_loss,
    reason = "counts and byte totals far below 2^52"
)]
pub(crate) fn float(n: u64) -> f64 {
    n as f64
}

/// Which core runs the server and which the load generator.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cores {
    pub(crate) server: usize,
    pub(crate) client: usize,
}

/// Cargo's target directory: `CARGO_TARGET_DIR`, or three levels above this executable
/// (`<target>/<profile>/deps/echo-<hash>`).
/// The repository's root (the workspace this bench is a member of).
pub(crate) fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .map_or_else(|| manifest.to_path_buf(), Path::to_path_buf)
}

pub(crate) fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return dir.into();
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("target"))
}

const USAGE: &str = "\
usage: cargo bench -p echo-bench --bench echo -- [COMMAND] [OPTIONS]

commands:
  matrix (default)   every cell for every server; prints markdown tables
  count              instructions per echoed message under valgrind --tool=callgrind, and
                     where they go (tower-ws, tokio, bytes, std, libc, ...)
  paths              tower-ws over HTTP/1.1 and over HTTP/2 (h2c extended CONNECT), side by side
  syscalls           socket system calls per echoed message under perf stat (count's scenarios)
  list               servers, cells and count scenarios
  fanout             the fan-out benchmark (broadcast bench protocol): `fanout --help`
  serve NAME ADDR    (internal) run one server; exits when stdin closes

matrix options:
  --quick            1 s windows, 2 rounds: a few minutes instead of about 15
  --rounds N         runs per server and cell (default 3; order reverses every round)
  --warmup SECS      traffic before each measured window (default 1)
  --window SECS      measured window (default 4)
  --idle-sockets N   sockets in the idle-memory cell (default 10000)
  --cells a,b        only these cells (see `list`)
  --servers a,b      only these servers (see `list`)
  --conns N --in-flight K --size BYTES --text
                     one cell of your own instead (defaults: 10, 1, 1024, binary)
  --out FILE         also write the tables to FILE (default <target>/echo-bench/matrix-<time>.md)

paths options:
  --quick, --rounds, --warmup, --window as for matrix
  --cells a,b        only these cells (see `list`)
  --servers a,b      only these paths: h1, h2, h2-wide, h2-wide-frames (h1 first: the ratios
                     are to it)

count options:
  --servers a,b      only these servers
  --scenarios a,b    only these scenarios (see `list`)
  --runs N           repetitions of each count (default 1)
  --http2            reach the servers over HTTP/2 (h2c extended CONNECT, one connection per
                     WebSocket) instead of HTTP/1.1; only tower-ws-auto and tower-ws-auto-wide
                     speak it (count and syscalls)

both:
  --uws PATH         the uWebSockets echo binary (default: $ECHO_BENCH_UWS, else
                     shared/peers/uws/uws-echo beside the repository or a parent of it);
                     without one, uWebSockets is left out
  --server-core N    core for the servers (default 0)
  --client-core N    core for the load generator (default 1)
";

/// Command-line options, parsed by hand (no dependency for a handful of flags).
#[derive(Debug)]
struct Options {
    command: String,
    positional: Vec<String>,
    timing: matrix::Timing,
    cells: Option<Vec<String>>,
    servers: Option<Vec<String>>,
    scenarios: Option<Vec<String>>,
    runs: usize,
    out: Option<PathBuf>,
    cores: Cores,
    core: Option<usize>,
    /// A cell of the user's own (`--conns`, `--in-flight`, `--size`, `--text`).
    custom: Option<matrix::Workload>,
    /// `count` and `syscalls` over HTTP/2 (`--http2`).
    via: count::Via,
}

/// The value after flag `name`, parsed.
fn flag_value<T: std::str::FromStr>(
    iter: &mut std::slice::Iter<'_, String>,
    name: &str,
) -> Result<T, Failure> {
    let text = iter
        .next()
        .ok_or_else(|| Failure::new(format!("{name} needs a value")))?;
    text.parse()
        .map_err(|_| Failure::new(format!("{name}: cannot use {text:?}")))
}

fn parse_options(args: &[String]) -> Result<Options, Failure> {
    let mut options = Options {
        command: "matrix".into(),
        positional: Vec::new(),
        timing: matrix::Timing::FULL,
        cells: None,
        servers: None,
        scenarios: None,
        runs: 1,
        out: None,
        cores: Cores {
            server: 0,
            client: 1,
        },
        core: None,
        custom: None,
        via: count::Via::Http1,
    };
    let (mut rounds, mut warmup, mut window, mut idle_sockets) = (None, None, None, None);
    let (mut conns, mut in_flight, mut size, mut text) = (None, None, None, false);
    let list = |text: String| text.split(',').map(str::to_string).collect::<Vec<_>>();
    let mut iter = args.iter();
    let mut saw_command = false;
    while let Some(arg) = iter.next() {
        let name = arg.as_str();
        match name {
            // `cargo bench` passes `--bench` to every bench target.
            "--bench" => {}
            "--quick" => options.timing = matrix::Timing::QUICK,
            "--rounds" => rounds = Some(flag_value::<usize>(&mut iter, name)?),
            "--warmup" => warmup = Some(flag_value::<f64>(&mut iter, name)?),
            "--window" => window = Some(flag_value::<f64>(&mut iter, name)?),
            "--idle-sockets" => idle_sockets = Some(flag_value::<usize>(&mut iter, name)?),
            "--conns" => conns = Some(flag_value::<usize>(&mut iter, name)?),
            "--in-flight" => in_flight = Some(flag_value::<usize>(&mut iter, name)?),
            "--size" => size = Some(flag_value::<usize>(&mut iter, name)?),
            "--text" => text = true,
            "--http2" => options.via = count::Via::Http2,
            "--runs" => options.runs = flag_value(&mut iter, name)?,
            "--cells" => options.cells = Some(list(flag_value(&mut iter, name)?)),
            "--servers" => options.servers = Some(list(flag_value(&mut iter, name)?)),
            "--scenarios" => options.scenarios = Some(list(flag_value(&mut iter, name)?)),
            "--out" => options.out = Some(flag_value::<String>(&mut iter, name)?.into()),
            "--server-core" => options.cores.server = flag_value(&mut iter, name)?,
            "--client-core" => options.cores.client = flag_value(&mut iter, name)?,
            "--uws" => servers::uws::choose(flag_value::<String>(&mut iter, name)?.into()),
            "--core" => options.core = Some(flag_value(&mut iter, name)?),
            "-h" | "--help" => options.command = "help".into(),
            flag if flag.starts_with('-') => {
                return Err(Failure::new(format!("unknown option {flag}")));
            }
            word if !saw_command => {
                options.command = word.to_string();
                saw_command = true;
            }
            word => options.positional.push(word.to_string()),
        }
    }
    // Explicit values override whichever preset was chosen, in any order on the line.
    let timing = &mut options.timing;
    timing.rounds = rounds.unwrap_or(timing.rounds).max(1);
    timing.warmup = warmup.map_or(timing.warmup, Duration::from_secs_f64);
    timing.window = window.map_or(timing.window, Duration::from_secs_f64);
    timing.idle_sockets = idle_sockets.unwrap_or(timing.idle_sockets).max(1);
    if conns.is_some() || in_flight.is_some() || size.is_some() || text {
        options.custom = Some(matrix::Workload::Echo {
            conns: conns.unwrap_or(10).max(1),
            in_flight: in_flight.unwrap_or(1).max(1),
            size: size.unwrap_or(1024),
            text,
        });
    }
    Ok(options)
}

/// Picks the named items from `all` (all of them without a list), in `all`'s order.
fn select<T>(
    all: &'static [T],
    names: Option<&Vec<String>>,
    id: fn(&T) -> &str,
) -> Result<Vec<&'static T>, Failure> {
    let Some(names) = names else {
        return Ok(all.iter().collect());
    };
    for name in names {
        if !all.iter().any(|x| id(x) == name) {
            let known: Vec<_> = all.iter().map(id).collect();
            return Err(Failure::new(format!(
                "unknown name {name:?}; known: {}",
                known.join(", ")
            )));
        }
    }
    Ok(all
        .iter()
        .filter(|x| names.iter().any(|n| n == id(x)))
        .collect())
}

/// The servers to run: the named ones, or every one that can run here.
fn chosen_servers(options: &Options) -> Result<Vec<&'static servers::Server>, Failure> {
    // Named servers may include the HTTP/2-capable ones of `paths` (`servers::PATHS`).
    if let Some(names) = &options.servers {
        return names.iter().map(|name| servers::find(name)).collect();
    }
    Ok(servers::ALL
        .iter()
        .filter(|s| {
            let here = servers::available(s);
            if !here {
                eprintln!("{}: not found here, left out (see --uws)", s.name);
            }
            here
        })
        .collect())
}

/// The load generator's process: pinned to its core, with room for 10,000 sockets.
fn load_generator_runtime(cores: Cores) -> Result<tokio::runtime::Runtime, Failure> {
    sys::pin_to_core(cores.client)?;
    sys::raise_nofile_limit()?;
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One line about this machine for the tables' header: CPU, cores, kernel, compiler.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    // Counted from /proc/cpuinfo: this process is pinned, so std would answer 1.
    let cores = std::fs::read_to_string("/proc/cpuinfo").map_or(0, |info| {
        info.lines().filter(|l| l.starts_with("processor")).count()
    });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let rustc =
        std::process::Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
            .arg("-V")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
    format!("{cpu}, {cores} cores, Linux {}, {rustc}", kernel.trim())
}

/// The 1-minute load average: how busy the rest of the machine was.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_default()
}

/// The cells to run: the chosen ones, or the user's own.
fn chosen_cells(options: &Options) -> Result<Vec<&'static matrix::Cell>, Failure> {
    let Some(workload) = options.custom else {
        return select(matrix::CELLS, options.cells.as_ref(), |c| c.id);
    };
    let title = match workload {
        matrix::Workload::Echo {
            conns,
            in_flight,
            size,
            text,
        } => format!(
            "custom: {conns} connections x {in_flight} in flight x {size} B{}",
            if text { " text" } else { "" }
        ),
        matrix::Workload::Idle => "custom".to_string(),
    };
    // Lives for the rest of the process, like the built-in cells.
    let cell = Box::leak(Box::new(matrix::Cell {
        id: "custom",
        title: Box::leak(title.into_boxed_str()),
        workload,
    }));
    Ok(vec![cell])
}

fn run_matrix(options: &Options) -> Result<(), Failure> {
    let cells = chosen_cells(options)?;
    let servers = chosen_servers(options)?;
    let runtime = load_generator_runtime(options.cores)?;
    let timing = options.timing;
    eprintln!(
        "echo matrix: {} cells x {} servers x {} rounds, {:?} warm-up + {:?} window per run; about {} min",
        cells.len(),
        servers.len(),
        timing.rounds,
        timing.warmup,
        timing.window,
        matrix::estimate(&cells, servers.len(), &timing)
            .as_secs()
            .div_ceil(60)
    );
    let started = std::time::Instant::now();
    let load_before = load_average();
    let results = matrix::run(
        &runtime,
        &cells,
        &servers,
        &timing,
        options.cores,
        |cell, round, server, result| {
            eprintln!(
                "[{:>5.0}s] {:<8} round {} {:<18} {}",
                started.elapsed().as_secs_f64(),
                cell.id,
                round + 1,
                server.name,
                report::progress_line(result)
            );
        },
    );
    let text = run_header(
        ("server", "servers"),
        &timing,
        options,
        started,
        &load_before,
    ) + &report::markdown(&results);
    publish_tables(&text, options, "matrix")
}

/// The first paragraph of a wall-clock run's report: machine, timing, cores, load.
fn run_header(
    (order, servers): (&str, &str),
    timing: &matrix::Timing,
    options: &Options,
    started: std::time::Instant,
    load_before: &str,
) -> String {
    format!(
        "Machine: {}. {} rounds per cell ({order} order reversed every round), {:?} warm-up and \
         {:?} measured per run; {servers} on core {}, load generator on core {}; {} s in all; \
         1-minute load average {} at the start, {} at the end.\n\n",
        machine(),
        timing.rounds,
        timing.warmup,
        timing.window,
        options.cores.server,
        options.cores.client,
        started.elapsed().as_secs(),
        load_before,
        load_average(),
    )
}

/// Prints a report and writes it to `--out`, or to `target/echo-bench/STEM-SECONDS.md`.
fn publish_tables(text: &str, options: &Options, stem: &str) -> Result<(), Failure> {
    let out = options.out.clone().unwrap_or_else(|| {
        target_dir()
            .join("echo-bench")
            .join(format!("{stem}-{}.md", now_secs()))
    });
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&out, text)?;
    std::io::stdout().write_all(text.as_bytes())?;
    eprintln!("tables written to {}", out.display());
    Ok(())
}

fn run_paths(options: &Options) -> Result<(), Failure> {
    let cells = select(paths::CELLS, options.cells.as_ref(), |c| c.id)?;
    let chosen = select(paths::PATHS, options.servers.as_ref(), |p| p.id)?;
    let runtime = load_generator_runtime(options.cores)?;
    let timing = options.timing;
    eprintln!(
        "paths: {} cells x {} paths x {} rounds; about {} min",
        cells.len(),
        chosen.len(),
        timing.rounds,
        paths::estimate(cells.len(), chosen.len(), &timing)
            .as_secs()
            .div_ceil(60)
    );
    let started = std::time::Instant::now();
    let load_before = load_average();
    let results = paths::run(
        &runtime,
        &cells,
        &chosen,
        &timing,
        options.cores,
        |cell, round, path, result| {
            eprintln!(
                "[{:>5.0}s] {:<10} round {} {:<8} {}",
                started.elapsed().as_secs_f64(),
                cell.id,
                round + 1,
                path.id,
                report::progress_line(result)
            );
        },
    )?;
    let text = run_header(("path", "server"), &timing, options, started, &load_before)
        + &paths::markdown(&results);
    publish_tables(&text, options, "paths")
}

fn run_count(options: &Options) -> Result<(), Failure> {
    let servers = chosen_servers(options)?;
    let scenarios = select(count::SCENARIOS, options.scenarios.as_ref(), |s| s.id)?;
    let runtime = load_generator_runtime(options.cores)?;
    let dir = count::default_dir();
    eprintln!(
        "instruction counts: {} servers x {} scenarios x {} runs under callgrind (files in {})",
        servers.len(),
        scenarios.len(),
        options.runs,
        dir.display()
    );
    let table = count::run(
        &runtime,
        &servers,
        &scenarios,
        options.runs.max(1),
        &dir,
        options.cores,
        options.via,
    )?;
    println!("{table}");
    Ok(())
}

fn run_syscalls(options: &Options) -> Result<(), Failure> {
    let servers = chosen_servers(options)?;
    let scenarios = select(count::SCENARIOS, options.scenarios.as_ref(), |s| s.id)?;
    let runtime = load_generator_runtime(options.cores)?;
    let dir = crate::target_dir().join("echo-bench").join("perf");
    eprintln!(
        "system calls: {} servers x {} scenarios under perf stat (files in {})",
        servers.len(),
        scenarios.len(),
        dir.display()
    );
    let table = count::run_syscalls(
        &runtime,
        &servers,
        &scenarios,
        &dir,
        options.cores,
        options.via,
    )?;
    println!("{table}");
    Ok(())
}

fn list() {
    println!("servers:");
    for s in servers::ALL {
        println!(
            "  {:<18} {}",
            s.name,
            s.about.split_whitespace().collect::<Vec<_>>().join(" ")
        );
    }
    println!("cells:");
    for c in matrix::CELLS {
        println!("  {:<18} {}", c.id, c.title);
    }
    println!("paths cells:");
    for c in paths::CELLS {
        println!("  {}", c.id);
    }
    println!(
        "paths: {}",
        paths::PATHS
            .iter()
            .map(|p| p.id)
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("count scenarios:");
    for s in count::SCENARIOS {
        println!("  {:<18} {}", s.id, s.title);
    }
}

/// The bench binary's entry point.
pub fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // The fan-out benchmark parses its own options (src/fanout/mod.rs).
    let fanout = match args
        .iter()
        .position(|a| a != "--bench")
        .map(|i| (i, args[i].as_str()))
    {
        Some((i, "fanout")) => Some(fanout::main(&args[i + 1..])),
        Some((i, "fanout-serve")) => Some(match &args[i + 1..] {
            [name, port, ..] => fanout::serve(name, port),
            _ => Err(Failure::new("usage: fanout-serve NAME PORT")),
        }),
        _ => None,
    };
    if let Some(result) = fanout {
        if let Err(e) = result {
            eprintln!("echo-bench: {e}");
            std::process::exit(1);
        }
        return;
    }
    let result = parse_options(&args).and_then(|options| match options.command.as_str() {
        "matrix" => run_matrix(&options),
        "count" => run_count(&options),
        "paths" => run_paths(&options),
        "syscalls" => run_syscalls(&options),
        "list" => {
            list();
            Ok(())
        }
        "serve" => match options.positional.as_slice() {
            [name, addr] => process::serve(name, addr, options.core),
            _ => Err(Failure::new("usage: serve NAME ADDR [--core N]")),
        },
        "help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => Err(Failure::new(format!(
            "unknown command {other:?}\n\n{USAGE}"
        ))),
    });
    if let Err(e) = result {
        eprintln!("echo-bench: {e}");
        std::process::exit(1);
    }
}
