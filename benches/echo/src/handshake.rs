//! The HTTP/1.1 opening handshake, written by hand on both sides: the load generator's request
//! and its check of the answer, and the bare-`TcpStream` server's parsing of the request (the
//! tower-ws engine starts after the handshake, so that server needs its own).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::BytesMut;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::Failure;

/// The GUID RFC 6455 appends to the key before hashing.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The largest request or response head either side accepts.
const MAX_HEAD: usize = 8 << 10;

/// `Sec-WebSocket-Accept` for `key`: base64(SHA-1(key + GUID)).
pub(crate) fn accept_value(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID);
    STANDARD.encode(sha.finalize())
}

/// A `Sec-WebSocket-Key` for connection `n`: 16 bytes (not secret: it only has to be unique
/// enough for the server to hash), base64-encoded.
pub(crate) fn client_key(n: u64) -> String {
    let mut nonce = [0_u8; 16];
    nonce[..8].copy_from_slice(&n.to_le_bytes());
    nonce[8..].copy_from_slice(&n.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
    STANDARD.encode(nonce)
}

/// Reads from `stream` until a whole HTTP head (ending in an empty line) is in `buf`; returns
/// its length including the final `\r\n\r\n`.
async fn read_head(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<usize, Failure> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(end + 4);
        }
        if buf.len() >= MAX_HEAD {
            return Err(Failure::new("HTTP head larger than 8 KiB"));
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(Failure::new("connection closed during the handshake"));
        }
    }
}

/// The value of header `name` (ASCII case-insensitive) in `head`, trimmed.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// Whether comma-separated header `value` holds `token` (case-insensitive).
fn has_token(value: &str, token: &str) -> bool {
    value
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// The client side: sends the upgrade request for `key`, checks for a 101 with the right
/// `Sec-WebSocket-Accept`, and returns any bytes that followed the response head.
pub(crate) async fn client(
    stream: &mut TcpStream,
    host: &str,
    key: &str,
) -> Result<Vec<u8>, Failure> {
    client_at(stream, host, "/", key).await
}

/// As [`client`], for the resource `path`.
pub(crate) async fn client_at(
    stream: &mut TcpStream,
    host: &str,
    path: &str,
    key: &str,
) -> Result<Vec<u8>, Failure> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut buf = BytesMut::with_capacity(1024);
    let end = read_head(stream, &mut buf).await?;
    let head =
        std::str::from_utf8(&buf[..end]).map_err(|_| Failure::new("response head is not UTF-8"))?;
    let status = head.split("\r\n").next().unwrap_or_default();
    if !status.starts_with("HTTP/1.1 101") {
        return Err(Failure::new(format!(
            "expected a 101 response, got {status:?}"
        )));
    }
    let expected = accept_value(key.as_bytes());
    match header(head, "sec-websocket-accept") {
        Some(value) if value == expected => Ok(buf[end..].to_vec()),
        other => Err(Failure::new(format!(
            "Sec-WebSocket-Accept {other:?}, expected {expected:?}"
        ))),
    }
}

/// The server side, for servers without an HTTP stack: reads the upgrade request, answers 101,
/// and returns the bytes that followed the request head (empty, holding no allocation, when
/// nothing did).
pub(crate) async fn server(stream: &mut TcpStream) -> Result<BytesMut, Failure> {
    let mut buf = BytesMut::with_capacity(1024);
    let end = read_head(stream, &mut buf).await?;
    let head =
        std::str::from_utf8(&buf[..end]).map_err(|_| Failure::new("request head is not UTF-8"))?;
    let upgrade = head.starts_with("GET ")
        && header(head, "upgrade").is_some_and(|v| has_token(v, "websocket"))
        && header(head, "connection").is_some_and(|v| has_token(v, "upgrade"))
        && header(head, "sec-websocket-version") == Some("13");
    let key = header(head, "sec-websocket-key").filter(|_| upgrade);
    let Some(key) = key else {
        stream
            .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            .await?;
        return Err(Failure::new("not a WebSocket upgrade request"));
    };
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        accept_value(key.as_bytes())
    );
    stream.write_all(response.as_bytes()).await?;
    // Hand over only what followed the head, in its own allocation: a view into `buf` would
    // keep the whole handshake buffer alive for the life of the connection.
    Ok(if buf.len() > end {
        BytesMut::from(&buf[end..])
    } else {
        BytesMut::new()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_value_matches_the_rfc_6455_sample() {
        assert_eq!(
            accept_value(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn client_keys_are_16_bytes_in_base64() {
        let key = client_key(7);
        assert_eq!(key.len(), 24);
        assert_eq!(STANDARD.decode(&key).unwrap().len(), 16);
        assert_ne!(key, client_key(8));
    }

    #[test]
    fn header_lookup_ignores_case_and_trims() {
        let head =
            "GET / HTTP/1.1\r\nSec-WebSocket-Key:  abc \r\nConnection: keep-alive, Upgrade\r\n\r\n";
        assert_eq!(header(head, "sec-websocket-key"), Some("abc"));
        assert!(has_token(header(head, "connection").unwrap(), "upgrade"));
        assert_eq!(header(head, "upgrade"), None);
    }
}
