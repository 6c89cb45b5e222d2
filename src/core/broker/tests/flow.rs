//! Flow control: a connected subscriber that is behind holds back the QoS 1/2 publishers
//! that feed it (here or on another shard) instead of dropping what they were acknowledged;
//! a stalled or offline one holds no one; QoS 0 never holds anyone.

use super::*;
use crate::harness::Client;

const MAX_QUEUED: usize = 100;

fn limits() -> Limits {
    Limits {
        max_inflight: 10,
        max_queued_messages: MAX_QUEUED,
        ..Limits::default()
    }
}

fn publishes_bytes(topic: &str, n: u16, qos: QoS) -> BytesMut {
    let mut out = BytesMut::new();
    for i in 1..=n {
        let publish = Publish::new(topic, &i.to_be_bytes()).with_qos(qos, i);
        encode(&Packet::Publish(publish), V4, &mut out).unwrap();
    }
    out
}

/// Acks every PUBLISH in `packets` (QoS 1); returns their payloads.
fn ack_all(c: &mut Cluster, client: Client, packets: &[Packet]) -> Vec<u16> {
    let mut got = Vec::new();
    for p in publishes(packets) {
        got.push(u16::from_be_bytes(p.payload()[..2].try_into().unwrap()));
        c.send(client, Packet::PubAck(Ack::new(p.packet_id)));
    }
    got
}

fn pubacks(packets: &[Packet]) -> usize {
    packets
        .iter()
        .filter(|p| matches!(p, Packet::PubAck(_)))
        .count()
}

fn dropped(c: &Cluster) -> u64 {
    c.brokers().map(|b| b.counters.dropped()).sum()
}

#[test]
fn a_subscriber_behind_its_publisher_holds_it_and_loses_nothing() {
    let mut c = Cluster::new(1, limits());
    let sub = c.connect(connect_packet("sub", V4, true));
    c.subscribe(sub, "t", QoS::AtLeastOnce);
    let publisher = c.connect(connect_packet("pub", V4, true));
    c.settle();
    c.packets(sub);
    c.packets(publisher);
    // 1,000 messages in one read: ten times the subscriber's queue.
    let mut wire = publishes_bytes("t", 1000, QoS::AtLeastOnce);
    c.receive(publisher, &mut wire);
    assert!(!wire.is_empty(), "the broker stopped taking PUBLISHes");
    assert!(matches!(
        c[0].read_pause(publisher.conn),
        Some(ReadPause::Subscriber { .. })
    ));
    let acked = pubacks(&c.packets(publisher));
    let (high, _) = limits().queue_high_water();
    assert!(
        acked <= high + 10 + 1,
        "{acked} acknowledged ahead of the subscriber"
    );
    assert!(!c[0].take_eased());
    // The subscriber reads and acks: the backlog eases, the rest comes in.
    let packets = c.packets(sub);
    let mut all = ack_all(&mut c, sub, &packets);
    assert_eq!(all.len(), 10, "its inflight window");
    while !wire.is_empty() || all.len() < 1000 {
        c.receive(publisher, &mut wire);
        let packets = c.packets(sub);
        let more = ack_all(&mut c, sub, &packets);
        assert!(
            !more.is_empty() || !wire.is_empty(),
            "stuck at {}",
            all.len()
        );
        all.extend(more);
    }
    assert_eq!(
        all,
        (1..=1000).collect::<Vec<u16>>(),
        "every message, once, in order"
    );
    assert_eq!(dropped(&c), 0);
    assert!(c[0].counters.publishers_held > 0);
}

#[test]
fn a_stalled_subscriber_holds_no_one_and_its_excess_is_counted() {
    let mut c = Cluster::new(1, limits());
    let stuck = c.connect(connect_packet("stuck", V4, true));
    let healthy = c.connect(connect_packet("healthy", V4, true));
    c.subscribe(stuck, "t", QoS::AtLeastOnce);
    c.subscribe(healthy, "t", QoS::AtLeastOnce);
    let publisher = c.connect(connect_packet("pub", V4, true));
    c.packets(stuck);
    let mut wire = publishes_bytes("t", 500, QoS::AtLeastOnce);
    let mut got = Vec::new();
    c.receive(publisher, &mut wire);
    assert!(
        !wire.is_empty(),
        "held while the stuck one might just be slow"
    );
    let packets = c.packets(healthy);
    got.extend(ack_all(&mut c, healthy, &packets));
    // It takes nothing for the stall timeout (the healthy one goes on): it holds no one
    // from then on.
    for _ in 0..=limits().stall_timeout.as_millis() / 100 {
        c.advance(Duration::from_millis(100));
        let packets = c.packets(healthy);
        got.extend(ack_all(&mut c, healthy, &packets));
    }
    assert_eq!(c[0].read_pause(publisher.conn), None);
    for _ in 0..1000 {
        c.receive(publisher, &mut wire);
        let packets = c.packets(healthy);
        got.extend(ack_all(&mut c, healthy, &packets));
        if wire.is_empty() && got.len() == 500 {
            break;
        }
    }
    assert_eq!(
        got,
        (1..=500).collect::<Vec<u16>>(),
        "the healthy one gets everything"
    );
    let c0 = &c[0].counters;
    assert_eq!(
        c0.dropped_queue_full,
        (500 - 10 - MAX_QUEUED) as u64,
        "the stuck one keeps its window and its queue; the rest is counted"
    );
}

#[test]
fn qos0_never_holds_a_publisher_and_drops_past_the_high_water_mark() {
    let mut c = Cluster::new(1, limits());
    let slow = c.connect(connect_packet("slow", V4, true));
    c.subscribe(slow, "t", QoS::AtLeastOnce);
    let publisher = c.connect(connect_packet("pub", V4, true));
    c.packets(slow);
    // Fill the link so that deliveries queue.
    let mut wire = BytesMut::new();
    for _ in 0..2000 {
        let publish = Publish::new("t", &[0u8; 1024]);
        encode(&Packet::Publish(publish), V4, &mut wire).unwrap();
    }
    c.receive(publisher, &mut wire);
    assert!(wire.is_empty(), "QoS 0 is never held");
    assert_eq!(c[0].read_pause(publisher.conn), None);
    assert!(c[0].counters.dropped_queue_full > 0);
    // What QoS 0 left room for: QoS 1 messages still queue.
    let mut wire = publishes_bytes("t", 10, QoS::AtLeastOnce);
    let dropped_before = c[0].counters.dropped_queue_full;
    c.receive(publisher, &mut wire);
    assert_eq!(c[0].counters.dropped_queue_full, dropped_before);
}

#[test]
fn a_subscriber_behind_on_another_shard_holds_the_peer_and_loses_nothing() {
    let mut c = Cluster::new(2, limits());
    let sub = c.connect_on(1, connect_packet("sub", V4, true));
    c.subscribe(sub, "t", QoS::AtLeastOnce);
    let publisher = c.connect_on(0, connect_packet("pub", V4, true));
    c.settle();
    c.packets(sub);
    let mut wire = publishes_bytes("t", 2000, QoS::AtLeastOnce);
    c.receive(publisher, &mut wire);
    assert!(
        wire.is_empty(),
        "shard 0 takes them: the subscriber is elsewhere"
    );
    c.settle();
    let now = c.now();
    assert!(
        c[1].mesh_hold(0, now).is_some(),
        "shard 1 holds shard 0 back"
    );
    assert!(c[0].outbox_len() > 0, "the rest waits in shard 0's outbox");
    let mut got = Vec::new();
    for _ in 0..10_000 {
        let packets = c.packets(sub);
        got.extend(ack_all(&mut c, sub, &packets));
        c.settle();
        if got.len() == 2000 {
            break;
        }
    }
    assert_eq!(got, (1..=2000).collect::<Vec<u16>>());
    assert_eq!(dropped(&c), 0);
}

#[test]
fn a_shared_group_sends_past_a_member_that_is_behind() {
    let mut c = Cluster::new(1, limits());
    let slow = c.connect(connect_packet("slow", V5, true));
    let quick = c.connect(connect_packet("quick", V5, true));
    for member in [slow, quick] {
        c.send(member, subscribe_v5_packet("$share/g/t", qos1(), None));
    }
    let publisher = c.connect(connect_packet("pub", V4, true));
    c.packets(slow);
    c.packets(quick);
    let mut wire = publishes_bytes("t", 1000, QoS::AtLeastOnce);
    let mut quick_got = 0;
    for _ in 0..1000 {
        c.receive(publisher, &mut wire);
        let packets = c.packets(quick);
        quick_got += ack_all(&mut c, quick, &packets).len();
        if wire.is_empty() {
            break;
        }
    }
    assert!(
        wire.is_empty(),
        "the group took everything: one member had room"
    );
    let slow_got = publishes(&c.packets(slow)).len();
    assert_eq!(slow_got, 10, "the slow one's window");
    // Only while the quick one was behind too did the slow one get more (the least behind
    // gets the next message), and nothing held the group back for the slow one.
    assert!(quick_got >= 900, "quick got {quick_got}");
    assert_eq!(dropped(&c), 0);
}
