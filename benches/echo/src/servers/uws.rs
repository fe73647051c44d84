//! uWebSockets, the C++ reference point: the prebuilt `uws-echo` of `shared/peers/uws` (see its
//! README: one event loop, no compression, 16 MiB message limit, no idle timeout).
//!
//! It is not a Rust crate, so it does not run in a `serve` child like the others: the harness
//! starts the binary itself (`process::ServerProcess::start`), pins it, waits for its
//! `listening on PORT` line, and stops it with `SIGTERM` (so that callgrind, when it wraps it,
//! writes its counts). It is optional: without the binary it is left out of the default runs.
//!
//! Where the binary is: `--uws PATH`, else `ECHO_BENCH_UWS`, else `shared/peers/uws/uws-echo`
//! beside the repository or beside one of its parent directories (`../shared`, the layout of
//! the project's workplace).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::{Kind, Server};

/// The name on the command line and in tables.
pub(crate) const NAME: &str = "uWebSockets";

pub(crate) const SERVER: Server = Server {
    name: NAME,
    kind: Kind::Reference,
    about: "uWebSockets (C++, shared/peers/uws/uws-echo): `ws->send(message, opCode)` in its \
            message handler, one event loop; optional (--uws PATH or ECHO_BENCH_UWS)",
    run: |_| {
        Box::pin(async {
            Err(io::Error::other(
                "uWebSockets runs as its own binary, started by the harness",
            ))
        })
    },
};

/// The path given with `--uws`, which wins over the environment and the default.
static CHOSEN: OnceLock<PathBuf> = OnceLock::new();

/// Uses `path` as the uWebSockets echo binary.
pub(crate) fn choose(path: PathBuf) {
    let _ = CHOSEN.set(path);
}

/// The uWebSockets echo binary, if there is one.
pub(crate) fn binary() -> Option<PathBuf> {
    if let Some(path) = CHOSEN.get() {
        return Some(path.clone());
    }
    if let Some(path) = std::env::var_os("ECHO_BENCH_UWS") {
        return Some(path.into());
    }
    // benches/echo → the repository → its parents.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2)?;
    repo.ancestors()
        .skip(1)
        .map(|dir| dir.join("shared/peers/uws/uws-echo"))
        .find(|path| path.is_file())
}

/// The command line that makes it listen on `port` (it always binds 127.0.0.1).
pub(crate) fn args(port: u16) -> Vec<String> {
    vec!["--port".into(), port.to_string()]
}

/// Whether `line`, printed by the binary, says it listens.
pub(crate) fn is_ready_line(line: &str) -> bool {
    line.starts_with("listening on")
}
