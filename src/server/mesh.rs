//! The full mesh between shards: what travels (batches of core messages, and connections
//! handed to the shard that is home to their client id) and the channels it travels on.
//!
//! Built on glommio's shared channels rather than its `channel_mesh::MeshBuilder`: that
//! builder is shared by cloning a non-atomic `Rc` on every shard thread at once, which
//! corrupts the heap (one start in ten with two shards, seen under AddressSanitizer as a
//! use-after-free in `MeshBuilder::join`). Here every channel is made on the main thread
//! and each end is moved, never cloned, to the one shard that uses it.

use std::os::fd::RawFd;
use std::sync::Mutex;

use glommio::channels::shared_channel::{
    self, ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
};
use glommio::GlommioError;

use crate::core::ShardMsg;

pub enum Envelope {
    Batch(Vec<ShardMsg>),
    /// A socket (a dup of the accepting shard's fd) and the bytes already read from it,
    /// CONNECT included.
    Handoff {
        fd: RawFd,
        buffered: Vec<u8>,
        /// TLS and WebSocket state, mid-stream.
        transport: Option<Box<crate::transport::Transport>>,
    },
}

/// One shard's ends of the mesh, before its executor connects them.
pub struct MeshEnds {
    id: usize,
    /// To each peer (none to itself).
    senders: Vec<Option<SharedSender<Envelope>>>,
    /// From each peer (none from itself).
    receivers: Vec<Option<SharedReceiver<Envelope>>>,
}

/// The ends of every shard, each taken once by whichever shard comes for it.
pub struct Mesh(Mutex<Vec<MeshEnds>>);

impl Mesh {
    /// A channel of `capacity` envelopes each way between every two of `shards` shards.
    pub fn full(shards: usize, capacity: usize) -> Mesh {
        let mut ends: Vec<MeshEnds> = (0..shards)
            .map(|id| MeshEnds {
                id,
                senders: (0..shards).map(|_| None).collect(),
                receivers: (0..shards).map(|_| None).collect(),
            })
            .collect();
        for from in 0..shards {
            for to in (0..shards).filter(|&to| to != from) {
                let (tx, rx) = shared_channel::new_bounded(capacity);
                ends[from].senders[to] = Some(tx);
                ends[to].receivers[from] = Some(rx);
            }
        }
        ends.reverse();
        Mesh(Mutex::new(ends))
    }

    /// The ends of a shard not yet taken; the shard's id is theirs.
    pub fn take(&self) -> Option<MeshEnds> {
        self.0.lock().ok()?.pop()
    }
}

impl MeshEnds {
    pub fn id(&self) -> usize {
        self.id
    }

    pub fn shards(&self) -> usize {
        self.senders.len()
    }

    /// Binds the ends to the calling shard's executor. Each end waits for its peer to bind
    /// the other, so they bind concurrently (one by one, two shards would wait on each other).
    pub async fn connect(self) -> (Senders, Vec<(usize, ConnectedReceiver<Envelope>)>) {
        let senders: Vec<_> = self
            .senders
            .into_iter()
            .map(|s| s.map(|s| glommio::spawn_local(s.connect()).detach()))
            .collect();
        let receivers: Vec<_> = self
            .receivers
            .into_iter()
            .enumerate()
            .filter_map(|(peer, r)| Some((peer, glommio::spawn_local(r?.connect()).detach())))
            .collect();
        let mut connected_senders = Vec::with_capacity(senders.len());
        for sender in senders {
            connected_senders.push(match sender {
                Some(task) => task.await,
                None => None,
            });
        }
        let mut connected_receivers = Vec::with_capacity(receivers.len());
        for (peer, task) in receivers {
            if let Some(receiver) = task.await {
                connected_receivers.push((peer, receiver));
            }
        }
        (Senders(connected_senders), connected_receivers)
    }
}

/// A shard's connected senders, by peer.
pub struct Senders(Vec<Option<ConnectedSender<Envelope>>>);

impl Senders {
    /// Sends to `peer`, waiting for room; fails only once the peer is gone.
    pub async fn send_to(
        &self,
        peer: usize,
        envelope: Envelope,
    ) -> Result<(), GlommioError<Envelope>> {
        match self.0.get(peer) {
            Some(Some(sender)) => sender.send(envelope).await,
            _ => Err(GlommioError::IoError(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("no channel to shard {peer}"),
            ))),
        }
    }
}
