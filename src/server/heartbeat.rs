//! A clock outside the shards. On this kernel a parked glommio executor is not woken by its own
//! timers (they live on a ring it reaches only through a linked poll), only by socket and
//! eventfd activity. So a plain thread writes a byte into a socket pair per shard every
//! [`PERIOD`]: each shard's tick task reads it, which wakes the executor, runs its due timers
//! and the broker's deadlines. A stop request travels the same way: a flag, then a tick.

use std::io::Write;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_lite::io::AsyncReadExt;

pub const PERIOD: Duration = Duration::from_millis(100);
const TICK: u8 = b't';

/// The clock: the thread's ends of the socket pairs, the shards' ends (each taken once by its
/// shard) and the stop request every shard sees on its next tick.
pub struct Clock {
    clock_ends: Mutex<Vec<UnixStream>>,
    shard_ends: Mutex<Vec<Option<UnixStream>>>,
    /// Set before the stop byte goes out: a byte lost to a full socket still stops the shard on
    /// the tick that socket already holds.
    stop: AtomicBool,
}

/// Starts the clock thread.
pub fn start(shards: usize) -> std::io::Result<Arc<Clock>> {
    let mut shard_ends = Vec::with_capacity(shards);
    let mut clock_ends = Vec::with_capacity(shards);
    for _ in 0..shards {
        let (shard_end, clock_end) = UnixStream::pair()?;
        shard_end.set_nonblocking(true)?;
        clock_end.set_nonblocking(true)?;
        shard_ends.push(Some(shard_end));
        clock_ends.push(clock_end);
    }
    let clock = Arc::new(Clock {
        clock_ends: Mutex::new(clock_ends),
        shard_ends: Mutex::new(shard_ends),
        stop: AtomicBool::new(false),
    });
    let thread_clock = clock.clone();
    std::thread::Builder::new()
        .name("ringmq-clock".into())
        .spawn(move || loop {
            std::thread::sleep(PERIOD);
            thread_clock.send(TICK);
        })?;
    Ok(clock)
}

impl Clock {
    /// Asks every shard to stop, at once.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Release);
        // An extra tick wakes the shards now rather than at the next period.
        self.send(TICK);
    }

    /// Writes `byte` to every shard; a full socket already holds a pending wake-up.
    fn send(&self, byte: u8) {
        if let Ok(mut ends) = self.clock_ends.lock() {
            for end in ends.iter_mut() {
                let _ = end.write(&[byte]);
            }
        }
    }

    /// The ticks of `shard`, once.
    pub fn take_ticks(self: &Arc<Self>, shard: usize) -> Option<Ticks> {
        let std_end = self.shard_ends.lock().ok()?.get_mut(shard)?.take()?;
        // SAFETY: the fd moves from the std stream to the glommio one.
        let end = unsafe { glommio::net::UnixStream::from_raw_fd(std_end.into_raw_fd()) };
        Some(Ticks {
            end,
            clock: self.clone(),
        })
    }
}

/// One shard's end of the clock.
pub struct Ticks {
    end: glommio::net::UnixStream,
    clock: Arc<Clock>,
}

/// What a tick says besides "time has passed".
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    Run,
    Stop,
}

impl Ticks {
    /// Waits for the next tick (one however many bytes arrived); `None` once the clock is gone.
    pub async fn next(&mut self) -> Option<Tick> {
        let mut bytes = [0u8; 64];
        match self.end.read(&mut bytes).await {
            Ok(1..) if self.clock.stop.load(Ordering::Acquire) => Some(Tick::Stop),
            Ok(1..) => Some(Tick::Run),
            _ => None,
        }
    }
}
