//! Reading the handshake's header fields: token lists spread over several lines, the
//! subprotocol offer, and the single-valued WebSocket fields.

use http::header::{HeaderMap, HeaderName, HeaderValue};

/// Optional whitespace around list elements (RFC 9110 section 5.6.3).
fn trim_ows(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// The non-empty elements of a comma-separated list, over every line of the field `name`.
pub(crate) fn list_elements<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> impl Iterator<Item = &'a [u8]> {
    headers
        .get_all(name)
        .into_iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .map(trim_ows)
        .filter(|element| !element.is_empty())
}

/// Whether the field `name` holds `token` (compared without regard to ASCII case) among its
/// comma-separated values, on any of its lines.
pub(crate) fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    list_elements(headers, name).any(|element| element.eq_ignore_ascii_case(token.as_bytes()))
}

/// How many lines of a field there are, and the value if there is exactly one.
pub(crate) enum Single<'a> {
    Missing,
    One(&'a HeaderValue),
    Repeated,
}

/// The field `name`, which must appear at most once.
pub(crate) fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Single<'a> {
    let mut values = headers.get_all(name).into_iter();
    match (values.next(), values.next()) {
        (None, _) => Single::Missing,
        (Some(value), None) => Single::One(value),
        (Some(_), Some(_)) => Single::Repeated,
    }
}

/// Whether `Sec-WebSocket-Version` says 13, the only version RFC 6455 defines: exactly one
/// line whose value is `13`.
pub(crate) fn is_version_13(headers: &HeaderMap) -> bool {
    matches!(
        single(headers, &http::header::SEC_WEBSOCKET_VERSION),
        Single::One(value) if trim_ows(value.as_bytes()) == b"13"
    )
}

#[cfg(test)]
mod tests {
    use http::header::{CONNECTION, SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION, UPGRADE};

    use super::*;

    fn headers(lines: &[(&HeaderName, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in lines {
            map.append((*name).clone(), HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn finds_a_token_in_any_case_among_commas_and_across_lines() {
        let map = headers(&[
            (&CONNECTION, "keep-alive"),
            (&CONNECTION, " close ,\tUpGrade , "),
        ]);
        assert!(has_token(&map, &CONNECTION, "upgrade"));
        assert!(has_token(&map, &CONNECTION, "keep-alive"));
        assert!(!has_token(&map, &CONNECTION, "upgrade2"));
        assert!(!has_token(&map, &UPGRADE, "websocket"));
    }

    #[test]
    fn a_token_must_be_a_whole_element_not_a_substring() {
        let map = headers(&[(&CONNECTION, "upgrade-insecure, notupgrade")]);
        assert!(!has_token(&map, &CONNECTION, "upgrade"));
    }

    #[test]
    fn list_elements_skip_empty_ones_and_trim_whitespace() {
        let map = headers(&[
            (&SEC_WEBSOCKET_PROTOCOL, ",, chat ,"),
            (&SEC_WEBSOCKET_PROTOCOL, "superchat"),
        ]);
        let elements: Vec<_> = list_elements(&map, &SEC_WEBSOCKET_PROTOCOL).collect();
        assert_eq!(elements, [&b"chat"[..], b"superchat"]);
    }

    #[test]
    fn version_must_be_exactly_one_line_saying_13() {
        assert!(is_version_13(&headers(&[(&SEC_WEBSOCKET_VERSION, "13")])));
        assert!(!is_version_13(&headers(&[])));
        assert!(!is_version_13(&headers(&[(&SEC_WEBSOCKET_VERSION, "8")])));
        assert!(!is_version_13(&headers(&[(
            &SEC_WEBSOCKET_VERSION,
            "13, 8"
        )])));
        assert!(!is_version_13(&headers(&[
            (&SEC_WEBSOCKET_VERSION, "13"),
            (&SEC_WEBSOCKET_VERSION, "13"),
        ])));
    }
}
