//! Runs a [`Plan`]: connect, subscribe, publish for the duration, drain, and account for every
//! message against what each group had to receive.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ringmq::protocol::{ProtocolVersion, QoS};

use crate::cli::Protocol;
use crate::connection::{self, Connection, SessionOpts};
use crate::payload::SeqTracker;
use crate::plan::Plan;
use crate::progress::Progress;
use crate::publisher::{self, PubParams, PubResult, PubShared, GRACE};
use crate::report::Summary;
use crate::subscriber::{self, new_histogram, SubResult, SubShared};

const STACK: usize = 256 * 1024;

pub fn session_opts(c: &crate::cli::ClientArgs) -> SessionOpts {
    SessionOpts {
        version: match c.protocol {
            Protocol::V311 => ProtocolVersion::V3_1_1,
            Protocol::V5 => ProtocolVersion::V5,
        },
        clean: !c.persistent,
        session_expiry: c.session_expiry,
        keep_alive: c.keepalive,
    }
}

/// Sleeps so that connection `k` opens no earlier than `k / rate` after `t0`.
pub fn pace_connect(t0: Instant, k: u64, rate: u32) {
    if rate > 0 {
        let due = t0 + Duration::from_secs_f64(k as f64 / f64::from(rate));
        thread::sleep(due.saturating_duration_since(Instant::now()));
    }
}

type Pubs = Vec<(Arc<PubShared>, JoinHandle<PubResult>)>;

fn spawn<T: Send + 'static>(
    name: String,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>, String> {
    thread::Builder::new()
        .name(name)
        .stack_size(STACK)
        .spawn(f)
        .map_err(|e| format!("spawn thread: {e}"))
}

pub fn run(plan: &Plan) -> Result<Summary, String> {
    let addr = connection::resolve(&plan.client.host, plan.client.port)?;
    let opts = session_opts(&plan.client);
    let qos = if plan.publish.qos == 1 {
        QoS::AtLeastOnce
    } else {
        QoS::AtMostOnce
    };
    let prefix = &plan.client.prefix;
    let epoch = Instant::now();

    // Subscribers first, so nothing published is missed; everyone connected before any load.
    let t0 = Instant::now();
    let mut k = 0;
    let mut sub_conns = Vec::new();
    for (i, s) in plan.subs.iter().enumerate() {
        pace_connect(t0, k, plan.client.connect_rate);
        k += 1;
        let id = format!("{prefix}-sub-{i}");
        let mut conn = Connection::open(addr, &id, &opts)?;
        conn.subscribe(&s.filter, qos)
            .map_err(|e| format!("{id}: {e}"))?;
        sub_conns.push(conn);
    }
    let mut pub_conns = Vec::new();
    for i in 0..plan.pubs.len() {
        pace_connect(t0, k, plan.client.connect_rate);
        k += 1;
        pub_conns.push(Connection::open(addr, &format!("{prefix}-pub-{i}"), &opts)?);
    }
    let connect_secs = t0.elapsed().as_secs_f64();

    let start = Instant::now();
    let end = start + Duration::from_secs(plan.run.duration);
    let params = PubParams {
        qos,
        payload_len: plan.publish.payload as usize,
        inflight: u64::from(plan.publish.inflight),
        batch: u64::from(plan.publish.batch),
        rate: plan.rate_per_publisher(),
        count: (plan.publish.count > 0).then_some(plan.publish.count),
        epoch,
        start,
        hard_deadline: end + GRACE,
    };
    let stop_pub = Arc::new(AtomicBool::new(false));
    let stop_sub = Arc::new(AtomicBool::new(false));

    let mut subs = Vec::new();
    for (i, conn) in sub_conns.into_iter().enumerate() {
        let shared = Arc::new(SubShared::default());
        let (sh, stop) = (shared.clone(), stop_sub.clone());
        let h = spawn(format!("sub-{i}"), move || {
            subscriber::run(conn, epoch, stop, sh)
        })?;
        subs.push((shared, h));
    }
    let mut pubs: Pubs = Vec::new();
    for (i, conn) in pub_conns.into_iter().enumerate() {
        let shared = Arc::new(PubShared::default());
        let (sh, stop, p) = (shared.clone(), stop_pub.clone(), params.clone());
        let topic = plan.pubs[i].clone();
        let h = spawn(format!("pub-{i}"), move || {
            publisher::run(i as u32, topic, conn, p, stop, sh)
        })?;
        pubs.push((shared, h));
    }

    let pub_sh: Vec<_> = pubs.iter().map(|(s, _)| s.clone()).collect();
    let sub_sh: Vec<_> = subs.iter().map(|(s, _)| s.clone()).collect();
    let mut progress = Progress::new(plan.run.quiet, start, pub_sh.clone(), sub_sh.clone());
    let all_done = || {
        !pub_sh.is_empty()
            && pub_sh
                .iter()
                .all(|s| s.done_sending.load(Ordering::Acquire))
    };
    // Publish phase: ends early only when every publisher has finished its count or failed.
    while Instant::now() < end && !all_done() {
        thread::sleep(Duration::from_millis(20).min(end.saturating_duration_since(Instant::now())));
        progress.tick();
    }
    stop_pub.store(true, Ordering::Release);
    let publish_secs = start.elapsed().as_secs_f64();
    while !pub_sh.is_empty() && !all_done() && Instant::now() < end + 2 * GRACE {
        thread::sleep(Duration::from_millis(5));
    }

    // Drain: until every group has what was sent to it, nothing arrives for a while, or the
    // drain time is up.
    let drain_start = Instant::now();
    let sent: Vec<u64> = pub_sh
        .iter()
        .map(|s| s.sent.load(Ordering::Acquire))
        .collect();
    let expected = expected_deliveries(plan, &sent);
    let received = || -> u64 {
        sub_sh
            .iter()
            .map(|s| s.received.load(Ordering::Acquire))
            .sum()
    };
    let (mut last_count, mut last_change) = (received(), Instant::now());
    let drain = Duration::from_secs(plan.run.drain);
    while !sub_sh.is_empty() && drain_start.elapsed() < drain {
        let got = received();
        if expected.is_some_and(|e| got >= e) {
            break;
        }
        if got != last_count {
            (last_count, last_change) = (got, Instant::now());
        } else if last_change.elapsed() > Duration::from_secs(plan.run.drain_idle) {
            break;
        }
        thread::sleep(Duration::from_millis(5));
        progress.tick();
    }
    let drain_secs = drain_start.elapsed().as_secs_f64();
    stop_sub.store(true, Ordering::Release);
    progress.finish();

    let mut summary = Summary::new(plan, addr.to_string());
    summary.connect_secs = connect_secs;
    summary.publish_secs = publish_secs;
    summary.drain_secs = drain_secs;
    let mut sent_by = Vec::new();
    for (i, (_, h)) in pubs.into_iter().enumerate() {
        let r = h.join().map_err(|_| format!("pub-{i} panicked"))?;
        summary.sent += r.sent;
        summary.acked += r.acked;
        sent_by.push(r.sent);
        if let Some(e) = r.error {
            summary.errors.push(format!("pub-{i}: {e}"));
        }
    }
    let mut results: Vec<SubResult> = Vec::new();
    let mut last_ns = 0;
    for (i, (sh, h)) in subs.into_iter().enumerate() {
        let r = h.join().map_err(|_| format!("sub-{i} panicked"))?;
        last_ns = last_ns.max(sh.last_ns.load(Ordering::Acquire));
        if let Some(e) = &r.error {
            summary.errors.push(format!("sub-{i}: {e}"));
        }
        results.push(r);
    }
    let start_ns = start.duration_since(epoch).as_nanos() as u64;
    summary.deliver_secs = last_ns.saturating_sub(start_ns) as f64 / 1e9;
    account(plan, &sent_by, results, &mut summary)?;
    Ok(summary)
}

/// Deliveries the subscribers owe, if every publisher is part of the run.
fn expected_deliveries(plan: &Plan, sent: &[u64]) -> Option<u64> {
    plan.groups.iter().try_fold(0u64, |acc, g| {
        let g = g.as_ref()?;
        Some(acc + g.iter().map(|&p| sent[p as usize]).sum::<u64>())
    })
}

/// Merges each group's trackers and counts loss, duplicates and strays against what was sent.
fn account(
    plan: &Plan,
    sent_by: &[u64],
    results: Vec<SubResult>,
    s: &mut Summary,
) -> Result<(), String> {
    let mut groups: Vec<Vec<SeqTracker>> = (0..plan.groups.len()).map(|_| Vec::new()).collect();
    let mut latency = new_histogram();
    for (r, sub) in results.into_iter().zip(&plan.subs) {
        s.foreign += r.foreign;
        latency
            .add(&r.latency)
            .map_err(|e| format!("histogram: {e}"))?;
        let merged = &mut groups[sub.group];
        for (p, t) in r.trackers.into_iter().enumerate() {
            if p >= merged.len() {
                merged.resize_with(p + 1, SeqTracker::default);
            }
            merged[p].merge(&t);
        }
    }
    for (g, trackers) in plan.groups.iter().zip(&groups) {
        for (p, t) in trackers.iter().enumerate() {
            s.received += t.received;
            s.distinct += t.distinct;
            s.duplicates += t.duplicates;
            s.out_of_order += t.out_of_order;
            let wanted = g.as_ref().map(|g| g.contains(&(p as u32)));
            match wanted {
                None => s.lost += t.gaps(),
                Some(true) => s.unexpected += t.distinct.saturating_sub(sent_by[p]),
                Some(false) => s.unexpected += t.distinct,
            }
        }
        if let Some(g) = g {
            for &p in g {
                let got = trackers.get(p as usize).map_or(0, |t| t.distinct);
                s.expected += sent_by[p as usize];
                s.lost += sent_by[p as usize].saturating_sub(got);
            }
        }
    }
    s.set_latency(latency);
    Ok(())
}
