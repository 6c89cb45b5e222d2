//! Waiting on a shard for something other tasks of the shard change: the shard's stop, its
//! last connection closing. Single-threaded, so a `Cell` and a list of wakers do.

use std::cell::{Cell, RefCell};
use std::task::{Poll, Waker};

/// Tasks waiting for a condition on this shard; whoever may have made it true wakes them all.
#[derive(Default)]
pub struct Waiters(RefCell<Vec<Waker>>);

impl Waiters {
    /// Returns once `done()` holds, checking again each time the waiters are woken.
    pub async fn until(&self, mut done: impl FnMut() -> bool) {
        std::future::poll_fn(|cx| {
            if done() {
                return Poll::Ready(());
            }
            let mut wakers = self.0.borrow_mut();
            if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                wakers.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }

    pub fn wake_all(&self) {
        for waker in self.0.take() {
            waker.wake();
        }
    }
}

/// The shard's one stop signal: tripped once, by the clock task when the stop request arrives;
/// the accept loop and the end of the shard await it.
#[derive(Default)]
pub struct Shutdown {
    tripped: Cell<bool>,
    waiters: Waiters,
}

impl Shutdown {
    pub fn trip(&self) {
        if !self.tripped.replace(true) {
            self.waiters.wake_all();
        }
    }

    pub fn is_tripped(&self) -> bool {
        self.tripped.get()
    }

    pub async fn tripped(&self) {
        self.waiters.until(|| self.tripped.get()).await
    }
}
