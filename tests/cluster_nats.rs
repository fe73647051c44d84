//! Several server nodes sharing topics through a real `nats-server` (feature `nats`): core
//! NATS, at most once, no history.
//!
//! Each node is its own thread with its own Tokio runtime (tests/support/cluster.rs). The
//! restart test starts its own `nats-server`; the others use CI's (`TOWER_WS_NATS_URL`) or a
//! private one. Without `nats-server` they skip, except in CI where they fail.

mod support;

use std::time::Duration;

use support::brokers::{Kind, Server, shared_nats, unique_prefix};
use support::cluster::{Node, Spec, Sub, fan_out_across_three_nodes, settle, until_subscribed};
use tower_ws::Message;
use tower_ws::broker::{Broker, BrokerErrorKind, Event, GapReason, NatsConfig, Position};

/// Messages per fan-out run.
const FANOUT_N: usize = 300;

fn config(test: &str) -> NatsConfig {
    NatsConfig::default().prefix(unique_prefix(test))
}

fn spec(url: &str, config: &NatsConfig) -> Spec {
    Spec::Nats(url.to_owned(), config.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_reaches_every_node_once_in_order_and_only_nodes_holding_the_topic() {
    let Some(nats) = shared_nats() else { return };
    let spec = spec(&nats.url(), &config("fanout"));
    let (subs, _nodes) = fan_out_across_three_nodes(spec, "news.today", FANOUT_N, &[1]).await;
    for sub in &subs {
        assert!(
            sub.got.iter().all(|(p, _)| p.is_none()),
            "NATS has no positions"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restart_mid_stream_every_node_resubscribes_and_reports_the_gap() {
    let Some(mut nats) = Server::start(Kind::Nats, false) else {
        return;
    };
    let config = config("restart");
    let a = Node::start(spec(&nats.url(), &config), 0);
    let b = Node::start(spec(&nats.url(), &config), 0);
    let mut subs = vec![
        Sub::connect(a.addr, "s", None).await,
        Sub::connect(b.addr, "s", None).await,
    ];
    let (publisher, _events) = Broker::nats(&nats.url(), config.clone()).await.unwrap();
    until_subscribed(&a, 1).await;
    until_subscribed(&b, 1).await;
    settle().await;

    for i in 0..100 {
        publisher
            .publish("s", &Message::text(format!("m{i}")))
            .await
            .unwrap();
    }
    for sub in &mut subs {
        assert!(sub.read_until(100, 10).await);
    }
    nats.kill();
    // While NATS is down (once the client noticed), publishes fail with a clear error. Those
    // taken before the client noticed may arrive after the reconnect, or never: at most once.
    let mut i = 100;
    let mut refused = 0;
    let down = tokio::time::Instant::now();
    while down.elapsed() < Duration::from_secs(3) && refused == 0 {
        let attempt = publisher.publish("s", &Message::text(format!("m{i}")));
        if let Err(error) = attempt.await {
            assert_eq!(error.kind(), BrokerErrorKind::Unavailable);
            assert!(
                error.to_string().contains("not connected to NATS"),
                "{error}"
            );
            refused += 1;
        } else {
            i += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert!(refused > 0, "publishes were refused while NATS was down");
    nats.restart();
    // After the reconnect every node is subscribed again: new messages reach all of them.
    let resumed_at = i;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nodes did not resubscribe"
        );
        if publisher
            .publish("s", &Message::text(format!("m{i}")))
            .await
            .is_ok()
        {
            i += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut all = true;
        for sub in &mut subs {
            sub.read_for(10).await;
            all &= sub
                .got
                .last()
                .is_some_and(|(_, p)| p == &format!("m{}", i - 1));
        }
        if all && i > resumed_at + 10 {
            break;
        }
    }
    for (sub, node) in subs.iter().zip([&a, &b]) {
        // At most once: never twice, never out of order.
        let numbers: Vec<u64> = sub
            .got
            .iter()
            .map(|(_, p)| p.trim_start_matches('m').parse().unwrap())
            .collect();
        assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
        assert!(node.broker.stats().connects >= 2);
        assert!(
            node.gaps().iter().any(|e| matches!(
                e,
                Event::Gap { topic: Some(t), reason: GapReason::Disconnected, .. } if &**t == "s"
            )),
            "the node reported the messages it may have missed: {:?}",
            node.gaps()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_has_no_history_and_says_so() {
    let Some(nats) = shared_nats() else { return };
    let (broker, _events) = Broker::nats(&nats.url(), config("history")).await.unwrap();
    let since = Position {
        epoch: 1,
        offset: 0,
    };
    let error = broker.history("t", since, 10).await.unwrap_err();
    assert_eq!(error.kind(), BrokerErrorKind::Unsupported);
    assert!(error.to_string().contains("NATS"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_data_on_a_subject_is_reported_and_dropped() {
    let Some(nats) = shared_nats() else { return };
    let prefix = unique_prefix("bad");
    let (node, mut events) = Broker::nats(&nats.url(), NatsConfig::default().prefix(&prefix))
        .await
        .unwrap();
    node.join("t");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while node.stats().subscribed < 1 {
        assert!(tokio::time::Instant::now() < deadline, "never subscribed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let raw = async_nats::connect(nats.url()).await.unwrap();
    for junk in [
        &b"not from tower-ws, long enough to pass the length check"[..],
        b"",
    ] {
        raw.publish(format!("{prefix}.t"), bytes::Bytes::copy_from_slice(junk))
            .await
            .unwrap();
    }
    raw.flush().await.unwrap();
    node.publish("t", &Message::binary(vec![1, 2, 3]))
        .await
        .unwrap();
    // NATS orders messages per publishing connection only: the junk and the good message come
    // from two connections and may arrive in either order.
    let (mut bad, mut good) = (0, 0);
    while bad < 2 || good < 1 {
        match tokio::time::timeout(Duration::from_secs(5), events.recv()).await {
            Ok(Some(Event::BadData { topic, .. })) => {
                assert_eq!(&*topic, "t");
                bad += 1;
            }
            Ok(Some(Event::Message(delivery))) => {
                assert_eq!(delivery.message, Message::binary(vec![1, 2, 3]));
                good += 1;
            }
            Ok(Some(_)) => {}
            other => panic!("{bad} bad, {good} good, then {other:?}"),
        }
    }
    // Nothing more: each junk message reported once, the good one delivered once.
    let more = tokio::time::timeout(Duration::from_millis(300), events.recv()).await;
    assert!(
        !matches!(more, Ok(Some(Event::BadData { .. } | Event::Message(_)))),
        "{more:?}"
    );
}
