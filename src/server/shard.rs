//! One shard: its broker, its listener, the tasks that move bytes between the broker and the
//! sockets, and the ones that carry batches to and from the other shards.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use glommio::channels::local_channel::{self, LocalSender};
use glommio::{spawn_local, timer};

use super::connection;
use super::gate::ReadGates;
use super::heartbeat::{Clock, Tick};
use super::mesh::{Envelope, Mesh, Senders};
use super::shutdown::Shutdown;
use super::stats::StatsReporter;
use super::writer::{self, Writers};
use crate::config::Config;
use crate::core::auth::AuthHandle;
use crate::core::quota::Quota;
use crate::core::{Broker, ConnId};
use crate::metrics::StatsBoard;

/// How long a stopping shard waits for its connections to close.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Messages per batch sent to another shard.
const MESH_BATCH: usize = 512;

pub struct Shard {
    pub id: usize,
    pub config: Config,
    pub broker: RefCell<Broker>,
    /// How each connection's output reaches its socket.
    pub writers: Writers,
    /// Wakes the task that sends to each peer shard.
    peer_wakers: Vec<Option<LocalSender<()>>>,
    pub senders: Senders,
    flush_scratch: RefCell<Vec<ConnId>>,
    /// The read buffer all connections of the shard share; decoded packets are slices of it.
    read_buffer: RefCell<BytesMut>,
    /// Connections not being read until the broker lets them (see `gate`).
    pub gates: ReadGates,
    /// Wakes the task that sends retained messages to new subscriptions.
    retained_waker: LocalSender<()>,
}

impl Shard {
    /// Writes out what connections have to send and wakes the senders of non-empty outboxes.
    /// Never blocks: call it after every change to the broker.
    pub fn flush(self: &Rc<Self>) {
        let mut ids = self.flush_scratch.borrow_mut();
        self.broker.borrow_mut().drain_flush_queue(&mut ids);
        let now = Instant::now();
        for id in ids.drain(..) {
            writer::write_out(self, id, now);
            self.gates.output_written(self, id);
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

    /// Lends the shard's read buffer; give it back before the next await that may suspend.
    pub fn take_scratch(&self) -> BytesMut {
        std::mem::take(&mut *self.read_buffer.borrow_mut())
    }

    pub fn return_scratch(&self, buffer: BytesMut) {
        *self.read_buffer.borrow_mut() = buffer;
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

    let mut peer_wakers = Vec::with_capacity(shards);
    let mut peer_wake_rx = Vec::new();
    for peer in 0..shards {
        if peer == id {
            peer_wakers.push(None);
        } else {
            let (tx, rx) = local_channel::new_bounded(1);
            peer_wakers.push(Some(tx));
            peer_wake_rx.push((peer, rx));
        }
    }
    let limits = config.limits();
    let features = config.features();
    let (retained_waker, retained_wake) = local_channel::new_bounded(1);
    let shard = Rc::new(Shard {
        id,
        broker: RefCell::new(
            Broker::new(id, shards, limits, Instant::now())
                .with_features(features)
                .with_auth(auth)
                .with_quota(quota),
        ),
        config,
        writers: Writers::default(),
        peer_wakers,
        senders,
        flush_scratch: RefCell::new(Vec::new()),
        read_buffer: RefCell::new(BytesMut::new()),
        gates: ReadGates::default(),
        retained_waker,
    });
    {
        // Retained messages for new subscriptions, a step at a time: a subscription to `#`
        // over a large store does not hold up the shard's other clients.
        let shard = shard.clone();
        spawn_local(async move {
            while retained_wake.recv().await.is_some() {
                loop {
                    let more = shard.broker.borrow_mut().retained_step(Instant::now());
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
                    let batch = shard.broker.borrow_mut().take_outbox(peer, MESH_BATCH);
                    if batch.is_empty() {
                        break;
                    }
                    shard.gates.open_outbox_gates(&shard);
                    if shard
                        .senders
                        .send_to(peer, Envelope::Batch(batch))
                        .await
                        .is_err()
                    {
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
                        shard
                            .broker
                            .borrow_mut()
                            .remote(peer, batch, Instant::now());
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
        let mut reporter = StatsReporter::new(stats, shard.config.sys_interval(), Instant::now());
        spawn_local(async move {
            // The task goes on while stopping: it keeps the executor awake for the grace period.
            while let Some(tick) = ticks.next().await {
                let now = Instant::now();
                {
                    let mut broker = shard.broker.borrow_mut();
                    broker.tick(now);
                    reporter.on_tick(&mut broker, now);
                }
                shard.flush();
                if tick == Tick::Stop && !shutdown.is_tripped() {
                    shard.broker.borrow_mut().shutdown();
                    shard.flush();
                    shutdown.trip();
                }
            }
            tracing::error!(
                shard = shard.id,
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
                if !shard.broker.borrow().accepts_sockets() {
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
    while shard.broker.borrow().connection_count() > 0 && Instant::now() < deadline {
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
