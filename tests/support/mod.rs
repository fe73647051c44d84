//! Helpers shared by the integration tests: loopback socket pairs, a raw frame codec that does
//! not use the crate (so tests check the wire, not our own encoder), a seeded RNG and timeouts.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::future::Future;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower_ws::{Config, Role, WebSocket};

/// Runs `fut`, failing the test if it takes longer than `secs`.
pub async fn within<F: Future>(secs: u64, fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .expect("test step timed out")
}

/// A connected loopback TCP pair: (client end, server end).
pub async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let client = client.unwrap();
    let (server, _) = accepted.unwrap();
    client.set_nodelay(true).unwrap();
    server.set_nodelay(true).unwrap();
    (client, server)
}

/// A loopback pair of our own sockets: (client role, server role).
pub async fn ws_pair(config: Config) -> (WebSocket<TcpStream>, WebSocket<TcpStream>) {
    let (c, s) = tcp_pair().await;
    (
        WebSocket::new(c, Role::Client, config),
        WebSocket::new(s, Role::Server, config),
    )
}

/// Encodes one frame by hand (RFC 6455 section 5.2).
pub fn frame(fin: bool, rsv: u8, opcode: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | (rsv << 4) | opcode];
    push_length(&mut out, mask.is_some(), payload.len() as u64);
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// Appends the mask bit and a payload length in its shortest encoding.
pub fn push_length(out: &mut Vec<u8>, masked: bool, len: u64) {
    let mask_bit = if masked { 0x80 } else { 0 };
    if let Ok(short @ 0..=125) = u8::try_from(len) {
        out.push(mask_bit | short);
    } else if let Ok(medium) = u16::try_from(len) {
        out.push(mask_bit | 0x7e);
        out.extend_from_slice(&medium.to_be_bytes());
    } else {
        out.push(mask_bit | 0x7f);
        out.extend_from_slice(&len.to_be_bytes());
    }
}

/// A frame as a client sends it (masked with a fixed key).
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(fin, 0, opcode, Some([0x0f, 0x1e, 0x2d, 0x3c]), payload)
}

/// A close payload: code then reason.
pub fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

/// A frame read off the wire by [`read_frame`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    pub masked: bool,
    pub payload: Vec<u8>,
}

impl RawFrame {
    /// The close code, for a close frame with one.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == 8 && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// Reads one frame by hand; `None` at end of stream (or a reset).
pub async fn read_frame(tcp: &mut TcpStream) -> Option<RawFrame> {
    let mut head = [0_u8; 2];
    tcp.read_exact(&mut head).await.ok()?;
    let masked = head[1] & 0x80 != 0;
    let len = match head[1] & 0x7f {
        126 => {
            let mut b = [0; 2];
            tcp.read_exact(&mut b).await.ok()?;
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0; 8];
            tcp.read_exact(&mut b).await.ok()?;
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    let mut key = [0; 4];
    if masked {
        tcp.read_exact(&mut key).await.ok()?;
    }
    let mut payload = vec![0; usize::try_from(len).ok()?];
    tcp.read_exact(&mut payload).await.ok()?;
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }
    Some(RawFrame {
        fin: head[0] & 0x80 != 0,
        rsv: (head[0] >> 4) & 7,
        opcode: head[0] & 0x0f,
        masked,
        payload,
    })
}

/// Reads frames until a close frame (returned) or the end of the stream (`None`).
pub async fn read_until_close(tcp: &mut TcpStream) -> Option<RawFrame> {
    loop {
        let f = read_frame(tcp).await?;
        if f.opcode == 8 {
            return Some(f);
        }
    }
}

/// Whether the peer closed the TCP connection (end of stream or reset) within `secs`.
pub async fn sees_eof(tcp: &mut TcpStream, secs: u64) -> bool {
    let mut buf = [0_u8; 1024];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// Writes raw bytes, ignoring a peer that already closed.
pub async fn write_raw(tcp: &mut TcpStream, bytes: &[u8]) {
    let _ = tcp.write_all(bytes).await;
}

/// xorshift64*: a small seeded generator, so random tests replay exactly.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next_u64() % n as u64).expect("below n")
    }

    pub fn byte(&mut self) -> u8 {
        self.next_u64().to_le_bytes()[0]
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.byte()).collect()
    }

    /// Valid UTF-8 text of exactly `len` bytes, mixing 1- to 4-byte characters.
    pub fn text(&mut self, len: usize) -> String {
        const CHARS: &[char] = &[
            'a', 'Z', '0', ' ', 'é', 'ß', 'κ', '€', '✓', '日', '本', '🦀', '𝄞',
        ];
        let mut s = String::with_capacity(len);
        while s.len() + 4 <= len {
            s.push(CHARS[self.below(CHARS.len())]);
        }
        while s.len() < len {
            s.push('.');
        }
        s
    }
}
