//! The client over real loopback sockets: against tokio-tungstenite, and against scripted
//! servers whose answers break each handshake rule.

mod support {
    pub(crate) mod peers;
}

use std::error::Error as _;
use std::time::{Duration, Instant};

use support::peers::{bounded, echo_server, scripted_server, scripted_then_close, serve_echo};
use tokio::net::{TcpListener, TcpStream};
use tower_ws::{ClientBuilder, CloseCode, Error, ErrorKind, HandshakeRejected, Message, WebSocket};

fn rejected(error: &Error) -> &HandshakeRejected {
    error
        .source()
        .and_then(|s| s.downcast_ref::<HandshakeRejected>())
        .unwrap_or_else(|| panic!("no HandshakeRejected behind {error:?}"))
}

fn switching(accept: &str, extra: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n{extra}\r\n"
    )
    .into_bytes()
}

async fn refused_by(addr: std::net::SocketAddr, client: &ClientBuilder) -> Error {
    client
        .connect(format!("ws://{addr}/"))
        .await
        .map(|_| ())
        .expect_err("the handshake should fail")
}

#[tokio::test]
async fn connects_echoes_and_closes_cleanly_against_tungstenite() {
    bounded(async {
        let (addr, mut seen) = echo_server(Some("chat")).await;
        let client = ClientBuilder::new()
            .protocols(["superchat", "chat"])
            .unwrap()
            .origin("https://example.test".parse().unwrap())
            .header("x-test".parse().unwrap(), "42".parse().unwrap())
            .unwrap();
        let (mut ws, response) = client
            .connect(format!("ws://{addr}/echo?room=1"))
            .await
            .unwrap();
        assert_eq!(response.status(), 101);
        assert_eq!(response.headers()["sec-websocket-protocol"], "chat");
        assert!(!ws.get_ref().is_tls());
        assert_eq!(ws.get_ref().get_ref().peer_addr().unwrap(), addr);

        let request = seen.recv().await.unwrap();
        assert_eq!(request.uri, "/echo?room=1");
        let h = &request.headers;
        assert_eq!(h["host"], addr.to_string());
        assert_eq!(h["origin"], "https://example.test");
        assert_eq!(h["x-test"], "42");
        assert_eq!(h["sec-websocket-version"], "13");
        assert_eq!(h["sec-websocket-protocol"], "superchat, chat");
        assert_eq!(h["sec-websocket-key"].len(), 24);

        ws.send(Message::text("hello")).await.unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("hello"));
        let big: Vec<u8> = (0..200_000_u32).map(|i| (i % 251) as u8).collect();
        ws.send(Message::binary(big.clone())).await.unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap(), Message::binary(big));

        ws.close(CloseCode::NORMAL, "bye").await.unwrap();
        assert!(ws.recv().await.is_none());
    })
    .await;
}

#[tokio::test]
async fn runs_the_handshake_over_a_transport_the_caller_opened() {
    bounded(async {
        let (addr, mut seen) = echo_server(None).await;
        let tcp = TcpStream::connect(addr).await.unwrap();
        // The result is over the caller's own type: no boxing, no wrapper.
        let (mut ws, response): (WebSocket<TcpStream>, _) = ClientBuilder::new()
            .handshake("ws://virtual.test/room", tcp)
            .await
            .unwrap();
        assert_eq!(response.status(), 101);
        assert!(response.headers().get("sec-websocket-protocol").is_none());
        let request = seen.recv().await.unwrap();
        assert_eq!(request.headers["host"], "virtual.test");
        assert_eq!(request.uri, "/room");

        ws.send(Message::binary(&b"\x00\xff"[..])).await.unwrap();
        assert_eq!(
            ws.recv().await.unwrap().unwrap(),
            Message::binary(&b"\x00\xff"[..])
        );
        ws.close(CloseCode::NORMAL, "").await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn runs_the_handshake_over_an_in_memory_pipe() {
    bounded(async {
        let (io, server_io) = tokio::io::duplex(1024);
        let (tx, _seen) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(serve_echo(server_io, None, tx));
        let (mut ws, _) = ClientBuilder::new()
            .handshake("ws://pipe.test", io)
            .await
            .unwrap();
        ws.send(Message::text("through the pipe")).await.unwrap();
        assert_eq!(
            ws.recv().await.unwrap().unwrap(),
            Message::text("through the pipe")
        );
    })
    .await;
}

#[tokio::test]
async fn keeps_frames_the_server_sent_right_after_its_answer() {
    bounded(async {
        let addr = scripted_server(|accept| {
            let mut bytes = switching(accept, "");
            // An unmasked text frame "early", in the same write as the 101.
            bytes.extend_from_slice(b"\x81\x05early");
            Some(bytes)
        })
        .await;
        let (mut ws, _) = ClientBuilder::new()
            .connect(format!("ws://{addr}/"))
            .await
            .unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("early"));
    })
    .await;
}

#[tokio::test]
async fn refuses_a_wrong_accept_value() {
    bounded(async {
        let addr = scripted_server(|_| Some(switching("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", ""))).await;
        let err = refused_by(addr, &ClientBuilder::new()).await;
        assert_eq!(err.kind(), ErrorKind::Handshake);
        assert_eq!(
            err.to_string(),
            "server's `Sec-WebSocket-Accept` does not match the key sent"
        );
        assert_eq!(rejected(&err).status(), 101);
    })
    .await;
}

#[tokio::test]
async fn refuses_an_answer_without_the_upgrade_header() {
    bounded(async {
        let addr = scripted_server(|accept| {
            Some(
                format!(
                    "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\
                     Sec-WebSocket-Accept: {accept}\r\n\r\n"
                )
                .into_bytes(),
            )
        })
        .await;
        let err = refused_by(addr, &ClientBuilder::new()).await;
        assert_eq!(err.kind(), ErrorKind::Handshake);
        assert_eq!(
            err.to_string(),
            "server's answer lacks `Upgrade: websocket`"
        );
        assert!(rejected(&err).headers().get("upgrade").is_none());
    })
    .await;
}

#[tokio::test]
async fn refuses_an_answer_without_connection_upgrade() {
    bounded(async {
        let addr = scripted_server(|accept| {
            Some(
                format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                     Connection: keep-alive\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
                )
                .into_bytes(),
            )
        })
        .await;
        let err = refused_by(addr, &ClientBuilder::new()).await;
        assert_eq!(
            err.to_string(),
            "server's answer lacks `Connection: upgrade`"
        );
    })
    .await;
}

#[tokio::test]
async fn reports_a_refusal_with_its_status_and_the_start_of_its_body() {
    bounded(async {
        let addr = scripted_server(|_| {
            Some(
                b"HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: 20\r\n\r\n\
                  origin not allowed\r\n"
                    .to_vec(),
            )
        })
        .await;
        let err = refused_by(addr, &ClientBuilder::new()).await;
        assert_eq!(err.kind(), ErrorKind::Handshake);
        assert_eq!(err.to_string(), "server refused the websocket upgrade");
        let answer = rejected(&err);
        assert_eq!(answer.status(), 403);
        assert_eq!(answer.headers()["content-type"], "text/plain");
        assert_eq!(&answer.body()[..], b"origin not allowed\r\n");
        assert_eq!(answer.to_string(), "server answered 403 Forbidden");
    })
    .await;
}

#[tokio::test]
async fn keeps_only_the_first_kilobyte_of_a_long_body() {
    bounded(async {
        let addr = scripted_server(|_| {
            let mut bytes =
                b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 1000000\r\n\r\n".to_vec();
            bytes.extend(std::iter::repeat_n(b'x', 1_000_000));
            Some(bytes)
        })
        .await;
        let err = refused_by(addr, &ClientBuilder::new()).await;
        let answer = rejected(&err);
        assert_eq!(answer.status(), 500);
        assert_eq!(answer.body().len(), HandshakeRejected::BODY_LIMIT);
    })
    .await;
}

#[tokio::test]
async fn gives_up_on_a_body_that_stalls() {
    bounded(async {
        let addr = scripted_server(|_| {
            // A chunked body whose first chunk comes and whose end never does.
            Some(
                b"HTTP/1.1 502 Bad Gateway\r\ntransfer-encoding: chunked\r\n\r\n5\r\nstart\r\n"
                    .to_vec(),
            )
        })
        .await;
        let started = Instant::now();
        let err = refused_by(addr, &ClientBuilder::new()).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        let answer = rejected(&err);
        assert_eq!(answer.status(), 502);
        assert_eq!(&answer.body()[..], b"start");
    })
    .await;
}

#[tokio::test]
async fn refuses_a_subprotocol_it_did_not_offer() {
    bounded(async {
        for offered in [&["chat"][..], &[]] {
            let addr = scripted_server(|accept| {
                Some(switching(accept, "Sec-WebSocket-Protocol: evil\r\n"))
            })
            .await;
            let client = ClientBuilder::new().protocols(offered).unwrap();
            let err = refused_by(addr, &client).await;
            assert_eq!(err.kind(), ErrorKind::Handshake);
            assert_eq!(
                err.to_string(),
                "server chose a subprotocol that was not offered"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn refuses_an_extension_it_did_not_offer() {
    bounded(async {
        let addr = scripted_server(|accept| {
            Some(switching(
                accept,
                "Sec-WebSocket-Extensions: permessage-deflate\r\n",
            ))
        })
        .await;
        let err = refused_by(addr, &ClientBuilder::new()).await;
        assert_eq!(
            err.to_string(),
            "server chose an extension that was not offered"
        );
    })
    .await;
}

#[tokio::test]
async fn times_out_when_the_server_never_answers() {
    bounded(async {
        let addr = scripted_server(|_| None).await;
        let client = ClientBuilder::new().handshake_timeout(Duration::from_millis(200));
        let started = Instant::now();
        let err = refused_by(addr, &client).await;
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert_eq!(err.to_string(), "websocket handshake timed out");
        assert!(started.elapsed() < Duration::from_secs(5));
    })
    .await;
}

#[tokio::test]
async fn fails_when_the_server_closes_before_answering() {
    bounded(async {
        let addr = scripted_then_close(|_| None).await;
        let err = refused_by(addr, &ClientBuilder::new()).await;
        assert_eq!(err.kind(), ErrorKind::Handshake);
        assert_eq!(
            err.to_string(),
            "connection closed before the server answered"
        );
        assert!(err.source().is_some());
    })
    .await;
}

#[tokio::test]
async fn fails_on_an_answer_that_is_not_http() {
    bounded(async {
        let addr = scripted_server(|_| Some(b"SSH-2.0-OpenSSH_9.2\r\n\r\n".to_vec())).await;
        let err = refused_by(addr, &ClientBuilder::new()).await;
        assert_eq!(err.kind(), ErrorKind::Handshake);
        assert_eq!(err.to_string(), "server's answer is not valid HTTP/1.1");
    })
    .await;
}

#[tokio::test]
async fn never_panics_on_malformed_answers() {
    let answers: Vec<Vec<u8>> = vec![
        b"HTTP/1.1 101\r\n\r\n".to_vec(),
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\
          Sec-WebSocket-Accept: \xff\xfe\r\n\r\n"
            .to_vec(),
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: \r\nConnection: ,,,\r\n\r\n".to_vec(),
        b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Protocol: ,\r\n\r\n".to_vec(),
        b"HTTP/1.1 999 Nope\r\n\r\n".to_vec(),
        b"HTTP/1.0 200 OK\r\n\r\nclose-delimited body".to_vec(),
        b"HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999999\r\n\r\n".to_vec(),
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello".to_vec(),
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n".to_vec(),
        b"HTTP/2 101\r\n\r\n".to_vec(),
        b"\r\n\r\n".to_vec(),
        vec![0; 100],
        [
            b"HTTP/1.1 101 OK\r\nx: ".to_vec(),
            vec![b'a'; 500_000],
            b"\r\n\r\n".to_vec(),
        ]
        .concat(),
    ];
    bounded(async {
        for answer in answers {
            let shown = String::from_utf8_lossy(&answer[..answer.len().min(60)]).into_owned();
            for close in [false, true] {
                let bytes = answer.clone();
                let addr = if close {
                    scripted_then_close(move |_| Some(bytes)).await
                } else {
                    scripted_server(move |_| Some(bytes)).await
                };
                let client = ClientBuilder::new().handshake_timeout(Duration::from_secs(1));
                let err = refused_by(addr, &client).await;
                assert!(
                    matches!(err.kind(), ErrorKind::Handshake | ErrorKind::Timeout),
                    "{shown:?}: {err:?}"
                );
            }
        }
    })
    .await;
}

#[tokio::test]
async fn reports_a_refused_tcp_connection_as_io() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = refused_by(addr, &ClientBuilder::new()).await;
        assert_eq!(err.kind(), ErrorKind::Io);
        assert_eq!(err.to_string(), "could not connect to the server");
        let io = err
            .source()
            .unwrap()
            .downcast_ref::<std::io::Error>()
            .unwrap();
        assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
    })
    .await;
}

#[tokio::test]
async fn refuses_urls_that_are_not_websocket_urls() {
    bounded(async {
        let client = ClientBuilder::new();
        for url in ["ftp://127.0.0.1/", "127.0.0.1:80", "/just/a/path", "ws://"] {
            let err = client.connect(url).await.map(|_| ()).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Handshake, "{url}");
        }
    })
    .await;
}

#[test]
fn handshake_futures_can_be_spawned() {
    fn assert_send<T: Send>(_: &T) {}
    let client = ClientBuilder::new();
    let connect = client.connect("ws://127.0.0.1:1/");
    assert_send(&connect);
    let (io, _) = tokio::io::duplex(64);
    let handshake = client.handshake("ws://127.0.0.1/", io);
    assert_send(&handshake);
}
