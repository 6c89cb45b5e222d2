//! Cross-shard back-pressure never makes a client miss its keep alive (issue 9, item 13).
//!
//! One shard of the broker is frozen (ptrace stops just that thread), so that the messages
//! another shard routes to it pile up. Only the publishers feeding them are paused; an idle
//! client on the same shard keeps getting its PINGRESPs, and a paused publisher is neither
//! timed out by the broker nor kept from its PINGRESP once it is read again.

use std::io::Write;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::enc::Publish;
use crate::common::raw::{RawClient, LONG};
use crate::common::{client_id_on_shard, run_bounded, secs, Broker, SHARDS};

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
        let (mut idle, _) =
            RawClient::connect311(port, &client_id_on_shard("idle", 0, SHARDS), true, 2);
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
        assert!(writer.join().unwrap(), "the publisher was not disconnected");
        publisher.ping();
        idle.ping();
        let first = subscriber.next_publish(LONG);
        assert_eq!(first.topic, "far/t");
        broker.assert_alive();
    });
}
