//! Shared by the harness tests: the real ringmq broker on a free loopback port (started by
//! `ringmq_test_support`, as for the broker's own end-to-end tests), and a way to run
//! `ringmq-load` against it and read its JSON.
#![allow(dead_code, unused_imports)] // each test file uses a different part

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

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

pub use ringmq_test_support::{free_port, Broker};

/// Starts ringmq with 2 shards and waits for `ringmq ready` (retrying on a fresh port if the
/// chosen one was taken in between); it is killed on drop, and by the kernel if the thread that
/// started it dies first. Per-session queues are unbounded, as in perf/race.sh: the broker acks
/// a QoS 1 flood faster than it delivers, and with its default queue limit (10,000) it drops
/// the excess by design, which is not what these tests measure.
pub fn start_broker() -> Broker {
    Broker::start(
        broker_bin(),
        &[
            "--shards",
            "2",
            "--max-queued-messages",
            "100000000",
            "--max-queued-bytes",
            "8000000000",
        ],
    )
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
