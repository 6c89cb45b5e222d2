//! Shared by the harness tests: the real ringmq broker on a free loopback port, and a way to
//! run `ringmq-load` against it and read its JSON.
#![allow(dead_code)] // each test file uses a different part

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::Duration;

pub const LOAD: &str = env!("CARGO_BIN_EXE_ringmq-load");

/// The broker binary: `$RINGMQ_BIN`, else the workspace's `target/debug/ringmq` (which
/// `cargo test --workspace` builds for the broker's own tests), else built once here into a
/// target dir of its own (the outer cargo holds the lock on the main one).
fn broker_bin() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("RINGMQ_BIN") {
            return PathBuf::from(p);
        }
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        let main = target.join("debug/ringmq");
        if main.exists() {
            return main;
        }
        let own = target.join("loadtest-broker");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "ringmq", "--bin", "ringmq", "--target-dir"])
            .arg(&own)
            .current_dir(&root)
            .status()
            .expect("run cargo build for the broker");
        assert!(status.success(), "building the ringmq broker failed");
        own.join("debug/ringmq")
    })
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

pub struct Broker {
    child: Child,
    pub port: u16,
}

impl Broker {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts ringmq with 2 shards and waits for `ringmq ready` (retrying on a fresh port if the
    /// chosen one was taken in between). Per-session queues are unbounded, as in perf/race.sh:
    /// the broker acks a QoS 1 flood faster than it delivers, and with its default queue limit
    /// (10,000) it drops the excess by design, which is not what these tests measure.
    pub fn start() -> Broker {
        for _ in 0..3 {
            if let Some(b) = Self::try_start(free_port()) {
                return b;
            }
        }
        panic!("ringmq did not start ({})", broker_bin().display());
    }

    fn try_start(port: u16) -> Option<Broker> {
        let mut child = Command::new(broker_bin())
            .args([
                "--bind",
                "127.0.0.1",
                "--shards",
                "2",
                "-p",
                &port.to_string(),
            ])
            .args([
                "--max-queued-messages",
                "100000000",
                "--max-queued-bytes",
                "8000000000",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ringmq");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("ringmq ready") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(());
                    }
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(()) => Some(Broker { child, port }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                None
            }
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `ringmq-load <args> --port <port>`.
pub fn load(port: u16, args: &[&str]) -> Output {
    Command::new(LOAD)
        .args(args)
        .args(["--port", &port.to_string()])
        .output()
        .expect("run ringmq-load")
}

/// Runs a scenario with `--json --quiet`, asserts it succeeded, returns its JSON.
pub fn load_json(port: u16, args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.extend(["--json", "--quiet"]);
    let out = load(port, &all);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "ringmq-load {args:?} failed ({}):\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The number after `"key":` in a flat JSON object.
pub fn num(json: &str, key: &str) -> f64 {
    let pat = format!("\"{key}\":");
    let at = json
        .find(&pat)
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        + pat.len();
    let rest = &json[at..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end]
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not a number in {json}"))
}
