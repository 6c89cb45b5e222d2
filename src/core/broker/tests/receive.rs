//! Bytes in: framing, the decoder per version, and the hand-off decision of the first packet.

use super::*;
use crate::core::home_shard;

fn connect_bytes(client_id: &str, version: ProtocolVersion) -> BytesMut {
    let connect = connect_packet(client_id, version, true);
    let mut out = BytesMut::new();
    encode(&Packet::Connect(Box::new(connect)), version, &mut out).unwrap();
    out
}

/// A client id whose session lives on `shard` of 2.
fn id_homed_on(shard: usize) -> String {
    (0..)
        .map(|n| format!("c{n}"))
        .find(|id| home_shard(id.as_bytes(), 2) == shard)
        .unwrap()
}

#[test]
fn a_connect_for_another_shard_is_handed_over_whole_and_untouched() {
    let mut h = Harness::with(0, 2);
    let id = h.broker.open(h.now);
    let wire = connect_bytes(&id_homed_on(1), ProtocolVersion::V3_1_1);
    // Half a CONNECT: nothing is decided, nothing taken.
    let mut buf = BytesMut::from(&wire[..wire.len() / 2]);
    assert_eq!(h.broker.receive(id, &mut buf, h.now), Receive::Continue);
    assert_eq!(buf.len(), wire.len() / 2);
    assert_eq!(h.broker.connection_count(), 1);
    buf.extend_from_slice(&wire[wire.len() / 2..]);
    assert_eq!(h.broker.receive(id, &mut buf, h.now), Receive::HandOff(1));
    assert_eq!(buf, wire, "the home shard gets every byte read");
    assert_eq!(
        h.broker.census(),
        Census::default(),
        "forgotten without a trace"
    );
    assert_eq!(h.broker.counters.connections_opened, 0);

    // The home shard adopts it and serves it from those bytes.
    let mut home = Harness::with(1, 2);
    let adopted = home.broker.adopt(home.now);
    assert_eq!(
        home.broker.receive(adopted, &mut buf, home.now),
        Receive::Continue
    );
    assert!(buf.is_empty());
    assert_eq!(connack(&home.received(adopted)).code, ReasonCode::Success);
}

#[test]
fn a_connect_for_this_shard_and_what_follows_it_are_served_in_one_go() {
    let mut h = Harness::with(0, 2);
    let id = h.broker.open(h.now);
    let mut buf = connect_bytes(&id_homed_on(0), ProtocolVersion::V5);
    encode(&Packet::PingReq, ProtocolVersion::V5, &mut buf).unwrap();
    assert_eq!(h.broker.receive(id, &mut buf, h.now), Receive::Continue);
    assert!(buf.is_empty());
    let packets = h.received(id);
    assert_eq!(connack(&packets).code, ReasonCode::Success);
    assert!(
        matches!(packets.last(), Some(Packet::PingResp)),
        "{packets:?}"
    );
}

#[test]
fn an_adopted_connection_or_an_empty_client_id_is_never_handed_on() {
    let mut h = Harness::with(0, 2);
    // Adopted, even if (wrongly) homed elsewhere: no ping-pong between shards.
    let adopted = h.broker.adopt(h.now);
    let mut buf = connect_bytes(&id_homed_on(1), ProtocolVersion::V3_1_1);
    assert_eq!(
        h.broker.receive(adopted, &mut buf, h.now),
        Receive::Continue
    );
    assert_eq!(connack(&h.received(adopted)).code, ReasonCode::Success);
    // An empty client id gets one assigned here.
    let id = h.broker.open(h.now);
    let mut buf = connect_bytes("", ProtocolVersion::V5);
    assert_eq!(h.broker.receive(id, &mut buf, h.now), Receive::Continue);
    assert_eq!(connack(&h.received(id)).code, ReasonCode::Success);
}

#[test]
fn bad_first_bytes_are_refused_here_and_the_rest_discarded() {
    let mut h = Harness::with(0, 2);
    let id = h.broker.open(h.now);
    // A PUBLISH first: the connection closes without a word (MQTT-3.1.0-1).
    let mut buf = BytesMut::from(&[0x30, 0x03, 0x00, 0x01, b't', 0x30][..]);
    assert_eq!(h.broker.receive(id, &mut buf, h.now), Receive::Continue);
    assert!(h.is_closing(id));
    assert!(buf.is_empty(), "input after the broker closed is discarded");
    let mut more = BytesMut::from(&[0xc0, 0x00][..]);
    assert_eq!(h.broker.receive(id, &mut more, h.now), Receive::Continue);
    assert!(more.is_empty());
}

#[test]
fn the_maximum_packet_size_applies_from_the_first_byte() {
    let now = Instant::now();
    let limits = Limits {
        max_packet_size: 64,
        ..Limits::default()
    };
    let mut h = Harness {
        broker: Broker::new(0, 2, limits, now),
        now,
    };
    let id = h.broker.open(h.now);
    // Only the fixed header of a CONNECT claiming 1,000 bytes has arrived.
    let mut buf = BytesMut::from(&[0x10, 0xe8, 0x07][..]);
    assert_eq!(h.broker.receive(id, &mut buf, h.now), Receive::Continue);
    assert!(h.is_closing(id), "refused before the rest is read");
}

#[test]
fn a_connection_that_sends_nothing_is_closed_at_the_connect_timeout() {
    let mut h = Harness::with(0, 2);
    let id = h.broker.open(h.now);
    let timeout = h.broker.limits().connect_timeout;
    assert_eq!(h.broker.next_deadline(), Some(h.now + timeout));
    h.now += timeout / 2;
    h.broker.tick(h.now);
    assert!(!h.is_closing(id));
    h.now += timeout;
    h.broker.tick(h.now);
    assert!(h.is_closing(id));
}
