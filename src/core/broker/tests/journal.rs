//! The durable store's records, and a restart from them.

use super::*;
use crate::core::store::{Record, Recovered};
use crate::harness::{Client, Cluster};

fn journaled(shards: usize) -> Cluster {
    Cluster::new(shards, Limits::default()).configure(Broker::with_journal)
}

fn records(c: &mut Cluster) -> Vec<Record> {
    c.commit()
}

/// Publishes at QoS 1 and settles, commits included; returns the records committed.
fn publish(
    c: &mut Cluster,
    client: Client,
    topic: &str,
    payload: &'static [u8],
    retain: bool,
) -> Vec<Record> {
    let mut publish = Publish::new(topic, payload).with_qos(QoS::AtLeastOnce, 1);
    publish.retain = retain;
    c.send(client, Packet::Publish(publish));
    c.settle_committed()
}

#[test]
fn persistent_sessions_their_subscriptions_and_retained_messages_are_recorded() {
    let mut c = journaled(1);
    let durable = c.connect(connect_packet("durable", V4, false));
    let clean = c.connect(connect_packet("clean", V4, true));
    c.subscribe(durable, "t/#", QoS::AtLeastOnce);
    c.subscribe(clean, "u", QoS::AtMostOnce);
    let mut got = publish(&mut c, clean, "r", b"v", true);
    got.extend(publish(&mut c, clean, "r", b"", true));
    c.send(durable, unsubscribe_packet("t/#"));
    c.send(durable, Packet::Disconnect(Default::default()));
    let now = c.now();
    c[0].closed(durable.conn, now);
    let again = c.connect(connect_packet("durable", V4, true));
    c.packets(again);
    got.extend(records(&mut c));
    let kinds: Vec<String> = got
        .iter()
        .map(|r| {
            format!("{r:?}")
                .split([' ', '('])
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "SessionOpen",
            "Subscribe",
            "RetainSet",
            "RetainClear",
            "Unsubscribe",
            "SessionEnd"
        ],
        "the clean session leaves no record: {got:?}"
    );
}

#[test]
fn a_restart_from_the_records_restores_sessions_subscriptions_and_retained_messages() {
    let mut before = journaled(2);
    let sub = before.connect(connect_packet("sub", V4, false));
    before.subscribe(sub, "t/#", QoS::AtLeastOnce);
    let publisher = before.connect(connect_packet("pub", V4, true));
    let mut log = before.settle_committed();
    log.extend(publish(&mut before, publisher, "keep/me", b"v", true));
    let mut recovered = Recovered::default();
    recovered.apply(log);

    let mut after = journaled(2);
    for s in 0..after.len() {
        after[s].restore(&recovered);
    }
    after.settle();
    assert_eq!(after.brokers().map(Broker::session_count).sum::<usize>(), 1);
    // The subscriber comes back to its session and its subscription.
    let sub = after.connect(connect_packet("sub", V4, false));
    after.settle();
    after.commit();
    assert!(connack(&after.packets(sub)).session_present);
    let publisher = after.connect(connect_packet("pub", V4, true));
    publish(&mut after, publisher, "t/x", b"after", false);
    let got = after.packets(sub);
    assert_eq!(publishes(&got)[0].payload(), &b"after"[..], "{got:?}");
    // A new subscriber on either shard finds the retained message.
    let watcher = after.connect(connect_packet("watcher", V4, true));
    after.subscribe(watcher, "keep/#", QoS::AtMostOnce);
    after.settle();
    let got = after.packets(watcher);
    assert_eq!(publishes(&got)[0].payload(), &b"v"[..], "{got:?}");
}

#[test]
fn output_waits_until_the_records_before_it_are_committed() {
    let mut c = journaled(1);
    // A clean session makes no record: its CONNACK leaves at once.
    let clean = c.connect(connect_packet("clean", V4, true));
    assert!(matches!(c.packets(clean)[..], [Packet::ConnAck(_)]));
    // A durable one's CONNACK waits for its session's record, its SUBACK for the
    // subscription's: group commit.
    let durable = c.connect(connect_packet("durable", V4, false));
    assert!(
        c.packets(durable).is_empty(),
        "CONNACK before the session is on disk"
    );
    assert_eq!(c.commit().len(), 1);
    assert!(matches!(c.packets(durable)[..], [Packet::ConnAck(_)]));
    c.subscribe(durable, "t", QoS::AtLeastOnce);
    assert!(
        c.packets(durable).is_empty(),
        "SUBACK before the subscription is on disk"
    );
    c.commit();
    assert!(matches!(c.packets(durable)[..], [Packet::SubAck(_)]));
    // Committed in a later batch than the one it waits for: still released.
    let other = c.connect(connect_packet("other", V4, false));
    let (records, through) = c[0].take_records();
    assert_eq!(records.len(), 1);
    c.subscribe(durable, "u", QoS::AtLeastOnce);
    c[0].committed(through);
    assert!(matches!(c.packets(other)[..], [Packet::ConnAck(_)]));
    assert!(
        c.packets(durable).is_empty(),
        "its SUBACK waits for the next commit"
    );
    c.commit();
    assert!(matches!(c.packets(durable)[..], [Packet::SubAck(_)]));
}

#[test]
fn without_persistence_nothing_is_recorded() {
    let mut c = Cluster::new(1, Limits::default());
    let durable = c.connect(connect_packet("durable", V4, false));
    c.subscribe(durable, "t", QoS::AtLeastOnce);
    assert!(records(&mut c).is_empty());
}

#[test]
fn an_inbound_qos2_message_is_not_routed_twice_across_a_restart() {
    let mut log = Vec::new();
    let mut before = journaled(1);
    let publisher = before.connect(connect_packet("pub", V4, false));
    let qos2 = |payload: &'static [u8]| {
        Packet::Publish(Publish::new("t", payload).with_qos(QoS::ExactlyOnce, 5))
    };
    before.send(publisher, qos2(b"once"));
    log.extend(before.commit());
    let got = before.packets(publisher);
    assert!(matches!(got.last(), Some(Packet::PubRec(_))), "{got:?}");
    // The broker stops before the PUBREL.
    let mut recovered = Recovered::default();
    recovered.apply(log);
    assert_eq!(recovered.sessions["pub"].awaiting_pubrel.len(), 1);

    let mut after = journaled(1);
    after[0].restore(&recovered);
    // A subscriber from after the restart, when the message was long received.
    after.advance(Duration::from_millis(1));
    let sub = after.connect(connect_packet("sub", V4, true));
    after.subscribe(sub, "t", QoS::ExactlyOnce);
    let publisher = after.connect(connect_packet("pub", V4, false));
    after.commit();
    after.packets(sub);
    // The client did not see the PUBREC, or did and resends anyway: acknowledged, not routed
    // to the subscriptions made since.
    let mut again = Publish::new("t", b"once").with_qos(QoS::ExactlyOnce, 5);
    again.dup = true;
    after.send(publisher, Packet::Publish(again));
    after.send(publisher, Packet::PubRel(Ack::new(5)));
    after.commit();
    assert!(
        publishes(&after.packets(sub)).is_empty(),
        "delivered once, before the restart"
    );
    // The packet id is free again: a new message with it goes through.
    after.send(publisher, qos2(b"next"));
    after.commit();
    assert_eq!(publishes(&after.packets(sub))[0].payload(), &b"next"[..]);
}

#[test]
fn a_will_waiting_out_its_delay_survives_a_restart() {
    let mut before = journaled(1);
    let will = Will {
        topic: "gone".into(),
        payload: Bytes::from_static(b"bye"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: PropertyValues {
            will_delay_interval: Some(60),
            ..Default::default()
        }
        .into(),
    };
    let connect = Connect {
        will: Some(will),
        properties: PropertyValues {
            session_expiry_interval: Some(300),
            ..Default::default()
        }
        .into(),
        ..connect_packet("dying", V5, true)
    };
    let dying = before.connect(connect);
    let now = before.now();
    before[0].closed(dying.conn, now);
    let mut recovered = Recovered::default();
    recovered.apply(before.commit());
    assert!(recovered.sessions["dying"].will.is_some());

    let mut after = journaled(1);
    after[0].restore(&recovered);
    let watcher = after.connect(connect_packet("watcher", V4, true));
    after.subscribe(watcher, "gone", QoS::AtLeastOnce);
    after.commit();
    after.packets(watcher);
    after.advance(Duration::from_secs(59));
    after.commit();
    assert!(
        publishes(&after.packets(watcher)).is_empty(),
        "not before its delay"
    );
    after.advance(Duration::from_secs(2));
    let done = after.commit();
    assert_eq!(publishes(&after.packets(watcher))[0].payload(), &b"bye"[..]);
    assert!(done.iter().any(|r| matches!(r, Record::WillDone { .. })));
}
