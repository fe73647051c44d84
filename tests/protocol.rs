//! Every RFC 6455 rule, broken by a raw peer over loopback TCP, draws the close code the RFC
//! calls for, the transport is closed, and the application sees an error naming the rule.

mod support;

use support::{
    client_frame, close_payload, frame, read_until_close, sees_eof, tcp_pair, within, write_raw,
};
use tokio::net::TcpStream;
use tower_ws::{Config, ErrorKind, Message, ProtocolError, Role, WebSocket};

/// What happened when a raw peer sent `wire` to our endpoint in `role`.
struct Outcome {
    /// The close code our endpoint sent.
    code: Option<u16>,
    /// Whether our endpoint then closed the transport.
    closed_transport: bool,
    /// What our application saw: the messages before the error, and the error.
    messages: Vec<Message>,
    error: Option<tower_ws::Error>,
}

async fn send_raw(role: Role, config: Config, wire: Vec<u8>) -> Outcome {
    let (c, s) = tcp_pair().await;
    let (ours, mut raw): (TcpStream, TcpStream) = match role {
        Role::Server => (s, c),
        Role::Client => (c, s),
    };
    let app = tokio::spawn(async move {
        let mut ws = WebSocket::new(ours, role, config);
        let mut messages = Vec::new();
        let mut error = None;
        while let Some(item) = ws.recv().await {
            match item {
                Ok(m) => messages.push(m),
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        // The error is reported after the transport is shut down.
        (messages, error)
    });
    write_raw(&mut raw, &wire).await;
    let close = within(5, read_until_close(&mut raw)).await;
    let closed_transport = sees_eof(&mut raw, 5).await;
    let (messages, error) = within(5, app).await.unwrap();
    Outcome {
        code: close.and_then(|f| f.close_code()),
        closed_transport,
        messages,
        error,
    }
}

async fn server_fails(wire: Vec<u8>, code: u16, rule: ProtocolError) {
    server_fails_with(Config::default(), wire, code, rule).await;
}

async fn server_fails_with(config: Config, wire: Vec<u8>, code: u16, rule: ProtocolError) {
    let out = send_raw(Role::Server, config, wire).await;
    assert_eq!(out.code, Some(code), "close code for {rule:?}");
    assert!(out.closed_transport, "transport closed after {rule:?}");
    let error = out.error.unwrap_or_else(|| panic!("no error for {rule:?}"));
    assert_eq!(error.protocol_error(), Some(rule));
    assert_eq!(
        error.close_code().map(tower_ws::CloseCode::as_u16),
        Some(code)
    );
}

#[tokio::test]
async fn reserved_bits_without_an_extension_fail_with_1002() {
    for rsv in 1..8 {
        let wire = frame(true, rsv, 1, Some([1, 2, 3, 4]), b"hi");
        server_fails(wire, 1002, ProtocolError::ReservedBits(rsv)).await;
    }
}

#[tokio::test]
async fn reserved_opcodes_fail_with_1002() {
    for op in [3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] {
        server_fails(
            client_frame(true, op, b""),
            1002,
            ProtocolError::ReservedOpCode(op),
        )
        .await;
    }
}

#[tokio::test]
async fn control_frames_over_125_bytes_fail_with_1002() {
    for op in [8, 9, 10] {
        let wire = client_frame(true, op, &[b'x'; 126]);
        server_fails(wire, 1002, ProtocolError::ControlFrameTooLong).await;
    }
}

#[tokio::test]
async fn fragmented_control_frames_fail_with_1002() {
    for op in [8, 9, 10] {
        let wire = client_frame(false, op, b"x");
        server_fails(wire, 1002, ProtocolError::FragmentedControlFrame).await;
    }
}

#[tokio::test]
async fn a_continuation_with_no_message_in_progress_fails_with_1002() {
    let wire = client_frame(true, 0, b"orphan");
    server_fails(wire, 1002, ProtocolError::UnexpectedContinuation).await;
}

#[tokio::test]
async fn a_new_data_frame_inside_a_fragmented_message_fails_with_1002() {
    let mut wire = client_frame(false, 1, b"start");
    wire.extend(client_frame(true, 2, b"intruder"));
    server_fails(wire, 1002, ProtocolError::ExpectedContinuation).await;
}

#[tokio::test]
async fn a_64_bit_length_with_the_top_bit_set_fails_with_1002() {
    let mut wire = vec![0x82, 0xff];
    wire.extend_from_slice(&(1_u64 << 63 | 5).to_be_bytes());
    wire.extend_from_slice(&[1, 2, 3, 4]);
    server_fails(wire, 1002, ProtocolError::PayloadLengthTopBit).await;
}

#[tokio::test]
async fn an_unmasked_frame_from_a_client_fails_with_1002() {
    let wire = frame(true, 0, 1, None, b"plain");
    server_fails(wire, 1002, ProtocolError::UnmaskedFrameFromClient).await;
}

#[tokio::test]
async fn a_masked_frame_from_a_server_fails_with_1002() {
    let wire = frame(true, 0, 1, Some([9, 9, 9, 9]), b"masked");
    let out = send_raw(Role::Client, Config::default(), wire).await;
    assert_eq!(out.code, Some(1002));
    assert_eq!(
        out.error.unwrap().protocol_error(),
        Some(ProtocolError::MaskedFrameFromServer)
    );
}

#[tokio::test]
async fn invalid_utf8_fails_with_1007_in_the_first_bad_fragment() {
    // The message's last fragment is never sent: the failure must not wait for it.
    let mut wire = client_frame(false, 1, "κόσμε".as_bytes());
    wire.extend(client_frame(false, 0, b"\xed\xa0\x80"));
    let out = send_raw(Role::Server, Config::default(), wire).await;
    assert_eq!(out.code, Some(1007));
    assert_eq!(out.error.unwrap().kind(), ErrorKind::InvalidUtf8);
}

#[tokio::test]
async fn invalid_utf8_fails_with_1007_inside_a_partly_received_frame() {
    // A frame announcing 1000 bytes, of which only the first 20 (with the bad bytes) arrive.
    let mut payload = b"hello \xf4\x90\x80\x80".to_vec();
    payload.resize(1000, b'x');
    let wire = client_frame(true, 1, &payload);
    let header_len = 2 + 2 + 4;
    let out = send_raw(
        Role::Server,
        Config::default(),
        wire[..header_len + 20].to_vec(),
    )
    .await;
    assert_eq!(out.code, Some(1007));
    assert_eq!(
        out.error.unwrap().protocol_error(),
        Some(ProtocolError::InvalidUtf8)
    );
}

#[tokio::test]
async fn text_ending_inside_a_character_fails_with_1007() {
    let wire = client_frame(true, 1, b"cut \xe2\x82");
    server_fails(wire, 1007, ProtocolError::InvalidUtf8).await;
}

#[tokio::test]
async fn a_one_byte_close_payload_fails_with_1002() {
    let wire = client_frame(true, 8, &[0x03]);
    server_fails(wire, 1002, ProtocolError::ClosePayloadTooShort).await;
}

#[tokio::test]
async fn close_codes_that_may_not_be_on_the_wire_fail_with_1002() {
    for code in [
        0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65_535,
    ] {
        let wire = client_frame(true, 8, &close_payload(code, b""));
        server_fails(wire, 1002, ProtocolError::InvalidCloseCode(code)).await;
    }
}

#[tokio::test]
async fn every_valid_close_code_is_echoed() {
    for code in [
        1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000,
        4999,
    ] {
        let wire = client_frame(true, 8, &close_payload(code, b"reason"));
        let out = send_raw(Role::Server, Config::default(), wire).await;
        assert_eq!(out.code, Some(code), "echo of {code}");
        assert!(out.error.is_none(), "a close is not an error");
        assert!(
            out.closed_transport,
            "server closes the transport after the handshake"
        );
        assert!(matches!(&out.messages[..], [Message::Close(Some(f))] if f.code.as_u16() == code));
    }
}

#[tokio::test]
async fn a_close_reason_that_is_not_utf8_fails_with_1007() {
    let wire = client_frame(true, 8, &close_payload(1000, b"\xff\xfe"));
    server_fails(wire, 1007, ProtocolError::InvalidCloseReason).await;
}

#[tokio::test]
async fn a_frame_over_the_size_limit_fails_with_1009_from_its_header_alone() {
    let config = Config::default().max_frame_size(1000);
    // Only the header of a 1001-byte frame is sent.
    let wire = client_frame(true, 2, &[0; 1001])[..8].to_vec();
    let rule = ProtocolError::FrameTooLarge {
        size: 1001,
        limit: 1000,
    };
    server_fails_with(config, wire, 1009, rule).await;
}

#[tokio::test]
async fn a_header_announcing_2_pow_62_bytes_fails_with_1009_and_costs_nothing() {
    let mut wire = vec![0x82, 0xff];
    wire.extend_from_slice(&(1_u64 << 62).to_be_bytes());
    wire.extend_from_slice(&[1, 2, 3, 4]);
    let rule = ProtocolError::FrameTooLarge {
        size: 1 << 62,
        limit: 16 << 20,
    };
    server_fails(wire, 1009, rule).await;
}

#[tokio::test]
async fn a_fragmented_message_over_the_message_limit_fails_with_1009() {
    let config = Config::default().max_message_size(100);
    let mut wire = client_frame(false, 2, &[0; 60]);
    wire.extend(client_frame(false, 0, &[0; 30]));
    wire.extend(client_frame(true, 0, &[0; 11]));
    let rule = ProtocolError::MessageTooLarge {
        size: 101,
        limit: 100,
    };
    server_fails_with(config, wire, 1009, rule).await;
}

#[tokio::test]
async fn messages_before_a_violation_are_still_delivered() {
    let mut wire = client_frame(true, 1, b"first");
    wire.extend(client_frame(true, 2, b"second"));
    wire.extend(client_frame(true, 0, b"orphan"));
    let out = send_raw(Role::Server, Config::default(), wire).await;
    assert_eq!(
        out.messages,
        vec![Message::text("first"), Message::binary(&b"second"[..])]
    );
    assert_eq!(out.code, Some(1002));
}
