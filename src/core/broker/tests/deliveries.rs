//! Durable deliveries: what a durable session is owed survives a restart, and acks mean
//! "on disk" on every shard involved.

use super::*;
use crate::core::home_shard;
use crate::core::store::{Record, Recovered};
use crate::harness::{Client, Cluster};

fn journaled(shards: usize) -> Cluster {
    Cluster::new(shards, Limits::default()).configure(Broker::with_journal)
}

/// A client id whose session is homed on `shard` of `shards`.
pub(super) fn id_on(prefix: &str, shard: usize, shards: usize) -> String {
    (0..)
        .map(|n| format!("{prefix}-{n}"))
        .find(|id| home_shard(id.as_bytes(), shards) == shard)
        .expect("some id lands on every shard")
}

/// The state every shard's log adds up to, as the server recovers it.
pub(super) fn recover(log: Vec<Record>) -> Recovered {
    let mut recovered = Recovered::default();
    recovered.apply(log);
    recovered.prune();
    recovered
}

/// A fresh cluster restored from `recovered`, as after a restart: each shard at its own
/// instant, as the server's shards do.
fn restart(shards: usize, recovered: &Recovered) -> Cluster {
    let mut c = journaled(shards);
    for s in 0..c.len() {
        c.advance(Duration::from_millis(1));
        c[s].restore(recovered);
    }
    c.settle_committed();
    c
}

pub(super) fn go_away(c: &mut Cluster, client: Client) {
    let now = c.now();
    c[client.shard].closed(client.conn, now);
    c.settle_committed();
}

pub(super) fn payloads(packets: &[Packet]) -> Vec<(Vec<u8>, u16, bool)> {
    publishes(packets)
        .iter()
        .map(|p| (p.payload().to_vec(), p.packet_id, p.dup))
        .collect()
}

fn acks(packets: &[Packet]) -> usize {
    packets
        .iter()
        .filter(|p| matches!(p, Packet::PubAck(_)))
        .count()
}

#[test]
fn five_messages_queued_for_an_offline_session_on_another_shard_survive_a_restart() {
    let mut log = Vec::new();
    let mut before = journaled(2);
    let (sub_id, pub_id) = (id_on("sub", 1, 2), id_on("pub", 0, 2));
    let sub = before.connect(connect_packet(&sub_id, V4, false));
    before.subscribe(sub, "t/#", QoS::AtLeastOnce);
    log.extend(before.settle_committed());
    go_away(&mut before, sub);
    let publisher = before.connect(connect_packet(&pub_id, V4, true));
    log.extend(before.settle_committed());
    before.packets(publisher);
    const FIVE: [&[u8]; 5] = [b"1", b"2", b"3", b"4", b"5"];
    for (n, payload) in FIVE.into_iter().enumerate() {
        before.send(
            publisher,
            publish_packet("t/x", payload, QoS::AtLeastOnce, n as u16 + 1),
        );
    }
    before.settle();
    assert_eq!(
        acks(&before.packets(publisher)),
        0,
        "PUBACK before the subscriber's shard has the messages on disk"
    );
    log.extend(before.settle_committed());
    assert_eq!(acks(&before.packets(publisher)), 5);

    let mut after = restart(2, &recover(log));
    let sub = after.connect(connect_packet(&sub_id, V4, false));
    after.settle_committed();
    let got = after.packets(sub);
    assert!(connack(&got).session_present);
    let want: Vec<_> = FIVE
        .iter()
        .zip(1..)
        .map(|(p, id)| (p.to_vec(), id, false))
        .collect();
    assert_eq!(payloads(&got), want);
}

#[test]
fn in_flight_messages_come_back_with_their_packet_ids_and_dup_and_acked_ones_do_not() {
    let mut log = Vec::new();
    let mut before = journaled(1);
    let sub = before.connect(connect_packet("sub", V4, false));
    before.subscribe(sub, "t", QoS::ExactlyOnce);
    let publisher = before.connect(connect_packet("pub", V4, true));
    log.extend(before.settle_committed());
    before.packets(sub);
    let messages: [(&'static [u8], QoS); 4] = [
        (b"acked", QoS::AtLeastOnce),
        (b"unacked", QoS::AtLeastOnce),
        (b"received", QoS::ExactlyOnce),
        (b"sent", QoS::ExactlyOnce),
    ];
    for (n, (payload, qos)) in messages.into_iter().enumerate() {
        before.send(publisher, publish_packet("t", payload, qos, n as u16 + 1));
    }
    log.extend(before.settle_committed());
    let got = payloads(&before.packets(sub));
    assert_eq!(got.len(), 4, "{got:?}");
    before.send(sub, Packet::PubAck(Ack::new(got[0].1)));
    before.send(sub, Packet::PubRec(Ack::new(got[2].1)));
    log.extend(before.settle_committed());
    assert_eq!(
        before.packets(sub),
        [Packet::PubRel(Ack::new(got[2].1))],
        "PUBREL for the received one"
    );
    // The broker dies here, the subscriber's connection with it.

    let mut after = restart(1, &recover(log.clone()));
    let sub = after.connect(connect_packet("sub", V4, false));
    after.settle_committed();
    let again = after.packets(sub);
    assert_eq!(
        payloads(&again),
        [
            (b"unacked".to_vec(), got[1].1, true),
            (b"sent".to_vec(), got[3].1, true)
        ],
        "{again:?}"
    );
    assert!(
        again.contains(&Packet::PubRel(Ack::new(got[2].1))),
        "the PUBREL is resent, not the message: {again:?}"
    );
    // Completing them leaves nothing owed for a second restart.
    after.send(sub, Packet::PubAck(Ack::new(got[1].1)));
    after.send(sub, Packet::PubComp(Ack::new(got[2].1)));
    after.send(sub, Packet::PubRec(Ack::new(got[3].1)));
    after.send(sub, Packet::PubComp(Ack::new(got[3].1)));
    log.extend(after.settle_committed());
    let twice = recover(log);
    assert!(twice.sessions["sub"].owed.is_empty(), "{twice:?}");
    assert!(twice.messages.is_empty());
}

#[test]
fn a_restart_after_the_messages_were_acknowledged_owes_nothing() {
    let mut log = Vec::new();
    let mut before = journaled(2);
    let sub = before.connect(connect_packet(&id_on("sub", 0, 2), V4, false));
    before.subscribe(sub, "t", QoS::AtLeastOnce);
    let publisher = before.connect(connect_packet(&id_on("pub", 1, 2), V4, true));
    log.extend(before.settle_committed());
    before.packets(sub);
    for n in 1..=3 {
        before.send(publisher, publish_packet("t", b"m", QoS::AtLeastOnce, n));
    }
    log.extend(before.settle_committed());
    for (_, pkid, _) in payloads(&before.packets(sub)) {
        before.send(sub, Packet::PubAck(Ack::new(pkid)));
    }
    log.extend(before.settle_committed());
    let recovered = recover(log);
    assert!(recovered.messages.is_empty(), "{:?}", recovered.messages);
    assert!(recovered.sessions.values().all(|s| s.owed.is_empty()));
}

#[test]
fn a_qos2_message_reaches_another_shard_only_once_its_receipt_is_on_disk() {
    let mut c = journaled(2);
    let sub = c.connect(connect_packet(&id_on("sub", 1, 2), V4, true));
    c.subscribe(sub, "t", QoS::ExactlyOnce);
    let publisher = c.connect(connect_packet(&id_on("pub", 0, 2), V4, false));
    c.settle_committed();
    c.packets(sub);
    c.send(publisher, publish_packet("t", b"once", QoS::ExactlyOnce, 9));
    c.settle();
    assert!(
        payloads(&c.packets(sub)).is_empty(),
        "delivered while a crash could still forget the PUBREC state"
    );
    c.settle_committed();
    assert_eq!(payloads(&c.packets(sub)).len(), 1);
}

#[test]
fn clean_sessions_and_qos0_make_no_delivery_records() {
    let mut c = journaled(1);
    let durable = c.connect(connect_packet("durable", V4, false));
    c.subscribe(durable, "zero", QoS::AtMostOnce);
    let clean = c.connect(connect_packet("clean", V4, true));
    c.subscribe(clean, "one", QoS::AtLeastOnce);
    c.settle_committed();
    c.send(clean, publish_packet("zero", b"0", QoS::AtLeastOnce, 1));
    c.send(durable, publish_packet("one", b"1", QoS::AtLeastOnce, 1));
    let log = c.settle_committed();
    assert!(log.is_empty(), "{log:?}");
}

/// A QoS 2 message from a durable publisher on shard 0 to a durable subscriber on shard 1;
/// the broker dies before the subscriber's shard commits (or after, and after the subscriber
/// completed the flow) and the publisher, which never saw
/// its PUBREC, resends it after the restart. The subscriber must end up with it exactly once.
fn qos2_resend_after_a_crash(subscriber_completes: bool) -> usize {
    let mut log = Vec::new();
    let mut before = journaled(2);
    let (sub_id, pub_id) = (id_on("sub", 1, 2), id_on("pub", 0, 2));
    let sub = before.connect(connect_packet(&sub_id, V4, false));
    before.subscribe(sub, "t", QoS::ExactlyOnce);
    let publisher = before.connect(connect_packet(&pub_id, V4, false));
    log.extend(before.settle_committed());
    before.packets(sub);
    before.packets(publisher);
    before.send(publisher, publish_packet("t", b"once", QoS::ExactlyOnce, 7));
    // The publisher's shard commits its receipt; only then does the message go on.
    let (records, through) = before[0].take_records();
    log.extend(records);
    before[0].committed(through);
    before.exchange();
    let mut received = 0;
    if subscriber_completes {
        log.extend(before.settle_committed());
        let got = payloads(&before.packets(sub));
        received += got.len();
        before.send(sub, Packet::PubRec(Ack::new(got[0].1)));
        log.extend(before.settle_committed());
        before.send(sub, Packet::PubComp(Ack::new(got[0].1)));
        log.extend(before.settle_committed());
    }
    // The broker dies; the publisher's PUBREC may or may not have left: it resends.

    let mut after = restart(2, &recover(log));
    let sub = after.connect(connect_packet(&sub_id, V4, false));
    let publisher = after.connect(connect_packet(&pub_id, V4, false));
    after.settle_committed();
    let mut resent = Publish::new("t", b"once").with_qos(QoS::ExactlyOnce, 7);
    resent.dup = true;
    after.send(publisher, Packet::Publish(resent));
    after.settle_committed();
    after.send(publisher, Packet::PubRel(Ack::new(7)));
    after.settle_committed();
    // Each distinct packet id after the restart is one more delivery to the application.
    let again: std::collections::HashSet<u16> = payloads(&after.packets(sub))
        .into_iter()
        .map(|(payload, pkid, _)| {
            assert_eq!(payload, b"once");
            pkid
        })
        .collect();
    received += again.len();
    let pubcomp = after.packets(publisher);
    assert!(
        pubcomp.contains(&Packet::PubComp(Ack::new(7))),
        "{pubcomp:?}"
    );
    received
}

#[test]
fn a_qos2_message_lost_with_the_subscriber_shard_is_delivered_from_the_publisher_resend() {
    assert_eq!(qos2_resend_after_a_crash(false), 1);
}

#[test]
fn a_qos2_message_a_subscriber_got_before_the_crash_is_not_delivered_again() {
    assert_eq!(qos2_resend_after_a_crash(true), 1);
}

#[test]
fn a_snapshot_of_each_shard_recovers_what_its_whole_log_does() {
    let mut log = Vec::new();
    let mut c = journaled(2);
    let (sub_id, pub_id) = (id_on("sub", 1, 2), id_on("pub", 0, 2));
    let sub = c.connect(connect_packet(&sub_id, V4, false));
    c.subscribe(sub, "t/#", QoS::ExactlyOnce);
    let publisher = c.connect(connect_packet(&pub_id, V4, false));
    log.extend(c.settle_committed());
    c.packets(sub);
    let mut retained = Publish::new("r/1", b"kept").with_qos(QoS::AtLeastOnce, 1);
    retained.retain = true;
    c.send(publisher, Packet::Publish(retained));
    for (n, qos) in [
        (2, QoS::AtLeastOnce),
        (3, QoS::ExactlyOnce),
        (4, QoS::ExactlyOnce),
    ] {
        c.send(publisher, publish_packet("t/x", b"m", qos, n));
    }
    log.extend(c.settle_committed());
    // One acknowledged, one PUBREC'd, one completed whose publisher holds back its PUBREL
    // (the session keeps its receipt).
    let got = payloads(&c.packets(sub));
    c.send(sub, Packet::PubAck(Ack::new(got[0].1)));
    c.send(sub, Packet::PubRec(Ack::new(got[1].1)));
    c.send(sub, Packet::PubRec(Ack::new(got[2].1)));
    c.send(publisher, Packet::PubRel(Ack::new(3)));
    log.extend(c.settle_committed());
    c.send(sub, Packet::PubComp(Ack::new(got[2].1)));
    log.extend(c.settle_committed());
    go_away(&mut c, sub);
    c.send(
        publisher,
        publish_packet("t/y", b"queued", QoS::AtLeastOnce, 5),
    );
    log.extend(c.settle_committed());

    let mut compacted: Vec<Record> = (0..2).flat_map(|s| c[s].snapshot_records()).collect();
    assert!(
        compacted.len() < log.len(),
        "{} records against {}",
        compacted.len(),
        log.len()
    );
    // And life goes on after the snapshot.
    c.send(
        publisher,
        publish_packet("t/z", b"after", QoS::AtLeastOnce, 6),
    );
    let after = c.settle_committed();
    log.extend(after.clone());
    compacted.extend(after);

    let (whole, snapshot) = (recover(log), recover(compacted));
    assert_eq!(snapshot.sessions, whole.sessions);
    assert_eq!(snapshot.retained, whole.retained);
    assert_eq!(snapshot.messages, whole.messages);
    let owed = &whole.sessions[sub_id.as_str()].owed;
    assert_eq!(owed.len(), 3, "{owed:?}");
    assert_eq!(whole.sessions[sub_id.as_str()].receipts.len(), 1);
}

#[test]
fn two_shards_publishing_to_each_others_durable_subscribers_both_get_their_acks() {
    let mut c = journaled(2);
    let subs = [id_on("sub", 0, 2), id_on("sub", 1, 2)];
    let pubs = [id_on("pub", 0, 2), id_on("pub", 1, 2)];
    let subs: Vec<Client> = subs
        .iter()
        .zip(["to/0", "to/1"])
        .map(|(id, topic)| {
            let sub = c.connect(connect_packet(id, V4, false));
            c.subscribe(sub, topic, QoS::AtLeastOnce);
            sub
        })
        .collect();
    let pubs: Vec<Client> = pubs
        .iter()
        .map(|id| c.connect(connect_packet(id, V4, true)))
        .collect();
    c.settle_committed();
    for &client in subs.iter().chain(&pubs) {
        c.packets(client);
    }
    // Each publisher's messages go to the other shard's subscriber, at the same time.
    for n in 1..=3 {
        c.send(pubs[0], publish_packet("to/1", b"x", QoS::AtLeastOnce, n));
        c.send(pubs[1], publish_packet("to/0", b"y", QoS::AtLeastOnce, n));
    }
    c.settle_committed();
    assert_eq!(
        acks(&c.packets(pubs[0])),
        3,
        "shard 0's publisher waits for ever"
    );
    assert_eq!(
        acks(&c.packets(pubs[1])),
        3,
        "shard 1's publisher waits for ever"
    );
    assert_eq!(payloads(&c.packets(subs[0])).len(), 3);
    assert_eq!(payloads(&c.packets(subs[1])).len(), 3);
}

/// Commits shard `shard`'s records only (the other shards' logs lag behind).
fn commit_shard(c: &mut Cluster, shard: usize) {
    let (_, through) = c[shard].take_records();
    c[shard].committed(through);
}

#[test]
fn a_shared_message_passed_on_is_acknowledged_only_once_on_disk_where_it_landed() {
    // Group members: one away on shard 1, one connected on shard 0 beside the publisher. A
    // message shard 0 routes to shard 1 finds no room there and is passed back to shard 0.
    let mut c = journaled(2);
    let away = c.connect(connect_packet(&id_on("away", 1, 2), V4, false));
    c.subscribe(away, "$share/g/t", QoS::AtLeastOnce);
    let live = c.connect(connect_packet(&id_on("live", 0, 2), V4, false));
    c.subscribe(live, "$share/g/t", QoS::AtLeastOnce);
    let publisher = c.connect(connect_packet(&id_on("pub", 0, 2), V4, false));
    c.settle_committed();
    go_away(&mut c, away);
    c.settle_committed();
    c.packets(live);
    c.packets(publisher);
    let mut passed_on = 0;
    for pkid in 1..=4u16 {
        c.send(publisher, publish_packet("t", b"m", QoS::AtLeastOnce, pkid));
        commit_shard(&mut c, 0);
        if acks(&c.packets(publisher)) == 1 {
            // Delivered on shard 0 at once.
            let got = payloads(&c.packets(live));
            c.send(live, Packet::PubAck(Ack::new(got[0].1)));
            c.settle_committed();
            continue;
        }
        passed_on += 1;
        // Shard 1 commits everything it makes, shard 0 nothing more: the message lands in
        // shard 0's uncommitted records.
        for _ in 0..4 {
            c.exchange();
            commit_shard(&mut c, 1);
        }
        assert!(
            c[0].has_records(),
            "the passed-on message made records on shard 0"
        );
        assert_eq!(
            acks(&c.packets(publisher)),
            0,
            "PUBACK {pkid} before the message is on disk where it landed"
        );
        c.settle_committed();
        assert_eq!(acks(&c.packets(publisher)), 1, "PUBACK {pkid} once it is");
        let got = payloads(&c.packets(live));
        assert_eq!(got.len(), 1);
        c.send(live, Packet::PubAck(Ack::new(got[0].1)));
        c.settle_committed();
    }
    assert!(passed_on > 0, "no message went to shard 1 first");
}

#[test]
fn a_shared_message_passed_on_twice_is_acknowledged_only_once_on_disk_where_it_landed() {
    // Every member is away, so a message is passed on, lowest untried shard first, until the
    // last untried one queues it: sent to shard 0 first it goes 0 -> 1 -> 2, to shard 1
    // first 1 -> 0 -> 2 (0 relays 1's pass-on), to shard 2 first 2 -> 0 -> 1. Shards 0 and
    // 1 commit everything they make, shard 2 nothing until the end of each round.
    let mut c = journaled(3);
    for shard in 0..3 {
        let member = c.connect(connect_packet(&id_on("member", shard, 3), V4, false));
        c.subscribe(member, "$share/g/t", QoS::AtLeastOnce);
        c.settle_committed();
        go_away(&mut c, member);
    }
    let publisher = c.connect(connect_packet(&id_on("pub", 0, 3), V4, false));
    c.settle_committed();
    c.packets(publisher);
    let mut landed_on_2 = 0;
    for pkid in 1..=6u16 {
        c.send(publisher, publish_packet("t", b"m", QoS::AtLeastOnce, pkid));
        for _ in 0..8 {
            commit_shard(&mut c, 0);
            commit_shard(&mut c, 1);
            c.exchange();
        }
        let early = acks(&c.packets(publisher));
        if c[2].has_records() {
            landed_on_2 += 1;
            assert_eq!(early, 0, "PUBACK {pkid} before shard 2 has it on disk");
            c.settle_committed();
            assert_eq!(acks(&c.packets(publisher)), 1, "PUBACK {pkid} once it has");
        } else {
            assert_eq!(early, 1, "PUBACK {pkid}: on disk on shard 1");
        }
    }
    assert_eq!(landed_on_2, 4, "two in three rounds land on shard 2");
}

#[test]
fn a_leaving_members_message_is_owed_to_the_next_before_it_is_taken_from_the_first() {
    // A log cut short between the two records must hold the message twice, not lose it.
    let mut c = journaled(1);
    let a = c.connect(connect_packet("member-a", V4, false));
    c.subscribe(a, "$share/g/t", QoS::AtLeastOnce);
    let b = c.connect(connect_packet("member-b", V4, false));
    c.subscribe(b, "$share/g/t", QoS::AtLeastOnce);
    let publisher = c.connect(connect_packet("pub", V4, true));
    c.settle_committed();
    c.send(publisher, publish_packet("t", b"m", QoS::AtLeastOnce, 1));
    c.settle_committed();
    let (got, other) = match payloads(&c.packets(a)).is_empty() {
        true => (b, "member-a"),
        false => (a, "member-b"),
    };
    let now = c.now();
    c[0].closed(got.conn, now);
    let log = c.commit();
    let owed_to_other = log
        .iter()
        .position(|r| matches!(r, Record::Owed { client_id, .. } if &**client_id == other));
    let taken_back = log
        .iter()
        .position(|r| matches!(r, Record::Delivered { .. }));
    assert!(owed_to_other.is_some() && taken_back.is_some(), "{log:?}");
    assert!(owed_to_other < taken_back, "{log:?}");
}

#[test]
fn a_leaving_members_message_stays_owed_to_it_until_on_disk_on_the_next_members_shard() {
    let mut c = journaled(2);
    let leaving = c.connect(connect_packet(&id_on("leaving", 1, 2), V4, false));
    c.subscribe(leaving, "$share/g/t", QoS::AtLeastOnce);
    let staying = c.connect(connect_packet(&id_on("staying", 0, 2), V4, false));
    c.subscribe(staying, "$share/g/t", QoS::AtLeastOnce);
    let publisher = c.connect(connect_packet(&id_on("pub", 0, 2), V4, true));
    c.settle_committed();
    // Round robin: one of two messages goes to the member on shard 1.
    for pkid in 1..=2 {
        c.send(publisher, publish_packet("t", b"m", QoS::AtLeastOnce, pkid));
        c.settle_committed();
    }
    let got = payloads(&c.packets(leaving));
    assert_eq!(got.len(), 1);
    c.packets(staying);
    let now = c.now();
    c[1].closed(leaving.conn, now);
    // Shard 1 commits, shard 0 (where the message goes now) does not.
    let removed = |records: &[Record]| {
        records
            .iter()
            .any(|r| matches!(r, Record::Delivered { client_id, .. } if client_id.starts_with("leaving")))
    };
    let mut log = Vec::new();
    for _ in 0..4 {
        log.extend(c[1].take_records().0);
        c.exchange();
    }
    assert!(c[0].has_records(), "the message is owed on shard 0 now");
    assert!(
        !removed(&log),
        "taken from the leaving member before it is on disk elsewhere"
    );
    assert!(
        !c[1].may_snapshot(),
        "a snapshot would drop what the log must still owe"
    );
    log.extend(c.settle_committed());
    assert!(removed(&log), "and once it is: {log:?}");
    assert!(c[1].may_snapshot());
    assert_eq!(payloads(&c.packets(staying)).len(), 1);
}

#[test]
fn an_ended_sessions_end_waits_for_its_messages_to_be_on_disk_elsewhere() {
    let mut c = journaled(2);
    let mut log = Vec::new();
    let leaving_id = id_on("ending", 1, 2);
    let leaving = c.connect(connect_packet(&leaving_id, V4, false));
    c.subscribe(leaving, "$share/g/t", QoS::AtLeastOnce);
    let staying = c.connect(connect_packet(&id_on("staying", 0, 2), V4, false));
    c.subscribe(staying, "$share/g/t", QoS::AtLeastOnce);
    let publisher = c.connect(connect_packet(&id_on("pub", 0, 2), V4, true));
    log.extend(c.settle_committed());
    for pkid in 1..=2 {
        c.send(publisher, publish_packet("t", b"m", QoS::AtLeastOnce, pkid));
        log.extend(c.settle_committed());
    }
    assert_eq!(payloads(&c.packets(leaving)).len(), 1);
    c.packets(staying);
    // The same client id with a clean session: the durable session ends (3.1.1).
    let now = c.now();
    c[1].closed(leaving.conn, now);
    let _clean = c.connect(connect_packet(&leaving_id, V4, true));
    for _ in 0..4 {
        log.extend(c[1].take_records().0);
        c.exchange();
    }
    let ended = |log: &[Record]| {
        log.iter()
            .any(|r| matches!(r, Record::SessionEnd { client_id } if **client_id == *leaving_id))
    };
    assert!(
        !ended(&log),
        "the end would drop the message shard 0 has not committed"
    );
    let recovered = recover(log.clone());
    assert_eq!(
        recovered.sessions[leaving_id.as_str()].owed.len(),
        1,
        "still owed to it"
    );
    log.extend(c.settle_committed());
    assert!(ended(&log), "and once it has: {log:?}");
    let recovered = recover(log);
    assert!(!recovered.sessions.contains_key(leaving_id.as_str()));
    assert_eq!(payloads(&c.packets(staying)).len(), 1);
}

#[test]
fn a_new_durable_session_writes_a_held_end_of_the_old_one_first() {
    let mut c = journaled(2);
    let id = id_on("again", 1, 2);
    let old = c.connect(connect_packet(&id, V4, false));
    c.subscribe(old, "$share/g/t", QoS::AtLeastOnce);
    c.subscribe(old, "old/only", QoS::AtLeastOnce);
    let staying = c.connect(connect_packet(&id_on("staying", 0, 2), V4, false));
    c.subscribe(staying, "$share/g/t", QoS::AtLeastOnce);
    let publisher = c.connect(connect_packet(&id_on("pub", 0, 2), V4, true));
    let mut log = c.settle_committed();
    for pkid in 1..=2 {
        c.send(publisher, publish_packet("t", b"m", QoS::AtLeastOnce, pkid));
        log.extend(c.settle_committed());
    }
    let now = c.now();
    c[1].closed(old.conn, now);
    // Ended by a clean session, which goes; then a durable one, before shard 0 commits.
    let clean = c.connect(connect_packet(&id, V4, true));
    c[1].closed(clean.conn, now);
    let _new = c.connect(connect_packet(&id, V4, false));
    log.extend(c[1].take_records().0);
    let end = log
        .iter()
        .position(|r| matches!(r, Record::SessionEnd { client_id } if **client_id == *id));
    let open = log
        .iter()
        .rposition(|r| matches!(r, Record::SessionOpen { client_id, .. } if **client_id == *id));
    assert!(end.is_some() && end < open, "{log:?}");
    log.extend(c.settle_committed());
    let recovered = recover(log);
    assert!(
        recovered.sessions[id.as_str()].subscriptions.is_empty(),
        "the old session's subscriptions came back"
    );
}

#[test]
fn a_pass_on_waiting_on_one_peer_holds_up_no_report_to_another() {
    // Shard 1 passes a shared message from shard 0 on to shard 2, which does not commit:
    // its report to shard 0 waits. A publisher on shard 3 writing to a durable subscriber on
    // shard 1 gets its PUBACK all the same.
    let mut c = journaled(4);
    let away = c.connect(connect_packet(&id_on("away", 1, 4), V4, false));
    c.subscribe(away, "$share/g/t", QoS::AtLeastOnce);
    let live = c.connect(connect_packet(&id_on("live", 2, 4), V4, false));
    c.subscribe(live, "$share/g/t", QoS::AtLeastOnce);
    let durable = c.connect(connect_packet(&id_on("durable", 1, 4), V4, false));
    c.subscribe(durable, "d", QoS::AtLeastOnce);
    let shared_pub = c.connect(connect_packet(&id_on("shared-pub", 0, 4), V4, true));
    let other_pub = c.connect(connect_packet(&id_on("other-pub", 3, 4), V4, true));
    c.settle_committed();
    go_away(&mut c, away);
    c.packets(shared_pub);
    c.packets(other_pub);
    let committing = [0, 1, 3];
    let rounds = |c: &mut Cluster| {
        for _ in 0..6 {
            for &shard in &committing {
                commit_shard(c, shard);
            }
            c.exchange();
        }
    };
    // Round robin: the second goes to shard 1 first, which passes it on to shard 2.
    for pkid in 1..=2 {
        c.send(
            shared_pub,
            publish_packet("t", b"s", QoS::AtLeastOnce, pkid),
        );
        rounds(&mut c);
    }
    assert!(c[2].has_records());
    assert_eq!(
        acks(&c.packets(shared_pub)),
        0,
        "shard 2 has committed nothing"
    );
    c.send(other_pub, publish_packet("d", b"x", QoS::AtLeastOnce, 1));
    rounds(&mut c);
    assert_eq!(
        acks(&c.packets(other_pub)),
        1,
        "held up by a pass-on to another peer"
    );
    c.settle_committed();
    assert_eq!(acks(&c.packets(shared_pub)), 2);
}

#[test]
fn a_message_rerouted_back_to_its_member_is_not_undone_by_its_held_removal() {
    // Both members away once `leaving` goes: of its two messages, the second goes to shard 0
    // first, finds no room and comes back to `leaving` itself, queued. Its removal from
    // `leaving`, held until shard 0 answered, must not remove that new owing too.
    let mut c = journaled(2);
    let mut log = Vec::new();
    let leaving_id = id_on("leaving", 1, 2);
    let leaving = c.connect(connect_packet(&leaving_id, V4, false));
    c.subscribe(leaving, "$share/g/t", QoS::AtLeastOnce);
    let away = c.connect(connect_packet(&id_on("away", 0, 2), V4, false));
    c.subscribe(away, "$share/g/t", QoS::AtLeastOnce);
    let publisher = c.connect(connect_packet(&id_on("pub", 0, 2), V4, true));
    log.extend(c.settle_committed());
    go_away(&mut c, away);
    for pkid in 1..=2 {
        c.send(publisher, publish_packet("t", b"m", QoS::AtLeastOnce, pkid));
        log.extend(c.settle_committed());
    }
    assert_eq!(payloads(&c.packets(leaving)).len(), 2);
    let now = c.now();
    c[1].closed(leaving.conn, now);
    log.extend(c.settle_committed());
    let recovered = recover(log);
    let owed = |id: &str| recovered.sessions[id].owed.len();
    assert_eq!(
        owed(&leaving_id) + owed(&id_on("away", 0, 2)),
        2,
        "both messages still owed"
    );
}
