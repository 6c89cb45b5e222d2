//! Start-up failures give a clear error and a non-zero exit, never a panic or a hang.

use std::os::unix::process::CommandExt;
use std::process::{Command, Output};
use std::time::Duration;

use crate::common;

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
