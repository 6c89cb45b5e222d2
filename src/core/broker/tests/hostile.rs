//! What a hostile or careless client can make the broker do, and what bounds it: topic depth,
//! subscriptions, sessions, wills, the ACL on every path, stalled output.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::core::acl::AclFile;
use crate::core::auth::{AuthHandle, Authenticator};

impl Harness {
    fn configured(limits: Limits, features: Features) -> Harness {
        let now = Instant::now();
        Harness {
            broker: Broker::new(0, 1, limits, now).with_features(features),
            now,
        }
    }

    fn with_acl(mut self, acl: &str) -> Harness {
        let auth = Authenticator::new(None, true).with_acl(Some(AclFile::parse(acl).unwrap()));
        self.broker = self.broker.with_auth(Arc::new(AuthHandle::new(auth)));
        self
    }

    fn connect_full(&mut self, connect: Connect) -> ConnId {
        let id = self.broker.open(self.now);
        self.send(id, Packet::Connect(Box::new(connect)));
        id
    }

    fn subscribe_many(&mut self, id: ConnId, filters: &[&str]) -> Vec<ReasonCode> {
        self.send(id, subscribe_packet(filters));
        suback_codes(&self.received(id))
    }

    fn elapse(&mut self, d: Duration) {
        self.now += d;
        self.broker.tick(self.now);
    }
}

/// SUBSCRIBE (packet id 7) to each filter at QoS 1.
fn subscribe_packet(filters: &[&str]) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: 7,
        filters: filters
            .iter()
            .map(|f| SubscribeFilter {
                filter: (*f).into(),
                options: SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    ..Default::default()
                },
            })
            .collect(),
        ..Default::default()
    })
}

fn suback_codes(packets: &[Packet]) -> Vec<ReasonCode> {
    packets
        .iter()
        .find_map(|p| match p {
            Packet::SubAck(a) => Some(a.codes.clone()),
            _ => None,
        })
        .expect("a SUBACK")
}

fn disconnect_reason(packets: &[Packet]) -> Option<ReasonCode> {
    packets.iter().find_map(|p| match p {
        Packet::Disconnect(d) => Some(d.reason),
        _ => None,
    })
}

fn levels(n: usize) -> String {
    vec!["l"; n].join("/")
}

#[test]
fn topic_levels_are_capped_for_filters_and_names() {
    let limits = Limits {
        max_topic_levels: 8,
        ..Limits::default()
    };
    let mut h = Harness::configured(limits, Features::default());
    let v5 = h.connect("v5", true, V5);
    h.received(v5);
    let at_limit = levels(8);
    let beyond = levels(9);
    let far = "/".repeat(65_000);
    assert_eq!(
        h.subscribe_many(v5, &[&at_limit, &beyond, &far, "$share/g/l/l/l/l/l/l/l/l"]),
        [
            ReasonCode::GrantedQoS1,
            ReasonCode::TopicFilterInvalid,
            ReasonCode::TopicFilterInvalid,
            ReasonCode::GrantedQoS1,
        ]
    );
    let v4 = h.connect("v4", true, V4);
    h.received(v4);
    let codes = h.subscribe_many(v4, &[&beyond]);
    assert!(codes[0].is_error(), "3.1.1 gets a failure (0x80)");
    // A name at the limit is routed; one beyond it closes the connection (5.0: 0x90).
    h.publish(v4, &at_limit, b"ok", QoS::AtMostOnce, 0, false);
    assert_eq!(
        publishes(&h.received(v5)).len(),
        2,
        "through the plain and the shared subscription"
    );
    h.publish(v5, &beyond, b"deep", QoS::AtMostOnce, 0, false);
    assert_eq!(
        disconnect_reason(&h.received(v5)),
        Some(ReasonCode::TopicNameInvalid)
    );
    h.publish(v4, &far, b"deep", QoS::AtMostOnce, 0, false);
    assert!(h.is_closing(v4));
}

#[test]
fn a_filter_given_twice_in_one_subscribe_is_one_subscription_with_one_retained_copy() {
    let mut h = Harness::new();
    let p = h.connect("p", true, V4);
    h.publish(p, "r/1", b"kept", QoS::AtMostOnce, 0, true);
    let s = h.connect("s", true, V4);
    h.received(s);
    let codes = h.subscribe_many(s, &["r/+", "r/+", "r/#", "r/+"]);
    assert_eq!(codes.len(), 4, "one code per filter given");
    // The SUBACK came with them: ask again for what followed it.
    h.now += Duration::from_millis(1);
    h.publish(p, "r/1", b"live", QoS::AtMostOnce, 0, false);
    let got = h.received(s);
    let texts: Vec<&[u8]> = publishes(&got).iter().map(|p| p.payload()).collect();
    assert_eq!(
        texts,
        [&b"live"[..]],
        "one delivery for overlapping filters"
    );
}

#[test]
fn retained_for_duplicated_filters_is_sent_once() {
    let mut h = Harness::new();
    let p = h.connect("p", true, V4);
    h.publish(p, "r/1", b"kept", QoS::AtMostOnce, 0, true);
    let s = h.connect("s", true, V4);
    h.received(s);
    h.now += Duration::from_millis(1);
    h.send(s, subscribe_packet(&["r/+", "r/+", "r/+"]));
    let got = h.received(s);
    assert_eq!(suback_codes(&got).len(), 3);
    assert_eq!(publishes(&got).len(), 1, "the retained message once");
}

#[test]
fn subscriptions_per_session_are_capped() {
    let limits = Limits {
        max_subscriptions: 2,
        ..Limits::default()
    };
    let mut h = Harness::configured(limits, Features::default());
    let c = h.connect("c", true, V5);
    h.received(c);
    assert_eq!(
        h.subscribe_many(c, &["a", "b", "c"]),
        [
            ReasonCode::GrantedQoS1,
            ReasonCode::GrantedQoS1,
            ReasonCode::QuotaExceeded
        ]
    );
    assert_eq!(
        h.subscribe_many(c, &["a"]),
        [ReasonCode::GrantedQoS1],
        "replacing one is not a new one"
    );
}

#[test]
fn a_large_retained_set_goes_out_in_bounded_steps() {
    let mut h = Harness::new();
    let p = h.connect("p", true, V4);
    for i in 0..3000u32 {
        let topic = format!("t/{i}");
        h.send(
            p,
            Packet::Publish({
                let mut publish = Publish::new(&topic, b"v");
                publish.retain = true;
                publish
            }),
        );
    }
    let s = h.connect("s", true, V4);
    h.received(s);
    h.now += Duration::from_millis(1);
    h.subscribe(s, "#", QoS::AtMostOnce);
    // The SUBACK alone, before any background step.
    let out = h.broker.take_output(s).unwrap();
    h.broker.output_written(s, out.bytes.len(), h.now);
    let mut steps = 0;
    let mut total = 0;
    while h.broker.has_retained_work() {
        h.broker.retained_step(h.now);
        steps += 1;
        let out = h.broker.take_output(s).unwrap();
        let mut buf = out.bytes;
        let decoder = Decoder::new(V4, MAX_PACKET_SIZE);
        let mut n = 0;
        while let Some(Packet::Publish(p)) = decoder.decode(&mut buf).unwrap() {
            assert!(p.retain);
            n += 1;
        }
        assert!(n <= 256, "a step sends at most 256, sent {n}");
        total += n;
        let len = buf.len();
        h.broker.output_written(s, len, h.now);
    }
    assert_eq!(total, 3000);
    assert!(steps >= 3000 / 256, "{steps} steps");
}

#[test]
fn properties_of_kept_messages_own_their_bytes_and_count_against_the_queue() {
    let limits = Limits {
        max_queued_bytes: 100,
        ..Limits::default()
    };
    let mut h = Harness::configured(limits, Features::default());
    let sub = h.connect_v5(
        "sub",
        false,
        PropertyValues {
            session_expiry_interval: Some(60),
            ..Default::default()
        },
        None,
    );
    h.subscribe(sub, "t", QoS::AtLeastOnce);
    h.received(sub);
    h.send(sub, Packet::Disconnect(Disconnect::default()));
    h.broker.closed(sub, h.now);
    let publisher = h.connect("pub", true, V5);
    h.received(publisher);
    // A PUBLISH decoded from a read buffer, with 60 bytes of user property.
    let mut wire = BytesMut::new();
    let mut publish = Publish::new("t", b"x").with_qos(QoS::AtLeastOnce, 1);
    publish.properties = PropertyValues {
        user_properties: vec![("k".repeat(30).into(), "v".repeat(30).into())],
        ..Default::default()
    }
    .into();
    let second = publish.clone().with_qos(QoS::AtLeastOnce, 2);
    publish.write(V5, &mut wire).unwrap();
    second.write(V5, &mut wire).unwrap();
    let decoder = Decoder::new(V5, MAX_PACKET_SIZE);
    while let Some(packet) = decoder.decode(&mut wire).unwrap() {
        h.send(publisher, packet);
    }
    assert_eq!(
        h.broker.counters.dropped_queue_full, 1,
        "62 bytes each: the second is over 100"
    );
    let session = h
        .broker
        .sessions
        .values()
        .find(|s| s.client_id == "sub")
        .unwrap();
    assert_eq!(session.queued_len(), 1);
}

#[test]
fn sessions_are_capped_and_expire_by_the_clock_with_their_messages_counted() {
    let limits = Limits {
        max_sessions: 2,
        persistent_client_expiration: Some(60),
        ..Limits::default()
    };
    let mut h = Harness::configured(limits, Features::default());
    let a = h.connect("a", false, V4);
    h.subscribe(a, "t", QoS::AtLeastOnce);
    h.received(a);
    let b = h.connect("b", false, V4);
    h.received(b);
    let c = h.connect("c", false, V5);
    assert_eq!(
        connack(&h.received(c)).code,
        ReasonCode::QuotaExceeded,
        "a third session"
    );
    // `a` goes away with a persistent session; messages queue for it.
    h.send(a, Packet::Disconnect(Disconnect::default()));
    h.broker.closed(a, h.now);
    h.publish(b, "t", b"1", QoS::AtLeastOnce, 1, false);
    h.publish(b, "t", b"2", QoS::AtLeastOnce, 2, false);
    assert_eq!(h.broker.session_count(), 2);
    h.elapse(Duration::from_secs(59));
    assert_eq!(h.broker.session_count(), 2, "not yet");
    h.elapse(Duration::from_secs(2));
    assert_eq!(
        h.broker.session_count(),
        1,
        "3.1.1 persistent session expired"
    );
    assert_eq!(h.broker.counters.dropped_session_expired, 2);
    // Its slot is free again.
    let c = h.connect("c", false, V4);
    assert_eq!(connack(&h.received(c)).code, ReasonCode::Success);
}

#[test]
fn a_capped_session_expiry_is_told_in_the_connack() {
    let limits = Limits {
        max_session_expiry: Some(300),
        ..Limits::default()
    };
    let mut h = Harness::configured(limits, Features::default());
    let c = h.connect_v5(
        "c",
        false,
        PropertyValues {
            session_expiry_interval: Some(u32::MAX),
            ..Default::default()
        },
        None,
    );
    let got = h.received(c);
    assert_eq!(connack(&got).properties.session_expiry_interval, Some(300));
    let d = h.connect_v5(
        "d",
        false,
        PropertyValues {
            session_expiry_interval: Some(30),
            ..Default::default()
        },
        None,
    );
    let got = h.received(d);
    assert_eq!(connack(&got).properties.session_expiry_interval, None);
    h.broker.closed(c, h.now);
    h.elapse(Duration::from_secs(301));
    assert!(
        h.broker.sessions.key_of("c").is_none(),
        "expired after 300 s"
    );
}

#[test]
fn expiring_sessions_are_found_without_a_scan() {
    let mut h = Harness::new();
    for i in 0..1000 {
        let c = h.connect_v5(
            &format!("c{i}"),
            false,
            PropertyValues {
                session_expiry_interval: Some(10 + i % 7),
                ..Default::default()
            },
            None,
        );
        h.broker.closed(c, h.now);
    }
    // One entry per session, and each connection's CONNECT deadline.
    assert_eq!(h.broker.timers.len(), 2000);
    h.elapse(Duration::from_secs(12));
    let left = (0..1000).filter(|i| 10 + i % 7 > 12).count();
    assert_eq!(h.broker.session_count(), left);
    h.elapse(Duration::from_secs(5));
    assert_eq!(h.broker.session_count(), 0);
    assert!(h.broker.timers.is_empty());
}

#[test]
fn wills_pass_the_checks_of_a_publish() {
    let features = Features {
        retain_available: false,
        max_qos: QoS::AtLeastOnce,
        ..Features::default()
    };
    let limits = Limits {
        max_topic_levels: 4,
        ..Limits::default()
    };
    let mut h = Harness::configured(limits, features);
    let will = |topic: &str, qos: QoS, retain: bool| Will {
        topic: topic.into(),
        payload: Bytes::from_static(b"gone"),
        qos,
        retain,
        properties: Default::default(),
    };
    let cases = [
        (
            will("$SYS/broker/uptime", QoS::AtMostOnce, false),
            ReasonCode::NotAuthorized,
        ),
        (
            will("w/x", QoS::AtMostOnce, true),
            ReasonCode::RetainNotSupported,
        ),
        (
            will("w/x", QoS::ExactlyOnce, false),
            ReasonCode::QoSNotSupported,
        ),
        (
            will("a/b/c/d/e", QoS::AtMostOnce, false),
            ReasonCode::TopicNameInvalid,
        ),
        (will("w/x", QoS::AtLeastOnce, false), ReasonCode::Success),
    ];
    for (i, (will, code)) in cases.into_iter().enumerate() {
        let mut connect = connect_packet(&format!("w{i}"), V5, true);
        connect.will = Some(will);
        let id = h.connect_full(connect);
        assert_eq!(connack(&h.received(id)).code, code, "case {i}");
    }
    let mut h = Harness::new().with_acl("pattern readwrite devices/%c/#\n");
    let mut connect = connect_packet("d1", V4, true);
    connect.will = Some(will("devices/d2/state", QoS::AtMostOnce, false));
    let id = h.connect_full(connect);
    assert_eq!(connack(&h.received(id)).code, ReasonCode::NotAuthorized);
}

#[test]
fn a_subscription_identifier_from_a_client_is_a_protocol_error() {
    let mut h = Harness::new();
    let c = h.connect("c", true, V5);
    h.received(c);
    let mut publish = Publish::new("t", b"x");
    publish.properties = PropertyValues {
        subscription_identifiers: vec![7],
        ..Default::default()
    }
    .into();
    h.send(c, Packet::Publish(publish));
    assert_eq!(
        disconnect_reason(&h.received(c)),
        Some(ReasonCode::ProtocolError)
    );
}

#[test]
fn a_shared_message_goes_to_a_member_that_may_read_it() {
    let acl = "topic read secret/#\ntopic deny secret/none\npattern deny secret/%c/x\n\
               user ops\ntopic write #\n";
    let mut h = Harness::new().with_acl(acl);
    let a = h.connect("a", true, V5);
    let b = h.connect("b", true, V5);
    let mut ops = connect_packet("p", V5, true);
    ops.username = Some("ops".into());
    let p = h.connect_full(ops);
    for c in [a, b, p] {
        h.received(c);
    }
    for c in [a, b] {
        assert_eq!(
            h.subscribe_many(c, &["$share/g/secret/#"]),
            [ReasonCode::GrantedQoS1]
        );
    }
    for _ in 0..4 {
        h.publish(p, "secret/a/x", b"not for a", QoS::AtMostOnce, 0, false);
    }
    assert_eq!(publishes(&h.received(a)).len(), 0, "a may not read it");
    assert_eq!(publishes(&h.received(b)).len(), 4, "all four go to b");
    h.publish(p, "secret/none", b"for no one", QoS::AtMostOnce, 0, false);
    assert_eq!(
        h.broker.counters.dropped_not_authorized, 1,
        "counted, not lost"
    );
}

#[test]
fn resuming_a_session_rechecks_what_it_may_read() {
    let mut h = Harness::new();
    let s = h.connect("s", false, V4);
    h.subscribe(s, "t/#", QoS::AtLeastOnce);
    h.received(s);
    h.broker.closed(s, h.now);
    let p = h.connect("p", true, V4);
    h.publish(p, "t/open", b"1", QoS::AtLeastOnce, 1, false);
    h.publish(p, "t/closed", b"2", QoS::AtLeastOnce, 2, false);
    // The ACL changes (a reload) before the client comes back.
    let acl = AclFile::parse("topic read t/open\ntopic write t/#\n").unwrap();
    let auth = Authenticator::new(None, true).with_acl(Some(acl));
    h.broker.auth.replace(auth);
    let s = h.connect("s", false, V4);
    let got = h.received(s);
    let topics: Vec<&str> = publishes(&got).iter().map(|p| p.topic()).collect();
    assert_eq!(topics, ["t/open"]);
    assert_eq!(h.broker.counters.dropped_not_authorized, 1);
}

#[test]
fn assigned_client_ids_are_random() {
    let mut h = Harness::new();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let c = h.connect("", true, V5);
        let got = h.received(c);
        let id = connack(&got)
            .properties
            .assigned_client_identifier
            .clone()
            .unwrap();
        assert!(id.len() <= 23, "{id}");
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1]);
    let digits = |s: &str| s.trim_start_matches("ringmq-").to_string();
    assert_ne!(
        u64::from_str_radix(&digits(&ids[0]), 16)
            .map(|n| n + 1)
            .ok(),
        u64::from_str_radix(&digits(&ids[1]), 16).ok(),
        "not a counter"
    );
}

#[test]
fn with_user_names_as_client_ids_sessions_belong_to_users() {
    let features = Features {
        use_username_as_clientid: true,
        ..Features::default()
    };
    let mut h = Harness::configured(Limits::default(), features);
    let mut connect = connect_packet("victim", V4, true);
    connect.username = Some("mallory".into());
    connect.clean_start = false;
    let m = h.connect_full(connect);
    assert_eq!(connack(&h.received(m)).code, ReasonCode::Success);
    assert!(h.broker.sessions.key_of("mallory").is_some());
    assert!(h.broker.sessions.key_of("victim").is_none());
    let anonymous = h.connect_full(connect_packet("x", V5, true));
    assert_eq!(
        connack(&h.received(anonymous)).code,
        ReasonCode::NotAuthorized
    );
}

#[test]
fn output_that_makes_no_progress_closes_the_connection_even_when_trickled() {
    let limits = Limits {
        write_timeout: Duration::from_secs(10),
        ..Limits::default()
    };
    let mut h = Harness::configured(limits, Features::default());
    let c = h.connect("c", true, V4);
    for _ in 0..1000 {
        h.send(c, Packet::PingReq);
    }
    let out = h.broker.take_output(c).unwrap();
    assert!(out.bytes.len() > 100);
    // The socket takes a byte now and then.
    for _ in 0..9 {
        h.broker.output_written(c, 1, h.now);
        h.elapse(Duration::from_secs(1));
        h.broker.output_written(c, 0, h.now);
        assert!(!h.broker.is_aborted(c));
    }
    h.elapse(Duration::from_secs(2));
    assert!(h.broker.is_aborted(c), "no progress in 10 s");
    assert_eq!(h.broker.counters.write_timeouts, 1);

    // One that writes what it was given in time is never closed.
    let d = h.connect("d", true, V4);
    for round in 0..30 {
        for _ in 0..100 {
            h.send(d, Packet::PingReq);
        }
        let out = h.broker.take_output(d).unwrap();
        let half = out.bytes.len() / 2;
        h.broker.output_written(d, half, h.now);
        h.elapse(Duration::from_secs(3));
        h.broker.output_written(d, out.bytes.len() - half, h.now);
        assert!(!h.broker.is_aborted(d), "round {round}");
    }
}

#[test]
fn a_client_whose_output_piles_up_is_not_read() {
    let mut h = Harness::new();
    let c = h.connect("c", true, V4);
    assert_eq!(h.broker.read_pause(c), None);
    let pings = Limits::default().read_pause_high_water / 2 + 1;
    for _ in 0..pings {
        h.send(c, Packet::PingReq);
    }
    assert_eq!(h.broker.read_pause(c), Some(ReadPause::Output));
    let out = h.broker.take_output(c).unwrap();
    assert_eq!(
        h.broker.read_pause(c),
        Some(ReadPause::Output),
        "taken, not written"
    );
    h.broker.output_written(c, out.bytes.len(), h.now);
    assert_eq!(h.broker.read_pause(c), None);
}

#[test]
fn a_publisher_waiting_for_a_slow_shard_keeps_its_keep_alive_and_others_are_not_paused() {
    let mut h = Harness::with(0, 2);
    let remote_sub = super::super::ShardMsg::RouteAdd {
        filter: crate::core::filter::Filter::new("t"),
        shard: 1,
        sync: 0,
        seq: 1,
    };
    h.broker.remote(1, vec![remote_sub], h.now);
    let publisher = h.connect_with("p", true, V4, None, 10);
    let idle = h.connect_with("i", true, V4, None, 10);
    for c in [publisher, idle] {
        h.received(c);
    }
    for _ in 0..=OUTBOX_HIGH_WATER {
        h.publish(publisher, "t", b"x", QoS::AtMostOnce, 0, false);
    }
    assert_eq!(
        h.broker.read_pause(publisher),
        Some(ReadPause::Outbox {
            trickle: Duration::from_millis(2500)
        }),
        "a sixth of 1.5 x its keep alive"
    );
    assert_eq!(h.broker.read_pause(idle), None);
    // The other shard takes nothing for a minute: the publisher is not timed out.
    for _ in 0..60 {
        h.elapse(Duration::from_secs(1));
        h.send(idle, Packet::PingReq);
    }
    assert!(!h.is_closing(publisher));
    assert!(!h.is_closing(idle));
    while h.broker.take_outbox(1, 4096).len() == 4096 {}
    assert!(h.broker.outbox_drained());
    assert_eq!(h.broker.read_pause(publisher), None);
    // Read again, its keep alive runs again.
    h.elapse(Duration::from_secs(16));
    assert!(h.is_closing(publisher));
}

#[test]
fn a_retained_message_published_during_the_walk_arrives_once_and_the_walk_survives_a_reconnect() {
    let mut h = Harness::new();
    let p = h.connect("p", true, V4);
    for t in ["r/a", "r/b", "r/c"] {
        h.publish(p, t, b"old", QoS::AtMostOnce, 0, true);
    }
    let s = h.connect("s", false, V4);
    h.received(s);
    h.now += Duration::from_millis(1);
    h.subscribe(s, "r/#", QoS::AtLeastOnce);
    // Before any step: a newer value of r/c is published; it goes live.
    h.now += Duration::from_millis(1);
    h.publish(p, "r/c", b"new", QoS::AtMostOnce, 0, true);
    let got = h.received(s);
    let mut seen: Vec<(String, Vec<u8>)> = publishes(&got)
        .iter()
        .map(|p| (p.topic().to_string(), p.payload().to_vec()))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("r/a".to_string(), b"old".to_vec()),
            ("r/b".to_string(), b"old".to_vec()),
            ("r/c".to_string(), b"new".to_vec()),
        ],
        "r/c once, and its newer value"
    );

    // A walk cut short by a disconnect goes on when the session resumes.
    let s2 = h.connect("s2", false, V4);
    h.received(s2);
    h.now += Duration::from_millis(1);
    h.subscribe(s2, "r/#", QoS::AtMostOnce);
    let out = h.broker.take_output(s2).unwrap();
    h.broker.output_written(s2, out.bytes.len(), h.now);
    h.broker.closed(s2, h.now);
    // Steps while the client is away send nothing and keep the walk.
    while h.broker.retained_step(h.now) {}
    let s2 = h.connect("s2", false, V4);
    let got = h.received(s2);
    assert_eq!(
        publishes(&got).len(),
        3,
        "the walk went on after the reconnect"
    );
}

#[test]
fn a_connection_storm_leaves_no_timers_behind() {
    let mut h = Harness::new();
    for i in 0..20_000 {
        let c = h.connect_with(&format!("storm-{i}"), true, V4, None, 60);
        h.received(c);
        h.broker.closed(c, h.now);
    }
    h.elapse(Duration::from_millis(100));
    assert!(
        h.broker.timers.len() <= 4096,
        "{} timer entries for no connection",
        h.broker.timers.len()
    );
}

#[test]
fn a_refused_connection_lingering_to_be_read_holds_no_place_under_the_limit() {
    let limits = Limits {
        max_connections: 1,
        ..Limits::default()
    };
    let mut h = Harness::configured(limits, Features::default());
    let first = h.connect_full(connect_packet("first", V5, true));
    assert_eq!(connack(&h.received(first)).code, ReasonCode::Success);
    let refused = h.connect_full(connect_packet("refused", V5, true));
    assert_eq!(
        connack(&h.received(refused)).code,
        ReasonCode::QuotaExceeded
    );
    assert!(h.is_closing(refused), "the refusal closes the connection");
    h.send(first, Packet::Disconnect(Default::default()));
    h.broker.closed(first, h.now);
    // The refused socket still lingers, for its client to read the CONNACK; the place the
    // first client left is free all the same.
    let next = h.connect_full(connect_packet("next", V5, true));
    assert_eq!(connack(&h.received(next)).code, ReasonCode::Success);
}
