//! What the server accepts: [`Protocols`] (subprotocol choice) and [`AllowOrigin`] (which web
//! pages may open a socket).

use std::fmt;
use std::sync::Arc;

use http::header::{HOST, HeaderValue, ORIGIN, SEC_WEBSOCKET_PROTOCOL};
use http::request::Parts;
use http::uri::Authority;

use super::headers::{Single, list_elements, single};
use crate::error::ConfigError;

/// The subprotocols a server speaks, in order of preference.
///
/// The client offers subprotocols in `Sec-WebSocket-Protocol` (a comma-separated list, possibly
/// over several lines); the layer picks the first of *the server's* list that the client
/// offered and echoes it in the response. Names are compared exactly (they are
/// case-sensitive). When the client offered none of them, the response carries no
/// `Sec-WebSocket-Protocol` and the session starts without one, unless the layer
/// [requires one](crate::UpgradeLayer::require_protocol).
///
/// ```
/// use tower_ws::Protocols;
///
/// let protocols = Protocols::new(["v2.chat", "v1.chat"])?;
/// assert!(!protocols.is_empty());
/// assert!(Protocols::new(["not a token"]).is_err());
/// # Ok::<(), tower_ws::ConfigError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Protocols {
    supported: Box<[HeaderValue]>,
}

impl Protocols {
    /// The server's subprotocols, most preferred first.
    ///
    /// # Errors
    ///
    /// A name that is empty or not an HTTP token (RFC 6455 section 4.1: printable ASCII
    /// without separators such as spaces, commas, slashes or quotes).
    pub fn new<I>(protocols: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let supported = protocols
            .into_iter()
            .map(|name| {
                let name = name.as_ref();
                if is_token(name.as_bytes()) {
                    HeaderValue::from_str(name)
                        .map_err(|_| ConfigError::new("invalid subprotocol name", name))
                } else {
                    Err(ConfigError::new("invalid subprotocol name", name))
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { supported })
    }

    /// Whether no subprotocol is configured.
    pub fn is_empty(&self) -> bool {
        self.supported.is_empty()
    }

    /// The server's most preferred subprotocol that the request offers.
    pub(crate) fn select(&self, parts: &Parts) -> Option<HeaderValue> {
        self.supported
            .iter()
            .find(|supported| {
                list_elements(&parts.headers, &SEC_WEBSOCKET_PROTOCOL)
                    .any(|offered| offered == supported.as_bytes())
            })
            .cloned()
    }
}

/// An HTTP token (RFC 9110 section 5.6.2).
fn is_token(name: &[u8]) -> bool {
    !name.is_empty()
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Which web pages may open a WebSocket: the check of the handshake's `Origin` header.
///
/// # Why
///
/// Browsers do not apply the same-origin policy or CORS to WebSocket handshakes: a script on any site
/// can open a socket to your server, and the browser sends along the user's cookies and HTTP
/// authentication for your site. Without an origin check, a malicious page the user visits
/// can act on their session over the socket: *cross-site WebSocket hijacking* (CSWSH). The
/// browser always sends the page's `Origin` in the handshake, and a page cannot forge it, so
/// the server must look at it.
///
/// # The default: [`same_host`](Self::same_host)
///
/// - A request **without** `Origin` passes. Browsers always send one, so such a client is not
///   a browser (a CLI, a backend service, a test): it carries no ambient browser credentials,
///   and could forge any header anyway.
/// - A request **with** `Origin` passes when the origin's host and port equal the request's
///   `Host` (on HTTP/2, its `:authority`): the page was served by this same host. The port
///   defaults to the origin scheme's (80 for `http`, 443 for `https`), so
///   `Origin: https://example.com` matches `Host: example.com`. Host names are compared
///   without regard to case. `Origin: null` (sandboxed frames, `file:` pages) never matches.
/// - Anything else is refused with 403 ([`HandshakeErrorKind::OriginNotAllowed`]).
///
/// [`list`](Self::list) and [`predicate`](Self::predicate) allow more origins *in addition*
/// to the same-host rule (for a front end served from another host), and
/// [`any`](Self::any) turns the check off, for servers with no browser clients or that
/// authenticate each socket some other way (a token in the first message).
///
/// [`HandshakeErrorKind::OriginNotAllowed`]: crate::HandshakeErrorKind::OriginNotAllowed
///
/// ```
/// use tower_ws::{AllowOrigin, Session, UpgradeLayer, handler_fn};
///
/// # let handler = handler_fn(|_: Session| async {});
/// // Also allow the front end's origin:
/// let layer = UpgradeLayer::new(handler)
///     .allow_origin(AllowOrigin::list(["https://app.example.com"])?);
///
/// // Or decide per request:
/// let layer = layer.allow_origin(AllowOrigin::predicate(|origin, _request| {
///     origin.as_bytes().ends_with(b".example.com")
/// }));
/// # let _ = layer;
/// # Ok::<(), tower_ws::ConfigError>(())
/// ```
#[derive(Clone, Default)]
pub struct AllowOrigin {
    rule: Rule,
}

type Predicate = dyn Fn(&HeaderValue, &Parts) -> bool + Send + Sync;

#[derive(Clone, Default)]
enum Rule {
    #[default]
    SameHost,
    Any,
    List(Arc<[Origin]>),
    Predicate(Arc<Predicate>),
}

impl AllowOrigin {
    /// The default: no `Origin`, or an `Origin` whose host and port are the request's `Host`.
    pub fn same_host() -> Self {
        Self {
            rule: Rule::SameHost,
        }
    }

    /// No check: every origin is allowed.
    ///
    /// Use it only when no browser client relies on cookies or HTTP authentication to reach
    /// the socket: see [why the check exists](Self#why).
    pub fn any() -> Self {
        Self { rule: Rule::Any }
    }

    /// Allows these origins (`scheme://host[:port]`, as browsers send them) besides the same
    /// host. Schemes and hosts are compared without regard to case, and a default port may be
    /// written or left out.
    ///
    /// # Errors
    ///
    /// An entry that is not a serialized origin: a scheme, `://` and a host with an optional
    /// port, with no path, user name, query or fragment.
    pub fn list<I>(origins: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let list = origins
            .into_iter()
            .map(|origin| {
                let origin = origin.as_ref();
                Origin::parse(origin.as_bytes())
                    .ok_or_else(|| ConfigError::new("invalid origin", origin))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            rule: Rule::List(list),
        })
    }

    /// Allows, besides the same host, each origin for which `allow` returns `true`. It is
    /// called with the request's `Origin` value and the request head.
    pub fn predicate<F>(allow: F) -> Self
    where
        F: Fn(&HeaderValue, &Parts) -> bool + Send + Sync + 'static,
    {
        Self {
            rule: Rule::Predicate(Arc::new(allow)),
        }
    }

    /// Whether the request's origin is allowed.
    pub(crate) fn allows(&self, parts: &Parts) -> bool {
        if matches!(self.rule, Rule::Any) {
            return true;
        }
        let value = match single(&parts.headers, &ORIGIN) {
            Single::Missing => return true,
            // Two origins: no browser sends that, and neither can be trusted.
            Single::Repeated => return false,
            Single::One(value) => value,
        };
        let origin = Origin::parse(value.as_bytes());
        if origin
            .as_ref()
            .is_some_and(|origin| origin.is_same_host(parts))
        {
            return true;
        }
        match &self.rule {
            Rule::SameHost => false,
            Rule::Any => true,
            Rule::List(list) => origin.is_some_and(|origin| list.contains(&origin)),
            Rule::Predicate(allow) => allow(value, parts),
        }
    }
}

impl fmt::Debug for AllowOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rule {
            Rule::SameHost => f.write_str("AllowOrigin::same_host()"),
            Rule::Any => f.write_str("AllowOrigin::any()"),
            Rule::List(list) => f.debug_tuple("AllowOrigin::list").field(list).finish(),
            Rule::Predicate(_) => f.write_str("AllowOrigin::predicate(..)"),
        }
    }
}

/// A serialized origin, normalized: lowercase scheme and host, and the port (the scheme's
/// default when none is written).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: Box<str>,
    host: Box<str>,
    port: Option<u16>,
}

impl Origin {
    fn parse(bytes: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (scheme, authority) = text.split_once("://")?;
        let scheme_ok = scheme
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic())
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        if !scheme_ok || authority.contains(['@', '/', '?', '#']) {
            return None;
        }
        let authority: Authority = authority.parse().ok()?;
        if authority.host().is_empty() {
            return None;
        }
        let scheme = scheme.to_ascii_lowercase();
        let port = authority.port_u16().or_else(|| default_port(&scheme));
        Some(Self {
            host: authority.host().to_ascii_lowercase().into(),
            scheme: scheme.into(),
            port,
        })
    }

    /// Whether this origin names the host the request was sent to.
    fn is_same_host(&self, parts: &Parts) -> bool {
        let Some(authority) = request_authority(parts) else {
            return false;
        };
        authority.host().eq_ignore_ascii_case(&self.host)
            && authority.port_u16().or_else(|| default_port(&self.scheme)) == self.port
    }
}

/// The host the request was sent to: `Host`, or on HTTP/2 its `:authority` (which hyper puts
/// in the URI); the URI's authority (absolute form) as a fallback on HTTP/1.1.
fn request_authority(parts: &Parts) -> Option<Authority> {
    let from_header = || match single(&parts.headers, &HOST) {
        Single::One(host) => Authority::try_from(host.as_bytes()).ok(),
        Single::Missing | Single::Repeated => None,
    };
    if parts.version >= http::Version::HTTP_2 {
        parts.uri.authority().cloned().or_else(from_header)
    } else {
        from_header().or_else(|| parts.uri.authority().cloned())
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use http::Request;

    use super::*;

    fn parts(lines: &[(&str, &str)]) -> Parts {
        let mut request = Request::get("/ws");
        for (name, value) in lines {
            request = request.header(*name, *value);
        }
        request.body(()).unwrap().into_parts().0
    }

    #[test]
    fn picks_the_servers_most_preferred_offered_protocol() {
        let protocols = Protocols::new(["v3", "v2", "v1"]).unwrap();
        let request = parts(&[
            ("sec-websocket-protocol", "v1, v2"),
            ("sec-websocket-protocol", "other"),
        ]);
        assert_eq!(protocols.select(&request).unwrap(), "v2");
        assert_eq!(protocols.select(&parts(&[])), None);
        assert_eq!(
            protocols.select(&parts(&[("sec-websocket-protocol", "V2, v")])),
            None
        );
    }

    #[test]
    fn rejects_protocol_names_that_are_not_tokens() {
        for bad in ["", "a b", "a,b", "a/b", "\"a\"", "é"] {
            assert!(Protocols::new([bad]).is_err(), "{bad:?}");
        }
        assert!(Protocols::new(["graphql-transport-ws", "v1.chat"]).is_ok());
    }

    #[test]
    fn same_host_policy_compares_origin_host_and_port_to_host() {
        let policy = AllowOrigin::default();
        let allowed =
            |origin: &str, host: &str| policy.allows(&parts(&[("origin", origin), ("host", host)]));
        assert!(allowed("http://example.com", "example.com"));
        assert!(allowed("https://EXAMPLE.com", "example.COM"));
        assert!(allowed("https://example.com", "example.com:443"));
        assert!(allowed("http://127.0.0.1:3000", "127.0.0.1:3000"));
        assert!(allowed("http://[::1]:3000", "[::1]:3000"));
        assert!(!allowed("http://evil.com", "example.com"));
        assert!(!allowed("http://example.com:8080", "example.com"));
        assert!(!allowed("http://example.com", "example.com:8080"));
        assert!(!allowed("null", "example.com"));
        assert!(!allowed("http://example.com.evil.com", "example.com"));
        assert!(policy.allows(&parts(&[("host", "example.com")])));
        assert!(!policy.allows(&parts(&[
            ("origin", "http://example.com"),
            ("origin", "http://example.com"),
            ("host", "example.com"),
        ])));
    }

    #[test]
    fn list_and_predicate_allow_more_origins_besides_the_same_host() {
        let list = AllowOrigin::list(["https://app.example.com", "http://localhost:8080"]).unwrap();
        let check = |policy: &AllowOrigin, origin: &str| {
            policy.allows(&parts(&[("origin", origin), ("host", "api.example.com")]))
        };
        assert!(check(&list, "https://app.example.com"));
        assert!(check(&list, "HTTPS://APP.example.com:443"));
        assert!(check(&list, "http://localhost:8080"));
        assert!(check(&list, "https://api.example.com"));
        assert!(!check(&list, "http://app.example.com"));
        assert!(!check(&list, "https://evil.com"));

        let predicate = AllowOrigin::predicate(|origin, _| origin == "https://partner.org");
        assert!(check(&predicate, "https://partner.org"));
        assert!(check(&predicate, "https://api.example.com"));
        assert!(!check(&predicate, "https://evil.org"));

        assert!(check(&AllowOrigin::any(), "https://evil.org"));
    }

    #[test]
    fn list_rejects_what_is_not_an_origin() {
        for bad in [
            "example.com",
            "https://",
            "https://example.com/",
            "https://user@example.com",
            "https://example.com?q",
            "1http://example.com",
        ] {
            assert!(AllowOrigin::list([bad]).is_err(), "{bad:?}");
        }
    }
}
