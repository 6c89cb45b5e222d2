//! Deterministic tests of the broker state machine: packets in, bytes out, a fake clock.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::*;
use crate::harness::{connect_packet, subscribe_packet, Cluster};
use crate::protocol::*;

struct Harness {
    broker: Broker,
    now: Instant,
}

impl Harness {
    fn new() -> Harness {
        Harness::with(0, 1)
    }

    fn with(shard: usize, shards: usize) -> Harness {
        let now = Instant::now();
        Harness {
            broker: Broker::new(shard, shards, Limits::default(), now),
            now,
        }
    }

    fn connect(&mut self, client_id: &str, clean: bool, version: ProtocolVersion) -> ConnId {
        self.connect_with(client_id, clean, version, None, 0)
    }

    fn connect_with(
        &mut self,
        client_id: &str,
        clean: bool,
        version: ProtocolVersion,
        will: Option<Will>,
        keep_alive: u16,
    ) -> ConnId {
        let id = self.broker.open(self.now);
        let connect = Connect {
            keep_alive,
            will,
            ..connect_packet(client_id, version, clean)
        };
        self.send(id, Packet::Connect(Box::new(connect)));
        id
    }

    fn send(&mut self, id: ConnId, packet: Packet) {
        self.broker.handle(id, packet, self.now);
    }

    /// Everything written to `id` so far, decoded, with the retained messages that the
    /// shell's background steps would send meanwhile.
    fn received(&mut self, id: ConnId) -> Vec<Packet> {
        let version = self.broker.version(id);
        let decoder = Decoder::new(version, MAX_PACKET_SIZE);
        let mut packets = Vec::new();
        loop {
            while self.broker.retained_step(self.now) {}
            let Some(out) = self.broker.take_output(id) else {
                return packets;
            };
            let n = out.bytes.len();
            self.broker.output_written(id, n, self.now);
            let mut buf = out.bytes;
            while let Some(p) = decoder.decode(&mut buf).unwrap() {
                packets.push(p);
            }
            if n == 0 && !self.broker.has_retained_work() {
                return packets;
            }
        }
    }

    fn subscribe(&mut self, id: ConnId, filter: &str, qos: QoS) {
        self.send(id, subscribe_packet(filter, qos));
    }

    fn publish(
        &mut self,
        id: ConnId,
        topic: &str,
        payload: &'static [u8],
        qos: QoS,
        packet_id: u16,
        retain: bool,
    ) {
        self.send(
            id,
            Packet::Publish({
                let mut publish = Publish::new(topic, payload).with_qos(qos, packet_id);
                publish.retain = retain;
                publish
            }),
        );
    }

    fn is_closing(&self, id: ConnId) -> bool {
        self.broker.is_closing(id)
    }
}

fn publish_packet(topic: &str, payload: &'static [u8], qos: QoS, packet_id: u16) -> Packet {
    Packet::Publish(Publish::new(topic, payload).with_qos(qos, packet_id))
}

fn unsubscribe_packet(filter: &str) -> Packet {
    Packet::Unsubscribe(Unsubscribe {
        packet_id: 5,
        filters: vec![filter.into()],
        ..Default::default()
    })
}

fn publishes(packets: &[Packet]) -> Vec<&Publish> {
    packets
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p),
            _ => None,
        })
        .collect()
}

fn connack(packets: &[Packet]) -> &ConnAck {
    match &packets[0] {
        Packet::ConnAck(c) => c,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

#[test]
fn connack_session_present_and_empty_client_ids() {
    let mut h = Harness::new();
    let c = h.connect("a", false, V4);
    assert!(!connack(&h.received(c)).session_present);
    h.broker.closed(c, h.now);
    let c = h.connect("a", false, V4);
    assert!(connack(&h.received(c)).session_present);
    // Clean session discards it.
    h.broker.closed(c, h.now);
    let c = h.connect("a", true, V4);
    assert!(!connack(&h.received(c)).session_present);

    let c = h.connect("", false, V4);
    assert_eq!(
        connack(&h.received(c)).code,
        ReasonCode::ClientIdentifierNotValid
    );
    assert!(h.is_closing(c));
    let c = h.connect("", true, V4);
    assert_eq!(connack(&h.received(c)).code, ReasonCode::Success);
    let c = h.connect("", true, V5);
    let ack = h.received(c);
    let assigned = connack(&ack)
        .properties
        .assigned_client_identifier
        .clone()
        .unwrap();
    assert_eq!(crate::core::home_shard(assigned.as_bytes(), 1), 0);
}

#[test]
fn first_packet_must_be_connect_and_only_once() {
    let mut h = Harness::new();
    let c = h.broker.open(h.now);
    h.send(c, Packet::PingReq);
    assert!(h.is_closing(c));
    assert!(h.received(c).is_empty());
    let c = h.connect("x", true, V5);
    h.received(c);
    h.send(
        c,
        Packet::Connect(Box::new(Connect {
            version: V5,
            clean_start: true,
            keep_alive: 0,
            client_id: "x".into(),
            will: None,
            username: None,
            password: None,
            properties: Default::default(),
            bridge: false,
        })),
    );
    assert!(h.is_closing(c));
    assert_eq!(
        h.received(c),
        vec![Packet::Disconnect(Disconnect::new(
            ReasonCode::ProtocolError
        ))]
    );
}

#[test]
fn qos_is_the_minimum_and_overlaps_deliver_once_at_the_highest() {
    let mut h = Harness::new();
    let sub = h.connect("sub", true, V4);
    h.subscribe(sub, "a/+", QoS::AtMostOnce);
    h.subscribe(sub, "a/#", QoS::ExactlyOnce);
    h.received(sub);
    let publisher = h.connect("pub", true, V4);
    h.publish(publisher, "a/b", b"x", QoS::AtLeastOnce, 9, false);
    assert_eq!(h.received(publisher)[1..], [Packet::PubAck(Ack::new(9))]);
    let got = h.received(sub);
    let got = publishes(&got);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].qos, QoS::AtLeastOnce);
    assert!(!got[0].retain);
}

#[test]
fn qos2_inbound_duplicate_is_routed_once() {
    let mut h = Harness::new();
    let sub = h.connect("sub", true, V4);
    h.subscribe(sub, "t", QoS::ExactlyOnce);
    h.received(sub);
    let p = h.connect("pub", true, V4);
    h.publish(p, "t", b"once", QoS::ExactlyOnce, 3, false);
    h.publish(p, "t", b"once", QoS::ExactlyOnce, 3, false);
    assert_eq!(
        h.received(p)[1..],
        [Packet::PubRec(Ack::new(3)), Packet::PubRec(Ack::new(3))]
    );
    h.send(p, Packet::PubRel(Ack::new(3)));
    assert_eq!(h.received(p), vec![Packet::PubComp(Ack::new(3))]);
    assert_eq!(publishes(&h.received(sub)).len(), 1);
}

#[test]
fn persistent_session_queues_while_offline_and_redelivers_with_dup() {
    let mut h = Harness::new();
    let sub = h.connect("sub", false, V4);
    h.subscribe(sub, "t", QoS::AtLeastOnce);
    h.received(sub);
    let p = h.connect("pub", true, V4);
    h.publish(p, "t", b"1", QoS::AtLeastOnce, 1, false);
    // Sent but not acknowledged, then the subscriber goes away.
    assert_eq!(publishes(&h.received(sub)).len(), 1);
    h.broker.closed(sub, h.now);
    h.publish(p, "t", b"2", QoS::AtLeastOnce, 2, false);
    h.publish(p, "t", b"3", QoS::AtMostOnce, 0, false);
    let sub = h.connect("sub", false, V4);
    let got = h.received(sub);
    assert!(connack(&got).session_present);
    let got: Vec<_> = publishes(&got)
        .iter()
        .map(|p| (p.content.payload_bytes(), p.dup))
        .collect();
    assert_eq!(
        got,
        vec![
            (Bytes::from_static(b"1"), true),
            (Bytes::from_static(b"2"), false)
        ]
    );
    assert_eq!(h.broker.counters.dropped_offline_qos0, 1);
}

#[test]
fn takeover_closes_the_old_connection_and_publishes_its_will() {
    let mut h = Harness::new();
    let watcher = h.connect("w", true, V4);
    h.subscribe(watcher, "will", QoS::AtMostOnce);
    h.received(watcher);
    let will = Will {
        topic: "will".into(),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
    };
    // A session that outlives its connection (a Session Expiry Interval): a takeover resumes
    // it (one that ends with its connection is not, see `conformance`).
    let old = h.broker.open(h.now);
    let mut connect = Connect {
        will: Some(will),
        ..connect_packet("c", V5, false)
    };
    connect.properties.session_expiry_interval = Some(60);
    h.send(old, Packet::Connect(Box::new(connect)));
    h.received(old);
    let new = h.connect("c", false, V5);
    assert!(h.is_closing(old));
    assert_eq!(
        h.received(old),
        vec![Packet::Disconnect(Disconnect::new(
            ReasonCode::SessionTakenOver
        ))]
    );
    assert!(connack(&h.received(new)).session_present);
    assert_eq!(
        publishes(&h.received(watcher))[0].payload(),
        Bytes::from_static(b"gone")
    );
    // The old socket's close does not end the session now owned by the new connection.
    h.broker.closed(old, h.now);
    assert_eq!(h.broker.session_count(), 2);
}

#[test]
fn will_on_keepalive_expiry_but_not_after_disconnect() {
    let mut h = Harness::new();
    let watcher = h.connect("w", true, V4);
    h.subscribe(watcher, "will/#", QoS::AtLeastOnce);
    h.received(watcher);
    let will = |t: &'static str| Will {
        topic: t.into(),
        payload: Bytes::from_static(b"bye"),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: Default::default(),
    };
    let polite = h.connect_with("polite", true, V4, Some(will("will/polite")), 10);
    h.send(polite, Packet::Disconnect(Disconnect::default()));
    h.broker.closed(polite, h.now);
    let silent = h.connect_with("silent", true, V4, Some(will("will/silent")), 2);
    h.now += Duration::from_millis(2900);
    h.broker.tick(h.now);
    assert!(!h.is_closing(silent), "1.5 x keep alive has not passed");
    h.now += Duration::from_millis(200);
    h.broker.tick(h.now);
    assert!(h.is_closing(silent));
    h.broker.closed(silent, h.now);
    let got = h.received(watcher);
    let topics: Vec<_> = publishes(&got)
        .iter()
        .map(|p| p.topic().to_string())
        .collect();
    assert_eq!(topics, vec!["will/silent"]);
    // The will was retained: a new subscriber gets it with RETAIN set.
    let late = h.connect("late", true, V4);
    h.subscribe(late, "will/+", QoS::AtLeastOnce);
    let got = h.received(late);
    let got = publishes(&got);
    assert_eq!((got.len(), got[0].retain), (1, true));
}

#[test]
fn retained_store_replace_delete() {
    let mut h = Harness::new();
    let p = h.connect("p", true, V4);
    h.publish(p, "r", b"1", QoS::AtMostOnce, 0, true);
    h.publish(p, "r", b"2", QoS::AtMostOnce, 0, true);
    let s = h.connect("s", true, V4);
    h.subscribe(s, "r", QoS::AtMostOnce);
    let got = h.received(s);
    assert_eq!(
        publishes(&got)
            .iter()
            .map(|p| p.content.payload_bytes())
            .collect::<Vec<_>>(),
        vec![Bytes::from_static(b"2")]
    );
    h.publish(p, "r", b"", QoS::AtMostOnce, 0, true);
    let s2 = h.connect("s2", true, V4);
    h.subscribe(s2, "r", QoS::AtMostOnce);
    assert!(publishes(&h.received(s2)).is_empty());
}

#[test]
fn dollar_topics_and_unsubscribe() {
    let mut h = Harness::new();
    let s = h.connect("s", true, V4);
    h.subscribe(s, "#", QoS::AtMostOnce);
    h.received(s);
    let p = h.connect("p", true, V4);
    h.publish(p, "$app/x", b"1", QoS::AtMostOnce, 0, false);
    h.publish(p, "a", b"2", QoS::AtMostOnce, 0, false);
    assert_eq!(publishes(&h.received(s)).len(), 1);
    h.send(
        s,
        Packet::Unsubscribe(Unsubscribe {
            packet_id: 4,
            filters: vec!["#".into()],
            ..Default::default()
        }),
    );
    assert_eq!(
        h.received(s),
        vec![Packet::UnsubAck(UnsubAck {
            packet_id: 4,
            ..Default::default()
        })]
    );
    h.publish(p, "a", b"3", QoS::AtMostOnce, 0, false);
    assert!(h.received(s).is_empty());
}

#[test]
fn cross_shard_suback_waits_for_route_acks_then_messages_flow() {
    let mut c = Cluster::new(2, Limits::default());
    let sub = c.connect_on(1, connect_packet("sub", V4, true));
    c.packets(sub);
    c.subscribe(sub, "t/#", QoS::AtLeastOnce);
    assert!(c.packets(sub).is_empty(), "SUBACK waits for shard 0");
    c.exchange(); // the route to shard 0, and its ack back
    c.exchange(); // the ack in on shard 1
    assert!(matches!(c.packets(sub)[..], [Packet::SubAck(_)]));
    let p = c.connect_on(0, connect_packet("pub", V4, true));
    c.send(p, publish_packet("t/x", b"hi", QoS::AtLeastOnce, 1));
    c.exchange();
    assert_eq!(
        publishes(&c.packets(sub))[0].payload(),
        Bytes::from_static(b"hi")
    );
}

#[test]
fn decode_errors_get_the_right_reaction() {
    let mut h = Harness::new();
    let c = h.broker.open(h.now);
    h.broker
        .decode_failed(c, &DecodeError::UnsupportedProtocol { level: 9 });
    let mut out = h.broker.take_output(c).unwrap();
    assert_eq!(&out.bytes.split()[..], b"\x20\x02\x00\x01");
    assert!(out.close);
    let c = h.connect("v5", true, V5);
    h.received(c);
    h.broker
        .decode_failed(c, &DecodeError::PacketTooLarge { size: 10, max: 5 });
    assert_eq!(
        h.received(c),
        vec![Packet::Disconnect(Disconnect::new(
            ReasonCode::PacketTooLarge
        ))]
    );
    let _ = BytesMut::new();
}

// ---- MQTT 5.0 ----------------------------------------------------------------------------

impl Harness {
    fn connect_v5(
        &mut self,
        client_id: &str,
        clean: bool,
        properties: PropertyValues,
        will: Option<Will>,
    ) -> ConnId {
        let id = self.broker.open(self.now);
        let connect = Connect {
            will,
            properties: properties.into(),
            ..connect_packet(client_id, V5, clean)
        };
        self.send(id, Packet::Connect(Box::new(connect)));
        id
    }

    fn subscribe_with(
        &mut self,
        id: ConnId,
        filter: &str,
        options: SubscriptionOptions,
        sub_id: Option<u32>,
    ) {
        self.send(id, subscribe_v5_packet(filter, options, sub_id));
    }

    fn publish_v5(
        &mut self,
        id: ConnId,
        topic: &str,
        payload: &'static [u8],
        qos: QoS,
        properties: PropertyValues,
    ) {
        self.send(
            id,
            Packet::Publish({
                let packet_id = if qos == QoS::AtMostOnce { 0 } else { 7 };
                let mut publish = Publish::new(topic, payload).with_qos(qos, packet_id);
                publish.properties = properties.into();
                publish
            }),
        );
    }
}

fn subscribe_v5_packet(filter: &str, options: SubscriptionOptions, sub_id: Option<u32>) -> Packet {
    let properties = PropertyValues {
        subscription_identifiers: sub_id.into_iter().collect(),
        ..Default::default()
    };
    Packet::Subscribe(Subscribe {
        packet_id: 2,
        properties: properties.into(),
        filters: vec![SubscribeFilter {
            filter: filter.into(),
            options,
        }],
    })
}

fn qos1() -> SubscriptionOptions {
    SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        ..Default::default()
    }
}

#[test]
fn shared_group_gets_each_message_once_and_round_robin_spreads_them() {
    let mut h = Harness::new();
    let a = h.connect_v5("a", true, Default::default(), None);
    let b = h.connect_v5("b", true, Default::default(), None);
    let plain = h.connect_v5("plain", true, Default::default(), None);
    h.subscribe_with(a, "$share/g/t/+", qos1(), None);
    h.subscribe_with(b, "$share/g/t/+", qos1(), None);
    h.subscribe_with(plain, "t/#", qos1(), None);
    for c in [a, b, plain] {
        h.received(c);
    }
    let p = h.connect_v5("p", true, Default::default(), None);
    for _ in 0..10 {
        h.publish_v5(p, "t/x", b"m", QoS::AtLeastOnce, Default::default());
    }
    let (got_a, got_b) = (
        publishes(&h.received(a)).len(),
        publishes(&h.received(b)).len(),
    );
    assert_eq!(got_a + got_b, 10, "each message to exactly one member");
    assert!(
        got_a > 0 && got_b > 0,
        "round robin uses both members: {got_a} / {got_b}"
    );
    assert_eq!(publishes(&h.received(plain)).len(), 10);
}

#[test]
fn a_leaving_shared_member_hands_unacknowledged_messages_to_another() {
    let mut h = Harness::new();
    let a = h.connect_v5("a", true, Default::default(), None);
    h.subscribe_with(a, "$share/g/t", qos1(), None);
    h.received(a);
    let p = h.connect_v5("p", true, Default::default(), None);
    for _ in 0..4 {
        h.publish_v5(p, "t", b"m", QoS::AtLeastOnce, Default::default());
    }
    assert_eq!(
        publishes(&h.received(a)).len(),
        4,
        "a gets all while alone; it acks none"
    );
    let b = h.connect_v5("b", true, Default::default(), None);
    h.subscribe_with(b, "$share/g/t", qos1(), None);
    h.received(b);
    h.broker.closed(a, h.now);
    assert_eq!(
        publishes(&h.received(b)).len(),
        4,
        "a's unacknowledged messages moved to b"
    );
}

#[test]
fn shared_group_across_shards_delivers_once() {
    let mut c = Cluster::new(2, Limits::default());
    let a = c.connect_on(0, connect_packet("a", V5, true));
    let b = c.connect_on(1, connect_packet("b", V5, true));
    for member in [a, b] {
        c.send(member, subscribe_v5_packet("$share/g/t", qos1(), None));
    }
    c.settle();
    c.packets(a);
    c.packets(b);
    let p = c.connect_on(0, connect_packet("p", V5, true));
    for _ in 0..6 {
        c.send(p, publish_packet("t", b"m", QoS::AtLeastOnce, 7));
    }
    c.settle();
    let (got_a, got_b) = (
        publishes(&c.packets(a)).len(),
        publishes(&c.packets(b)).len(),
    );
    assert_eq!(got_a + got_b, 6);
    assert!(got_a > 0 && got_b > 0, "{got_a} / {got_b}");
}

#[test]
fn topic_aliases_inbound_and_outbound() {
    let mut h = Harness::new();
    let sub = h.connect_v5(
        "s",
        true,
        PropertyValues {
            topic_alias_maximum: Some(1),
            ..Default::default()
        },
        None,
    );
    h.subscribe_with(sub, "#", qos1(), None);
    h.received(sub);
    let p = h.connect_v5("p", true, Default::default(), None);
    let alias = |n| PropertyValues {
        topic_alias: Some(n),
        ..Default::default()
    };
    h.publish_v5(p, "long/topic", b"1", QoS::AtMostOnce, alias(3));
    h.publish_v5(p, "", b"2", QoS::AtMostOnce, alias(3));
    h.publish_v5(p, "other", b"3", QoS::AtMostOnce, Default::default());
    let got = h.received(sub);
    let got: Vec<_> = publishes(&got)
        .iter()
        .map(|p| (p.topic().to_string(), p.properties.topic_alias))
        .collect();
    // One alias allowed: set, used, then replaced by the next topic.
    assert_eq!(
        got,
        vec![
            ("long/topic".into(), Some(1)),
            ("".into(), Some(1)),
            ("other".into(), Some(1))
        ]
    );
    // Unknown alias, then one above our maximum.
    h.publish_v5(p, "", b"x", QoS::AtMostOnce, alias(5));
    assert!(h.is_closing(p));
    let p2 = h.connect_v5("p2", true, Default::default(), None);
    h.received(p2);
    h.publish_v5(p2, "t", b"x", QoS::AtMostOnce, alias(65));
    assert_eq!(
        h.received(p2),
        vec![Packet::Disconnect(Disconnect::new(
            ReasonCode::TopicAliasInvalid
        ))]
    );
}

#[test]
fn session_expiry_keeps_then_ends_the_session() {
    let mut h = Harness::new();
    let expiry = PropertyValues {
        session_expiry_interval: Some(10),
        ..Default::default()
    };
    let c = h.connect_v5("c", true, expiry.clone(), None);
    h.subscribe_with(c, "t", qos1(), None);
    h.broker.closed(c, h.now);
    let p = h.connect_v5("p", true, Default::default(), None);
    h.publish_v5(p, "t", b"queued", QoS::AtLeastOnce, Default::default());
    h.now += Duration::from_secs(5);
    h.broker.tick(h.now);
    let c = h.connect_v5("c", false, expiry.clone(), None);
    let got = h.received(c);
    assert!(connack(&got).session_present);
    assert_eq!(publishes(&got).len(), 1);
    h.broker.closed(c, h.now);
    h.now += Duration::from_secs(11);
    h.broker.tick(h.now);
    let c = h.connect_v5("c", false, expiry, None);
    assert!(!connack(&h.received(c)).session_present, "expired");
}

#[test]
fn message_expiry_drops_stale_and_sends_the_remaining_interval() {
    let mut h = Harness::new();
    let expiry = PropertyValues {
        session_expiry_interval: Some(100),
        ..Default::default()
    };
    let c = h.connect_v5("c", true, expiry.clone(), None);
    h.subscribe_with(c, "t", qos1(), None);
    h.broker.closed(c, h.now);
    let p = h.connect_v5("p", true, Default::default(), None);
    let ttl = |s| PropertyValues {
        message_expiry_interval: Some(s),
        ..Default::default()
    };
    h.publish_v5(p, "t", b"short", QoS::AtLeastOnce, ttl(2));
    h.publish_v5(p, "t", b"long", QoS::AtLeastOnce, ttl(30));
    h.now += Duration::from_secs(10);
    let c = h.connect_v5("c", false, expiry, None);
    let got = h.received(c);
    let got = publishes(&got);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload(), b"long");
    assert_eq!(got[0].properties.message_expiry_interval, Some(20));
    assert_eq!(h.broker.counters.dropped_expired, 1);
}

#[test]
fn will_delay_is_cancelled_by_a_reconnect_and_published_otherwise() {
    let mut h = Harness::new();
    let w = h.connect_v5("w", true, Default::default(), None);
    h.subscribe_with(w, "will", qos1(), None);
    h.received(w);
    let will = Will {
        topic: "will".into(),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: PropertyValues {
            will_delay_interval: Some(5),
            ..Default::default()
        }
        .into(),
    };
    let expiry = PropertyValues {
        session_expiry_interval: Some(60),
        ..Default::default()
    };
    let c = h.connect_v5("c", true, expiry.clone(), Some(will.clone()));
    h.broker.closed(c, h.now);
    h.now += Duration::from_secs(3);
    h.broker.tick(h.now);
    let c = h.connect_v5("c", false, expiry.clone(), Some(will));
    h.now += Duration::from_secs(10);
    h.broker.tick(h.now);
    assert!(
        publishes(&h.received(w)).is_empty(),
        "reconnected within the delay"
    );
    h.broker.closed(c, h.now);
    h.now += Duration::from_secs(4);
    h.broker.tick(h.now);
    assert!(publishes(&h.received(w)).is_empty(), "delay not over");
    h.now += Duration::from_secs(2);
    h.broker.tick(h.now);
    assert_eq!(publishes(&h.received(w)).len(), 1);
}

#[test]
fn no_local_subscription_ids_and_no_matching_subscribers() {
    let mut h = Harness::new();
    let c = h.connect_v5("c", true, Default::default(), None);
    let no_local = SubscriptionOptions {
        no_local: true,
        ..qos1()
    };
    h.subscribe_with(c, "a/#", no_local, Some(1));
    h.subscribe_with(c, "a/+", qos1(), Some(2));
    h.received(c);
    let other = h.connect_v5("o", true, Default::default(), None);
    h.received(other);
    h.publish_v5(other, "a/b", b"x", QoS::AtLeastOnce, Default::default());
    let got = h.received(c);
    let got = publishes(&got);
    assert_eq!(got.len(), 1);
    let mut ids = got[0].properties.subscription_identifiers.clone();
    ids.sort();
    assert_eq!(ids, vec![1, 2]);
    // Its own publish matches only through "a/+" (No Local on "a/#").
    h.publish_v5(c, "a/b", b"own", QoS::AtMostOnce, Default::default());
    let got = h.received(c);
    assert_eq!(
        publishes(&got)[0].properties.subscription_identifiers,
        vec![2]
    );
    // Nobody subscribes to "z".
    h.publish_v5(other, "z", b"x", QoS::AtLeastOnce, Default::default());
    let acks = h.received(other);
    let Packet::PubAck(ack) = acks.last().unwrap() else {
        panic!("{acks:?}")
    };
    assert_eq!(ack.reason, ReasonCode::NoMatchingSubscribers);
}

#[test]
fn invalid_utf8_payload_and_capability_limits() {
    let mut h = Harness::new();
    h.broker = Broker::new(0, 1, Limits::default(), h.now).with_features(crate::core::Features {
        max_qos: QoS::AtLeastOnce,
        ..Default::default()
    });
    let c = h.connect_v5("c", true, Default::default(), None);
    let got = h.received(c);
    assert_eq!(connack(&got).properties.maximum_qos, Some(1));
    let utf8 = PropertyValues {
        payload_format_indicator: Some(1),
        ..Default::default()
    };
    h.publish_v5(c, "t", b"\xff\xfe", QoS::AtLeastOnce, utf8);
    let Packet::PubAck(ack) = &h.received(c)[0] else {
        panic!()
    };
    assert_eq!(ack.reason, ReasonCode::PayloadFormatInvalid);
    assert!(ack.properties.reason_string.is_some());
    h.subscribe_with(
        c,
        "t",
        SubscriptionOptions {
            qos: QoS::ExactlyOnce,
            ..Default::default()
        },
        None,
    );
    let Packet::SubAck(suback) = &h.received(c)[0] else {
        panic!()
    };
    assert_eq!(suback.codes, vec![ReasonCode::GrantedQoS1]);
    h.publish_v5(c, "t", b"x", QoS::ExactlyOnce, Default::default());
    assert_eq!(
        h.received(c),
        vec![Packet::Disconnect(Disconnect::new(
            ReasonCode::QoSNotSupported
        ))]
    );
}

#[test]
fn shutdown_tells_v5_clients_and_closes_everyone() {
    let mut h = Harness::new();
    let v5 = h.connect_v5("a", true, Default::default(), None);
    let v4 = h.connect("b", true, V4);
    h.received(v5);
    h.received(v4);
    h.broker.shutdown();
    assert_eq!(
        h.received(v5),
        vec![Packet::Disconnect(Disconnect::new(
            ReasonCode::ServerShuttingDown
        ))]
    );
    assert!(h.is_closing(v4) && h.is_closing(v5));
}

#[test]
fn v5_properties_pass_through_to_v5_and_are_left_out_for_3_1_1() {
    let mut h = Harness::new();
    let old = h.connect("old", true, V4);
    let new = h.connect_v5("new", true, Default::default(), None);
    h.subscribe(old, "t", QoS::AtMostOnce);
    h.subscribe_with(new, "t", SubscriptionOptions::default(), None);
    h.received(old);
    h.received(new);
    let p = h.connect_v5("p", true, Default::default(), None);
    let props = PropertyValues {
        response_topic: Some("reply/here".into()),
        correlation_data: Some(Bytes::from_static(b"42")),
        content_type: Some("text/plain".into()),
        user_properties: vec![("k".into(), "1".into()), ("k".into(), "2".into())],
        ..Default::default()
    };
    h.publish_v5(p, "t", b"x", QoS::AtMostOnce, props.clone());
    assert_eq!(publishes(&h.received(old)).len(), 1);
    let got = h.received(new);
    assert_eq!(*publishes(&got)[0].properties, props);
}

#[test]
fn a_message_published_before_a_subscription_is_not_delivered_to_it() {
    // The route to shard 1 was still there when the message left shard 0; by the time it
    // arrives, the subscription it finds is newer than the message.
    let mut c = Cluster::new(2, Limits::default());
    let sub = c.connect_on(1, connect_packet("sub", V4, true));
    c.subscribe(sub, "t", QoS::AtLeastOnce);
    c.settle();
    c.packets(sub);
    let p = c.connect_on(0, connect_packet("pub", V4, true));
    c.advance(Duration::from_millis(1));
    c.send(p, publish_packet("t", b"old", QoS::AtLeastOnce, 1));
    // Meanwhile the subscriber unsubscribes and subscribes again, a little later.
    c.advance(Duration::from_millis(1));
    c.send(sub, unsubscribe_packet("t"));
    c.subscribe(sub, "t", QoS::AtLeastOnce);
    c.settle();
    assert!(publishes(&c.packets(sub)).is_empty());
}

#[test]
fn a_kept_will_owns_its_topic_and_payload() {
    let mut h = Harness::new();
    // Topic and payload as the decoder gives them: slices of the CONNECT's read buffer.
    let read_buffer = Bytes::from(b"will/topicpayload".to_vec());
    let will = Will {
        topic: ByteString::try_from(read_buffer.slice(..10)).unwrap(),
        payload: read_buffer.slice(10..),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
    };
    let id = h.connect_with("c", true, V4, Some(will), 0);
    let kept = h.broker.conns[&id].will.as_ref().expect("will kept");
    assert_eq!(
        (&kept.topic[..], &kept.payload[..]),
        ("will/topic", &b"payload"[..])
    );
    let range = read_buffer.as_ptr_range();
    assert!(!range.contains(&kept.topic.as_bytes().as_ptr()));
    assert!(!range.contains(&kept.payload.as_ptr()));
}

#[test]
fn cross_shard_unsuback_waits_for_route_acks_then_publishers_see_no_subscribers() {
    let mut c = Cluster::new(2, Limits::default());
    let sub = c.connect_on(1, connect_packet("sub", V5, true));
    c.subscribe(sub, "t", QoS::AtMostOnce);
    c.settle();
    c.packets(sub);
    c.send(sub, unsubscribe_packet("t"));
    assert!(c.packets(sub).is_empty(), "UNSUBACK waits for shard 0");
    c.exchange();
    c.exchange();
    assert!(matches!(c.packets(sub)[..], [Packet::UnsubAck(_)]));
    // Shard 0 has dropped the route: a 5.0 publisher there hears "no matching subscribers".
    let p = c.connect_on(0, connect_packet("pub", V5, true));
    c.packets(p);
    c.send(p, publish_packet("t", b"x", QoS::AtLeastOnce, 1));
    let Packet::PubAck(ack) = &c.packets(p)[0] else {
        panic!("PUBACK expected");
    };
    assert_eq!(ack.reason, ReasonCode::NoMatchingSubscribers);
}

mod conformance;
mod deliveries;
mod flow;
mod hostile;
mod journal;
mod receive;
mod route_hints;
mod spill;
mod store_space;
