//! Retained messages (store, replace, delete, wildcards, across shards) and wills (socket drop,
//! keepalive expiry, protocol error, QoS and retain, none after a clean DISCONNECT; the 5.0 Will
//! Delay Interval).

use std::collections::BTreeSet;
use std::thread;
use std::time::Instant;

use crate::common;
use crate::common::enc::{kind, p, Connect, Props, Publish, Will};
use crate::common::raw::{RawClient, LONG, SHORT};
use crate::common::v5::V5;
use crate::common::{
    bounded, client_id_on_shard, connect, recv_one, recv_until_marker, run_bounded, secs, text,
    texts, Broker, SHARDS,
};

/// Retained: a new subscriber gets the stored message with RETAIN = 1 (at min(QoS)); an
/// established subscriber gets live copies with RETAIN = 0 [MQTT-3.3.1-9]; a new retained
/// message replaces the old; an empty retained message deletes it (and is itself delivered to
/// established subscribers [MQTT-3.3.1-10]).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_stored_replaced_deleted() {
    bounded(secs(60), async {
        let broker = Broker::start_sharded(&[]);
        let port = broker.port;
        let topic = "ret/t";
        let mut live = connect(port, &client_id_on_shard("ret-live", 0, SHARDS), true).await;
        live.subscribe_ok(topic, 2).await;
        let mut publ = connect(port, &client_id_on_shard("ret-pub", 1, SHARDS), true).await;

        publ.publish(topic, 1, true, "v1").await;
        let mut n1 = connect(port, &client_id_on_shard("ret-n1", 0, SHARDS), true).await;
        n1.subscribe_ok(topic, 2).await;
        let m = recv_one(&mut n1.publishes, secs(10)).await;
        assert_eq!(text(&m), "v1");
        assert!(
            m.retain,
            "a stored message sent on SUBSCRIBE has RETAIN = 1"
        );
        assert_eq!(
            m.qos as u8, 1,
            "retained message published at QoS 1 is sent at min(1, 2)"
        );

        publ.publish(topic, 1, true, "v2").await;
        let mut n2 = connect(port, &client_id_on_shard("ret-n2", 1, SHARDS), true).await;
        n2.subscribe_ok(topic, 1).await;
        let m = recv_one(&mut n2.publishes, secs(10)).await;
        assert_eq!(
            (text(&m).as_str(), m.retain),
            ("v2", true),
            "v2 replaced v1"
        );
        publ.publish(topic, 1, false, "marker2").await;
        let rest = recv_until_marker(&mut n2.publishes, "marker2", secs(10)).await;
        assert_eq!(
            texts(&rest),
            ["marker2"],
            "only one retained message per topic"
        );
        assert!(!rest[0].retain, "a non-retained publish has RETAIN = 0");

        publ.publish(topic, 1, true, "").await; // delete
        let mut n3 = connect(port, &client_id_on_shard("ret-n3", 0, SHARDS), true).await;
        n3.subscribe_ok(topic, 1).await;
        publ.publish(topic, 1, false, "marker3").await;
        let got = recv_until_marker(&mut n3.publishes, "marker3", secs(10)).await;
        assert_eq!(texts(&got), ["marker3"], "the retained message was deleted");

        let got = recv_until_marker(&mut live.publishes, "marker3", secs(10)).await;
        assert_eq!(
            texts(&got),
            ["v1", "v2", "marker2", "", "marker3"],
            "established subscriber"
        );
        assert!(
            got.iter().all(|m| !m.retain),
            "established subscriber: RETAIN = 0 on every copy"
        );
    })
    .await;
}

/// A wildcard subscription gets every matching retained message (and only those).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_delivered_for_wildcard_subscription() {
    bounded(secs(60), async {
        let broker = Broker::start_sharded(&[]);
        let port = broker.port;
        let mut publ = connect(port, &client_id_on_shard("rw-pub", 0, SHARDS), true).await;
        for t in ["rw/a", "rw/b", "rw/c/d", "other/a"] {
            publ.publish(t, 1, true, t).await;
        }
        let mut sub = connect(port, &client_id_on_shard("rw-sub", 1, SHARDS), true).await;
        sub.subscribe_ok("rw/+", 1).await;
        sub.subscribe_ok("rw-marker", 1).await;
        publ.publish("rw-marker", 1, false, "END").await;
        let mut got = BTreeSet::new();
        let mut marker = false;
        while !(marker && got.len() >= 2) {
            let m = recv_one(&mut sub.publishes, secs(10)).await;
            if text(&m) == "END" {
                marker = true;
                continue;
            }
            assert!(m.retain, "{}: RETAIN = 1", m.topic);
            assert!(got.insert(m.topic.clone()), "{} delivered twice", m.topic);
        }
        let want: BTreeSet<String> = ["rw/a", "rw/b"].iter().map(|s| s.to_string()).collect();
        assert_eq!(got, want, "retained messages matching rw/+");
    })
    .await;
}

/// Retained messages stored through one shard are delivered to a subscriber whose home shard
/// is the other one (both directions), and a replacement from the other shard wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_across_shards() {
    bounded(secs(90), async {
        let broker = Broker::start_sharded(&[]);
        let port = broker.port;
        for (pub_shard, sub_shard) in [(0usize, 1usize), (1, 0)] {
            let prefix = format!("rx{pub_shard}");
            let mut publ = connect(
                port,
                &client_id_on_shard(&format!("{prefix}-pub"), pub_shard, SHARDS),
                true,
            )
            .await;
            for i in 0..10 {
                publ.publish(&format!("{prefix}/{i}"), 1, true, format!("{prefix}/{i}"))
                    .await;
            }
            let mut sub = connect(
                port,
                &client_id_on_shard(&format!("{prefix}-sub"), sub_shard, SHARDS),
                true,
            )
            .await;
            sub.subscribe_ok(&format!("{prefix}/+"), 1).await;
            let mut got = BTreeSet::new();
            while got.len() < 10 {
                let m = recv_one(&mut sub.publishes, secs(10)).await;
                assert!(m.retain, "{}: RETAIN = 1", m.topic);
                assert_eq!(text(&m), m.topic);
                assert!(got.insert(m.topic.clone()), "{} twice", m.topic);
            }

            // Replace one of them from a client homed on the subscriber's shard.
            let mut other = connect(
                port,
                &client_id_on_shard(&format!("{prefix}-other"), sub_shard, SHARDS),
                true,
            )
            .await;
            other
                .publish(&format!("{prefix}/3"), 1, true, "replaced")
                .await;
            let mut late = connect(
                port,
                &client_id_on_shard(&format!("{prefix}-late"), pub_shard, SHARDS),
                true,
            )
            .await;
            late.subscribe_ok(&format!("{prefix}/3"), 1).await;
            let m = recv_one(&mut late.publishes, secs(10)).await;
            assert_eq!((text(&m).as_str(), m.retain), ("replaced", true));
        }
    })
    .await;
}

fn will_connect(
    id: &str,
    topic: &str,
    payload: &str,
    qos: u8,
    retain: bool,
    keepalive: u16,
) -> Vec<u8> {
    Connect::v311(id)
        .keepalive(keepalive)
        .will(Will::new(topic, payload).qos(qos).retain(retain))
        .encode()
}

fn connect_with_will(
    port: u16,
    id: &str,
    topic: &str,
    payload: &str,
    qos: u8,
    retain: bool,
    keepalive: u16,
) -> RawClient {
    let (mut c, ack) = RawClient::connect_raw(
        port,
        &will_connect(id, topic, payload, qos, retain, keepalive),
    );
    let ack = ack.unwrap_or_else(|e| panic!("{id}: no CONNACK: {e:?}"));
    assert_eq!(ack.bytes(), vec![0x20, 0x02, 0x00, 0x00], "{id}: CONNACK");
    c.ping();
    c
}

/// The will is published when the connection is dropped without DISCONNECT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_published_on_socket_drop() {
    bounded(secs(60), async {
        let broker = Broker::start_sharded(&[]);
        let mut sub = connect(broker.port, &client_id_on_shard("wd-sub", 0, SHARDS), true).await;
        sub.subscribe_ok("will/drop", 1).await;
        let w = connect_with_will(
            broker.port,
            &client_id_on_shard("wd-w", 1, SHARDS),
            "will/drop",
            "gone",
            1,
            false,
            60,
        );
        drop(w);
        let m = recv_one(&mut sub.publishes, secs(10)).await;
        assert_eq!((m.topic.as_str(), text(&m).as_str()), ("will/drop", "gone"));
        assert_eq!(m.qos as u8, 1, "will QoS 1");
        assert!(!m.retain);
    })
    .await;
}

/// The will is published when a client with keepalive 1 s goes silent (bounded wait), and the
/// silent connection is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_published_on_keepalive_expiry() {
    bounded(secs(60), async {
        let broker = Broker::start_sharded(&[]);
        let mut sub = connect(broker.port, &client_id_on_shard("wk-sub", 1, SHARDS), true).await;
        sub.subscribe_ok("will/keepalive", 1).await;
        let mut w = connect_with_will(
            broker.port,
            &client_id_on_shard("wk-w", 0, SHARDS),
            "will/keepalive",
            "timed-out",
            1,
            false,
            1,
        );
        let m = recv_one(&mut sub.publishes, secs(10)).await;
        assert_eq!(text(&m), "timed-out");
        w.expect_closed(SHORT, "silent client with keepalive 1 s");
    })
    .await;
}

/// A protocol violation closes the connection and publishes the will.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_published_on_protocol_error() {
    bounded(secs(60), async {
        let broker = Broker::start_sharded(&[]);
        let mut sub = connect(broker.port, &client_id_on_shard("wp-sub", 0, SHARDS), true).await;
        sub.subscribe_ok("will/proto", 1).await;
        let mut w = connect_with_will(
            broker.port,
            &client_id_on_shard("wp-w", 1, SHARDS),
            "will/proto",
            "broke-protocol",
            1,
            false,
            60,
        );
        let _ = w.send(&[0x00, 0x00]); // reserved packet type 0
        w.expect_closed(SHORT, "reserved packet type 0");
        let m = recv_one(&mut sub.publishes, secs(10)).await;
        assert_eq!(text(&m), "broke-protocol");
    })
    .await;
}

/// Will QoS 2 with retain: delivered at QoS 2 to the established subscriber (RETAIN = 0 there),
/// and stored as the retained message for later subscribers (RETAIN = 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_qos2_retained() {
    bounded(secs(60), async {
        let broker = Broker::start_sharded(&[]);
        let port = broker.port;
        let mut sub = connect(port, &client_id_on_shard("wr-sub", 0, SHARDS), true).await;
        sub.subscribe_ok("will/retained", 2).await;
        let w = connect_with_will(
            port,
            &client_id_on_shard("wr-w", 1, SHARDS),
            "will/retained",
            "last-words",
            2,
            true,
            60,
        );
        drop(w);
        let m = recv_one(&mut sub.publishes, secs(10)).await;
        assert_eq!(text(&m), "last-words");
        assert_eq!(m.qos as u8, 2, "will QoS 2");
        assert!(!m.retain, "established subscriber: RETAIN = 0");

        for shard in 0..SHARDS {
            let mut late = connect(port, &client_id_on_shard("wr-late", shard, SHARDS), true).await;
            late.subscribe_ok("will/retained", 2).await;
            let m = recv_one(&mut late.publishes, secs(10)).await;
            assert_eq!(
                (text(&m).as_str(), m.retain, m.qos as u8),
                ("last-words", true, 2),
                "retained will"
            );
        }
    })
    .await;
}

/// No will after a clean DISCONNECT [MQTT-3.14.4-3]: once the broker has closed the
/// connection, a marker is published on the will topic and must be the first message there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_will_after_clean_disconnect() {
    bounded(secs(60), async {
        let broker = Broker::start_sharded(&[]);
        let port = broker.port;
        let mut sub = connect(port, &client_id_on_shard("wc-sub", 0, SHARDS), true).await;
        sub.subscribe_ok("will/clean", 1).await;
        for shard in 0..SHARDS {
            let w = connect_with_will(
                port,
                &client_id_on_shard("wc-w", shard, SHARDS),
                "will/clean",
                "must-not-appear",
                1,
                false,
                60,
            );
            w.disconnect(); // DISCONNECT, then wait for the broker to close
        }
        let (mut p, _) =
            RawClient::connect311(port, &client_id_on_shard("wc-pub", 1, SHARDS), true, 60);
        p.publish(Publish::new("will/clean", b"marker").qos(1).pkid(1));
        let got = recv_until_marker(&mut sub.publishes, "marker", LONG).await;
        assert_eq!(
            texts(&got),
            ["marker"],
            "a will was published after a clean DISCONNECT"
        );
    })
    .await;
}

fn will_conn(id: &str, topic: &str, delay: u32, session_expiry: u32) -> Connect {
    Connect::v5(id).expiry(session_expiry).will(
        Will::new(topic, b"will-payload")
            .qos(1)
            .props(Props::new().u32(p::WILL_DELAY, delay)),
    )
}

/// Will Delay Interval 2 s (session expiry 60): after an abrupt close the will is published, but
/// not before the delay.
#[test]
fn will_published_after_delay() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let mut w = V5::connect(
            broker.port,
            &client_id_on_shard("v5s-wd-watch", 0, SHARDS),
            true,
        );
        w.sub_ok("v5s/wd/will", 1);
        let mut c = V5::connect_with(
            broker.port,
            will_conn(
                &client_id_on_shard("v5s-wd", 1, SHARDS),
                "v5s/wd/will",
                2,
                60,
            ),
        );
        c.ping();
        let closed = Instant::now();
        c.drop_connection();
        let m = w.expect_pub(secs(15));
        let after = closed.elapsed();
        assert_eq!(m.text(), "will-payload");
        assert_eq!(m.topic, "v5s/wd/will");
        assert!(
            after >= common::millis(1800),
            "will published {after:?} after the close; Will Delay Interval is 2 s"
        );
    });
}

/// Will Delay Interval 4 s: the client reconnects (same id, clean start 0) within the delay, so
/// the will is never published. Checked with a marker sent after the delay has passed.
#[test]
fn will_not_published_when_client_reconnects_within_delay() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let mut w = V5::connect(
            broker.port,
            &client_id_on_shard("v5s-wr-watch", 0, SHARDS),
            true,
        );
        w.sub_ok("v5s/wr/will", 1);
        let id = client_id_on_shard("v5s-wr", 1, SHARDS);
        let c = V5::connect_with(broker.port, will_conn(&id, "v5s/wr/will", 4, 60));
        c.drop_connection();
        thread::sleep(common::millis(300));
        let mut c = V5::connect_with(broker.port, Connect::v5(&id).clean(false).expiry(60));
        assert!(c.session_present, "session resumed within its expiry");
        thread::sleep(secs(6)); // past the 4 s delay
        c.publish(Publish::new("v5s/wr/will", b"marker").qos(1));
        let first = w.expect_pub(LONG);
        assert_eq!(
            first.text(),
            "marker",
            "the will must not be published: {first:?}"
        );
        // The client is still fine.
        c.ping();
        assert!(c.log.iter().all(|pk| pk.kind() != kind::DISCONNECT));
    });
}
