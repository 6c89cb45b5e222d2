//! Shared harness for the end-to-end tests: the real `ringmq` binary on a free loopback port
//! (`Broker`, over `ringmq_test_support`, which the load harness's tests share), rumqttc clients
//! whose event loops run in tokio tasks, and raw-TCP clients for protocol-level tests with
//! hand-written bytes: `enc` builds packets, `dec` reads them, `raw::RawClient` /
//! `raw::RawSession` speak 3.x and `v5::V5` speaks 5.0.
//!
//! Rules every test follows:
//! - everything is bounded: async tests run inside `bounded(..)`, blocking ones inside
//!   `run_bounded(..)`, and every single wait has its own deadline;
//! - no sleep decides pass or fail: "X did not happen" is checked with a marker message sent
//!   after X would have happened, on the same topic, which must be the first thing to arrive;
//! - the broker child is killed when its `Broker` is dropped (and, as a backstop, when the
//!   thread that started it exits: PR_SET_PDEATHSIG; see `ringmq_test_support`).
//!
//! Set `RINGMQ_TEST_ECHO=1` to see the broker's stderr live, `RINGMQ_TEST_BIN=path` to test
//! another build of the broker.

#![allow(dead_code)]

pub mod dec;
pub mod enc;
pub mod haproxy;
pub mod raw;
pub mod v5;

use std::collections::VecDeque;
use std::future::Future;
use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;
use std::thread;
use std::time::{Duration, Instant};

use rumqttc::{
    AsyncClient, ConnAck, ConnectionError, Event, EventLoop, MqttOptions, Outgoing, Packet,
    Publish, QoS, SubscribeReasonCode,
};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio::task::JoinHandle;

#[allow(unused_imports)]
pub use ringmq_test_support::READY_TIMEOUT;
/// The shard count the cross-shard tests use (the test machine has 2 cores).
pub const SHARDS: usize = 2;

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub fn millis(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ---------------------------------------------------------------------------------------------
// The broker process (started and reaped by `ringmq_test_support`).
// ---------------------------------------------------------------------------------------------

#[allow(unused_imports)]
pub use ringmq_test_support::free_port;

/// The broker under test: `RINGMQ_TEST_BIN` (to run the suite against another build, e.g. an
/// older one, to see a test fail without its fix), else the one cargo built for these tests.
pub fn broker_bin() -> PathBuf {
    std::env::var_os("RINGMQ_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_ringmq")))
}

/// A running `ringmq` (see `ringmq_test_support::Broker`, which it derefs to: `port`, `pid()`,
/// `signal()`, `wait_exit()`, `assert_alive()`, `log_tail()`, `rss_bytes()` ...).
pub struct Broker(ringmq_test_support::Broker);

impl std::ops::Deref for Broker {
    type Target = ringmq_test_support::Broker;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Broker {
    /// Starts `ringmq --bind 127.0.0.1 --port <free> <extra...>` and waits (at most
    /// `READY_TIMEOUT`) for `ringmq ready` on its stderr; retries on a fresh port.
    pub fn start(extra: &[&str]) -> Broker {
        Broker(ringmq_test_support::Broker::start(&broker_bin(), extra))
    }

    /// `--shards 2` plus `extra`.
    pub fn start_sharded(extra: &[&str]) -> Broker {
        let mut args = vec!["--shards", "2"];
        args.extend_from_slice(extra);
        Self::start(&args)
    }

    /// Starts the broker with its stderr unread or discarded (see
    /// `ringmq_test_support::Stderr`); waits until its port takes connections.
    pub fn start_unwatched(extra: &[&str], stderr: ringmq_test_support::Stderr) -> Broker {
        Broker(ringmq_test_support::Broker::start_unwatched(
            &broker_bin(),
            extra,
            stderr,
        ))
    }

    /// Starts the broker on `port` exactly (no retry on another port).
    pub fn start_on(port: u16, extra: &[&str]) -> Result<Broker, String> {
        ringmq_test_support::Broker::start_on(&broker_bin(), port, extra).map(Broker)
    }

    /// Waits (at most `raw::LONG`) until the broker's recent log holds `text`.
    pub fn wait_log(&self, text: &str) {
        let deadline = Instant::now() + raw::LONG;
        while !self.log_tail().contains(text) {
            assert!(
                Instant::now() < deadline,
                "no {text:?} in the log:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (at most `timeout`) for the `$SYS` figure `topic` (the broker must run with
    /// `--sys-interval`) to satisfy `ok`; returns it.
    pub fn sys_figure(&self, topic: &str, timeout: Duration, ok: impl Fn(u64) -> bool) -> u64 {
        let (mut watcher, _) = raw::RawClient::connect311(self.port, &unique("sys"), true, 60);
        watcher.subscribe(1, &[(topic, 0)]);
        let deadline = Instant::now() + timeout;
        let mut last = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let p = match watcher.read_packet(left) {
                Ok(p) if p.kind() == enc::kind::PUBLISH => p.publish(),
                Ok(_) => continue,
                Err(e) => panic!("{topic}: last figure {last:?}, then {e:?}"),
            };
            let n: u64 = p
                .text()
                .parse()
                .unwrap_or_else(|_| panic!("{topic}: {p:?}"));
            if ok(n) {
                return n;
            }
            last = Some(n);
        }
    }
}

/// Waits (at most `raw::LONG`) until the file at `path` holds `text`; returns its content.
pub fn wait_for_text(path: &std::path::Path, text: &str) -> String {
    let deadline = Instant::now() + raw::LONG;
    loop {
        let content = std::fs::read_to_string(path).unwrap_or_default();
        if content.contains(text) {
            return content;
        }
        assert!(
            Instant::now() < deadline,
            "no {text:?} in {}:\n{content}",
            path.display()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// The first of `prefix-0`, `prefix-1`, ... whose home shard is `shard` of `shards`.
pub fn client_id_on_shard(prefix: &str, shard: usize, shards: usize) -> String {
    for i in 0..100_000 {
        let id = format!("{prefix}-{i}");
        if ringmq::core::home_shard(id.as_bytes(), shards) == shard {
            return id;
        }
    }
    panic!("no client id with prefix {prefix:?} lands on shard {shard} of {shards}");
}

/// Two client ids (with these prefixes) whose home shards differ, for `SHARDS` shards.
pub fn ids_on_different_shards(a: &str, b: &str) -> (String, String) {
    (
        client_id_on_shard(a, 0, SHARDS),
        client_id_on_shard(b, 1, SHARDS),
    )
}

// ---------------------------------------------------------------------------------------------
// Time bounds.
// ---------------------------------------------------------------------------------------------

/// Runs an async test body; panics if it takes longer than `limit`.
pub async fn bounded<F: Future>(limit: Duration, f: F) -> F::Output {
    match tokio::time::timeout(limit, f).await {
        Ok(v) => v,
        Err(_) => panic!("test did not finish within {limit:?}"),
    }
}

/// Runs a blocking test body on its own thread; panics if it takes longer than `limit`.
/// A panic inside the body is re-raised here with its own message.
pub fn run_bounded<T: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std_mpsc::channel::<()>();
    let h = thread::spawn(move || {
        let _done = DoneOnDrop(tx);
        f()
    });
    match rx.recv_timeout(limit) {
        Ok(()) | Err(std_mpsc::RecvTimeoutError::Disconnected) => match h.join() {
            Ok(v) => v,
            Err(p) => std::panic::resume_unwind(p),
        },
        Err(std_mpsc::RecvTimeoutError::Timeout) => panic!("test did not finish within {limit:?}"),
    }
}

struct DoneOnDrop(std_mpsc::Sender<()>);
impl Drop for DoneOnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

// ---------------------------------------------------------------------------------------------
// rumqttc (MQTT 3.1.1) clients.
// ---------------------------------------------------------------------------------------------

/// What the event loop task reports besides received PUBLISH packets.
#[derive(Debug)]
pub enum Note {
    /// An incoming packet other than PUBLISH (SubAck, PubAck, PubRec, PubRel, PubComp, ...).
    In(Packet),
    /// Something the client wrote (Outgoing::Publish(0) = a QoS 0 publish hit the socket).
    Out(Outgoing),
    /// The event loop stopped: the connection closed or failed, or we sent DISCONNECT.
    Closed(String),
}

pub fn qos(n: u8) -> QoS {
    match n {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        2 => QoS::ExactlyOnce,
        _ => panic!("QoS {n}"),
    }
}

pub fn qos_num(q: QoS) -> u8 {
    q as u8
}

/// Options for a test client: 127.0.0.1:port, keepalive 30 s, 1 MiB packets.
pub fn opts(port: u16, client_id: &str) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, "127.0.0.1", port);
    o.set_keep_alive(secs(30));
    o.set_max_packet_size(1 << 20, 1 << 20);
    o
}

/// A connected rumqttc client. Its event loop runs in a tokio task and stops at the first
/// connection error (no automatic reconnect: tests reconnect explicitly with a new `Mqtt`).
pub struct Mqtt {
    pub id: String,
    pub client: AsyncClient,
    /// Every PUBLISH the broker sent, in arrival order.
    pub publishes: UnboundedReceiver<Publish>,
    /// Everything else (see `Note`).
    pub notes: UnboundedReceiver<Note>,
    pub connack: ConnAck,
    backlog: VecDeque<Note>,
    task: Option<JoinHandle<()>>,
}

/// Connects a rumqttc client (3.1.1) and waits for its CONNACK.
pub async fn connect(port: u16, client_id: &str, clean: bool) -> Mqtt {
    let mut o = opts(port, client_id);
    o.set_clean_session(clean);
    connect_with(o).await
}

pub async fn connect_with(o: MqttOptions) -> Mqtt {
    let id = o.client_id();
    match try_connect_with(o).await {
        Ok(m) => m,
        Err(e) => panic!("client {id:?} could not connect: {e:?}"),
    }
}

pub async fn try_connect_with(o: MqttOptions) -> Result<Mqtt, ConnectionError> {
    let id = o.client_id();
    let cap = o.request_channel_capacity().max(1000);
    let (client, mut el) = AsyncClient::new(o, cap);
    let connack = match tokio::time::timeout(secs(15), el.poll()).await {
        Ok(Ok(Event::Incoming(Packet::ConnAck(c)))) => c,
        Ok(Ok(other)) => panic!("{id}: first event was {other:?}, not CONNACK"),
        Ok(Err(e)) => return Err(e),
        Err(_) => panic!("{id}: no CONNACK within 15 s"),
    };
    let (pub_tx, publishes) = unbounded_channel();
    let (note_tx, notes) = unbounded_channel();
    let task = tokio::spawn(run_event_loop(el, pub_tx, note_tx));
    Ok(Mqtt {
        id,
        client,
        publishes,
        notes,
        connack,
        backlog: VecDeque::new(),
        task: Some(task),
    })
}

async fn run_event_loop(
    mut el: EventLoop,
    pub_tx: tokio::sync::mpsc::UnboundedSender<Publish>,
    note_tx: tokio::sync::mpsc::UnboundedSender<Note>,
) {
    loop {
        match el.poll().await {
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let _ = pub_tx.send(p);
            }
            Ok(Event::Incoming(p)) => {
                let _ = note_tx.send(Note::In(p));
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                // DISCONNECT has been flushed; dropping the event loop closes the socket.
                let _ = note_tx.send(Note::Closed("client sent DISCONNECT".into()));
                return;
            }
            Ok(Event::Outgoing(o)) => {
                let _ = note_tx.send(Note::Out(o));
            }
            Err(e) => {
                let _ = note_tx.send(Note::Closed(format!("{e:?}")));
                return;
            }
        }
    }
}

impl Mqtt {
    pub fn session_present(&self) -> bool {
        self.connack.session_present
    }

    /// The first note (backlog first) for which `f` returns Some. Notes that don't match are
    /// kept for later. Panics on timeout, or if the connection closes and `f` did not want that.
    pub async fn expect_note<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&Note) -> Option<T>,
    ) -> T {
        if let Some(i) = self.backlog.iter().position(|n| f(n).is_some()) {
            let n = self.backlog.remove(i).unwrap();
            return f(&n).unwrap();
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let n = match tokio::time::timeout_at(deadline, self.notes.recv()).await {
                Ok(Some(n)) => n,
                Ok(None) => panic!("{}: event loop gone while waiting for {what}", self.id),
                Err(_) => panic!(
                    "{}: no {what} within {timeout:?} (other notes: {:?})",
                    self.id, self.backlog
                ),
            };
            if let Some(v) = f(&n) {
                return v;
            }
            if let Note::Closed(why) = &n {
                panic!(
                    "{}: connection closed ({why}) while waiting for {what}",
                    self.id
                );
            }
            self.backlog.push_back(n);
        }
    }

    /// SUBSCRIBE one filter; returns the SUBACK return codes.
    pub async fn subscribe(&mut self, filter: &str, q: u8) -> Vec<SubscribeReasonCode> {
        self.client
            .subscribe(filter, qos(q))
            .await
            .expect("subscribe request");
        self.expect_note("SUBACK", secs(15), |n| match n {
            Note::In(Packet::SubAck(a)) => Some(a.return_codes.clone()),
            _ => None,
        })
        .await
    }

    /// SUBSCRIBE and require the QoS asked for to be granted.
    pub async fn subscribe_ok(&mut self, filter: &str, q: u8) {
        let codes = self.subscribe(filter, q).await;
        assert_eq!(
            codes,
            vec![SubscribeReasonCode::Success(qos(q))],
            "{}: SUBACK for {filter:?} at QoS {q}",
            self.id
        );
    }

    pub async fn unsubscribe(&mut self, filter: &str) {
        self.client
            .unsubscribe(filter)
            .await
            .expect("unsubscribe request");
        self.expect_note("UNSUBACK", secs(15), |n| match n {
            Note::In(Packet::UnsubAck(_)) => Some(()),
            _ => None,
        })
        .await
    }

    /// Publishes and waits until the QoS flow is done: QoS 0 written to the socket, QoS 1
    /// PUBACK, QoS 2 PUBCOMP. Use only one publish at a time with this (it counts acks).
    pub async fn publish(&mut self, topic: &str, q: u8, retain: bool, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, qos(q), retain, payload.into())
            .await
            .expect("publish request");
        self.wait_publish_done(q, 1).await;
    }

    /// Queues many publishes, then waits until all of their QoS flows are done.
    pub async fn publish_all(&mut self, topic: &str, q: u8, payloads: Vec<Vec<u8>>) {
        let n = payloads.len();
        for p in payloads {
            self.client
                .publish(topic, qos(q), false, p)
                .await
                .expect("publish request");
        }
        self.wait_publish_done(q, n).await;
    }

    async fn wait_publish_done(&mut self, q: u8, n: usize) {
        for _ in 0..n {
            self.expect_note("publish completion", secs(30), |note| match (q, note) {
                (0, Note::Out(Outgoing::Publish(0))) => Some(()),
                (1, Note::In(Packet::PubAck(_))) => Some(()),
                (2, Note::In(Packet::PubComp(_))) => Some(()),
                _ => None,
            })
            .await;
        }
    }

    /// Waits until the broker closes this connection; returns the reason rumqttc reported.
    pub async fn wait_closed(&mut self, timeout: Duration) -> String {
        let id = self.id.clone();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.notes.recv()).await {
                Ok(Some(Note::Closed(why))) => return why,
                Ok(Some(_)) => continue,
                Ok(None) => return "event loop gone".into(),
                Err(_) => panic!("{id}: connection still open after {timeout:?}"),
            }
        }
    }

    /// Clean disconnect: DISCONNECT is written, then the socket is closed.
    pub async fn disconnect(mut self) {
        let _ = self.client.disconnect().await;
        if let Some(t) = self.task.take() {
            if tokio::time::timeout(secs(10), t).await.is_err() {
                panic!("{}: event loop did not stop after DISCONNECT", self.id);
            }
        }
    }

    /// Abrupt disconnect: the socket is dropped without DISCONNECT.
    pub async fn kill(mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }
}

impl Drop for Mqtt {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Receiving.
// ---------------------------------------------------------------------------------------------

/// Exactly the next `n` publishes, waiting at most `timeout` for all of them.
pub async fn recv_n(
    rx: &mut UnboundedReceiver<Publish>,
    n: usize,
    timeout: Duration,
) -> Vec<Publish> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(p)) => got.push(p),
            Ok(None) => panic!(
                "recv_n: channel closed after {} of {n} messages: {:?}",
                got.len(),
                texts(&got)
            ),
            Err(_) => panic!(
                "recv_n: only {} of {n} messages within {timeout:?}: {:?}",
                got.len(),
                texts(&got)
            ),
        }
    }
    got
}

pub async fn recv_one(rx: &mut UnboundedReceiver<Publish>, timeout: Duration) -> Publish {
    recv_n(rx, 1, timeout).await.pop().unwrap()
}

/// Publishes up to and including the first one for which `last` is true.
pub async fn recv_until(
    rx: &mut UnboundedReceiver<Publish>,
    timeout: Duration,
    mut last: impl FnMut(&Publish) -> bool,
) -> Vec<Publish> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut got = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(p)) => {
                let done = last(&p);
                got.push(p);
                if done {
                    return got;
                }
            }
            Ok(None) => panic!("recv_until: channel closed; got {:?}", texts(&got)),
            Err(_) => panic!(
                "recv_until: end not seen within {timeout:?}; got {:?}",
                texts(&got)
            ),
        }
    }
}

/// Publishes up to and including the one whose payload is `marker`.
pub async fn recv_until_marker(
    rx: &mut UnboundedReceiver<Publish>,
    marker: &str,
    timeout: Duration,
) -> Vec<Publish> {
    recv_until(rx, timeout, |p| p.payload.as_ref() == marker.as_bytes()).await
}

pub fn text(p: &Publish) -> String {
    String::from_utf8_lossy(&p.payload).into_owned()
}

pub fn texts(ps: &[Publish]) -> Vec<String> {
    ps.iter().map(text).collect()
}

/// A unique-enough suffix for topics and client ids within one test process.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
