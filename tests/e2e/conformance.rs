//! Behaviours a broker conformance suite compares field by field (issue 16): the 3.1 CONNACK's
//! reserved byte, a clean session taken over by a persistent CONNECT, a 5.0 PUBREC that refuses
//! a QoS 2 message, a message larger than the client's Maximum Packet Size, and Mosquitto
//! bridges connecting with the protocol level's top bit set.

use crate::common::enc::{self, ack, kind, p, Connect, Props, Publish};
use crate::common::raw::{RawClient, LONG};
use crate::common::v5::V5;
use crate::common::{run_bounded, secs, unique, Broker};

/// CONNACK's bytes for `connect`.
fn connack(port: u16, connect: &Connect) -> (RawClient, Vec<u8>) {
    let (c, ack) = RawClient::connect_raw(port, &connect.encode());
    let ack = ack.expect("CONNACK");
    assert_eq!(ack.kind(), kind::CONNACK);
    (c, ack.bytes())
}

/// MQTT 3.1 has no session present flag: the first CONNACK byte is reserved and 0, even when
/// a session existed (MQTT 3.1.1 sets it then).
#[test]
fn a_mqtt_3_1_connack_keeps_its_reserved_byte_zero_when_a_session_exists() {
    run_bounded(secs(30), || {
        let broker = Broker::start(&[]);
        let id = unique("v31");
        for _ in 0..2 {
            let (c, bytes) = connack(broker.port, &Connect::v31(&id).clean(false));
            assert_eq!(bytes, [0x20, 0x02, 0x00, 0x00], "3.1 CONNACK");
            c.disconnect();
        }
        let id = unique("v311");
        let (c, _) = connack(broker.port, &Connect::v311(&id).clean(false));
        c.disconnect();
        let (_c, bytes) = connack(broker.port, &Connect::v311(&id).clean(false));
        assert_eq!(bytes, [0x20, 0x02, 0x01, 0x00], "3.1.1: session present");
    });
}

/// A clean session ends with its connection; a persistent CONNECT with its client id that
/// takes the connection over finds no session: session present 0, none of its subscriptions.
#[test]
fn a_clean_session_taken_over_by_a_persistent_connect_is_not_resumed() {
    run_bounded(secs(30), || {
        let broker = Broker::start(&[]);
        let port = broker.port;
        for v5 in [false, true] {
            let id = unique("taken");
            let topic = unique("taken/t");
            let (clean, persistent) = if v5 {
                (Connect::v5(&id), Connect::v5(&id).clean(false).expiry(600))
            } else {
                (Connect::v311(&id), Connect::v311(&id).clean(false))
            };
            let (mut a, ack) = RawClient::connect_raw(port, &clean.encode());
            ack.expect("CONNACK");
            if v5 {
                a.send_ok(&enc::subscribe_v5(1, &Props::new(), &[(&topic, 0)]));
            } else {
                a.send_ok(&enc::subscribe(1, &[(&topic, 0)]));
            }
            a.expect_kind(kind::SUBACK, LONG);
            let (mut b, bytes) = connack(port, &persistent);
            assert_eq!(
                bytes[2], 0,
                "v5={v5}: session present for a clean session's id"
            );
            // None of A's subscriptions: the first thing B gets is the marker it asked for.
            let marker = unique("taken/marker");
            if v5 {
                b.send_ok(&enc::subscribe_v5(1, &Props::new(), &[(&marker, 0)]));
            } else {
                b.send_ok(&enc::subscribe(1, &[(&marker, 0)]));
            }
            b.expect_kind(kind::SUBACK, LONG);
            let (mut publisher, _) = RawClient::connect311(port, &unique("taken-pub"), true, 60);
            publisher.send_ok(&Publish::new(&topic, "old subscription").encode());
            publisher.send_ok(&Publish::new(&marker, "marker").encode());
            let got = b.expect_kind(kind::PUBLISH, LONG);
            let got = if v5 {
                crate::common::dec::decode_publish(&got).payload
            } else {
                got.publish().payload
            };
            assert_eq!(
                got, b"marker",
                "v5={v5}: B got a message of A's subscription"
            );
        }
    });
}

/// A 5.0 PUBREC with an error reason code ends that QoS 2 flow (MQTT-4.3.3): no PUBREL, and its
/// packet id and in-flight slot are free, so the next message comes (Receive Maximum 1).
#[test]
fn a_refusing_pubrec_ends_the_qos2_flow_and_the_next_message_comes() {
    run_bounded(secs(30), || {
        let broker = Broker::start(&[]);
        let topic = unique("pubrec/t");
        let mut sub = V5::connect_with(
            broker.port,
            Connect::v5(unique("pubrec-sub")).props(Props::new().u16(p::RECEIVE_MAXIMUM, 1)),
        );
        sub.auto_ack = false;
        sub.sub_ok(&topic, 2);
        let mut publisher = V5::connect(broker.port, &unique("pubrec-pub"), true);
        publisher.publish(Publish::new(&topic, "refused").qos(2));
        publisher.publish(Publish::new(&topic, "next").qos(2));
        let first = sub.expect_pub(LONG);
        assert_eq!(first.payload, b"refused");
        // 0x80: unspecified error.
        sub.send_ok(&ack(0x50, first.pkid, 0x80));
        let next = sub.conn.expect_packet(LONG, "the next PUBLISH");
        assert_eq!(
            next.kind(),
            kind::PUBLISH,
            "after a refusing PUBREC: {next:?} (a PUBREL for it?)"
        );
        let next = crate::common::dec::decode_publish(&next);
        assert_eq!(next.payload, b"next");
        assert_ne!(next.pkid, 0);
    });
}

/// A message larger than the client's Maximum Packet Size is not sent to it (MQTT-3.1.2-24),
/// and is counted; the messages after it still come.
#[test]
fn a_message_over_the_clients_maximum_packet_size_is_skipped_and_counted() {
    run_bounded(secs(30), || {
        let broker = Broker::start(&["--sys-interval", "1"]);
        let topic = "mps";
        let mut sub = V5::connect_with(
            broker.port,
            Connect::v5(unique("mps-sub")).props(Props::new().u32(p::MAXIMUM_PACKET_SIZE, 20)),
        );
        sub.sub_ok(topic, 1);
        let mut publisher = V5::connect(broker.port, &unique("mps-pub"), true);
        publisher.publish(Publish::new(topic, "x".repeat(100)).qos(1));
        publisher.publish(Publish::new(topic, "small").qos(1));
        let got = sub.expect_pub(LONG);
        assert_eq!(got.payload, b"small");
        // The same, when the client publishes to itself (QoS 2 subscription).
        let mut own = V5::connect_with(
            broker.port,
            Connect::v5(unique("mps-own")).props(Props::new().u32(p::MAXIMUM_PACKET_SIZE, 20)),
        );
        own.sub_ok("mps/own", 2);
        own.publish(Publish::new("mps/own", "x".repeat(100)).qos(1));
        own.publish(Publish::new("mps/own", "small").qos(1));
        let got = own.expect_pub(LONG);
        assert_eq!(got.payload, b"small");
        // And when both were queued while the client was away.
        let away = unique("mps-away");
        let small = || Connect::v5(&away).clean(false).expiry(600);
        let mut sub = V5::connect_with(broker.port, small());
        sub.sub_ok("mps/away", 1);
        sub.disconnect();
        publisher.publish(Publish::new("mps/away", "x".repeat(100)).qos(1));
        publisher.publish(Publish::new("mps/away", "small").qos(1));
        let mut sub = V5::connect_with(
            broker.port,
            small().props(
                Props::new()
                    .u32(p::SESSION_EXPIRY, 600)
                    .u32(p::MAXIMUM_PACKET_SIZE, 20),
            ),
        );
        let got = sub.expect_pub(LONG);
        assert_eq!(got.payload, b"small");
        broker.sys_figure(
            "$SYS/broker/publish/messages/dropped/too_large",
            LONG,
            |n| n >= 1,
        );
    });
}

/// A Mosquitto bridge connects with the protocol level's top bit set (0x84 for 3.1.1, 0x83 for
/// 3.1: its `try_private`) and expects no echo of its own messages and the retain flag as
/// published.
#[test]
fn a_mosquitto_bridge_connect_is_accepted_with_no_local_and_retain_as_published() {
    run_bounded(secs(30), || {
        let broker = Broker::start(&[]);
        let port = broker.port;
        for (name, level) in [(&b"MQTT"[..], 0x84), (&b"MQIsdp"[..], 0x83)] {
            let prefix = unique("bridge");
            let bridge_connect = Connect::v311(unique("bridge")).protocol(name, level);
            let (mut bridge, bytes) = connack(port, &bridge_connect);
            assert_eq!(bytes, [0x20, 0x02, 0x00, 0x00], "level {level:#x} accepted");
            assert_eq!(
                bridge.subscribe(1, &[(&format!("{prefix}/#"), 1)]),
                [1],
                "level {level:#x}"
            );
            // Its own message does not come back; another client's does, retained as sent.
            bridge.publish(Publish::new(format!("{prefix}/own"), "own").qos(1).pkid(1));
            let (mut other, _) = RawClient::connect311(port, &unique("bridge-peer"), true, 60);
            other.publish(
                Publish::new(format!("{prefix}/other"), "other")
                    .qos(1)
                    .pkid(1)
                    .retain(true),
            );
            let got = bridge.next_publish(LONG);
            assert_eq!(
                got.text(),
                "other",
                "level {level:#x}: its own message echoed"
            );
            assert!(got.retain, "level {level:#x}: retain as published");
        }
    });
}

/// Retained messages matching one subscription come in topic-tree order: a level's own message
/// before the levels below it, sibling levels in byte order; the same for every subscriber,
/// whatever order they were published in.
#[test]
fn retained_messages_come_in_topic_tree_order() {
    run_bounded(secs(30), || {
        let broker = Broker::start_sharded(&[]);
        let root = unique("tree");
        let (mut publisher, _) = RawClient::connect311(broker.port, &unique("tree-pub"), true, 60);
        for (n, leaf) in ["/c", "/a/x", "/b", "", "/a", "/a/a", "/B"]
            .iter()
            .enumerate()
        {
            publisher.publish(
                Publish::new(format!("{root}{leaf}"), format!("m{leaf}"))
                    .qos(1)
                    .pkid(n as u16 + 1)
                    .retain(true),
            );
        }
        let want = ["m", "m/B", "m/a", "m/a/a", "m/a/x", "m/b", "m/c"];
        for shard in 0..crate::common::SHARDS {
            let id = crate::common::client_id_on_shard("tree-sub", shard, crate::common::SHARDS);
            let (mut sub, _) = RawClient::connect311(broker.port, &id, true, 60);
            assert_eq!(sub.subscribe(1, &[(&format!("{root}/#"), 0)]), [0]);
            let got: Vec<String> = (0..want.len())
                .map(|_| sub.next_publish(LONG).text())
                .collect();
            assert_eq!(got, want, "subscriber on shard {shard}");
        }
    });
}

/// A 5.0 shared subscription at QoS 0 with members on both shards: each message goes to one
/// member, none is lost.
#[test]
fn a_qos0_shared_group_with_members_on_both_shards_gets_each_message_once() {
    run_bounded(secs(60), || {
        use crate::common::{client_id_on_shard, SHARDS};
        let broker = Broker::start_sharded(&[]);
        let group = format!("$share/{}/shared/q0", unique("g"));
        let mut members: Vec<V5> = (0..SHARDS)
            .map(|shard| {
                let id = client_id_on_shard(&unique("member"), shard, SHARDS);
                let mut m = V5::connect(broker.port, &id, true);
                m.sub_ok(&group, 0);
                m
            })
            .collect();
        let mut publisher = V5::connect(broker.port, &unique("q0-pub"), true);
        const N: usize = 40;
        for n in 0..N {
            publisher.publish(Publish::new("shared/q0", n.to_string()));
        }
        // A QoS 1 marker to each member's shard would need a filter of its own: instead read
        // until every message has come (each at most once).
        let mut got = std::collections::BTreeMap::new();
        let deadline = std::time::Instant::now() + LONG;
        while got.len() < N && std::time::Instant::now() < deadline {
            for (i, m) in members.iter_mut().enumerate() {
                while let Some(p) = m.try_pub(std::time::Duration::from_millis(100)) {
                    let n: usize = p.text().parse().unwrap();
                    assert!(got.insert(n, i).is_none(), "message {n} came twice");
                }
            }
        }
        assert_eq!(got.len(), N, "messages that came: {got:?}");
    });
}
