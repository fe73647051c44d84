//! Graceful shutdown: open sockets close with 1001, handlers are waited for, and what does not
//! finish by the deadline is dropped.

pub mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use support::{VALID, bounded, close_code, connect, handshake, inner, raw, serve};
use tokio::io::AsyncReadExt;
use tower::ServiceBuilder;
use tower_ws::{Config, Session, UpgradeLayer, handler_fn};

#[tokio::test]
async fn shutdown_closes_every_socket_with_1001_and_waits_for_the_handlers() {
    let finished = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&finished);
    let handler = handler_fn(move |Session { mut socket, .. }| {
        let counter = Arc::clone(&counter);
        async move {
            while let Some(Ok(message)) = socket.recv().await {
                if message.is_text() {
                    let _ = socket.send(message).await;
                }
            }
            // Cleanup after the socket closed, which shutdown must wait for.
            tokio::time::sleep(Duration::from_millis(200)).await;
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    let layer = UpgradeLayer::new(handler);
    let shutdown = layer.shutdown_handle();
    let addr = serve(ServiceBuilder::new().layer(layer).service(inner())).await;

    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(connect(addr, "/ws").await);
    }
    // Every session is running.
    bounded(async {
        while shutdown.active() < 5 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut client| tokio::spawn(async move { close_code(&mut client).await }))
        .collect();

    let dropped = bounded(shutdown.shutdown(Duration::from_secs(5))).await;
    assert_eq!(dropped, 0);
    assert_eq!(
        finished.load(Ordering::SeqCst),
        5,
        "shutdown returned before the handlers"
    );
    assert_eq!(shutdown.active(), 0);
    for reader in readers {
        assert_eq!(bounded(reader).await.unwrap(), Some(1001));
    }
}

#[tokio::test]
async fn a_socket_whose_peer_never_answers_is_dropped_at_the_deadline() {
    let handler = handler_fn(|Session { mut socket, .. }| async move {
        while let Some(Ok(_)) = socket.recv().await {}
    });
    // A close timeout far beyond the deadline: the deadline must be what ends the session.
    let layer =
        UpgradeLayer::new(handler).config(Config::default().close_timeout(Duration::from_secs(60)));
    let shutdown = layer.shutdown_handle();
    let addr = serve(ServiceBuilder::new().layer(layer).service(inner())).await;

    // A peer that completes the handshake and then never reads or answers.
    let mut silent = raw(addr, &handshake("GET", "/ws", &VALID)).await;
    assert_eq!(silent.status, 101);
    bounded(async {
        while shutdown.active() < 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;

    let started = Instant::now();
    let dropped = bounded(shutdown.shutdown(Duration::from_millis(300))).await;
    assert_eq!(dropped, 1);
    assert!(started.elapsed() >= Duration::from_millis(300));

    // The peer finds the close frame (1001), then the connection closed: long before the
    // 60 s close timeout.
    let mut received = silent.rest.clone();
    bounded(async {
        let mut chunk = [0_u8; 256];
        loop {
            match silent.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        received.get(..4),
        Some(&[0x88, 22, 0x03, 0xE9][..]),
        "{received:?}"
    );
    assert_eq!(&received[4..], b"server shutting down");
    bounded(async {
        while shutdown.active() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_handler_that_never_polls_its_socket_is_dropped_at_the_deadline() {
    let handler = handler_fn(|Session { socket, .. }| async move {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        drop(socket);
    });
    let layer = UpgradeLayer::new(handler);
    let shutdown = layer.shutdown_handle();
    let addr = serve(ServiceBuilder::new().layer(layer).service(inner())).await;
    let mut client = connect(addr, "/ws").await;
    bounded(async {
        while shutdown.active() < 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;

    let dropped = bounded(shutdown.shutdown(Duration::from_millis(200))).await;
    assert_eq!(dropped, 1);
    // The connection ends without a close frame: the handler never let the socket send one.
    let end = bounded(client.next()).await;
    assert!(
        matches!(end, None | Some(Err(_))),
        "expected the connection to end, got {end:?}"
    );
}

#[tokio::test]
async fn handshakes_after_shutdown_began_are_refused_with_503() {
    let layer = UpgradeLayer::new(support::echo());
    let shutdown = layer.shutdown_handle();
    let addr = serve(ServiceBuilder::new().layer(layer).service(inner())).await;
    assert!(!shutdown.is_shutting_down());
    assert_eq!(bounded(shutdown.shutdown(Duration::from_secs(1))).await, 0);
    assert!(shutdown.is_shutting_down());

    let response = raw(addr, &handshake("GET", "/ws", &VALID)).await;
    assert_eq!(response.status, 503);
    assert_eq!(response.body, "the server is shutting down\n");
    // Ordinary requests are the inner service's business.
    let response = raw(addr, &handshake("GET", "/page", &[])).await;
    assert_eq!(response.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_a_thousand_sockets_with_1001_and_waits_for_every_handler() {
    let (dropped, returned) = shut_down_a_thousand_sockets(false).await;
    assert_eq!(dropped, 0);
    assert!(returned < THOUSAND_DEADLINE, "returned after {returned:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_thousand_sockets_closing_a_silent_one_is_dropped_at_the_deadline() {
    let (dropped, returned) = shut_down_a_thousand_sockets(true).await;
    assert_eq!(
        dropped, 1,
        "only the silent session is left at the deadline"
    );
    assert!(returned >= THOUSAND_DEADLINE, "returned after {returned:?}");
}

const THOUSAND_DEADLINE: Duration = Duration::from_secs(5);

/// Opens 1,000 sockets whose clients answer the close frame (as every client library does),
/// and one whose client answers nothing if `silent`, then shuts down with a 5 s deadline.
/// Checks that every answering socket got 1001 and was closed, and that their handlers had
/// all finished when `shutdown` returned; returns what `shutdown` returned and when.
async fn shut_down_a_thousand_sockets(silent: bool) -> (usize, Duration) {
    const SOCKETS: usize = 1000;
    const DEADLINE: Duration = THOUSAND_DEADLINE;
    let (started, finished) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let counters = (Arc::clone(&started), Arc::clone(&finished));
    let handler = handler_fn(move |Session { mut socket, .. }| {
        let (started, finished) = (Arc::clone(&counters.0), Arc::clone(&counters.1));
        async move {
            started.fetch_add(1, Ordering::SeqCst);
            while let Some(Ok(_)) = socket.recv().await {}
            // Cleanup after the socket closed, which shutdown must wait for.
            tokio::time::sleep(Duration::from_millis(50)).await;
            finished.fetch_add(1, Ordering::SeqCst);
        }
    });
    // A close timeout beyond the deadline, so the deadline is what ends the silent session.
    let config = Config::default().close_timeout(Duration::from_secs(60));
    let layer = UpgradeLayer::new(handler).config(config);
    let shutdown = layer.shutdown_handle();
    let addr = serve(ServiceBuilder::new().layer(layer).service(inner())).await;

    // Clients that answer the close frame and read to the end.
    let mut clients = Vec::with_capacity(SOCKETS);
    for _ in 0..SOCKETS {
        let mut client = support::raw_ws(addr, "/ws").await;
        clients.push(tokio::spawn(async move {
            let close = support::read_until_close(&mut client).await.unwrap();
            let answer = support::client_frame(true, 8, &close.payload);
            support::write_raw(&mut client, &answer).await;
            let closed = support::sees_eof(&mut client, 30).await;
            (close.close_code(), close.payload[2..].to_vec(), closed)
        }));
    }
    // And one that reads nothing and answers nothing.
    let mut silent = if silent {
        Some(raw(addr, &handshake("GET", "/ws", &VALID)).await)
    } else {
        None
    };
    let sessions = SOCKETS + usize::from(silent.is_some());
    // Every handler is running (a session still waiting for hyper to hand over its connection
    // when shutdown begins is closed without running its handler).
    bounded(async {
        while started.load(Ordering::SeqCst) < sessions {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;

    let began = Instant::now();
    let all_closed = tokio::spawn({
        let finished = Arc::clone(&finished);
        async move {
            while finished.load(Ordering::SeqCst) < SOCKETS {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            began.elapsed()
        }
    });
    let dropped = shutdown.shutdown(DEADLINE).await;
    let returned = began.elapsed();
    let done_at_return = finished.load(Ordering::SeqCst);
    let all_closed = bounded(all_closed).await.unwrap();
    eprintln!(
        "shutdown of {sessions} sockets: every answering handler done after {all_closed:?}; \
         shutdown returned {dropped} after {returned:?} (deadline {DEADLINE:?})"
    );
    assert_eq!(
        done_at_return, SOCKETS,
        "shutdown returned before the handlers"
    );
    for client in clients {
        let (code, reason, closed) = bounded(client).await.unwrap();
        assert_eq!(code, Some(1001));
        assert_eq!(reason, b"server shutting down");
        assert!(closed, "the server closed the connection");
    }
    // The silent client finds the close frame, then the end of the stream.
    if let Some(silent) = &mut silent {
        let close = bounded(support::read_frame(&mut silent.stream))
            .await
            .unwrap();
        assert_eq!(close.close_code(), Some(1001));
        assert!(support::sees_eof(&mut silent.stream, 10).await);
    }
    bounded(async {
        while shutdown.active() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    (dropped, returned)
}

#[tokio::test]
async fn sessions_that_came_and_went_leave_shutdown_reaching_every_open_one() {
    // The layer keeps a slot per running session and reuses the slots of ended ones: after
    // sessions end and new ones take their slots, shutdown must still reach every open socket
    // (and nothing else).
    let layer = UpgradeLayer::new(support::echo());
    let shutdown = layer.shutdown_handle();
    let addr = serve(ServiceBuilder::new().layer(layer).service(inner())).await;
    let until_active = |n: usize| {
        let shutdown = shutdown.clone();
        bounded(async move {
            while shutdown.active() != n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let mut kept = Vec::new();
    for round in 0..3 {
        let mut leaving = Vec::new();
        for i in 0..20 {
            let client = connect(addr, "/ws").await;
            if i % 2 == 0 {
                kept.push(client);
            } else {
                leaving.push(client);
            }
        }
        until_active(kept.len() + leaving.len()).await;
        for mut client in leaving {
            bounded(client.close(None)).await.unwrap();
        }
        until_active(kept.len()).await;
        assert_eq!(kept.len(), 10 * (round + 1));
    }
    let readers: Vec<_> = kept
        .into_iter()
        .map(|mut client| tokio::spawn(async move { close_code(&mut client).await }))
        .collect();
    let dropped = bounded(shutdown.shutdown(Duration::from_secs(5))).await;
    assert_eq!(dropped, 0);
    assert_eq!(shutdown.active(), 0);
    for reader in readers {
        assert_eq!(bounded(reader).await.unwrap(), Some(1001));
    }
}

#[tokio::test]
async fn a_socket_its_handler_dropped_open_is_closed_when_the_handler_returns() {
    // The handler lets go of its socket after the first message and goes on working: the
    // layer keeps the connection and closes it (1000) once the handler returns, not before,
    // and not abruptly.
    let (dropped_tx, mut dropped_rx) = tokio::sync::mpsc::unbounded_channel();
    let handler = handler_fn(move |Session { mut socket, .. }| {
        let dropped_tx = dropped_tx.clone();
        async move {
            let _ = socket.recv().await;
            drop(socket);
            let _ = dropped_tx.send(Instant::now());
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let addr = serve(
        ServiceBuilder::new()
            .layer(UpgradeLayer::new(handler))
            .service(inner()),
    )
    .await;
    let mut client = connect(addr, "/ws").await;
    futures_util::SinkExt::send(
        &mut client,
        tokio_tungstenite::tungstenite::Message::text("x"),
    )
    .await
    .unwrap();
    let dropped_at = bounded(dropped_rx.recv()).await.unwrap();
    let code = bounded(close_code(&mut client)).await;
    assert_eq!(code, Some(1000));
    assert!(
        dropped_at.elapsed() >= Duration::from_millis(250),
        "closed {:?} after the socket was dropped, before the handler returned",
        dropped_at.elapsed()
    );
}
