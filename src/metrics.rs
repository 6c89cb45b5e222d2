//! Counters of one shard. Drops are counted here and logged at most once a second, so a flood
//! of drops neither goes unnoticed nor floods the log.

use std::time::{Duration, Instant};

#[derive(Debug, Default, Clone)]
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
    pub protocol_errors: u64,
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
    fn drop_log_reports_at_most_once_a_second_and_loses_no_count() {
        let mut log = DropLog::default();
        let t0 = Instant::now();
        assert_eq!(log.record(1, t0), Some(1));
        assert_eq!(log.record(5, t0 + Duration::from_millis(10)), None);
        assert_eq!(log.record(2, t0 + Duration::from_millis(500)), None);
        assert_eq!(log.record(1, t0 + Duration::from_millis(1001)), Some(8));
    }
}
