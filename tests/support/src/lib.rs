//! Test-only support shared by the broker's end-to-end tests (`tests/`) and the load harness's
//! tests (`loadtest/tests/`): the real broker binary as a child process on a free loopback port.
//!
//! - `Broker::start` runs `<bin> --bind 127.0.0.1 --port <free> <extra...>` and waits (at most
//!   `READY_TIMEOUT`) for `ringmq ready` on its stderr, retrying on a fresh port if the broker
//!   exits first (the free port may have been taken in between);
//! - the child is killed when its `Broker` is dropped and, as a backstop, when the thread that
//!   started it exits (PR_SET_PDEATHSIG), so a test that panics or times out leaves no broker;
//! - stderr is drained for the broker's whole life (the pipe never fills) and its last lines are
//!   printed when a test panics or the broker exited on its own.
//!
//! Set `RINGMQ_TEST_ECHO=1` to see the broker's stderr live. Which binary to run is the caller's
//! business (`CARGO_BIN_EXE_ringmq` is only known to the package that builds it).

pub mod pki;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long a broker may take to print `ringmq ready`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How many of the broker's last stderr lines are kept.
const LOG_LINES: usize = 400;

/// A port that was free a moment ago (bind :0, read it, drop the listener).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

type Log = Arc<Mutex<VecDeque<String>>>;

/// `--bind 127.0.0.1 --port <port> <extra...>`, `{port}` in `extra` replaced by the port (for
/// `--listen mqtt://127.0.0.1:{port}` beside other listeners).
fn loopback_args(port: u16, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--bind".into(),
        "127.0.0.1".into(),
        "--port".into(),
        port.to_string(),
    ];
    args.extend(extra.iter().map(|s| s.replace("{port}", &port.to_string())));
    args
}

/// A running broker process.
pub struct Broker {
    pub port: u16,
    /// The arguments it was started with.
    pub args: Vec<String>,
    child: Mutex<Child>,
    log: Log,
    /// Its stderr pipe, held open and never read (see [`Broker::start_unwatched`]).
    _unread: Option<std::process::ChildStderr>,
}

/// What becomes of the stderr of a broker started with [`Broker::start_unwatched`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stderr {
    /// A pipe nobody reads: it fills, as a stuck log shipper's would.
    Unread,
    /// /dev/null (the broker logs elsewhere).
    Null,
}

impl Broker {
    /// Starts `bin --bind 127.0.0.1 --port <free> <extra...>` and waits for it to be ready.
    /// Three tries, each on a fresh port; panics with every try's stderr if none worked.
    pub fn start(bin: &Path, extra: &[&str]) -> Broker {
        let mut errors = Vec::new();
        for _ in 0..3 {
            match Self::start_on(bin, free_port(), extra) {
                Ok(b) => return b,
                Err(e) => errors.push(e),
            }
        }
        panic!(
            "ringmq did not start (3 tries):\n{}",
            errors.join("\n-----\n")
        );
    }

    /// Starts the broker on `port` exactly (no retry on another port). Err (with its stderr) if
    /// it exits before it is ready; panics if it prints no `ringmq ready` within
    /// `READY_TIMEOUT`.
    pub fn start_on(bin: &Path, port: u16, extra: &[&str]) -> Result<Broker, String> {
        let args = loopback_args(port, extra);

        let mut cmd = Command::new(bin);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        set_parent_death_signal(&mut cmd);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", bin.display()))?;

        let log: Log = Arc::new(Mutex::new(VecDeque::new()));
        let ready_rx = drain_stderr(&mut child, port, log.clone());

        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match ready_rx.recv_timeout(Duration::from_millis(50)) {
                Ok(()) => break,
                Err(_) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        // Give the stderr thread a moment to collect the last lines.
                        thread::sleep(Duration::from_millis(100));
                        return Err(format!(
                            "ringmq {args:?} exited with {status} before it was ready; stderr:\n{}",
                            tail(&log)
                        ));
                    }
                    if Instant::now() >= deadline {
                        let _ = child.kill();
                        let _ = child.wait();
                        panic!(
                            "ringmq {args:?} printed no `ringmq ready` within {READY_TIMEOUT:?}; stderr:\n{}",
                            tail(&log)
                        );
                    }
                }
            }
        }
        Ok(Broker {
            port,
            args,
            child: Mutex::new(child),
            log,
            _unread: None,
        })
    }

    /// Starts `bin --bind 127.0.0.1 --port <free> <extra...>` with its stderr as `stderr`
    /// says, and waits (at most `READY_TIMEOUT`) until the port takes connections.
    pub fn start_unwatched(bin: &Path, extra: &[&str], stderr: Stderr) -> Broker {
        let port = free_port();
        let args = loopback_args(port, extra);
        let mut cmd = Command::new(bin);
        cmd.args(&args).stdin(Stdio::null()).stdout(Stdio::null());
        cmd.stderr(match stderr {
            Stderr::Unread => Stdio::piped(),
            Stderr::Null => Stdio::null(),
        });
        set_parent_death_signal(&mut cmd);
        let mut child = cmd.spawn().expect("spawn ringmq");
        let unread = child.stderr.take();
        let deadline = Instant::now() + READY_TIMEOUT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("ringmq {args:?} exited with {status} before it listened");
            }
            assert!(
                Instant::now() < deadline,
                "ringmq {args:?} did not listen within {READY_TIMEOUT:?}"
            );
            thread::sleep(Duration::from_millis(20));
        }
        Broker {
            port,
            args,
            child: Mutex::new(child),
            log: Arc::default(),
            _unread: unread,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap().id()
    }

    /// The last lines the broker wrote to stderr.
    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }

    /// Panics if the broker process has exited.
    pub fn assert_alive(&self) {
        let status = self.child.lock().unwrap().try_wait().expect("try_wait");
        if let Some(status) = status {
            panic!("ringmq exited ({status}); stderr:\n{}", self.log_tail());
        }
    }

    /// Sends `signal` (e.g. "TERM") to the broker with kill(1).
    pub fn signal(&self, signal: &str) {
        let st = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -{signal} {} failed: {st}", self.pid());
    }

    /// Waits at most `timeout` for the broker to exit; its exit status, or None if still running.
    pub fn wait_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.lock().unwrap().try_wait().expect("try_wait") {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resident set size of the broker process, from /proc.
    pub fn rss_bytes(&self) -> Option<u64> {
        rss_of(self.pid())
    }
}

/// Resident set size of process `pid`, from /proc (for samplers on other threads).
pub fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

impl Drop for Broker {
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let exited = child.try_wait().ok().flatten();
        let _ = child.kill();
        let _ = child.wait();
        if thread::panicking() || exited.is_some() {
            eprintln!(
                "---- ringmq {:?} (exited on its own: {:?}), last stderr lines ----\n{}",
                self.args,
                exited,
                tail(&self.log)
            );
        }
    }
}

/// Reads the child's stderr on a thread of its own into `log` (the last `LOG_LINES` lines);
/// the receiver gets one message when `ringmq ready` appears.
fn drain_stderr(child: &mut Child, port: u16, log: Log) -> mpsc::Receiver<()> {
    let stderr = child.stderr.take().expect("stderr is piped");
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let echo = std::env::var_os("RINGMQ_TEST_ECHO").is_some();
    thread::spawn(move || {
        let mut reader = BufReader::new(stderr);
        let mut ready_tx = Some(ready_tx);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let s = String::from_utf8_lossy(&line).trim_end().to_string();
            if echo {
                eprintln!("[ringmq:{port}] {s}");
            }
            if s.contains("ringmq ready") {
                if let Some(tx) = ready_tx.take() {
                    let _ = tx.send(());
                }
            }
            let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
            if log.len() == LOG_LINES {
                log.pop_front();
            }
            log.push_back(s);
        }
    });
    ready_rx
}

fn tail(log: &Log) -> String {
    let log = log.lock().unwrap_or_else(|e| e.into_inner());
    let v: Vec<&str> = log.iter().map(|s| s.as_str()).collect();
    v.join("\n")
}

/// Asks Linux to SIGKILL the broker when the thread that spawned it dies, so a test that
/// panics or times out never leaves a broker behind. (No libc dependency: prctl declared here.)
fn set_parent_death_signal(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    extern "C" {
        fn prctl(option: i32, ...) -> i32;
    }
    const PR_SET_PDEATHSIG: i32 = 1;
    const SIGKILL: u64 = 9;
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            Ok(())
        });
    }
}
