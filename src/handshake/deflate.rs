//! Negotiating permessage-deflate (RFC 7692 section 7.1) in `Sec-WebSocket-Extensions`.
//!
//! The header's grammar (RFC 6455 section 9.1) is a comma-separated list of extensions, each a
//! name followed by `;`-separated parameters, each a token with an optional `=` value that may
//! be a quoted string. A server picks the first permessage-deflate offer it can honour; an offer
//! with an unknown, repeated or invalid parameter is declined (RFC 7692 section 5), never an
//! error for the handshake. A client fails the handshake on any answer it did not ask for.

use std::fmt::Write as _;

use http::HeaderValue;

use crate::proto::{DeflateConfig, DeflateParams};

/// The extension's name.
const NAME: &str = "permessage-deflate";

/// One extension from the header: its name and its parameters (name, optional value).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Extension<'a> {
    name: &'a str,
    params: Vec<(&'a str, Option<String>)>,
}

/// Splits `s` at `sep`, except inside quoted strings.
fn split_unquoted(s: &str, sep: char) -> impl Iterator<Item = &str> {
    let mut in_quotes = false;
    let mut escaped = false;
    let mut start = 0;
    let mut pieces = Vec::new();
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            c if c == sep && !in_quotes => {
                pieces.push(s.get(start..i).unwrap_or_default());
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    pieces.push(s.get(start..).unwrap_or_default());
    pieces.into_iter()
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A parameter value: a token, or a quoted string unquoted (RFC 7230 quoted-pair escapes).
fn parse_value(raw: &str) -> Option<String> {
    let raw = raw.trim();
    if let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => out.push(chars.next()?),
                '"' => return None,
                c => out.push(c),
            }
        }
        Some(out)
    } else if is_token(raw) {
        Some(raw.to_owned())
    } else {
        None
    }
}

/// Parses every `Sec-WebSocket-Extensions` value. `None` if any of it is malformed.
fn parse<'a>(values: impl IntoIterator<Item = &'a HeaderValue>) -> Option<Vec<Extension<'a>>> {
    let mut extensions = Vec::new();
    for value in values {
        let value = value.to_str().ok()?;
        for item in split_unquoted(value, ',') {
            if item.trim().is_empty() {
                // Empty list elements are allowed by the list syntax.
                continue;
            }
            let mut parts = split_unquoted(item, ';');
            let name = parts.next()?.trim();
            if !is_token(name) {
                return None;
            }
            let mut params = Vec::new();
            for part in parts {
                let (key, value) = match part.split_once('=') {
                    Some((key, value)) => (key.trim(), Some(parse_value(value)?)),
                    None => (part.trim(), None),
                };
                if !is_token(key) {
                    return None;
                }
                params.push((key, value));
            }
            extensions.push(Extension { name, params });
        }
    }
    Some(extensions)
}

/// A window-bits value: a decimal integer from 8 to 15 without leading zeros.
fn window_bits(value: &str) -> Option<u8> {
    match value {
        "8" | "9" | "10" | "11" | "12" | "13" | "14" | "15" => value.parse().ok(),
        _ => None,
    }
}

/// `client_max_window_bits` in an offer: with or without a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientWindow {
    /// The client can be limited to any window.
    Any,
    /// The client already limits itself to this window.
    AtMost(u8),
}

/// A permessage-deflate offer from a client, as RFC 7692 section 7.1 reads it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    /// The largest window the client lets the server use.
    server_max_window_bits: Option<u8>,
    /// The client accepts a window limit, and may have named its own.
    client_max_window_bits: Option<ClientWindow>,
}

impl Offer {
    /// Reads one offer's parameters; `None` declines it (unknown, repeated or invalid).
    fn parse(params: &[(&str, Option<String>)]) -> Option<Self> {
        let mut offer = Self::default();
        let mut seen: Vec<&str> = Vec::with_capacity(params.len());
        for (key, value) in params {
            if seen.iter().any(|s| s.eq_ignore_ascii_case(key)) {
                return None;
            }
            seen.push(key);
            match (key.to_ascii_lowercase().as_str(), value.as_deref()) {
                ("server_no_context_takeover", None) => offer.server_no_context_takeover = true,
                ("client_no_context_takeover", None) => offer.client_no_context_takeover = true,
                ("server_max_window_bits", Some(v)) => {
                    offer.server_max_window_bits = Some(window_bits(v)?);
                }
                ("client_max_window_bits", None) => {
                    offer.client_max_window_bits = Some(ClientWindow::Any);
                }
                ("client_max_window_bits", Some(v)) => {
                    offer.client_max_window_bits = Some(ClientWindow::AtMost(window_bits(v)?));
                }
                _ => return None,
            }
        }
        Some(offer)
    }
}

/// What a server agreed to: the parameters for the engine and the response header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Accepted {
    pub(crate) params: DeflateParams,
    pub(crate) response: HeaderValue,
}

/// Server side: answers the first permessage-deflate offer `config` can honour, or `None` to
/// go without compression (no offer, or none acceptable, or a malformed header).
pub(crate) fn accept<'a>(
    values: impl IntoIterator<Item = &'a HeaderValue>,
    config: &DeflateConfig,
) -> Option<Accepted> {
    let extensions = parse(values)?;
    extensions
        .iter()
        .filter(|e| e.name.eq_ignore_ascii_case(NAME))
        .filter_map(|e| Offer::parse(&e.params))
        .find_map(|offer| answer(offer, config))
}

fn answer(offer: Offer, config: &DeflateConfig) -> Option<Accepted> {
    // Our window: what we are configured for, no larger than the client allows. zlib cannot
    // compress with a window of 8, so an offer that insists on 8 is declined.
    let server_bits = offer
        .server_max_window_bits
        .map_or(config.server_max_window_bits, |max| {
            max.min(config.server_max_window_bits)
        });
    if server_bits < 9 {
        return None;
    }
    // The client's window: limited only if the client said it can be, and never above what it
    // asked for itself.
    let client_bits = match offer.client_max_window_bits {
        Some(ClientWindow::Any) => config.client_max_window_bits,
        Some(ClientWindow::AtMost(own)) => own.min(config.client_max_window_bits),
        None => 15,
    };
    let params = DeflateParams {
        server_no_context_takeover: offer.server_no_context_takeover
            || config.server_no_context_takeover,
        client_no_context_takeover: offer.client_no_context_takeover
            || config.client_no_context_takeover,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
    };
    let mut response = String::from(NAME);
    if params.server_no_context_takeover {
        response.push_str("; server_no_context_takeover");
    }
    if params.client_no_context_takeover {
        response.push_str("; client_no_context_takeover");
    }
    if offer.server_max_window_bits.is_some() || server_bits < 15 {
        let _ = write!(response, "; server_max_window_bits={server_bits}");
    }
    // Echo a limit the client named; name one ourselves only if we lower the default.
    let name_client_bits = match offer.client_max_window_bits {
        Some(ClientWindow::AtMost(_)) => true,
        Some(ClientWindow::Any) => client_bits < 15,
        None => false,
    };
    if name_client_bits {
        let _ = write!(response, "; client_max_window_bits={client_bits}");
    }
    Some(Accepted {
        params,
        response: HeaderValue::from_str(&response).ok()?,
    })
}

/// Client side: the offer for `config`.
#[cfg_attr(
    not(any(test, feature = "client")),
    expect(dead_code, reason = "used by the client")
)]
pub(crate) fn offer(config: &DeflateConfig) -> HeaderValue {
    let mut offer = String::from(NAME);
    if config.server_no_context_takeover {
        offer.push_str("; server_no_context_takeover");
    }
    if config.client_no_context_takeover {
        offer.push_str("; client_no_context_takeover");
    }
    if config.server_max_window_bits < 15 {
        let _ = write!(
            offer,
            "; server_max_window_bits={}",
            config.server_max_window_bits
        );
    }
    if config.client_max_window_bits < 15 {
        let _ = write!(
            offer,
            "; client_max_window_bits={}",
            config.client_max_window_bits
        );
    } else {
        // The server may limit our window; we can honour anything from 9 up.
        offer.push_str("; client_max_window_bits");
    }
    HeaderValue::from_str(&offer).unwrap_or(HeaderValue::from_static(NAME))
}

/// Why a server's `Sec-WebSocket-Extensions` answer is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AnswerError {
    /// The header does not parse.
    Malformed,
    /// An extension we did not offer, or permessage-deflate twice.
    Unexpected,
    /// A parameter that is unknown, repeated, out of range or beyond what we offered.
    BadParameter,
}

/// Client side: checks the server's answer to [`offer`]. `Ok(None)`: the server declined
/// compression.
///
/// # Errors
///
/// Anything we did not offer, or cannot honour (a client window of 8, which zlib cannot
/// compress with).
#[cfg_attr(
    not(any(test, feature = "client")),
    expect(dead_code, reason = "used by the client")
)]
pub(crate) fn check_answer<'a>(
    values: impl IntoIterator<Item = &'a HeaderValue>,
    config: &DeflateConfig,
) -> Result<Option<DeflateParams>, AnswerError> {
    let extensions = parse(values).ok_or(AnswerError::Malformed)?;
    let mut params = None;
    for extension in &extensions {
        if !extension.name.eq_ignore_ascii_case(NAME) || params.is_some() {
            return Err(AnswerError::Unexpected);
        }
        let answer = Offer::parse(&extension.params).ok_or(AnswerError::BadParameter)?;
        let client_bits = match answer.client_max_window_bits {
            None => config.client_max_window_bits,
            // An answer must name the value it limits us to.
            Some(ClientWindow::Any) => return Err(AnswerError::BadParameter),
            Some(ClientWindow::AtMost(bits))
                if bits < 9 || bits > config.client_max_window_bits =>
            {
                return Err(AnswerError::BadParameter);
            }
            Some(ClientWindow::AtMost(bits)) => bits,
        };
        let server_bits = answer.server_max_window_bits.unwrap_or(15);
        if server_bits > config.server_max_window_bits {
            return Err(AnswerError::BadParameter);
        }
        params = Some(DeflateParams {
            server_no_context_takeover: answer.server_no_context_takeover,
            client_no_context_takeover: answer.client_no_context_takeover
                || config.client_no_context_takeover,
            server_max_window_bits: server_bits,
            client_max_window_bits: client_bits,
        });
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    fn accept_one(offer: &str, config: &DeflateConfig) -> Option<(DeflateParams, String)> {
        accept([&hv(offer)], config).map(|a| (a.params, a.response.to_str().unwrap().to_owned()))
    }

    fn default_accept(offer: &str) -> Option<(DeflateParams, String)> {
        accept_one(offer, &DeflateConfig::default())
    }

    #[test]
    fn a_bare_offer_is_accepted_with_rfc_defaults() {
        let (params, response) = default_accept("permessage-deflate").unwrap();
        assert_eq!(params, DeflateParams::default());
        assert_eq!(response, "permessage-deflate");
    }

    #[test]
    fn context_takeover_parameters_are_honoured_both_ways() {
        let (p, r) = default_accept("permessage-deflate; server_no_context_takeover").unwrap();
        assert!(p.server_no_context_takeover && !p.client_no_context_takeover);
        assert_eq!(r, "permessage-deflate; server_no_context_takeover");
        let (p, r) = default_accept("permessage-deflate; client_no_context_takeover").unwrap();
        assert!(p.client_no_context_takeover);
        assert_eq!(r, "permessage-deflate; client_no_context_takeover");
        // A server configured to save memory asks for both, even if not offered.
        let (p, r) = accept_one("permessage-deflate", &DeflateConfig::low_memory()).unwrap();
        assert!(p.server_no_context_takeover && p.client_no_context_takeover);
        assert_eq!(
            r,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
    }

    #[test]
    fn server_max_window_bits_is_met_or_lowered_and_8_is_declined() {
        let (p, r) = default_accept("permessage-deflate; server_max_window_bits=10").unwrap();
        assert_eq!(p.server_max_window_bits, 10);
        assert_eq!(r, "permessage-deflate; server_max_window_bits=10");
        let config = DeflateConfig::default().server_max_window_bits(9);
        let (p, r) = accept_one("permessage-deflate; server_max_window_bits=12", &config).unwrap();
        assert_eq!(p.server_max_window_bits, 9);
        assert_eq!(r, "permessage-deflate; server_max_window_bits=9");
        // Not offered, but the server limits its own window and says so.
        let (p, r) = accept_one("permessage-deflate", &config).unwrap();
        assert_eq!(p.server_max_window_bits, 9);
        assert_eq!(r, "permessage-deflate; server_max_window_bits=9");
        // zlib cannot compress with 256 bytes: decline that offer, take the next.
        assert_eq!(
            default_accept("permessage-deflate; server_max_window_bits=8"),
            None
        );
        let (p, _) =
            default_accept("permessage-deflate; server_max_window_bits=8, permessage-deflate")
                .unwrap();
        assert_eq!(p.server_max_window_bits, 15);
    }

    #[test]
    fn client_max_window_bits_with_and_without_a_value() {
        // Without a value: the client can be limited; the default config does not limit it.
        let (p, r) = default_accept("permessage-deflate; client_max_window_bits").unwrap();
        assert_eq!(p.client_max_window_bits, 15);
        assert_eq!(r, "permessage-deflate");
        // A server that wants small client windows (less memory to inflate) limits it.
        let config = DeflateConfig::default().client_max_window_bits(10);
        let (p, r) = accept_one("permessage-deflate; client_max_window_bits", &config).unwrap();
        assert_eq!(p.client_max_window_bits, 10);
        assert_eq!(r, "permessage-deflate; client_max_window_bits=10");
        // With a value: the client's own limit is echoed (or lowered further).
        let (p, r) = default_accept("permessage-deflate; client_max_window_bits=11").unwrap();
        assert_eq!(p.client_max_window_bits, 11);
        assert_eq!(r, "permessage-deflate; client_max_window_bits=11");
        // A client window of 8 is fine: we decompress it with a larger window.
        let (p, _) = default_accept("permessage-deflate; client_max_window_bits=8").unwrap();
        assert_eq!(p.client_max_window_bits, 8);
        // Not offered: never limited, even if the server would like to.
        let (p, r) = accept_one("permessage-deflate", &config).unwrap();
        assert_eq!(p.client_max_window_bits, 15);
        assert_eq!(r, "permessage-deflate");
    }

    #[test]
    fn quoted_values_are_read_like_tokens() {
        let (p, _) = default_accept(
            r#"permessage-deflate; server_max_window_bits="10"; client_max_window_bits="9""#,
        )
        .unwrap();
        assert_eq!(
            (p.server_max_window_bits, p.client_max_window_bits),
            (10, 9)
        );
    }

    #[test]
    fn invalid_unknown_or_repeated_parameters_decline_only_that_offer() {
        for bad in [
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=abc",
            "permessage-deflate; client_max_window_bits=0",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
            "permessage-deflate; mystery_parameter",
        ] {
            assert_eq!(default_accept(bad), None, "{bad}");
            let (p, _) = default_accept(&format!(
                "{bad}, permessage-deflate; client_no_context_takeover"
            ))
            .unwrap_or_else(|| panic!("second offer after {bad}"));
            assert!(p.client_no_context_takeover, "{bad}");
        }
    }

    #[test]
    fn offers_across_several_header_lines_and_other_extensions() {
        let values = [
            hv("x-webkit-deflate-frame, foo; bar=1"),
            hv("permessage-deflate; server_no_context_takeover"),
        ];
        let accepted = accept(values.iter(), &DeflateConfig::default()).unwrap();
        assert!(accepted.params.server_no_context_takeover);
        assert_eq!(
            accept([&hv("x-webkit-deflate-frame")], &DeflateConfig::default()),
            None
        );
    }

    #[test]
    fn malformed_headers_decline_without_panicking() {
        for bad in [
            "permessage-deflate; =",
            "permessage-deflate;;",
            ";",
            "permessage-deflate; a=\"unterminated",
            "perm essage-deflate",
            "permessage-deflate; server_max_window_bits=\"1\"0\"",
            "\u{7f}",
        ] {
            if let Ok(value) = HeaderValue::from_str(bad) {
                assert_eq!(accept([&value], &DeflateConfig::default()), None, "{bad:?}");
            }
        }
        let raw = HeaderValue::from_bytes(b"permessage-deflate; x=\xff").unwrap();
        assert_eq!(accept([&raw], &DeflateConfig::default()), None);
    }

    #[test]
    fn the_client_offer_reflects_its_config() {
        assert_eq!(
            offer(&DeflateConfig::default()),
            "permessage-deflate; client_max_window_bits"
        );
        let config = DeflateConfig::low_memory()
            .server_max_window_bits(10)
            .client_max_window_bits(12);
        assert_eq!(
            offer(&config),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=12"
        );
    }

    #[test]
    fn every_server_answer_to_our_offer_parses_into_params() {
        let ours = DeflateConfig::default();
        let check = |s: &str| check_answer([&hv(s)], &ours);
        assert_eq!(
            check("permessage-deflate"),
            Ok(Some(DeflateParams::default()))
        );
        let p = check("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9; client_max_window_bits=10")
            .unwrap()
            .unwrap();
        assert_eq!(
            p,
            DeflateParams {
                server_no_context_takeover: true,
                client_no_context_takeover: true,
                server_max_window_bits: 9,
                client_max_window_bits: 10,
            }
        );
        assert_eq!(check_answer(std::iter::empty(), &ours), Ok(None));
    }

    #[test]
    fn answers_we_did_not_ask_for_fail_the_handshake() {
        let ours = DeflateConfig::default().client_max_window_bits(12);
        let check = |s: &str| check_answer([&hv(s)], &ours);
        assert_eq!(check("x-unknown"), Err(AnswerError::Unexpected));
        assert_eq!(
            check("permessage-deflate, permessage-deflate"),
            Err(AnswerError::Unexpected)
        );
        assert_eq!(
            check("permessage-deflate; client_max_window_bits=13"),
            Err(AnswerError::BadParameter)
        );
        assert_eq!(
            check("permessage-deflate; client_max_window_bits=8"),
            Err(AnswerError::BadParameter)
        );
        assert_eq!(
            check("permessage-deflate; client_max_window_bits"),
            Err(AnswerError::BadParameter)
        );
        assert_eq!(
            check("permessage-deflate; mystery"),
            Err(AnswerError::BadParameter)
        );
        assert_eq!(
            check("permessage-deflate; server_max_window_bits=16"),
            Err(AnswerError::BadParameter)
        );
        assert_eq!(check("permessage-deflate; ;"), Err(AnswerError::Malformed));
        let limited = DeflateConfig::default().server_max_window_bits(10);
        assert_eq!(
            check_answer(
                [&hv("permessage-deflate; server_max_window_bits=12")],
                &limited
            ),
            Err(AnswerError::BadParameter)
        );
    }
}
