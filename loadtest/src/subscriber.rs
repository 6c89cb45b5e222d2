//! One subscriber thread: acknowledges, tracks every publisher's sequence, records latency.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hdrhistogram::Histogram;
use ringmq::protocol::{Ack, Packet, PacketType, QoS};

use crate::connection::{close_gracefully, is_timeout, Connection};
use crate::payload::{self, SeqTracker};
use crate::publisher::GRACE;

/// Publisher ids above this are not ours (a payload from some other client).
const MAX_PUBLISHERS: u32 = 1 << 20;

pub fn new_histogram() -> Histogram<u64> {
    // Nanoseconds, 1 ns .. 1 h, 3 significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("histogram bounds")
}

/// Live counters of one subscriber, read by the progress line and the drain.
#[derive(Debug, Default)]
pub struct SubShared {
    pub received: AtomicU64,
    /// Nanoseconds since the epoch of the last delivery.
    pub last_ns: AtomicU64,
}

pub struct SubResult {
    /// Indexed by publisher id.
    pub trackers: Vec<SeqTracker>,
    pub foreign: u64,
    pub latency: Histogram<u64>,
    pub error: Option<String>,
}

pub fn run(
    mut conn: Connection,
    epoch: Instant,
    stop: Arc<AtomicBool>,
    shared: Arc<SubShared>,
) -> SubResult {
    let mut res = SubResult {
        trackers: Vec::new(),
        foreign: 0,
        latency: new_histogram(),
        error: None,
    };
    conn.grow_buffers();
    let version = conn.version;
    let mut out = BytesMut::with_capacity(64 * 1024);
    let mut last_write = Instant::now();
    let mut received = 0u64;
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
        let before = received;
        loop {
            match conn.decoder.decode(&mut conn.rbuf) {
                Ok(Some(Packet::Publish(p))) => {
                    received += 1;
                    match payload::read(p.payload()) {
                        Some((publisher, seq, sent)) if publisher < MAX_PUBLISHERS => {
                            let i = publisher as usize;
                            if i >= res.trackers.len() {
                                res.trackers.resize_with(i + 1, SeqTracker::default);
                            }
                            res.trackers[i].record(seq);
                            res.latency
                                .saturating_record(now_ns.saturating_sub(sent).max(1));
                        }
                        _ => res.foreign += 1,
                    }
                    if p.qos == QoS::AtLeastOnce {
                        Ack::new(p.packet_id)
                            .write(PacketType::PubAck, version, &mut out)
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
        if received != before {
            shared.received.store(received, Ordering::Release);
            shared.last_ns.store(now_ns, Ordering::Release);
        }
        if res.error.is_some() {
            break;
        }
        if out.is_empty() && last_write.elapsed() > Duration::from_secs(20) {
            out.extend_from_slice(&[0xC0, 0x00]); // PINGREQ: keep-alive may be as low as 30 s
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
