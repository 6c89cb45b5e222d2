//! Starting and stopping the broker, and closing connections gracefully.
//!
//! Start-up failures give a clear error and a non-zero exit, never a panic or a hang. Closing is
//! graceful (issue 9, item 14): the client reads the reason the broker gives before it closes,
//! even while it keeps sending; SIGTERM sends 5.0 clients DISCONNECT 0x8B; a stopped broker frees
//! its port at once, and a new one waits for a port still held by one that is going away.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common;
use crate::common::dec::{decode_disconnect, parse_packets};
use crate::common::enc::{self, kind, Connect, Props, Publish};
use crate::common::raw::{RawClient, LONG};
use crate::common::v5::V5;
use crate::common::{client_id_on_shard, free_port, run_bounded, secs, Broker, SHARDS};

fn run_ringmq(args: &[&str], memlock: Option<u64>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringmq"));
    cmd.args(args);
    if let Some(limit) = memlock {
        // SAFETY: setrlimit is async-signal-safe and touches only the child.
        unsafe {
            cmd.pre_exec(move || {
                let rl = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                if libc::setrlimit(libc::RLIMIT_MEMLOCK, &rl) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn ringmq");
    let pid = child.id();
    // Bounded: a broker that started after all would run forever.
    let guard = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(20));
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    });
    let out = child.wait_with_output().expect("wait");
    drop(guard);
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = run_ringmq(&["--bind", "127.0.0.1", "-p", &port, "--shards", "1"], None);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("cannot listen on 127.0.0.1:"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn memlock_too_low_is_a_clear_error() {
    let out = run_ringmq(
        &["--bind", "127.0.0.1", "-p", "0", "--shards", "2"],
        Some(64 * 1024),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("locked-memory limit"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_missing_or_bad_password_file_is_a_clear_error() {
    let run_with = |path: &str| {
        let args = ["--bind", "127.0.0.1", "-p", "0", "--shards", "1"];
        run_ringmq(&[&args[..], &["--password-file", path]].concat(), None)
    };
    let out = run_with("/nonexistent/passwords.txt");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("password file /nonexistent/passwords.txt"));

    let bad = std::env::temp_dir().join(format!("ringmq-bad-passwords-{}", std::process::id()));
    std::fs::write(&bad, "# ok so far\nsensor-1:plain-text-password\n").unwrap();
    let out = run_with(bad.to_str().unwrap());
    let _ = std::fs::remove_file(&bad);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("line 2:") && err.contains("mosquitto_passwd -U"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_flag_is_a_usage_error() {
    let out = run_ringmq(&["--no-such-flag"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("Usage"), "{}", stderr(&out));
    let out = run_ringmq(&["--shards", "0"], None);
    assert_eq!(out.status.code(), Some(2));
}

/// The broker closes first after a client's DISCONNECT, so its port has connections in
/// TIME_WAIT; a restart on the same port must still work (SO_REUSEADDR).
#[test]
fn restart_on_the_same_port_right_after_clients_left() {
    use std::io::{BufRead, BufReader, Read, Write};
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let start = || {
        let mut child = spawn_on_port(port);
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let ready = lines
            .by_ref()
            .take(20)
            .map_while(Result::ok)
            .any(|l| l.contains("ringmq ready"));
        // Keep draining, as a terminal or journald would.
        std::thread::spawn(move || lines.for_each(drop));
        (child, ready)
    };
    let (mut first, ready) = start();
    assert!(ready, "first start");
    let mut client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client
        .write_all(b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01r")
        .unwrap();
    let mut connack = [0u8; 4];
    client.read_exact(&mut connack).unwrap();
    client.write_all(b"\xe0\x00").unwrap();
    // The broker closes: EOF.
    assert_eq!(client.read(&mut [0u8; 1]).unwrap(), 0);
    unsafe { libc::kill(first.id() as i32, libc::SIGTERM) };
    first.wait().unwrap();
    let (mut second, ready) = start();
    let _ = second.kill();
    let _ = second.wait();
    assert!(ready, "restart on port {port} failed");
}

/// SIGTERM stops the broker even when whoever read its stderr has gone away (a closed pipe):
/// stopping must not depend on a log line being written.
#[test]
fn sigterm_stops_the_broker_even_with_its_stderr_closed() {
    use std::io::{BufRead, BufReader};
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = spawn_on_port(port);
    let stderr = child.stderr.take().unwrap();
    let ready = BufReader::new(stderr)
        .lines()
        .take(20)
        .map_while(Result::ok)
        .any(|l| l.contains("ringmq ready"));
    assert!(ready);
    // The reader (and with it the pipe) is gone now.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        status.is_some(),
        "ringmq did not stop within 10 s of SIGTERM"
    );
}

/// One shard on 127.0.0.1:`port`, stderr piped to the test.
fn spawn_on_port(port: u16) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_ringmq"))
        .args([
            "--bind",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "--shards",
            "1",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn ringmq")
}

/// Transparent huge pages are off for the broker process unless `--huge-pages` asks for them
/// (the kernel reports the process flag as `THP_enabled` in /proc/<pid>/status).
#[test]
fn huge_pages_are_off_unless_asked_for() {
    for (args, expected) in [(&[][..], "0"), (&["--huge-pages"][..], "1")] {
        // Ready means listening, well after main set the flag.
        let broker = common::Broker::start(args);
        let status = std::fs::read_to_string(format!("/proc/{}/status", broker.pid()))
            .expect("read the broker's status");
        let line = status
            .lines()
            .find(|l| l.starts_with("THP_enabled:"))
            .expect("kernel reports THP_enabled");
        assert_eq!(line.split_whitespace().nth(1), Some(expected), "{args:?}");
    }
}

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

/// SIGTERM: every v5 client gets DISCONNECT 0x8B (Server shutting down) and is closed; a 3.1.1
/// client is just closed; the process exits with status 0 within a few seconds.
#[test]
fn sigterm_sends_0x8b_and_exits_0() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let mut v5s: Vec<V5> = (0..4)
            .map(|i| {
                V5::connect(
                    broker.port,
                    &client_id_on_shard(&format!("term-{i}"), i % SHARDS, SHARDS),
                    true,
                )
            })
            .collect();
        for c in &mut v5s {
            c.ping();
        }
        let (mut old, _) = RawClient::connect311(broker.port, "term-311", true, 60);
        old.ping();
        broker.signal("TERM");
        for c in &mut v5s {
            let (rc, _) = c.expect_disconnect(secs(10), "broker stopped with SIGTERM");
            assert_eq!(rc, 0x8B, "{}: Server shutting down", c.id);
        }
        let got = old.expect_closed(secs(10), "3.1.1 client on SIGTERM");
        assert!(
            got.is_empty(),
            "nothing (no DISCONNECT) to a 3.1.1 client: {got:?}"
        );
        let st = broker
            .wait_exit(secs(10))
            .expect("broker still running 10 s after SIGTERM");
        assert_eq!(st.code(), Some(0), "exit status after SIGTERM: {st}");
    });
}
