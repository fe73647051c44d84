//! What permessage-deflate costs and gains: memory per idle connection through the layer, and
//! compression ratios on JSON. The figures in `DeflateConfig`'s docs and the README's
//! Compression section come from this program.
//!
//! ```sh
//! cargo run --release --features client,deflate --example deflate_cost -- memory [SOCKETS]
//! cargo run --release --features client,deflate --example deflate_cost -- ratio
//! ```
//!
//! `memory` (default 5000 sockets; needs as many file descriptors twice over, see `ulimit -n`)
//! starts a server process for each setting: hyper and the layer on a current-thread runtime,
//! echoing, with permessage-deflate off, on with the defaults (context takeover both ways), and
//! with `DeflateConfig::low_memory()`. A raw client in this process opens the sockets, each
//! offering `permessage-deflate; client_max_window_bits` as browsers do, and then:
//!
//! 1. leaves them idle right after the handshake;
//! 2. sends one compressed 400-byte JSON message on each (compressed once here, so the client
//!    holds no zlib state) and reads the compressed echo, then leaves them idle again.
//!
//! After each step it reads the server's resident set (`VmRSS`) and its live heap (a counting
//! allocator), and prints the growth per socket over a server that has served a few warm-up
//! connections and closed them.
//!
//! `ratio` sends three JSON samples through the engine (server role, so frames are unmasked) and
//! counts the bytes on the wire, frame headers included, for several settings. The samples are
//! generated here from a fixed seed, shaped after real feeds (see [`chat_event`],
//! [`ticker_event`] and [`api_page`]).

use std::error::Error;
use std::fmt::Write as _;
use std::io::Write as _;
use std::pin::Pin;
use std::process::Stdio;
use std::task::{Context, Poll};
use std::time::Duration;

use flate2::{Compress, Compression, FlushCompress};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceBuilder;
use tower_ws::{
    AllowOrigin, Config, DeflateConfig, DeflateParams, Message, Role, Session, UpgradeLayer,
    WebSocket, handler_fn,
};

type BoxError = Box<dyn Error + Send + Sync>;

/// Counts the server's live heap bytes.
#[global_allocator]
static ALLOCATOR: peak_alloc::PeakAlloc = peak_alloc::PeakAlloc;

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match args.first().map(String::as_str) {
        Some("serve") => runtime.block_on(serve(args.get(1).map_or("", String::as_str))),
        Some("memory") => {
            let sockets = args.get(1).map_or(Ok(5000), |n| n.parse())?;
            runtime.block_on(memory(sockets))
        }
        Some("ratio") => runtime.block_on(ratio()),
        _ => Err("usage: deflate_cost memory [SOCKETS] | ratio".into()),
    }
}

// ----- memory ---------------------------------------------------------------------------------

/// The settings compared, by name.
const SETTINGS: [&str; 4] = ["off", "default", "windows_12", "low_memory"];

fn setting(name: &str) -> Result<Option<DeflateConfig>, BoxError> {
    Ok(match name {
        "off" => None,
        "default" => Some(DeflateConfig::default()),
        "windows_12" => Some(
            DeflateConfig::default()
                .server_max_window_bits(12)
                .client_max_window_bits(12),
        ),
        "low_memory" => Some(DeflateConfig::low_memory()),
        _ => return Err(format!("unknown setting {name:?}").into()),
    })
}

/// Byte counts as floating point, for ratios (they are far below 2^52).
#[expect(clippy::cast_precision_loss, reason = "byte counts far below 2^52")]
fn float(n: impl Into<u64>) -> f64 {
    n.into() as f64
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// The server process: prints its port, then answers each line on stdin with its resident set
/// and live heap in bytes; ends with stdin.
async fn serve(name: &str) -> Result<(), BoxError> {
    let deflate = setting(name)?;
    let mut config = Config::default();
    if let Some(deflate) = deflate {
        config = config.deflate(deflate);
    }
    let echo = handler_fn(|Session { mut socket, .. }| async move {
        while let Some(message) = socket.recv().await {
            let message = message?;
            if message.is_text() || message.is_binary() {
                socket.send(message).await?;
            }
        }
        Ok::<_, tower_ws::Error>(())
    });
    let service = ServiceBuilder::new()
        .layer(
            UpgradeLayer::new(echo)
                .config(config)
                .allow_origin(AllowOrigin::any()),
        )
        .service_fn(|_: http::Request<hyper::body::Incoming>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
        });
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?.port());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            // No Nagle delays (the layer also sets it on the HTTP/1.1 connections it takes over).
            let _ = stream.set_nodelay(true);
            let service = hyper_util::service::TowerToHyperService::new(service.clone());
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades(),
            );
        }
    });
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while lines.next_line().await?.is_some() {
        println!("{} {}", resident_bytes()?, ALLOCATOR.current_usage());
    }
    Ok(())
}

/// `VmRSS` of this process, in bytes.
fn resident_bytes() -> Result<u64, BoxError> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .ok_or("no VmRSS in /proc/self/status")?;
    Ok(kib * 1024)
}

/// A running server process and its stats channel.
struct Server {
    child: tokio::process::Child,
    port: u16,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Server {
    async fn start(name: &str) -> Result<Self, BoxError> {
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .args(["serve", name])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let mut stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        let port = stdout.next_line().await?.ok_or("no port")?.parse()?;
        Ok(Self {
            child,
            port,
            stdin,
            stdout,
        })
    }

    /// (resident set, live heap) in bytes, once the server has settled.
    async fn stats(&mut self) -> Result<(u64, u64), BoxError> {
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.stdin.write_all(b"stats\n").await?;
        let line = self.stdout.next_line().await?.ok_or("server gone")?;
        let (rss, heap) = line.split_once(' ').ok_or("bad stats line")?;
        Ok((rss.parse()?, heap.parse()?))
    }
}

/// The message each socket sends once: one event of the chat sample, about 400 bytes.
fn probe_message() -> String {
    chat_event(&mut Rng(7), 1)
}

/// `message` as one masked, compressed text frame (RFC 7692: raw deflate, sync flush, trailer
/// removed), as a client with a fresh compressor sends it.
fn compressed_frame(message: &[u8]) -> Vec<u8> {
    let mut compressor = Compress::new(Compression::new(1), false);
    let mut payload = Vec::with_capacity(message.len() + 64);
    // Raw deflate into a Vec with room to spare cannot fail.
    let _ = compressor.compress_vec(message, &mut payload, FlushCompress::Sync);
    payload.truncate(payload.len().saturating_sub(4));
    let mut frame = vec![0xc1]; // FIN, RSV1, text
    if let Some(n) = u8::try_from(payload.len()).ok().filter(|&n| n < 126) {
        frame.push(0x80 | n);
    } else {
        frame.push(0x80 | 0x7e); // a 16-bit length follows
        let len = u16::try_from(payload.len()).unwrap_or(u16::MAX);
        frame.extend_from_slice(&len.to_be_bytes());
    }
    let key = [0x12, 0x34, 0x56, 0x78];
    frame.extend_from_slice(&key);
    frame.extend(payload.iter().zip(key.iter().cycle()).map(|(b, k)| b ^ k));
    frame
}

/// Opens a socket through the layer, offering permessage-deflate; returns it and whether the
/// server accepted the offer.
async fn open(port: u16) -> Result<(TcpStream, bool), BoxError> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await?;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let byte = tcp.read_u8().await?;
        head.push(byte);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    if !head.starts_with("http/1.1 101") {
        return Err(format!("no upgrade: {head}").into());
    }
    Ok((tcp, head.contains("permessage-deflate")))
}

/// Sends `frame` and reads the echoed frame (unmasked, whatever its length).
async fn exchange(tcp: &mut TcpStream, frame: &[u8]) -> Result<(), BoxError> {
    tcp.write_all(frame).await?;
    let mut header = [0_u8; 2];
    tcp.read_exact(&mut header).await?;
    let len = match header[1] & 0x7f {
        126 => u64::from(tcp.read_u16().await?),
        127 => tcp.read_u64().await?,
        n => u64::from(n),
    };
    let mut payload = vec![0_u8; usize::try_from(len)?];
    tcp.read_exact(&mut payload).await?;
    Ok(())
}

async fn memory(sockets: usize) -> Result<(), BoxError> {
    let message = probe_message();
    let plain = {
        let mut frame = vec![0x81, 0x80 | 0x7e]; // FIN, text; masked, a 16-bit length follows
        frame.extend_from_slice(&u16::try_from(message.len())?.to_be_bytes());
        frame.extend_from_slice(&[0; 4]); // a zero mask leaves the payload as it is
        frame.extend_from_slice(message.as_bytes());
        frame
    };
    let compressed = compressed_frame(message.as_bytes());
    println!(
        "{sockets} idle sockets per setting; probe message {} bytes ({} compressed); growth per socket over a warmed-up server:",
        message.len(),
        compressed.len() - 8
    );
    println!(
        "| setting | after the handshake: RSS | heap | after one message each way: RSS | heap |"
    );
    println!("|---|---:|---:|---:|---:|");
    for name in SETTINGS {
        let mut server = Server::start(name).await?;
        // Warm up: the runtime, hyper, the allocator's arenas and, for deflate, the per-thread
        // spare zlib state that sides without context takeover borrow.
        for _ in 0..20 {
            let (mut tcp, negotiated) = open(server.port).await?;
            exchange(&mut tcp, if negotiated { &compressed } else { &plain }).await?;
        }
        let (rss0, heap0) = server.stats().await?;
        let mut open_sockets = Vec::with_capacity(sockets);
        for _ in 0..sockets {
            open_sockets.push(open(server.port).await?);
        }
        let (rss1, heap1) = server.stats().await?;
        for (tcp, negotiated) in &mut open_sockets {
            exchange(tcp, if *negotiated { &compressed } else { &plain }).await?;
        }
        let (rss2, heap2) = server.stats().await?;
        let negotiated = open_sockets.iter().all(|(_, n)| *n);
        let per = |after: u64, before: u64| {
            let bytes = float(after.saturating_sub(before)) / float(count(sockets));
            format!("{:.2} KiB", bytes / 1024.0)
        };
        println!(
            "| {name}{} | {} | {} | {} | {} |",
            if negotiated { "" } else { " (not negotiated)" },
            per(rss1, rss0),
            per(heap1, heap0),
            per(rss2, rss0),
            per(heap2, heap0),
        );
        std::io::stdout().flush()?;
        drop(open_sockets);
        drop(server.stdin);
        let _ = server.child.wait().await;
    }
    Ok(())
}

// ----- ratio ----------------------------------------------------------------------------------

/// xorshift64*: the samples are the same on every run and machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[usize::try_from(self.below(count(items.len()))).unwrap_or(0)]
    }
}

const WORDS: &[&str] = &[
    "the", "build", "is", "green", "again", "can", "you", "review", "my", "pull", "request",
    "deploy", "at", "five", "lunch", "meeting", "moved", "to", "tomorrow", "thanks", "looks",
    "good", "ship", "it", "who", "owns", "this", "service", "latency", "spiked", "after", "the",
    "release", "rolling", "back", "now", "fixed", "in", "main", "please", "rebase", "on", "top",
    "of", "that", "branch", "😀", "👍", "café", "naïve",
];
const USERS: &[&str] = &[
    "ada", "grace", "linus", "margaret", "dennis", "barbara", "ken", "frances", "edsger", "radia",
];

/// A chat event, shaped after a chat gateway's message-created dispatch: envelope, snowflake
/// ids, an author object, a sentence from a word list, timestamps. 350 to 450 bytes.
fn chat_event(rng: &mut Rng, seq: u64) -> String {
    let user = rng.pick(USERS);
    let words = 3 + rng.below(14);
    let mut content = String::new();
    for i in 0..words {
        if i > 0 {
            content.push(' ');
        }
        content.push_str(rng.pick(WORDS));
    }
    let id = 1_181_234_567_890_123_456 + seq * 4_194_304 + rng.below(4_194_304);
    let ms = seq * 1731 + rng.below(1000);
    format!(
        r#"{{"op":0,"t":"MESSAGE_CREATE","s":{seq},"d":{{"id":"{id}","channel_id":"1181234560000000{:03}","guild_id":"1181230000000000000","author":{{"id":"11812300000000{:05}","username":"{user}","global_name":"{}","avatar":"{:016x}{:016x}"}},"content":"{content}","timestamp":"2026-11-28T21:{:02}:{:02}.{:03}000+00:00","edited_timestamp":null,"mentions":[],"attachments":[],"embeds":[],"pinned":false,"tts":false,"type":0}}}}"#,
        rng.below(8),
        user.len() * 7919 % 100_000,
        user.to_uppercase(),
        count(user.len()).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        u64::from(user.as_bytes()[0]).wrapping_mul(0xc2b2_ae3d_27d4_eb4f),
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000,
    )
}

/// A market-data ticker, shaped after an exchange's public ticker channel: prices and sizes as
/// strings, a sequence number, a trade id and a timestamp. About 300 bytes.
fn ticker_event(rng: &mut Rng, seq: u64, price: &mut u64) -> String {
    *price = (*price + rng.below(2001))
        .saturating_sub(1000)
        .max(1_000_000);
    let side = if rng.below(2) == 0 { "buy" } else { "sell" };
    let last_size = rng.below(5_000_000);
    let ms = seq * 97 + rng.below(97);
    format!(
        r#"{{"type":"ticker","sequence":{},"product_id":"BTC-USD","price":"{}.{:02}","open_24h":"96512.33","volume_24h":"{}.{:08}","low_24h":"95110.01","high_24h":"97950.00","best_bid":"{}.{:02}","best_bid_size":"0.{:08}","best_ask":"{}.{:02}","best_ask_size":"0.{:08}","side":"{side}","time":"2026-11-28T21:{:02}:{:02}.{:06}Z","trade_id":{},"last_size":"0.{last_size:08}"}}"#,
        90_000_000_000 + seq * 3 + rng.below(3),
        *price / 100,
        *price % 100,
        14_000 + seq / 10,
        rng.below(100_000_000),
        (*price - 1) / 100,
        (*price - 1) % 100,
        rng.below(100_000_000),
        (*price + 1) / 100,
        (*price + 1) % 100,
        rng.below(100_000_000),
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000 * 1000,
        700_000_000 + seq,
    )
}

/// One page of an API's list endpoint, shaped after a code host's issue list: 100 issues with
/// URLs that share prefixes, a user object, labels, dates and a body of a few sentences. About
/// 200 KB.
fn api_page(rng: &mut Rng) -> String {
    let mut out = String::from("[");
    for n in 0..100_u64 {
        if n > 0 {
            out.push(',');
        }
        let number = 4100 + n;
        let user = rng.pick(USERS);
        let mut body = String::new();
        for _ in 0..(20 + rng.below(200)) {
            body.push_str(rng.pick(WORDS));
            body.push(' ');
        }
        let labels: Vec<String> = (0..rng.below(4))
            .map(|_| {
                let name = rng.pick(&[
                    "bug",
                    "enhancement",
                    "docs",
                    "performance",
                    "good first issue",
                ]);
                format!(
                    r#"{{"id":{},"name":"{name}","color":"{:06x}","default":false}}"#,
                    rng.below(1_000_000_000),
                    rng.below(0x00ff_ffff)
                )
            })
            .collect();
        let _ = write!(
            out,
            r#"{{"url":"https://api.example.com/repos/tower-ws/tower-ws/issues/{number}","repository_url":"https://api.example.com/repos/tower-ws/tower-ws","labels_url":"https://api.example.com/repos/tower-ws/tower-ws/issues/{number}/labels{{/name}}","comments_url":"https://api.example.com/repos/tower-ws/tower-ws/issues/{number}/comments","html_url":"https://example.com/tower-ws/tower-ws/issues/{number}","id":{},"number":{number},"title":"{} {} {}","user":{{"login":"{user}","id":{},"avatar_url":"https://avatars.example.com/u/{}?v=4","type":"User","site_admin":false}},"labels":[{}],"state":"{}","locked":false,"comments":{},"created_at":"2026-{:02}-{:02}T{:02}:{:02}:{:02}Z","updated_at":"2026-11-{:02}T{:02}:{:02}:{:02}Z","closed_at":null,"author_association":"CONTRIBUTOR","body":"{}"}}"#,
            2_000_000_000 + rng.below(100_000_000),
            rng.pick(WORDS),
            rng.pick(WORDS),
            rng.pick(WORDS),
            user.len() * 1_000_003,
            user.len() * 1_000_003,
            labels.join(","),
            if rng.below(3) == 0 { "closed" } else { "open" },
            rng.below(40),
            1 + rng.below(11),
            1 + rng.below(28),
            rng.below(24),
            rng.below(60),
            rng.below(60),
            1 + rng.below(28),
            rng.below(24),
            rng.below(60),
            rng.below(60),
            body.trim_end(),
        );
    }
    out.push(']');
    out
}

/// An IO that counts what is written to it and never has anything to read.
#[derive(Debug, Default)]
struct Wire {
    written: u64,
}

impl AsyncRead for Wire {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Poll::Pending
    }
}

impl AsyncWrite for Wire {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.written += count(buf.len());
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Bytes on the wire for `messages` sent by a server with `deflate` (`None`: uncompressed).
async fn wire_bytes(messages: &[String], deflate: Option<(DeflateConfig, DeflateParams)>) -> u64 {
    let mut socket = WebSocket::new(Wire::default(), Role::Server, Config::default());
    if let Some((config, params)) = deflate {
        socket = WebSocket::new(
            Wire::default(),
            Role::Server,
            Config::default().deflate(config),
        )
        .with_deflate(params);
    }
    for message in messages {
        // Writes to `Wire` never fail or wait.
        let _ = socket.send(Message::text(message.as_str())).await;
    }
    let _ = socket.flush().await;
    socket.get_ref().written
}

async fn ratio() -> Result<(), BoxError> {
    let mut rng = Rng(0x5eed);
    let chat: Vec<String> = (0..2000).map(|i| chat_event(&mut rng, i)).collect();
    let mut price = 9_650_000;
    let ticker: Vec<String> = (0..2000)
        .map(|i| ticker_event(&mut rng, i, &mut price))
        .collect();
    let page: Vec<String> = (0..10).map(|_| api_page(&mut rng)).collect();
    let takeover = DeflateParams::default();
    let no_takeover = DeflateParams {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        ..DeflateParams::default()
    };
    let settings: [(&str, Option<(DeflateConfig, DeflateParams)>); 7] = [
        ("off", None),
        (
            "default (level 1, context takeover)",
            Some((DeflateConfig::default(), takeover)),
        ),
        (
            "level 2, context takeover",
            Some((DeflateConfig::default().level(2), takeover)),
        ),
        (
            "level 6, context takeover",
            Some((DeflateConfig::default().level(6), takeover)),
        ),
        (
            "low_memory (level 1, no context takeover)",
            Some((DeflateConfig::low_memory(), no_takeover)),
        ),
        (
            "level 6, no context takeover",
            Some((DeflateConfig::low_memory().level(6), no_takeover)),
        ),
        (
            "level 1, context takeover, 4 KiB window (server_max_window_bits 12)",
            Some((
                DeflateConfig::default().server_max_window_bits(12),
                DeflateParams {
                    server_max_window_bits: 12,
                    ..takeover
                },
            )),
        ),
    ];
    let samples: [(&str, &[String]); 3] = [
        ("chat: 2000 events", &chat),
        ("ticker: 2000 events", &ticker),
        ("API pages: 10 messages", &page),
    ];
    let mut header = String::from("| setting |");
    let mut rule = String::from("|---|");
    for (name, messages) in &samples {
        let bytes: usize = messages.iter().map(String::len).sum();
        let _ = write!(
            header,
            " {name}, {:.0} bytes each |",
            float(count(bytes)) / float(count(messages.len()))
        );
        rule.push_str("---:|");
    }
    println!("wire bytes over payload bytes (frame headers included; lower is better):");
    println!("{header}\n{rule}");
    for (name, deflate) in settings {
        let mut row = format!("| {name} |");
        for (_, messages) in &samples {
            let payload: usize = messages.iter().map(String::len).sum();
            let mut best = Duration::MAX;
            let mut wire = 0;
            for _ in 0..7 {
                let started = std::time::Instant::now();
                wire = wire_bytes(messages, deflate).await;
                best = best.min(started.elapsed());
            }
            let mbps = float(count(payload)) / best.as_secs_f64() / 1e6;
            let _ = write!(
                row,
                " {:.3} ({:.1}x, {mbps:.0} MB/s) |",
                float(wire) / float(count(payload)),
                float(count(payload)) / float(wire)
            );
        }
        println!("{row}");
    }
    println!("\none event of each sample:\n{}\n{}", chat[0], ticker[0]);
    Ok(())
}
