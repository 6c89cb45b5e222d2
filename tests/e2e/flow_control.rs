//! Flow control (issue 11): a connected subscriber slower than its QoS 1 publishers slows
//! them down instead of losing what they were acknowledged; a stuck subscriber holds no one
//! back; a shared group sends past a member that is behind. Each on one shard and across two.
//!
//! Also the windows that pace deliveries: `--max-inflight` (3.1.1), the client's Receive Maximum
//! and the broker's own inbound one (5.0), and slow or stalled readers that catch up without
//! holding back others.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common;
use crate::common::enc::{self, kind, p, Connect, Props, Publish};
use crate::common::raw::{RawClient, LONG, SHORT};
use crate::common::v5::V5;
use crate::common::{
    bounded, client_id_on_shard, connect, connect_with, millis, opts, recv_n, run_bounded, secs,
    texts, Broker, SHARDS,
};

/// QoS 1 PUBLISHes a raw publisher keeps unacknowledged.
const WINDOW: usize = 64;

/// Publishes `n` QoS 1 messages of `size` bytes on `topic` (payload: publisher, sequence),
/// `WINDOW` at a time; returns how many were acknowledged.
fn flood(port: u16, id: &str, publisher: u8, topic: &str, n: u32, size: usize) -> u32 {
    let (mut c, _) = RawClient::connect311(port, id, true, 60);
    let (mut sent, mut acked) = (0u32, 0u32);
    let deadline = Instant::now() + secs(90);
    while acked < n {
        assert!(
            Instant::now() < deadline,
            "{id}: {acked} of {n} acknowledged"
        );
        while sent < n && ((sent - acked) as usize) < WINDOW {
            sent += 1;
            let mut payload = vec![0u8; size.max(5)];
            payload[0] = publisher;
            payload[1..5].copy_from_slice(&sent.to_be_bytes());
            let pkid = (sent % 60_000 + 1) as u16;
            c.send_ok(&Publish::new(topic, &payload).qos(1).pkid(pkid).encode());
        }
        for p in c.read_batch(secs(30)).expect("PUBACKs") {
            if p.kind() == kind::PUBACK {
                acked += 1;
            }
        }
    }
    acked
}

/// A QoS 1 subscriber that acks what it reads, pausing `pause` after each read, until it has
/// `want` distinct messages or `limit` passes. Returns the distinct (publisher, sequence).
fn drink(mut c: RawClient, want: usize, pause: Duration, limit: Duration) -> HashSet<(u8, u32)> {
    let mut got = HashSet::new();
    let deadline = Instant::now() + limit;
    while got.len() < want && Instant::now() < deadline {
        let Ok(batch) = c.read_batch(secs(5)) else {
            break;
        };
        let mut acks = Vec::new();
        for p in batch.iter().filter(|p| p.kind() == kind::PUBLISH) {
            let publish = p.publish();
            let seq = u32::from_be_bytes(publish.payload[1..5].try_into().unwrap());
            got.insert((publish.payload[0], seq));
            acks.extend(enc::puback(publish.pkid));
        }
        c.send_ok(&acks);
        std::thread::sleep(pause);
    }
    got
}

fn subscriber(port: u16, id: &str, filter: &str) -> RawClient {
    let (mut c, _) = RawClient::connect311(port, id, true, 60);
    c.subscribe_ok(1, &[(filter, 1)]);
    c
}

/// Client ids for `n` publishers and one subscriber: on shard 0 and 1 in turn when `cross`.
fn ids(prefix: &str, n: usize, cross: bool) -> (Vec<String>, String) {
    let shard = |i: usize| if cross { i % SHARDS } else { 0 };
    let publishers = (0..n)
        .map(|i| client_id_on_shard(&format!("{prefix}-pub{i}"), shard(i), SHARDS))
        .collect();
    let sub = client_id_on_shard(&format!("{prefix}-sub"), usize::from(cross), SHARDS);
    (publishers, sub)
}

fn broker(cross: bool, extra: &[&str]) -> Broker {
    let mut args = vec!["--max-queued-messages", "200"];
    args.extend_from_slice(extra);
    broker_at_defaults(cross, &args)
}

fn broker_at_defaults(cross: bool, extra: &[&str]) -> Broker {
    let shards = if cross { "2" } else { "1" };
    let mut args = vec!["--shards", shards];
    args.extend_from_slice(extra);
    Broker::start(&args)
}

/// 4 publishers flat out -> 1 subscriber that reads in small sips: every acknowledged message
/// arrives, though the subscriber's queue holds only 200.
fn funnel_loses_nothing(cross: bool) {
    let broker = broker(cross, &[]);
    let got = funnel(&broker, cross, 3_000);
    assert_eq!(got.len(), 4 * 3_000, "every acknowledged message arrived");
    broker.assert_alive();
}

/// Runs the funnel: 4 publishers of `each` QoS 1 messages, one subscriber sipping; returns
/// what the subscriber got.
fn funnel(broker: &Broker, cross: bool, each: u32) -> HashSet<(u8, u32)> {
    let port = broker.port;
    let (publishers, sub_id) = ids("funnel", 4, cross);
    run_bounded(secs(120), move || {
        let sub = subscriber(port, &sub_id, "load/+");
        let drinker = std::thread::spawn(move || {
            drink(sub, 4 * each as usize, Duration::from_micros(300), secs(90))
        });
        let floods: Vec<_> = publishers
            .into_iter()
            .enumerate()
            .map(|(i, id)| {
                std::thread::spawn(move || {
                    flood(port, &id, i as u8, &format!("load/{i}"), each, 64)
                })
            })
            .collect();
        for f in floods {
            assert_eq!(f.join().unwrap(), each);
        }
        drinker.join().unwrap()
    })
}

#[test]
fn a_funnel_to_a_slower_subscriber_loses_nothing() {
    funnel_loses_nothing(false);
}

#[test]
fn a_funnel_to_a_slower_subscriber_on_another_shard_loses_nothing() {
    funnel_loses_nothing(true);
}

#[test]
fn a_funnel_at_the_default_limits_stays_under_64_mib() {
    let broker = broker_at_defaults(true, &[]);
    let pid = broker.pid();
    let peak = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Relaxed) {
                peak.fetch_max(ringmq_test_support::rss_of(pid).unwrap_or(0), Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    // 4 x 50,000 messages: twenty times the subscriber's default queue limit.
    let got = funnel(&broker, true, 50_000);
    done.store(true, Relaxed);
    sampler.join().unwrap();
    assert_eq!(got.len(), 4 * 50_000, "every acknowledged message arrived");
    let peak = peak.load(Relaxed);
    assert!(peak > 0, "RSS sampled");
    assert!(peak < 64 << 20, "peak RSS {} MiB", peak >> 20);
}

/// A subscriber that never reads beside a healthy one: once it has stalled it holds no one,
/// the healthy one gets everything, and what the stuck one could not take is counted.
fn stuck_beside_healthy(cross: bool) {
    let broker = broker(cross, &["--stall-timeout-ms", "300", "--sys-interval", "1"]);
    let port = broker.port;
    let (publishers, healthy_id) = ids("stuck", 1, cross);
    let stuck_id = client_id_on_shard("stuck-never-reads", usize::from(cross), SHARDS);
    // 1 KiB messages, far more than the stuck one's socket buffers take.
    const N: u32 = 20_000;
    let got = run_bounded(secs(150), move || {
        let _stuck = subscriber(port, &stuck_id, "load/0");
        let healthy = subscriber(port, &healthy_id, "load/0");
        let drinker =
            std::thread::spawn(move || drink(healthy, N as usize, Duration::ZERO, secs(120)));
        assert_eq!(flood(port, &publishers[0], 0, "load/0", N, 1024), N);
        drinker.join().unwrap()
    });
    assert_eq!(
        got.len(),
        N as usize,
        "the healthy subscriber got everything"
    );
    let dropped = broker.sys_figure(
        "$SYS/broker/publish/messages/dropped/queue_full",
        secs(10),
        |n| n > 0,
    );
    assert!(dropped > 0);
}

#[test]
fn a_stuck_subscriber_holds_back_no_one() {
    stuck_beside_healthy(false);
}

#[test]
fn a_stuck_subscriber_on_another_shard_holds_back_no_one() {
    stuck_beside_healthy(true);
}

/// A shared group of a member that never reads and one that does: the group gives the stuck
/// member no more than it holds in flight and queued, and drops nothing of its share.
fn shared_group_sends_past_a_stuck_member(cross: bool) {
    let broker = broker(cross, &["--stall-timeout-ms", "300"]);
    let port = broker.port;
    let (publishers, quick_id) = ids("group", 1, cross);
    let stuck_id = client_id_on_shard("group-stuck", 0, SHARDS);
    const N: u32 = 10_000;
    // The stuck member's in-flight window (--max-inflight, 256) and its queue (200).
    let stuck_share = 256 + 200;
    let got = run_bounded(secs(150), move || {
        let _stuck = subscriber(port, &stuck_id, "$share/g/load/0");
        let quick = subscriber(port, &quick_id, "$share/g/load/0");
        let want = N as usize - stuck_share;
        let drinker = std::thread::spawn(move || drink(quick, want, Duration::ZERO, secs(120)));
        assert_eq!(flood(port, &publishers[0], 0, "load/0", N, 256), N);
        drinker.join().unwrap()
    });
    assert!(
        got.len() >= N as usize - stuck_share,
        "the member with room got {} of {N}",
        got.len()
    );
    broker.assert_alive();
}

#[test]
fn a_shared_group_sends_past_a_stuck_member() {
    shared_group_sends_past_a_stuck_member(false);
}

#[test]
fn a_shared_group_sends_past_a_stuck_member_on_another_shard() {
    shared_group_sends_past_a_stuck_member(true);
}

/// Outbound flow control: with --max-inflight 5, a subscriber that does not PUBACK gets 5
/// messages and no more; each PUBACK lets exactly one more through; all 20 arrive in order.
/// (The "no more" check waits 1 s: it can only miss a violation, never fail a correct broker.)
#[test]
fn max_inflight_limits_unacknowledged_messages() {
    common::run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&["--max-inflight", "5"]);
        let (mut sub, _) = RawClient::connect311(
            broker.port,
            &client_id_on_shard("if-sub", 0, SHARDS),
            true,
            60,
        );
        sub.subscribe_ok(1, &[("if/t", 1)]);
        let (mut p, _) = RawClient::connect311(
            broker.port,
            &client_id_on_shard("if-pub", 1, SHARDS),
            true,
            60,
        );
        for i in 0..20u16 {
            p.publish(
                Publish::new("if/t", format!("{i}").as_bytes())
                    .qos(1)
                    .pkid(i + 1),
            );
        }
        let mut got: Vec<_> = (0..5).map(|_| sub.next_publish(LONG)).collect();
        match sub.read_packet(secs(1)) {
            Err(common::raw::ReadErr::Timeout) => {}
            other => panic!(
                "a 6th message (or something else) with 5 unacknowledged in flight: {other:?}"
            ),
        }
        sub.send_ok(&enc::puback(got[0].pkid));
        got.push(sub.next_publish(LONG));
        let unacked: Vec<u16> = got[1..].iter().map(|m| m.pkid).collect();
        for pkid in unacked {
            sub.send_ok(&enc::puback(pkid));
        }
        while got.len() < 20 {
            let m = sub.next_publish(LONG);
            sub.send_ok(&enc::puback(m.pkid));
            got.push(m);
        }
        let order: Vec<String> = got.iter().map(|m| m.text()).collect();
        let want: Vec<String> = (0..20).map(|i| i.to_string()).collect();
        assert_eq!(order, want, "all 20, in order");
    });
}

fn outstanding_ids(v: &[common::dec::Pub5]) -> HashSet<u16> {
    v.iter().map(|m| m.pkid).collect()
}

/// Receive Maximum 3 from the client: at most 3 unacknowledged QoS 1 PUBLISHes outstanding;
/// each PUBACK lets exactly one more through; all 10 arrive in order.
#[test]
fn client_receive_maximum_limits_outstanding_qos1() {
    run_bounded(secs(90), || {
        let broker = Broker::start_sharded(&[]);
        let mut s = V5::connect_with(
            broker.port,
            Connect::v5(client_id_on_shard("rm-sub", 0, SHARDS))
                .props(Props::new().u16(p::RECEIVE_MAXIMUM, 3)),
        );
        s.auto_ack = false;
        s.sub_ok("rm/t", 1);
        let mut pb = V5::connect(broker.port, &client_id_on_shard("rm-pub", 1, SHARDS), true);
        for i in 0..10 {
            pb.publish(Publish::new("rm/t", format!("{i}").as_bytes()).qos(1));
        }
        let mut outstanding = s.expect_pubs(3, LONG);
        let mut all = outstanding.clone();
        while all.len() < 10 {
            assert!(
                s.try_pub(millis(700)).is_none(),
                "a 4th unacknowledged QoS 1 PUBLISH arrived (Receive Maximum 3); outstanding {:?}",
                common::dec::texts(&outstanding)
            );
            let done = outstanding.remove(0);
            s.puback(done.pkid);
            let m = s.expect_pub(LONG);
            outstanding.push(m.clone());
            all.push(m);
        }
        for m in outstanding {
            s.puback(m.pkid);
        }
        let texts: Vec<String> = common::dec::texts(&all);
        let want: Vec<String> = (0..10).map(|i| i.to_string()).collect();
        assert_eq!(texts, want, "all messages, in order");
        let ids: HashSet<u16> = outstanding_ids(&all);
        assert!(!ids.contains(&0), "QoS 1 packet id 0: {ids:?}");
        // Nothing more was queued.
        assert!(s.try_pub(millis(300)).is_none());
    });
}

/// --receive-maximum 2: CONNACK says 2; a client with 3 inbound QoS 2 messages awaiting PUBREL
/// exceeds it -> DISCONNECT 0x93.
#[test]
fn inbound_receive_maximum_exceeded_disconnects_0x93() {
    run_bounded(secs(30), || {
        let broker = Broker::start_sharded(&["--receive-maximum", "2"]);
        let mut c = V5::connect(broker.port, "rm-in", true);
        assert_eq!(c.connack_num(p::RECEIVE_MAXIMUM), Some(2));
        for id in 1..=2u16 {
            c.send_ok(&Publish::new("rm/in", b"q2").qos(2).pkid(id).v5().encode());
            let rec = common::dec::decode_ack(&c.expect_kind(common::enc::kind::PUBREC, LONG));
            assert_eq!(rec.pkid, id);
        }
        let _ = c.send(&Publish::new("rm/in", b"q2").qos(2).pkid(3).v5().encode());
        let (rc, _) = c.expect_disconnect(SHORT, "third QoS 2 awaiting PUBREL");
        assert_eq!(rc, 0x93, "Receive Maximum exceeded");
    });
}

/// A subscriber that stops reading until its socket is full (the broker's sends would block, so
/// a drain task takes over the socket) and then reads again gets every message in order, and
/// messages published after the backlog still arrive (the socket is back to direct writes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reader_catches_up_in_order_and_keeps_receiving() {
    // 32 MiB: far more than the loopback socket buffers hold, well within the queue limits.
    const N: usize = 4000;
    const SIZE: usize = 8 * 1024;
    bounded(secs(120), async {
        let broker = Broker::start_sharded(&[]);
        let port = broker.port;
        let (mut sub, _) =
            RawClient::connect311(port, &client_id_on_shard("stall-sub", 0, SHARDS), true, 0);
        sub.subscribe_ok(1, &[("stall/t", 0)]);
        let (mut publ, _) =
            RawClient::connect311(port, &client_id_on_shard("stall-pub", 1, SHARDS), true, 0);
        for i in 0..N {
            let mut payload = format!("{i:08}").into_bytes();
            payload.resize(SIZE, b'x');
            publ.publish(Publish::new("stall/t", &payload));
        }
        // Packets are handled in order: once PINGRESP is back, all N were routed.
        publ.ping();
        for i in 0..N {
            let m = sub.next_publish(LONG);
            assert_eq!(m.payload.len(), SIZE);
            assert_eq!(&m.payload[..8], format!("{i:08}").as_bytes(), "order");
        }
        for k in 0..5 {
            publ.publish(Publish::new("stall/t", format!("after-{k}").as_bytes()));
            assert_eq!(sub.next_publish(LONG).text(), format!("after-{k}"));
        }
        broker.assert_alive();
    })
    .await;
}

/// A slow consumer (raw subscribers that never read their socket, one at QoS 0 and one at
/// QoS 1 that never acks) with a small --max-queued-messages does not hold up a normal
/// subscriber on the same topic: all 6000 messages of 16 KiB reach it in order. The broker's
/// memory does not grow with what the slow consumers failed to take (checked loosely: less
/// than half of the 96 MiB sent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_does_not_block_others() {
    const N: usize = 6000;
    const SIZE: usize = 16 * 1024;
    const BATCH: usize = 20;
    bounded(secs(240), async {
        let broker =
            Broker::start_sharded(&["--max-queued-messages", "50", "--max-inflight", "10"]);
        let port = broker.port;
        let (mut slow0, _) =
            RawClient::connect311(port, &client_id_on_shard("slow-q0", 0, SHARDS), true, 0);
        slow0.subscribe_ok(1, &[("slow/t", 0)]);
        let (mut slow1, _) =
            RawClient::connect311(port, &client_id_on_shard("slow-q1", 1, SHARDS), true, 0);
        slow1.subscribe_ok(1, &[("slow/t", 1)]);

        let mut o = opts(port, &client_id_on_shard("slow-normal", 1, SHARDS));
        o.set_max_packet_size(1 << 20, 1 << 20);
        let mut normal = connect_with(o).await;
        normal.subscribe_ok("slow/t", 1).await;
        let mut o = opts(port, &client_id_on_shard("slow-pub", 0, SHARDS));
        o.set_max_packet_size(1 << 20, 1 << 20);
        o.set_inflight(BATCH as u16);
        let mut publ = connect_with(o).await;

        let rss_before = broker.rss_bytes();
        // Lock-step batches: the normal subscriber's own queue never holds more than BATCH.
        for b in 0..N / BATCH {
            let payloads: Vec<Vec<u8>> = (b * BATCH..(b + 1) * BATCH)
                .map(|i| {
                    let mut v = format!("{i:08}").into_bytes();
                    v.resize(SIZE, b'x');
                    v
                })
                .collect();
            publ.publish_all("slow/t", 1, payloads).await;
            let got = recv_n(&mut normal.publishes, BATCH, secs(30)).await;
            for (k, m) in got.iter().enumerate() {
                let seq: usize = std::str::from_utf8(&m.payload[..8])
                    .unwrap()
                    .parse()
                    .unwrap();
                assert_eq!(seq, b * BATCH + k, "normal subscriber: message order");
                assert_eq!(m.payload.len(), SIZE);
            }
        }
        let rss_after = broker.rss_bytes();
        eprintln!("broker RSS before {rss_before:?} after {rss_after:?}");
        if let (Some(before), Some(after)) = (rss_before, rss_after) {
            let grown = after.saturating_sub(before);
            assert!(
                grown < 48 << 20,
                "broker RSS grew by {} MiB while slow consumers held back (sent {} MiB)",
                grown >> 20,
                (N * SIZE) >> 20
            );
        }
        broker.assert_alive();
        // A fresh pair still works.
        let mut s = connect(port, "slow-after-sub", true).await;
        s.subscribe_ok("slow/after", 1).await;
        publ.publish("slow/after", 1, false, "ok").await;
        assert_eq!(texts(&recv_n(&mut s.publishes, 1, secs(10)).await), ["ok"]);
        drop((slow0, slow1));
    })
    .await;
}
