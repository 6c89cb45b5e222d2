//! One shard's state: its broker, the connections' writers and read gates, the read buffer they
//! share, and the wake-ups of its background tasks. Only these methods touch it; the tasks that
//! drive it are started by [`run`] (the shard's) and in `connection` (each connection's).

use std::cell::{RefCell, RefMut};
use std::future::Future;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_lite::io::WriteHalf;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::TcpStream;
use glommio::task::JoinHandle;
use glommio::{spawn_local, timer, GlommioError};

use super::connection;
use super::gate::ReadGates;
use super::heartbeat::{Clock, Tick};
use super::mesh::{Envelope, Mesh, Senders};
use super::shutdown::Shutdown;
use super::stats::StatsReporter;
use super::writer::{Drained, FollowUp, Writers, LINGER};
use crate::config::Config;
use crate::core::auth::AuthHandle;
use crate::core::quota::Quota;
use crate::core::{Broker, ConnId, ReadPause, ShardMsg};
use crate::metrics::StatsBoard;

/// How long a stopping shard waits for its connections to close.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Messages per batch sent to another shard.
const MESH_BATCH: usize = 512;

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
    flush_scratch: RefCell<Vec<ConnId>>,
    /// The read buffer all connections of the shard share; decoded packets are slices of it.
    read_buffer: RefCell<BytesMut>,
}

/// The receiving ends of the shard's wake-ups, for the tasks that answer them.
pub struct Wakes {
    pub retained: LocalReceiver<()>,
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
        let shard = Shard {
            broker: RefCell::new(broker),
            writers: Writers::default(),
            gates: ReadGates::default(),
            senders,
            peer_wakers,
            retained_waker,
            flush_scratch: RefCell::new(Vec::new()),
            read_buffer: RefCell::new(BytesMut::new()),
        };
        (Rc::new(shard), Wakes { retained, peers })
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
        let broker = self.broker.borrow();
        if broker.has_outbox() {
            for waker in self.peer_wakers.iter().flatten() {
                let _ = waker.try_send(());
            }
        }
        if broker.has_retained_work() {
            let _ = self.retained_waker.try_send(());
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

    /// A connection's socket, for its output from now on.
    pub fn register(&self, id: ConnId, fd: RawFd, half: WriteHalf<TcpStream>) {
        self.writers.register(id, fd, half);
    }

    /// Waits until connection `id` may be read again (see `gate`).
    pub fn wait_readable(&self, id: ConnId, pause: ReadPause) -> impl Future<Output = ()> + '_ {
        self.gates.wait(id, pause)
    }

    /// The running drain task of `id`, to await before the connection's state goes.
    pub fn take_drain(&self, id: ConnId) -> Option<JoinHandle<()>> {
        self.writers.take_drain(id)
    }

    /// The connection went to another shard (the broker has forgotten it already).
    pub fn handed_off(&self, id: ConnId) {
        self.writers.unregister(id);
    }

    /// The connection's socket is gone.
    pub fn closed(self: &Rc<Self>, id: ConnId) {
        self.gates.release(id);
        self.writers.unregister(id);
        self.broker().closed(id, Instant::now());
        self.flush();
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

/// Why a shard could not start.
#[derive(Debug, thiserror::Error)]
pub enum ShardStartError {
    #[error("more shards than mesh ends")]
    NoMeshEnds,
    #[error("shard {shard}: cannot listen on {addr}: {source}")]
    Listen {
        shard: usize,
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("shard {shard}: its clock end was taken")]
    NoClock { shard: usize },
}

pub async fn run(
    config: Config,
    mesh: Arc<Mesh>,
    ready: crossbeam_channel::Sender<Result<(), ShardStartError>>,
    clock: Arc<Clock>,
    stats: Arc<StatsBoard>,
    auth: Arc<AuthHandle>,
    quota: Arc<Quota>,
) {
    let Some(ends) = mesh.take() else {
        let _ = ready.send(Err(ShardStartError::NoMeshEnds));
        return;
    };
    let id = ends.id();
    let shards = ends.shards();
    let (senders, receivers) = ends.connect().await;
    name_thread(id);
    let addr = config.listen_addr();
    let listener = match super::listener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            let _ = ready.send(Err(ShardStartError::Listen {
                shard: id,
                addr,
                source: e,
            }));
            return;
        }
    };

    let broker = Broker::new(id, shards, config.limits(), Instant::now())
        .with_features(config.features())
        .with_auth(auth)
        .with_quota(quota);
    let (
        shard,
        Wakes {
            retained: retained_wake,
            peers: peer_wake_rx,
        },
    ) = Shard::new(broker, shards, senders);
    {
        // Retained messages for new subscriptions, a step at a time: a subscription to `#`
        // over a large store does not hold up the shard's other clients.
        let shard = shard.clone();
        spawn_local(async move {
            while retained_wake.recv().await.is_some() {
                loop {
                    let more = shard.broker().retained_step(Instant::now());
                    shard.flush();
                    if !more {
                        break;
                    }
                    // Not a plain yield: glommio polls io_uring only when no task is
                    // runnable (or every 100 ms), so a yield alone would keep the
                    // shard's sockets waiting for the whole walk. A timer leaves the
                    // run queue.
                    timer::sleep(Duration::from_micros(1)).await;
                }
            }
        })
        .detach();
    }

    for (peer, wake) in peer_wake_rx {
        let shard = shard.clone();
        spawn_local(async move {
            while wake.recv().await.is_some() {
                loop {
                    let batch = shard.take_outbox(peer, MESH_BATCH);
                    if batch.is_empty() {
                        break;
                    }
                    if shard.send_to(peer, Envelope::Batch(batch)).await.is_err() {
                        return;
                    }
                }
            }
        })
        .detach();
    }
    for (peer, receiver) in receivers {
        let shard = shard.clone();
        spawn_local(async move {
            while let Some(envelope) = receiver.recv().await {
                match envelope {
                    Envelope::Batch(batch) => {
                        shard.broker().remote(peer, batch, Instant::now());
                        shard.flush();
                        // A full channel is always ready: let the writers drain what this
                        // batch queued before taking the next.
                        futures_lite::future::yield_now().await;
                    }
                    Envelope::Handoff { fd, buffered } => {
                        connection::adopt(shard.clone(), fd, buffered)
                    }
                }
            }
        })
        .detach();
    }
    let shutdown = Rc::new(Shutdown::default());
    let Some(mut ticks) = clock.take_ticks(id) else {
        let _ = ready.send(Err(ShardStartError::NoClock { shard: id }));
        return;
    };
    {
        let shard = shard.clone();
        let shutdown = shutdown.clone();
        let mut reporter = StatsReporter::new(stats, config.sys_interval(), Instant::now());
        spawn_local(async move {
            // The task goes on while stopping: it keeps the executor awake for the grace period.
            while let Some(tick) = ticks.next().await {
                let now = Instant::now();
                {
                    let mut broker = shard.broker();
                    broker.tick(now);
                    reporter.on_tick(&mut broker, now);
                }
                shard.flush();
                if tick == Tick::Stop && !shutdown.is_tripped() {
                    shard.broker().shutdown();
                    shard.flush();
                    shutdown.trip();
                }
            }
            tracing::error!(
                shard = id,
                "the shard clock stopped: keep alives no longer expire"
            );
        })
        .detach();
    }

    let _ = ready.send(Ok(()));
    tracing::debug!(shard = id, "accepting");
    loop {
        let accepted =
            futures_lite::future::or(async { Some(listener.socket.accept().await) }, async {
                shutdown.tripped().await;
                None
            });
        match accepted.await {
            None => break,
            Some(Ok(stream)) => {
                if !shard.broker().accepts_sockets() {
                    tracing::warn!(shard = id, "connection limit reached; closing a new socket");
                    drop(stream);
                    continue;
                }
                connection::spawn(shard.clone(), stream);
            }
            Some(Err(e)) => {
                tracing::warn!(shard = id, error = %e, "accept failed");
                timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    // Stopping: no new connections from here on. Shutting the listening socket takes it out
    // of the port at once, even while io_uring still holds a reference to it, so a broker
    // started right after this one owns the port alone.
    super::listener::close(listener);
    // Give the writers a moment to deliver the DISCONNECTs.
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while shard.broker().connection_count() > 0 && Instant::now() < deadline {
        timer::sleep(Duration::from_millis(20)).await;
    }
    tracing::debug!(shard = id, "stopped");
}

/// Names the thread after its shard (as `top -H` and /proc show it).
fn name_thread(id: usize) {
    if let Ok(name) = std::ffi::CString::new(format!("ringmq-shard-{id}")) {
        // SAFETY: PR_SET_NAME with a NUL-terminated string of at most 16 bytes (the kernel
        // truncates longer ones).
        unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr(), 0, 0, 0) };
    }
}
