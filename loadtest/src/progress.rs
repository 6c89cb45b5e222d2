//! The live progress line on stderr, once a second: totals and rates of the last second.

use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::publisher::PubShared;
use crate::subscriber::SubShared;

pub struct Progress {
    quiet: bool,
    tty: bool,
    start: Instant,
    next: Instant,
    pubs: Vec<Arc<PubShared>>,
    subs: Vec<Arc<SubShared>>,
    last: (u64, u64),
    printed: bool,
}

impl Progress {
    pub fn new(
        quiet: bool,
        start: Instant,
        pubs: Vec<Arc<PubShared>>,
        subs: Vec<Arc<SubShared>>,
    ) -> Progress {
        Progress {
            quiet,
            tty: std::io::stderr().is_terminal(),
            start,
            next: start + Duration::from_secs(1),
            pubs,
            subs,
            last: (0, 0),
            printed: false,
        }
    }

    /// Prints a line if a second has passed since the last one.
    pub fn tick(&mut self) {
        if self.quiet || Instant::now() < self.next {
            return;
        }
        self.next += Duration::from_secs(1);
        let sent: u64 = self
            .pubs
            .iter()
            .map(|p| p.sent.load(Ordering::Relaxed))
            .sum();
        let recv: u64 = self
            .subs
            .iter()
            .map(|s| s.received.load(Ordering::Relaxed))
            .sum();
        let line = format!(
            "[{:6.1}s] sent {:>12} ({:>9}/s)  received {:>12} ({:>9}/s)",
            self.start.elapsed().as_secs_f64(),
            sent,
            si(sent - self.last.0),
            recv,
            si(recv.saturating_sub(self.last.1)),
        );
        self.last = (sent, recv);
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r{line}\x1b[K");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
        self.printed = true;
    }

    pub fn finish(&mut self) {
        if self.printed && self.tty {
            eprintln!();
        }
    }
}

/// 1234567 -> "1.23M".
pub fn si(n: u64) -> String {
    match n {
        0..=9_999 => n.to_string(),
        10_000..=9_999_999 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.2}M", n as f64 / 1e6),
    }
}
