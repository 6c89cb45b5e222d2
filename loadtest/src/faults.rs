//! Fault scenarios users run before they deploy: each runs beside a healthy publisher /
//! subscriber pair and reports how that pair fared and, given the broker's pid, the broker's
//! memory (RSS) before, at its peak and after.
//!
//! - `slowsub`: a subscriber that never reads, on the healthy pair's topic;
//! - `storm`: clients connecting, subscribing, publishing and leaving (cleanly or not) as fast
//!   as they can; the RSS after a settle time shows a leak;
//! - `garbage`: clients sending malformed input.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use hdrhistogram::Histogram;
use ringmq::protocol::{encode, Packet, Publish, QoS};

use crate::cli::FaultArgs;
use crate::connection::{self, close_gracefully, is_timeout, Connection, SessionOpts};
use crate::json::Obj;
use crate::payload;
use crate::subscriber::new_histogram;

/// Which fault runs beside the healthy pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    SlowSubscriber,
    Storm,
    Garbage,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::SlowSubscriber => "slowsub",
            Fault::Storm => "storm",
            Fault::Garbage => "garbage",
        }
    }
}

pub struct FaultSummary {
    fault: Fault,
    broker: String,
    duration: f64,
    pair: PairResult,
    /// What the faulty clients did: connections made, and how many the broker closed.
    fault_connections: u64,
    fault_closed_by_broker: u64,
    fault_errors: u64,
    rss: Option<RssStats>,
}

impl FaultSummary {
    pub fn failed(&self) -> bool {
        self.pair.qos == 1 && self.pair.lost() > 0 || self.pair.received == 0
    }

    pub fn text(&self) -> String {
        let mut s = format!(
            "{} against {} for {:.1} s\n  healthy pair: sent {}, received {} ({} lost), \
             latency p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms\n  faulty clients: {} \
             connections, {} closed by the broker, {} errors\n",
            self.fault.name(),
            self.broker,
            self.duration,
            self.pair.sent,
            self.pair.received,
            self.pair.lost(),
            ms(&self.pair.latency, 50.0),
            ms(&self.pair.latency, 99.0),
            self.pair.latency.max() as f64 / 1e6,
            self.fault_connections,
            self.fault_closed_by_broker,
            self.fault_errors,
        );
        match &self.rss {
            Some(r) => {
                s += &format!(
                    "  broker RSS: {:.1} MiB before, {:.1} MiB peak, {:.1} MiB after \
                     ({:+.1} MiB)\n",
                    mib(r.start),
                    mib(r.peak),
                    mib(r.end),
                    mib(r.end) - mib(r.start)
                )
            }
            None => s += "  broker RSS: not sampled (give --broker-pid)\n",
        }
        s
    }

    pub fn json(&self) -> String {
        let mut o = Obj::new();
        o.str("scenario", self.fault.name())
            .str("broker", &self.broker)
            .num("duration_s", self.duration)
            .int("pair_sent", self.pair.sent)
            .int("pair_received", self.pair.received)
            .int("pair_lost", self.pair.lost())
            .num("pair_p50_ms", ms(&self.pair.latency, 50.0))
            .num("pair_p99_ms", ms(&self.pair.latency, 99.0))
            .num("pair_max_ms", self.pair.latency.max() as f64 / 1e6)
            .int("fault_connections", self.fault_connections)
            .int("fault_closed_by_broker", self.fault_closed_by_broker)
            .int("fault_errors", self.fault_errors);
        if let Some(r) = &self.rss {
            o.int("rss_start_kib", r.start)
                .int("rss_peak_kib", r.peak)
                .int("rss_end_kib", r.end);
        }
        o.end()
    }
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q / 100.0) as f64 / 1e6
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

pub fn run(fault: Fault, a: &FaultArgs) -> Result<FaultSummary, String> {
    let addr = connection::resolve(&a.client.host, a.client.port)?;
    let sampler = a.broker_pid.map(RssSampler::start);
    let stop = Arc::new(AtomicBool::new(false));
    let pair = HealthyPair::start(addr, a, stop.clone())?;
    let counts = Arc::new(FaultCounts::default());
    let t0 = Instant::now();
    let faulty = spawn_fault(fault, addr, a, stop.clone(), counts.clone())?;
    thread::sleep(Duration::from_secs(a.duration));
    stop.store(true, Ordering::Relaxed);
    for h in faulty {
        let _ = h.join();
    }
    let pair = pair.finish()?;
    let duration = t0.elapsed().as_secs_f64();
    // Let the broker clean up before the last sample: what stays is what leaked.
    thread::sleep(Duration::from_secs(a.settle));
    Ok(FaultSummary {
        fault,
        broker: addr.to_string(),
        duration,
        pair,
        fault_connections: counts.connections.load(Ordering::Relaxed),
        fault_closed_by_broker: counts.closed_by_broker.load(Ordering::Relaxed),
        fault_errors: counts.errors.load(Ordering::Relaxed),
        rss: sampler.map(RssSampler::finish),
    })
}

#[derive(Default)]
struct FaultCounts {
    connections: AtomicU64,
    closed_by_broker: AtomicU64,
    errors: AtomicU64,
}

fn spawn_fault(
    fault: Fault,
    addr: SocketAddr,
    a: &FaultArgs,
    stop: Arc<AtomicBool>,
    counts: Arc<FaultCounts>,
) -> Result<Vec<thread::JoinHandle<()>>, String> {
    let prefix = a.client.prefix.clone();
    match fault {
        Fault::SlowSubscriber => {
            let opts = SessionOpts::default();
            let mut slow = Connection::open(addr, &format!("{prefix}-slow-0"), &opts)?;
            let qos = if a.qos == 1 {
                QoS::AtLeastOnce
            } else {
                QoS::AtMostOnce
            };
            slow.subscribe(&pair_topic(a), qos)?;
            counts.connections.fetch_add(1, Ordering::Relaxed);
            // Never reads again; at the end, finds out whether the broker closed it.
            Ok(vec![thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    thread::sleep(Duration::from_millis(50));
                }
                let mut s = slow.stream;
                let _ = s.set_nonblocking(true);
                let mut sink = vec![0u8; 1 << 20];
                let closed = loop {
                    match s.read(&mut sink) {
                        Ok(0) => break true,
                        Ok(_) => continue,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
                        Err(_) => break true,
                    }
                };
                if closed {
                    counts.closed_by_broker.fetch_add(1, Ordering::Relaxed);
                }
            })])
        }
        Fault::Storm => Ok((0..a.clients)
            .map(|w| {
                let (stop, counts, prefix) = (stop.clone(), counts.clone(), prefix.clone());
                thread::spawn(move || storm_worker(addr, &prefix, w, &stop, &counts))
            })
            .collect()),
        Fault::Garbage => Ok((0..a.clients)
            .map(|w| {
                let (stop, counts) = (stop.clone(), counts.clone());
                thread::spawn(move || garbage_worker(addr, w, &stop, &counts))
            })
            .collect()),
    }
}

/// Connect, maybe subscribe and publish, leave (cleanly or by dropping the socket); again.
fn storm_worker(addr: SocketAddr, prefix: &str, w: u32, stop: &AtomicBool, counts: &FaultCounts) {
    let mut rng = Rng::new(u64::from(w) + 1);
    let opts = SessionOpts::default();
    let mut cycle = 0u64;
    while !stop.load(Ordering::Relaxed) {
        cycle += 1;
        let id = format!("{prefix}-storm-{w}-{}", cycle % 64);
        let mut c = match Connection::open(addr, &id, &opts) {
            Ok(c) => c,
            Err(_) => {
                counts.errors.fetch_add(1, Ordering::Relaxed);
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        counts.connections.fetch_add(1, Ordering::Relaxed);
        if rng.below(2) == 0
            && c.subscribe(&format!("storm/{w}/#"), QoS::AtLeastOnce)
                .is_err()
        {
            counts.errors.fetch_add(1, Ordering::Relaxed);
        }
        if rng.below(3) == 0 {
            let mut out = BytesMut::new();
            let publish = Publish::new(&format!("storm/{w}/x"), b"storm");
            let _ = encode(&Packet::Publish(publish), c.version, &mut out);
            let _ = c.write_all(&out, Instant::now() + Duration::from_secs(1));
        }
        if rng.below(2) == 0 {
            close_gracefully(&mut c.stream, Instant::now() + Duration::from_secs(1));
        }
        // Otherwise dropped: the broker sees the socket close without DISCONNECT.
    }
}

/// Connect and send something malformed, then see whether the broker closes the socket.
fn garbage_worker(addr: SocketAddr, w: u32, stop: &AtomicBool, counts: &FaultCounts) {
    let mut rng = Rng::new(u64::from(w) * 7919 + 3);
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
            counts.errors.fetch_add(1, Ordering::Relaxed);
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        counts.connections.fetch_add(1, Ordering::Relaxed);
        let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
        let _ = s.set_write_timeout(Some(Duration::from_millis(200)));
        let bytes = garbage(&mut rng, w);
        let _ = s.write_all(&bytes);
        let mut sink = [0u8; 4096];
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline {
            match s.read(&mut sink) {
                Ok(0) => {
                    counts.closed_by_broker.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {}
                Err(_) => {
                    counts.closed_by_broker.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
    }
}

/// Malformed input of several kinds: noise, a CONNECT followed by noise, a header claiming a
/// huge packet, a bad remaining length, a PUBLISH before CONNECT.
fn garbage(rng: &mut Rng, w: u32) -> Vec<u8> {
    let noise = |rng: &mut Rng, n: usize| (0..n).map(|_| rng.below(256) as u8).collect::<Vec<u8>>();
    let connect = {
        let id = format!("garbage-{w}-{}", rng.below(1000));
        let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 30];
        body.extend((id.len() as u16).to_be_bytes());
        body.extend(id.as_bytes());
        let mut p = vec![0x10, body.len() as u8];
        p.extend(body);
        p
    };
    match rng.below(5) {
        0 => {
            let n = 1 + rng.below(2048) as usize;
            noise(rng, n)
        }
        1 => {
            let n = 1 + rng.below(512) as usize;
            [connect, noise(rng, n)].concat()
        }
        2 => [connect, vec![0x30, 0xFF, 0xFF, 0xFF, 0x7F]].concat(),
        3 => vec![0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
        _ => vec![0x30, 0x05, 0x00, 0x01, b't', b'x', b'y'],
    }
}

fn pair_topic(a: &FaultArgs) -> String {
    format!("fault/{}/pair", a.client.prefix)
}

/// A publisher at `--rate` and a subscriber on one topic, measuring what gets through.
struct HealthyPair {
    publisher: thread::JoinHandle<Result<u64, String>>,
    subscriber: thread::JoinHandle<Result<PairResult, String>>,
}

struct PairResult {
    qos: u8,
    sent: u64,
    received: u64,
    latency: Histogram<u64>,
}

impl PairResult {
    fn lost(&self) -> u64 {
        self.sent.saturating_sub(self.received)
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl HealthyPair {
    fn start(
        addr: SocketAddr,
        a: &FaultArgs,
        stop: Arc<AtomicBool>,
    ) -> Result<HealthyPair, String> {
        let opts = SessionOpts::default();
        let prefix = &a.client.prefix;
        let qos = if a.qos == 1 {
            QoS::AtLeastOnce
        } else {
            QoS::AtMostOnce
        };
        let topic = pair_topic(a);
        let mut sub = Connection::open(addr, &format!("{prefix}-pair-sub"), &opts)?;
        sub.subscribe(&topic, qos)?;
        sub.grow_buffers();
        let mut publ = Connection::open(addr, &format!("{prefix}-pair-pub"), &opts)?;
        let (rate, size, qos_n) = (a.rate.max(1), a.payload as usize, a.qos);
        let sent = Arc::new(AtomicU64::new(0));
        let published = sent.clone();
        let pub_stop = stop.clone();
        let publisher = thread::spawn(move || {
            let t0 = Instant::now();
            let mut seq = 0u64;
            let mut out = BytesMut::new();
            let mut inflight = 0u64;
            let mut acked = 0u64;
            while !pub_stop.load(Ordering::Relaxed) {
                let due = t0 + Duration::from_secs_f64(seq as f64 / rate as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    thread::sleep(wait);
                }
                let mut body = BytesMut::new();
                payload::write(&mut body, 0, seq, now_ns(), size);
                let pid = (seq % 65_535 + 1) as u16;
                let publish =
                    Publish::new(&topic, &body).with_qos(qos, if qos_n == 1 { pid } else { 0 });
                out.clear();
                let _ = encode(&Packet::Publish(publish), publ.version, &mut out);
                publ.write_all(&out, Instant::now() + Duration::from_secs(5))
                    .map_err(|e| format!("healthy publisher: {e}"))?;
                seq += 1;
                published.store(seq, Ordering::Relaxed);
                if qos_n == 1 {
                    inflight += 1;
                    // Read the PUBACKs that arrived (a short read timeout).
                    while inflight > 64 {
                        match publ.fill() {
                            Ok(0) => return Err("healthy publisher: broker closed".into()),
                            Ok(_) => {}
                            Err(e) if is_timeout(&e) => {}
                            Err(e) => return Err(format!("healthy publisher: {e}")),
                        }
                        while let Ok(Some(p)) = publ.decoder.decode(&mut publ.rbuf) {
                            if matches!(p, Packet::PubAck(_)) {
                                acked += 1;
                                inflight -= 1;
                            }
                        }
                    }
                }
            }
            let _ = acked;
            close_gracefully(&mut publ.stream, Instant::now() + Duration::from_secs(2));
            Ok(seq)
        });
        let subscriber = thread::spawn(move || {
            let mut latency = new_histogram();
            let mut tracker = payload::SeqTracker::default();
            let mut quiet_since: Option<Instant> = None;
            loop {
                match sub.fill() {
                    Ok(0) => return Err("healthy subscriber: broker closed".into()),
                    Ok(_) => quiet_since = None,
                    Err(e) if is_timeout(&e) => {
                        if stop.load(Ordering::Relaxed) {
                            let since = *quiet_since.get_or_insert_with(Instant::now);
                            if since.elapsed() > Duration::from_secs(2)
                                || tracker.distinct >= sent.load(Ordering::Relaxed)
                            {
                                break;
                            }
                        }
                    }
                    Err(e) => return Err(format!("healthy subscriber: {e}")),
                }
                let mut acks = BytesMut::new();
                while let Ok(Some(p)) = sub.decoder.decode(&mut sub.rbuf) {
                    if let Packet::Publish(p) = p {
                        if let Some((_, seq, sent_ns)) = payload::read(p.payload()) {
                            tracker.record(seq);
                            latency.saturating_record(now_ns().saturating_sub(sent_ns));
                        }
                        if p.qos == QoS::AtLeastOnce {
                            let ack = Packet::PubAck(ringmq::protocol::Ack::new(p.packet_id));
                            let _ = encode(&ack, sub.version, &mut acks);
                        }
                    }
                }
                if !acks.is_empty() {
                    let _ = sub.write_all(&acks, Instant::now() + Duration::from_secs(5));
                }
            }
            close_gracefully(&mut sub.stream, Instant::now() + Duration::from_secs(2));
            Ok(PairResult {
                qos: qos_n,
                sent: 0,
                received: tracker.distinct,
                latency,
            })
        });
        Ok(HealthyPair {
            publisher,
            subscriber,
        })
    }

    fn finish(self) -> Result<PairResult, String> {
        let sent = self
            .publisher
            .join()
            .map_err(|_| "healthy publisher panicked".to_string())??;
        let mut result = self
            .subscriber
            .join()
            .map_err(|_| "healthy subscriber panicked".to_string())??;
        result.sent = sent;
        Ok(result)
    }
}

/// Samples a process's resident set size every 100 ms.
struct RssSampler {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<RssStats>,
}

#[derive(Debug, Clone, Copy)]
struct RssStats {
    start: u64,
    peak: u64,
    end: u64,
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let done = stop.clone();
        let handle = thread::spawn(move || {
            let start = rss_kib(pid).unwrap_or(0);
            let mut stats = RssStats {
                start,
                peak: start,
                end: start,
            };
            while !done.load(Ordering::Relaxed) {
                if let Some(kib) = rss_kib(pid) {
                    stats.peak = stats.peak.max(kib);
                    stats.end = kib;
                }
                thread::sleep(Duration::from_millis(100));
            }
            if let Some(kib) = rss_kib(pid) {
                stats.end = kib;
            }
            stats
        });
        RssSampler { stop, handle }
    }

    fn finish(self) -> RssStats {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or(RssStats {
            start: 0,
            peak: 0,
            end: 0,
        })
    }
}

/// xorshift64*: garbage and storm choices, reproducible per worker.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}
