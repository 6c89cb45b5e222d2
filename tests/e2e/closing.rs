//! Closing is graceful (issue 9, item 14): the client reads the reason the broker gives before
//! it closes, even while it keeps sending; a stopped broker frees its port at once, and a new
//! one waits for a port still held by one that is going away.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::dec::{decode_disconnect, parse_packets};
use crate::common::enc::{self, kind, Connect, Props, Publish};
use crate::common::raw::{RawClient, LONG};
use crate::common::v5::V5;
use crate::common::{free_port, run_bounded, secs, Broker};

/// Writes `burst`, waits a moment as a client busy elsewhere would, then reads everything
/// until the close. Panics if the write failed (a reset or broken pipe: the client library
/// would report a lost connection and never read the reason) or the close came as a reset.
fn send_then_read(stream: &TcpStream, burst: &[u8]) -> Vec<u8> {
    let mut stream = stream.try_clone().unwrap();
    if let Err(e) = stream.write_all(burst) {
        panic!("the client's write failed ({e}): it never reads why");
    }
    std::thread::sleep(Duration::from_millis(200));
    stream.set_read_timeout(Some(LONG)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("reading until the close, after {got:02X?}: {e}"),
        }
    }
}

/// DISCONNECT 0x93 (Receive Maximum exceeded) reaches a client that sent more behind the
/// offending PUBLISH: the broker shuts its side for writing and discards the input for a
/// moment before it closes. Closing with unread input sends a reset, and the client then
/// read a broken connection instead of the reason code.
#[test]
fn a_client_that_sent_more_reads_why_it_was_disconnected() {
    run_bounded(secs(60), || {
        let broker = Broker::start(&["--receive-maximum", "10"]);
        for round in 0..5 {
            let c = V5::connect(broker.port, &format!("eager-{round}"), true);
            let mut burst = Vec::new();
            for id in 1..=16_000u16 {
                burst.extend(Publish::new("t", [0; 512]).qos(2).pkid(id).v5().encode());
            }
            let got = send_then_read(c.conn.stream(), &burst);
            let disconnect = parse_packets(&got)
                .into_iter()
                .find(|p| p.kind() == kind::DISCONNECT)
                .unwrap_or_else(|| panic!("round {round}: no DISCONNECT"));
            assert_eq!(decode_disconnect(&disconnect).0, 0x93, "round {round}");
        }
        broker.assert_alive();
    });
}

/// A refusing CONNACK reaches a client that sent more right behind its CONNECT.
#[test]
fn a_refused_client_reads_its_connack() {
    run_bounded(secs(60), || {
        let broker = Broker::start(&["--max-connections", "1", "--shards", "1"]);
        let (_first, _) = RawClient::connect311(broker.port, "first", true, 60);
        for round in 0..5 {
            let c = RawClient::tcp(broker.port);
            let mut burst = Connect::v311(format!("second-{round}")).encode();
            burst.extend(Publish::new(b"t", [0; 1000]).encode().repeat(8000));
            let got = send_then_read(c.stream(), &burst);
            assert_eq!(got, [0x20, 2, 0, 3], "round {round}");
        }
    });
}

/// The listeners go first on SIGTERM: twenty brokers in a row start on one port, each taking a
/// connection right after it is ready, none reset and none refused the port.
#[test]
fn a_broker_restarts_on_its_port_twenty_times_in_a_row() {
    run_bounded(secs(180), || {
        let port = free_port();
        for round in 0..20 {
            let broker = Broker::start_on(port, &["--shards", "2"])
                .unwrap_or_else(|e| panic!("start {round}: {e}"));
            for i in 0..4 {
                let mut c = V5::connect(port, &format!("restart-{round}-{i}"), true);
                c.send_ok(&enc::subscribe_v5(1, &Props::new(), &[("r", 0)]));
                c.conn.expect_kind(kind::SUBACK, LONG);
            }
            broker.signal("TERM");
            let status = broker.wait_exit(secs(10)).expect("stopped within 10 s");
            assert_eq!(status.code(), Some(0), "round {round}");
        }
    });
}

/// After `kill -9` the kernel may hold the port a moment longer (io_uring releases its sockets
/// asynchronously): a broker started at once on that port waits for it instead of failing.
#[test]
fn a_broker_started_right_after_a_kill_waits_for_the_port() {
    run_bounded(secs(120), || {
        let port = free_port();
        for round in 0..5 {
            let broker = Broker::start_on(port, &["--shards", "2"])
                .unwrap_or_else(|e| panic!("start {round}: {e}"));
            let _clients: Vec<V5> = (0..8)
                .map(|i| V5::connect(port, &format!("killed-{round}-{i}"), true))
                .collect();
            broker.signal("KILL");
            broker.wait_exit(secs(10)).expect("killed");
            let started = Instant::now();
            let next = Broker::start_on(port, &["--shards", "2"])
                .unwrap_or_else(|e| panic!("start after kill -9, round {round}: {e}"));
            let c = V5::try_connect(port, &Connect::v5("after-kill")).1;
            assert!(c.is_ok(), "round {round}: {c:?}");
            eprintln!(
                "round {round}: ready {:?} after the kill",
                started.elapsed()
            );
            drop(next);
            std::thread::sleep(Duration::from_millis(50));
        }
    });
}
