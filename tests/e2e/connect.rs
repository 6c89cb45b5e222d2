//! CONNECT / CONNACK in 3.1, 3.1.1 and 5.0, at the byte level: protocol level and name,
//! the first and a second CONNECT, empty client ids (refused, accepted, assigned), the 5.0
//! CONNACK properties and how the flags set them, Response Information, and session takeover
//! (the old connection closed, with reason 0x8E in 5.0).

use crate::common;
use crate::common::dec::{parse_connack_v5, prop_num, prop_str, PropValue};
use crate::common::enc::{self, kind, p, Connect, Props, Publish};
use crate::common::raw::{RawClient, LONG, SHORT};
use crate::common::v5::V5;
use crate::common::{client_id_on_shard, run_bounded, secs, Broker, SHARDS};

/// A CONNECT with an unsupported protocol level gets exactly CONNACK 0x01 (unacceptable
/// protocol version), then the connection is closed [MQTT-3.1.2-2].
#[test]
fn unsupported_protocol_level_gets_connack_0x01_and_close() {
    run_bounded(secs(60), || {
        let broker = Broker::start(&[]);
        for level in [2u8, 6, 0x7F] {
            let connect = Connect::v311("badlevel").protocol(b"MQTT", level).encode();
            let (mut c, first) = RawClient::connect_raw(broker.port, &connect);
            let first = first.unwrap_or_else(|e| panic!("level {level}: no CONNACK: {e:?}"));
            assert_eq!(
                first.bytes(),
                vec![0x20, 0x02, 0x00, 0x01],
                "level {level}: expected CONNACK rc 0x01"
            );
            c.expect_closed(SHORT, &format!("level {level}: close after CONNACK 0x01"));
        }
        broker.assert_alive();
    });
}

/// A wrong protocol name: the broker may answer CONNACK 0x01 or nothing, but must close the
/// connection and must not accept it [MQTT-3.1.2-1].
#[test]
fn bad_protocol_name_is_refused() {
    run_bounded(secs(60), || {
        let broker = Broker::start(&[]);
        for name in [&b"MQTX"[..], b"mqtt", b"HTTP", b"MQIsdpX"] {
            let connect = Connect::v311("badname").protocol(name, 4).encode();
            let mut c = RawClient::tcp(broker.port);
            let _ = c.send(&connect);
            let what = format!("protocol name {:?}", String::from_utf8_lossy(name));
            let got = c.expect_closed(SHORT, &what);
            assert!(
                got.is_empty()
                    || (got.len() == 1 && got[0].bytes() == vec![0x20, 0x02, 0x00, 0x01]),
                "{what}: only CONNACK 0x01 (or nothing) may precede the close, got {got:?}"
            );
        }
        broker.assert_alive();
    });
}

/// MQTT 3.1 ("MQIsdp", 3), 3.1.1 ("MQTT", 4) and 5 ("MQTT", 5) CONNECTs are accepted.
#[test]
fn all_three_protocol_versions_accepted() {
    run_bounded(secs(60), || {
        let broker = Broker::start(&[]);

        let v31 = Connect::v31("v31client").encode();
        let (mut c, ack) = RawClient::connect_raw(broker.port, &v31);
        assert_eq!(
            ack.expect("3.1 CONNACK").bytes(),
            vec![0x20, 0x02, 0x00, 0x00],
            "3.1 CONNACK"
        );
        c.ping();

        let (mut c, ack) =
            RawClient::connect_raw(broker.port, &Connect::v311("v311client").encode());
        assert_eq!(
            ack.expect("3.1.1 CONNACK").bytes(),
            vec![0x20, 0x02, 0x00, 0x00],
            "3.1.1 CONNACK"
        );
        c.ping();

        let (mut c, ack) = RawClient::connect_raw(broker.port, &Connect::v5("v5client").encode());
        let ack = ack.expect("v5 CONNACK");
        let (sp, rc, _props) = parse_connack_v5(&ack);
        assert!(!sp, "v5 clean start: session present must be 0");
        assert_eq!(rc, 0x00, "v5 CONNACK reason code: {ack:?}");
        c.ping();
    });
}

/// The first packet must be CONNECT; anything else closes the connection without an answer
/// [MQTT-3.1.0-1].
#[test]
fn first_packet_not_connect_closes() {
    run_bounded(secs(60), || {
        let broker = Broker::start(&[]);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("PINGREQ", enc::PINGREQ.to_vec()),
            ("PUBLISH", Publish::new(b"t", b"x").encode()),
            ("SUBSCRIBE", enc::subscribe(1, &[("t", 0)])),
            ("PUBACK", enc::puback(1)),
        ];
        for (name, bytes) in cases {
            let mut c = RawClient::tcp(broker.port);
            let _ = c.send(&bytes);
            let got = c.expect_closed(SHORT, &format!("{name} as first packet"));
            assert!(
                got.is_empty(),
                "{name} as first packet: broker answered {got:?}"
            );
        }
        broker.assert_alive();
        // The broker still accepts well-behaved clients.
        RawClient::connect311(broker.port, "after-bad-first", true, 60)
            .0
            .ping();
    });
}

/// A second CONNECT on a connection is a protocol violation: the connection is closed
/// [MQTT-3.1.0-2], without a second CONNACK.
#[test]
fn second_connect_closes() {
    run_bounded(secs(60), || {
        let broker = Broker::start(&[]);
        let (mut c, _) = RawClient::connect311(broker.port, "twice", true, 60);
        c.send_ok(&Connect::v311("twice").encode());
        let got = c.expect_closed(SHORT, "second CONNECT");
        assert!(
            got.iter().all(|p| p.kind() != kind::CONNACK),
            "no CONNACK for a second CONNECT, got {got:?}"
        );
        // The id is usable again afterwards.
        RawClient::connect311(broker.port, "twice", true, 60)
            .0
            .ping();
        broker.assert_alive();
    });
}

/// 3.1.1: an empty client id with clean session is accepted (the broker makes one up), and two
/// such clients do not take each other over.
#[test]
fn empty_client_id_with_clean_session_accepted_v311() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let (mut a, ack) = RawClient::connect_raw(broker.port, &Connect::v311("").encode());
        assert_eq!(ack.expect("CONNACK").bytes(), vec![0x20, 0x02, 0x00, 0x00]);
        let (mut b, ack) = RawClient::connect_raw(broker.port, &Connect::v311("").encode());
        assert_eq!(ack.expect("CONNACK").bytes(), vec![0x20, 0x02, 0x00, 0x00]);
        // Both are alive and each gets its own messages.
        a.ping();
        b.ping();
        a.subscribe_ok(1, &[("empty/a", 1)]);
        b.subscribe_ok(1, &[("empty/b", 1)]);
        b.publish(Publish::new("empty/a", b"to-a").qos(1).pkid(7));
        let m = a.next_publish(LONG);
        assert_eq!(
            (m.topic.as_str(), m.payload.as_slice()),
            ("empty/a", &b"to-a"[..])
        );
        a.ping();
        b.ping();
    });
}

/// 3.1.1: an empty client id with clean session = 0 is refused with CONNACK 0x02 (identifier
/// rejected), then closed [MQTT-3.1.3-8].
#[test]
fn empty_client_id_without_clean_session_rejected_v311() {
    run_bounded(secs(60), || {
        let broker = Broker::start(&[]);
        let (mut c, ack) =
            RawClient::connect_raw(broker.port, &Connect::v311("").clean(false).encode());
        assert_eq!(
            ack.expect("CONNACK").bytes(),
            vec![0x20, 0x02, 0x00, 0x02],
            "CONNACK rc 0x02"
        );
        c.expect_closed(SHORT, "after CONNACK 0x02");
    });
}

/// MQTT 5: an empty client id gets an Assigned Client Identifier (property 0x12) in CONNACK,
/// different for each connection.
#[test]
fn v5_empty_client_id_gets_assigned_identifier() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let mut ids = Vec::new();
        let mut conns = Vec::new();
        for _ in 0..3 {
            let (c, ack) = RawClient::connect_raw(broker.port, &Connect::v5("").encode());
            let ack = ack.expect("v5 CONNACK");
            let (sp, rc, props) = parse_connack_v5(&ack);
            assert_eq!(rc, 0, "v5 CONNACK reason code: {ack:?}");
            assert!(!sp, "session present with clean start");
            let assigned: Vec<&PropValue> = props
                .iter()
                .filter(|(id, _)| *id == 0x12)
                .map(|(_, v)| v)
                .collect();
            assert_eq!(
                assigned.len(),
                1,
                "exactly one Assigned Client Identifier: {props:?}"
            );
            match assigned[0] {
                PropValue::Str(s) => {
                    assert!(!s.is_empty(), "assigned client id is empty");
                    ids.push(s.clone());
                }
                other => panic!("Assigned Client Identifier is not a string: {other:?}"),
            }
            conns.push(c);
        }
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 3, "assigned client ids must differ: {ids:?}");
        for c in &mut conns {
            c.ping();
        }
    });
}

/// Defaults: Maximum Packet Size 1048576, Topic Alias Maximum 64, Receive Maximum 1024; no
/// Maximum QoS, no Retain / Wildcard / Subscription Identifier / Shared Available (all
/// supported), no Assigned Client Identifier (id given), no Server Keep Alive, no Response
/// Information (not requested).
#[test]
fn connack_properties_defaults() {
    run_bounded(secs(30), || {
        let broker = Broker::start_sharded(&[]);
        let c = V5::connect(broker.port, "props-default", true);
        let props = &c.connack_props;
        assert_eq!(
            prop_num(props, p::MAXIMUM_PACKET_SIZE),
            Some(1_048_576),
            "{props:?}"
        );
        assert_eq!(
            prop_num(props, p::TOPIC_ALIAS_MAXIMUM),
            Some(64),
            "{props:?}"
        );
        assert_eq!(prop_num(props, p::RECEIVE_MAXIMUM), Some(1024), "{props:?}");
        for absent in [
            p::MAXIMUM_QOS,
            p::RETAIN_AVAILABLE,
            p::WILDCARD_SUB_AVAILABLE,
            p::SUB_ID_AVAILABLE,
            p::SHARED_SUB_AVAILABLE,
            p::ASSIGNED_CLIENT_ID,
            p::SERVER_KEEP_ALIVE,
            p::RESPONSE_INFO,
        ] {
            assert_eq!(
                prop_num_or_str(props, absent),
                None,
                "property 0x{absent:02X} must be absent by default: {props:?}"
            );
        }
        for (id, _) in props {
            let n = props.iter().filter(|(j, _)| j == id).count();
            assert!(
                n == 1 || *id == p::USER_PROPERTY,
                "property 0x{id:02X} repeated: {props:?}"
            );
        }
    });
}

fn prop_num_or_str(props: &[(u8, common::dec::PropValue)], id: u8) -> Option<String> {
    common::dec::prop(props, id).map(|v| format!("{v:?}"))
}

/// Every flag shows up in CONNACK.
#[test]
fn connack_properties_follow_flags() {
    run_bounded(secs(30), || {
        let broker = Broker::start_sharded(&[
            "--topic-alias-maximum",
            "10",
            "--receive-maximum",
            "20",
            "--max-packet-size",
            "5000",
            "--max-qos",
            "1",
            "--no-retain",
            "--no-wildcard-subscriptions",
            "--no-subscription-identifiers",
            "--no-shared-subscriptions",
        ]);
        let c = V5::connect(broker.port, "props-flags", true);
        let props = &c.connack_props;
        let want = [
            (p::MAXIMUM_PACKET_SIZE, 5000),
            (p::TOPIC_ALIAS_MAXIMUM, 10),
            (p::RECEIVE_MAXIMUM, 20),
            (p::MAXIMUM_QOS, 1),
            (p::RETAIN_AVAILABLE, 0),
            (p::WILDCARD_SUB_AVAILABLE, 0),
            (p::SUB_ID_AVAILABLE, 0),
            (p::SHARED_SUB_AVAILABLE, 0),
        ];
        for (id, v) in want {
            assert_eq!(
                prop_num(props, id),
                Some(v),
                "property 0x{id:02X}: {props:?}"
            );
        }
        // --max-qos 0 as well.
        let broker0 = Broker::start_sharded(&["--max-qos", "0"]);
        let c = V5::connect(broker0.port, "props-qos0", true);
        assert_eq!(c.connack_num(p::MAXIMUM_QOS), Some(0));
    });
}

/// A 3.1.1 CONNACK stays 2 bytes whatever the v5 flags.
#[test]
fn v311_connack_unchanged_by_v5_flags() {
    run_bounded(secs(30), || {
        let broker =
            Broker::start_sharded(&["--max-qos", "1", "--no-retain", "--max-keepalive", "5"]);
        let (mut c, sp) = RawClient::connect311(broker.port, "v311-plain", true, 60);
        assert!(!sp);
        c.ping();
    });
}

/// Empty client id: Assigned Client Identifier present.
#[test]
fn assigned_client_identifier_for_empty_id() {
    run_bounded(secs(30), || {
        let broker = Broker::start_sharded(&[]);
        let c = V5::connect(broker.port, "", true);
        let id =
            prop_str(&c.connack_props, p::ASSIGNED_CLIENT_ID).expect("Assigned Client Identifier");
        assert!(!id.is_empty());
    });
}

/// Request Response Information = 1 -> Response Information "ringmq/response/<client id>";
/// = 0 or absent -> none.
#[test]
fn response_information_only_when_requested() {
    run_bounded(secs(30), || {
        let broker = Broker::start_sharded(&[]);
        let c = V5::connect_with(
            broker.port,
            Connect::v5("rri-yes").props(Props::new().byte(p::REQUEST_RESPONSE_INFO, 1)),
        );
        assert_eq!(
            prop_str(&c.connack_props, p::RESPONSE_INFO).as_deref(),
            Some("ringmq/response/rri-yes")
        );
        let c = V5::connect_with(
            broker.port,
            Connect::v5("rri-no").props(Props::new().byte(p::REQUEST_RESPONSE_INFO, 0)),
        );
        assert_eq!(prop_str(&c.connack_props, p::RESPONSE_INFO), None);
        let c = V5::connect(broker.port, "rri-absent", true);
        assert_eq!(prop_str(&c.connack_props, p::RESPONSE_INFO), None);
    });
}

/// A second connection with the same client id closes the first; the second keeps working.
/// Run repeatedly with 2 shards (the kernel picks the accepting shard, so some iterations put
/// the two connections on different shards). With clean session = 0 the subscription made on
/// the first connection survives into the second (session present = 1).
#[test]
fn takeover_closes_first_connection_repeatedly() {
    run_bounded(secs(120), || {
        let broker = Broker::start_sharded(&[]);
        for i in 0..12 {
            let id = format!("takeover-{i}");
            let persistent = i % 2 == 0;
            let (mut a, sp) = RawClient::connect311(broker.port, &id, !persistent, 60);
            assert!(!sp, "{id}: fresh session");
            let topic = format!("takeover/{i}");
            if persistent {
                a.subscribe_ok(1, &[(&topic, 1)]);
            }
            let (mut b, sp) = RawClient::connect311(broker.port, &id, !persistent, 60);
            assert_eq!(sp, persistent, "{id}: session present on takeover");
            a.expect_closed(SHORT, &format!("{id}: first connection after takeover"));
            b.ping();
            if persistent {
                // The subscription came along: a message published now reaches `b`.
                let (mut p, _) =
                    RawClient::connect311(broker.port, &format!("takeover-pub-{i}"), true, 60);
                p.publish(Publish::new(&topic, b"after-takeover").qos(1).pkid(1));
                let m = b.next_publish(LONG);
                assert_eq!(m.payload, b"after-takeover", "{id}");
                b.send_ok(&enc::puback(m.pkid));
            }
            b.ping();
        }
        broker.assert_alive();
    });
}

/// MQTT 5 takeover: the first connection is closed, optionally after a DISCONNECT whose reason
/// code must then be 0x8E (session taken over).
#[test]
fn v5_takeover_closes_first_connection() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        for i in 0..6 {
            let id = format!("v5-takeover-{i}");
            let (mut a, ack) = RawClient::connect_raw(broker.port, &Connect::v5(&id).encode());
            assert_eq!(parse_connack_v5(&ack.expect("CONNACK")).1, 0);
            let (mut b, ack) = RawClient::connect_raw(broker.port, &Connect::v5(&id).encode());
            assert_eq!(parse_connack_v5(&ack.expect("CONNACK")).1, 0);
            let got = a.expect_closed(SHORT, &format!("{id}: first v5 connection after takeover"));
            for p in &got {
                assert_eq!(
                    p.kind(),
                    kind::DISCONNECT,
                    "{id}: only DISCONNECT may precede the close: {got:?}"
                );
                assert_eq!(
                    p.body.first(),
                    Some(&0x8E),
                    "{id}: DISCONNECT reason code: {p:?}"
                );
            }
            b.ping();
        }
    });
}

/// Takeover: the old connection gets DISCONNECT 0x8E and is closed; repeated so that the two
/// connections land on different shards (the kernel spreads accepts) as well as the same one;
/// client ids homed on both shards. With a session the new connection gets session present.
#[test]
fn takeover_sends_0x8e_to_old_connection() {
    run_bounded(secs(90), || {
        let broker = Broker::start_sharded(&[]);
        for i in 0..8 {
            let id = client_id_on_shard(&format!("to-{i}"), i % SHARDS, SHARDS);
            let mut a = V5::connect_with(broker.port, Connect::v5(&id).expiry(60));
            a.sub_ok(&format!("to/{i}"), 1);
            let mut b = V5::connect_with(broker.port, Connect::v5(&id).clean(false).expiry(60));
            assert!(b.session_present, "{id}: session taken over");
            let (rc, _) =
                a.expect_disconnect(SHORT, &format!("{id}: old connection after takeover"));
            assert_eq!(rc, 0x8E, "{id}: Session taken over");
            // The subscription moved with the session.
            b.publish(Publish::new(format!("to/{i}"), b"still-here").qos(1));
            assert_eq!(b.expect_pub(LONG).text(), "still-here");
        }
    });
}
