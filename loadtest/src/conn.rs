//! The `conn` mode: open many connections at a connect rate, hold them idle, report how long
//! opening took and the CONNECT -> CONNACK latency.

use std::io::{ErrorKind, Read};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::cli::ConnArgs;
use crate::connection::{self, write_until, Connection};
use crate::engine::{pace_connect, session_opts};
use crate::json::Obj;
use crate::subscriber::new_histogram;
use crate::tls::Stream;

#[derive(Default)]
struct Opened {
    streams: Vec<Stream>,
    failed: u64,
    first_error: Option<String>,
}

pub struct ConnSummary {
    pub broker: String,
    pub clients: u32,
    pub opened: u64,
    pub failed: u64,
    pub first_error: Option<String>,
    pub open_secs: f64,
    /// Connections the broker closed while they were held.
    pub dropped: u64,
    pub connack: Histogram<u64>,
}

pub fn run(a: &ConnArgs) -> Result<ConnSummary, String> {
    let addr = connection::resolve(&a.client.host, a.client.port)?;
    let opts = session_opts(&a.client);
    let prefix = a.client.prefix.clone();
    // One connection first: an absent broker is a clear error, not 10,000 failures.
    let t0 = Instant::now();
    let probe = Connection::open(addr, &format!("{prefix}-conn-0"), &opts)?;
    let mut connack = new_histogram();
    connack.saturating_record(t0.elapsed().as_nanos() as u64);

    let opened = Arc::new(Mutex::new(Opened {
        streams: vec![probe.stream],
        ..Opened::default()
    }));
    let hist = Arc::new(Mutex::new(connack));
    let workers = a.workers.min(a.clients);
    let mut handles = Vec::new();
    for w in 0..workers {
        let (opened, hist, prefix) = (opened.clone(), hist.clone(), prefix.clone());
        let (n, rate) = (a.clients, a.client.connect_rate);
        handles.push(thread::spawn(move || {
            let mut local = new_histogram();
            for k in (1 + w..n).step_by(workers as usize) {
                pace_connect(t0, u64::from(k), rate);
                let t = Instant::now();
                let r = Connection::open(addr, &format!("{prefix}-conn-{k}"), &opts);
                let mut o = opened.lock().unwrap();
                match r {
                    Ok(c) => {
                        local.saturating_record(t.elapsed().as_nanos() as u64);
                        o.streams.push(c.stream);
                    }
                    Err(e) => {
                        o.failed += 1;
                        o.first_error.get_or_insert(e);
                    }
                }
            }
            let _ = hist.lock().unwrap().add(&local);
        }));
    }
    for h in handles {
        h.join()
            .map_err(|_| "connect worker panicked".to_string())?;
    }
    let open_secs = t0.elapsed().as_secs_f64();
    let mut o = std::mem::take(&mut *opened.lock().unwrap());
    if !a.quiet {
        eprintln!(
            "ringmq-load: {} of {} connections open in {open_secs:.3} s; holding {} s",
            o.streams.len(),
            a.clients,
            a.hold
        );
    }
    if let Some(f) = &a.ready_file {
        std::fs::write(f, format!("{}\n", o.streams.len()))
            .map_err(|e| format!("write {}: {e}", f.display()))?;
    }
    hold(
        &mut o.streams,
        Duration::from_secs(a.hold),
        a.client.keepalive,
    );
    let dropped = count_closed(&mut o.streams);
    let deadline = Instant::now() + Duration::from_secs(2);
    for s in &mut o.streams {
        let _ = write_until(s, &[0xE0, 0x00], deadline); // DISCONNECT
    }
    let connack = std::mem::replace(&mut *hist.lock().unwrap(), new_histogram());
    Ok(ConnSummary {
        broker: addr.to_string(),
        clients: a.clients,
        opened: o.streams.len() as u64,
        failed: o.failed,
        first_error: o.first_error,
        open_secs,
        dropped,
        connack,
    })
}

/// Idles for `d`, pinging every half keep-alive so the broker keeps the connections.
fn hold(streams: &mut [Stream], d: Duration, keep_alive: u16) {
    let end = Instant::now() + d;
    let every = Duration::from_secs(u64::from(keep_alive.max(2)) / 2);
    let mut next_ping = Instant::now() + every;
    while Instant::now() < end {
        thread::sleep(
            end.saturating_duration_since(Instant::now())
                .min(Duration::from_millis(200)),
        );
        if keep_alive > 0 && Instant::now() >= next_ping {
            let deadline = Instant::now() + Duration::from_secs(1);
            for s in streams.iter_mut() {
                let _ = write_until(s, &[0xC0, 0x00], deadline); // PINGREQ
            }
            next_ping += every;
        }
    }
}

/// Connections whose read side has reached end of stream (or failed).
fn count_closed(streams: &mut [Stream]) -> u64 {
    let mut buf = [0u8; 256];
    let mut closed = 0;
    for s in streams.iter_mut() {
        if s.set_nonblocking(true).is_err() {
            closed += 1;
            continue;
        }
        loop {
            match s.read(&mut buf) {
                Ok(0) => {
                    closed += 1;
                    break;
                }
                Ok(_) => continue, // PINGRESPs
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => {
                    closed += 1;
                    break;
                }
            }
        }
        let _ = s.set_nonblocking(false);
    }
    closed
}

impl ConnSummary {
    fn us(&self, q: f64) -> f64 {
        if self.connack.is_empty() {
            0.0
        } else {
            self.connack.value_at_quantile(q) as f64 / 1000.0
        }
    }

    pub fn per_sec(&self) -> f64 {
        self.opened as f64 / self.open_secs.max(1e-9)
    }

    pub fn text(&self) -> String {
        let mut s = format!(
            "conn  broker={}  clients={}\n  opened        {}  in {:.3} s  ({:.0} conn/s)\n  failed        {}\n  dropped       {} (closed by the broker while held)\n  CONNACK in    p50 {:.1} µs  p99 {:.1} µs  max {:.1} µs\n",
            self.broker,
            self.clients,
            self.opened,
            self.open_secs,
            self.per_sec(),
            self.failed,
            self.dropped,
            self.us(0.5),
            self.us(0.99),
            self.us(1.0)
        );
        if let Some(e) = &self.first_error {
            s += &format!("  first error: {e}\n");
        }
        s
    }

    pub fn json(&self) -> String {
        Obj::new()
            .str("scenario", "conn")
            .str("broker", &self.broker)
            .int("clients", u64::from(self.clients))
            .int("opened", self.opened)
            .int("failed", self.failed)
            .int("dropped", self.dropped)
            .num("open_secs", self.open_secs)
            .num("conn_per_sec", self.per_sec())
            .num("connack_p50_us", self.us(0.5))
            .num("connack_p99_us", self.us(0.99))
            .num("connack_max_us", self.us(1.0))
            .str("first_error", self.first_error.as_deref().unwrap_or(""))
            .end()
    }
}
