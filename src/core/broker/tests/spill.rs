//! Spilled queues: a durable session keeps `max_queued_in_memory` of its queued messages in
//! memory and the rest in the spill files, and gets every one of them, in order.

use super::deliveries::{go_away, id_on, payloads, recover};
use super::*;
use crate::core::store::{scan, Record};
use crate::harness::{Client, Cluster};

const IN_MEMORY: usize = 4;

fn spilling(shards: usize) -> Cluster {
    let limits = Limits {
        max_queued_in_memory: IN_MEMORY,
        ..Limits::default()
    };
    Cluster::new(shards, limits).configure(|b| b.with_journal().with_spill())
}

/// A durable subscriber to `t` (on `shard`) gone offline, and a publisher; returns their
/// clients and the log so far.
fn offline_subscriber(c: &mut Cluster, shard: usize) -> (String, Client, Vec<Record>) {
    let sub_id = id_on("sub", shard, c.len());
    let sub = c.connect(connect_packet(&sub_id, V4, false));
    c.subscribe(sub, "t", QoS::AtLeastOnce);
    let mut log = c.settle_committed();
    go_away(c, sub);
    let publisher = c.connect(connect_packet(&id_on("pub", 0, c.len()), V4, true));
    log.extend(c.settle_committed());
    c.packets(publisher);
    (sub_id, publisher, log)
}

fn publish_n(c: &mut Cluster, publisher: Client, n: u16) -> Vec<Record> {
    for i in 1..=n {
        let payload = format!("m{i}").into_bytes();
        c.send(
            publisher,
            Packet::Publish(Publish::new("t", &payload).with_qos(QoS::AtLeastOnce, i)),
        );
    }
    c.settle_committed()
}

fn spilled(c: &Cluster) -> usize {
    c.brokers().map(Broker::spilled_now).sum()
}

/// Takes every PUBLISH the client gets, acking each, until none comes; their payloads.
fn drain(c: &mut Cluster, client: Client) -> Vec<String> {
    let mut got = Vec::new();
    loop {
        c.settle_committed();
        let batch = payloads(&c.packets(client));
        if batch.is_empty() {
            return got;
        }
        for (payload, pkid, _) in batch {
            got.push(String::from_utf8(payload).unwrap());
            c.send(client, Packet::PubAck(Ack::new(pkid)));
        }
    }
}

fn expected(n: u16) -> Vec<String> {
    (1..=n).map(|i| format!("m{i}")).collect()
}

#[test]
fn an_offline_session_keeps_its_share_in_memory_and_the_rest_on_disk_then_gets_all_in_order() {
    for sub_shard in [0, 1] {
        let mut c = spilling(2);
        let (sub_id, publisher, _) = offline_subscriber(&mut c, sub_shard);
        publish_n(&mut c, publisher, 20);
        assert_eq!(
            spilled(&c),
            20 - IN_MEMORY,
            "subscriber on shard {sub_shard}"
        );
        assert_eq!(c.spill_frames(sub_shard), 20 - IN_MEMORY);
        let sub = c.connect(connect_packet(&sub_id, V4, false));
        assert_eq!(drain(&mut c, sub), expected(20));
        assert_eq!(spilled(&c), 0);
        assert_eq!(c.spill_frames(sub_shard), 0, "spill files emptied");
    }
}

#[test]
fn a_live_subscriber_keeps_its_backlog_in_memory_until_it_stalls_then_spills() {
    let mut c = spilling(1);
    let sub = c.connect(connect_packet("slow", V4, false));
    c.subscribe(sub, "t", QoS::AtLeastOnce);
    let publisher = c.connect(connect_packet("pub", V4, true));
    c.settle_committed();
    c.packets(sub);
    c.packets(publisher);
    // Nothing acked: the inflight window (256) fills, then the queue, in memory: flow
    // control bounds a subscriber that is keeping up.
    publish_n(&mut c, publisher, 300);
    assert_eq!(spilled(&c), 0);
    let first = payloads(&c.packets(sub));
    assert_eq!(first.len(), 256);
    // It takes nothing for the stall timeout: what comes next goes to disk.
    c.advance(Limits::default().stall_timeout + Duration::from_millis(1));
    for i in 301..=320 {
        let payload = format!("m{i}").into_bytes();
        c.send(
            publisher,
            Packet::Publish(Publish::new("t", &payload).with_qos(QoS::AtLeastOnce, i)),
        );
    }
    c.settle_committed();
    assert_eq!(spilled(&c), 20);
    for (_, pkid, _) in &first {
        c.send(sub, Packet::PubAck(Ack::new(*pkid)));
    }
    let mut got: Vec<String> = first
        .into_iter()
        .map(|(p, _, _)| String::from_utf8(p).unwrap())
        .collect();
    got.extend(drain(&mut c, sub));
    assert_eq!(got, expected(320));
    assert_eq!(spilled(&c), 0);
}

#[test]
fn a_snapshot_holds_spilled_messages_and_a_restart_spills_them_again() {
    let mut c = spilling(1);
    let (sub_id, publisher, mut log) = offline_subscriber(&mut c, 0);
    log.extend(publish_n(&mut c, publisher, 12));
    assert_eq!(spilled(&c), 12 - IN_MEMORY);
    // The snapshot as the shell writes it: the records, then the spilled messages' frames.
    let mut snapshot = c[0].snapshot_records();
    let frames = c.spill_frames_at(0, &c[0].spill_ranges());
    assert_eq!(frames.len(), 12 - IN_MEMORY);
    for frame in frames {
        snapshot.extend(scan(&frame).records);
    }
    let recovered = recover(snapshot);
    assert_eq!(recovered.sessions[sub_id.as_str()].owed.len(), 12);

    let mut after = spilling(1);
    after[0].restore(&recovered);
    after.settle_committed();
    assert_eq!(
        spilled(&after),
        12 - IN_MEMORY,
        "restored beyond the share: spilled"
    );
    let sub = after.connect(connect_packet(&sub_id, V4, false));
    assert_eq!(drain(&mut after, sub), expected(12));
}

#[test]
fn a_session_that_ends_lets_go_of_its_spilled_messages() {
    let mut c = spilling(1);
    let (sub_id, publisher, _) = offline_subscriber(&mut c, 0);
    publish_n(&mut c, publisher, 10);
    assert_eq!(c.spill_frames(0), 10 - IN_MEMORY);
    // A clean start ends the session.
    let sub = c.connect(connect_packet(&sub_id, V4, true));
    c.settle_committed();
    assert!(!connack(&c.packets(sub)).session_present);
    assert_eq!(spilled(&c), 0);
    assert_eq!(c.spill_frames(0), 0);
}

#[test]
fn a_message_owed_to_several_sessions_is_spilled_once() {
    let mut c = spilling(1);
    let mut ids = Vec::new();
    for n in 0..3 {
        let id = format!("sub{n}");
        let sub = c.connect(connect_packet(&id, V4, false));
        c.subscribe(sub, "t", QoS::AtLeastOnce);
        c.settle_committed();
        go_away(&mut c, sub);
        ids.push(id);
    }
    let publisher = c.connect(connect_packet("pub", V4, true));
    publish_n(&mut c, publisher, 10);
    assert_eq!(spilled(&c), 10 - IN_MEMORY);
    assert_eq!(c.spill_frames(0), 10 - IN_MEMORY);
    for id in ids {
        let sub = c.connect(connect_packet(&id, V4, false));
        assert_eq!(drain(&mut c, sub), expected(10), "{id}");
    }
    assert_eq!(c.spill_frames(0), 0);
}

#[test]
fn an_unreadable_spilled_message_is_dropped_counted_and_the_rest_flow() {
    let mut c = spilling(1);
    let (sub_id, publisher, _) = offline_subscriber(&mut c, 0);
    publish_n(&mut c, publisher, 8);
    c.corrupt_spill_frames(0);
    let sub = c.connect(connect_packet(&sub_id, V4, false));
    let got = drain(&mut c, sub);
    assert_eq!(got, expected(IN_MEMORY as u16), "the in-memory ones");
    assert_eq!(c[0].counters.dropped_spill_unreadable, 8 - IN_MEMORY as u64);
    assert_eq!(spilled(&c), 0);
}
