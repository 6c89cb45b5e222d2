//! Sessions in 3.1.1 and 5.0: clean vs persistent (the session-present flag, subscriptions and
//! queued QoS 1/2 messages kept while offline, redelivery of unacknowledged messages after a
//! reconnect), Clean Start, Session Expiry Interval (zero, a delay, the maximum, changed at
//! DISCONNECT) and Message Expiry Interval, with raw v5 clients on a 2-shard broker (subscriber
//! and publisher on different shards).

use std::thread;
use std::time::Instant;

use crate::common::dec::{self, RawPublish};
use crate::common::enc::{self, kind, p, Connect, Props, Publish};
use crate::common::raw::{RawClient, LONG, SHORT};
use crate::common::v5::V5;
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

/// Session Expiry Interval 60: subscription and the QoS 1 / QoS 2 messages published while the
/// client was away survive the disconnect; resume with Clean Start 0 -> session present = 1 and
/// the queued messages arrive in order.
#[test]
fn session_survives_disconnect_and_queued_messages_delivered() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let sid = client_id_on_shard("v5s-keep", 1, SHARDS);
        let pid = client_id_on_shard("v5s-keep-pub", 0, SHARDS);
        let mut s = V5::connect_with(broker.port, Connect::v5(&sid).expiry(60));
        assert!(!s.session_present, "fresh session");
        s.sub_ok("v5s/keep/#", 2);
        s.disconnect();

        let mut pb = V5::connect(broker.port, &pid, true);
        for (i, q) in [(1, 1u8), (2, 2), (3, 1)] {
            pb.publish(Publish::new(format!("v5s/keep/{i}"), format!("m{i}").as_bytes()).qos(q));
        }

        let mut s = V5::connect_with(broker.port, Connect::v5(&sid).clean(false).expiry(60));
        assert!(
            s.session_present,
            "session present after resume within the expiry interval"
        );
        let got = s.expect_pubs(3, LONG);
        assert_eq!(
            dec::texts(&got),
            vec!["m1", "m2", "m3"],
            "queued messages in order"
        );
        assert_eq!(got.iter().map(|m| m.qos).collect::<Vec<_>>(), vec![1, 2, 1]);
        // The subscription is still live too.
        pb.publish(Publish::new("v5s/keep/live", b"live").qos(1));
        assert_eq!(s.expect_pub(LONG).text(), "live");
    });
}

/// No Session Expiry Interval (= 0): the session ends at disconnect; resume gives session
/// present = 0 and the old subscription is gone.
#[test]
fn session_expiry_zero_ends_session_at_disconnect() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let sid = client_id_on_shard("v5s-zero", 0, SHARDS);
        let pid = client_id_on_shard("v5s-zero-pub", 1, SHARDS);
        let mut s = V5::connect(broker.port, &sid, true);
        s.sub_ok("v5s/zero/old", 1);
        s.disconnect();

        let mut s = V5::connect(broker.port, &sid, false);
        assert!(
            !s.session_present,
            "session expiry 0: no session after disconnect"
        );
        s.sub_ok("v5s/zero/marker", 1);
        let mut pb = V5::connect(broker.port, &pid, true);
        pb.publish(Publish::new("v5s/zero/old", b"old-subscription").qos(1));
        pb.publish(Publish::new("v5s/zero/marker", b"marker").qos(1));
        let first = s.expect_pub(LONG);
        assert_eq!(
            first.text(),
            "marker",
            "old subscription must be gone: {first:?}"
        );
    });
}

/// Session Expiry Interval 1 s: after the interval the session is gone: session present = 0, the
/// message queued while away is not delivered and the old subscription no longer matches.
#[test]
fn session_expires_after_interval() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let sid = client_id_on_shard("v5s-exp", 1, SHARDS);
        let pid = client_id_on_shard("v5s-exp-pub", 0, SHARDS);
        let mut s = V5::connect_with(broker.port, Connect::v5(&sid).expiry(1));
        s.sub_ok("v5s/exp/t", 1);
        s.disconnect();
        let mut pb = V5::connect(broker.port, &pid, true);
        pb.publish(Publish::new("v5s/exp/t", b"queued-while-away").qos(1));

        thread::sleep(secs(4)); // interval 1 s + generous margin

        let mut s = V5::connect(broker.port, &sid, false);
        assert!(
            !s.session_present,
            "session must have expired after 1 s (waited 4 s)"
        );
        s.sub_ok("v5s/exp/marker", 1);
        pb.publish(Publish::new("v5s/exp/t", b"after-expiry").qos(1));
        pb.publish(Publish::new("v5s/exp/marker", b"marker").qos(1));
        let first = s.expect_pub(LONG);
        assert_eq!(
            first.text(),
            "marker",
            "neither the queued message nor the old subscription may survive expiry: {first:?}"
        );
    });
}

/// Session Expiry Interval 0xFFFFFFFF: the session never expires (checked after a few seconds).
#[test]
fn session_expiry_max_never_expires() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let sid = client_id_on_shard("v5s-never", 0, SHARDS);
        let pid = client_id_on_shard("v5s-never-pub", 1, SHARDS);
        let mut s = V5::connect_with(broker.port, Connect::v5(&sid).expiry(u32::MAX));
        s.sub_ok("v5s/never/t", 1);
        s.disconnect();
        let mut pb = V5::connect(broker.port, &pid, true);
        pb.publish(Publish::new("v5s/never/t", b"kept").qos(1));
        thread::sleep(secs(3));
        let mut s = V5::connect_with(broker.port, Connect::v5(&sid).clean(false).expiry(u32::MAX));
        assert!(s.session_present, "0xFFFFFFFF: session must not expire");
        assert_eq!(s.expect_pub(LONG).text(), "kept");
    });
}

/// DISCONNECT may change the Session Expiry Interval: CONNECT said 60, DISCONNECT says 0 -> the
/// session ends at disconnect.
#[test]
fn disconnect_lowers_session_expiry_to_zero() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let sid = client_id_on_shard("v5s-dz", 1, SHARDS);
        let mut s = V5::connect_with(broker.port, Connect::v5(&sid).expiry(60));
        s.sub_ok("v5s/dz/t", 1);
        s.disconnect_with(0x00, Props::new().u32(p::SESSION_EXPIRY, 0));
        let s = V5::connect_with(broker.port, Connect::v5(&sid).clean(false).expiry(60));
        assert!(
            !s.session_present,
            "DISCONNECT with Session Expiry 0 must end the session"
        );
    });
}

/// DISCONNECT setting a non-zero Session Expiry when CONNECT had 0 is a protocol error: the
/// server answers DISCONNECT 0x82 and closes. The session still ends (expiry stays 0).
#[test]
fn disconnect_raising_expiry_from_zero_is_protocol_error() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let sid = client_id_on_shard("v5s-dr", 0, SHARDS);
        let mut s = V5::connect(broker.port, &sid, true);
        s.sub_ok("v5s/dr/t", 1);
        let _ = s.send(&enc::disconnect_v5(
            0x00,
            &Props::new().u32(p::SESSION_EXPIRY, 30),
        ));
        let (rc, _) = s.expect_disconnect(SHORT, "DISCONNECT raising session expiry from 0");
        assert_eq!(rc, 0x82, "server DISCONNECT reason code");
        let s = V5::connect(broker.port, &sid, false);
        assert!(!s.session_present, "session expiry stayed 0: no session");
    });
}

/// Clean Start = 1 discards an existing (unexpired) session: session present = 0, neither the
/// old subscription nor the messages queued for it survive.
#[test]
fn clean_start_discards_existing_session() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let sid = client_id_on_shard("v5s-cs", 1, SHARDS);
        let pid = client_id_on_shard("v5s-cs-pub", 0, SHARDS);
        let mut s = V5::connect_with(broker.port, Connect::v5(&sid).expiry(300));
        s.sub_ok("v5s/cs/t", 1);
        s.disconnect();
        let mut pb = V5::connect(broker.port, &pid, true);
        pb.publish(Publish::new("v5s/cs/t", b"queued").qos(1));

        let mut s = V5::connect_with(broker.port, Connect::v5(&sid).clean(true).expiry(300));
        assert!(!s.session_present, "clean start: session present must be 0");
        s.sub_ok("v5s/cs/marker", 1);
        pb.publish(Publish::new("v5s/cs/t", b"old-sub").qos(1));
        pb.publish(Publish::new("v5s/cs/marker", b"marker").qos(1));
        let first = s.expect_pub(LONG);
        assert_eq!(
            first.text(),
            "marker",
            "old session must be discarded: {first:?}"
        );
    });
}

/// Message Expiry Interval: a queued message whose interval passed while the subscriber was away
/// is not delivered; the one still valid arrives carrying the remaining interval (<= original).
#[test]
fn message_expiry_drops_expired_and_decrements_remaining() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let sid = client_id_on_shard("v5s-me", 0, SHARDS);
        let pid = client_id_on_shard("v5s-me-pub", 1, SHARDS);
        let mut s = V5::connect_with(broker.port, Connect::v5(&sid).expiry(300));
        s.sub_ok("v5s/me/t", 1);
        s.disconnect();
        let mut pb = V5::connect(broker.port, &pid, true);
        pb.publish_ack(
            Publish::new("v5s/me/t", b"short-lived")
                .qos(1)
                .props(Props::new().u32(p::MESSAGE_EXPIRY, 1)),
        );
        pb.publish_ack(
            Publish::new("v5s/me/t", b"long-lived")
                .qos(1)
                .props(Props::new().u32(p::MESSAGE_EXPIRY, 100)),
        );
        let sent = Instant::now();
        thread::sleep(secs(3));
        let mut s = V5::connect_with(broker.port, Connect::v5(&sid).clean(false).expiry(300));
        assert!(s.session_present);
        let first = s.expect_pub(LONG);
        assert_eq!(
            first.text(),
            "long-lived",
            "the expired message must be dropped"
        );
        let remaining = first
            .num(p::MESSAGE_EXPIRY)
            .expect("delivered message carries Message Expiry Interval");
        let waited = sent.elapsed().as_secs();
        assert!(
            remaining <= 100 && remaining + waited + 2 >= 100 && remaining < 100,
            "remaining interval {remaining} after ~{waited} s queued (original 100)"
        );
    });
}

/// Live delivery of a message with Message Expiry Interval: it carries the (remaining) interval.
#[test]
fn message_expiry_on_live_delivery() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let mut s = V5::connect(broker.port, &client_id_on_shard("v5s-mel", 1, SHARDS), true);
        s.sub_ok("v5s/mel/t", 1);
        let mut pb = V5::connect(
            broker.port,
            &client_id_on_shard("v5s-mel-p", 0, SHARDS),
            true,
        );
        pb.publish_ack(
            Publish::new("v5s/mel/t", b"x")
                .qos(1)
                .props(Props::new().u32(p::MESSAGE_EXPIRY, 30)),
        );
        pb.publish(Publish::new("v5s/mel/t", b"no-expiry").qos(1));
        let m = s.expect_pub(LONG);
        let left = m
            .num(p::MESSAGE_EXPIRY)
            .expect("Message Expiry Interval forwarded");
        assert!(
            (25..=30).contains(&left),
            "remaining interval {left} (sent 30)"
        );
        let m = s.expect_pub(LONG);
        assert_eq!(m.text(), "no-expiry");
        assert_eq!(m.num(p::MESSAGE_EXPIRY), None, "no expiry was set: {m:?}");
    });
}
