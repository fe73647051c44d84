//! The servers under test, one module each, every one an echo server on the current-thread
//! runtime of its own process (see `process::serve`).
//!
//! Each peer uses the echo loop of its own example or docs, as each module says. Every server
//! sets `TCP_NODELAY` on accepted sockets (axum through its documented `tap_io`), so that no
//! result depends on Nagle's algorithm meeting delayed ACKs.
//!
//! Adding a server is one module with a `SERVER` constant and one line in [`ALL`].

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use crate::Failure;

mod axum;
mod fastwebsockets;
mod raw;
mod sockudo_ws;
mod tokio_tungstenite;
mod tokio_websockets;
mod tower_ws_auto;
mod tower_ws_axum;
mod tower_ws_bare;
mod tower_ws_layer;
pub(crate) mod uws;

/// What a server's entry point returns: its accept loop, which runs until the process exits.
pub(crate) type Running = Pin<Box<dyn Future<Output = io::Result<()>>>>;

/// How a server's result is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// tower-ws itself.
    Ours,
    /// A crate from the registry, candidate for "best peer".
    Peer,
    /// The raw TCP echo: the physical limit.
    Raw,
    /// uWebSockets (C++), the reference point every table compares with; not a Rust peer.
    Reference,
}

/// A server under test.
#[derive(Debug)]
pub(crate) struct Server {
    /// The name used on the command line and in tables.
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    /// One line for the README: the crate and the echo loop used.
    pub(crate) about: &'static str,
    pub(crate) run: fn(TcpListener) -> Running,
}

/// Every server, in table order: tower-ws through hyper and its layer (the path users run)
/// first, then its engine on a bare `TcpStream` (to show what hyper and the layer cost).
pub(crate) const ALL: &[Server] = &[
    tower_ws_layer::SERVER,
    tower_ws_axum::SERVER,
    tower_ws_bare::SERVER,
    tokio_websockets::SERVER,
    sockudo_ws::SERVER,
    fastwebsockets::SERVER,
    tokio_tungstenite::SERVER,
    axum::SERVER,
    uws::SERVER,
    raw::SERVER,
];

/// Servers outside the matrix: tower-ws through hyper-util's auto builder, which the `paths`
/// command drives over HTTP/1.1 and over HTTP/2.
pub(crate) const PATHS: &[Server] = &[tower_ws_auto::SERVER, tower_ws_auto::WIDE];

/// Whether `server` can run here (uWebSockets needs its prebuilt binary).
pub(crate) fn available(server: &Server) -> bool {
    server.kind != Kind::Reference || uws::binary().is_some()
}

/// The server called `name`.
pub(crate) fn find(name: &str) -> Result<&'static Server, Failure> {
    ALL.iter()
        .chain(PATHS)
        .find(|s| s.name == name)
        .ok_or_else(|| {
            let names: Vec<_> = ALL.iter().chain(PATHS).map(|s| s.name).collect();
            Failure::new(format!(
                "unknown server {name:?}; known: {}",
                names.join(", ")
            ))
        })
}

/// Accepts connections forever, setting `TCP_NODELAY` and spawning `handle` for each.
async fn accept_each<F, Fut>(listener: TcpListener, mut handle: F) -> io::Result<()>
where
    F: FnMut(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(handle(stream));
            }
            // Out of file descriptors or a connection reset before accept: keep serving.
            Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
}
