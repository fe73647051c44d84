//! The markdown tables.
//!
//! Per cell and server: messages/s, MB/s, round-trip p50 and p99, the server's CPU share, echoed
//! messages per server CPU-second (with its spread over the rounds), and that figure as a ratio
//! to uWebSockets, to the best Rust peer of the cell and to the raw TCP echo. Ratios are the claim; absolute numbers
//! move with the machine and its neighbours.

use std::fmt::Write as _;
use std::time::Duration;

use crate::float;
use crate::hist::Histogram;
use crate::matrix::{CellResults, Entry, RunResult, Workload};
use crate::servers::Kind;

/// Aggregate of one server's echo runs in a cell.
#[derive(Debug)]
pub(crate) struct EchoSummary {
    pub(crate) rate: f64,
    pub(crate) mbps: f64,
    pub(crate) p50: Option<Duration>,
    pub(crate) p99: Option<Duration>,
    pub(crate) cpu_share: f64,
    pub(crate) client_share: f64,
    pub(crate) per_cpu_second: f64,
    pub(crate) spread: f64,
    pub(crate) rounds: usize,
}

pub(crate) fn summarize_echo(entry: &Entry) -> Result<EchoSummary, String> {
    let mut outcomes = Vec::new();
    for run in &entry.runs {
        match run {
            RunResult::Echo(o) => outcomes.push(o),
            RunResult::Failed(e) => return Err(e.clone()),
            RunResult::Idle(_) => return Err("idle result in an echo cell".into()),
        }
    }
    if outcomes.is_empty() {
        return Err("no runs".into());
    }
    let n = float(outcomes.len() as u64);
    let mut rtt = Histogram::default();
    let (mut messages, mut server_cpu, mut window) = (0_u64, 0.0, 0.0);
    let mut rates = Vec::new();
    let (mut rate, mut mbps, mut client_share) = (0.0, 0.0, 0.0);
    for o in &outcomes {
        let secs = o.window.as_secs_f64();
        rtt.merge(&o.rtt);
        messages += o.messages;
        server_cpu += o.server_cpu.as_secs_f64();
        window += secs;
        rate += float(o.messages) / secs / n;
        mbps += float(o.bytes) / secs / 1e6 / n;
        client_share += o.client_cpu.as_secs_f64() / secs / n;
        rates.push(float(o.messages) / o.server_cpu.as_secs_f64().max(1e-3));
    }
    let per_cpu_second = float(messages) / server_cpu.max(1e-3);
    let (lo, hi) = rates
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &r| (lo.min(r), hi.max(r)));
    Ok(EchoSummary {
        rate,
        mbps,
        p50: rtt.quantile(0.50),
        p99: rtt.quantile(0.99),
        cpu_share: server_cpu / window,
        client_share,
        per_cpu_second,
        spread: (hi - lo) / 2.0 / per_cpu_second,
        rounds: outcomes.len(),
    })
}

/// Bytes of RSS per idle socket, averaged over the runs.
fn summarize_idle(entry: &Entry) -> Result<(f64, u64, u64), String> {
    let mut per_socket = Vec::new();
    let (mut before, mut after) = (0, 0);
    for run in &entry.runs {
        match run {
            RunResult::Idle(o) => {
                per_socket
                    .push((float(o.rss_after) - float(o.rss_before)) / float(o.sockets as u64));
                before = o.rss_before;
                after = o.rss_after;
            }
            RunResult::Failed(e) => return Err(e.clone()),
            RunResult::Echo(_) => return Err("echo result in the idle cell".into()),
        }
    }
    if per_socket.is_empty() {
        return Err("no runs".into());
    }
    Ok((
        per_socket.iter().sum::<f64>() / float(per_socket.len() as u64),
        before,
        after,
    ))
}

/// `1234567.0` as `1.23 M`.
pub(crate) fn si(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1} k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

pub(crate) fn micros(d: Option<Duration>) -> String {
    match d {
        None => "-".into(),
        Some(d) if d >= Duration::from_millis(10) => format!("{:.1} ms", d.as_secs_f64() * 1e3),
        Some(d) => format!("{:.0} µs", d.as_secs_f64() * 1e6),
    }
}

fn ratio(x: f64, of: Option<f64>) -> String {
    match of {
        Some(of) if of > 0.0 => format!("{:.2}x", x / of),
        _ => "-".into(),
    }
}

fn echo_table(out: &mut String, cell: &CellResults) {
    let summaries: Vec<_> = cell
        .entries
        .iter()
        .map(|e| (e, summarize_echo(e)))
        .collect();
    let best_peer = summaries
        .iter()
        .filter(|(e, _)| e.server.kind == Kind::Peer)
        .filter_map(|(e, s)| s.as_ref().ok().map(|s| (e.server.name, s.per_cpu_second)))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    let raw = summaries
        .iter()
        .filter(|(e, _)| e.server.kind == Kind::Raw)
        .find_map(|(_, s)| s.as_ref().ok().map(|s| s.per_cpu_second));
    let reference = summaries
        .iter()
        .filter(|(e, _)| e.server.kind == Kind::Reference)
        .find_map(|(_, s)| s.as_ref().ok().map(|s| s.per_cpu_second));
    let _ = writeln!(
        out,
        "| server | msgs/s | MB/s | p50 | p99 | server CPU | load gen CPU | msgs per server CPU-s | spread | x uWebSockets | x best Rust peer{} | x raw TCP |",
        best_peer
            .map(|(name, _)| format!(" ({name})"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (entry, summary) in &summaries {
        let name = match entry.server.kind {
            Kind::Ours => format!("**{}**", entry.server.name),
            _ => entry.server.name.to_string(),
        };
        match summary {
            Ok(s) => {
                let _ = writeln!(
                    out,
                    "| {name} | {} | {:.1} | {} | {} | {:.0}% | {:.0}% | {} | ±{:.0}% | {} | {} | {} |",
                    si(s.rate),
                    s.mbps,
                    micros(s.p50),
                    micros(s.p99),
                    s.cpu_share * 100.0,
                    s.client_share * 100.0,
                    si(s.per_cpu_second),
                    s.spread * 100.0,
                    ratio(s.per_cpu_second, reference),
                    ratio(s.per_cpu_second, best_peer.map(|b| b.1)),
                    ratio(s.per_cpu_second, raw),
                );
                let _ = s.rounds;
            }
            Err(e) => {
                let _ = writeln!(
                    out,
                    "| {name} | FAILED: {} | | | | | | | | | | |",
                    e.replace('|', "/")
                );
            }
        }
    }
}

fn idle_table(out: &mut String, cell: &CellResults) {
    let summaries: Vec<_> = cell
        .entries
        .iter()
        .map(|e| (e, summarize_idle(e)))
        .collect();
    let best_peer = summaries
        .iter()
        .filter(|(e, _)| e.server.kind == Kind::Peer)
        .filter_map(|(e, s)| s.as_ref().ok().map(|s| (e.server.name, s.0)))
        .min_by(|a, b| a.1.total_cmp(&b.1));
    let raw = summaries
        .iter()
        .filter(|(e, _)| e.server.kind == Kind::Raw)
        .find_map(|(_, s)| s.as_ref().ok().map(|s| s.0));
    let reference = summaries
        .iter()
        .filter(|(e, _)| e.server.kind == Kind::Reference)
        .find_map(|(_, s)| s.as_ref().ok().map(|s| s.0));
    let sockets = cell
        .entries
        .iter()
        .flat_map(|e| &e.runs)
        .find_map(|r| match r {
            RunResult::Idle(o) => Some(o.sockets),
            _ => None,
        })
        .unwrap_or(0);
    let _ = writeln!(
        out,
        "{sockets} sockets, each after its handshake and one 16-byte echo; lower is better.\n"
    );
    let _ = writeln!(
        out,
        "| server | RSS per idle socket | bytes | server RSS before → after | x uWebSockets | x best Rust peer{} | x raw TCP |",
        best_peer
            .map(|(name, _)| format!(" ({name})"))
            .unwrap_or_default()
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
    for (entry, summary) in &summaries {
        let name = match entry.server.kind {
            Kind::Ours => format!("**{}**", entry.server.name),
            _ => entry.server.name.to_string(),
        };
        match summary {
            Ok((per_socket, before, after)) => {
                let _ = writeln!(
                    out,
                    "| {name} | {:.2} KiB | {:.0} | {:.1} → {:.1} MiB | {} | {} | {} |",
                    per_socket / 1024.0,
                    per_socket,
                    float(*before) / f64::from(1 << 20),
                    float(*after) / f64::from(1 << 20),
                    ratio(*per_socket, reference),
                    ratio(*per_socket, best_peer.map(|b| b.1)),
                    ratio(*per_socket, raw),
                );
            }
            Err(e) => {
                let _ = writeln!(
                    out,
                    "| {name} | FAILED: {} | | | | | |",
                    e.replace('|', "/")
                );
            }
        }
    }
}

/// The whole results section: one table per cell.
pub(crate) fn markdown(results: &[CellResults]) -> String {
    let mut out = String::new();
    for cell in results {
        let _ = writeln!(out, "#### {}\n", cell.cell.title);
        match cell.cell.workload {
            Workload::Echo { .. } => echo_table(&mut out, cell),
            Workload::Idle => idle_table(&mut out, cell),
        }
        out.push('\n');
    }
    out
}

/// One progress line for a finished run.
pub(crate) fn progress_line(result: &RunResult) -> String {
    match result {
        RunResult::Echo(o) => {
            let secs = o.window.as_secs_f64();
            format!(
                "{} msgs/s, server CPU {:.0}%, {} msgs per CPU-s, p50 {}",
                si(float(o.messages) / secs),
                o.server_cpu.as_secs_f64() / secs * 100.0,
                si(float(o.messages) / o.server_cpu.as_secs_f64().max(1e-3)),
                micros(o.rtt.quantile(0.5)),
            )
        }
        RunResult::Idle(o) => format!(
            "{:.2} KiB per idle socket ({} sockets)",
            (float(o.rss_after) - float(o.rss_before)) / float(o.sockets as u64) / 1024.0,
            o.sockets
        ),
        RunResult::Failed(e) => format!("FAILED: {e}"),
    }
}
