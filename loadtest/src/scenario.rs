//! The `fanin` scenario: N publisher -> broker -> subscriber pairs, one thread per client.

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hdrhistogram::Histogram;
use ringmq::protocol::{Ack, Decoder, Packet, PacketType, PublishHeader, QoS, MAX_PACKET_SIZE};

use crate::cli::FaninArgs;
use crate::connection::{self, close_gracefully, is_timeout, write_until, Connection, VERSION};
use crate::payload::{self, SeqTracker};
use crate::report::Summary;

/// How long subscribers may take to receive what was sent after publishing stops.
const DRAIN: Duration = Duration::from_secs(5);
/// Slack for a stalled write or a graceful close.
const GRACE: Duration = Duration::from_secs(5);

#[derive(Default)]
struct PubShared {
    acked: Mutex<u64>,
    acks: Condvar,
    sent: AtomicU64,
    done_sending: AtomicBool,
}

struct PubResult {
    sent: u64,
    acked: u64,
    error: Option<String>,
}

struct SubResult {
    tracker: SeqTracker,
    foreign: u64,
    latency: Histogram<u64>,
    error: Option<String>,
}

fn new_histogram() -> Histogram<u64> {
    // Nanoseconds, 1 ns .. 1 h, 3 significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("histogram bounds")
}

pub fn run_fanin(args: &FaninArgs) -> Result<Summary, String> {
    let addr = connection::resolve(&args.host, args.port)?;
    let qos = if args.qos == 1 {
        QoS::AtLeastOnce
    } else {
        QoS::AtMostOnce
    };
    let epoch = Instant::now();

    // Subscribers first, so nothing published is missed; all set up before any thread starts.
    let mut subs = Vec::new();
    for i in 0..args.pairs {
        let mut conn = Connection::open(addr, &format!("load-sub-{i}"))?;
        conn.subscribe(&format!("load/{i}"), qos)
            .map_err(|e| format!("load-sub-{i}: {e}"))?;
        subs.push(conn);
    }
    let mut pubs = Vec::new();
    for i in 0..args.pairs {
        pubs.push(Connection::open(addr, &format!("load-pub-{i}"))?);
    }

    let start = Instant::now();
    let end = start + Duration::from_secs(args.duration);
    let hard_deadline = end + GRACE;
    let stop_pub = Arc::new(AtomicBool::new(false));
    let stop_sub = Arc::new(AtomicBool::new(false));

    let mut sub_threads = Vec::new();
    let mut distinct = Vec::new();
    for (i, conn) in subs.into_iter().enumerate() {
        let counter = Arc::new(AtomicU64::new(0));
        distinct.push(counter.clone());
        let stop = stop_sub.clone();
        let handle = thread::Builder::new()
            .name(format!("load-sub-{i}"))
            .spawn(move || subscriber(i as u32, conn, epoch, stop, counter))
            .map_err(|e| format!("spawn: {e}"))?;
        sub_threads.push(handle);
    }
    let mut pub_threads: Vec<(Arc<PubShared>, JoinHandle<PubResult>)> = Vec::new();
    for (i, conn) in pubs.into_iter().enumerate() {
        let shared = Arc::new(PubShared::default());
        let (sh, stop, a) = (shared.clone(), stop_pub.clone(), args.clone());
        let handle = thread::Builder::new()
            .name(format!("load-pub-{i}"))
            .spawn(move || publisher(i as u32, conn, &a, qos, epoch, stop, sh, hard_deadline))
            .map_err(|e| format!("spawn: {e}"))?;
        pub_threads.push((shared, handle));
    }

    let all_done = |p: &[(Arc<PubShared>, JoinHandle<PubResult>)]| {
        p.iter()
            .all(|(s, _)| s.done_sending.load(Ordering::Acquire))
    };
    // Publish phase (ends early only if every publisher has failed).
    while Instant::now() < end && !all_done(&pub_threads) {
        thread::sleep(Duration::from_millis(50).min(end.saturating_duration_since(Instant::now())));
    }
    stop_pub.store(true, Ordering::Release);
    let publish_secs = start.elapsed().as_secs_f64();
    while !all_done(&pub_threads) && Instant::now() < hard_deadline + GRACE {
        thread::sleep(Duration::from_millis(5));
    }

    // Drain: until every sent message has been counted once, or DRAIN passes.
    let drain_start = Instant::now();
    let total_sent = |p: &[(Arc<PubShared>, JoinHandle<PubResult>)]| {
        p.iter()
            .map(|(s, _)| s.sent.load(Ordering::Acquire))
            .sum::<u64>()
    };
    let target = total_sent(&pub_threads);
    while drain_start.elapsed() < DRAIN {
        let got: u64 = distinct.iter().map(|c| c.load(Ordering::Acquire)).sum();
        if got >= target {
            break;
        }
        thread::sleep(Duration::from_millis(5));
    }
    let drain_secs = drain_start.elapsed().as_secs_f64();
    stop_sub.store(true, Ordering::Release);

    let mut summary = Summary::new(args, addr.to_string(), publish_secs, drain_secs);
    let mut latency = new_histogram();
    let mut sent_by = Vec::new();
    for (i, (_, handle)) in pub_threads.into_iter().enumerate() {
        let r = handle
            .join()
            .map_err(|_| format!("load-pub-{i} panicked"))?;
        summary.sent += r.sent;
        summary.acked += r.acked;
        sent_by.push(r.sent);
        if let Some(e) = r.error {
            summary.errors.push(format!("load-pub-{i}: {e}"));
        }
    }
    for (i, handle) in sub_threads.into_iter().enumerate() {
        let r = handle
            .join()
            .map_err(|_| format!("load-sub-{i} panicked"))?;
        let t = &r.tracker;
        summary.received += t.received;
        summary.distinct += t.distinct;
        summary.duplicates += t.duplicates;
        summary.out_of_order += t.out_of_order;
        summary.foreign += r.foreign;
        summary.lost += sent_by[i].saturating_sub(t.distinct);
        // More distinct than sent: messages this harness never counted as sent arrived.
        summary.unexpected += t.distinct.saturating_sub(sent_by[i]);
        latency
            .add(&r.latency)
            .map_err(|e| format!("histogram: {e}"))?;
        if let Some(e) = r.error {
            summary.errors.push(format!("load-sub-{i}: {e}"));
        }
    }
    summary.set_latency(&latency);
    Ok(summary)
}

#[allow(clippy::too_many_arguments)]
fn publisher(
    id: u32,
    conn: Connection,
    args: &FaninArgs,
    qos: QoS,
    epoch: Instant,
    stop: Arc<AtomicBool>,
    shared: Arc<PubShared>,
    hard_deadline: Instant,
) -> PubResult {
    let mut stream = conn.stream;
    let topic = format!("load/{id}");
    let payload_len = args.payload as usize;
    let inflight = u64::from(args.inflight);
    let batch = if qos == QoS::AtLeastOnce {
        u64::from(args.batch).min(inflight)
    } else {
        u64::from(args.batch)
    };
    let props = Default::default();
    let mut header = PublishHeader {
        dup: false,
        qos,
        retain: false,
        topic: &topic,
        packet_id: 0,
        properties: &props,
    };
    let packet_len = header.wire_len(VERSION, payload_len);

    // Reads PUBACKs (and anything else the broker sends) until end of stream or told to quit.
    let quit = Arc::new(AtomicBool::new(false));
    let reader = {
        let (quit, shared) = (quit.clone(), shared.clone());
        let rstream = stream.try_clone();
        let rbuf = conn.rbuf;
        thread::spawn(move || match rstream {
            Ok(s) => ack_reader(s, rbuf, conn.decoder, &shared, &quit),
            Err(e) => Some(format!("clone socket: {e}")),
        })
    };
    let reader_done = || reader.is_finished();

    let mut seq = 0u64;
    let mut error = None;
    let mut buf = BytesMut::with_capacity(packet_len * batch as usize);
    while !stop.load(Ordering::Acquire) {
        if qos == QoS::AtLeastOnce {
            let mut acked = shared.acked.lock().unwrap();
            while inflight - (seq - *acked) < batch && !stop.load(Ordering::Acquire) {
                if reader_done() {
                    break;
                }
                acked = shared.acks.wait_timeout(acked, connection::POLL).unwrap().0;
            }
            if inflight - (seq - *acked) < batch {
                if reader_done() {
                    error = Some("connection closed by broker".into());
                    break;
                }
                continue; // stop requested
            }
        }
        buf.clear();
        for k in 0..batch {
            let s = seq + k;
            header.packet_id = if qos == QoS::AtMostOnce {
                0
            } else {
                (s % 65535) as u16 + 1
            };
            header
                .write(VERSION, payload_len, &mut buf)
                .expect("encode PUBLISH");
            payload::write(
                &mut buf,
                id,
                s,
                epoch.elapsed().as_nanos() as u64,
                payload_len,
            );
        }
        match write_until(&mut stream, &buf, hard_deadline) {
            Ok(n) => {
                seq += (n / packet_len) as u64;
                shared.sent.store(seq, Ordering::Release);
                if n < buf.len() {
                    error = Some("write stalled past the hard deadline".into());
                    break;
                }
            }
            Err(e) => {
                error = Some(format!("write: {e}"));
                break;
            }
        }
    }
    shared.sent.store(seq, Ordering::Release);
    shared.done_sending.store(true, Ordering::Release);

    // QoS 1: wait for the outstanding PUBACKs before disconnecting.
    let close_by = Instant::now() + GRACE;
    if qos == QoS::AtLeastOnce && error.is_none() {
        let mut acked = shared.acked.lock().unwrap();
        while *acked < seq && Instant::now() < close_by && !reader_done() {
            acked = shared.acks.wait_timeout(acked, connection::POLL).unwrap().0;
        }
    }
    let _ = write_until(&mut stream, &[0xE0, 0x00], close_by);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    while !reader_done() && Instant::now() < close_by {
        thread::sleep(Duration::from_millis(5));
    }
    quit.store(true, Ordering::Release);
    let reader_error = reader
        .join()
        .unwrap_or_else(|_| Some("reader panicked".into()));
    let acked = *shared.acked.lock().unwrap();
    if qos == QoS::AtLeastOnce && acked < seq && error.is_none() {
        error = Some(format!(
            "{} of {seq} publishes never acknowledged",
            seq - acked
        ));
    }
    PubResult {
        sent: seq,
        acked,
        error: error.or(reader_error),
    }
}

fn ack_reader(
    mut stream: TcpStream,
    mut rbuf: BytesMut,
    decoder: Decoder,
    shared: &PubShared,
    quit: &AtomicBool,
) -> Option<String> {
    use std::io::Read;
    let mut chunk = vec![0u8; 64 * 1024];
    while !quit.load(Ordering::Acquire) {
        match stream.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => rbuf.extend_from_slice(&chunk[..n]),
            Err(e) if is_timeout(&e) || e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Some(format!("read: {e}")),
        }
        let mut acks = 0;
        loop {
            match decoder.decode(&mut rbuf) {
                Ok(Some(Packet::PubAck(_))) => acks += 1,
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => return Some(format!("decode: {e}")),
            }
        }
        if acks > 0 {
            *shared.acked.lock().unwrap() += acks;
            shared.acks.notify_all();
        }
    }
    None
}

fn subscriber(
    id: u32,
    mut conn: Connection,
    epoch: Instant,
    stop: Arc<AtomicBool>,
    distinct: Arc<AtomicU64>,
) -> SubResult {
    let mut res = SubResult {
        tracker: SeqTracker::default(),
        foreign: 0,
        latency: new_histogram(),
        error: None,
    };
    let decoder = Decoder::new(VERSION, MAX_PACKET_SIZE);
    let mut out = BytesMut::with_capacity(64 * 1024);
    let mut last_write = Instant::now();
    while !stop.load(Ordering::Acquire) {
        match conn.fill() {
            Ok(0) => {
                res.error = Some("broker closed the connection".into());
                break;
            }
            Ok(_) => {}
            Err(e) if is_timeout(&e) || e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                res.error = Some(format!("read: {e}"));
                break;
            }
        }
        let now_ns = epoch.elapsed().as_nanos() as u64;
        loop {
            match decoder.decode(&mut conn.rbuf) {
                Ok(Some(Packet::Publish(p))) => {
                    match payload::read(&p.payload) {
                        Some((publisher, seq, sent)) if publisher == id => {
                            res.tracker.record(seq);
                            res.latency
                                .saturating_record(now_ns.saturating_sub(sent).max(1));
                        }
                        _ => res.foreign += 1,
                    }
                    if p.qos == QoS::AtLeastOnce {
                        Ack::new(p.packet_id)
                            .write(PacketType::PubAck, VERSION, &mut out)
                            .expect("encode PUBACK");
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    res.error = Some(format!("decode: {e}"));
                    break;
                }
            }
        }
        distinct.store(res.tracker.distinct, Ordering::Release);
        if res.error.is_some() {
            break;
        }
        if out.is_empty() && last_write.elapsed() > Duration::from_secs(30) {
            out.extend_from_slice(&[0xC0, 0x00]); // PINGREQ: keep-alive is 60 s
        }
        if !out.is_empty() {
            if let Err(e) = conn.write_all(&out, Instant::now() + GRACE) {
                res.error = Some(format!("write: {e}"));
                break;
            }
            out.clear();
            last_write = Instant::now();
        }
    }
    close_gracefully(&mut conn.stream, Instant::now() + Duration::from_secs(2));
    res
}
