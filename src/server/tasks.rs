//! What runs on a shard besides its connections: the start, then one task each for accepting,
//! the clock tick, sending to and receiving from each peer shard, and the retained walk; at the
//! stop, the wait for the connections to close.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::channels::local_channel::LocalReceiver;
use glommio::channels::shared_channel::ConnectedReceiver;
use glommio::{spawn_local, timer};

use super::connection;
use super::heartbeat::{Clock, Tick, Ticks};
use super::listener::{self, Listener};
use super::mesh::{Envelope, Mesh};
use super::shard::{Shard, Wakes};
use super::shutdown::Shutdown;
use super::stats::StatsReporter;
use super::{log_writer, store};
use crate::config::Config;
use crate::core::auth::AuthHandle;
use crate::core::quota::Quota;
use crate::core::store::{Recovered, StoreSpace};
use crate::core::Broker;
use crate::metrics::StatsBoard;
use crate::transport::Acceptor;

/// How long a stopping shard waits for its connections to close.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Messages per batch sent to another shard.
const MESH_BATCH: usize = 512;

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
    #[error("shard {shard}: cannot open its log {path}: {error}")]
    Store {
        shard: usize,
        path: std::path::PathBuf,
        error: String,
    },
}

/// What every shard starts from, shared by all of them.
#[derive(Clone)]
pub struct Common {
    pub config: Config,
    /// One per listening port.
    pub acceptors: Arc<Vec<Arc<Acceptor>>>,
    pub mesh: Arc<Mesh>,
    pub clock: Arc<Clock>,
    pub stats: Arc<StatsBoard>,
    pub auth: Arc<AuthHandle>,
    pub quota: Arc<Quota>,
    /// Route adds every shard sees at once (see `router::hints`).
    pub route_hints: Arc<crate::core::router::RouteHints>,
    /// What the durable store recovered at start, with `--data-dir`.
    pub recovered: Option<Arc<Recovered>>,
    /// The durable store's room, posted by every shard's log task.
    pub store_space: Arc<StoreSpace>,
    /// Each shard reports here once it accepts connections, or why it cannot.
    pub ready: crossbeam_channel::Sender<Result<(), ShardStartError>>,
}

/// Runs one shard until it is stopped and its connections are closed (or the grace is over).
pub async fn run(common: Common) {
    let Common {
        config,
        acceptors,
        mesh,
        clock,
        stats,
        auth,
        quota,
        route_hints,
        recovered,
        store_space,
        ready,
    } = common;
    let Some(ends) = mesh.take() else {
        let _ = ready.send(Err(ShardStartError::NoMeshEnds));
        return;
    };
    let id = ends.id();
    let shards = ends.shards();
    let (senders, receivers) = ends.connect().await;
    name_thread(id);
    let mut listeners = Vec::with_capacity(acceptors.len());
    for acceptor in acceptors.iter() {
        let addr = acceptor.spec.addr;
        match listener::bind(addr) {
            Ok(l) => listeners.push((l, acceptor.clone())),
            Err(source) => {
                let _ = ready.send(Err(ShardStartError::Listen {
                    shard: id,
                    addr,
                    source,
                }));
                return;
            }
        }
    }
    let mut broker = Broker::new(id, shards, config.limits(), Instant::now())
        .with_features(config.features())
        .with_auth(auth)
        .with_quota(quota)
        .with_route_hints(route_hints);
    let log = match (&config.data_dir, &recovered) {
        (Some(dir), Some(recovered)) => {
            let path = store::log_path(dir, id);
            let log = log_writer::ShardLog::open(
                &path,
                id,
                config.fsync,
                config.compact_after_bytes,
                store_space.clone(),
            )
            .await;
            match log {
                Ok(log) => {
                    broker = broker
                        .with_journal()
                        .with_spill()
                        .with_store_space(store_space);
                    broker.restore(recovered);
                    Some(log)
                }
                Err(error) => {
                    let _ = ready.send(Err(ShardStartError::Store {
                        shard: id,
                        path,
                        error: error.to_string(),
                    }));
                    return;
                }
            }
        }
        _ => None,
    };
    let (
        shard,
        Wakes {
            retained,
            log: log_wake,
            peers,
        },
    ) = Shard::new(broker, shards, senders);
    if let Some(log) = log {
        spawn_local(log_writer::log_task(shard.clone(), log, log_wake)).detach();
        // The routes restored sessions announce go out with the first flush.
        shard.flush();
    }
    spawn_local(retained_walk(shard.clone(), retained)).detach();
    for (peer, wake) in peers {
        spawn_local(mesh_sender(shard.clone(), peer, wake)).detach();
    }
    for (peer, receiver) in receivers {
        spawn_local(mesh_receiver(shard.clone(), peer, receiver)).detach();
    }
    let Some(ticks) = clock.take_ticks(id) else {
        let _ = ready.send(Err(ShardStartError::NoClock { shard: id }));
        return;
    };
    let shutdown = Rc::new(Shutdown::default());
    let reporter = StatsReporter::new(stats, config.sys_interval(), Instant::now());
    spawn_local(clock_tick(shard.clone(), ticks, reporter, shutdown.clone())).detach();

    let _ = ready.send(Ok(()));
    tracing::debug!(shard = id, "accepting");
    let accepting: Vec<_> = listeners
        .into_iter()
        .map(|(listener, acceptor)| {
            let (shard, shutdown) = (shard.clone(), shutdown.clone());
            spawn_local(async move {
                accept_loop(&shard, &listener, &acceptor, &shutdown).await;
                // Stopping: no new connections from here on. Shutting the listening socket
                // takes it out of the port at once, even while io_uring still holds a
                // reference to it, so a broker started right after this one owns the port
                // alone.
                listener::close(listener);
            })
        })
        .collect();
    for task in accepting {
        task.await;
    }
    // Give the writers a moment to deliver the DISCONNECTs.
    futures_lite::future::or(shard.all_closed(), timer::sleep(SHUTDOWN_GRACE)).await;
    tracing::debug!(shard = id, "stopped");
}

/// Accepts connections until the shard stops.
async fn accept_loop(
    shard: &Rc<Shard>,
    listener: &Listener,
    acceptor: &Acceptor,
    shutdown: &Shutdown,
) {
    loop {
        let accepted =
            futures_lite::future::or(async { Some(listener.socket.accept().await) }, async {
                shutdown.tripped().await;
                None
            });
        match accepted.await {
            None => return,
            Some(Ok(stream)) => {
                if !shard.broker().accepts_sockets() {
                    tracing::warn!(
                        shard = shard.broker().shard(),
                        "connection limit reached; closing a new socket"
                    );
                    drop(stream);
                    continue;
                }
                connection::spawn(shard.clone(), stream, acceptor);
            }
            Some(Err(e)) => {
                tracing::warn!(shard = shard.broker().shard(), error = %e, "accept failed");
                timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// The broker's deadlines and figures on every clock tick; the stop when the clock says so.
/// Goes on while stopping: its ticks keep the executor awake for the grace period.
async fn clock_tick(
    shard: Rc<Shard>,
    mut ticks: Ticks,
    mut reporter: StatsReporter,
    shutdown: Rc<Shutdown>,
) {
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
        shard = shard.broker().shard(),
        "the shard clock stopped: keep alives no longer expire"
    );
}

/// Retained messages for new subscriptions, a step at a time: a subscription to `#` over a
/// large store does not hold up the shard's other clients.
async fn retained_walk(shard: Rc<Shard>, wake: LocalReceiver<()>) {
    while wake.recv().await.is_some() {
        loop {
            let more = shard.broker().retained_step(Instant::now());
            shard.flush();
            if !more {
                break;
            }
            // Not a plain yield: glommio polls io_uring only when no task is runnable (or
            // every 100 ms), so a yield alone would keep the shard's sockets waiting for the
            // whole walk. A timer leaves the run queue.
            timer::sleep(Duration::from_micros(1)).await;
        }
    }
}

/// Sends the outbox for `peer` in batches whenever the flush says it has something.
async fn mesh_sender(shard: Rc<Shard>, peer: usize, wake: LocalReceiver<()>) {
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
}

/// Takes what `peer` sends: message batches for the broker, connections to serve here.
async fn mesh_receiver(shard: Rc<Shard>, peer: usize, receiver: ConnectedReceiver<Envelope>) {
    while let Some(envelope) = receiver.recv().await {
        match envelope {
            Envelope::Batch(batch) => {
                shard.broker().remote(peer, batch, Instant::now());
                shard.flush();
                // A subscriber here is behind: take no more of this peer's messages until it
                // catches up (or stalls). The peer's outbox fills meanwhile, and holds its
                // publishers back in turn.
                loop {
                    let hold = shard.broker().mesh_hold(peer, Instant::now());
                    match hold {
                        Some(recheck) => shard.wait_mesh(peer, recheck).await,
                        // Released already, with messages set aside: they go first.
                        None if shard.broker().has_parked(peer) => {}
                        None => break,
                    }
                    shard.broker().remote(peer, Vec::new(), Instant::now());
                    shard.flush();
                }
                // A full channel is always ready: let the writers drain what this batch
                // queued before taking the next.
                futures_lite::future::yield_now().await;
            }
            Envelope::Handoff {
                fd,
                buffered,
                transport,
            } => connection::adopt(shard.clone(), fd, buffered, transport),
        }
    }
}

/// Names the thread after its shard (as `top -H` and /proc show it).
fn name_thread(id: usize) {
    if let Ok(name) = std::ffi::CString::new(format!("ringmq-shard-{id}")) {
        // SAFETY: PR_SET_NAME with a NUL-terminated string of at most 16 bytes (the kernel
        // truncates longer ones).
        unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr(), 0, 0, 0) };
    }
}
