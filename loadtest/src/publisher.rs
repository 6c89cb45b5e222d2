//! One publisher thread: paced or flat out, QoS 0 or QoS 1 with an inflight window.

use crate::tls::Stream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ringmq::protocol::{Decoder, Packet, PublishHeader, QoS};

use crate::connection::{self, is_timeout, write_until, Connection};
use crate::payload;

/// Slack for a stalled write or a graceful close.
pub const GRACE: Duration = Duration::from_secs(5);

/// What every publisher of a run shares.
#[derive(Debug, Clone)]
pub struct PubParams {
    pub qos: QoS,
    pub payload_len: usize,
    pub inflight: u64,
    pub batch: u64,
    /// Messages per second for this publisher; `None` publishes as fast as the broker takes.
    pub rate: Option<f64>,
    /// Stop after this many messages.
    pub count: Option<u64>,
    /// Common clock of the run: send times are nanoseconds since it.
    pub epoch: Instant,
    /// When publishing starts (paced send times count from it).
    pub start: Instant,
    /// No write may block past it.
    pub hard_deadline: Instant,
}

/// Live counters of one publisher, read by the progress line and the drain.
#[derive(Debug, Default)]
pub struct PubShared {
    acked: Mutex<u64>,
    acks: Condvar,
    pub sent: AtomicU64,
    pub done_sending: AtomicBool,
}

impl PubShared {
    pub fn acked(&self) -> u64 {
        *self.acked.lock().unwrap()
    }
}

#[derive(Debug)]
pub struct PubResult {
    pub sent: u64,
    pub acked: u64,
    pub error: Option<String>,
}

pub fn run(
    id: u32,
    topic: String,
    conn: Connection,
    p: PubParams,
    stop: Arc<AtomicBool>,
    shared: Arc<PubShared>,
) -> PubResult {
    let version = conn.version;
    let mut stream = conn.stream;
    let qos1 = p.qos == QoS::AtLeastOnce;
    let batch = if qos1 {
        p.batch.min(p.inflight)
    } else {
        p.batch
    };
    let props = Default::default();
    let mut header = PublishHeader {
        dup: false,
        qos: p.qos,
        retain: false,
        topic: &topic,
        packet_id: 0,
        properties: &props,
    };
    let packet_len = header.wire_len(version, p.payload_len);
    let limit = p.count.unwrap_or(u64::MAX);

    // Reads PUBACKs (and anything else the broker sends) until end of stream or told to quit.
    let quit = Arc::new(AtomicBool::new(false));
    let reader = {
        let (quit, shared) = (quit.clone(), shared.clone());
        let rstream = stream.try_clone();
        let (rbuf, decoder) = (conn.rbuf, conn.decoder);
        thread::spawn(move || match rstream {
            Ok(s) => ack_reader(s, rbuf, decoder, &shared, &quit),
            Err(e) => Some(format!("clone socket: {e}")),
        })
    };
    let reader_done = || reader.is_finished();
    let start_ns = p.start.duration_since(p.epoch).as_nanos() as u64;

    let mut seq = 0u64;
    let mut error = None;
    let mut buf = BytesMut::with_capacity(packet_len * batch as usize);
    while !stop.load(Ordering::Acquire) && seq < limit {
        let mut n = batch.min(limit - seq);
        if let Some(rate) = p.rate {
            // Send what is due by now; sleep until the next one is.
            let due = (p.start.elapsed().as_secs_f64() * rate) as u64 + 1;
            if due <= seq {
                let next = p.start + Duration::from_secs_f64(seq as f64 / rate);
                thread::sleep(next.saturating_duration_since(Instant::now()));
                continue;
            }
            n = n.min(due - seq);
        }
        if qos1 {
            let mut acked = shared.acked.lock().unwrap();
            while p.inflight - (seq - *acked) < n && !stop.load(Ordering::Acquire) {
                if reader_done() {
                    break;
                }
                acked = shared.acks.wait_timeout(acked, connection::POLL).unwrap().0;
            }
            if p.inflight - (seq - *acked) < n {
                if reader_done() {
                    error = Some("connection closed by broker".into());
                    break;
                }
                continue; // stop requested
            }
        }
        buf.clear();
        let now_ns = p.epoch.elapsed().as_nanos() as u64;
        for k in 0..n {
            let s = seq + k;
            header.packet_id = if qos1 { (s % 65535) as u16 + 1 } else { 0 };
            header
                .write(version, p.payload_len, &mut buf)
                .expect("encode PUBLISH");
            // Paced: stamp the intended send time, so a stalled broker shows up in the
            // latency instead of silently lowering the rate (coordinated omission).
            let sent_ns = match p.rate {
                Some(rate) => start_ns + (s as f64 * 1e9 / rate) as u64,
                None => now_ns,
            };
            payload::write(&mut buf, id, s, sent_ns, p.payload_len);
        }
        match write_until(&mut stream, &buf, p.hard_deadline) {
            Ok(written) => {
                seq += (written / packet_len) as u64;
                shared.sent.store(seq, Ordering::Release);
                if written < buf.len() {
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
    if qos1 && error.is_none() {
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
    let acked = shared.acked();
    if qos1 && acked < seq && error.is_none() {
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
    mut stream: Stream,
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
