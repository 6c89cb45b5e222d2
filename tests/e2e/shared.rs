//! MQTT 5 shared subscriptions (`$share/{group}/{filter}`) on a 2-shard broker: members on both
//! shards, exactly-once per group, round-robin fairness, redelivery when a member leaves,
//! `--shared-policy publisher`, and no retained messages on shared subscriptions.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::common;
use crate::common::dec::{texts, Pub5};
use crate::common::enc::{Connect, Publish};
use crate::common::raw::LONG;
use crate::common::v5::V5;
use crate::common::{client_id_on_shard, millis, run_bounded, secs, Broker, SHARDS};

/// Reads all `clients` (round the table, short waits) until `done(received so far)` holds;
/// returns what each one got. Panics after `timeout`.
fn collect(
    clients: &mut [&mut V5],
    timeout: Duration,
    mut done: impl FnMut(&[Vec<Pub5>]) -> bool,
) -> Vec<Vec<Pub5>> {
    let deadline = Instant::now() + timeout;
    let mut got: Vec<Vec<Pub5>> = clients.iter().map(|_| Vec::new()).collect();
    while !done(&got) {
        assert!(
            Instant::now() < deadline,
            "not done within {timeout:?}; got {:?}",
            got.iter().map(|v| texts(v)).collect::<Vec<_>>()
        );
        for (i, c) in clients.iter_mut().enumerate() {
            while let Some(m) = c.try_pub(millis(10)) {
                got[i].push(m);
            }
        }
    }
    got
}

fn distinct(v: &[Vec<Pub5>]) -> HashSet<String> {
    v.iter().flatten().map(|m| m.text()).collect()
}

fn total(v: &[Vec<Pub5>]) -> usize {
    v.iter().map(|x| x.len()).sum()
}

/// 100 QoS 1 messages; group g1 = two members (one per shard), group g2 = one member, plus a
/// plain subscriber. Each group gets every message exactly once; with round-robin both g1
/// members get some; the plain subscriber gets all 100.
#[test]
fn shared_group_exactly_once_across_shards_round_robin() {
    run_bounded(secs(90), || {
        let broker = Broker::start_sharded(&[]);
        let mut m0 = V5::connect(broker.port, &client_id_on_shard("sh-m0", 0, SHARDS), true);
        let mut m1 = V5::connect(broker.port, &client_id_on_shard("sh-m1", 1, SHARDS), true);
        let mut g2 = V5::connect(broker.port, &client_id_on_shard("sh-g2", 1, SHARDS), true);
        let mut plain = V5::connect(
            broker.port,
            &client_id_on_shard("sh-plain", 0, SHARDS),
            true,
        );
        m0.sub_ok("$share/g1/sh/t/+", 1);
        m1.sub_ok("$share/g1/sh/t/+", 1);
        g2.sub_ok("$share/g2/sh/t/+", 1);
        plain.sub_ok("sh/t/+", 1);

        let mut pb = V5::connect(broker.port, &client_id_on_shard("sh-pub", 0, SHARDS), true);
        let want: HashSet<String> = (0..100).map(|i| format!("m{i}")).collect();
        for i in 0..100 {
            assert_eq!(
                pb.publish(
                    Publish::new(format!("sh/t/{}", i % 3), format!("m{i}").as_bytes()).qos(1)
                ),
                0
            );
        }

        let g1 = collect(&mut [&mut m0, &mut m1], secs(30), |g| {
            distinct(g).len() == 100
        });
        assert_eq!(
            total(&g1),
            100,
            "a g1 message was delivered twice: {:?}",
            g1.iter().map(|v| texts(v)).collect::<Vec<_>>()
        );
        assert_eq!(distinct(&g1), want);
        assert!(
            !g1[0].is_empty() && !g1[1].is_empty(),
            "round-robin: both members get some ({} / {})",
            g1[0].len(),
            g1[1].len()
        );

        let g2got = g2.expect_pubs(100, LONG);
        let s: HashSet<String> = g2got.iter().map(|m| m.text()).collect();
        assert_eq!(s, want, "single-member group gets everything");
        let pl = plain.expect_pubs(100, LONG);
        assert_eq!(
            texts(&pl),
            (0..100).map(|i| format!("m{i}")).collect::<Vec<_>>(),
            "plain subscriber gets all, in order"
        );

        // Nothing extra turns up afterwards.
        let until = Instant::now() + millis(500);
        let extra = collect(
            &mut [&mut m0, &mut m1, &mut g2, &mut plain],
            secs(5),
            |_| Instant::now() >= until,
        );
        assert_eq!(
            total(&extra),
            0,
            "late duplicates: {:?}",
            extra.iter().map(|v| texts(v)).collect::<Vec<_>>()
        );
    });
}

/// A member that leaves cleanly (DISCONNECT, session expiry 0) while holding unacknowledged
/// QoS 1 messages: those go to the other member, so the group still gets all 20 messages.
#[test]
fn shared_member_leaving_with_unacked_messages_hands_them_over() {
    run_bounded(secs(90), || {
        let broker = Broker::start_sharded(&[]);
        let mut lazy = V5::connect(broker.port, &client_id_on_shard("sh-lazy", 0, SHARDS), true);
        lazy.auto_ack = false;
        let mut good = V5::connect(broker.port, &client_id_on_shard("sh-good", 1, SHARDS), true);
        lazy.sub_ok("$share/g/shl/t", 1);
        good.sub_ok("$share/g/shl/t", 1);
        let mut pb = V5::connect(broker.port, &client_id_on_shard("sh-lpub", 1, SHARDS), true);
        for i in 0..20 {
            pb.publish(Publish::new("shl/t", format!("m{i}").as_bytes()).qos(1));
        }
        let got = collect(&mut [&mut lazy, &mut good], secs(30), |g| total(g) >= 20);
        assert!(
            !got[0].is_empty(),
            "round-robin gave the lazy member nothing"
        );
        let held: HashSet<String> = got[0].iter().map(|m| m.text()).collect();
        let mut good_got: HashSet<String> = got[1].iter().map(|m| m.text()).collect();
        lazy.disconnect();
        let deadline = Instant::now() + secs(20);
        while !held.is_subset(&good_got) {
            let left = deadline.saturating_duration_since(Instant::now());
            match good.try_pub(left) {
                Some(m) => {
                    good_got.insert(m.text());
                }
                None => panic!(
                    "messages held unacked by the member that left were not redelivered: held {held:?}, other member has {good_got:?}"
                ),
            }
        }
        let want: HashSet<String> = (0..20).map(|i| format!("m{i}")).collect();
        assert_eq!(good_got, want);
    });
}

/// --shared-policy publisher: all messages from one publisher go to the same member, in order.
#[test]
fn shared_policy_publisher_is_sticky_and_ordered() {
    run_bounded(secs(90), || {
        let broker = Broker::start_sharded(&["--shared-policy", "publisher"]);
        let mut m0 = V5::connect(broker.port, &client_id_on_shard("shp-m0", 0, SHARDS), true);
        let mut m1 = V5::connect(broker.port, &client_id_on_shard("shp-m1", 1, SHARDS), true);
        m0.sub_ok("$share/g/shp/#", 1);
        m1.sub_ok("$share/g/shp/#", 1);
        let pubs: Vec<String> = vec![
            client_id_on_shard("shp-pa", 0, SHARDS),
            client_id_on_shard("shp-pb", 1, SHARDS),
            client_id_on_shard("shp-pc", 0, SHARDS),
        ];
        let mut clients: Vec<V5> = pubs
            .iter()
            .map(|id| V5::connect(broker.port, id, true))
            .collect();
        for i in 0..30 {
            for (k, c) in clients.iter_mut().enumerate() {
                c.publish(
                    Publish::new(format!("shp/{k}/{}", i % 4), format!("{k}:{i}").as_bytes())
                        .qos(1),
                );
            }
        }
        let got = collect(&mut [&mut m0, &mut m1], secs(30), |g| total(g) >= 90);
        assert_eq!(distinct(&got).len(), 90, "every message once");
        let mut owner: HashMap<String, usize> = HashMap::new();
        for (member, msgs) in got.iter().enumerate() {
            let mut last: HashMap<String, i64> = HashMap::new();
            for m in msgs {
                let t = m.text();
                let (k, i) = t.split_once(':').unwrap();
                let i: i64 = i.parse().unwrap();
                let prev = owner.insert(k.to_string(), member);
                assert!(
                    prev.is_none() || prev == Some(member),
                    "publisher {k}'s messages went to both members"
                );
                let l = last.entry(k.to_string()).or_insert(-1);
                assert!(i > *l, "publisher {k}: {i} after {l} (out of order)");
                *l = i;
            }
        }
        assert_eq!(owner.len(), 3);
    });
}

/// Retained messages are not sent on a shared subscription (a plain one gets it).
#[test]
fn retained_not_sent_on_shared_subscription() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let mut pb = V5::connect(broker.port, &client_id_on_shard("shr-p", 0, SHARDS), true);
        pb.publish(Publish::new("shr/t", b"retained").qos(1).retain(true));
        common::v5::wait_retained_on_all_shards(broker.port, "shr/t", b"retained", SHARDS);
        let mut m = V5::connect(broker.port, &client_id_on_shard("shr-m", 1, SHARDS), true);
        m.sub_ok("$share/g/shr/t", 1);
        pb.publish(Publish::new("shr/t", b"marker").qos(1));
        let first = m.expect_pub(LONG);
        assert_eq!(
            first.text(),
            "marker",
            "retained message sent on a shared subscription"
        );
        let mut plain = V5::connect(
            broker.port,
            &client_id_on_shard("shr-plain", 0, SHARDS),
            true,
        );
        plain.sub_ok("shr/t", 1);
        assert_eq!(plain.expect_pub(LONG).text(), "retained");
    });
}

/// Shared subscriptions survive in a persistent session: a member that reconnects (session
/// expiry 60, clean start 0) still belongs to the group and receives its share again.
#[test]
fn shared_member_session_resumes() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let id = client_id_on_shard("shs-m", 1, SHARDS);
        let mut m = V5::connect_with(broker.port, Connect::v5(&id).expiry(60));
        m.sub_ok("$share/g/shs/t", 1);
        m.disconnect();
        let mut m = V5::connect_with(broker.port, Connect::v5(&id).clean(false).expiry(60));
        assert!(m.session_present);
        let mut pb = V5::connect(broker.port, &client_id_on_shard("shs-p", 0, SHARDS), true);
        assert_eq!(
            pb.publish(Publish::new("shs/t", b"x").qos(1)),
            0,
            "group member exists"
        );
        assert_eq!(m.expect_pub(LONG).text(), "x");
    });
}
