//! Control frames: pongs go out while the application only reads, ping floods cannot grow the
//! write queue, and keepalive detects a silent peer.

mod support;

use std::time::Duration;

use support::{client_frame, read_frame, tcp_pair, within, write_raw};
use tokio::io::AsyncWriteExt;
use tower_ws::{Config, ErrorKind, Message, Role, WebSocket};

#[tokio::test]
async fn an_application_that_only_reads_still_answers_every_ping() {
    let (mut raw, s) = tcp_pair().await;
    let reader = tokio::spawn(async move {
        let mut server = WebSocket::new(s, Role::Server, Config::default());
        let mut pings = 0;
        while let Some(Ok(m)) = server.recv().await {
            if matches!(m, Message::Ping(_)) {
                pings += 1;
            }
        }
        pings
    });
    for i in 0..10_u8 {
        write_raw(&mut raw, &client_frame(true, 9, &[i; 10])).await;
        let pong = within(5, read_frame(&mut raw)).await.unwrap();
        assert_eq!((pong.opcode, pong.payload), (10, vec![i; 10]));
    }
    // A burst of pings gets every pong, in order.
    let mut burst = Vec::new();
    for i in 0..50_u8 {
        burst.extend(client_frame(true, 9, &[i]));
    }
    write_raw(&mut raw, &burst).await;
    for i in 0..50_u8 {
        let pong = within(5, read_frame(&mut raw)).await.unwrap();
        assert_eq!((pong.opcode, pong.payload), (10, vec![i]));
    }
    drop(raw);
    assert_eq!(within(5, reader).await.unwrap(), 60);
}

#[tokio::test]
async fn with_auto_pong_off_pings_are_only_delivered() {
    let (mut raw, s) = tcp_pair().await;
    let mut server = WebSocket::new(s, Role::Server, Config::default().auto_pong(false));
    write_raw(&mut raw, &client_frame(true, 9, b"hello?")).await;
    write_raw(&mut raw, &client_frame(true, 1, b"text")).await;
    assert_eq!(
        within(5, server.recv()).await.unwrap().unwrap(),
        Message::ping(&b"hello?"[..])
    );
    assert_eq!(
        within(5, server.recv()).await.unwrap().unwrap(),
        Message::text("text")
    );
    // The application answers itself; the first frame the peer sees is that pong.
    server.send(Message::pong(&b"manual"[..])).await.unwrap();
    let first = within(5, read_frame(&mut raw)).await.unwrap();
    assert_eq!((first.opcode, first.payload), (10, b"manual".to_vec()));
}

#[tokio::test]
async fn a_ping_flood_from_a_peer_that_never_reads_cannot_grow_the_write_queue() {
    let (mut raw, s) = tcp_pair().await;
    let high_water = 16 << 10;
    let config = Config::default().write_buffer_high_water(high_water);
    let reader = tokio::spawn(async move {
        let mut server = WebSocket::new(s, Role::Server, config);
        let mut most = 0;
        while let Ok(Some(Ok(_))) =
            tokio::time::timeout(Duration::from_secs(1), server.recv()).await
        {
            most = most.max(server.buffered_amount());
        }
        most
    });
    // 20 MB of pings, never reading a pong. The flood stops when the server stops reading.
    let ping = client_frame(true, 9, &[7; 125]);
    let flood = ping.repeat(1000);
    let writing = async {
        for _ in 0..150 {
            if raw.write_all(&flood).await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(3), writing).await;
    let most = within(10, reader).await.unwrap();
    // One pong frame (127 bytes) past the mark at most.
    assert!(most <= high_water + 127, "write queue reached {most} bytes");
    assert!(most > 0, "the server did queue pongs");
}

#[tokio::test]
async fn keepalive_pings_a_quiet_peer_and_fails_a_silent_one() {
    tokio::time::pause();
    let (mut raw, s) = tcp_pair().await;
    let config = Config::default().keepalive(Duration::from_secs(10), Duration::from_secs(5));
    let mut server = WebSocket::new(s, Role::Server, config);
    let handler = tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        let mut seen = Vec::new();
        while let Some(item) = server.recv().await {
            match item {
                Ok(m) => seen.push(m),
                Err(e) => return (seen, Some(e), started.elapsed()),
            }
        }
        (seen, None, started.elapsed())
    });
    // A quiet peer that answers pings keeps the connection alive past the timeout.
    for _ in 0..3 {
        let ping = within(60, read_frame(&mut raw)).await.unwrap();
        assert_eq!(ping.opcode, 9);
        write_raw(&mut raw, &client_frame(true, 10, &ping.payload)).await;
    }
    // Now it goes silent: the next ping is unanswered and the connection fails.
    let ping = within(60, read_frame(&mut raw)).await.unwrap();
    assert_eq!(ping.opcode, 9);
    let close = within(60, read_frame(&mut raw)).await.unwrap();
    assert_eq!(close.close_code(), Some(1001));
    let (seen, error, elapsed) = within(60, handler).await.unwrap();
    assert_eq!(
        seen.iter()
            .filter(|m| matches!(m, Message::Pong(_)))
            .count(),
        3
    );
    assert_eq!(error.unwrap().kind(), ErrorKind::Timeout);
    // Three answered pings at 10 s each, then 10 s + 5 s of silence.
    assert!(
        elapsed >= Duration::from_secs(45) && elapsed < Duration::from_secs(50),
        "{elapsed:?}"
    );
}
