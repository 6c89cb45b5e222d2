//! Soak: 4 publishers x N messages to 4 subscribers with persistent sessions, with 2 shards,
//! while one subscriber disconnects and reconnects several times (alternating a clean
//! DISCONNECT and a dropped socket).
//!
//! Checked per subscriber: every message of every publisher arrives; each publisher's messages
//! arrive in order (a message is either the next one of its publisher or a re-delivery of one
//! already seen); duplicates only at the subscriber that reconnected, and at QoS 2 none at all.
//!
//! Sizes (defaults follow the test plan; override for quick runs or bigger ones):
//!   RINGMQ_SOAK_QOS1_MSGS  messages per publisher at QoS 1 (default 50000)
//!   RINGMQ_SOAK_QOS2_MSGS  messages per publisher at QoS 2 (default 10000)
//!   RINGMQ_SOAK_SECS       time limit of each soak in seconds (default 300)
//!
//! Three subscribers and the publishers are rumqttc clients. The reconnecting subscriber is
//! `common::raw::RawSession`, because rumqttc 0.24 drops its incoming QoS 2 state on reconnect
//! (and errors on the broker's re-sent PUBREL), which would make a correct broker look wrong.

#[path = "e2e/common/mod.rs"]
mod common;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use common::raw::RawSession;
use common::{client_id_on_shard, millis, opts, qos, secs, Broker, SHARDS};
use rumqttc::{AsyncClient, Event, Packet};

const PUBS: usize = 4;
const TOPIC: &str = "soak/t";
/// How the reconnecting subscriber leaves at each of its 4 reconnects: a clean DISCONNECT
/// (true) or a dropped socket (false).
const GRACEFUL: [bool; 4] = [true, false, true, false];

/// The soaks run one at a time: each one alone saturates the 2-core machine.
static SERIAL: Mutex<()> = Mutex::new(());

fn env_num(var: &str, default: u64) -> u64 {
    match std::env::var(var) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{var}={v:?} is not a number")),
        Err(_) => default,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn soak_qos1_persistent_subscribers_with_reconnects() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let n = env_num("RINGMQ_SOAK_QOS1_MSGS", 50_000) as u32;
    runtime().block_on(soak(1, n));
}

#[test]
fn soak_qos2_persistent_subscribers_with_reconnects() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let n = env_num("RINGMQ_SOAK_QOS2_MSGS", 10_000) as u32;
    runtime().block_on(soak(2, n));
}

/// What one subscriber has seen.
struct Tracker {
    name: String,
    per_pub: u32,
    /// Next expected sequence number per publisher (= how many distinct ones arrived).
    next: Vec<u32>,
    dups: u64,
    errors: Vec<String>,
    error_count: u64,
}

impl Tracker {
    fn new(name: String, per_pub: u32) -> Tracker {
        Tracker {
            name,
            per_pub,
            next: vec![0; PUBS],
            dups: 0,
            errors: Vec::new(),
            error_count: 0,
        }
    }

    fn error(&mut self, e: String) {
        self.error_count += 1;
        if self.errors.len() < 20 {
            self.errors.push(e);
        }
    }

    fn on(&mut self, payload: &[u8]) {
        let s = String::from_utf8_lossy(payload);
        let parsed = s
            .split_once(':')
            .and_then(|(p, q)| Some((p.parse::<usize>().ok()?, q.parse::<u32>().ok()?)));
        let Some((p, seq)) = parsed.filter(|(p, _)| *p < PUBS) else {
            self.error(format!("{}: unexpected payload {s:?}", self.name));
            return;
        };
        let next = self.next[p];
        if seq == next {
            self.next[p] += 1;
        } else if seq < next {
            self.dups += 1;
        } else {
            self.error(format!(
                "{}: publisher {p}: got #{seq} while #{next} is the next one (gap or reordering)",
                self.name
            ));
            self.next[p] = seq + 1;
        }
    }

    fn distinct(&self) -> u64 {
        self.next.iter().map(|&n| n as u64).sum()
    }

    fn complete(&self) -> bool {
        self.next.iter().all(|&n| n >= self.per_pub)
    }

    fn summary(&self) -> String {
        format!(
            "{}: next per publisher {:?} of {}, duplicates {}, errors {} {:?}",
            self.name, self.next, self.per_pub, self.dups, self.error_count, self.errors
        )
    }
}

type Shared = Arc<Mutex<Tracker>>;

async fn soak(q: u8, per_pub: u32) {
    let limit = secs(env_num("RINGMQ_SOAK_SECS", 300));
    let started = Instant::now();
    let broker = Broker::start_sharded(&[
        "--max-queued-messages",
        "10000000",
        "--max-queued-bytes",
        "1073741824",
    ]);
    let port = broker.port;
    let total = PUBS as u64 * per_pub as u64;
    let trackers: Vec<Shared> = (0..4)
        .map(|i| Arc::new(Mutex::new(Tracker::new(format!("sub{i}"), per_pub))))
        .collect();

    // --- subscribers 0..3: rumqttc, persistent, never disconnected ---------------------------
    let mut sub_tasks = Vec::new();
    for (i, tracker) in trackers.iter().take(3).enumerate() {
        let id = client_id_on_shard(&format!("soak{q}-sub{i}"), i % SHARDS, SHARDS);
        let mut o = opts(port, &id);
        o.set_clean_session(false);
        let (client, mut el) = AsyncClient::new(o, 1000);
        match tokio::time::timeout(secs(15), el.poll()).await {
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {}
            other => panic!("{id}: no CONNACK: {other:?}"),
        }
        client.subscribe(TOPIC, qos(q)).await.unwrap();
        let deadline = Instant::now() + secs(15);
        loop {
            assert!(Instant::now() < deadline, "{id}: no SUBACK");
            match tokio::time::timeout(secs(15), el.poll()).await {
                Ok(Ok(Event::Incoming(Packet::SubAck(a)))) => {
                    assert_eq!(
                        a.return_codes,
                        vec![rumqttc::SubscribeReasonCode::Success(qos(q))]
                    );
                    break;
                }
                Ok(Ok(_)) => {}
                other => panic!("{id}: waiting for SUBACK: {other:?}"),
            }
        }
        let tracker = tracker.clone();
        sub_tasks.push(tokio::spawn(async move {
            let _client = client; // keeps the request channel open
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let mut t = tracker.lock().unwrap();
                        t.on(&p.payload);
                        if t.complete() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracker
                            .lock()
                            .unwrap()
                            .error(format!("connection error: {e:?}"));
                        return;
                    }
                }
            }
        }));
    }

    // --- subscriber 3: raw persistent session, reconnects at 10/30/50/70 % --------------------
    let raw_id = client_id_on_shard(&format!("soak{q}-sub3"), 1, SHARDS);
    let mut sess = RawSession::new(port, &raw_id);
    assert!(!sess.connect(false, 0), "{raw_id}: new session");
    assert_eq!(
        sess.subscribe(1, &[(TOPIC, q)]),
        vec![q],
        "{raw_id}: granted QoS"
    );
    let raw_tracker = trackers[3].clone();
    let raw_task = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + limit;
        let thresholds: Vec<u64> = [10, 30, 50, 70]
            .iter()
            .map(|pct| total * pct / 100)
            .collect();
        let mut reconnects = 0usize;
        while Instant::now() < deadline {
            if let Some(m) = sess.recv(millis(200)) {
                let mut t = raw_tracker.lock().unwrap();
                t.on(&m.payload);
                if t.complete() {
                    break;
                }
            }
            let distinct = raw_tracker.lock().unwrap().distinct();
            if reconnects < thresholds.len() && distinct >= thresholds[reconnects] {
                if GRACEFUL[reconnects] {
                    sess.disconnect();
                } else {
                    sess.drop_connection();
                }
                std::thread::sleep(millis(300)); // offline for a while (messages pile up)
                if !sess.connect(false, 0) {
                    raw_tracker
                        .lock()
                        .unwrap()
                        .error("session not present after reconnect".into());
                }
                reconnects += 1;
            }
        }
        (reconnects, sess.dup_flagged, sess.qos2_suppressed)
    });

    // --- publishers ------------------------------------------------------------------------
    let mut pub_tasks = Vec::new();
    for p in 0..PUBS {
        let id = client_id_on_shard(&format!("soak{q}-pub{p}"), p % SHARDS, SHARDS);
        let mut o = opts(port, &id);
        o.set_inflight(500);
        let (client, mut el) = AsyncClient::new(o, 10_000);
        match tokio::time::timeout(secs(15), el.poll()).await {
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {}
            other => panic!("{id}: no CONNACK: {other:?}"),
        }
        let keep = client.clone();
        let acks = tokio::spawn(async move {
            let _keep = keep; // the event loop ends with RequestsDone if every client is dropped
            let mut done = 0u32;
            while done < per_pub {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) if q == 1 => done += 1,
                    Ok(Event::Incoming(Packet::PubComp(_))) if q == 2 => done += 1,
                    Ok(_) => {}
                    Err(e) => return Err(format!("publisher {p}: {e:?} after {done} acks")),
                }
            }
            Ok(())
        });
        let sender = tokio::spawn(async move {
            for seq in 0..per_pub {
                client
                    .publish(TOPIC, qos(q), false, format!("{p}:{seq}"))
                    .await
                    .unwrap();
            }
        });
        pub_tasks.push((sender, acks));
    }

    // --- wait, bounded, with a progress report on timeout ------------------------------------
    let left = limit.saturating_sub(started.elapsed());
    let waited = tokio::time::timeout(left, async {
        for (sender, acks) in pub_tasks {
            sender.await.expect("publisher task");
            acks.await.expect("publisher ack task")?;
        }
        let published_at = started.elapsed();
        for t in sub_tasks {
            t.await.expect("subscriber task");
        }
        let raw = raw_task
            .await
            .expect("reconnecting subscriber (see its panic above)");
        Ok::<_, String>((published_at, raw))
    })
    .await;
    let report: Vec<String> = trackers
        .iter()
        .map(|t| t.lock().unwrap().summary())
        .collect();
    let (published_at, (reconnects, dup_flagged, suppressed)) = match waited {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => panic!("QoS {q} soak: {e}\n{}", report.join("\n")),
        Err(_) => panic!(
            "QoS {q} soak did not finish within {limit:?} ({} x {per_pub} messages)\n{}",
            PUBS,
            report.join("\n")
        ),
    };
    eprintln!(
        "QoS {q} soak: {PUBS} x {per_pub} messages, all published and acked after {published_at:?}, \
         all delivered after {:?}; reconnects {reconnects}, DUP-flagged re-sends {dup_flagged}, \
         suppressed QoS 2 re-sends {suppressed}\n{}",
        started.elapsed(),
        report.join("\n")
    );
    broker.assert_alive();

    for (i, t) in trackers.iter().enumerate() {
        let t = t.lock().unwrap();
        assert!(t.errors.is_empty(), "{}", t.summary());
        assert!(t.complete(), "{}", t.summary());
        if i < 3 || q == 2 {
            assert_eq!(
                t.dups,
                0,
                "duplicates where none are allowed: {}",
                t.summary()
            );
        }
    }
    assert_eq!(
        reconnects, 4,
        "the reconnecting subscriber reconnected {reconnects} times"
    );
}
