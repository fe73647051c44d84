//! Each rule of the HTTP/1.1 opening handshake, checked on the wire through a real hyper
//! server: one test per rule.

pub mod support;

use std::net::SocketAddr;

use support::{SAMPLE_ACCEPT, VALID, echo, handshake, inner, raw, serve};
use tower::ServiceBuilder;
use tower_ws::UpgradeLayer;

async fn server() -> SocketAddr {
    serve(
        ServiceBuilder::new()
            .layer(UpgradeLayer::new(echo()))
            .service(inner()),
    )
    .await
}

/// The valid handshake's lines with `name`'s line replaced by `replacement` (or removed).
fn valid_with(name: &str, replacement: &[&'static str]) -> Vec<&'static str> {
    let mut lines: Vec<_> = VALID
        .iter()
        .copied()
        .filter(|l| {
            !l.to_ascii_lowercase()
                .starts_with(&name.to_ascii_lowercase())
        })
        .collect();
    lines.extend_from_slice(replacement);
    lines
}

#[tokio::test]
async fn rfc_sample_key_gets_101_with_the_rfc_accept_value() {
    let addr = server().await;
    let response = raw(addr, &handshake("GET", "/ws", &VALID)).await;
    assert_eq!(response.status, 101);
    assert_eq!(response.header("sec-websocket-accept"), [SAMPLE_ACCEPT]);
    assert_eq!(
        response
            .header("upgrade")
            .first()
            .map(|v| v.to_ascii_lowercase()),
        Some("websocket".into())
    );
    assert_eq!(
        response
            .header("connection")
            .first()
            .map(|v| v.to_ascii_lowercase()),
        Some("upgrade".into())
    );
    assert!(response.header("sec-websocket-protocol").is_empty());
}

#[tokio::test]
async fn a_method_other_than_get_is_405_with_allow_get() {
    let addr = server().await;
    let response = raw(addr, &handshake("POST", "/ws", &VALID)).await;
    assert_eq!(response.status, 405);
    assert_eq!(response.header("allow"), ["GET"]);
    assert_eq!(response.body, "a websocket handshake must use GET\n");
}

#[tokio::test]
async fn connection_upgrade_token_is_found_in_any_case_among_commas_across_lines() {
    let addr = server().await;
    let lines = valid_with(
        "connection",
        &["Connection: keep-alive", "Connection: foo,  UpGrAdE , bar"],
    );
    let response = raw(addr, &handshake("GET", "/ws", &lines)).await;
    assert_eq!(response.status, 101);
    assert_eq!(response.header("sec-websocket-accept"), [SAMPLE_ACCEPT]);
}

#[tokio::test]
async fn connection_without_the_upgrade_token_is_400() {
    let addr = server().await;
    for connection in [
        &[][..],
        &["Connection: keep-alive"],
        &["Connection: upgraded, notupgrade"],
    ] {
        let lines = valid_with("connection", connection);
        let response = raw(addr, &handshake("GET", "/ws", &lines)).await;
        assert_eq!(response.status, 400, "{connection:?}");
        assert_eq!(
            response.body,
            "a websocket handshake needs `Connection: upgrade`\n"
        );
    }
}

#[tokio::test]
async fn upgrade_websocket_is_recognised_in_any_case() {
    let addr = server().await;
    let lines = valid_with("upgrade", &["Upgrade: WebSocket"]);
    let response = raw(addr, &handshake("GET", "/ws", &lines)).await;
    assert_eq!(response.status, 101);
}

#[tokio::test]
async fn a_request_without_upgrade_websocket_reaches_the_inner_service() {
    let addr = server().await;
    for upgrade in [&[][..], &["Upgrade: foo"]] {
        let lines = valid_with("upgrade", upgrade);
        let response = raw(addr, &handshake("GET", "/ws", &lines)).await;
        assert_eq!(response.status, 200, "{upgrade:?}");
        assert_eq!(response.body, "inner GET /ws body=");
    }
}

#[tokio::test]
async fn a_version_other_than_13_is_426_naming_version_13() {
    let addr = server().await;
    for version in [
        &["Sec-WebSocket-Version: 8"][..],
        &["Sec-WebSocket-Version: 13, 8"],
    ] {
        let lines = valid_with("sec-websocket-version", version);
        let response = raw(addr, &handshake("GET", "/ws", &lines)).await;
        assert_eq!(response.status, 426, "{version:?}");
        assert_eq!(response.header("sec-websocket-version"), ["13"]);
    }
}

#[tokio::test]
async fn a_missing_version_is_426_naming_version_13() {
    let addr = server().await;
    let lines = valid_with("sec-websocket-version", &[]);
    let response = raw(addr, &handshake("GET", "/ws", &lines)).await;
    assert_eq!(response.status, 426);
    assert_eq!(response.header("sec-websocket-version"), ["13"]);
}

#[tokio::test]
async fn a_missing_key_is_400() {
    let addr = server().await;
    let lines = valid_with("sec-websocket-key", &[]);
    let response = raw(addr, &handshake("GET", "/ws", &lines)).await;
    assert_eq!(response.status, 400);
    assert_eq!(response.body, "missing Sec-WebSocket-Key\n");
    assert!(response.header("sec-websocket-accept").is_empty());
}

#[tokio::test]
async fn a_repeated_key_is_400() {
    let addr = server().await;
    let lines = valid_with(
        "sec-websocket-key",
        &[
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        ],
    );
    let response = raw(addr, &handshake("GET", "/ws", &lines)).await;
    assert_eq!(response.status, 400);
    assert_eq!(response.body, "more than one Sec-WebSocket-Key\n");
}

#[tokio::test]
async fn a_key_that_is_not_base64_of_16_bytes_is_400() {
    let addr = server().await;
    for key in [
        "Sec-WebSocket-Key: c2hvcnQ=",                 // 5 bytes
        "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAAA", // 18 bytes, no padding
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ!!", // not base64
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==, dGhlIHNhbXBsZSBub25jZQ==",
    ] {
        let lines = valid_with("sec-websocket-key", &[key]);
        let response = raw(addr, &handshake("GET", "/ws", &lines)).await;
        assert_eq!(response.status, 400, "{key}");
        assert_eq!(
            response.body,
            "Sec-WebSocket-Key must be base64 of exactly 16 bytes\n"
        );
    }
}

#[tokio::test]
async fn an_http10_upgrade_request_is_400() {
    let addr = server().await;
    let mut request = handshake("GET", "/ws", &VALID);
    let request_line_end = request.iter().position(|&b| b == b'\r').unwrap();
    request.splice(..request_line_end, b"GET /ws HTTP/1.0".iter().copied());
    let response = raw(addr, &request).await;
    assert_eq!(response.status, 400);
    assert_eq!(
        response.body,
        "a websocket handshake needs HTTP/1.1 or later\n"
    );
}

#[tokio::test]
async fn a_rejection_is_never_an_upgrade() {
    let addr = server().await;
    let lines = valid_with("sec-websocket-key", &[]);
    let response = raw(addr, &handshake("GET", "/ws", &lines)).await;
    assert!(response.header("upgrade").is_empty());
    assert!(response.header("sec-websocket-accept").is_empty());
    assert_eq!(
        response.header("content-type"),
        ["text/plain; charset=utf-8"]
    );
}
