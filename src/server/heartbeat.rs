//! A clock outside the shards. On this kernel a parked glommio executor is not woken by its own
//! timers (they live on a ring it reaches only through a linked poll), only by socket and
//! eventfd activity. So a plain thread writes a byte into a socket pair per shard every
//! [`PERIOD`]: each shard's tick task reads it, which wakes the executor, runs its due timers
//! and the broker's deadlines. A stop request travels the same way.

use std::io::Write;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const PERIOD: Duration = Duration::from_millis(100);
pub const TICK: u8 = b't';
pub const STOP: u8 = b's';

/// The shards' ends of the socket pairs, taken once by each shard.
pub type ShardEnds = Arc<Mutex<Vec<Option<UnixStream>>>>;

/// The clock thread's ends, through which `send` reaches every shard.
pub type ClockControl = Arc<Mutex<Vec<UnixStream>>>;

/// Starts the clock thread; returns each shard's end and a handle to ask for a stop.
pub fn start(shards: usize) -> std::io::Result<(ShardEnds, ClockControl)> {
    let mut shard_ends = Vec::with_capacity(shards);
    let mut clock_ends = Vec::with_capacity(shards);
    for _ in 0..shards {
        let (shard_end, clock_end) = UnixStream::pair()?;
        shard_end.set_nonblocking(true)?;
        clock_end.set_nonblocking(true)?;
        shard_ends.push(Some(shard_end));
        clock_ends.push(clock_end);
    }
    let clock_ends = Arc::new(Mutex::new(clock_ends));
    let ends = clock_ends.clone();
    std::thread::Builder::new()
        .name("ringmq-clock".into())
        .spawn(move || loop {
            std::thread::sleep(PERIOD);
            send(&ends, TICK);
        })?;
    Ok((Arc::new(Mutex::new(shard_ends)), clock_ends))
}

/// Writes `byte` to every shard; a full socket already holds a pending wake-up.
pub fn send(ends: &Mutex<Vec<UnixStream>>, byte: u8) {
    if let Ok(mut ends) = ends.lock() {
        for end in ends.iter_mut() {
            let _ = end.write(&[byte]);
        }
    }
}

/// The shard's end as a glommio stream.
pub fn take_end(ends: &ShardEnds, shard: usize) -> Option<glommio::net::UnixStream> {
    let std_end = ends.lock().ok()?.get_mut(shard)?.take()?;
    // SAFETY: the fd moves from the std stream to the glommio one.
    Some(unsafe { glommio::net::UnixStream::from_raw_fd(std_end.into_raw_fd()) })
}
