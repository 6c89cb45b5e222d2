//! How much room the durable store has, shared by every shard: each shard posts its log's
//! length after every write, and whether its last write failed (a full disk, an I/O error).
//! While the store is full, new QoS 1/2 publishes are refused (`Broker::on_publish`) rather
//! than acknowledged without being on disk.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[derive(Debug)]
pub struct StoreSpace {
    /// `--max-data-bytes`: the logs of all shards together (`None`: no bound but the disk's).
    max: Option<u64>,
    used: Vec<AtomicU64>,
    /// Each shard's spill files (`core::spill`).
    spilled: Vec<AtomicU64>,
    failing: Vec<AtomicBool>,
}

impl StoreSpace {
    pub fn new(shards: usize, max: Option<u64>) -> StoreSpace {
        StoreSpace {
            max,
            used: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            spilled: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            failing: (0..shards).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    /// Shard `shard`'s log is now `bytes` long.
    pub fn set_used(&self, shard: usize, bytes: u64) {
        self.used[shard].store(bytes, Ordering::Relaxed);
    }

    /// Shard `shard`'s spill files now hold `bytes`.
    pub fn set_spilled(&self, shard: usize, bytes: u64) {
        self.spilled[shard].store(bytes, Ordering::Relaxed);
    }

    /// Shard `shard`'s log cannot be written (`true`), or can again.
    pub fn set_failing(&self, shard: usize, failing: bool) {
        self.failing[shard].store(failing, Ordering::Relaxed);
    }

    /// The logs and spill files of every shard.
    pub fn used(&self) -> u64 {
        self.used
            .iter()
            .chain(&self.spilled)
            .map(|u| u.load(Ordering::Relaxed))
            .sum()
    }

    /// How far a log may be filled with zeros ahead of its records (they count as used): at
    /// most `ahead`, and with `--max-data-bytes` at most a quarter of it over all shards.
    pub fn fill_ahead(&self, ahead: u64) -> u64 {
        let shards = self.used.len().max(1) as u64;
        self.max.map_or(ahead, |max| ahead.min(max / 4 / shards))
    }

    /// The logs together have reached `--max-data-bytes`.
    pub fn over_limit(&self) -> bool {
        self.max.is_some_and(|max| self.used() >= max)
    }

    /// No new QoS 1/2 message should be taken: over the limit, or a log cannot be written.
    pub fn full(&self) -> bool {
        self.failing.iter().any(|f| f.load(Ordering::Relaxed)) || self.over_limit()
    }
}

impl Default for StoreSpace {
    /// Unbounded, for a broker without persistence.
    fn default() -> StoreSpace {
        StoreSpace::new(0, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_at_the_limit_of_all_logs_together_or_when_a_log_fails() {
        let space = StoreSpace::new(2, Some(100));
        space.set_used(0, 60);
        assert!(!space.full());
        space.set_used(1, 40);
        assert!(space.over_limit() && space.full());
        space.set_used(0, 10);
        assert!(!space.full());
        space.set_failing(1, true);
        assert!(space.full() && !space.over_limit());
        space.set_failing(1, false);
        assert!(!space.full());
        space.set_spilled(1, 60);
        assert!(space.full(), "spill files count too");
    }

    #[test]
    fn zeros_ahead_take_at_most_a_quarter_of_the_bound() {
        assert_eq!(StoreSpace::new(2, None).fill_ahead(1 << 20), 1 << 20);
        assert_eq!(
            StoreSpace::new(2, Some(800_000)).fill_ahead(1 << 20),
            100_000
        );
        assert_eq!(
            StoreSpace::new(1, Some(1 << 40)).fill_ahead(1 << 20),
            1 << 20
        );
    }

    #[test]
    fn without_a_limit_only_a_failing_log_fills_it() {
        let space = StoreSpace::new(1, None);
        space.set_used(0, u64::MAX / 2);
        assert!(!space.full());
        space.set_failing(0, true);
        assert!(space.full());
    }
}
