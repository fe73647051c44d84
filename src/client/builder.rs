//! [`ClientBuilder`]: what a client offers, and its two ways in.

use std::fmt;
#[cfg(feature = "rustls")]
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Response, Uri, header};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::handshake::{self, Target};
use super::io::ClientIo;
use crate::error::{ConfigError, Error, Result};
use crate::proto::{Config, WebSocket};

/// Builds client connections: what to offer the server, and how long to wait for it.
///
/// One builder serves any number of connections; [`connect`](Self::connect) and
/// [`handshake`](Self::handshake) take `&self`.
///
/// ```no_run
/// use std::time::Duration;
/// use tower_ws::{ClientBuilder, Config, Message};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let client = ClientBuilder::new()
///     .protocols(["chat.v2", "chat.v1"])?
///     .origin("https://example.com".parse()?)
///     .header("authorization".parse()?, "Bearer 42".parse()?)?
///     .config(Config::default().max_message_size(1 << 20))
///     .handshake_timeout(Duration::from_secs(5));
///
/// let (mut ws, response) = client.connect("ws://127.0.0.1:9001/chat").await?;
/// let protocol = response.headers().get("sec-websocket-protocol");
/// println!("connected, subprotocol {protocol:?}");
/// ws.send(Message::text("hello")).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
#[must_use]
pub struct ClientBuilder {
    pub(super) protocols: Vec<Box<str>>,
    pub(super) protocols_header: Option<HeaderValue>,
    pub(super) origin: Option<HeaderValue>,
    pub(super) headers: HeaderMap,
    pub(super) config: Config,
    connect_timeout: Duration,
    pub(super) handshake_timeout: Duration,
    #[cfg(feature = "rustls")]
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ClientBuilder");
        d.field("protocols", &self.protocols)
            .field("origin", &self.origin)
            .field("headers", &self.headers)
            .field("config", &self.config)
            .field("connect_timeout", &self.connect_timeout)
            .field("handshake_timeout", &self.handshake_timeout);
        #[cfg(feature = "rustls")]
        d.field("custom_tls_config", &self.tls.is_some());
        d.finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// A builder that offers no subprotocol, sends no `Origin` and no extra header, and uses
    /// the default [`Config`] and timeouts.
    pub fn new() -> Self {
        Self {
            protocols: Vec::new(),
            protocols_header: None,
            origin: None,
            headers: HeaderMap::new(),
            config: Config::default(),
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            #[cfg(feature = "rustls")]
            tls: None,
        }
    }

    /// The subprotocols to offer in `Sec-WebSocket-Protocol`, in order of preference
    /// (replacing any set before).
    ///
    /// Default: none. The server may pick one of them or none; an answer naming any other
    /// fails the handshake. The one picked is in the response head's
    /// `Sec-WebSocket-Protocol` header.
    ///
    /// # Errors
    ///
    /// A name that is not an HTTP token (RFC 9110 section 5.6.2: no spaces, commas or other
    /// separators), or a name given twice.
    pub fn protocols<I>(mut self, protocols: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let mut names: Vec<Box<str>> = Vec::new();
        for name in protocols {
            let name = name.as_ref();
            if !is_token(name) {
                return Err(ConfigError::new("subprotocol is not an HTTP token", name));
            }
            if names.iter().any(|n| **n == *name) {
                return Err(ConfigError::new("subprotocol offered twice", name));
            }
            names.push(name.into());
        }
        self.protocols_header = if names.is_empty() {
            None
        } else {
            let joined = names.join(", ");
            let value = HeaderValue::try_from(joined.as_str())
                .map_err(|_| ConfigError::new("subprotocol is not an HTTP token", joined))?;
            Some(value)
        };
        self.protocols = names;
        Ok(self)
    }

    /// The `Origin` header to send.
    ///
    /// Default: none. Browsers always send one; servers that check it refuse a missing or
    /// foreign origin, usually with 403.
    pub fn origin(mut self, origin: HeaderValue) -> Self {
        self.origin = Some(origin);
        self
    }

    /// Adds a header to the handshake request, e.g. `Authorization` or `Cookie`. Adding a
    /// name twice sends it twice. A `Host` given here replaces the one taken from the URL.
    ///
    /// # Errors
    ///
    /// Headers the handshake sets itself are refused: `Connection`, `Upgrade`,
    /// `Sec-WebSocket-Key`, `Sec-WebSocket-Version`, `Sec-WebSocket-Accept`,
    /// `Sec-WebSocket-Extensions` (this client implements no extension, so it must offer
    /// none), `Sec-WebSocket-Protocol` (use [`protocols`](Self::protocols)), and the body
    /// framing headers `Content-Length` and `Transfer-Encoding`.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Result<Self, ConfigError> {
        const RESERVED: [HeaderName; 9] = [
            header::CONNECTION,
            header::UPGRADE,
            header::SEC_WEBSOCKET_KEY,
            header::SEC_WEBSOCKET_VERSION,
            header::SEC_WEBSOCKET_ACCEPT,
            header::SEC_WEBSOCKET_EXTENSIONS,
            header::SEC_WEBSOCKET_PROTOCOL,
            header::CONTENT_LENGTH,
            header::TRANSFER_ENCODING,
        ];
        if RESERVED.contains(&name) {
            return Err(ConfigError::new(
                "header is set by the handshake itself",
                name.as_str(),
            ));
        }
        self.headers.append(name, value);
        Ok(self)
    }

    /// The engine configuration of the connections: limits, buffering and timeouts.
    ///
    /// Default: [`Config::default`].
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// How long [`connect`](Self::connect) may take to resolve the host, open the TCP
    /// connection and, for `wss://`, finish the TLS handshake.
    ///
    /// Default: 10 seconds. Past it, `connect` fails with
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout), so an unreachable host never hangs
    /// the caller.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long the WebSocket handshake may take: sending the request and receiving the
    /// server's answer.
    ///
    /// Default: 10 seconds. Past it, the handshake fails with
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) and the transport is dropped, so a
    /// server that accepts the connection but never answers cannot hold the client.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The rustls configuration for `wss://` connections (feature `rustls`).
    ///
    /// Default: the Mozilla root certificates from `webpki-roots`, the process's default
    /// crypto provider if one is installed (ring otherwise), and no client certificate. Give
    /// your own to trust a private CA, present a client certificate or offer ALPN.
    #[cfg(feature = "rustls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
    pub fn tls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Connects to a `ws://` URL over TCP (or, with feature `rustls`, a `wss://` URL over
    /// TLS) and runs the [`handshake`](Self::handshake).
    ///
    /// `TCP_NODELAY` is set on the socket: the engine already gathers frames into few writes,
    /// so Nagle's algorithm would only delay them.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Handshake`](crate::ErrorKind::Handshake) for a URL that is not `ws://` or
    /// `wss://` with a host, a failed TLS handshake, or a failed WebSocket handshake (see
    /// [`handshake`](Self::handshake)); [`ErrorKind::Io`](crate::ErrorKind::Io) if the TCP
    /// connection cannot be opened; [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) past the
    /// [connect](Self::connect_timeout) or [handshake](Self::handshake_timeout) timeout.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops the connection being opened; nothing is left running.
    pub async fn connect<U>(&self, uri: U) -> Result<(WebSocket<ClientIo>, Response<()>)>
    where
        U: TryInto<Uri>,
        U::Error: Into<http::Error>,
    {
        let target = Target::parse(uri)?;
        let open = async {
            let tcp = TcpStream::connect((target.host(), target.port()))
                .await
                .map_err(|e| Error::io(e).with_context("could not connect to the server"))?;
            // Best effort: a socket that refuses the option still works.
            let _ = tcp.set_nodelay(true);
            if target.is_secure() {
                self.tls_connect(tcp, &target).await
            } else {
                Ok(ClientIo::tcp(tcp))
            }
        };
        let io = tokio::time::timeout(self.connect_timeout, open)
            .await
            .map_err(|_| Error::timeout("connecting to the server timed out"))??;
        handshake::run(io, &target, self).await
    }

    #[cfg(feature = "rustls")]
    async fn tls_connect(&self, tcp: TcpStream, target: &Target) -> Result<ClientIo> {
        let config = match &self.tls {
            Some(config) => config.clone(),
            None => super::tls::default_config()?,
        };
        super::tls::connect(tcp, target.host(), config)
            .await
            .map(ClientIo::tls)
    }

    #[cfg(not(feature = "rustls"))]
    #[expect(
        clippy::unused_async,
        reason = "mirrors the TLS version, which awaits the TLS handshake"
    )]
    async fn tls_connect(&self, _tcp: TcpStream, _target: &Target) -> Result<ClientIo> {
        Err(Error::handshake(
            "wss:// URLs need the `rustls` feature of tower-ws",
        ))
    }

    /// Runs the opening handshake over `io`, a transport already connected to the server
    /// (TCP, TLS, a unix socket, a proxy tunnel...), for the resource `uri`.
    ///
    /// `uri` gives the `Host` header and the request target; its scheme may be `ws`, `wss`,
    /// `http` or `https` (the transport is the caller's, so the scheme only sets the default
    /// port). Returns the connection, in the client role, over `io` itself (bytes the server
    /// sent right after its answer are kept), and the server's response head.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Handshake`](crate::ErrorKind::Handshake) for an unusable URL, a transport
    /// that fails or closes before the answer, an answer that is not valid HTTP/1.1, or one
    /// that refuses the upgrade or breaks RFC 6455 (then the error's source is a
    /// [`HandshakeRejected`](super::HandshakeRejected) with the answer);
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) past the
    /// [handshake timeout](Self::handshake_timeout).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops `io`.
    pub async fn handshake<Io, U>(&self, uri: U, io: Io) -> Result<(WebSocket<Io>, Response<()>)>
    where
        Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        U: TryInto<Uri>,
        U::Error: Into<http::Error>,
    {
        let target = Target::parse(uri)?;
        handshake::run(io, &target, self).await
    }
}

/// Whether `s` is an HTTP token (RFC 9110 section 5.6.2).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_subprotocols_that_are_not_tokens_or_repeat() {
        assert!(ClientBuilder::new().protocols(["chat", "v2.json"]).is_ok());
        assert!(ClientBuilder::new().protocols(Vec::<String>::new()).is_ok());
        for bad in ["", "a b", "a,b", "a\"", "ü", "a/b"] {
            let err = ClientBuilder::new().protocols([bad]).unwrap_err();
            assert!(err.to_string().contains("not an HTTP token"), "{bad:?}");
        }
        let err = ClientBuilder::new().protocols(["a", "a"]).unwrap_err();
        assert_eq!(err.to_string(), r#"subprotocol offered twice: "a""#);
    }

    #[test]
    fn offers_the_subprotocols_in_order_in_one_header() {
        let b = ClientBuilder::new().protocols(["b", "a"]).unwrap();
        assert_eq!(b.protocols_header.unwrap(), "b, a");
        let b = ClientBuilder::new().protocols(["x"]).unwrap();
        let b = b.protocols(Vec::<&str>::new()).unwrap();
        assert!(b.protocols_header.is_none());
    }

    #[test]
    fn refuses_extra_headers_that_the_handshake_sets() {
        let v = HeaderValue::from_static("x");
        for name in [
            header::CONNECTION,
            header::UPGRADE,
            header::SEC_WEBSOCKET_KEY,
            header::SEC_WEBSOCKET_EXTENSIONS,
            header::SEC_WEBSOCKET_PROTOCOL,
            header::CONTENT_LENGTH,
        ] {
            assert!(ClientBuilder::new().header(name, v.clone()).is_err());
        }
        let b = ClientBuilder::new()
            .header(header::COOKIE, v.clone())
            .and_then(|b| b.header(header::COOKIE, v.clone()))
            .unwrap();
        assert_eq!(b.headers.get_all(header::COOKIE).iter().count(), 2);
    }
}
