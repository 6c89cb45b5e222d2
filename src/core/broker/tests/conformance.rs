//! Conformance fixes (issue 16): a clean session taken over, a refusing PUBREC, bridges.

use super::*;

#[test]
fn a_clean_session_taken_over_by_a_persistent_connect_is_a_new_session() {
    let mut h = Harness::new();
    let a = h.connect("id", true, V4);
    h.subscribe(a, "t", QoS::AtMostOnce);
    h.received(a);
    let b = h.connect("id", false, V4);
    assert!(!connack(&h.received(b)).session_present);
    assert!(h.is_closing(a), "the old connection is taken over");
    // A's subscription went with its session.
    let publisher = h.connect("pub", true, V4);
    h.publish(publisher, "t", b"x", QoS::AtMostOnce, 0, false);
    assert!(publishes(&h.received(b)).is_empty());
    // A persistent session taken over is resumed, as before.
    let c = h.connect("id", false, V4);
    assert!(connack(&h.received(c)).session_present);
    // 5.0: Clean Start 0 without a Session Expiry Interval ends with its connection too.
    let d = h.connect("id5", false, V5);
    h.received(d);
    let e = h.connect("id5", false, V5);
    assert!(!connack(&h.received(e)).session_present);
}

#[test]
fn a_refusing_pubrec_frees_the_packet_id_and_the_window_without_a_pubrel() {
    let mut h = Harness::new();
    let sub = h.broker.open(h.now);
    let mut connect = connect_packet("sub", V5, true);
    connect.properties.receive_maximum = Some(1);
    h.send(sub, Packet::Connect(Box::new(connect)));
    h.subscribe(sub, "t", QoS::ExactlyOnce);
    h.received(sub);
    let publisher = h.connect("pub", true, V5);
    h.publish(publisher, "t", b"refused", QoS::ExactlyOnce, 1, false);
    h.publish(publisher, "t", b"next", QoS::ExactlyOnce, 2, false);
    let got = h.received(sub);
    let first = publishes(&got);
    assert_eq!(first.len(), 1, "window of 1");
    let pkid = first[0].packet_id;
    h.send(
        sub,
        Packet::PubRec(Ack {
            packet_id: pkid,
            reason: ReasonCode::UnspecifiedError,
            properties: Default::default(),
        }),
    );
    let got = h.received(sub);
    assert!(
        !got.iter().any(|p| matches!(p, Packet::PubRel(_))),
        "{got:?}"
    );
    assert_eq!(publishes(&got)[0].payload(), b"next");
}

#[test]
fn a_bridge_gets_no_echo_of_its_messages_and_retain_as_published() {
    let mut h = Harness::new();
    let bridge = h.broker.open(h.now);
    let connect = Connect {
        bridge: true,
        ..connect_packet("bridge", V4, true)
    };
    h.send(bridge, Packet::Connect(Box::new(connect)));
    h.subscribe(bridge, "b/#", QoS::AtLeastOnce);
    h.received(bridge);
    h.publish(bridge, "b/own", b"own", QoS::AtMostOnce, 0, false);
    let other = h.connect("other", true, V4);
    h.publish(other, "b/other", b"other", QoS::AtMostOnce, 0, true);
    let got = h.received(bridge);
    let got = publishes(&got);
    assert_eq!(got.len(), 1, "its own message echoed: {got:?}");
    assert_eq!(got[0].payload(), b"other");
    assert!(got[0].retain, "retain as published");
    // A plain 3.1.1 subscriber gets a live message with RETAIN 0.
    let plain = h.connect("plain", true, V4);
    h.subscribe(plain, "b/#", QoS::AtMostOnce);
    h.received(plain);
    h.publish(other, "b/again", b"again", QoS::AtMostOnce, 0, true);
    assert!(!publishes(&h.received(plain))[0].retain);
}
