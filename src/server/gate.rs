//! Connections the shard does not read for now, and what opens them again.
//!
//! The broker says when a connection should not be read ([`Broker::read_pause`]): its output
//! is piling up, or what it publishes waits for a slow shard. The read task then waits here
//! until the writer reports its output written, or the outboxes drain. A connection paused
//! for a slow shard is still read now and then (the broker says how often): it is the other
//! shard that is slow, and the client must still get its PINGRESPs within its keep alive.
//!
//! [`Broker::read_pause`]: crate::core::Broker::read_pause

use std::cell::RefCell;

use ahash::AHashMap;
use glommio::channels::local_channel::{self, LocalSender};

use crate::core::{Broker, ConnId, ReadPause};

#[derive(Default)]
pub struct ReadGates {
    output: RefCell<AHashMap<ConnId, LocalSender<()>>>,
    outbox: RefCell<AHashMap<ConnId, LocalSender<()>>>,
}

impl ReadGates {
    /// Waits until connection `id` may be read again (or, paused for a slow shard, until its
    /// next trickle read).
    pub async fn wait(&self, id: ConnId, pause: ReadPause) {
        let (open, opened) = local_channel::new_bounded(1);
        match pause {
            ReadPause::Output => {
                self.output.borrow_mut().insert(id, open);
                let _ = opened.recv().await;
            }
            ReadPause::Outbox { trickle } => {
                self.outbox.borrow_mut().insert(id, open);
                futures_lite::future::or(
                    async {
                        let _ = opened.recv().await;
                    },
                    glommio::timer::sleep(trickle),
                )
                .await;
            }
        }
    }

    /// Some of `id`'s output was written: lets its reader go on if the broker agrees.
    pub fn output_written(&self, broker: &mut Broker, id: ConnId) {
        if !self.output.borrow().contains_key(&id) {
            return;
        }
        if broker.read_pause(id) != Some(ReadPause::Output) {
            if let Some(open) = self.output.borrow_mut().remove(&id) {
                let _ = open.try_send(());
            }
        }
    }

    /// The connection is going: its reader must not wait any longer.
    pub fn release(&self, id: ConnId) {
        if let Some(open) = self.output.borrow_mut().remove(&id) {
            let _ = open.try_send(());
        }
        if let Some(open) = self.outbox.borrow_mut().remove(&id) {
            let _ = open.try_send(());
        }
    }

    /// Messages left for other shards: lets paused publishers go on once they have drained.
    pub fn open_outbox_gates(&self, broker: &Broker) {
        if self.outbox.borrow().is_empty() || !broker.outbox_drained() {
            return;
        }
        for (_, open) in self.outbox.borrow_mut().drain() {
            let _ = open.try_send(());
        }
    }
}
