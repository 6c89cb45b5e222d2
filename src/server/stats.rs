//! Broker figures: every shard posts its own on each clock tick; shard 0 adds them up and
//! publishes the `$SYS` topics every `--sys-interval`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::core::sys_topics::sys_messages;
use crate::core::Broker;
use crate::metrics::StatsBoard;

/// The shard that publishes the `$SYS` topics (they are retained, so every shard has them).
const PUBLISHING_SHARD: usize = 0;

pub struct StatsReporter {
    board: Arc<StatsBoard>,
    interval: Option<Duration>,
    started: Instant,
    next_publish: Instant,
}

impl StatsReporter {
    pub fn new(board: Arc<StatsBoard>, interval: Option<Duration>, now: Instant) -> StatsReporter {
        StatsReporter {
            board,
            interval,
            started: now,
            next_publish: now,
        }
    }

    pub fn on_tick(&mut self, broker: &mut Broker, now: Instant) {
        self.board.post(broker.shard(), broker.stats());
        let Some(interval) = self.interval else {
            return;
        };
        if broker.shard() != PUBLISHING_SHARD || now < self.next_publish {
            return;
        }
        self.next_publish = now + interval;
        let mut totals = self.board.totals();
        totals.log_lines_dropped = crate::logging::dropped_lines();
        for (topic, payload) in sys_messages(&totals, now.duration_since(self.started)) {
            broker.publish_system(topic, payload.as_bytes());
        }
    }
}
