//! permessage-deflate in the engine, over loopback TCP: every parameter combination round
//! trips, compressed and uncompressed messages mix, RSV1 is accepted only where RFC 7692 puts
//! it, and a zip bomb stops at the message limit.
#![cfg(feature = "deflate")]

mod support;

use flate2::{Compress, Compression, FlushCompress};
use support::{
    Rng, deflate_params as params, frame, read_until_close, sees_eof, tcp_pair, within, write_raw,
};
use tower_ws::{
    CloseCode, Config, DeflateConfig, DeflateParams, ErrorKind, Message, ProtocolError, Role,
    WebSocket,
};

/// Raw-deflates `data` the way RFC 7692 sends it (sync flush, trailer removed).
fn deflate_raw(data: &[u8], level: u32) -> Vec<u8> {
    let mut c = Compress::new(Compression::new(level), false);
    let mut out = Vec::with_capacity(data.len() + 1024);
    c.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

#[tokio::test]
async fn every_parameter_combination_round_trips_over_tcp() {
    let mut rng = Rng::new(3);
    let json = r#"{"user":"ada","action":"move","x":12,"y":-4,"tags":["a","b"]}"#;
    for server_nct in [false, true] {
        for client_nct in [false, true] {
            for (server_bits, client_bits) in [(15, 15), (9, 9), (9, 15), (15, 9), (12, 10)] {
                let p = params(server_nct, client_nct, server_bits, client_bits);
                let config = Config::default().deflate(DeflateConfig::default().threshold(16));
                let (c, s) = tcp_pair().await;
                let mut client = WebSocket::new(c, Role::Client, config).with_deflate(p);
                let mut server = WebSocket::new(s, Role::Server, config).with_deflate(p);
                let echo = tokio::spawn(async move {
                    while let Some(Ok(m)) = server.recv().await {
                        if m.is_text() || m.is_binary() {
                            server.send(m).await.unwrap();
                        }
                    }
                });
                let large_text = rng.text(40_000);
                let large_binary = rng.bytes(70_000);
                let messages = [
                    Message::text(json),
                    Message::text(json),
                    Message::text(""),
                    Message::text("tiny"),
                    Message::text(large_text),
                    Message::binary(large_binary),
                    Message::binary(vec![0_u8; 100_000]),
                ];
                for m in messages {
                    within(10, client.send(m.clone())).await.unwrap();
                    let got = within(10, client.recv()).await.unwrap().unwrap();
                    assert!(
                        got == m,
                        "{p:?}: a message of {} bytes differs",
                        m.as_payload().len()
                    );
                }
                within(5, client.close(CloseCode::NORMAL, ""))
                    .await
                    .unwrap();
                within(5, echo).await.unwrap();
            }
        }
    }
}

#[tokio::test]
async fn compressed_messages_are_smaller_on_the_wire() {
    let (c, mut raw) = tcp_pair().await;
    let config = Config::default().deflate(DeflateConfig::default());
    let mut client = WebSocket::new(c, Role::Client, config).with_deflate(DeflateParams::default());
    let json =
        r#"{"id":1,"name":"widget","price":9.99,"stock":120,"tags":["red","blue"]}"#.repeat(30);
    client.send(Message::text(json.clone())).await.unwrap();
    let f = within(5, support::read_frame(&mut raw)).await.unwrap();
    assert_eq!((f.opcode, f.rsv), (1, 0b100), "text frame with RSV1");
    assert!(
        f.payload.len() * 5 < json.len(),
        "{} of {} bytes",
        f.payload.len(),
        json.len()
    );
    // Under the threshold (64 bytes by default): sent as is, RSV1 clear.
    client.send(Message::text("short")).await.unwrap();
    let f = within(5, support::read_frame(&mut raw)).await.unwrap();
    assert_eq!((f.rsv, &f.payload[..]), (0, &b"short"[..]));
}

#[tokio::test]
async fn a_compressed_message_in_fragments_with_a_ping_between_is_reassembled() {
    let (mut raw, s) = tcp_pair().await;
    let mut server =
        WebSocket::new(s, Role::Server, Config::default()).with_deflate(DeflateParams::default());
    let text = "fragmented, compressed, reassembled ".repeat(100);
    let compressed = deflate_raw(text.as_bytes(), 6);
    let (a, b) = compressed.split_at(compressed.len() / 2);
    let key = Some([1, 2, 3, 4]);
    let mut wire = frame(false, 0b100, 1, key, a);
    wire.extend(frame(true, 0, 9, key, b"ping"));
    wire.extend(frame(true, 0, 0, key, b));
    write_raw(&mut raw, &wire).await;
    assert_eq!(
        within(5, server.recv()).await.unwrap().unwrap(),
        Message::ping("ping")
    );
    assert_eq!(
        within(5, server.recv()).await.unwrap().unwrap(),
        Message::text(text)
    );
}

async fn server_fails_with(wire: Vec<u8>, config: Config, code: u16, rule: ProtocolError) {
    let (mut raw, s) = tcp_pair().await;
    let app = tokio::spawn(async move {
        let mut server =
            WebSocket::new(s, Role::Server, config).with_deflate(DeflateParams::default());
        loop {
            match server.recv().await {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Some(e),
                None => return None,
            }
        }
    });
    write_raw(&mut raw, &wire).await;
    let close = within(5, read_until_close(&mut raw)).await.unwrap();
    assert_eq!(close.close_code(), Some(code), "{rule:?}");
    assert!(sees_eof(&mut raw, 5).await);
    let err = within(5, app).await.unwrap().unwrap();
    assert_eq!(err.protocol_error(), Some(rule));
}

#[tokio::test]
async fn rsv1_on_a_control_frame_fails_with_1002() {
    let wire = frame(true, 0b100, 9, Some([1, 2, 3, 4]), b"ping");
    server_fails_with(
        wire,
        Config::default(),
        1002,
        ProtocolError::CompressedControlFrame,
    )
    .await;
}

#[tokio::test]
async fn rsv1_on_a_continuation_frame_fails_with_1002() {
    let key = Some([1, 2, 3, 4]);
    let mut wire = frame(false, 0b100, 1, key, &deflate_raw(b"first half", 6));
    wire.extend(frame(true, 0b100, 0, key, &deflate_raw(b"second", 6)));
    server_fails_with(
        wire,
        Config::default(),
        1002,
        ProtocolError::CompressedContinuation,
    )
    .await;
}

#[tokio::test]
async fn rsv2_and_rsv3_still_fail_with_deflate_on() {
    let wire = frame(true, 0b010, 1, Some([1, 2, 3, 4]), b"x");
    server_fails_with(
        wire,
        Config::default(),
        1002,
        ProtocolError::ReservedBits(0b010),
    )
    .await;
}

#[tokio::test]
async fn a_zip_bomb_fails_with_1009_at_the_inflated_limit() {
    let bomb = deflate_raw(&vec![0_u8; 64 << 20], 9);
    assert!(bomb.len() < 100_000, "{} bytes", bomb.len());
    let wire = frame(true, 0b100, 2, Some([1, 2, 3, 4]), &bomb);
    let config = Config::default().max_message_size(1 << 20);
    let rule = ProtocolError::MessageTooLarge {
        size: (1 << 20) + 1,
        limit: 1 << 20,
    };
    server_fails_with(wire, config, 1009, rule).await;
}

#[tokio::test]
async fn corrupt_compressed_data_fails_with_1002() {
    let wire = frame(true, 0b100, 2, Some([1, 2, 3, 4]), &[0xff; 40]);
    server_fails_with(
        wire,
        Config::default(),
        1002,
        ProtocolError::InvalidCompressedData,
    )
    .await;
}

#[tokio::test]
async fn compressed_text_that_inflates_to_invalid_utf8_fails_with_1007() {
    let wire = frame(
        true,
        0b100,
        1,
        Some([1, 2, 3, 4]),
        &deflate_raw(b"ok then \xff\xfe", 6),
    );
    let (mut raw, s) = tcp_pair().await;
    let mut server =
        WebSocket::new(s, Role::Server, Config::default()).with_deflate(DeflateParams::default());
    write_raw(&mut raw, &wire).await;
    let err = within(5, server.recv()).await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidUtf8);
    assert_eq!(
        within(5, read_until_close(&mut raw))
            .await
            .unwrap()
            .close_code(),
        Some(1007)
    );
}

#[tokio::test]
async fn without_negotiation_rsv1_is_still_a_protocol_error() {
    let (mut raw, s) = tcp_pair().await;
    let mut server = WebSocket::new(
        s,
        Role::Server,
        Config::default().deflate(DeflateConfig::default()),
    );
    write_raw(
        &mut raw,
        &frame(true, 0b100, 1, Some([1, 2, 3, 4]), &deflate_raw(b"hi", 6)),
    )
    .await;
    let err = within(5, server.recv()).await.unwrap().unwrap_err();
    assert_eq!(
        err.protocol_error(),
        Some(ProtocolError::ReservedBits(0b100))
    );
}
