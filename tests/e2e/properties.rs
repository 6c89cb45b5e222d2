//! MQTT 5 message properties passing through (request / response), Payload Format Indicator
//! checks, reason codes on acks, disabled features (--no-retain, --max-qos, ...), Request
//! Problem Information, and authentication refusals.

use crate::common;
use crate::common::dec::{has_prop, packet_props, parse_connack_v5, texts, PropValue};
use crate::common::enc::{self, kind, p, sub_opts, Connect, Props, Publish};
use crate::common::raw::{LONG, SHORT};
use crate::common::v5::V5;
use crate::common::{client_id_on_shard, run_bounded, secs, Broker, SHARDS};

/// Response Topic, Correlation Data, Content Type, Payload Format Indicator and User Properties
/// (order and duplicates kept) reach the subscriber unchanged (other shard); the responder uses
/// them to answer and the requester gets the correlated response.
#[test]
fn request_response_properties_pass_through() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let mut responder =
            V5::connect(broker.port, &client_id_on_shard("rr-resp", 1, SHARDS), true);
        responder.sub_ok("rr/req", 1);
        let mut requester =
            V5::connect(broker.port, &client_id_on_shard("rr-req", 0, SHARDS), true);
        requester.sub_ok("rr/resp/rr-req", 1);

        let props = Props::new()
            .byte(p::PAYLOAD_FORMAT, 1)
            .str(p::CONTENT_TYPE, "application/json")
            .str(p::RESPONSE_TOPIC, "rr/resp/rr-req")
            .bin(p::CORRELATION_DATA, &[0, 1, 2, 0xFF, 0xFE])
            .user("k", "v1")
            .user("a", "x")
            .user("k", "v2")
            .user("k", "v1");
        requester.publish_ack(Publish::new("rr/req", br#"{"q":1}"#).qos(1).props(props));

        let req = responder.expect_pub(LONG);
        assert_eq!(req.text(), r#"{"q":1}"#);
        assert_eq!(req.prop(p::PAYLOAD_FORMAT), Some(&PropValue::Byte(1)));
        assert_eq!(
            req.prop(p::CONTENT_TYPE),
            Some(&PropValue::Str("application/json".into()))
        );
        assert_eq!(
            req.prop(p::RESPONSE_TOPIC),
            Some(&PropValue::Str("rr/resp/rr-req".into()))
        );
        assert_eq!(
            req.prop(p::CORRELATION_DATA),
            Some(&PropValue::Bin(vec![0, 1, 2, 0xFF, 0xFE]))
        );
        let users: Vec<(String, String)> = req.user_props();
        let want: Vec<(String, String)> = [("k", "v1"), ("a", "x"), ("k", "v2"), ("k", "v1")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(users, want, "user properties in order with duplicates");
        for (id, _) in &req.props {
            assert!(
                [
                    p::PAYLOAD_FORMAT,
                    p::CONTENT_TYPE,
                    p::RESPONSE_TOPIC,
                    p::CORRELATION_DATA,
                    p::USER_PROPERTY
                ]
                .contains(id),
                "unexpected property 0x{id:02X} on the forwarded PUBLISH: {:?}",
                req.props
            );
        }

        let topic = match req.prop(p::RESPONSE_TOPIC) {
            Some(PropValue::Str(s)) => s.clone(),
            _ => unreachable!(),
        };
        let corr = match req.prop(p::CORRELATION_DATA) {
            Some(PropValue::Bin(b)) => b.clone(),
            _ => unreachable!(),
        };
        responder.publish_ack(
            Publish::new(&topic, b"answer")
                .qos(1)
                .props(Props::new().bin(p::CORRELATION_DATA, &corr)),
        );
        let resp = requester.expect_pub(LONG);
        assert_eq!(resp.text(), "answer");
        assert_eq!(resp.prop(p::CORRELATION_DATA), Some(&PropValue::Bin(corr)));
        assert_eq!(resp.prop(p::RESPONSE_TOPIC), None);
    });
}

/// Payload Format Indicator 1 with a payload that is not UTF-8, QoS 1: PUBACK 0x99 and the
/// message is not delivered (a marker sent afterwards is the first thing to arrive).
#[test]
fn invalid_utf8_payload_qos1_puback_0x99_not_delivered() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let mut s = V5::connect(broker.port, &client_id_on_shard("pfi-s", 0, SHARDS), true);
        s.sub_ok("pfi/t", 1);
        let mut pb = V5::connect(broker.port, &client_id_on_shard("pfi-p", 1, SHARDS), true);
        let a = pb
            .publish_ack(
                Publish::new("pfi/t", [b'o', 0xFF, 0xFE, b'k'])
                    .qos(1)
                    .props(Props::new().byte(p::PAYLOAD_FORMAT, 1)),
            )
            .unwrap();
        assert_eq!(a.code(), 0x99, "Payload format invalid: {a:?}");
        // Valid UTF-8 with the indicator set, and binary without it, are fine.
        let a = pb
            .publish_ack(
                Publish::new("pfi/t", "héllo".as_bytes())
                    .qos(1)
                    .props(Props::new().byte(p::PAYLOAD_FORMAT, 1)),
            )
            .unwrap();
        assert_eq!(a.code(), 0x00);
        pb.publish(Publish::new("pfi/t", [0xFF, 0x00]).qos(1));
        let got = s.expect_pubs(2, LONG);
        assert_eq!(
            got[0].text(),
            "héllo",
            "the invalid message must not be delivered"
        );
        assert_eq!(got[1].payload, vec![0xFF, 0x00]);
        pb.ping();
    });
}

/// Same with QoS 0: DISCONNECT 0x99.
#[test]
fn invalid_utf8_payload_qos0_disconnects_0x99() {
    run_bounded(secs(30), || {
        let broker = Broker::start_sharded(&[]);
        let mut c = V5::connect(broker.port, "pfi-q0", true);
        let _ = c.send(
            &Publish::new("pfi/q0", [0xC3, 0x28])
                .props(Props::new().byte(p::PAYLOAD_FORMAT, 1))
                .encode(),
        );
        let (rc, _) = c.expect_disconnect(SHORT, "QoS 0 invalid UTF-8 payload");
        assert_eq!(rc, 0x99);
    });
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

/// --no-wildcard-subscriptions: CONNACK Wildcard Subscription Available = 0; SUBACK 0xA2 for
/// wildcard filters (plain ones granted).
#[test]
fn wildcard_subscriptions_disabled_suback_0xa2() {
    run_bounded(secs(30), || {
        let broker = Broker::start_sharded(&["--no-wildcard-subscriptions"]);
        let mut c = V5::connect(broker.port, "nowild", true);
        assert_eq!(c.connack_num(p::WILDCARD_SUB_AVAILABLE), Some(0));
        let a = c.subscribe_with(Props::new(), &[("w/+", 1), ("w/plain", 1), ("#", 0)]);
        assert_eq!(a.codes, vec![0xA2, 0x01, 0xA2]);
        c.ping();
    });
}

/// --no-shared-subscriptions: CONNACK Shared Subscription Available = 0; SUBACK 0x9E.
#[test]
fn shared_subscriptions_disabled_suback_0x9e() {
    run_bounded(secs(30), || {
        let broker = Broker::start_sharded(&["--no-shared-subscriptions"]);
        let mut c = V5::connect(broker.port, "noshare", true);
        assert_eq!(c.connack_num(p::SHARED_SUB_AVAILABLE), Some(0));
        let a = c.subscribe_with(Props::new(), &[("$share/g/x", 1), ("x", 1)]);
        assert_eq!(a.codes, vec![0x9E, 0x01]);
        c.ping();
    });
}

/// --no-subscription-identifiers: CONNACK Subscription Identifier Available = 0; a SUBSCRIBE
/// with one -> DISCONNECT 0xA1. Without one, SUBSCRIBE still works.
#[test]
fn subscription_identifiers_disabled_disconnects_0xa1() {
    run_bounded(secs(30), || {
        let broker = Broker::start_sharded(&["--no-subscription-identifiers"]);
        let mut c = V5::connect(broker.port, "nosubid", true);
        assert_eq!(c.connack_num(p::SUB_ID_AVAILABLE), Some(0));
        c.sub_ok("sid/ok", 1);
        let id = c.pkid();
        let _ = c.send(&enc::subscribe_v5(
            id,
            &Props::new().varint(p::SUBSCRIPTION_ID, 3),
            &[("sid/x", 1)],
        ));
        let (rc, _) = c.expect_disconnect(SHORT, "subscription identifier not supported");
        assert_eq!(rc, 0xA1);
    });
}

/// --no-retain: CONNACK Retain Available = 0; PUBLISH with RETAIN -> DISCONNECT 0x9A.
#[test]
fn retain_disabled_disconnects_0x9a() {
    run_bounded(secs(30), || {
        let broker = Broker::start_sharded(&["--no-retain"]);
        let mut c = V5::connect(broker.port, "noretain", true);
        assert_eq!(c.connack_num(p::RETAIN_AVAILABLE), Some(0));
        c.publish(Publish::new("nr/t", b"fine").qos(1));
        let _ = c.send(
            &Publish::new("nr/t", b"r")
                .qos(1)
                .pkid(77)
                .retain(true)
                .v5()
                .encode(),
        );
        let (rc, _) = c.expect_disconnect(SHORT, "retain not supported");
        assert_eq!(rc, 0x9A);
    });
}

/// --max-qos 1: CONNACK Maximum QoS = 1; SUBSCRIBE at QoS 2 granted 0x01; PUBLISH QoS 2 ->
/// DISCONNECT 0x9B.
#[test]
fn max_qos_1_downgrades_subscribe_and_rejects_qos2_publish() {
    run_bounded(secs(30), || {
        let broker = Broker::start_sharded(&["--max-qos", "1"]);
        let mut c = V5::connect(broker.port, "maxqos1", true);
        assert_eq!(c.connack_num(p::MAXIMUM_QOS), Some(1));
        assert_eq!(c.subscribe("mq/t", sub_opts(2, false, false, 0)), 0x01);
        c.publish(Publish::new("mq/t", b"q1").qos(1));
        let m = c.expect_pub(LONG);
        assert_eq!((m.text().as_str(), m.qos), ("q1", 1));
        let _ = c.send(&Publish::new("mq/t", b"q2").qos(2).pkid(9).v5().encode());
        let (rc, _) = c.expect_disconnect(SHORT, "QoS 2 with Maximum QoS 1");
        assert_eq!(rc, 0x9B);
    });
}

/// Request Problem Information = 0: no Reason String or User Property on any packet other than
/// PUBLISH, CONNACK and DISCONNECT, even on error acks (SUBACK 0xA2, PUBACK 0x99, UNSUBACK 0x11).
#[test]
fn request_problem_information_zero_suppresses_reason_strings() {
    run_bounded(secs(30), || {
        let broker = Broker::start_sharded(&["--no-wildcard-subscriptions"]);
        let mut c = V5::connect_with(
            broker.port,
            Connect::v5("rpi0").props(Props::new().byte(p::REQUEST_PROBLEM_INFO, 0)),
        );
        let a = c.subscribe_with(Props::new(), &[("rpi/+", 1), ("rpi/t", 1)]);
        assert_eq!(a.codes, vec![0xA2, 0x01]);
        let a = c
            .publish_ack(
                Publish::new("rpi/t", [0xFF])
                    .qos(1)
                    .props(Props::new().byte(p::PAYLOAD_FORMAT, 1)),
            )
            .unwrap();
        assert_eq!(a.code(), 0x99);
        assert_eq!(c.unsubscribe(&["rpi/none"]).codes, vec![0x11]);
        assert_eq!(c.publish(Publish::new("rpi/nobody", b"x").qos(1)), 0x10);
        c.publish(Publish::new("rpi/nobody", b"x").qos(2)); // PUBREC / PUBCOMP audited below
        c.publish(Publish::new("rpi/t", b"echo").qos(2));
        assert_eq!(c.expect_pub(LONG).text(), "echo");
        c.ping();
        assert!(c.log.len() >= 7, "{:?}", c.log);
        for pk in &c.log {
            if matches!(pk.kind(), kind::PUBLISH | kind::CONNACK | kind::DISCONNECT) {
                continue;
            }
            let props = packet_props(pk);
            assert!(
                !has_prop(&props, p::REASON_STRING) && !has_prop(&props, p::USER_PROPERTY),
                "Request Problem Information = 0, yet {pk:?} carries {props:?}"
            );
        }
    });
}

/// Error acks may carry a Reason String (when problem information is allowed); if one is
/// there it must be a well-formed UTF-8 string property (parsing would fail otherwise).
#[test]
fn error_acks_may_carry_reason_string() {
    run_bounded(secs(30), || {
        let broker = Broker::start_sharded(&["--no-wildcard-subscriptions"]);
        let mut c = V5::connect(broker.port, "rs-ok", true);
        let a = c.subscribe_with(Props::new(), &[("rs/#", 1)]);
        assert_eq!(a.codes, vec![0xA2]);
        if let Some(v) = common::dec::prop(&a.props, p::REASON_STRING) {
            assert!(matches!(v, PropValue::Str(_)), "{v:?}");
        }
        let a = c
            .publish_ack(
                Publish::new("rs/t", [0xFF])
                    .qos(1)
                    .props(Props::new().byte(p::PAYLOAD_FORMAT, 1)),
            )
            .unwrap();
        assert_eq!(a.code(), 0x99);
        c.ping();
    });
}

/// CONNECT with an Authentication Method ringmq does not support -> CONNACK 0x8C and close.
#[test]
fn auth_method_refused_connack_0x8c() {
    run_bounded(secs(30), || {
        let broker = Broker::start_sharded(&[]);
        let c = Connect::v5("auth-m").props(
            Props::new()
                .str(p::AUTH_METHOD, "SCRAM-SHA-256")
                .bin(p::AUTH_DATA, b"client-first"),
        );
        let (mut conn, ack) = V5::try_connect(broker.port, &c);
        let ack = ack.expect("CONNACK");
        let (sp, rc, _) = parse_connack_v5(&ack);
        assert_eq!(rc, 0x8C, "Bad authentication method: {ack:?}");
        assert!(!sp);
        conn.expect_closed(SHORT, "after CONNACK 0x8C");
    });
}

/// An AUTH packet from a client that did not start authentication -> DISCONNECT 0x82.
#[test]
fn unsolicited_auth_disconnects_0x82() {
    run_bounded(secs(30), || {
        let broker = Broker::start_sharded(&[]);
        let mut c = V5::connect(broker.port, "auth-u", true);
        let _ = c.send(&enc::auth(0x18, &Props::new().str(p::AUTH_METHOD, "X")));
        let (rc, _) = c.expect_disconnect(SHORT, "unsolicited AUTH");
        assert_eq!(rc, 0x82);
    });
}

/// Published messages keep the exact payload bytes and Content Type together with the
/// subscriber's own Subscription Identifier (properties from publisher and broker merged).
#[test]
fn publisher_properties_and_subscription_id_combined() {
    run_bounded(secs(30), || {
        let broker = Broker::start_sharded(&[]);
        let mut s = V5::connect(broker.port, &client_id_on_shard("mix-s", 1, SHARDS), true);
        s.subscribe_with(Props::new().varint(p::SUBSCRIPTION_ID, 42), &[("mix/t", 2)]);
        let mut pb = V5::connect(broker.port, &client_id_on_shard("mix-p", 0, SHARDS), true);
        pb.publish_ack(
            Publish::new("mix/t", b"\x00\x01")
                .qos(2)
                .props(Props::new().str(p::CONTENT_TYPE, "bin").user("u", "1")),
        );
        let m = s.expect_pub(LONG);
        assert_eq!(texts(std::slice::from_ref(&m)), vec!["\u{0}\u{1}"]);
        assert_eq!(m.qos, 2);
        assert_eq!(m.sub_ids(), vec![42]);
        assert_eq!(m.prop(p::CONTENT_TYPE), Some(&PropValue::Str("bin".into())));
        assert_eq!(m.user_props(), vec![("u".to_string(), "1".to_string())]);
    });
}
