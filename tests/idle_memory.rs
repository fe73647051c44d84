//! The heap an idle socket holds through hyper and the layer, over real sockets: 500 clients
//! (blocking std sockets, which allocate nothing) each complete the handshake and one echo,
//! then stay open; the server's live heap grows by the session task, tokio's registration of
//! the socket and the close signal, and nothing else (README, "Idle memory").

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use tower_ws::{Session, UpgradeLayer, handler_fn};

#[global_allocator]
static ALLOCATOR: peak_alloc::PeakAlloc = peak_alloc::PeakAlloc;

/// Sockets opened while the heap is measured.
const SOCKETS: usize = 500;

/// The bound: the session task (640 bytes with every feature: tokio rounds a task up to a
/// multiple of 128 bytes), tokio's registration (256), the close signal (96) and the
/// session's slot in the layer's shutdown tracker (24) come to 1,016 bytes; 42 more allow for
/// allocator rounding, the tracker's growth and feature differences, but not for another
/// buffer or a task grown into its next 128 bytes. Without optimisations (`cargo test`) the
/// compiler lays the task's future out less tightly, and the task takes the next 128 bytes.
const MAX_HEAP_PER_SOCKET: usize = if cfg!(debug_assertions) {
    1_058 + 128
} else {
    1_058
};

/// Starts the echo server (hyper's HTTP/1 connection, the layer, a `handler_fn`) on a
/// current-thread runtime of its own thread.
fn start_server() -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let echo = handler_fn(|Session { mut socket, .. }| async move {
                while let Some(Ok(message)) = socket.recv().await {
                    if socket.send(message).await.is_err() {
                        return;
                    }
                }
            });
            let layer = UpgradeLayer::new(echo);
            let service = tower::Layer::layer(&layer, support::inner());
            tx.send(support::serve_http1(service).await).unwrap();
            std::future::pending::<()>().await;
        });
    });
    rx.recv().unwrap()
}

/// Opens a socket, completes the handshake and one 16-byte echo, and returns it open.
fn open_and_echo(addr: SocketAddr) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(support::TIMEOUT)).unwrap();
    let request = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n",
        support::SAMPLE_KEY
    );
    tcp.write_all(request.as_bytes()).unwrap();
    let mut head = [0_u8; 512];
    let mut got = 0;
    while !head[..got].windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tcp.read(&mut head[got..]).unwrap();
        assert!(n > 0, "the server closed during the handshake");
        got += n;
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "no upgrade");
    tcp.write_all(&support::client_frame(true, 2, &[7; 16]))
        .unwrap();
    let mut echo = [0_u8; 18];
    tcp.read_exact(&mut echo).unwrap();
    assert_eq!((echo[0], echo[1], &echo[2..]), (0x82, 16, &[7_u8; 16][..]));
    tcp
}

/// The heap in use once it has stopped changing (the server thread finishes its work after
/// the last echo is read).
fn settled_heap() -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = ALLOCATOR.current_usage();
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let now = ALLOCATOR.current_usage();
        if now == last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

#[test]
fn an_idle_socket_holds_only_its_task_its_registration_and_its_close_signal() {
    let addr = start_server();
    // One socket first, so what the first connection sets up once is in the baseline.
    let mut open = Vec::with_capacity(SOCKETS + 1);
    open.push(open_and_echo(addr));
    let before = settled_heap();
    for _ in 0..SOCKETS {
        open.push(open_and_echo(addr));
    }
    let after = settled_heap();
    let per_socket = after.saturating_sub(before) / SOCKETS;
    eprintln!("live heap per idle socket: {per_socket} bytes");
    assert!(
        per_socket <= MAX_HEAP_PER_SOCKET,
        "{per_socket} bytes of heap per idle socket (bound {MAX_HEAP_PER_SOCKET})"
    );
    drop(open);
}
