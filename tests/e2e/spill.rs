//! Spilled queues (issue 12): with `--data-dir`, a durable session keeps at most
//! `--max-queued-in-memory` queued messages in memory and the rest in spill files, so a large
//! backlog costs disk, not memory; it comes back whole and in order, after a `kill -9` too.

use std::path::Path;

use crate::common::enc::{kind, Publish};
use crate::common::raw::{RawClient, RawSession, LONG};
use crate::common::{client_id_on_shard, run_bounded, secs, unique, Broker, SHARDS};

const TOPIC: &str = "spill/t";
/// Messages a publisher keeps in flight.
const WINDOW: u32 = 64;

/// With `fsync` "always" an acknowledged message is on disk; "interval=20" is faster.
fn start(data: &Path, in_memory: &str, fsync: &str) -> Broker {
    Broker::start_sharded(&[
        "--data-dir",
        data.to_str().unwrap(),
        "--max-queued-in-memory",
        in_memory,
        "--max-queued-messages",
        "1000000",
        "--fsync",
        fsync,
        "--sys-interval",
        "1",
    ])
}

/// A 1 KB message that carries its sequence number.
fn message(seq: u32) -> Publish {
    Publish::new(TOPIC, format!("{seq:07}{}", "x".repeat(1000))).qos(1)
}

/// A durable subscriber of `TOPIC` on `shard` that has gone away.
fn subscriber_away(port: u16, shard: usize) -> RawSession {
    let mut sub = RawSession::new(
        port,
        &client_id_on_shard(&unique("spill-sub"), shard, SHARDS),
    );
    sub.connect(false, 600);
    assert_eq!(sub.subscribe(1, &[(TOPIC, 1)]), [1]);
    sub.disconnect();
    sub
}

/// Publishes messages `0..n` at QoS 1 from a publisher on the other shard, `WINDOW` at a time,
/// and waits for every PUBACK.
fn publish(port: u16, n: u32) {
    let id = client_id_on_shard(&unique("spill-pub"), 0, SHARDS);
    let (mut publisher, _) = RawClient::connect311(port, &id, true, 600);
    let mut seq = 0;
    while seq < n {
        let end = (seq + WINDOW).min(n);
        let mut batch = Vec::new();
        for s in seq..end {
            batch.extend(message(s).pkid((s % 60_000 + 1) as u16).encode());
        }
        publisher.send_ok(&batch);
        let mut acked = 0;
        while acked < end - seq {
            let p = publisher.expect_packet(LONG, "PUBACK");
            assert_eq!(p.kind(), kind::PUBACK, "{p:?}");
            acked += 1;
        }
        seq = end;
    }
}

/// Reconnects `sub` and takes messages until `n` have come; their sequence numbers.
fn receive(sub: &mut RawSession, port: u16, n: u32) -> Vec<u32> {
    sub.port = port;
    assert!(sub.connect(false, 600), "the session is gone");
    let mut got = Vec::with_capacity(n as usize);
    while got.len() < n as usize {
        let Some(m) = sub.recv(secs(20)) else {
            panic!("{} of {n} messages came", got.len());
        };
        got.push(m.text()[..7].parse().unwrap());
    }
    got
}

fn spill_files(data: &Path) -> usize {
    std::fs::read_dir(data)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_str().unwrap().starts_with("spill-")
        })
        .count()
}

#[test]
fn a_large_backlog_lives_on_disk_not_in_memory_and_arrives_whole_in_order() {
    run_bounded(secs(240), || {
        const N: u32 = 20_000;
        let data = std::env::temp_dir().join(unique("ringmq-spill"));
        let broker = start(&data, "100", "interval=20");
        let port = broker.port;
        let mut sub = subscriber_away(port, 1);
        let rss_before = broker.rss_bytes().unwrap();
        publish(port, N);
        let spilled = broker.sys_figure("$SYS/broker/store/spilled_now", LONG, |n| {
            n >= u64::from(N) - 100
        });
        let grown = broker.rss_bytes().unwrap().saturating_sub(rss_before);
        eprintln!(
            "{spilled} messages spilled; RSS grew by {} KiB",
            grown >> 10
        );
        // In memory they would take 20 MB of payload alone (about 25 MB with their records);
        // spilled, the broker grew by about 5 MB here.
        assert!(
            grown < 15 << 20,
            "RSS grew by {grown} bytes for {N} queued 1 KB messages"
        );
        assert!(
            spill_files(&data) > 0,
            "no spill file in {}",
            data.display()
        );

        let got = receive(&mut sub, port, N);
        assert_eq!(got, (0..N).collect::<Vec<_>>(), "every message, in order");
        sub.disconnect();
        broker.sys_figure("$SYS/broker/store/spilled_now", LONG, |n| n == 0);
        broker.assert_alive();
        let _ = std::fs::remove_dir_all(&data);
    });
}

#[test]
fn spilled_messages_survive_a_kill_9() {
    run_bounded(secs(180), || {
        const N: u32 = 3_000;
        let data = std::env::temp_dir().join(unique("ringmq-spill-kill"));
        let broker = start(&data, "50", "always");
        let mut sub = subscriber_away(broker.port, 1);
        publish(broker.port, N);
        broker.sys_figure("$SYS/broker/store/spilled_now", LONG, |n| n > 0);
        broker.signal("KILL");
        assert!(broker.wait_exit(secs(10)).is_some());

        let broker = start(&data, "50", "always");
        let got = receive(&mut sub, broker.port, N);
        let mut seen = got.clone();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(
            seen,
            (0..N).collect::<Vec<_>>(),
            "every acknowledged message"
        );
        assert!(got.windows(2).all(|w| w[0] < w[1]), "in order");
        broker.assert_alive();
        let _ = std::fs::remove_dir_all(&data);
    });
}
