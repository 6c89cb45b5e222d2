//! Logging never stalls the broker, and goes where operators want it (issue 15): a stderr pipe
//! nobody reads costs log lines (counted in `$SYS/broker/log/dropped`), not service; a log file
//! is reopened on SIGHUP after logrotate moved it; JSON lines parse.

use std::path::Path;
use std::time::Instant;

use ringmq_test_support::Stderr;

use crate::common::enc::{kind, Publish};
use crate::common::raw::{RawClient, RawSession, LONG};
use crate::common::{run_bounded, secs, unique, wait_for_text, Broker};

/// Connects with a 3.1.1 CONNECT, gets CONNACK, then breaks the protocol (a second CONNECT):
/// the broker logs the connection and the close, and closes.
fn connect_and_misbehave(port: u16, n: usize) {
    let (mut c, _) = RawClient::connect311(port, &format!("noisy-{n}"), true, 60);
    c.send_ok(&crate::common::enc::Connect::v311("again").encode());
    c.expect_closed(LONG, "a second CONNECT closes the connection");
}

#[test]
fn a_stderr_nobody_reads_never_stalls_the_broker() {
    run_bounded(secs(240), || {
        let broker = Broker::start_unwatched(
            &["-v", "--shards", "2", "--sys-interval", "1"],
            Stderr::Unread,
        );
        let port = broker.port;
        // Three log lines each (connected, closing, disconnected): far more than the pipe
        // and the log queue hold.
        for n in 0..3000 {
            connect_and_misbehave(port, n);
        }
        // A healthy pair still goes at full speed through it all.
        let mut sub = RawSession::new(port, &unique("log-sub"));
        sub.connect(true, 60);
        assert_eq!(sub.subscribe(1, &[("log/t", 1)]), [1]);
        let (mut publisher, _) = RawClient::connect311(port, &unique("log-pub"), true, 60);
        let started = Instant::now();
        const PAIR: u16 = 2000;
        for pkid in 1..=PAIR {
            publisher.send_ok(&Publish::new("log/t", "m").qos(1).pkid(pkid).encode());
        }
        for _ in 0..PAIR {
            assert_eq!(publisher.expect_packet(LONG, "PUBACK").kind(), kind::PUBACK);
        }
        for n in 0..PAIR {
            assert!(sub.recv(LONG).is_some(), "message {n} of {PAIR}");
        }
        eprintln!(
            "3000 noisy connections, then {PAIR} QoS 1 messages in {:?}",
            started.elapsed()
        );
        let dropped = broker.sys_figure("$SYS/broker/log/dropped", LONG, |n| n > 0);
        eprintln!("{dropped} log lines dropped");
        broker.assert_alive();
    });
}

/// The line of `path` containing `text`, once there is one.
fn wait_for_line(path: &Path, text: &str) -> String {
    let content = wait_for_text(path, text);
    let line = content
        .lines()
        .find(|l| l.contains(text))
        .expect("found above");
    line.to_string()
}

#[test]
fn the_log_file_is_reopened_on_sighup_after_it_is_moved() {
    run_bounded(secs(60), || {
        let dir = std::env::temp_dir().join(unique("ringmq-logs"));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("ringmq.log");
        let broker =
            Broker::start_unwatched(&["-v", "--log-file", log.to_str().unwrap()], Stderr::Null);
        wait_for_line(&log, "ringmq ready");
        let rotated = dir.join("ringmq.log.1");
        std::fs::rename(&log, &rotated).unwrap();
        broker.signal("HUP");
        // Once reopened, new lines go to a new file at the path.
        let deadline = Instant::now() + LONG;
        let mut n = 0;
        while !log.exists() {
            let (c, _) = RawClient::connect311(broker.port, &format!("after-hup-{n}"), true, 60);
            c.disconnect();
            n += 1;
            assert!(Instant::now() < deadline, "no new log file after SIGHUP");
        }
        wait_for_line(&log, "after-hup");
        let old = std::fs::read_to_string(&rotated).unwrap();
        assert!(
            old.contains("ringmq ready"),
            "the moved file keeps what it had"
        );
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn json_log_lines_parse() {
    run_bounded(secs(60), || {
        let dir = std::env::temp_dir().join(unique("ringmq-json"));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("ringmq.log");
        let broker = Broker::start_unwatched(
            &[
                "-v",
                "--log-format",
                "json",
                "--log-file",
                log.to_str().unwrap(),
            ],
            Stderr::Null,
        );
        wait_for_line(&log, "ringmq ready");
        let (c, _) = RawClient::connect311(broker.port, "json-client", true, 60);
        c.disconnect();
        wait_for_line(&log, "json-client");
        let content = std::fs::read_to_string(&log).unwrap();
        for line in content.lines() {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            assert!(v["level"].is_string(), "{line}");
            assert!(v["fields"]["message"].is_string(), "{line}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    });
}
