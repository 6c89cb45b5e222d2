//! Keep alive in 3.1.1 and 5.0: PINGREQ / PINGRESP, a silent client closed after one and a
//! half keep alives (with DISCONNECT 0x8D in 5.0), `--max-keepalive` as Server Keep Alive.
//!
//! Cross-shard back-pressure never makes a client miss its keep alive (issue 9, item 13): one
//! shard of the broker is frozen (ptrace stops just that thread), so that the messages another
//! shard routes to it pile up. Only the publishers feeding them are paused; an idle client on the
//! same shard keeps getting its PINGRESPs, and a paused publisher is neither timed out by the
//! broker nor kept from its PINGRESP once it is read again.

use std::io::Write;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::enc::{self, kind, p, Connect, Publish};
use crate::common::raw::{RawClient, ReadErr, LONG, SHORT};
use crate::common::v5::V5;
use crate::common::{client_id_on_shard, millis, run_bounded, secs, Broker, SHARDS};

/// PINGREQ (C0 00) -> PINGRESP (D0 00), byte for byte.
#[test]
fn pingreq_gets_pingresp() {
    run_bounded(secs(30), || {
        let broker = Broker::start(&[]);
        let (mut c, _) = RawClient::connect311(broker.port, "pinger", true, 60);
        for _ in 0..3 {
            c.send_ok(&[0xC0, 0x00]);
            let p = c.expect_packet(SHORT, "PINGRESP");
            assert_eq!(p.bytes(), vec![0xD0, 0x00]);
        }
    });
}

/// A client with keepalive 1 s that goes silent is disconnected after about 1.5 s: not before
/// 1 s, and within a bounded wait [MQTT-3.1.2-24].
#[test]
fn silent_client_closed_after_one_and_a_half_keepalive() {
    run_bounded(secs(60), || {
        let broker = Broker::start(&[]);
        let (mut c, _) = RawClient::connect311(broker.port, "silent", true, 1);
        let t0 = Instant::now();
        c.expect_closed(secs(10), "silent client with keepalive 1 s");
        let waited = t0.elapsed();
        assert!(
            waited >= Duration::from_millis(1000),
            "closed after {waited:?}: earlier than the keepalive itself"
        );
        broker.assert_alive();
    });
}

/// A client with keepalive 3 s that pings every 0.5 s stays connected for 5 s (well past 1.5 x
/// the keepalive; the margin keeps a loaded machine from failing a correct broker).
#[test]
fn pinging_client_stays_connected() {
    run_bounded(secs(60), || {
        let broker = Broker::start(&[]);
        let (mut c, _) = RawClient::connect311(broker.port, "pinging", true, 3);
        let t0 = Instant::now();
        while t0.elapsed() < secs(5) {
            std::thread::sleep(Duration::from_millis(500));
            c.send_ok(&enc::PINGREQ);
            match c.read_packet(SHORT) {
                Ok(p) => assert_eq!(p.bytes(), vec![0xD0, 0x00], "PINGRESP"),
                Err(ReadErr::Closed(how)) => {
                    panic!("client pinging every 0.5 s with keepalive 3 s was closed after {:?} ({how})", t0.elapsed())
                }
                Err(ReadErr::Timeout) => panic!("no PINGRESP"),
            }
        }
    });
}

/// --max-keepalive 2: a client asking for 60 or for 0 gets Server Keep Alive 2, and the broker
/// enforces it: the silent client is disconnected with 0x8D well before its own 60 s (bound
/// 12 s). A client asking for 1 gets no Server Keep Alive other than 1.
#[test]
fn max_keepalive_sets_server_keep_alive_and_is_enforced() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&["--max-keepalive", "2"]);
        let mut a = V5::connect_with(broker.port, Connect::v5("ska-60").keepalive(60));
        assert_eq!(
            a.connack_num(p::SERVER_KEEP_ALIVE),
            Some(2),
            "{:?}",
            a.connack_props
        );
        let mut z = V5::connect_with(broker.port, Connect::v5("ska-0").keepalive(0));
        assert_eq!(
            z.connack_num(p::SERVER_KEEP_ALIVE),
            Some(2),
            "{:?}",
            z.connack_props
        );
        let one = V5::connect_with(broker.port, Connect::v5("ska-1").keepalive(1));
        if let Some(v) = one.connack_num(p::SERVER_KEEP_ALIVE) {
            assert_eq!(v, 1, "client asked for less than the maximum");
        }
        let t = Instant::now();
        let (rc, _) = a.expect_disconnect(secs(12), "silent client, server keep alive 2 s");
        assert_eq!(rc, 0x8D, "Keep alive timeout");
        assert!(
            t.elapsed() >= millis(1500),
            "closed after {:?}, before the keep alive",
            t.elapsed()
        );
        let (rc, _) = z.expect_disconnect(secs(12), "keep alive 0 replaced by 2 s");
        assert_eq!(rc, 0x8D);
    });
}

/// Keep alive 1 s and silence: DISCONNECT 0x8D, then close. A pinging client stays.
#[test]
fn keepalive_timeout_disconnects_0x8d() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let mut pinger = V5::connect_with(broker.port, Connect::v5("ka-ping").keepalive(1));
        let mut silent = V5::connect_with(broker.port, Connect::v5("ka-silent").keepalive(1));
        // The pinger pings every 300 ms for 4 s on its own thread while the silent one waits.
        let pinging = std::thread::spawn(move || {
            let until = Instant::now() + secs(4);
            while Instant::now() < until {
                pinger.ping();
                std::thread::sleep(millis(300));
            }
            pinger
        });
        let (rc, _) = silent.expect_disconnect(secs(10), "keep alive 1 s, silent");
        assert_eq!(rc, 0x8D);
        let mut pinger = pinging.join().expect("pinging client was disconnected");
        pinger.ping();
        assert!(pinger.log.iter().all(|pk| pk.kind() != kind::DISCONNECT));
    });
}

/// The thread id of shard `shard` of the broker (threads are named `ringmq-shard-N`).
fn shard_thread(pid: u32, shard: usize) -> i32 {
    let want = format!("ringmq-shard-{shard}");
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let path = entry.unwrap().path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim() == want {
            return path.file_name().unwrap().to_str().unwrap().parse().unwrap();
        }
    }
    panic!("no thread {want} in process {pid}");
}

/// Stops thread `tid` until the returned sender is dropped or sent to. ptrace must be driven
/// from one thread, which this spawns.
fn freeze(tid: i32) -> mpsc::Sender<()> {
    let (thaw, thawed) = mpsc::channel::<()>();
    let (frozen, is_frozen) = mpsc::channel();
    std::thread::spawn(move || {
        // SAFETY: ptrace and waitpid on a thread of our own child process.
        unsafe {
            let seized = libc::ptrace(libc::PTRACE_SEIZE, tid, 0, 0) == 0
                && libc::ptrace(libc::PTRACE_INTERRUPT, tid, 0, 0) == 0;
            let mut status = 0;
            let stopped = seized && libc::waitpid(tid, &mut status, libc::__WALL) == tid;
            frozen.send(stopped).unwrap();
            let _ = thawed.recv();
            libc::ptrace(libc::PTRACE_DETACH, tid, 0, 0);
        }
    });
    assert!(
        is_frozen.recv().unwrap(),
        "cannot stop thread {tid}: {}",
        std::io::Error::last_os_error()
    );
    thaw
}

#[test]
fn a_frozen_shard_pauses_only_its_publishers_and_no_one_misses_a_keep_alive() {
    run_bounded(secs(120), || {
        let broker = Broker::start_sharded(&["--sys-interval", "0"]);
        let port = broker.port;
        let (mut subscriber, _) =
            RawClient::connect311(port, &client_id_on_shard("far-sub", 1, SHARDS), true, 600);
        assert_eq!(subscriber.subscribe(1, &[("far/t", 0)]), [0]);
        // The idle client's claim is that its PINGRESPs come within a second while the shard
        // beside it is frozen (asserted below); its own keep alive is long, so that a host
        // saturated by the flood after the thaw (both cores, in CI beside other tests) cannot
        // fail it by delaying its pings in the kernel. The publisher's short keep alive is
        // the one that must not run out while it is paused.
        let (mut idle, _) =
            RawClient::connect311(port, &client_id_on_shard("idle", 0, SHARDS), true, 60);
        let (mut publisher, _) =
            RawClient::connect311(port, &client_id_on_shard("flood", 0, SHARDS), true, 2);

        let thaw = freeze(shard_thread(broker.pid(), 1));
        // Enough to fill the mesh channel to shard 1 and then the outbox behind it.
        let flood: Vec<u8> = Publish::new(b"far/t", b"1234").encode().repeat(900_000);
        let mut stream = publisher.stream().try_clone().unwrap();
        stream.set_write_timeout(Some(secs(60))).unwrap();
        let writer = std::thread::spawn(move || stream.write_all(&flood).is_ok());
        let deadline = Instant::now() + LONG;
        while !broker
            .log_tail()
            .contains("publishers feeding them are slowed")
        {
            assert!(
                Instant::now() < deadline,
                "no back-pressure: {}",
                broker.log_tail()
            );
            idle.ping();
            std::thread::sleep(Duration::from_millis(50));
        }
        // Shard 1 stays frozen for longer than both keep alives (2 s, expired after 3 s).
        let frozen_at = Instant::now();
        while frozen_at.elapsed() < secs(5) {
            let sent = Instant::now();
            idle.ping();
            assert!(
                sent.elapsed() < Duration::from_secs(1),
                "an idle client waited {:?} for its PINGRESP",
                sent.elapsed()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        thaw.send(()).unwrap();
        // The rest of the flood goes in now, which takes a while on a loaded machine: the
        // idle client keeps pinging meanwhile, as a live client would.
        let deadline = Instant::now() + secs(60);
        while !writer.is_finished() && Instant::now() < deadline {
            idle.ping();
            std::thread::sleep(Duration::from_millis(200));
        }
        assert!(writer.join().unwrap(), "the publisher was not disconnected");
        publisher.ping();
        idle.ping();
        let first = subscriber.next_publish(LONG);
        assert_eq!(first.topic, "far/t");
        broker.assert_alive();
    });
}
