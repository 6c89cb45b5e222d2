//! One shard's state: its broker, the connections' writers and read gates, the read buffer they
//! share, and the wake-ups of its background tasks. Only these methods touch it; the tasks that
//! drive it are in `tasks` (the shard's) and `connection` (each connection's).

use std::cell::{RefCell, RefMut};
use std::future::Future;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::Instant;

use bytes::BytesMut;
use futures_lite::io::WriteHalf;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::TcpStream;
use glommio::task::JoinHandle;
use glommio::{spawn_local, GlommioError};

use super::gate::ReadGates;
use super::mesh::{Envelope, Senders};
use super::shutdown::Waiters;
use super::writer::{Drained, FollowUp, Writers, LINGER};
use crate::core::{Broker, ConnId, ReadPause, ShardMsg};
use crate::transport::{Received, Transport, TransportError};

pub struct Shard {
    broker: RefCell<Broker>,
    /// How each connection's output reaches its socket.
    writers: Writers,
    /// Connections not being read until the broker lets them (see `gate`).
    gates: ReadGates,
    senders: Senders,
    /// Wakes the task that sends to each peer shard.
    peer_wakers: Vec<Option<LocalSender<()>>>,
    /// Wakes the task that sends retained messages to new subscriptions.
    retained_waker: LocalSender<()>,
    /// Wakes the task that writes the durable store's log, with `--data-dir`.
    log_waker: LocalSender<()>,
    flush_scratch: RefCell<Vec<ConnId>>,
    /// The read buffer all connections of the shard share; decoded packets are slices of it.
    read_buffer: RefCell<BytesMut>,
    /// Woken whenever a connection leaves the shard, for the wait at shutdown.
    departures: Waiters,
}

/// The receiving ends of the shard's wake-ups, for the tasks that answer them.
pub struct Wakes {
    pub retained: LocalReceiver<()>,
    pub log: LocalReceiver<()>,
    /// By peer shard.
    pub peers: Vec<(usize, LocalReceiver<()>)>,
}

impl Shard {
    pub fn new(broker: Broker, shards: usize, senders: Senders) -> (Rc<Shard>, Wakes) {
        let id = broker.shard();
        let mut peer_wakers = Vec::with_capacity(shards);
        let mut peers = Vec::new();
        for peer in 0..shards {
            if peer == id {
                peer_wakers.push(None);
            } else {
                let (tx, rx) = local_channel::new_bounded(1);
                peer_wakers.push(Some(tx));
                peers.push((peer, rx));
            }
        }
        let (retained_waker, retained) = local_channel::new_bounded(1);
        let (log_waker, log) = local_channel::new_bounded(1);
        let shard = Shard {
            broker: RefCell::new(broker),
            writers: Writers::default(),
            gates: ReadGates::default(),
            senders,
            peer_wakers,
            retained_waker,
            log_waker,
            flush_scratch: RefCell::new(Vec::new()),
            read_buffer: RefCell::new(BytesMut::new()),
            departures: Waiters::default(),
        };
        (
            Rc::new(shard),
            Wakes {
                retained,
                log,
                peers,
            },
        )
    }

    /// The broker, for one step; never hold it across an await.
    pub fn broker(&self) -> RefMut<'_, Broker> {
        self.broker.borrow_mut()
    }

    /// Writes out what connections have to send and wakes the senders of non-empty outboxes.
    /// Never blocks: call it after every change to the broker.
    pub fn flush(self: &Rc<Self>) {
        let mut ids = self.flush_scratch.borrow_mut();
        self.broker().drain_flush_queue(&mut ids);
        let now = Instant::now();
        for id in ids.drain(..) {
            let follow_up = self.writers.write_out(&mut self.broker(), id, now);
            if let Some(follow_up) = follow_up {
                self.start(id, follow_up);
            }
            self.gates.output_written(&mut self.broker(), id);
        }
        drop(ids);
        if self.broker().take_eased() {
            self.gates.open_held_gates();
        }
        let broker = self.broker.borrow();
        if broker.has_outbox() {
            for waker in self.peer_wakers.iter().flatten() {
                let _ = waker.try_send(());
            }
        }
        if broker.has_retained_work() {
            let _ = self.retained_waker.try_send(());
        }
        if broker.has_records() || broker.has_spill_io() {
            let _ = self.log_waker.try_send(());
        }
    }

    /// Starts the task a write asked for.
    fn start(self: &Rc<Self>, id: ConnId, follow_up: FollowUp) {
        let shard = self.clone();
        match follow_up {
            FollowUp::Drain(drain) => {
                let task = spawn_local(async move {
                    let written = |id| shard.gates.output_written(&mut shard.broker(), id);
                    match shard.writers.drain(&shard.broker, drain, written).await {
                        Drained::Idle => shard.flush(),
                        Drained::Linger(fd) => shard.start(id, FollowUp::Linger(fd)),
                        Drained::Failed => {}
                    }
                });
                self.writers.draining(id, task.detach());
            }
            FollowUp::Linger(fd) => {
                spawn_local(async move {
                    glommio::timer::sleep(LINGER).await;
                    shard.writers.linger_over(id, fd);
                })
                .detach();
            }
        }
    }

    /// Lends the shard's read buffer; give it back before the next await that may suspend.
    pub fn take_scratch(&self) -> BytesMut {
        std::mem::take(&mut *self.read_buffer.borrow_mut())
    }

    pub fn return_scratch(&self, buffer: BytesMut) {
        *self.read_buffer.borrow_mut() = buffer;
    }

    /// A connection's socket (and transport), for its output from now on.
    pub fn register(
        &self,
        id: ConnId,
        fd: RawFd,
        half: WriteHalf<TcpStream>,
        transport: Option<Box<Transport>>,
    ) {
        self.writers.register(id, fd, half, transport);
    }

    /// Bytes read from a connection with a transport: the MQTT bytes they carry are appended
    /// to `mqtt`, what the transport answers by itself (a handshake, a pong) is written, and
    /// the client's address or certificate identity, once known, goes to the broker.
    pub fn unwrap_transport(
        self: &Rc<Self>,
        id: ConnId,
        raw: &[u8],
        mqtt: &mut BytesMut,
    ) -> Result<Received, TransportError> {
        let outcome = self.writers.with_transport(id, |transport| {
            let had_client = transport.client().is_some();
            let received = transport.receive(raw, mqtt);
            let client = transport.client().filter(|_| !had_client);
            (
                received,
                client,
                transport.take_identity(),
                transport.has_wire(),
            )
        });
        let Some((received, client, identity, answers)) = outcome else {
            // Its writer is gone: so is the connection.
            return Ok(Received::Closed);
        };
        if let Some(client) = client {
            tracing::debug!(shard = self.broker().shard(), conn = id, %client, "PROXY header");
            self.broker().set_peer(id, client);
        }
        if let Some(identity) = identity {
            self.broker().set_identity(id, identity);
        }
        if answers {
            let follow_up = self
                .writers
                .write_out(&mut self.broker(), id, Instant::now());
            if let Some(follow_up) = follow_up {
                self.start(id, follow_up);
            }
        }
        received
    }

    /// Waits until connection `id` may be read again (see `gate`).
    pub fn wait_readable(&self, id: ConnId, pause: ReadPause) -> impl Future<Output = ()> + '_ {
        self.gates.wait(id, pause)
    }

    /// Waits while shard `peer`'s messages are held back here (see [`ReadGates::wait_mesh`]).
    pub fn wait_mesh(
        &self,
        peer: usize,
        recheck: std::time::Duration,
    ) -> impl Future<Output = ()> + '_ {
        self.gates.wait_mesh(peer, recheck)
    }

    /// The running drain task of `id`, to await before the connection's state goes.
    pub fn take_drain(&self, id: ConnId) -> Option<JoinHandle<()>> {
        self.writers.take_drain(id)
    }

    /// The connection goes to another shard (the broker has forgotten it already), with its
    /// transport, if it has one.
    pub fn handed_off(&self, id: ConnId) -> Option<Box<Transport>> {
        let transport = self.writers.unregister(id);
        self.departures.wake_all();
        transport
    }

    /// The connection's socket is gone.
    pub fn closed(self: &Rc<Self>, id: ConnId) {
        self.gates.release(id);
        self.writers.unregister(id);
        self.broker().closed(id, Instant::now());
        self.flush();
        self.departures.wake_all();
    }

    /// Returns once the broker has no connection left.
    pub async fn all_closed(&self) {
        let empty = || self.broker.borrow().connection_count() == 0;
        self.departures.until(empty).await
    }

    /// Sends to shard `peer`, waiting for room; fails only once the peer is gone.
    pub async fn send_to(
        &self,
        peer: usize,
        envelope: Envelope,
    ) -> Result<(), GlommioError<Envelope>> {
        self.senders.send_to(peer, envelope).await
    }

    /// The next batch for shard `peer`, empty when there is none; taking it may let publishers
    /// paused for the outboxes go on.
    pub fn take_outbox(&self, peer: usize, max: usize) -> Vec<ShardMsg> {
        let batch = self.broker().take_outbox(peer, max);
        if !batch.is_empty() {
            self.gates.open_outbox_gates(&self.broker.borrow());
        }
        batch
    }
}
