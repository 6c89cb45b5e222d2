//! `--data-dir`: sessions, their subscriptions and retained messages survive a restart and a
//! `kill -9`, and a damaged log does not keep the broker from starting (issue 12). Queued and
//! in-flight messages across crashes: `crash.rs`, and the paho scenario in `interop.rs`.

use std::path::PathBuf;

use ringmq::core::store::scan;

use crate::common::enc::Publish;
use crate::common::raw::{RawClient, RawSession, LONG};
use crate::common::{client_id_on_shard, run_bounded, secs, unique, Broker, SHARDS};

fn data_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(unique("ringmq-data"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn start(dir: &std::path::Path) -> Broker {
    Broker::start_sharded(&["--data-dir", dir.to_str().unwrap()])
}

/// A persistent subscriber and a retained message, then `stop`, then a restart on the same
/// data: the session is there, its subscription gets new messages, the retained message is
/// there for a new subscriber.
fn survives(stop: &'static str) {
    let dir = data_dir();
    let keeper = client_id_on_shard("keeper", 1, SHARDS);
    let broker = start(&dir);
    let port = broker.port;
    let keeper_id = keeper.clone();
    run_bounded(secs(60), move || {
        let (mut c, present) = RawClient::connect311(port, &keeper_id, false, 60);
        assert!(!present);
        // The SUBACK and the PUBACK come once their records are on disk.
        c.subscribe_ok(1, &[("d/#", 1)]);
        let (mut p, _) = RawClient::connect311(port, "setter", true, 60);
        p.publish(Publish::new("r/kept", "v").qos(1).pkid(1).retain(true));
    });
    broker.signal(stop);
    assert!(
        broker.wait_exit(secs(10)).is_some(),
        "the broker did not exit on {stop}"
    );

    let broker = start(&dir);
    let port = broker.port;
    run_bounded(secs(60), move || {
        let (mut c, present) = RawClient::connect311(port, &keeper, false, 60);
        assert!(present, "the session survived the {stop}");
        let (mut p, _) = RawClient::connect311(port, "publisher", true, 60);
        p.publish(Publish::new("d/after", "x").qos(1).pkid(1));
        assert_eq!(
            c.next_publish(LONG).topic,
            "d/after",
            "its subscription survived"
        );
        let (mut w, _) = RawClient::connect311(port, "watcher", true, 60);
        w.subscribe_ok(1, &[("r/#", 0)]);
        let kept = w.next_publish(LONG);
        assert_eq!((kept.topic.as_str(), kept.text().as_str()), ("r/kept", "v"));
    });
    broker.assert_alive();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_session_and_a_retained_message_survive_a_clean_restart() {
    survives("TERM");
}

#[test]
fn a_session_and_a_retained_message_survive_a_kill_9() {
    survives("KILL");
}

#[test]
fn a_damaged_log_is_cut_and_the_broker_starts() {
    let dir = data_dir();
    let broker = start(&dir);
    let port = broker.port;
    let keeper = client_id_on_shard("damaged", 0, SHARDS);
    let id = keeper.clone();
    run_bounded(secs(30), move || {
        let (mut c, _) = RawClient::connect311(port, &id, false, 60);
        c.subscribe_ok(1, &[("t", 1)]);
    });
    broker.signal("KILL");
    assert!(broker.wait_exit(secs(10)).is_some());
    // A torn write at the end of one log's records (over the zeros the log is filled with
    // ahead of them, as a crash leaves it), garbage in the middle of the other.
    let log0 = dir.join("shard-0.log");
    let mut bytes = std::fs::read(&log0).unwrap();
    let end = scan(&bytes::Bytes::from(bytes.clone())).sound_len;
    let torn = [0x30, 0, 0, 0, 1, 2];
    if bytes.len() < end + torn.len() {
        bytes.resize(end + torn.len(), 0);
    }
    bytes[end..end + torn.len()].copy_from_slice(&torn);
    std::fs::write(&log0, &bytes).unwrap();
    std::fs::write(dir.join("shard-1.log"), [0xff; 64]).unwrap();
    let broker = start(&dir);
    let port = broker.port;
    run_bounded(secs(30), move || {
        let (_c, present) = RawClient::connect311(port, &keeper, false, 60);
        assert!(present, "what came before the damage is recovered");
    });
    let log = broker.log_tail();
    assert!(log.contains("cut short"), "{log}");
    assert!(log.contains("damaged log"), "{log}");
    assert!(
        dir.join("shard-1.log.corrupt").exists(),
        "the damaged log is set aside"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_qos2_publish_resent_after_a_kill_9_is_not_delivered_twice() {
    let dir = data_dir();
    let publisher = client_id_on_shard("qos2-pub", 0, SHARDS);
    let broker = start(&dir);
    let port = broker.port;
    let id = publisher.clone();
    run_bounded(secs(30), move || {
        let (mut p, _) = RawClient::connect311(port, &id, false, 60);
        p.send_ok(&Publish::new("q", "once").qos(2).pkid(7).encode());
        // PUBREC: the broker has the message, and (on disk) that it has it.
        p.expect_kind(crate::common::enc::kind::PUBREC, LONG);
    });
    broker.signal("KILL");
    assert!(broker.wait_exit(secs(10)).is_some());
    let broker = start(&dir);
    let port = broker.port;
    run_bounded(secs(30), move || {
        let (mut sub, _) = RawClient::connect311(port, "qos2-sub", true, 60);
        sub.subscribe_ok(1, &[("q", 2)]);
        let (mut p, present) = RawClient::connect311(port, &publisher, false, 60);
        assert!(present);
        // The client never saw the PUBREC: it resends, and completes the flow.
        p.publish(Publish::new("q", "once").qos(2).pkid(7).dup(true));
        p.publish(Publish::new("q", "marker"));
        let first = sub.next_publish(LONG);
        assert_eq!(
            first.text(),
            "marker",
            "the resent message was routed again"
        );
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_will_waiting_out_its_delay_survives_a_restart() {
    use crate::common::enc::{p, Connect, Props, Will};
    use ringmq::core::store::Record;
    let dir = data_dir();
    let broker = start(&dir);
    let port = broker.port;
    run_bounded(secs(30), move || {
        // A 5.0 session (5 minutes) with a will delayed 1 s; the connection drops without
        // a DISCONNECT, so the will waits.
        let will = Will::new("w/gone", "bye")
            .qos(1)
            .props(Props::new().u32(p::WILL_DELAY, 1));
        let connect = Connect::v5("dying").expiry(300).will(will).encode();
        let (c, connack) = RawClient::connect_raw(port, &connect);
        assert!(connack.is_ok(), "CONNACK");
        drop(c);
    });
    // Once the waiting will is in a log, a clean stop.
    let logged = |dir: &std::path::Path| {
        (0..SHARDS).any(|shard| {
            let bytes = std::fs::read(dir.join(format!("shard-{shard}.log"))).unwrap_or_default();
            scan(&bytes::Bytes::from(bytes))
                .records
                .iter()
                .any(|r| matches!(r, Record::Will { client_id, .. } if &**client_id == "dying"))
        })
    };
    let deadline = std::time::Instant::now() + LONG;
    while !logged(&dir) {
        assert!(std::time::Instant::now() < deadline, "no will in the logs");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    broker.signal("TERM");
    assert!(broker.wait_exit(secs(10)).is_some());
    let broker = start(&dir);
    let port = broker.port;
    run_bounded(secs(30), move || {
        let (mut w, _) = RawClient::connect311(port, "watcher", true, 60);
        w.subscribe_ok(1, &[("w/#", 1)]);
        let will = w.next_publish(LONG);
        assert_eq!(
            (will.topic.as_str(), will.text().as_str()),
            ("w/gone", "bye")
        );
    });
    let log = broker.log_tail();
    assert!(!log.contains("damaged log"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The `commits_meanwhile` of every "log compacted" line: the group commits a shard made
/// while its snapshot was written.
fn commits_during_compactions(log: &str) -> Vec<u64> {
    log.lines()
        .filter(|l| l.contains("log compacted"))
        .filter_map(|l| l.split("commits_meanwhile=").nth(1))
        .filter_map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

#[test]
fn acks_go_on_while_a_large_snapshot_is_written() {
    // An offline session's queue makes every snapshot large (it is live state, most of it
    // spilled to disk); a 1 MiB threshold makes snapshots frequent. A publisher waiting for
    // each PUBACK in turn keeps acks coming: they are committed while snapshots are written,
    // not after them. Then a restart: the queue, copied from snapshot to snapshot, is whole.
    let dir = data_dir();
    let flags = [
        "--data-dir",
        dir.to_str().unwrap(),
        "--compact-after-bytes",
        "1048576",
    ];
    let broker = Broker::start_sharded(&flags);
    let port = broker.port;
    run_bounded(secs(30), move || {
        let (mut hoarder, _) = RawClient::connect311(port, "hoarder", false, 60);
        hoarder.subscribe_ok(1, &[("big/#", 1)]);
        hoarder.disconnect();
    });
    // 12 to 32 MB queued (snapshots of several chunks, mostly spilled frames), 800 KB at a
    // time.
    let mut published = 0u32;
    let interleaved = (0..40).any(|_| {
        run_bounded(secs(60), move || {
            let (mut p, _) = RawClient::connect311(port, "filler", true, 60);
            for n in published..published + 100 {
                let mut payload = format!("{n:08}").into_bytes();
                payload.resize(8192, b'x');
                p.publish(
                    Publish::new("big/x", &payload)
                        .qos(1)
                        .pkid(1 + n as u16 % 100),
                );
            }
        });
        published += 100;
        published >= 1500
            && commits_during_compactions(&broker.log_tail())
                .iter()
                .any(|&c| c > 0)
    });
    assert!(
        interleaved,
        "no group commit while a snapshot was written: {:?}",
        commits_during_compactions(&broker.log_tail())
    );
    broker.signal("TERM");
    assert!(broker.wait_exit(secs(10)).is_some());
    let broker = Broker::start_sharded(&flags);
    let port = broker.port;
    run_bounded(secs(120), move || {
        let mut hoarder = RawSession::new(port, "hoarder");
        assert!(hoarder.connect(false, 60), "the session survived");
        for n in 0..published {
            let m = hoarder
                .recv(LONG)
                .unwrap_or_else(|| panic!("message {n} of {published}"));
            assert_eq!(&m.payload[..8], format!("{n:08}").as_bytes(), "in order");
        }
    });
    broker.assert_alive();
    let _ = std::fs::remove_dir_all(&dir);
}
