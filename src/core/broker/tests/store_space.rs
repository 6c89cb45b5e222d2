//! A full durable store (`--max-data-bytes`, a full disk): new QoS 1/2 publishes are refused,
//! not acknowledged without being on disk; what needs no room goes on.

use std::sync::Arc;

use super::*;
use crate::core::store::StoreSpace;
use crate::harness::Cluster;

fn journaled(space: &Arc<StoreSpace>) -> Cluster {
    let space = space.clone();
    Cluster::new(1, Limits::default())
        .configure(move |b| b.with_journal().with_store_space(space.clone()))
}

fn ack_reason(packets: &[Packet]) -> Vec<(u16, ReasonCode)> {
    packets
        .iter()
        .filter_map(|p| match p {
            Packet::PubAck(a) | Packet::PubRec(a) => Some((a.packet_id, a.reason)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_full_store_refuses_new_qos1_and_qos2_publishes_but_not_qos0_or_a_retransmission() {
    let space = Arc::new(StoreSpace::new(1, None));
    let mut c = journaled(&space);
    let durable = c.connect(connect_packet("durable", V4, false));
    c.subscribe(durable, "t", QoS::AtLeastOnce);
    let watcher = c.connect(connect_packet("watcher", V4, true));
    c.subscribe(watcher, "t", QoS::AtMostOnce);
    let v5 = c.connect(connect_packet("v5", V5, true));
    let v4 = c.connect(connect_packet("v4", V4, true));
    c.send(v5, publish_packet("t", b"taken", QoS::ExactlyOnce, 7));
    c.settle_committed();
    assert_eq!(ack_reason(&c.packets(v5)), [(7, ReasonCode::Success)]);
    c.packets(durable);
    c.packets(watcher);

    // The disk fills up: the log's next write fails.
    space.set_failing(0, true);
    c.send(v5, publish_packet("t", b"refused", QoS::AtLeastOnce, 1));
    c.send(v5, publish_packet("t", b"refused", QoS::ExactlyOnce, 2));
    // Refusals need nothing on disk: they leave without a commit.
    assert_eq!(
        ack_reason(&c.packets(v5)),
        [
            (1, ReasonCode::QuotaExceeded),
            (2, ReasonCode::QuotaExceeded)
        ]
    );
    // The resent copy of a message already taken is acknowledged: it adds nothing.
    let mut again = Publish::new("t", b"taken").with_qos(QoS::ExactlyOnce, 7);
    again.dup = true;
    c.send(v5, Packet::Publish(again));
    c.send(v5, publish_packet("t", b"qos0", QoS::AtMostOnce, 0));
    c.settle_committed();
    assert_eq!(ack_reason(&c.packets(v5)), [(7, ReasonCode::Success)]);
    let got = c.packets(watcher);
    let got: Vec<&[u8]> = publishes(&got).iter().map(|p| p.payload()).collect();
    assert_eq!(
        got,
        [&b"qos0"[..]],
        "QoS 0 goes on, nothing refused arrives"
    );
    let got = c.packets(durable);
    assert!(
        publishes(&got).iter().all(|p| p.payload() != b"refused"),
        "{got:?}"
    );
    // 3.x has no refusing ack: the connection closes and the client resends later.
    c.send(v4, publish_packet("t", b"refused", QoS::AtLeastOnce, 1));
    assert!(c[0].is_closing(v4.conn));
    assert!(ack_reason(&c.packets(v4)).is_empty());
    assert_eq!(c[0].counters.refused_store_full, 3);

    // Room again: taken again.
    space.set_failing(0, false);
    c.send(v5, publish_packet("t", b"after", QoS::AtLeastOnce, 3));
    c.settle_committed();
    assert_eq!(ack_reason(&c.packets(v5)), [(3, ReasonCode::Success)]);
    let got = c.packets(durable);
    assert!(publishes(&got).iter().any(|p| p.payload() == b"after"));
}

#[test]
fn over_max_data_bytes_is_full_too() {
    let space = Arc::new(StoreSpace::new(1, Some(1000)));
    let mut c = journaled(&space);
    let v5 = c.connect(connect_packet("v5", V5, true));
    space.set_used(0, 1000);
    c.send(v5, publish_packet("t", b"m", QoS::AtLeastOnce, 1));
    assert_eq!(ack_reason(&c.packets(v5)), [(1, ReasonCode::QuotaExceeded)]);
    space.set_used(0, 999);
    c.send(v5, publish_packet("t", b"m", QoS::AtLeastOnce, 2));
    c.settle_committed();
    assert_eq!(
        ack_reason(&c.packets(v5)),
        [(2, ReasonCode::NoMatchingSubscribers)]
    );
}

#[test]
fn a_session_that_ends_with_its_connection_gets_qos0_without_waiting_for_the_store() {
    let space = Arc::new(StoreSpace::new(1, None));
    let mut c = journaled(&space);
    let watcher = c.connect(connect_packet("watcher", V4, true));
    c.subscribe(watcher, "t", QoS::AtMostOnce);
    let durable = c.connect(connect_packet("durable", V4, false));
    c.subscribe(durable, "t", QoS::AtMostOnce);
    c.settle_committed();
    c.packets(durable);
    // Records wait for the log (a durable session's new subscription), the disk is slow.
    c.send(durable, subscribe_packet("u", QoS::AtLeastOnce));
    let publisher = c.connect(connect_packet("pub", V4, true));
    c.send(publisher, publish_packet("t", b"now", QoS::AtMostOnce, 0));
    c.settle();
    let got = c.packets(watcher);
    assert_eq!(publishes(&got).len(), 1, "held for someone else's record");
    assert!(
        c.packets(durable).is_empty(),
        "a durable session's output waits for the records before it"
    );
    c.commit();
    assert_eq!(publishes(&c.packets(durable)).len(), 1);
}

#[test]
fn qos0_deliveries_and_route_changes_between_shards_do_not_wait_for_the_store() {
    let space = Arc::new(StoreSpace::new(2, None));
    let space2 = space.clone();
    let mut c = Cluster::new(2, Limits::default())
        .configure(move |b| b.with_journal().with_store_space(space2.clone()));
    let durable = c.connect_on(0, connect_packet("durable", V4, false));
    c.settle_committed();
    c.packets(durable);
    // Shard 0 has a record that is not on disk (the disk is slow, or full).
    c.send(durable, subscribe_packet("u", QoS::AtLeastOnce));
    // A clean subscriber on shard 1: its route reaches shard 0, its SUBACK comes back.
    let watcher = c.connect_on(1, connect_packet("watcher", V4, true));
    c.subscribe(watcher, "q", QoS::AtMostOnce);
    c.settle();
    let got = c.packets(watcher);
    assert!(
        got.iter().any(|p| matches!(p, Packet::SubAck(_))),
        "{got:?}"
    );
    let publisher = c.connect_on(0, connect_packet("pub", V4, true));
    c.send(publisher, publish_packet("q", b"now", QoS::AtMostOnce, 0));
    c.settle();
    assert_eq!(publishes(&c.packets(watcher)).len(), 1);
    // A QoS 1 one waits for shard 0's records, as the publisher's PUBACK does.
    c.send(
        publisher,
        publish_packet("q", b"later", QoS::AtLeastOnce, 1),
    );
    c.settle();
    assert!(publishes(&c.packets(watcher)).is_empty());
    c.settle_committed();
    assert_eq!(publishes(&c.packets(watcher)).len(), 1);
}
