//! MQTT 5 topic aliases: inbound (set, used, remapped; zero, above the maximum or unknown
//! disconnect) and outbound (resolved within the client's Topic Alias Maximum, none without one).

use crate::common::enc::{p, Connect, Props, Publish};
use crate::common::raw::{LONG, SHORT};
use crate::common::v5::V5;
use crate::common::{client_id_on_shard, run_bounded, secs, Broker, SHARDS};

fn alias(a: u16) -> Props {
    Props::new().u16(p::TOPIC_ALIAS, a)
}

/// Inbound aliases: topic + alias sets it, empty topic + alias uses it, a new topic with the
/// same alias re-maps it. The (alias-less) subscriber sees the full topics.
#[test]
fn inbound_topic_alias_set_used_and_remapped() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let mut s = V5::connect(
            broker.port,
            &client_id_on_shard("al-in-sub", 1, SHARDS),
            true,
        );
        s.sub_ok("al/in/#", 1);
        let mut pb = V5::connect(
            broker.port,
            &client_id_on_shard("al-in-pub", 0, SHARDS),
            true,
        );
        assert_eq!(
            pb.connack_num(p::TOPIC_ALIAS_MAXIMUM),
            Some(64),
            "default Topic Alias Maximum"
        );
        assert_eq!(
            pb.publish_ack(Publish::new("al/in/a", b"1").qos(1).props(alias(1)))
                .unwrap()
                .code(),
            0
        );
        assert_eq!(
            pb.publish_ack(Publish::new("", b"2").qos(1).props(alias(1)))
                .unwrap()
                .code(),
            0
        );
        pb.publish_ack(Publish::new("al/in/b", b"3").props(alias(64)));
        pb.publish_ack(Publish::new("", b"4").qos(1).props(alias(64)));
        pb.publish_ack(Publish::new("al/in/c", b"5").qos(1).props(alias(1))); // re-map 1
        pb.publish_ack(Publish::new("", b"6").qos(1).props(alias(1)));
        pb.publish_ack(Publish::new("", b"7").qos(2).props(alias(64)));
        let got = s.expect_pubs(7, LONG);
        let seen: Vec<(String, String)> = got.iter().map(|m| (m.topic.clone(), m.text())).collect();
        let want: Vec<(String, String)> = [
            ("al/in/a", "1"),
            ("al/in/a", "2"),
            ("al/in/b", "3"),
            ("al/in/b", "4"),
            ("al/in/c", "5"),
            ("al/in/c", "6"),
            ("al/in/b", "7"),
        ]
        .iter()
        .map(|(t, x)| (t.to_string(), x.to_string()))
        .collect();
        assert_eq!(seen, want);
        for m in &got {
            assert_eq!(
                m.alias, None,
                "subscriber has no Topic Alias Maximum: {m:?}"
            );
            assert!(!m.wire_topic.is_empty());
        }
    });
}

/// Topic alias 0 -> DISCONNECT 0x94.
#[test]
fn inbound_alias_zero_disconnects_0x94() {
    run_bounded(secs(30), || {
        let broker = Broker::start_sharded(&[]);
        let mut c = V5::connect(broker.port, "al-zero", true);
        let _ = c.send(&Publish::new("al/zero", b"x").props(alias(0)).encode());
        let (rc, _) = c.expect_disconnect(SHORT, "topic alias 0");
        assert_eq!(rc, 0x94, "Topic Alias invalid");
    });
}

/// With --topic-alias-maximum 5 CONNACK says 5; alias 5 works, alias 6 -> DISCONNECT 0x94.
#[test]
fn inbound_alias_above_maximum_disconnects_0x94() {
    run_bounded(secs(30), || {
        let broker = Broker::start_sharded(&["--topic-alias-maximum", "5"]);
        let mut c = V5::connect(broker.port, "al-max", true);
        assert_eq!(c.connack_num(p::TOPIC_ALIAS_MAXIMUM), Some(5));
        let rc = c
            .publish_ack(Publish::new("al/max", b"ok").qos(1).props(alias(5)))
            .unwrap()
            .code();
        assert!(rc < 0x80, "alias 5 is allowed: PUBACK 0x{rc:02X}");
        let _ = c.send(
            &Publish::new("al/max", b"x")
                .qos(1)
                .pkid(9)
                .props(alias(6))
                .encode(),
        );
        let (rc, _) = c.expect_disconnect(SHORT, "topic alias 6 > maximum 5");
        assert_eq!(rc, 0x94, "Topic Alias invalid");
    });
}

/// --topic-alias-maximum 0: CONNACK has no Topic Alias Maximum, and any alias is invalid.
#[test]
fn topic_alias_maximum_zero_omitted_and_any_alias_rejected() {
    run_bounded(secs(30), || {
        let broker = Broker::start_sharded(&["--topic-alias-maximum", "0"]);
        let mut c = V5::connect(broker.port, "al-none", true);
        assert_eq!(
            c.connack_num(p::TOPIC_ALIAS_MAXIMUM),
            None,
            "Topic Alias Maximum 0 is omitted: {:?}",
            c.connack_props
        );
        let _ = c.send(&Publish::new("al/none", b"x").props(alias(1)).encode());
        let (rc, _) = c.expect_disconnect(SHORT, "alias with maximum 0");
        assert_eq!(rc, 0x94);
    });
}

/// Empty topic with an alias never set -> DISCONNECT 0x82 (protocol error).
#[test]
fn inbound_unknown_alias_disconnects_0x82() {
    run_bounded(secs(30), || {
        let broker = Broker::start_sharded(&[]);
        let mut c = V5::connect(broker.port, "al-unknown", true);
        c.publish_ack(Publish::new("al/u", b"set-3").props(alias(3)));
        let _ = c.send(
            &Publish::new("", b"x")
                .qos(1)
                .pkid(4)
                .props(alias(4))
                .encode(),
        );
        let (rc, _) = c.expect_disconnect(SHORT, "empty topic, unknown alias");
        assert_eq!(rc, 0x82, "protocol error");
    });
}

/// Outbound aliases: a subscriber announcing Topic Alias Maximum 2 gets 40 messages over 5
/// topics; every alias the broker uses is in 1..=2, and resolving them (in `V5`) gives the right
/// topic for every message (each payload names its topic).
#[test]
fn outbound_aliases_resolve_and_stay_within_client_maximum() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let mut s = V5::connect_with(
            broker.port,
            Connect::v5(client_id_on_shard("al-out-sub", 0, SHARDS))
                .props(Props::new().u16(p::TOPIC_ALIAS_MAXIMUM, 2)),
        );
        assert_eq!(s.alias_max, 2);
        s.sub_ok("al/out/#", 1);
        let mut pb = V5::connect(
            broker.port,
            &client_id_on_shard("al-out-pub", 1, SHARDS),
            true,
        );
        let topics = [
            "al/out/a",
            "al/out/b",
            "al/out/a/long/topic/name",
            "al/out/c",
            "al/out/a",
        ];
        let mut want = Vec::new();
        for i in 0..40 {
            let t = topics[(i * 7 / 3) % topics.len()];
            let payload = format!("{t}|{i}");
            pb.publish(Publish::new(t, payload.as_bytes()).qos((i % 2) as u8));
            want.push(payload);
        }
        let got = s.expect_pubs(40, LONG); // alias bounds and resolution checked on arrival
        let aliased = got.iter().filter(|m| m.alias.is_some()).count();
        let alias_only = got.iter().filter(|m| m.wire_topic.is_empty()).count();
        eprintln!(
            "outbound aliases: {aliased} of 40 carried an alias, {alias_only} had only the alias"
        );
        for m in &got {
            let t = m.text().split('|').next().unwrap().to_string();
            assert_eq!(m.topic, t, "resolved topic of {m:?}");
        }
        let mut texts: Vec<String> = got.iter().map(|m| m.text()).collect();
        texts.sort();
        want.sort();
        assert_eq!(texts, want);
    });
}

/// Without a Topic Alias Maximum in CONNECT the client never gets an alias (checked in `V5`:
/// alias_max = 0 makes any alias a failure) and always a full topic.
#[test]
fn outbound_no_alias_without_client_maximum() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let mut s = V5::connect(
            broker.port,
            &client_id_on_shard("al-no-sub", 1, SHARDS),
            true,
        );
        s.sub_ok("al/no/#", 0);
        let mut pb = V5::connect(
            broker.port,
            &client_id_on_shard("al-no-pub", 0, SHARDS),
            true,
        );
        for i in 0..20 {
            pb.publish(Publish::new("al/no/same/topic", format!("{i}").as_bytes()).qos(1));
        }
        let got = s.expect_pubs(20, LONG);
        for m in &got {
            assert_eq!(m.alias, None);
            assert_eq!(m.wire_topic, "al/no/same/topic");
        }
    });
}
