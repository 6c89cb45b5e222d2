//! MQTT 5 properties: message properties passing through (request / response, publisher
//! properties with a Subscription Identifier), Payload Format Indicator checks, Request Problem
//! Information and reason strings on error acks.

use crate::common;
use crate::common::dec::{has_prop, packet_props, texts, PropValue};
use crate::common::enc::{kind, p, Connect, Props, Publish};
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
