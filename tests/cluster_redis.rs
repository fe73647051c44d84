//! Several server nodes sharing topics through a real `redis-server` (feature `redis`).
//!
//! Each node is its own thread with its own Tokio runtime, listener, broker connection and hub
//! (tests/support/cluster.rs); clients are tokio-tungstenite over TCP. Tests that kill Redis
//! start their own `redis-server`; the others use CI's (`TOWER_WS_REDIS_URL`) or a private one.
//! Without `redis-server` they skip, except in CI where they fail.

mod support;

use std::time::Duration;

use support::brokers::{Kind, Server, shared_redis, unique_prefix};
use support::cluster::{
    Node, Spec, Sub, fan_out_across_three_nodes, payloads, publisher, send_all, settle,
    until_connected, until_subscribed,
};
use tower_ws::Message;
use tower_ws::broker::{Broker, BrokerErrorKind, Event, GapReason, Position, RedisConfig};

/// Messages per fan-out run.
const FANOUT_N: usize = 300;
/// Messages published across a Redis restart.
const RESTART_N: usize = 600;
/// Messages a lagging node must recover.
const LAG_N: usize = 500;

fn config(test: &str) -> RedisConfig {
    RedisConfig::default().prefix(unique_prefix(test))
}

fn spec(url: &str, config: &RedisConfig) -> Spec {
    Spec::Redis(url.to_owned(), config.clone())
}

fn offsets(sub: &Sub) -> Vec<u64> {
    sub.got.iter().map(|(p, _)| p.unwrap().offset).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_reaches_every_node_once_in_order_and_only_nodes_holding_the_topic() {
    let Some(redis) = shared_redis() else { return };
    let spec = spec(&redis.url(), &config("fanout"));
    let (subs, [a, b, c]) = fan_out_across_three_nodes(spec, "news", FANOUT_N, &[0, 1]).await;
    for sub in &subs {
        // Offsets with no hole, the same on every node.
        let offsets = offsets(sub);
        assert!(offsets.windows(2).all(|w| w[1] == w[0] + 1), "{offsets:?}");
    }
    let first = subs[0].got.clone();
    for sub in &subs[1..] {
        assert_eq!(sub.got, first, "every node sees the same positions");
    }
    let (sa, sb, sc) = (a.broker.stats(), b.broker.stats(), c.broker.stats());
    assert_eq!((sa.published, sb.published), (FANOUT_N as u64, 50));
    assert_eq!(sa.duplicates + sb.duplicates + sc.duplicates, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_leaves_the_broker_channel_with_its_last_subscriber() {
    let Some(redis) = shared_redis() else { return };
    let config = config("leave");
    let a = Node::start(spec(&redis.url(), &config), 0);
    let b = Node::start(spec(&redis.url(), &config), 0);
    let sub = Sub::connect(b.addr, "room", None).await;
    let sub2 = Sub::connect(b.addr, "room", None).await;
    settle().await;
    assert_eq!(b.broker.topics().len(), 1);
    sub.close().await;
    settle().await;
    assert_eq!(b.broker.topics().len(), 1, "one local subscriber left");
    sub2.close().await;
    settle().await;
    assert!(b.broker.topics().is_empty());

    let mut pub_a = publisher(a.addr, "room").await;
    send_all(&mut pub_a, (0..20).map(|i| format!("{i}"))).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.broker.stats().received, 0, "B left the channel");
    assert_eq!(a.broker.stats().published, 20);
}

/// Publishes `payload` through `broker`, retrying while Redis is unavailable; the publish
/// errors it saw.
async fn publish_until_taken(broker: &Broker, topic: &str, payload: String) -> usize {
    let message = Message::text(payload);
    let mut failures = 0;
    loop {
        match broker.publish(topic, &message).await {
            Ok(_) => return failures,
            Err(error) => {
                assert_eq!(error.kind(), BrokerErrorKind::Unavailable, "{error}");
                assert!(
                    error.to_string().contains(&format!("publish to {topic:?}")),
                    "{error}"
                );
                failures += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The positions received around each missing payload, to tell a lost offset from a reused one.
fn offsets_around(sub: &Sub, missing: &[&String]) -> Vec<String> {
    let mut around = Vec::new();
    for m in missing {
        let n: usize = m[1..].parse().unwrap();
        for (position, payload) in &sub.got {
            let Ok(i) = payload[1..].parse::<usize>() else {
                continue;
            };
            if i + 2 >= n && i <= n + 2 {
                around.push(format!("{payload}@{position:?}"));
            }
        }
    }
    around
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_mid_stream_every_node_resubscribes_and_nothing_is_lost() {
    let Some(mut redis) = Server::start(Kind::Redis, true) else {
        return;
    };
    let config = config("restart").op_timeout(Duration::from_millis(500));
    let a = Node::start(spec(&redis.url(), &config), 0);
    let b = Node::start(spec(&redis.url(), &config), 0);
    let c = Node::start(spec(&redis.url(), &config), 0);
    let mut subs = Vec::new();
    for node in [&a, &b, &c] {
        subs.push(Sub::connect(node.addr, "stream", None).await);
        until_subscribed(node, 1).await;
    }
    settle().await;
    let (publisher, _events) = Broker::redis(&redis.url(), config.clone()).unwrap();

    let mut failures = 0;
    for i in 0..RESTART_N {
        if i == RESTART_N / 3 {
            redis.kill();
            // Down for a while: publishes fail with a clear error meanwhile.
            let stopped = tokio::time::Instant::now();
            while stopped.elapsed() < Duration::from_millis(700) {
                let error = publisher
                    .publish("stream", &Message::text("never"))
                    .await
                    .unwrap_err();
                assert!(error.is_unavailable(), "{error}");
                failures += 1;
            }
            redis.restart();
        }
        failures += publish_until_taken(&publisher, "stream", format!("m{i}")).await;
        if i % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    assert!(failures > 0, "the outage was seen by the publisher");
    let expected: Vec<String> = (0..RESTART_N).map(|i| format!("m{i}")).collect();
    for (sub, node) in subs.iter_mut().zip([&a, &b, &c]) {
        if !sub.read_until(RESTART_N, 30).await {
            let got = payloads(sub);
            let missing: Vec<&String> = expected.iter().filter(|m| !got.contains(m)).collect();
            panic!(
                "got {} of {RESTART_N} ({:?}); missing {missing:?}; positions {:?}; gaps {:?}; {:?}",
                got.len(),
                sub.ended,
                offsets_around(sub, &missing),
                node.gaps(),
                node.broker.stats()
            );
        }
        assert_eq!(
            payloads(sub),
            expected,
            "every acknowledged message, once, in order"
        );
        assert!(node.gaps().is_empty(), "{:?}", node.gaps());
        let stats = node.broker.stats();
        assert!(stats.connects >= 2, "reconnected: {stats:?}");
        eprintln!("node after the restart: {stats:?}");
    }
    for sub in &mut subs {
        assert_eq!(sub.read_for(200).await, 0, "nothing twice");
    }
}

/// A message stored in a topic's history that never went out on its channel: what a node sees
/// when a publish races its resubscription and nothing follows it. Made with plain Redis
/// commands (the next offset, the stream entry), copying the stored envelope of `template`.
async fn store_without_publishing(url: &str, prefix: &str, topic: &str, template: u64, text: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let (meta, stream) = (format!("{prefix}:m:{topic}"), format!("{prefix}:h:{topic}"));
    let entries: redis::Value = redis::cmd("XRANGE")
        .arg(&stream)
        .arg(format!("{template}-0"))
        .arg(format!("{template}-0"))
        .query_async(&mut conn)
        .await
        .unwrap();
    // [[id, [m, envelope, t, ms]]]
    let redis::Value::Array(entries) = entries else {
        panic!("{entries:?}")
    };
    let redis::Value::Array(entry) = &entries[0] else {
        panic!("{entries:?}")
    };
    let redis::Value::Array(fields) = &entry[1] else {
        panic!("{entry:?}")
    };
    let redis::Value::BulkString(envelope) = &fields[1] else {
        panic!("{fields:?}")
    };
    let offset: u64 = redis::cmd("HINCRBY")
        .arg(&meta)
        .arg("s")
        .arg(1)
        .query_async(&mut conn)
        .await
        .unwrap();
    // Header (38 bytes: ..., epoch at 22, offset at 30), then the payload.
    let mut forged = envelope[..30].to_vec();
    forged.extend_from_slice(&offset.to_be_bytes());
    forged.extend_from_slice(text.as_bytes());
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
    let _: String = redis::cmd("XADD")
        .arg(&stream)
        .arg(format!("{offset}-0"))
        .arg("m")
        .arg(forged)
        .arg("t")
        .arg(secs * 1000 + micros / 1000)
        .query_async(&mut conn)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_missed_live_with_nothing_after_it_is_found_by_the_recheck() {
    let Some(redis) = shared_redis() else { return };
    let prefix = unique_prefix("recheck");
    let config = RedisConfig::default()
        .prefix(prefix.clone())
        .recheck_every(Duration::from_millis(400));
    let a = Node::start(spec(&redis.url(), &config), 0);
    let mut sub = Sub::connect(a.addr, "quiet", None).await;
    until_subscribed(&a, 1).await;
    let (publisher, _events) = Broker::redis(&redis.url(), config.clone()).unwrap();
    publish_until_taken(&publisher, "quiet", "m0".to_owned()).await;
    assert!(sub.read_until(1, 10).await, "{:?}", sub.ended);
    // Past the checks that follow the node's connection: only the periodic one finds it now.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let first = sub.last().unwrap().offset;
    store_without_publishing(&redis.url(), &prefix, "quiet", first, "m1").await;
    assert!(
        sub.read_until(2, 10).await,
        "the missed message never came: {:?}, {:?}",
        sub.ended,
        a.broker.stats()
    );
    assert_eq!(payloads(&sub), ["m0", "m1"]);
    assert_eq!(sub.got[1].0.unwrap().offset, first + 1);
    let stats = a.broker.stats();
    assert_eq!((stats.recovered, stats.duplicates), (1, 0), "{stats:?}");
    assert!(a.gaps().is_empty(), "{:?}", a.gaps());
    assert_eq!(sub.read_for(600).await, 0, "nothing twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_without_persistence_reports_the_new_epoch() {
    let Some(mut redis) = Server::start(Kind::Redis, false) else {
        return;
    };
    let config = config("epoch").op_timeout(Duration::from_millis(500));
    let a = Node::start(spec(&redis.url(), &config), 0);
    let mut sub = Sub::connect(a.addr, "t", None).await;
    until_subscribed(&a, 1).await;
    let (publisher, _events) = Broker::redis(&redis.url(), config.clone()).unwrap();
    for i in 0..10 {
        publish_until_taken(&publisher, "t", format!("m{i}")).await;
    }
    assert!(sub.read_until(10, 10).await);
    let before = sub.last().unwrap();
    redis.kill();
    redis.restart();
    for i in 10..20 {
        publish_until_taken(&publisher, "t", format!("m{i}")).await;
    }
    // The node follows the new epoch from its first message, and says history was lost.
    assert!(sub.read_until(20, 20).await, "got {}", sub.got.len());
    let after = sub.last().unwrap();
    assert_ne!(after.epoch, before.epoch);
    assert_eq!(after.offset, 10);
    assert!(
        a.gaps().iter().any(|e| matches!(
            e,
            Event::Gap {
                reason: GapReason::EpochChanged,
                ..
            }
        )),
        "{:?}",
        a.gaps()
    );
    // A client resuming from the old epoch is told it cannot.
    let mut again = Sub::connect(a.addr, "t", Some(before)).await;
    again.read_for(300).await;
    assert_eq!(again.resets.len(), 1, "{:?}", again.resets);
    assert!(again.resets[0].starts_with(&format!("RESET epoch {:x}:10", after.epoch)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_after_its_node_restarts_and_loses_nothing() {
    let Some(redis) = shared_redis() else { return };
    let config = config("resume");
    let b = Node::start(spec(&redis.url(), &config), 0);
    let a = Node::start(spec(&redis.url(), &config), 0);
    let port = a.addr.port();
    let mut sub = Sub::connect(a.addr, "chat", None).await;
    until_subscribed(&a, 1).await;
    let mut pub_b = publisher(b.addr, "chat").await;
    send_all(&mut pub_b, (0..40).map(|i| format!("m{i}"))).await;
    assert!(sub.read_until(40, 10).await);
    let seen = sub.last().unwrap();

    // Node A goes away (its client with it); B keeps publishing; A comes back on its port.
    drop(sub);
    drop(a);
    send_all(&mut pub_b, (40..100).map(|i| format!("m{i}"))).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let a = Node::start(spec(&redis.url(), &config), port);
    let mut resumed = Sub::connect(a.addr, "chat", Some(seen)).await;
    settle().await;
    send_all(&mut pub_b, (100..120).map(|i| format!("m{i}"))).await;
    assert!(
        resumed.read_until(80, 10).await,
        "got {}",
        resumed.got.len()
    );
    // History and live traffic may overlap at the seam: keep each offset once, in order.
    let mut got = resumed.got.clone();
    got.sort_by_key(|(p, _)| p.unwrap().offset);
    got.dedup_by_key(|(p, _)| p.unwrap().offset);
    let got: Vec<String> = got.into_iter().map(|(_, p)| p).collect();
    let expected: Vec<String> = (40..120).map(|i| format!("m{i}")).collect();
    assert_eq!(got, expected);
    assert!(resumed.resets.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_too_far_behind_is_told_it_cannot_resume() {
    let Some(redis) = shared_redis() else { return };
    let config = config("too-old").history_len(10);
    let a = Node::start(spec(&redis.url(), &config), 0);
    let mut sub = Sub::connect(a.addr, "t", None).await;
    until_subscribed(&a, 1).await;
    let mut publish = publisher(a.addr, "t").await;
    send_all(&mut publish, (0..5).map(|i| format!("m{i}"))).await;
    assert!(sub.read_until(5, 10).await);
    let seen = sub.last().unwrap();
    send_all(&mut publish, (5..50).map(|i| format!("m{i}"))).await;
    assert!(sub.read_until(50, 10).await);
    let top = sub.last().unwrap();

    let mut late = Sub::connect(a.addr, "t", Some(seen)).await;
    late.read_for(300).await;
    assert_eq!(late.resets, vec![format!("RESET too-old {top}")]);
    // Within the kept ten it resumes.
    let recent = Position {
        offset: top.offset - 5,
        ..top
    };
    let mut near = Sub::connect(a.addr, "t", Some(recent)).await;
    assert!(near.read_until(5, 10).await);
    assert_eq!(
        payloads(&near),
        (45..50).map(|i| format!("m{i}")).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_unreachable_at_start_publishes_fail_clearly_then_work() {
    let Some(mut redis) = Server::start(Kind::Redis, false) else {
        return;
    };
    redis.kill();
    let config = config("late").op_timeout(Duration::from_millis(300));
    let (broker, mut events) = Broker::redis(&redis.url(), config).unwrap();
    broker.join("t");
    let error = broker.publish("t", &Message::text("x")).await.unwrap_err();
    assert_eq!(error.kind(), BrokerErrorKind::Unavailable);
    assert!(error.to_string().contains("publish to \"t\""), "{error}");
    assert_eq!(broker.stats().publish_failures, 1);

    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.restart();
    // The subscription made while Redis was down is made when it comes up.
    let mut connected = false;
    let mut published = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(100), events.recv()).await {
            Ok(Some(Event::Connected)) => connected = true,
            Ok(Some(Event::Message(delivery))) => {
                assert_eq!(delivery.message, Message::text("after"));
                assert_eq!(delivery.position, published);
                return;
            }
            Ok(Some(_)) | Err(_) => {}
            Ok(None) => panic!("events ended"),
        }
        if connected && published.is_none() {
            tokio::time::sleep(Duration::from_millis(300)).await;
            published = broker
                .publish("t", &Message::text("after"))
                .await
                .ok()
                .flatten();
        }
    }
    panic!("no delivery after Redis came up (connected: {connected})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_node_drops_then_recovers_everything_from_history() {
    let Some(redis) = shared_redis() else { return };
    // A node whose inbox holds 8 messages and whose reader stalls: it must lag.
    let config = config("lag").inbox_capacity(8).event_capacity(1);
    let (node, mut events) = Broker::redis(&redis.url(), config.clone()).unwrap();
    let (publisher, _publisher_events) = Broker::redis(&redis.url(), config).unwrap();
    node.join("t");
    until_connected(&mut events).await;
    for i in 0..LAG_N {
        publisher
            .publish("t", &Message::text(format!("m{i}")))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut got = Vec::new();
    while got.len() < LAG_N {
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
            Ok(Some(Event::Message(delivery))) => {
                got.push(delivery.message.as_text().unwrap().to_owned());
            }
            Ok(Some(other)) => panic!("unexpected {other:?}"),
            _ => break,
        }
    }
    let expected: Vec<String> = (0..LAG_N).map(|i| format!("m{i}")).collect();
    assert_eq!(got, expected);
    let stats = node.stats();
    assert!(stats.lagged > 0, "the node lagged: {stats:?}");
    assert!(stats.recovered > 0, "and recovered from history: {stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_dropping_the_node_connection_is_recovered() {
    let Some(redis) = shared_redis() else { return };
    let config = config("kill-client");
    let (node, mut events) = Broker::redis(&redis.url(), config.clone()).unwrap();
    let (publisher, _e) = Broker::redis(&redis.url(), config).unwrap();
    node.join("t");
    until_connected(&mut events).await;
    // What Redis does to a pub/sub client past its output buffer limit: close it. Here the
    // node's pub/sub connection is closed by name of its channel's subscriber type.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut admin = client.get_multiplexed_async_connection().await.unwrap();
    for i in 0..200 {
        publisher
            .publish("t", &Message::text(format!("m{i}")))
            .await
            .unwrap();
        if i == 100 {
            let killed: i64 = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("TYPE")
                .arg("pubsub")
                .query_async(&mut admin)
                .await
                .unwrap();
            assert!(killed >= 1);
        }
    }
    let mut got = Vec::new();
    while got.len() < 200 {
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
            Ok(Some(Event::Message(delivery))) => {
                got.push(delivery.message.as_text().unwrap().to_owned());
            }
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    let expected: Vec<String> = (0..200).map(|i| format!("m{i}")).collect();
    assert_eq!(got, expected);
    assert!(node.stats().connects >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_data_on_a_channel_is_reported_and_dropped() {
    let Some(redis) = shared_redis() else { return };
    let prefix = unique_prefix("bad");
    let config = RedisConfig::default().prefix(prefix.clone());
    let (node, mut events) = Broker::redis(&redis.url(), config).unwrap();
    node.join("t");
    until_connected(&mut events).await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut admin = client.get_multiplexed_async_connection().await.unwrap();
    let channel = format!("{prefix}:c:t");
    let mut forged = b"tws1\x01\x00".to_vec();
    forged.extend_from_slice(&[0; 32]); // epoch and offset zero: not from the script
    forged.extend_from_slice(b"hi");
    for junk in [
        b"{\"hello\": \"a message this crate did not publish\"}".to_vec(),
        Vec::new(),
        forged,
    ] {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(junk)
            .query_async(&mut admin)
            .await
            .unwrap();
    }
    node.publish("t", &Message::text("good")).await.unwrap();
    let mut bad = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), events.recv()).await {
            Ok(Some(Event::BadData { topic, error })) => {
                assert_eq!(&*topic, "t");
                bad.push(error.to_string());
            }
            Ok(Some(Event::Message(delivery))) => {
                assert_eq!(delivery.message, Message::text("good"));
                break;
            }
            Ok(Some(_)) => {}
            other => panic!("no delivery: {other:?}"),
        }
    }
    assert_eq!(bad.len(), 3, "{bad:?}");
    assert!(bad[0].contains("no tws1 magic"), "{bad:?}");
    assert!(bad[1].contains("shorter"), "{bad:?}");
    assert!(bad[2].contains("no offset"), "{bad:?}");
    assert_eq!(node.stats().bad_data, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_queued_without_waiting_keep_their_order() {
    let Some(redis) = shared_redis() else { return };
    let (broker, mut events) = Broker::redis(&redis.url(), config("pipeline")).unwrap();
    broker.join("t");
    until_connected(&mut events).await;
    // Queued at the call: a thousand publishes made before any is awaited go out in one or a
    // few pipelines, in call order.
    let pending: Vec<_> = (0..1000)
        .map(|i| broker.publish("t", &Message::text(format!("m{i}"))))
        .collect();
    let mut offsets = Vec::new();
    for published in pending.into_iter().rev() {
        offsets.push(published.await.unwrap().unwrap().offset);
    }
    offsets.reverse();
    assert!(offsets.windows(2).all(|w| w[1] == w[0] + 1), "{offsets:?}");
    for (i, offset) in offsets.iter().enumerate() {
        let Some(Event::Message(delivery)) = events.recv().await else {
            panic!("events ended");
        };
        assert_eq!(delivery.message, Message::text(format!("m{i}")));
        assert_eq!(delivery.position.unwrap().offset, *offset);
    }
}

// One thread: the queue's task cannot drain it while the test fills it, so the bound is exact.
#[tokio::test(flavor = "current_thread")]
async fn the_publish_queue_is_bounded_and_what_failed_is_never_published_later() {
    let Some(mut redis) = Server::start(Kind::Redis, false) else {
        return;
    };
    let config = config("queue").op_timeout(Duration::from_millis(100));
    let (broker, _events) = Broker::redis(&redis.url(), config).unwrap();
    assert_eq!(broker.position("t").await.unwrap().offset, 0);
    redis.kill();
    // Far more than the queue holds, none awaited before all are made.
    let pending: Vec<_> = (0..6000)
        .map(|i| broker.publish("t", &Message::text(format!("m{i}"))))
        .collect();
    let mut full = 0;
    for published in pending {
        let error = published.await.unwrap_err();
        assert_eq!(error.kind(), BrokerErrorKind::Unavailable, "{error}");
        full += usize::from(error.to_string().contains("already wait for the broker"));
    }
    assert_eq!(full, 6000 - 4096, "refused at once past the bound");
    assert_eq!(broker.stats().publish_failures, 6000);
    redis.restart();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let position = loop {
        if let Ok(Some(position)) = broker.publish("t", &Message::text("after")).await {
            break position;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Redis did not come back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Nothing that failed was sent once Redis was back: "after" is the topic's first message.
    assert_eq!(position.offset, 1);
}
