//! QoS 0/1/2 in both directions, delivery at min(publish QoS, granted QoS), overlapping
//! subscriptions, QoS 2 duplicate suppression on the way in, per-publisher ordering, and the
//! 5.0 PUBACK reason for no matching subscribers.

use crate::common;
use crate::common::enc::{self, kind, Publish};
use crate::common::raw::{RawClient, LONG};
use crate::common::v5::V5;
use crate::common::{
    bounded, client_id_on_shard, connect, connect_with, opts, recv_n, recv_until_marker,
    run_bounded, secs, text, texts, Broker, Note, SHARDS,
};
use rumqttc::Packet;

fn assert_qos(got: &[rumqttc::Publish], want: u8, what: &str) {
    let qos: Vec<u8> = got.iter().map(|p| p.qos as u8).collect();
    assert!(
        qos.iter().all(|&q| q == want),
        "{what}: delivered QoS {qos:?}, want all {want}"
    );
}

/// A subscription granted QoS g delivers a message published at QoS p at min(p, g), for all
/// nine combinations; the QoS 2 delivery runs the full PUBREC/PUBREL/PUBCOMP flow.
/// Publisher and subscriber on different home shards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_qos_is_min_of_publish_and_granted() {
    bounded(secs(60), async {
        let broker = Broker::start_sharded(&[]);
        let mut sub = connect(broker.port, &client_id_on_shard("min-sub", 0, SHARDS), true).await;
        let mut publ = connect(broker.port, &client_id_on_shard("min-pub", 1, SHARDS), true).await;
        for g in 0..3u8 {
            sub.subscribe_ok(&format!("min/g{g}"), g).await;
        }
        for g in 0..3u8 {
            for p in 0..3u8 {
                publ.publish(&format!("min/g{g}"), p, false, format!("p{p}-g{g}"))
                    .await;
            }
        }
        let got = recv_n(&mut sub.publishes, 9, secs(15)).await;
        let mut seen: Vec<String> = texts(&got);
        seen.sort();
        let mut want: Vec<String> = (0..3)
            .flat_map(|g| (0..3).map(move |p| format!("p{p}-g{g}")))
            .collect();
        want.sort();
        assert_eq!(seen, want, "each message exactly once");
        for m in &got {
            let t = text(m);
            let p: u8 = t[1..2].parse().unwrap();
            let g: u8 = t[4..5].parse().unwrap();
            assert_eq!(
                m.qos as u8,
                p.min(g),
                "{t}: delivered QoS must be min(publish, granted)"
            );
            assert!(
                !m.retain && !m.dup,
                "{t}: no RETAIN/DUP flags on a live first delivery"
            );
        }
        // The one QoS 2 delivery (p2-g2) got its PUBREL from the broker.
        sub.expect_note("PUBREL from the broker", secs(10), |n| match n {
            Note::In(Packet::PubRel(_)) => Some(()),
            _ => None,
        })
        .await;
    })
    .await;
}

/// Byte-exact QoS flows with raw clients: inbound PUBACK / PUBREC-PUBREL-PUBCOMP are checked in
/// `RawClient::publish`; outbound we check the fixed header of each PUBLISH, distinct packet
/// ids for unacknowledged messages, and the broker's PUBREL (62 02 id) after our PUBREC.
#[test]
fn raw_qos_flows_exact_bytes() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let (mut sub, _) = RawClient::connect311(
            broker.port,
            &client_id_on_shard("rq-sub", 0, SHARDS),
            true,
            60,
        );
        let (mut publ, _) = RawClient::connect311(
            broker.port,
            &client_id_on_shard("rq-pub", 1, SHARDS),
            true,
            60,
        );
        sub.subscribe_ok(1, &[("rq/t", 2)]);

        publ.publish(Publish::new("rq/t", b"zero"));
        let p = sub.expect_kind(kind::PUBLISH, LONG);
        assert_eq!(p.header, 0x30, "QoS 0 PUBLISH header");
        assert_eq!(
            p.body,
            [&[0u8, 4][..], &b"rq/t"[..], &b"zero"[..]].concat(),
            "QoS 0 PUBLISH has no packet id"
        );

        publ.publish(Publish::new("rq/t", b"one-a").qos(1).pkid(10));
        publ.publish(Publish::new("rq/t", b"one-b").qos(1).pkid(11));
        let a = sub.expect_kind(kind::PUBLISH, LONG);
        let b = sub.expect_kind(kind::PUBLISH, LONG);
        assert_eq!((a.header, b.header), (0x32, 0x32), "QoS 1 PUBLISH header");
        let (a, b) = (a.publish(), b.publish());
        assert_eq!((a.text().as_str(), b.text().as_str()), ("one-a", "one-b"));
        assert!(
            a.pkid != 0 && b.pkid != 0 && a.pkid != b.pkid,
            "packet ids {} {}",
            a.pkid,
            b.pkid
        );
        sub.send_ok(&enc::puback(a.pkid));
        sub.send_ok(&enc::puback(b.pkid));

        publ.publish(Publish::new("rq/t", b"two").qos(2).pkid(12));
        let c = sub.expect_kind(kind::PUBLISH, LONG);
        assert_eq!(c.header, 0x34, "QoS 2 PUBLISH header");
        let c = c.publish();
        assert_eq!(c.text(), "two");
        sub.send_ok(&enc::pubrec(c.pkid));
        let rel = sub.expect_kind(kind::PUBREL, LONG);
        assert_eq!(rel.bytes(), enc::pubrel(c.pkid), "PUBREL bytes");
        sub.send_ok(&enc::pubcomp(c.pkid));
        sub.ping();
        publ.ping();
    });
}

/// Overlapping subscriptions (`a/#` and `a/+`) deliver a matching message once, at the highest
/// granted QoS; a message matching only one of them comes at that one's QoS. Both orders of
/// subscribing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_subscriptions_deliver_once_at_highest_qos() {
    bounded(secs(60), async {
        let broker = Broker::start_sharded(&[]);
        let mut s1 = connect(broker.port, &client_id_on_shard("ov-s1", 0, SHARDS), true).await;
        s1.subscribe_ok("ov/#", 1).await;
        s1.subscribe_ok("ov/+", 2).await;
        let mut s2 = connect(broker.port, &client_id_on_shard("ov-s2", 1, SHARDS), true).await;
        s2.subscribe_ok("ov/+", 0).await;
        s2.subscribe_ok("ov/#", 2).await;
        let mut publ = connect(broker.port, &client_id_on_shard("ov-pub", 1, SHARDS), true).await;

        for m in ["m1", "m2", "m3", "end"] {
            publ.publish("ov/x", 2, false, m).await;
        }
        for m in ["deep", "deep-end"] {
            publ.publish("ov/x/y", 2, false, m).await;
        }

        let got = recv_until_marker(&mut s1.publishes, "end", secs(10)).await;
        assert_eq!(
            texts(&got),
            ["m1", "m2", "m3", "end"],
            "s1: one copy each of ov/x messages"
        );
        assert_qos(&got, 2, "s1: ov/x at max(1, 2) = 2");
        let got = recv_until_marker(&mut s1.publishes, "deep-end", secs(10)).await;
        assert_eq!(texts(&got), ["deep", "deep-end"], "s1: ov/x/y once");
        assert_qos(&got, 1, "s1: ov/x/y matches only ov/# (QoS 1)");

        let got = recv_until_marker(&mut s2.publishes, "end", secs(10)).await;
        assert_eq!(
            texts(&got),
            ["m1", "m2", "m3", "end"],
            "s2: one copy each of ov/x messages"
        );
        assert_qos(&got, 2, "s2: ov/x at max(0, 2) = 2");
        let got = recv_until_marker(&mut s2.publishes, "deep-end", secs(10)).await;
        assert_eq!(texts(&got), ["deep", "deep-end"], "s2: ov/x/y once");
        assert_qos(&got, 2, "s2: ov/x/y at QoS 2");
    })
    .await;
}

/// Re-subscribing to the same filter replaces the subscription (new QoS, still one copy)
/// [MQTT-3.8.4-3].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubscribe_replaces_granted_qos() {
    bounded(secs(60), async {
        let broker = Broker::start_sharded(&[]);
        let mut sub = connect(broker.port, &client_id_on_shard("resub-s", 0, SHARDS), true).await;
        let mut publ = connect(broker.port, &client_id_on_shard("resub-p", 1, SHARDS), true).await;
        sub.subscribe_ok("resub/t", 2).await;
        sub.subscribe_ok("resub/t", 0).await;
        publ.publish("resub/t", 2, false, "x").await;
        publ.publish("resub/t", 2, false, "end").await;
        let got = recv_until_marker(&mut sub.publishes, "end", secs(10)).await;
        assert_eq!(texts(&got), ["x", "end"], "one copy per message");
        assert_qos(&got, 0, "delivered at the new QoS 0");
    })
    .await;
}

/// The same QoS 2 PUBLISH sent twice (the second with DUP) before PUBREL is one message:
/// PUBREC both times, and subscribers get it once [MQTT-4.3.3-2]. Also when the duplicate
/// comes after the publisher reconnected to its persistent session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_inbound_duplicate_suppressed() {
    bounded(secs(60), async {
        let broker = Broker::start_sharded(&[]);
        let port = broker.port;
        let mut sub = connect(port, &client_id_on_shard("dedup-sub", 0, SHARDS), true).await;
        sub.subscribe_ok("dedup/t", 2).await;
        let pub_id = client_id_on_shard("dedup-pub", 1, SHARDS);

        // Same connection.
        let (mut p, _) = RawClient::connect311(port, &pub_id, true, 60);
        p.send_ok(&Publish::new(b"dedup/t", b"once").qos(2).pkid(7).encode());
        let rec = p.expect_kind(kind::PUBREC, LONG);
        assert_eq!(rec.bytes(), enc::pubrec(7));
        p.send_ok(
            &Publish::new(b"dedup/t", b"once")
                .qos(2)
                .pkid(7)
                .dup(true)
                .encode(),
        );
        let rec = p.expect_kind(kind::PUBREC, LONG);
        assert_eq!(rec.bytes(), enc::pubrec(7), "a duplicate gets PUBREC again");
        p.send_ok(&enc::pubrel(7));
        let comp = p.expect_kind(kind::PUBCOMP, LONG);
        assert_eq!(comp.bytes(), enc::pubcomp(7));
        p.publish(Publish::new("dedup/t", b"after").qos(2).pkid(8));
        p.disconnect();
        let got = recv_until_marker(&mut sub.publishes, "after", secs(10)).await;
        assert_eq!(
            texts(&got),
            ["once", "after"],
            "the duplicate must not be forwarded"
        );

        // Across a reconnect of a persistent publisher session.
        let (mut p, _) = RawClient::connect311(port, &pub_id, false, 60);
        p.send_ok(&Publish::new(b"dedup/t", b"once-2").qos(2).pkid(9).encode());
        assert_eq!(p.expect_kind(kind::PUBREC, LONG).bytes(), enc::pubrec(9));
        drop(p); // gone before PUBREL
        let (mut p, sp) = RawClient::connect311(port, &pub_id, false, 60);
        assert!(sp, "publisher session present");
        p.send_ok(
            &Publish::new(b"dedup/t", b"once-2")
                .qos(2)
                .pkid(9)
                .dup(true)
                .encode(),
        );
        assert_eq!(p.expect_kind(kind::PUBREC, LONG).bytes(), enc::pubrec(9));
        p.send_ok(&enc::pubrel(9));
        assert_eq!(p.expect_kind(kind::PUBCOMP, LONG).bytes(), enc::pubcomp(9));
        p.publish(Publish::new("dedup/t", b"after-2").qos(2).pkid(10));
        p.disconnect();
        let got = recv_until_marker(&mut sub.publishes, "after-2", secs(10)).await;
        assert_eq!(
            texts(&got),
            ["once-2", "after-2"],
            "duplicate after reconnect must not be forwarded"
        );
    })
    .await;
}

/// One publisher's messages on one topic arrive in publish order at QoS 0, 1 and 2, at a
/// subscriber on the publisher's home shard and at one on the other shard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_publisher_order_each_qos_across_shards() {
    const N: usize = 1000;
    bounded(secs(180), async {
        let broker = Broker::start_sharded(&["--max-queued-messages", "100000"]);
        let port = broker.port;
        let mut subs = Vec::new();
        for shard in 0..SHARDS {
            let mut s = connect(port, &client_id_on_shard("order-sub", shard, SHARDS), true).await;
            s.subscribe_ok("order/t", 2).await;
            subs.push(s);
        }
        let mut o = opts(port, &client_id_on_shard("order-pub", 1, SHARDS));
        o.set_inflight(20);
        let mut publ = connect_with(o).await;
        for q in 0..3u8 {
            let payloads: Vec<Vec<u8>> = (0..N).map(|i| format!("{q}:{i}").into_bytes()).collect();
            publ.publish_all("order/t", q, payloads).await;
            for (shard, s) in subs.iter_mut().enumerate() {
                let got = recv_n(&mut s.publishes, N, secs(60)).await;
                for (i, m) in got.iter().enumerate() {
                    assert_eq!(
                        text(m),
                        format!("{q}:{i}"),
                        "QoS {q}, subscriber on shard {shard}: message {i} out of order"
                    );
                    assert_eq!(m.qos as u8, q);
                }
            }
        }
    })
    .await;
}

/// PUBACK 0x10 (No matching subscribers) when nobody subscribes on any shard, 0x00 as soon as
/// a subscriber exists (on the other shard), 0x10 again after it unsubscribes.
#[test]
fn puback_no_matching_subscribers_across_shards() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let mut pb = V5::connect(broker.port, &client_id_on_shard("nms-p", 0, SHARDS), true);
        assert_eq!(
            pb.publish(Publish::new("nms/t", b"1").qos(1)),
            0x10,
            "no subscriber anywhere"
        );
        let mut s = V5::connect(broker.port, &client_id_on_shard("nms-s", 1, SHARDS), true);
        s.sub_ok("nms/+", 1);
        assert_eq!(
            pb.publish(Publish::new("nms/t", b"2").qos(1)),
            0x00,
            "subscriber on the other shard"
        );
        assert_eq!(
            pb.publish(Publish::new("nms/other/level", b"3").qos(1)),
            0x10,
            "filter does not match"
        );
        assert_eq!(s.expect_pub(LONG).text(), "2");
        s.unsubscribe(&["nms/+"]);
        // Route removal on the other shard is not synchronous with UNSUBACK (unlike route
        // addition with SUBACK), so allow it a bounded moment to turn back into 0x10.
        let deadline = std::time::Instant::now() + secs(10);
        while pb.publish(Publish::new("nms/t", b"4").qos(1)) != 0x10 {
            assert!(
                std::time::Instant::now() < deadline,
                "still not 0x10 10 s after UNSUBACK"
            );
            std::thread::sleep(common::millis(50));
        }
        // The publisher's own shard too.
        let mut s0 = V5::connect(broker.port, &client_id_on_shard("nms-s0", 0, SHARDS), true);
        s0.sub_ok("nms/#", 0);
        assert_eq!(
            pb.publish(Publish::new("nms/other/level", b"5").qos(1)),
            0x00
        );
    });
}
