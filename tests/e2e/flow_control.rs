//! Flow control (issue 11): a connected subscriber slower than its QoS 1 publishers slows
//! them down instead of losing what they were acknowledged; a stuck subscriber holds no one
//! back; a shared group sends past a member that is behind. Each on one shard and across two.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::enc::{self, kind, Publish};
use crate::common::raw::RawClient;
use crate::common::{client_id_on_shard, run_bounded, secs, Broker, SHARDS};

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

/// The broker's resident memory now, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
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
                peak.fetch_max(rss(pid), Relaxed);
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
