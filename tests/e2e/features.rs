//! Features the flags switch off, as a 5.0 client sees them: `--no-wildcard-subscriptions`,
//! `--no-shared-subscriptions`, `--no-subscription-identifiers`, `--no-retain` and `--max-qos`.

use crate::common::enc::{self, p, sub_opts, Props, Publish};
use crate::common::raw::{LONG, SHORT};
use crate::common::v5::V5;
use crate::common::{run_bounded, secs, Broker};
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
