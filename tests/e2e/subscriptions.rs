//! SUBSCRIBE / SUBACK / UNSUBSCRIBE / UNSUBACK, topic wildcards and `$` topics, and the 5.0
//! subscription options (No Local, Retain As Published, Retain Handling) and Subscription
//! Identifiers, on a 2-shard broker. Shared subscriptions are in `shared`.

use std::collections::BTreeMap;

use crate::common;
use crate::common::dec;
use crate::common::enc::{self, kind, p, sub_opts, Props, Publish};
use crate::common::raw::{RawClient, ReadErr, LONG, SHORT};
use crate::common::v5::V5;
use crate::common::{
    bounded, client_id_on_shard, connect, recv_one, recv_until_marker, run_bounded, secs, text,
    texts, Broker, Mqtt, SHARDS,
};

/// SUBACK carries the packet id and one granted QoS per filter, in order: exact bytes.
#[test]
fn suback_grants_requested_qos_exact_bytes() {
    run_bounded(secs(30), || {
        let broker = Broker::start(&[]);
        let (mut c, _) = RawClient::connect311(broker.port, "suback", true, 60);
        c.send_ok(&enc::subscribe(
            0x0A0B,
            &[("s/0", 0), ("s/1", 1), ("s/2", 2)],
        ));
        let ack = c.expect_kind(kind::SUBACK, LONG);
        assert_eq!(ack.bytes(), vec![0x90, 0x05, 0x0A, 0x0B, 0x00, 0x01, 0x02]);
    });
}

/// An invalid topic filter is refused with SUBACK return code 0x80 (the valid filter in the
/// same SUBSCRIBE still granted and working), or the connection is closed. Either way the
/// invalid filter is never granted, and the broker stays up.
#[test]
fn invalid_filter_gets_0x80_or_close() {
    run_bounded(secs(90), || {
        let broker = Broker::start_sharded(&[]);
        let (mut publ, _) = RawClient::connect311(broker.port, "inv-pub", true, 60);
        for (i, bad) in ["a/#/b", "a/b#", "a+/b", "#/x", "a/+b", "", "a/#/"]
            .into_iter()
            .enumerate()
        {
            let id = format!("inv-sub-{i}");
            let (mut c, _) = RawClient::connect311(broker.port, &id, true, 60);
            let valid = format!("valid/{i}");
            let _ = c.send(&enc::subscribe(1, &[(&valid, 1), (bad, 1)]));
            match c.read_packet(LONG) {
                Ok(ack) => {
                    assert_eq!(
                        ack.kind(),
                        kind::SUBACK,
                        "filter {bad:?}: expected SUBACK, got {ack:?}"
                    );
                    assert_eq!(ack.pkid(), 1);
                    assert_eq!(
                        ack.suback_codes(),
                        vec![0x01, 0x80],
                        "filter {bad:?}: SUBACK codes"
                    );
                    publ.publish(Publish::new(&valid, b"ok").qos(1).pkid(i as u16 + 1));
                    let m = c.next_publish(LONG);
                    assert_eq!(
                        (m.topic.as_str(), m.text().as_str()),
                        (valid.as_str(), "ok")
                    );
                    c.ping();
                }
                Err(ReadErr::Closed(_)) => {}
                Err(ReadErr::Timeout) => panic!("filter {bad:?}: neither SUBACK nor close"),
            }
        }
        publ.ping();
        broker.assert_alive();
    });
}

/// UNSUBSCRIBE gets UNSUBACK (B0 02 id) and stops delivery; unsubscribing a filter that was
/// never subscribed also gets UNSUBACK [MQTT-3.10.4-5]. A message published while unsubscribed
/// never arrives: after re-subscribing, a marker on the same topic is the first message.
#[test]
fn unsubscribe_stops_delivery() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let (mut sub, _) = RawClient::connect311(
            broker.port,
            &client_id_on_shard("unsub-s", 0, SHARDS),
            true,
            60,
        );
        let (mut publ, _) = RawClient::connect311(
            broker.port,
            &client_id_on_shard("unsub-p", 1, SHARDS),
            true,
            60,
        );
        sub.subscribe_ok(1, &[("u/t", 1)]);
        publ.publish(Publish::new("u/t", b"before").qos(1).pkid(1));
        let m = sub.next_publish(LONG);
        assert_eq!(m.text(), "before");
        sub.send_ok(&enc::puback(m.pkid));

        sub.unsubscribe(2, &["u/t"]); // checks the UNSUBACK bytes
        sub.unsubscribe(3, &["never/subscribed"]);
        publ.publish(Publish::new("u/t", b"while-unsubscribed").qos(1).pkid(2));
        sub.subscribe_ok(4, &[("u/t", 1)]);
        publ.publish(Publish::new("u/t", b"marker").qos(1).pkid(3));
        let m = sub.next_publish(LONG);
        assert_eq!(
            m.text(),
            "marker",
            "a message published while unsubscribed was delivered"
        );
        sub.send_ok(&enc::puback(m.pkid));
        sub.ping();
    });
}

const TOPICS: [&str; 9] = [
    "sport",
    "sport/tennis",
    "sport/tennis/player1",
    "sport/tennis/player1/ranking",
    "sport/golf/player1",
    "/finance",
    "a",
    "a/b",
    "sport/",
];

/// `+` and `#` per the spec's examples: each subscriber gets exactly the topics its filter
/// matches (each once), nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcards_match_per_spec() {
    bounded(secs(90), async {
        let broker = Broker::start_sharded(&[]);
        let port = broker.port;
        let cases: Vec<(&str, Vec<&str>)> = vec![
            ("sport/tennis/+", vec!["sport/tennis/player1"]),
            (
                "sport/#",
                vec![
                    "sport",
                    "sport/tennis",
                    "sport/tennis/player1",
                    "sport/tennis/player1/ranking",
                    "sport/golf/player1",
                    "sport/",
                ],
            ),
            ("+/+", vec!["sport/tennis", "/finance", "a/b", "sport/"]),
            ("/+", vec!["/finance"]),
            ("+", vec!["sport", "a"]),
            ("#", TOPICS.to_vec()),
            (
                "sport/+/player1",
                vec!["sport/tennis/player1", "sport/golf/player1"],
            ),
            (
                "+/tennis/#",
                vec![
                    "sport/tennis",
                    "sport/tennis/player1",
                    "sport/tennis/player1/ranking",
                ],
            ),
            ("sport/tennis/player1", vec!["sport/tennis/player1"]),
        ];
        let mut subs: Vec<Mqtt> = Vec::new();
        for (i, (filter, _)) in cases.iter().enumerate() {
            let mut s = connect(
                port,
                &client_id_on_shard(&format!("wc{i}"), i % SHARDS, SHARDS),
                true,
            )
            .await;
            s.subscribe_ok(filter, 1).await;
            s.subscribe_ok("marker/end/x", 1).await;
            subs.push(s);
        }
        let mut publ = connect(port, &client_id_on_shard("wc-pub", 1, SHARDS), true).await;
        for t in TOPICS {
            publ.publish(t, 1, false, t).await;
        }
        publ.publish("marker/end/x", 1, false, "END").await;

        for ((filter, want), s) in cases.iter().zip(subs.iter_mut()) {
            // Wait for the marker and for every expected topic (cross-topic order is not
            // guaranteed), then compare exactly.
            let mut got: BTreeMap<String, usize> = BTreeMap::new();
            let mut marker = false;
            let deadline = tokio::time::Instant::now() + secs(15);
            while !(marker && want.iter().all(|t| got.contains_key(*t))) {
                let m = match tokio::time::timeout_at(deadline, s.publishes.recv()).await {
                    Ok(Some(m)) => m,
                    _ => panic!(
                        "filter {filter:?}: timed out; got {got:?}, marker {marker}, want {want:?}"
                    ),
                };
                if text(&m) == "END" {
                    marker = true;
                } else {
                    assert_eq!(text(&m), m.topic, "payload is the topic");
                    *got.entry(m.topic.clone()).or_default() += 1;
                }
            }
            let want_map: BTreeMap<String, usize> =
                want.iter().map(|t| (t.to_string(), 1)).collect();
            assert_eq!(
                got, want_map,
                "filter {filter:?}: topics delivered (with counts)"
            );
        }
    })
    .await;
}

/// Topics starting with `$` are not matched by filters starting with a wildcard
/// [MQTT-4.7.2-1]: `#`, `+/x` and `+/+` do not get `$test/x` or `$SYS/x`, while `$test/#` and
/// `$test/+` do get `$test/x`. (A client publish to `$SYS/x` may be dropped by the broker, so it
/// is only checked on the "not delivered" side.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dollar_topics_not_matched_by_leading_wildcards() {
    bounded(secs(60), async {
        let broker = Broker::start_sharded(&[]);
        let port = broker.port;
        let mut wild = Vec::new();
        for (i, f) in ["#", "+/x", "+/+"].into_iter().enumerate() {
            let mut s = connect(
                port,
                &client_id_on_shard(&format!("dollar-w{i}"), i % SHARDS, SHARDS),
                true,
            )
            .await;
            s.subscribe_ok(f, 1).await;
            wild.push((f, s));
        }
        let mut ctrl = Vec::new();
        for (i, f) in ["$test/#", "$test/+", "$test/x"].into_iter().enumerate() {
            let mut s = connect(
                port,
                &client_id_on_shard(&format!("dollar-c{i}"), i % SHARDS, SHARDS),
                true,
            )
            .await;
            s.subscribe_ok(f, 1).await;
            ctrl.push((f, s));
        }

        // $SYS from a throwaway client at QoS 0: the broker may drop it or even close that client.
        let sys_pub = connect(port, "dollar-sys-pub", true).await;
        sys_pub
            .client
            .publish("$SYS/x", rumqttc::QoS::AtMostOnce, false, "sys")
            .await
            .unwrap();
        sys_pub.disconnect().await;

        let mut publ = connect(port, &client_id_on_shard("dollar-pub", 1, SHARDS), true).await;
        publ.publish("$test/x", 1, false, "dollar").await;
        publ.publish("normal/x", 1, false, "END").await;

        for (f, s) in wild.iter_mut() {
            let got = recv_until_marker(&mut s.publishes, "END", secs(10)).await;
            let bad: Vec<&str> = got
                .iter()
                .map(|p| p.topic.as_str())
                .filter(|t| t.starts_with('$'))
                .collect();
            assert!(bad.is_empty(), "filter {f:?} matched $-topics {bad:?}");
            assert_eq!(texts(&got), ["END"], "filter {f:?}");
        }
        for (f, s) in ctrl.iter_mut() {
            let m = recv_one(&mut s.publishes, secs(10)).await;
            assert_eq!(
                (m.topic.as_str(), text(&m).as_str()),
                ("$test/x", "dollar"),
                "filter {f:?}"
            );
        }
    })
    .await;
}

/// Each filter of a multi-filter SUBSCRIBE works independently, and an UNSUBSCRIBE of one
/// leaves the other in place.
#[test]
fn multi_filter_subscribe_and_partial_unsubscribe() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let (mut sub, _) = RawClient::connect311(broker.port, "multi-s", true, 60);
        let (mut publ, _) = RawClient::connect311(broker.port, "multi-p", true, 60);
        sub.subscribe_ok(1, &[("m/a", 0), ("m/b", 1)]);
        sub.unsubscribe(2, &["m/a"]);
        publ.publish(Publish::new("m/a", b"gone").qos(1).pkid(1));
        publ.publish(Publish::new("m/b", b"kept").qos(1).pkid(2));
        let m = sub.next_publish(SHORT);
        assert_eq!((m.topic.as_str(), m.text().as_str()), ("m/b", "kept"));
        sub.send_ok(&enc::puback(m.pkid));
        // m/a: re-subscribe and publish a marker there; it must be the first m/a message.
        sub.subscribe_ok(3, &[("m/a", 0)]);
        publ.publish(Publish::new("m/a", b"marker").qos(1).pkid(3));
        let m = sub.next_publish(SHORT);
        assert_eq!((m.topic.as_str(), m.text().as_str()), ("m/a", "marker"));
    });
}

/// UNSUBACK: 0x00 for a subscribed filter, 0x11 (No subscription existed) for one that is not.
#[test]
fn unsuback_0x11_for_filter_not_subscribed() {
    run_bounded(secs(30), || {
        let broker = Broker::start_sharded(&[]);
        let mut c = V5::connect(broker.port, "unsub-11", true);
        c.sub_ok("u/a", 1);
        let a = c.unsubscribe(&["u/a", "u/never", "u/a"]);
        assert_eq!(a.codes, vec![0x00, 0x11, 0x11]);
    });
}

/// No Local: a client's own publishes are not sent back on that subscription; another
/// subscriber without No Local gets them; other clients' publishes still arrive.
#[test]
fn no_local_suppresses_own_publishes() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let mut a = V5::connect(broker.port, &client_id_on_shard("nl-a", 0, SHARDS), true);
        assert_eq!(a.subscribe("nl/t", sub_opts(1, true, false, 0)), 1);
        let mut b = V5::connect(broker.port, &client_id_on_shard("nl-b", 1, SHARDS), true);
        assert_eq!(b.subscribe("nl/t", sub_opts(1, false, false, 0)), 1);
        a.publish(Publish::new("nl/t", b"from-a").qos(1));
        b.publish(Publish::new("nl/t", b"from-b").qos(1));
        let first = a.expect_pub(LONG);
        assert_eq!(
            first.text(),
            "from-b",
            "No Local: own message came back: {first:?}"
        );
        let mut got = dec::texts(&b.expect_pubs(2, LONG));
        got.sort(); // two publishers: no order between them
        assert_eq!(got, vec!["from-a", "from-b"], "b has no No Local");
    });
}

/// Retain As Published: with it the RETAIN flag of a live message is kept, without it cleared.
#[test]
fn retain_as_published_keeps_flag_on_live_delivery() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let mut rap = V5::connect(broker.port, &client_id_on_shard("rap-1", 0, SHARDS), true);
        assert_eq!(rap.subscribe("rap/t", sub_opts(1, false, true, 0)), 1);
        let mut plain = V5::connect(broker.port, &client_id_on_shard("rap-0", 1, SHARDS), true);
        assert_eq!(plain.subscribe("rap/t", sub_opts(1, false, false, 0)), 1);
        let mut pb = V5::connect(broker.port, &client_id_on_shard("rap-p", 1, SHARDS), true);
        pb.publish(Publish::new("rap/t", b"retained-live").qos(1).retain(true));
        pb.publish(Publish::new("rap/t", b"not-retained").qos(1));
        let got = rap.expect_pubs(2, LONG);
        assert_eq!(dec::texts(&got), vec!["retained-live", "not-retained"]);
        assert!(
            got[0].retain,
            "Retain As Published: RETAIN kept: {:?}",
            got[0]
        );
        assert!(!got[1].retain);
        let got = plain.expect_pubs(2, LONG);
        assert!(
            !got[0].retain,
            "without Retain As Published, live RETAIN is 0: {:?}",
            got[0]
        );
        assert!(!got[1].retain);
        pb.publish(Publish::new("rap/t", b"").qos(1).retain(true)); // clear
    });
}

/// Subscribes `filter` with `opts` (the SUBACK must grant QoS 1), then has `pb` publish a live
/// marker; returns the payloads that arrived up to and including it.
fn sub_then_marker(c: &mut V5, pb: &mut V5, topic: &str, opts: u8, marker: &str) -> Vec<String> {
    assert_eq!(c.subscribe(topic, opts), 1, "SUBACK for {topic}");
    pb.publish(Publish::new(topic, marker.as_bytes()).qos(1));
    dec::texts(&c.pubs_until(marker, LONG))
}

/// Retain Handling 0: retained message on every subscribe (new or not); 1: only when the
/// subscription is new; 2: never.
#[test]
fn retain_handling_0_1_2() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let mut pb = V5::connect(broker.port, &client_id_on_shard("rh-p", 0, SHARDS), true);
        pb.publish(Publish::new("rh/t", b"R").qos(1).retain(true));
        common::v5::wait_retained_on_all_shards(broker.port, "rh/t", b"R", SHARDS);

        let mut c0 = V5::connect(broker.port, &client_id_on_shard("rh-0", 1, SHARDS), true);
        assert_eq!(
            sub_then_marker(
                &mut c0,
                &mut pb,
                "rh/t",
                sub_opts(1, false, false, 0),
                "m0a"
            ),
            vec!["R", "m0a"]
        );
        assert_eq!(
            sub_then_marker(
                &mut c0,
                &mut pb,
                "rh/t",
                sub_opts(1, false, false, 0),
                "m0b"
            ),
            vec!["R", "m0b"],
            "RH 0: re-subscribe also gets it"
        );

        let mut c1 = V5::connect(broker.port, &client_id_on_shard("rh-1", 0, SHARDS), true);
        assert_eq!(
            sub_then_marker(
                &mut c1,
                &mut pb,
                "rh/t",
                sub_opts(1, false, false, 1),
                "m1a"
            ),
            vec!["R", "m1a"],
            "RH 1: new subscription gets it"
        );
        assert_eq!(
            sub_then_marker(
                &mut c1,
                &mut pb,
                "rh/t",
                sub_opts(1, false, false, 1),
                "m1b"
            ),
            vec!["m1b"],
            "RH 1: not on re-subscribe"
        );

        let mut c2 = V5::connect(broker.port, &client_id_on_shard("rh-2", 1, SHARDS), true);
        assert_eq!(
            sub_then_marker(
                &mut c2,
                &mut pb,
                "rh/t",
                sub_opts(1, false, false, 2),
                "m2a"
            ),
            vec!["m2a"],
            "RH 2: never"
        );
        assert_eq!(
            sub_then_marker(
                &mut c2,
                &mut pb,
                "rh/t",
                sub_opts(1, false, false, 2),
                "m2b"
            ),
            vec!["m2b"],
            "RH 2: never"
        );

        // Retained messages delivered on subscribe carry RETAIN = 1 whatever Retain As Published.
        let mut c3 = V5::connect(broker.port, &client_id_on_shard("rh-3", 0, SHARDS), true);
        assert_eq!(c3.subscribe("rh/+", sub_opts(1, false, false, 0)), 1);
        let m = c3.expect_pub(LONG);
        assert_eq!((m.text().as_str(), m.retain), ("R", true));
    });
}

/// A SUBSCRIBE with Subscription Identifier N: matching PUBLISHes carry N (publisher on the other
/// shard); a subscription without one gives PUBLISHes without it.
#[test]
fn subscription_identifier_carried_on_matching_publishes() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let mut s = V5::connect(broker.port, &client_id_on_shard("sid-s", 0, SHARDS), true);
        let ack = s.subscribe_with(
            Props::new().varint(p::SUBSCRIPTION_ID, 7),
            &[("sid/a/#", 1)],
        );
        assert_eq!(ack.codes, vec![1]);
        let ack = s.subscribe_with(
            Props::new().varint(p::SUBSCRIPTION_ID, 268_435_455),
            &[("sid/big", 0)],
        );
        assert_eq!(ack.codes, vec![0]);
        s.sub_ok("sid/plain", 1);
        let mut pb = V5::connect(broker.port, &client_id_on_shard("sid-p", 1, SHARDS), true);
        pb.publish(Publish::new("sid/a/b", b"a").qos(1));
        pb.publish(Publish::new("sid/big", b"big"));
        pb.publish(Publish::new("sid/plain", b"plain").qos(1));
        let got = s.expect_pubs(3, LONG);
        let seen: Vec<(String, Vec<usize>)> = got.iter().map(|m| (m.text(), m.sub_ids())).collect();
        assert_eq!(
            seen,
            vec![
                ("a".to_string(), vec![7]),
                ("big".to_string(), vec![268_435_455]),
                ("plain".to_string(), vec![]),
            ]
        );
    });
}

/// Two overlapping subscriptions of one client with ids 1 and 2 matching one topic: one PUBLISH
/// carrying both ids (checked with a marker on a topic only one of them matches).
#[test]
fn overlapping_subscriptions_one_publish_with_both_ids() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let mut s = V5::connect(broker.port, &client_id_on_shard("sid-o", 1, SHARDS), true);
        assert_eq!(
            s.subscribe_with(
                Props::new().varint(p::SUBSCRIPTION_ID, 1),
                &[("sido/+/x", 1)]
            )
            .codes,
            vec![1]
        );
        assert_eq!(
            s.subscribe_with(Props::new().varint(p::SUBSCRIPTION_ID, 2), &[("sido/#", 1)])
                .codes,
            vec![1]
        );
        let mut pb = V5::connect(broker.port, &client_id_on_shard("sid-op", 0, SHARDS), true);
        pb.publish(Publish::new("sido/a/x", b"both").qos(1));
        pb.publish(Publish::new("sido/marker", b"marker").qos(1));
        let got = s.pubs_until("marker", LONG);
        assert_eq!(
            dec::texts(&got),
            vec!["both", "marker"],
            "exactly one copy of the overlapping message"
        );
        assert_eq!(got[0].sub_ids(), vec![1, 2]);
        assert_eq!(got[1].sub_ids(), vec![2]);
    });
}

/// Re-subscribing the same filter with a different identifier replaces the old one.
#[test]
fn resubscribe_replaces_subscription_identifier() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let mut s = V5::connect(broker.port, &client_id_on_shard("sid-r", 0, SHARDS), true);
        s.subscribe_with(Props::new().varint(p::SUBSCRIPTION_ID, 5), &[("sidr/t", 1)]);
        s.subscribe_with(Props::new().varint(p::SUBSCRIPTION_ID, 6), &[("sidr/t", 1)]);
        let mut pb = V5::connect(broker.port, &client_id_on_shard("sid-rp", 1, SHARDS), true);
        pb.publish(Publish::new("sidr/t", b"x").qos(1));
        let m = s.expect_pub(LONG);
        assert_eq!(m.sub_ids(), vec![6]);
    });
}
