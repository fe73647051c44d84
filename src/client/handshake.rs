//! The client side of the opening handshake (RFC 6455 section 4.1): the request, the exchange
//! over hyper's HTTP/1.1 client connection, and the checks on the answer.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::uri::{PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use super::builder::ClientBuilder;
use super::rejected::HandshakeRejected;
use crate::error::{Error, Result};
use crate::handshake::key::{accept_value, generate_key};
use crate::proto::{Config, Role, WebSocket};

/// How long the start of a refusal's body may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(1);

/// Where a handshake goes, taken from its URL.
#[derive(Debug)]
pub(super) struct Target {
    secure: bool,
    /// The host without IPv6 brackets, for connecting and for TLS.
    host: Box<str>,
    port: u16,
    host_header: HeaderValue,
    path: Uri,
}

impl Target {
    pub(super) fn parse<U>(uri: U) -> Result<Self>
    where
        U: TryInto<Uri>,
        U::Error: Into<http::Error>,
    {
        let uri: Uri = uri
            .try_into()
            .map_err(|e| Error::handshake("invalid URL").with_source(e.into()))?;
        let secure = match uri.scheme() {
            Some(s) if *s == Scheme::HTTP => false,
            Some(s) if *s == Scheme::HTTPS => true,
            Some(s) if s.as_str().eq_ignore_ascii_case("ws") => false,
            Some(s) if s.as_str().eq_ignore_ascii_case("wss") => true,
            _ => return Err(Error::handshake("URL scheme is not ws, wss, http or https")),
        };
        let Some(authority) = uri.authority() else {
            return Err(Error::handshake("URL has no host"));
        };
        let host = authority.host();
        if host.is_empty() {
            return Err(Error::handshake("URL has no host"));
        }
        let default_port = if secure { 443 } else { 80 };
        let port = authority.port_u16().unwrap_or(default_port);
        // The authority without any user information; the port only when it is not the
        // scheme's default (RFC 6455 section 4.1, item 4).
        let host_header = if port == default_port {
            HeaderValue::from_str(host)
        } else {
            HeaderValue::from_str(&format!("{host}:{port}"))
        }
        .map_err(|e| Error::handshake("URL host is not a valid header value").with_source(e))?;
        let path = uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let path = Uri::from(if path.as_str().is_empty() {
            PathAndQuery::from_static("/")
        } else {
            path
        });
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        Ok(Self {
            secure,
            host: host.into(),
            port,
            host_header,
            path,
        })
    }

    pub(super) fn host(&self) -> &str {
        &self.host
    }

    pub(super) fn port(&self) -> u16 {
        self.port
    }

    pub(super) fn is_secure(&self) -> bool {
        self.secure
    }
}

/// Runs the handshake over `io` within the builder's handshake timeout.
pub(super) async fn run<Io>(
    io: Io,
    target: &Target,
    builder: &ClientBuilder,
) -> Result<(WebSocket<Io>, Response<()>)>
where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::time::timeout(builder.handshake_timeout, exchange(io, target, builder))
        .await
        .map_err(|_| Error::timeout("websocket handshake timed out"))?
}

async fn exchange<Io>(
    io: Io,
    target: &Target,
    builder: &ClientBuilder,
) -> Result<(WebSocket<Io>, Response<()>)>
where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let key = generate_key();
    let request = request(target, builder, &key);
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake::<_, Empty<Bytes>>(TokioIo::new(io))
        .await
        .map_err(hyper_error)?;
    let conn = pin!(conn.with_upgrades());
    let mut conn = Driver { conn, done: false };

    let mut response = conn
        .drive(sender.send_request(request))
        .await
        .and_then(|sent| sent)
        .map_err(hyper_error)?;

    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let body = conn.body_start(response.body_mut()).await;
        let (head, _) = response.into_parts();
        return Err(Error::handshake("server refused the websocket upgrade")
            .with_source(HandshakeRejected::new(head, body)));
    }
    let upgrade = hyper::upgrade::on(&mut response);
    let (head, _) = response.into_parts();
    let checked = check(&head.headers, &key, &builder.protocols)
        .and_then(|()| extensions(&head.headers, &builder.config));
    let negotiated = match checked {
        Ok(negotiated) => negotiated,
        Err(what) => {
            return Err(
                Error::handshake(what).with_source(HandshakeRejected::new(head, Bytes::new()))
            );
        }
    };
    let upgraded = conn
        .drive(upgrade)
        .await
        .and_then(|upgraded| upgraded)
        .map_err(hyper_error)?;
    let parts = upgraded
        .downcast::<TokioIo<Io>>()
        .map_err(|_| Error::handshake("the upgraded connection is not the transport given"))?;
    let socket = WebSocket::from_partially_read(
        parts.io.into_inner(),
        BytesMut::from(parts.read_buf),
        Role::Client,
        builder.config,
    );
    Ok((negotiated.apply(socket), Response::from_parts(head, ())))
}

/// The handshake request (RFC 6455 section 4.1).
fn request(target: &Target, builder: &ClientBuilder, key: &HeaderValue) -> Request<Empty<Bytes>> {
    let mut headers = builder.headers.clone();
    if !headers.contains_key(header::HOST) {
        headers.insert(header::HOST, target.host_header.clone());
    }
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::SEC_WEBSOCKET_KEY, key.clone());
    headers.insert(
        header::SEC_WEBSOCKET_VERSION,
        HeaderValue::from_static("13"),
    );
    if let Some(origin) = &builder.origin {
        headers.insert(header::ORIGIN, origin.clone());
    }
    if let Some(protocols) = &builder.protocols_header {
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, protocols.clone());
    }
    #[cfg(feature = "deflate")]
    if let Some(deflate) = builder.config.get_deflate() {
        headers.insert(
            header::SEC_WEBSOCKET_EXTENSIONS,
            crate::handshake::deflate::offer(deflate),
        );
    }
    let mut request = Request::new(Empty::new());
    *request.uri_mut() = target.path.clone();
    *request.headers_mut() = headers;
    request
}

/// Checks a 101 answer's headers (RFC 6455 section 4.1, the client's checks 2 to 6); on
/// failure, names the check.
pub(crate) fn check(
    headers: &HeaderMap,
    key: &HeaderValue,
    offered: &[Box<str>],
) -> Result<(), &'static str> {
    let mut upgrade = tokens(headers, &header::UPGRADE);
    if !(upgrade
        .next()
        .is_some_and(|t| t.eq_ignore_ascii_case(b"websocket"))
        && upgrade.next().is_none())
    {
        return Err("server's answer lacks `Upgrade: websocket`");
    }
    if !tokens(headers, &header::CONNECTION).any(|t| t.eq_ignore_ascii_case(b"upgrade")) {
        return Err("server's answer lacks `Connection: upgrade`");
    }
    let mut accept = headers.get_all(header::SEC_WEBSOCKET_ACCEPT).iter();
    match (accept.next(), accept.next()) {
        (Some(value), None)
            if trim(value.as_bytes()) == accept_value(key.as_bytes()).as_bytes() => {}
        (None, _) => return Err("server's answer lacks `Sec-WebSocket-Accept`"),
        _ => return Err("server's `Sec-WebSocket-Accept` does not match the key sent"),
    }
    let mut protocol = tokens(headers, &header::SEC_WEBSOCKET_PROTOCOL);
    match (protocol.next(), protocol.next()) {
        (None, _) => {}
        (Some(chosen), None) if offered.iter().any(|p| p.as_bytes() == chosen) => {}
        (Some(_), None) => return Err("server chose a subprotocol that was not offered"),
        (Some(_), Some(_)) => return Err("server chose more than one subprotocol"),
    }
    Ok(())
}

/// What the server's `Sec-WebSocket-Extensions` answer turned on.
#[derive(Debug, Default)]
pub(crate) struct Negotiated {
    #[cfg(feature = "deflate")]
    pub(crate) deflate: Option<crate::proto::DeflateParams>,
}

impl Negotiated {
    /// Turns the negotiated extensions on for `socket`.
    #[cfg_attr(
        not(feature = "deflate"),
        expect(clippy::unused_self, reason = "deflate is the only extension")
    )]
    fn apply<Io>(self, socket: WebSocket<Io>) -> WebSocket<Io> {
        #[cfg(feature = "deflate")]
        if let Some(params) = self.deflate {
            return socket.with_deflate(params);
        }
        socket
    }
}

/// Checks the server's `Sec-WebSocket-Extensions` against what we offered (RFC 6455 section
/// 4.1, check 5): permessage-deflate if the config asks for it, nothing otherwise.
pub(crate) fn extensions(headers: &HeaderMap, config: &Config) -> Result<Negotiated, &'static str> {
    #[cfg(feature = "deflate")]
    if let Some(deflate) = config.get_deflate() {
        use crate::handshake::deflate::{AnswerError, check_answer};
        let answer = check_answer(headers.get_all(header::SEC_WEBSOCKET_EXTENSIONS), deflate);
        return answer
            .map(|deflate| Negotiated { deflate })
            .map_err(|e| match e {
                AnswerError::Malformed => "server's `Sec-WebSocket-Extensions` is malformed",
                AnswerError::Unexpected => "server chose an extension that was not offered",
                AnswerError::BadParameter => {
                    "server answered permessage-deflate with a parameter we did not offer or \
                     cannot honour"
                }
            });
    }
    #[cfg(not(feature = "deflate"))]
    let _ = config;
    if tokens(headers, &header::SEC_WEBSOCKET_EXTENSIONS)
        .next()
        .is_some()
    {
        return Err("server chose an extension that was not offered");
    }
    Ok(Negotiated::default())
}

/// The comma-separated elements of every value of header `name`, trimmed, empty ones skipped.
fn tokens<'a>(
    headers: &'a HeaderMap,
    name: &header::HeaderName,
) -> impl Iterator<Item = &'a [u8]> + use<'a> {
    headers
        .get_all(name)
        .into_iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .map(trim)
        .filter(|t| !t.is_empty())
}

/// `bytes` without leading and trailing spaces and tabs (HTTP's optional whitespace).
fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
}

fn hyper_error(e: hyper::Error) -> Error {
    let what = if e.is_parse() || e.is_parse_status() {
        "server's answer is not valid HTTP/1.1"
    } else if e.is_incomplete_message() || e.is_closed() || e.is_canceled() {
        "connection closed before the server answered"
    } else {
        "handshake request failed"
    };
    Error::handshake(what).with_source(e)
}

/// Drives hyper's connection future alongside the futures that wait on it (the response, its
/// body, the upgrade), in the caller's task.
struct Driver<'a, C> {
    conn: Pin<&'a mut C>,
    /// The connection future has completed (it must not be polled again).
    done: bool,
}

impl<C: Future<Output = hyper::Result<()>>> Driver<'_, C> {
    /// Runs `fut` to completion while driving the connection; fails if the connection fails
    /// first.
    async fn drive<T>(&mut self, fut: impl Future<Output = T>) -> hyper::Result<T> {
        let mut fut = pin!(fut);
        poll_fn(|cx| {
            if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                return Poll::Ready(Ok(out));
            }
            if !self.done
                && let Poll::Ready(result) = self.conn.as_mut().poll(cx)
            {
                self.done = true;
                result?;
                // The connection handed over the upgrade or shut down: whatever `fut` waits
                // for is now settled or will be woken.
                return fut.as_mut().poll(cx).map(Ok);
            }
            Poll::Pending
        })
        .await
    }

    /// The start of a refusal's body: what arrives of the first
    /// [`HandshakeRejected::BODY_LIMIT`] bytes within [`BODY_TIMEOUT`].
    async fn body_start(&mut self, body: &mut Incoming) -> Bytes {
        let limit = HandshakeRejected::BODY_LIMIT;
        let mut buf = BytesMut::new();
        let read = async {
            while buf.len() < limit {
                match body.frame().await {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            let take = data.len().min(limit - buf.len());
                            buf.extend_from_slice(data.get(..take).unwrap_or_default());
                        }
                    }
                    Some(Err(_)) | None => break,
                }
            }
        };
        let _ = tokio::time::timeout(BODY_TIMEOUT, self.drive(read)).await;
        buf.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    fn answer(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    fn good() -> Vec<(&'static str, &'static str)> {
        vec![
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-accept", ACCEPT),
        ]
    }

    fn check_with(pairs: &[(&str, &str)], offered: &[&str]) -> Result<(), &'static str> {
        let offered: Vec<Box<str>> = offered.iter().map(|&p| p.into()).collect();
        check(&answer(pairs), &HeaderValue::from_static(KEY), &offered)
    }

    #[test]
    fn accepts_the_rfc_sample_answer_in_any_case_and_with_extra_tokens() {
        assert_eq!(check_with(&good(), &[]), Ok(()));
        let answer = [
            ("upgrade", " WebSocket "),
            ("connection", "keep-alive, UPGRADE"),
            ("sec-websocket-accept", ACCEPT),
        ];
        assert_eq!(check_with(&answer, &[]), Ok(()));
        let split = [
            ("upgrade", "websocket"),
            ("connection", "keep-alive"),
            ("connection", "upgrade"),
            ("sec-websocket-accept", ACCEPT),
        ];
        assert_eq!(check_with(&split, &[]), Ok(()));
    }

    #[test]
    fn refuses_an_answer_without_upgrade_websocket() {
        let mut a = good();
        a.remove(0);
        assert!(check_with(&a, &[]).unwrap_err().contains("Upgrade"));
        let mut a = good();
        a[0].1 = "h2c";
        assert!(check_with(&a, &[]).unwrap_err().contains("Upgrade"));
        let mut a = good();
        a[0].1 = "websocket, h2c";
        assert!(check_with(&a, &[]).unwrap_err().contains("Upgrade"));
    }

    #[test]
    fn refuses_an_answer_without_connection_upgrade() {
        let mut a = good();
        a[1].1 = "keep-alive";
        assert!(check_with(&a, &[]).unwrap_err().contains("Connection"));
        a.remove(1);
        assert!(check_with(&a, &[]).unwrap_err().contains("Connection"));
    }

    #[test]
    fn refuses_a_missing_wrong_or_repeated_accept_value() {
        let mut a = good();
        a.remove(2);
        assert!(check_with(&a, &[]).unwrap_err().contains("lacks"));
        let mut a = good();
        a[2].1 = "AAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        assert!(check_with(&a, &[]).unwrap_err().contains("does not match"));
        let mut a = good();
        a.push(("sec-websocket-accept", ACCEPT));
        assert!(check_with(&a, &[]).unwrap_err().contains("does not match"));
    }

    #[test]
    fn refuses_any_extension_it_did_not_offer() {
        let mut a = good();
        a.push(("sec-websocket-extensions", "permessage-deflate"));
        let err = extensions(&answer(&a), &Config::default()).unwrap_err();
        assert!(err.contains("extension"));
    }

    #[test]
    fn accepts_only_one_offered_subprotocol() {
        let mut a = good();
        a.push(("sec-websocket-protocol", "chat"));
        assert_eq!(check_with(&a, &["superchat", "chat"]), Ok(()));
        assert!(check_with(&a, &[]).unwrap_err().contains("not offered"));
        assert!(
            check_with(&a, &["Chat"])
                .unwrap_err()
                .contains("not offered")
        );
        let mut a = good();
        a.push(("sec-websocket-protocol", "chat, superchat"));
        assert!(
            check_with(&a, &["chat", "superchat"])
                .unwrap_err()
                .contains("more than one")
        );
        // Choosing none of those offered is allowed.
        assert_eq!(check_with(&good(), &["chat"]), Ok(()));
    }

    #[test]
    fn takes_host_port_and_path_from_the_url() {
        let t = Target::parse("ws://example.com/chat?room=1").unwrap();
        assert_eq!(
            (t.host(), t.port(), t.is_secure()),
            ("example.com", 80, false)
        );
        assert_eq!(t.host_header, "example.com");
        assert_eq!(t.path, "/chat?room=1");

        let t = Target::parse("wss://user:pw@example.com:8443").unwrap();
        assert_eq!(
            (t.host(), t.port(), t.is_secure()),
            ("example.com", 8443, true)
        );
        assert_eq!(t.host_header, "example.com:8443");
        assert_eq!(t.path, "/");

        let t = Target::parse("ws://[::1]:9001/x").unwrap();
        assert_eq!((t.host(), t.port()), ("::1", 9001));
        assert_eq!(t.host_header, "[::1]:9001");

        let t = Target::parse("https://example.com:443/").unwrap();
        assert_eq!((t.port(), t.is_secure()), (443, true));
        assert_eq!(t.host_header, "example.com");
    }

    #[test]
    fn refuses_urls_it_cannot_connect_to() {
        for bad in [
            "/chat",
            "ftp://example.com/",
            "example.com:80",
            "ws://",
            "not a url",
        ] {
            let err = Target::parse(bad).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Handshake, "{bad}");
        }
    }

    #[test]
    fn request_carries_every_handshake_header() {
        let target = Target::parse("ws://example.com:8080/chat").unwrap();
        let builder = ClientBuilder::new()
            .protocols(["a", "b"])
            .unwrap()
            .origin(HeaderValue::from_static("https://example.com"))
            .header(header::COOKIE, HeaderValue::from_static("id=1"))
            .unwrap();
        let key = HeaderValue::from_static(KEY);
        let req = request(&target, &builder, &key);
        assert_eq!(req.method(), http::Method::GET);
        assert_eq!(req.uri(), "/chat");
        let h = req.headers();
        assert_eq!(h[header::HOST], "example.com:8080");
        assert_eq!(h[header::UPGRADE], "websocket");
        assert_eq!(h[header::CONNECTION], "Upgrade");
        assert_eq!(h[header::SEC_WEBSOCKET_KEY], KEY);
        assert_eq!(h[header::SEC_WEBSOCKET_VERSION], "13");
        assert_eq!(h[header::SEC_WEBSOCKET_PROTOCOL], "a, b");
        assert_eq!(h[header::ORIGIN], "https://example.com");
        assert_eq!(h[header::COOKIE], "id=1");

        let builder = ClientBuilder::new()
            .header(header::HOST, HeaderValue::from_static("virtual.test"))
            .unwrap();
        assert_eq!(
            request(&target, &builder, &key).headers()[header::HOST],
            "virtual.test"
        );
    }
}
