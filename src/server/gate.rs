//! Connections the shard does not read for now, and what opens them again.
//!
//! The broker says when a connection should not be read ([`Broker::read_pause`]): its output
//! is piling up, what it publishes waits for a slow shard, or a subscriber of its QoS 1/2
//! messages is behind. The read task then waits here until the writer reports its output
//! written, the outboxes drain, or the broker reports backlogs eased. A connection paused
//! for a slow shard is still read now and then (the broker says how often): it is the other
//! shard that is slow, and the client must still get its PINGRESPs within its keep alive. A
//! mesh receiver held for a subscriber waits here too.
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
    /// Connections and peer shards held for a subscriber that is behind.
    held: RefCell<AHashMap<Held, LocalSender<()>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Held {
    Conn(ConnId),
    Peer(usize),
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
            ReadPause::Subscriber { recheck } => {
                self.wait_held(Held::Conn(id), recheck).await;
            }
        }
    }

    /// Waits while the broker holds back shard `peer`'s messages, until backlogs ease or
    /// `recheck` has passed.
    pub async fn wait_mesh(&self, peer: usize, recheck: std::time::Duration) {
        self.wait_held(Held::Peer(peer), recheck).await;
    }

    async fn wait_held(&self, held: Held, recheck: std::time::Duration) {
        let (open, opened) = local_channel::new_bounded(1);
        self.held.borrow_mut().insert(held, open);
        futures_lite::future::or(
            async {
                let _ = opened.recv().await;
            },
            glommio::timer::sleep(recheck),
        )
        .await;
        self.held.borrow_mut().remove(&held);
    }

    /// A backlog that held publishers eased: every held reader looks again.
    pub fn open_held_gates(&self) {
        for (_, open) in self.held.borrow_mut().drain() {
            let _ = open.try_send(());
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
        if let Some(open) = self.held.borrow_mut().remove(&Held::Conn(id)) {
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
