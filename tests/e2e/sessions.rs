//! Clean vs persistent sessions: the session-present flag, subscriptions and queued QoS 1/2
//! messages kept while offline, and redelivery of unacknowledged messages after a reconnect.

use crate::common::dec::RawPublish;
use crate::common::enc::{self, kind, Publish};
use crate::common::raw::{RawClient, LONG, SHORT};
use crate::common::{
    bounded, client_id_on_shard, connect, recv_n, recv_one, recv_until_marker, run_bounded, secs,
    text, texts, Broker, SHARDS,
};

/// CONNACK's session-present flag: 0 with clean session, 0 for a new persistent session, 1 when
/// a persistent session exists, and 0 again after a clean session discarded it [MQTT-3.2.2-1..3].
#[test]
fn session_present_flag_follows_clean_session() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        for shard in 0..SHARDS {
            let id = client_id_on_shard("sp", shard, SHARDS);
            let steps = [
                (true, false, "clean session"),
                (
                    false,
                    false,
                    "first persistent connect (the clean session was discarded)",
                ),
                (false, true, "persistent session exists"),
                (false, true, "still exists"),
                (true, false, "clean session discards it"),
                (false, false, "after the clean session, nothing to resume"),
            ];
            for (clean, want_sp, what) in steps {
                let (c, sp) = RawClient::connect311(broker.port, &id, clean, 60);
                assert_eq!(sp, want_sp, "{id}: clean={clean}: {what}");
                c.disconnect();
            }
        }
    });
}

/// A persistent subscriber goes offline; QoS 1 and QoS 2 messages published meanwhile are kept
/// and delivered on reconnect (at the QoS they were published with, in order per QoS), without
/// subscribing again; then live delivery resumes. Publisher and subscriber on different home
/// shards, both ways round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_session_keeps_subscription_and_queues_while_offline() {
    bounded(secs(90), async {
        let broker = Broker::start_sharded(&[]);
        for (sub_shard, pub_shard) in [(0, 1), (1, 0)] {
            let sub_id = client_id_on_shard(&format!("queue-sub{sub_shard}"), sub_shard, SHARDS);
            let pub_id = client_id_on_shard(&format!("queue-pub{pub_shard}"), pub_shard, SHARDS);
            let topic = format!("queue/{sub_shard}");

            let mut sub = connect(broker.port, &sub_id, false).await;
            assert!(!sub.session_present(), "{sub_id}: new session");
            sub.subscribe_ok(&topic, 2).await;
            sub.disconnect().await;

            let mut publ = connect(broker.port, &pub_id, true).await;
            for i in 0..5 {
                publ.publish(&topic, 1, false, format!("q1-{i}")).await;
                publ.publish(&topic, 2, false, format!("q2-{i}")).await;
            }

            let mut sub = connect(broker.port, &sub_id, false).await;
            assert!(sub.session_present(), "{sub_id}: session must be present");
            let got = recv_n(&mut sub.publishes, 10, secs(15)).await;
            let q1: Vec<String> = got
                .iter()
                .filter(|p| text(p).starts_with("q1-"))
                .map(text)
                .collect();
            let q2: Vec<String> = got
                .iter()
                .filter(|p| text(p).starts_with("q2-"))
                .map(text)
                .collect();
            let want1: Vec<String> = (0..5).map(|i| format!("q1-{i}")).collect();
            let want2: Vec<String> = (0..5).map(|i| format!("q2-{i}")).collect();
            assert_eq!(
                q1,
                want1,
                "queued QoS 1 messages, in order; all: {:?}",
                texts(&got)
            );
            assert_eq!(
                q2,
                want2,
                "queued QoS 2 messages, in order; all: {:?}",
                texts(&got)
            );
            for p in &got {
                let want_qos = if text(p).starts_with("q1-") { 1 } else { 2 };
                assert_eq!(p.qos as u8, want_qos, "{}: delivered QoS", text(p));
                assert_eq!(p.topic, topic);
            }

            // The subscription is still there: live messages flow without a new SUBSCRIBE.
            publ.publish(&topic, 1, false, "live").await;
            let live = recv_one(&mut sub.publishes, secs(10)).await;
            assert_eq!(text(&live), "live", "first message after the queued ones");
            sub.disconnect().await;
            publ.disconnect().await;
        }
    })
    .await;
}

/// Connecting with clean session discards the old session: its subscription and its queued
/// messages. Checked with a marker: after the clean reconnect, a message published while not
/// subscribed, then a new SUBSCRIBE, then a marker on the same topic, which must be the first
/// message to arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_session_discards_subscriptions_and_queue() {
    bounded(secs(60), async {
        let broker = Broker::start_sharded(&[]);
        let (sub_id, pub_id) = (
            client_id_on_shard("clean-sub", 0, SHARDS),
            client_id_on_shard("clean-pub", 1, SHARDS),
        );
        let topic = "clean/t";

        let mut sub = connect(broker.port, &sub_id, false).await;
        sub.subscribe_ok(topic, 1).await;
        sub.disconnect().await;

        let mut publ = connect(broker.port, &pub_id, true).await;
        publ.publish(topic, 1, false, "queued-for-old-session")
            .await;

        let mut sub = connect(broker.port, &sub_id, true).await;
        assert!(
            !sub.session_present(),
            "clean session: session present must be 0"
        );
        publ.publish(topic, 1, false, "published-while-unsubscribed")
            .await;
        sub.subscribe_ok(topic, 1).await;
        publ.publish(topic, 1, false, "marker").await;
        let got = recv_until_marker(&mut sub.publishes, "marker", secs(10)).await;
        assert_eq!(
            texts(&got),
            vec!["marker"],
            "the old session's subscription and queue must be gone"
        );
    })
    .await;
}

fn publish_batch(port: u16, pub_id: &str, topic: &str, qos: u8, payloads: &[&str]) {
    let (mut p, _) = RawClient::connect311(port, pub_id, true, 60);
    for (i, m) in payloads.iter().enumerate() {
        p.publish(
            Publish::new(topic, m.as_bytes())
                .qos(qos)
                .pkid(i as u16 + 1),
        );
    }
    p.disconnect();
}

/// QoS 1 messages sent but not PUBACKed are re-sent after a reconnect with clean session = 0:
/// same packet ids, DUP = 1, original order [MQTT-4.4.0-1, MQTT-4.6.0-1]. Once acknowledged they
/// are not sent again. Once with a clean DISCONNECT, once with the socket just dropped.
#[test]
fn unacked_qos1_redelivered_with_dup_in_order() {
    run_bounded(secs(90), || {
        let broker = Broker::start_sharded(&["--max-inflight", "10"]);
        for (round, graceful) in [(0, true), (1, false)] {
            let sub_id = client_id_on_shard(&format!("dup1-sub{round}"), 0, SHARDS);
            let pub_id = client_id_on_shard(&format!("dup1-pub{round}"), 1, SHARDS);
            let topic = format!("redeliver/q1/{round}");
            let payloads = ["m0", "m1", "m2", "m3", "m4"];

            let (mut sub, _) = RawClient::connect311(broker.port, &sub_id, false, 60);
            sub.subscribe_ok(1, &[(&topic, 1)]);
            publish_batch(broker.port, &pub_id, &topic, 1, &payloads);

            let first: Vec<RawPublish> = (0..5).map(|_| sub.next_publish(LONG)).collect();
            for (m, want) in first.iter().zip(payloads) {
                assert_eq!(m.text(), want, "first delivery order");
                assert_eq!((m.qos, m.dup), (1, false), "first delivery of {want}");
                assert_ne!(m.pkid, 0);
            }
            if graceful {
                sub.disconnect();
            } else {
                drop(sub);
            }

            let (mut sub, sp) = RawClient::connect311(broker.port, &sub_id, false, 60);
            assert!(sp, "{sub_id}: session present after reconnect");
            let again: Vec<RawPublish> = (0..5).map(|_| sub.next_publish(LONG)).collect();
            for (m, orig) in again.iter().zip(&first) {
                assert_eq!(m.text(), orig.text(), "re-sent in the original order");
                assert!(m.dup, "re-sent {} must have DUP = 1", m.text());
                assert_eq!(m.qos, 1);
                assert_eq!(
                    m.pkid,
                    orig.pkid,
                    "re-sent {} keeps its packet id",
                    m.text()
                );
            }
            for m in &again {
                sub.send_ok(&enc::puback(m.pkid));
            }

            // New traffic is not a duplicate.
            publish_batch(broker.port, &pub_id, &topic, 1, &["m5"]);
            let m = sub.next_publish(LONG);
            assert_eq!((m.text().as_str(), m.dup), ("m5", false));
            sub.send_ok(&enc::puback(m.pkid));
            sub.disconnect();

            // Everything is acknowledged: after another reconnect the first message is new.
            let (mut sub, sp) = RawClient::connect311(broker.port, &sub_id, false, 60);
            assert!(sp);
            publish_batch(broker.port, &pub_id, &topic, 1, &["end"]);
            let m = sub.next_publish(LONG);
            assert_eq!(m.text(), "end", "acknowledged messages must not come back");
            assert!(!m.dup);
            sub.send_ok(&enc::puback(m.pkid));
            sub.disconnect();
        }
    });
}

/// QoS 2 outbound state survives a reconnect: a message whose PUBREC the broker got is
/// continued with PUBREL (same packet id, not the PUBLISH again); a message not yet PUBREC'd is
/// re-sent as PUBLISH with DUP = 1 and its packet id. Neither comes back after completion.
#[test]
fn unacked_qos2_continued_after_reconnect() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&["--max-inflight", "10"]);
        let sub_id = client_id_on_shard("dup2-sub", 1, SHARDS);
        let pub_id = client_id_on_shard("dup2-pub", 0, SHARDS);
        let topic = "redeliver/q2";

        let (mut sub, _) = RawClient::connect311(broker.port, &sub_id, false, 60);
        sub.subscribe_ok(1, &[(topic, 2)]);
        publish_batch(broker.port, &pub_id, topic, 2, &["a", "b"]);

        let a = sub.next_publish(LONG);
        assert_eq!((a.text().as_str(), a.qos, a.dup), ("a", 2, false));
        sub.send_ok(&enc::pubrec(a.pkid));
        let rel = sub.expect_where(LONG, "PUBREL for a", |p| p.kind() == kind::PUBREL);
        assert_eq!(
            rel.bytes(),
            enc::pubrel(a.pkid),
            "PUBREL bytes (fixed header 0x62)"
        );
        let b = sub.next_publish(LONG);
        assert_eq!((b.text().as_str(), b.qos, b.dup), ("b", 2, false));
        sub.disconnect(); // no PUBCOMP for a, no PUBREC for b

        let (mut sub, sp) = RawClient::connect311(broker.port, &sub_id, false, 60);
        assert!(sp, "session present");
        let p1 = sub.expect_packet(LONG, "first re-sent packet");
        let p2 = sub.expect_packet(LONG, "second re-sent packet");
        let (rel, publ) = if p1.kind() == kind::PUBREL {
            (p1, p2)
        } else {
            (p2, p1)
        };
        assert_eq!(
            rel.bytes(),
            enc::pubrel(a.pkid),
            "a continues with PUBREL, got {rel:?}"
        );
        assert_eq!(
            publ.kind(),
            kind::PUBLISH,
            "b is re-sent as PUBLISH, got {publ:?}"
        );
        let b2 = publ.publish();
        assert_eq!(
            (b2.text().as_str(), b2.qos, b2.dup, b2.pkid),
            ("b", 2, true, b.pkid),
            "re-sent b"
        );

        sub.send_ok(&enc::pubcomp(a.pkid));
        sub.send_ok(&enc::pubrec(b.pkid));
        let rel_b = sub.expect_where(LONG, "PUBREL for b", |p| p.kind() == kind::PUBREL);
        assert_eq!(rel_b.bytes(), enc::pubrel(b.pkid));
        sub.send_ok(&enc::pubcomp(b.pkid));

        publish_batch(broker.port, &pub_id, topic, 2, &["end"]);
        let m = sub.next_publish(LONG);
        assert_eq!(
            m.text(),
            "end",
            "completed QoS 2 messages must not come back"
        );
        sub.send_ok(&enc::pubrec(m.pkid));
        let rel = sub.expect_where(SHORT, "PUBREL for end", |p| p.kind() == kind::PUBREL);
        sub.send_ok(&enc::pubcomp(rel.pkid()));
        sub.ping();
    });
}
