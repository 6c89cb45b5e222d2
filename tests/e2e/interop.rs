//! Interoperability with other clients: paho-mqtt (Python) and mosquitto_pub / mosquitto_sub.
//!
//! These tools are installed by `scripts/test.sh`. When one is missing, the test fails and says
//! so: it never passes silently.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{run_bounded, secs, Broker};

pub(crate) const INSTALL_HINT: &str = "run scripts/test.sh (it installs mosquitto-clients and the Python packages of tests/interop/requirements.txt)";

pub(crate) fn require_paho() {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, paho.mqtt; sys.exit(0 if paho.mqtt.__version__.split('.')[0] == '2' else 3)",
        ])
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "python3 has no paho-mqtt 2.x ({}): {INSTALL_HINT}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!("python3 not found ({e}): {INSTALL_HINT}"),
    }
}

pub(crate) fn require_mosquitto_clients() {
    for tool in ["mosquitto_pub", "mosquitto_sub"] {
        if let Err(e) = Command::new(tool)
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
        {
            panic!("{tool} not found ({e}): {INSTALL_HINT}");
        }
    }
}

/// Runs a command to completion with a deadline (killed and failed if it overruns); returns
/// (status, stdout, stderr).
pub(crate) fn run(
    cmd: &mut Command,
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> (ExitStatus, String, String) {
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{desc}: {e}: {INSTALL_HINT}"));
    if let Some(input) = stdin {
        let mut w = child.stdin.take().unwrap();
        w.write_all(input).unwrap();
    }
    let out = reader(child.stdout.take().unwrap());
    let err = reader(child.stderr.take().unwrap());
    let status = wait_deadline(&mut child, timeout, &desc);
    (status, out.join().unwrap(), err.join().unwrap())
}

fn reader(mut r: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    })
}

fn wait_deadline(child: &mut Child, timeout: Duration, desc: &str) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{desc}: still running after {timeout:?}, killed");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A running `mosquitto_sub -d` whose stdout lines are read as they come.
pub(crate) struct MosqSub {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl MosqSub {
    /// Starts mosquitto_sub for `count` messages and waits until the broker has acknowledged
    /// the subscription (the `-d` output shows the SUBACK).
    fn start(port: u16, topic: &str, qos: u8, version: &str, count: usize) -> MosqSub {
        Self::start_with(port, &[], topic, qos, version, count)
    }

    /// The same with more mosquitto_sub arguments (`--cafile`, `-i`, ...).
    pub(crate) fn start_with(
        port: u16,
        extra: &[&str],
        topic: &str,
        qos: u8,
        version: &str,
        count: usize,
    ) -> MosqSub {
        // stdbuf: mosquitto_sub block-buffers stdout into a pipe; we read it line by line.
        let mut child = Command::new("stdbuf")
            .args([
                "-oL",
                "mosquitto_sub",
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-V",
                version,
                "-t",
                topic,
            ])
            .args(extra)
            .args([
                "-q",
                &qos.to_string(),
                "-C",
                &count.to_string(),
                "-W",
                "15",
                "-d",
            ])
            .args(["-F", "MSG|%r|%q|%t|%p"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("mosquitto_sub: {e}: {INSTALL_HINT}"));
        let (tx, lines) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    match line {
                        Ok(l) => {
                            if tx.send(l).is_err() {
                                break;
                            }
                        }
                        Err(_) => break,
                    }
                }
            });
        }
        let mut s = MosqSub {
            child,
            lines,
            seen: Vec::new(),
        };
        s.wait_line(|l| l.contains("received SUBACK"), "SUBACK");
        s
    }

    fn wait_line(&mut self, pred: impl Fn(&str) -> bool, what: &str) -> String {
        let deadline = Instant::now() + secs(15);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if pred(&l) {
                        return l;
                    }
                }
                Err(_) => panic!(
                    "mosquitto_sub: no {what}; output so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// The next `n` messages as (retain, qos, topic, payload), then waits for a clean exit.
    pub(crate) fn messages(mut self, n: usize) -> Vec<(String, String, String, String)> {
        let mut out = Vec::new();
        while out.len() < n {
            let l = self.wait_line(|l| l.starts_with("MSG|"), "message");
            let parts: Vec<&str> = l.splitn(5, '|').collect();
            out.push((
                parts[1].into(),
                parts[2].into(),
                parts[3].into(),
                parts[4].into(),
            ));
        }
        let status = wait_deadline(&mut self.child, secs(15), "mosquitto_sub");
        assert!(
            status.success(),
            "mosquitto_sub exited with {status}; output:\n{}",
            self.seen.join("\n")
        );
        out
    }
}

impl Drop for MosqSub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn mosquitto_pub(port: u16, version: &str, args: &[&str], stdin: Option<&[u8]>) {
    let (status, out, err) = run(
        Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-V", version])
            .args(args),
        stdin,
        secs(20),
    );
    assert!(
        status.success(),
        "mosquitto_pub {args:?} exited with {status}\n{out}\n{err}"
    );
}

/// Runs a paho-mqtt script from tests/interop against a fresh two-shard broker; it must exit 0
/// and print OK.
fn run_paho_script(script: &'static str) {
    require_paho();
    run_bounded(secs(90), move || {
        let broker = Broker::start_sharded(&[]);
        let path = format!("{}/tests/interop/{script}", env!("CARGO_MANIFEST_DIR"));
        let (status, out, err) = run(
            Command::new("python3")
                .arg(&path)
                .arg(broker.port.to_string()),
            None,
            secs(75),
        );
        eprintln!("{out}{err}");
        assert!(
            status.success(),
            "{script} failed ({status}):\n{out}\n{err}"
        );
        assert!(
            out.lines().any(|l| l == "OK"),
            "{script} did not report OK:\n{out}"
        );
    });
}

/// paho-mqtt (Python): persistent QoS 1 subscriber offline while five messages are published;
/// on reconnect it gets all five.
#[test]
fn paho_at_least_once_persistent_session() {
    run_paho_script("paho_at_least_once.py");
}

/// The same five messages with the broker stopped (`signal`) and started again on its data
/// while the subscriber is away: all five arrive (issue 12). Persistence is on with its
/// defaults (`--fsync always`), so each PUBACK meant "on disk".
fn paho_five_messages_across_a_restart(signal: &'static str) {
    require_paho();
    run_bounded(secs(90), move || {
        let dir = std::env::temp_dir().join(crate::common::unique("ringmq-paho-data"));
        let data = ["--data-dir", dir.to_str().expect("a UTF-8 temp dir")];
        let broker = Broker::start_sharded(&data);
        let path = format!(
            "{}/tests/interop/paho_at_least_once.py",
            env!("CARGO_MANIFEST_DIR")
        );
        let mut child = Command::new("python3")
            .arg(&path)
            .arg(broker.port.to_string())
            .arg("--restart")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 starts");
        let err = reader(child.stderr.take().expect("piped"));
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut out = String::new();
        loop {
            let mut line = String::new();
            if stdout
                .read_line(&mut line)
                .expect("read the script's output")
                == 0
            {
                break;
            }
            out.push_str(&line);
            if line.trim() == "RESTART" {
                broker.signal(signal);
                assert!(broker.wait_exit(secs(10)).is_some(), "no exit on {signal}");
                let again = Broker::start_sharded(&data);
                let mut stdin = child.stdin.take().expect("piped");
                writeln!(stdin, "{}", again.port).expect("tell the script the new port");
                let rest = reader(stdout.into_inner());
                let status = wait_deadline(&mut child, secs(60), "paho_at_least_once.py");
                out.push_str(&rest.join().expect("reader"));
                let err = err.join().expect("reader");
                eprintln!("{out}{err}");
                assert!(
                    status.success(),
                    "the script failed ({status}):\n{out}\n{err}"
                );
                assert!(out.lines().any(|l| l == "OK"), "no OK:\n{out}");
                again.assert_alive();
                let _ = std::fs::remove_dir_all(&dir);
                return;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "the script ended before RESTART:\n{out}\n{}",
            err.join().unwrap_or_default()
        );
    });
}

#[test]
fn paho_five_messages_survive_a_clean_restart() {
    paho_five_messages_across_a_restart("TERM");
}

#[test]
fn paho_five_messages_survive_a_kill_9() {
    paho_five_messages_across_a_restart("KILL");
}

/// paho-mqtt with MQTT 5: session expiry, properties passed through, shared subscription,
/// topic alias and subscription identifier.
#[test]
fn paho_mqtt5_session_properties_shared_and_aliases() {
    run_paho_script("paho_v5.py");
}

/// mosquitto_pub -> ringmq -> mosquitto_sub at QoS 0, 1 and 2, with MQTT 3.1, 3.1.1 and 5.
#[test]
fn mosquitto_pub_sub_each_qos_and_version() {
    require_mosquitto_clients();
    run_bounded(secs(240), || {
        let broker = Broker::start_sharded(&[]);
        for version in ["mqttv31", "mqttv311", "mqttv5"] {
            for qos in 0..=2u8 {
                let topic = format!("interop/{version}/q{qos}");
                let payload = format!("hello-{version}-{qos}");
                let sub = MosqSub::start(broker.port, &topic, qos, version, 1);
                mosquitto_pub(
                    broker.port,
                    version,
                    &["-t", &topic, "-q", &qos.to_string(), "-m", &payload],
                    None,
                );
                let got = sub.messages(1);
                assert_eq!(
                    got,
                    vec![("0".into(), qos.to_string(), topic.clone(), payload.clone())],
                    "{version} QoS {qos}: (retain, qos, topic, payload)"
                );
            }
        }
    });
}

/// A retained message published with `mosquitto_pub -r` is delivered (retain flag set) to a
/// later `mosquitto_sub -C 1`; a newer one replaces it; `-r -n` deletes it.
#[test]
fn mosquitto_retained() {
    require_mosquitto_clients();
    run_bounded(secs(120), || {
        let broker = Broker::start_sharded(&[]);
        let port = broker.port;
        mosquitto_pub(
            port,
            "mqttv311",
            &["-t", "interop/retained", "-q", "1", "-r", "-m", "keep-1"],
            None,
        );
        mosquitto_pub(
            port,
            "mqttv311",
            &["-t", "interop/retained", "-q", "1", "-r", "-m", "keep-2"],
            None,
        );
        for version in ["mqttv311", "mqttv5", "mqttv31"] {
            let got = MosqSub::start(port, "interop/retained", 1, version, 1).messages(1);
            assert_eq!(
                got,
                vec![(
                    "1".into(),
                    "1".into(),
                    "interop/retained".into(),
                    "keep-2".into()
                )],
                "{version}: retained message"
            );
        }
        // Delete it; a later subscriber then gets the next live message, not a retained one.
        mosquitto_pub(
            port,
            "mqttv311",
            &["-t", "interop/retained", "-q", "1", "-r", "-n"],
            None,
        );
        let sub = MosqSub::start(port, "interop/retained", 1, "mqttv311", 1);
        mosquitto_pub(
            port,
            "mqttv311",
            &["-t", "interop/retained", "-q", "1", "-m", "live"],
            None,
        );
        let got = sub.messages(1);
        assert_eq!(
            got,
            vec![(
                "0".into(),
                "1".into(),
                "interop/retained".into(),
                "live".into()
            )]
        );
    });
}

/// 200 messages from one `mosquitto_pub -l` connection arrive at mosquitto_sub in order, at
/// QoS 1 and QoS 2.
#[test]
fn mosquitto_many_messages_in_order() {
    require_mosquitto_clients();
    run_bounded(secs(120), || {
        let broker = Broker::start_sharded(&[]);
        for qos in [1u8, 2] {
            let topic = format!("interop/many/q{qos}");
            let sub = MosqSub::start(broker.port, &topic, qos, "mqttv311", 200);
            let input: String = (0..200).map(|i| format!("line-{i}\n")).collect();
            mosquitto_pub(
                broker.port,
                "mqttv311",
                &["-t", &topic, "-q", &qos.to_string(), "-l"],
                Some(input.as_bytes()),
            );
            let got: Vec<String> = sub.messages(200).into_iter().map(|m| m.3).collect();
            let want: Vec<String> = (0..200).map(|i| format!("line-{i}")).collect();
            assert_eq!(got, want, "QoS {qos}: all 200 in order");
        }
    });
}

/// mosquitto_pub against a broker with a password file written by mosquitto_passwd: the right
/// user name and password get through, a wrong password is refused (non-zero exit).
#[test]
fn mosquitto_pub_with_a_password_file() {
    require_mosquitto_clients();
    run_bounded(secs(60), || {
        let file = format!(
            "{}/tests/fixtures/passwords.txt",
            env!("CARGO_MANIFEST_DIR")
        );
        let broker = Broker::start_sharded(&["--password-file", &file]);
        for version in ["mqttv311", "mqttv5"] {
            let good = [
                "-u",
                "sensor-1",
                "-P",
                "s3cret!",
                "-t",
                "interop/auth",
                "-m",
                "x",
            ];
            mosquitto_pub(broker.port, version, &good, None);
            let (status, out, err) = run(
                Command::new("mosquitto_pub")
                    .args([
                        "-h",
                        "127.0.0.1",
                        "-p",
                        &broker.port.to_string(),
                        "-V",
                        version,
                    ])
                    .args([
                        "-u",
                        "sensor-1",
                        "-P",
                        "wrong",
                        "-t",
                        "interop/auth",
                        "-m",
                        "x",
                    ]),
                None,
                secs(20),
            );
            assert!(
                !status.success(),
                "{version}: wrong password accepted\n{out}\n{err}"
            );
        }
        broker.assert_alive();
    });
}
