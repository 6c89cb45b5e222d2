//! MQTT 5 subscription options (No Local, Retain As Published, Retain Handling) and
//! Subscription Identifiers, on a 2-shard broker.

use crate::common;
use crate::common::dec::texts;
use crate::common::enc::{p, sub_opts, Props, Publish};
use crate::common::raw::LONG;
use crate::common::v5::V5;
use crate::common::{client_id_on_shard, run_bounded, secs, Broker, SHARDS};

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
        let mut got = texts(&b.expect_pubs(2, LONG));
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
        assert_eq!(texts(&got), vec!["retained-live", "not-retained"]);
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
    texts(&c.pubs_until(marker, LONG))
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
            texts(&got),
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
