//! Counters of one shard, and the board where every shard posts its figures for the broker-wide
//! `$SYS` topics. Drops are counted here and logged at most once a second, so a flood of drops
//! neither goes unnoticed nor floods the log.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Application messages and their payload bytes, by QoS (index 0, 1, 2).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Traffic {
    pub messages: [u64; 3],
    pub payload_bytes: [u64; 3],
}

impl Traffic {
    pub fn note(&mut self, qos: crate::protocol::QoS, payload: usize) {
        let q = qos as usize;
        self.messages[q] += 1;
        self.payload_bytes[q] += payload as u64;
    }

    pub fn add(&mut self, other: &Traffic) {
        for q in 0..3 {
            self.messages[q] += other.messages[q];
            self.payload_bytes[q] += other.payload_bytes[q];
        }
    }
}

/// What the figures need of a message about to be sent, taken before the send moves it.
#[derive(Debug, Clone, Copy)]
pub struct SendNote {
    qos: crate::protocol::QoS,
    payload: usize,
    published_at: Instant,
}

impl SendNote {
    pub fn new(qos: crate::protocol::QoS, payload: usize, published_at: Instant) -> SendNote {
        SendNote {
            qos,
            payload,
            published_at,
        }
    }

    /// It was sent (first send) at `now`: counted, with how long it waited in the broker.
    pub fn sent(self, traffic: &mut Traffic, latency: &mut LatencyHistogram, now: Instant) {
        traffic.note(self.qos, self.payload);
        latency.record(now.saturating_duration_since(self.published_at));
    }
}

/// Time from the broker taking a message to writing it to a subscriber, in buckets of powers
/// of two microseconds (1 µs to about 8 s, then the rest): one bucket index a delivery, no
/// search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// `counts[k]`: deliveries that took at most 2^k µs (and more than 2^(k-1)); the last
    /// one, everything longer.
    pub counts: [u64; LATENCY_BUCKETS + 1],
    pub sum_micros: u64,
}

/// Buckets with an upper bound (2^0 .. 2^23 µs).
pub const LATENCY_BUCKETS: usize = 24;

impl Default for LatencyHistogram {
    fn default() -> LatencyHistogram {
        LatencyHistogram {
            counts: [0; LATENCY_BUCKETS + 1],
            sum_micros: 0,
        }
    }
}

impl LatencyHistogram {
    pub fn record(&mut self, took: Duration) {
        let micros = took.as_micros().min(u64::MAX as u128) as u64;
        let k = (64 - micros.saturating_sub(1).leading_zeros()) as usize;
        self.counts[k.min(LATENCY_BUCKETS)] += 1;
        self.sum_micros = self.sum_micros.saturating_add(micros);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The upper bound of bucket `k`, in seconds (`None`: the last, unbounded one).
    pub fn upper_bound_secs(k: usize) -> Option<f64> {
        (k < LATENCY_BUCKETS).then(|| (1u64 << k) as f64 / 1e6)
    }

    pub fn add(&mut self, other: &LatencyHistogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
        self.sum_micros = self.sum_micros.saturating_add(other.sum_micros);
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counters {
    pub connections_opened: u64,
    pub connections_closed: u64,
    pub publishes_received: u64,
    pub messages_sent: u64,
    pub dropped_queue_full: u64,
    pub dropped_offline_qos0: u64,
    pub dropped_too_large: u64,
    pub dropped_expired: u64,
    /// Shared-subscription messages that reached a shard whose members had all left.
    pub dropped_no_member: u64,
    /// Messages an ACL did not allow: PUBLISHes refused, deliveries a subscriber may not read.
    pub dropped_not_authorized: u64,
    /// Messages still queued or unacknowledged when their session expired.
    pub dropped_session_expired: u64,
    /// Messages that reached a shard after the subscribers they were routed to had left.
    pub dropped_subscriber_gone: u64,
    /// Retained messages delivered but not retained: the retained store was full.
    pub retained_refused: u64,
    /// Connections closed because their output made no progress for the write timeout.
    pub write_timeouts: u64,
    /// Times a publisher stopped being read because messages for another shard piled up.
    pub publishers_paused: u64,
    /// Times a publisher (or a peer shard's mesh) stopped being read because a connected
    /// subscriber of its QoS 1/2 messages was behind.
    pub publishers_held: u64,
    pub protocol_errors: u64,
    /// The durable store: records and bytes appended to the logs, and syncs (fdatasync).
    pub store_records: u64,
    pub store_bytes: u64,
    pub store_syncs: u64,
    /// Logs rewritten as snapshots of the live state.
    pub store_compactions: u64,
    /// QoS 1/2 publishes refused because the durable store was full.
    pub refused_store_full: u64,
    /// Writes to the durable store that failed (and were tried again).
    pub store_write_errors: u64,
    /// Queued messages put in the spill files (each time a session spilled one).
    pub spilled_messages: u64,
    /// Spilled messages that could not be read back (dropped).
    pub dropped_spill_unreadable: u64,
    /// PUBLISHes taken from clients, by QoS.
    pub received: Traffic,
    /// Messages written to subscribers, by QoS (resends with DUP not counted).
    pub sent: Traffic,
    /// Time from taking a message to writing it to a subscriber.
    pub delivery_latency: LatencyHistogram,
}

impl Counters {
    pub fn dropped(&self) -> u64 {
        self.dropped_queue_full
            + self.dropped_offline_qos0
            + self.dropped_too_large
            + self.dropped_expired
            + self.dropped_no_member
            + self.dropped_not_authorized
            + self.dropped_session_expired
            + self.dropped_subscriber_gone
            + self.dropped_spill_unreadable
    }

    fn add(&mut self, other: &Counters) {
        self.connections_opened += other.connections_opened;
        self.connections_closed += other.connections_closed;
        self.publishes_received += other.publishes_received;
        self.messages_sent += other.messages_sent;
        self.dropped_queue_full += other.dropped_queue_full;
        self.dropped_offline_qos0 += other.dropped_offline_qos0;
        self.dropped_too_large += other.dropped_too_large;
        self.dropped_expired += other.dropped_expired;
        self.dropped_no_member += other.dropped_no_member;
        self.dropped_not_authorized += other.dropped_not_authorized;
        self.dropped_session_expired += other.dropped_session_expired;
        self.dropped_subscriber_gone += other.dropped_subscriber_gone;
        self.retained_refused += other.retained_refused;
        self.write_timeouts += other.write_timeouts;
        self.publishers_paused += other.publishers_paused;
        self.publishers_held += other.publishers_held;
        self.protocol_errors += other.protocol_errors;
        self.store_records += other.store_records;
        self.store_bytes += other.store_bytes;
        self.store_syncs += other.store_syncs;
        self.store_compactions += other.store_compactions;
        self.refused_store_full += other.refused_store_full;
        self.store_write_errors += other.store_write_errors;
        self.spilled_messages += other.spilled_messages;
        self.dropped_spill_unreadable += other.dropped_spill_unreadable;
        self.received.add(&other.received);
        self.sent.add(&other.sent);
        self.delivery_latency.add(&other.delivery_latency);
    }
}

/// One shard's figures at a moment, or (from [`StatsBoard::totals`]) the whole broker's.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ShardStats {
    pub counters: Counters,
    pub clients_connected: u64,
    /// Sessions, connected or not.
    pub sessions: u64,
    /// Retained messages. Every shard holds all of them, so totals take the largest count.
    pub retained: u64,
    /// Queued messages in the spill files now (each once).
    pub spilled: u64,
    /// Distinct subscription filters (a shard's trie entries).
    pub subscription_filters: u64,
    /// Log lines dropped because their destination did not take them (the whole process's;
    /// set by the shell before publishing).
    pub log_lines_dropped: u64,
}

/// Where each shard posts its latest figures (on its clock tick) and one shard reads them all.
/// A mutex per shard: written ten times a second, read every few seconds, never contended.
#[derive(Debug)]
pub struct StatsBoard {
    shards: Vec<Mutex<ShardStats>>,
}

impl StatsBoard {
    pub fn new(shards: usize) -> StatsBoard {
        StatsBoard {
            shards: (0..shards).map(|_| Mutex::default()).collect(),
        }
    }

    pub fn post(&self, shard: usize, stats: ShardStats) {
        *self.shards[shard].lock().unwrap_or_else(|e| e.into_inner()) = stats;
    }

    /// Each shard's latest figures.
    pub fn shards(&self) -> Vec<ShardStats> {
        self.shards
            .iter()
            .map(|slot| slot.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .collect()
    }

    /// The broker's figures: shard figures added up, retained messages counted once.
    pub fn totals(&self) -> ShardStats {
        let mut total = ShardStats::default();
        for slot in &self.shards {
            let shard = slot.lock().unwrap_or_else(|e| e.into_inner());
            total.counters.add(&shard.counters);
            total.clients_connected += shard.clients_connected;
            total.sessions += shard.sessions;
            total.retained = total.retained.max(shard.retained);
            total.spilled += shard.spilled;
            total.subscription_filters += shard.subscription_filters;
        }
        total
    }
}

/// Rate-limits the log line about dropped messages.
#[derive(Debug, Default)]
pub struct DropLog {
    last: Option<Instant>,
    unlogged: u64,
}

impl DropLog {
    const INTERVAL: Duration = Duration::from_secs(1);

    /// Records `n` drops; returns how many to report now if a line is due.
    pub fn record(&mut self, n: u64, now: Instant) -> Option<u64> {
        self.unlogged += n;
        let due = self
            .last
            .is_none_or(|last| now.duration_since(last) >= Self::INTERVAL);
        if due && self.unlogged > 0 {
            self.last = Some(now);
            Some(std::mem::take(&mut self.unlogged))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_are_powers_of_two_microseconds() {
        let mut h = LatencyHistogram::default();
        h.record(Duration::from_micros(0));
        h.record(Duration::from_micros(1));
        h.record(Duration::from_micros(3));
        h.record(Duration::from_secs(3600));
        h.record(Duration::from_micros(4));
        assert_eq!(h.counts[0], 2, "0 and 1 µs: at most 1");
        assert_eq!(h.counts[1], 0);
        assert_eq!(h.counts[2], 2, "3 and 4 µs: at most 4");
        assert_eq!(h.counts[LATENCY_BUCKETS], 1, "an hour: the last");
        assert_eq!(h.count(), 5);
        assert_eq!(LatencyHistogram::upper_bound_secs(3), Some(8e-6));
        assert_eq!(LatencyHistogram::upper_bound_secs(LATENCY_BUCKETS), None);
    }

    #[test]
    fn totals_add_shards_up_and_count_replicated_retained_once() {
        let board = StatsBoard::new(2);
        let mut a = ShardStats {
            clients_connected: 3,
            sessions: 5,
            retained: 7,
            ..Default::default()
        };
        a.counters.publishes_received = 10;
        a.counters.dropped_expired = 1;
        let mut b = a.clone();
        b.clients_connected = 1;
        b.counters.dropped_queue_full = 2;
        board.post(0, a);
        board.post(1, b);
        let t = board.totals();
        assert_eq!((t.clients_connected, t.sessions, t.retained), (4, 10, 7));
        assert_eq!(t.counters.publishes_received, 20);
        assert_eq!(t.counters.dropped(), 4);
    }

    #[test]
    fn drop_log_reports_at_most_once_a_second_and_loses_no_count() {
        let mut log = DropLog::default();
        let t0 = Instant::now();
        assert_eq!(log.record(1, t0), Some(1));
        assert_eq!(log.record(5, t0 + Duration::from_millis(10)), None);
        assert_eq!(log.record(2, t0 + Duration::from_millis(500)), None);
        assert_eq!(log.record(1, t0 + Duration::from_millis(1001)), Some(8));
    }
}
