//! The glommio shell: one pinned executor per shard, all accepting on the same port
//! (SO_REUSEPORT), each driving its own [`crate::core::Broker`]. Shards exchange message batches
//! and connections over glommio's channel mesh.

mod compaction;
mod connection;
mod gate;
mod heartbeat;
mod listener;
mod log_writer;
mod mesh;
mod prometheus;
mod shard;
mod shutdown;
mod spill_files;
mod stats;
mod store;
mod tasks;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use glommio::{CpuSet, LocalExecutorPoolBuilder, PoolPlacement};

use crate::config::Config;
use crate::core::acl::AclFile;
use crate::core::auth::{AuthHandle, Authenticator, PasswordFile};
use crate::core::quota::Quota;
use crate::core::store::StoreSpace;
use crate::metrics::StatsBoard;
use crate::transport::Acceptor;
use heartbeat::Clock;
use mesh::Mesh;
use tasks::{Common, ShardStartError};

/// io_uring memory per executor; ringmq does no DMA file I/O, so the minimum will do.
const IO_MEMORY: usize = 1024 * 1024;
/// Locked memory glommio needs per executor.
const MEMLOCK_PER_SHARD: u64 = 512 * 1024;
/// Submission queue entries per io_uring. Every connection keeps a read poll armed and a
/// busy one a write poll too; glommio's default (128) let the queue overflow with a hundred
/// busy connections, and a shard could then park with its wake-up never submitted.
const RING_DEPTH: usize = 4096;
/// Batches in flight on each shard-to-shard channel (of up to 512 messages each). This is the
/// window between two shards: a shard that holds a peer back (a subscriber is behind) lets
/// this much pile up before the peer's outbox, and then its publishers, wait.
const MESH_CHANNEL_SIZE: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "locked-memory limit (ulimit -l) is {have} KiB; {shards} shards need at least {need} KiB \
         (raise it, e.g. LimitMEMLOCK in the systemd unit, or use fewer --shards)"
    )]
    Memlock { have: u64, need: u64, shards: usize },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the shards: {0}")]
    Executor(String),
    #[error("listeners: {0}")]
    Listeners(String),
    #[error("{listener}: {source}")]
    Tls {
        listener: String,
        source: crate::transport::tls_config::TlsConfigError,
    },
    #[error(transparent)]
    Shard(#[from] ShardStartError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("cannot start the clock thread: {0}")]
    Clock(#[source] std::io::Error),
    #[error("cannot handle signals: {0}")]
    Signals(#[source] std::io::Error),
    #[error("cannot serve the metrics (--metrics): {0}")]
    Metrics(#[source] std::io::Error),
    #[error("{what} {path}: {source}")]
    ConfigFile {
        what: &'static str,
        path: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The credentials and access policy from the command line; its files are read here, at start
/// and on SIGHUP.
fn authenticator(config: &Config) -> Result<Authenticator, StartError> {
    let passwords = config
        .password_file
        .as_deref()
        .map(|path| read_config_file("password file", path, PasswordFile::parse))
        .transpose()?;
    let acl = config
        .acl_file
        .as_deref()
        .map(|path| read_config_file("ACL file", path, AclFile::parse))
        .transpose()?;
    if let Some(passwords) = &passwords {
        tracing::info!(users = passwords.len(), "password file loaded");
    }
    let passwords = match passwords {
        None if config.refuse_anonymous_without_passwords => {
            tracing::warn!(
                "the configuration file allows no anonymous client and names no password \
                 file: every client is refused (as Mosquitto does)"
            );
            Some(PasswordFile::parse("").expect("an empty password file parses"))
        }
        passwords => passwords,
    };
    Ok(Authenticator::new(passwords, config.allow_anonymous).with_acl(acl))
}

fn read_config_file<T, E: std::error::Error + Send + Sync + 'static>(
    what: &'static str,
    path: &std::path::Path,
    parse: fn(&str) -> Result<T, E>,
) -> Result<T, StartError> {
    let fail = |source: Box<dyn std::error::Error + Send + Sync>| StartError::ConfigFile {
        what,
        path: path.display().to_string(),
        source,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(Box::new(e)))?;
    parse(&text).map_err(|e| fail(Box::new(e)))
}

/// Runs the broker until SIGTERM or SIGINT (then 5.0 clients get DISCONNECT 0x8B).
pub fn run(config: Config) -> Result<(), StartError> {
    let shards = config.shard_count();
    ensure_memlock(shards)?;
    let acceptors = acceptors(&config)?;
    for acceptor in acceptors.iter() {
        let addr = acceptor.spec.addr;
        // Fail early and clearly when the port is taken (glommio would report it per shard).
        listener::probe(addr, listener::PORT_WAIT)
            .map_err(|source| StartError::Bind { addr, source })?;
    }

    let (ready, ready_rx) = crossbeam_channel::unbounded::<Result<(), ShardStartError>>();
    let clock = heartbeat::start(shards).map_err(StartError::Clock)?;
    let auth = Arc::new(AuthHandle::new(authenticator(&config)?));
    if config.acl_file.is_some() && config.password_file.is_none() {
        tracing::warn!(
            "an ACL file without a password file: user names are not authenticated, so any \
             client can claim any user's rules"
        );
    }
    let recovered = match &config.data_dir {
        Some(dir) => Some(Arc::new(store::recover(dir, shards)?)),
        None => None,
    };
    let reload = Reload {
        config: config.clone(),
        auth: auth.clone(),
        clock: clock.clone(),
        acceptors: acceptors.clone(),
    };
    let config_max_data_bytes = config.max_data_bytes;
    let stats = Arc::new(StatsBoard::new(shards));
    if let Some(addr) = config.metrics {
        prometheus::serve(addr, stats.clone()).map_err(StartError::Metrics)?;
    }
    let listening = acceptors
        .iter()
        .map(|a| a.spec.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let common = Common {
        config,
        acceptors,
        mesh: Arc::new(Mesh::full(shards, MESH_CHANNEL_SIZE)),
        clock,
        stats,
        auth,
        quota: Arc::new(Quota::default()),
        route_hints: Arc::new(crate::core::router::RouteHints::new(shards)),
        recovered,
        store_space: Arc::new(StoreSpace::new(shards, config_max_data_bytes)),
        ready,
    };
    let placement = match CpuSet::online() {
        Ok(cpus) if cpus.len() >= shards => PoolPlacement::MaxSpread(shards, Some(cpus)),
        _ => PoolPlacement::Unbound(shards),
    };
    let handles = LocalExecutorPoolBuilder::new(placement)
        .io_memory(IO_MEMORY)
        .ring_depth(RING_DEPTH)
        .name("ringmq-shard")
        .on_all_shards(move || tasks::run(common.clone()))
        .map_err(|e| StartError::Executor(e.to_string()))?;

    let mut started = 0;
    while started < shards {
        match ready_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(())) => started += 1,
            Ok(Err(failure)) => return Err(failure.into()),
            Err(_) => {
                // A shard that failed to start reports only through join_all.
                let errors: Vec<String> = handles
                    .join_all()
                    .into_iter()
                    .filter_map(|r| r.err().map(|e| e.to_string()))
                    .collect();
                return Err(StartError::Executor(errors.join("; ")));
            }
        }
    }
    let signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ])
    .map_err(StartError::Signals)?;
    tracing::info!("ringmq ready: listening on {listening} with {shards} shards");
    std::thread::spawn(move || handle_signals(signals, reload));
    for result in handles.join_all() {
        if let Err(e) = result {
            return Err(StartError::Executor(e.to_string()));
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// The listeners' acceptors, their TLS certificates loaded.
fn acceptors(config: &Config) -> Result<Arc<Vec<Arc<Acceptor>>>, StartError> {
    let specs = config.listeners().map_err(StartError::Listeners)?;
    let mut acceptors: Vec<Arc<Acceptor>> = Vec::with_capacity(specs.len());
    for spec in specs {
        if acceptors.iter().any(|a| a.spec.addr == spec.addr) {
            return Err(StartError::Listeners(format!(
                "two listeners on {}",
                spec.addr
            )));
        }
        let listener = spec.to_string();
        let acceptor = Acceptor::new(spec, config.max_packet_size)
            .map_err(|source| StartError::Tls { listener, source })?;
        acceptors.push(Arc::new(acceptor));
    }
    Ok(Arc::new(acceptors))
}

/// What SIGHUP rereads, and the clock that SIGTERM stops.
struct Reload {
    config: Config,
    auth: Arc<AuthHandle>,
    clock: Arc<Clock>,
    acceptors: Arc<Vec<Arc<Acceptor>>>,
}

/// SIGHUP reopens the log file and rereads the TLS certificates and the password and ACL
/// files; SIGTERM or SIGINT stops the shards.
fn handle_signals(mut signals: signal_hook::iterator::Signals, reload: Reload) {
    let Reload {
        config,
        auth,
        clock,
        acceptors,
    } = reload;
    for signal in signals.forever() {
        if signal != signal_hook::consts::SIGHUP {
            // Stop first, log after: a log write must never keep the broker from stopping.
            clock.request_stop();
            tracing::info!(signal, "stopping");
            return;
        }
        crate::logging::reopen();
        for acceptor in acceptors.iter().filter(|a| a.spec.tls.is_some()) {
            let listener = &acceptor.spec;
            match acceptor.reload() {
                Ok(()) => tracing::info!(%listener, "TLS certificates reloaded"),
                Err(error) => {
                    tracing::error!(%listener, %error, "TLS reload failed; keeping the old certificates")
                }
            }
        }
        if config.password_file.is_none() && config.acl_file.is_none() {
            continue;
        }
        match authenticator(&config) {
            Ok(new) => {
                auth.replace(new);
                tracing::info!("password and ACL files reloaded");
            }
            Err(error) => tracing::error!(%error, "reload failed; keeping the old rules"),
        }
    }
}

/// Raises the soft RLIMIT_MEMLOCK to what the shards need, or explains why it cannot.
fn ensure_memlock(shards: usize) -> Result<(), StartError> {
    let need = MEMLOCK_PER_SHARD * shards as u64;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) != 0 {
            return Ok(());
        }
        if limit.rlim_cur == libc::RLIM_INFINITY || limit.rlim_cur >= need {
            return Ok(());
        }
        if limit.rlim_max == libc::RLIM_INFINITY || limit.rlim_max >= need {
            limit.rlim_cur = need;
            if libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) == 0 {
                return Ok(());
            }
        }
    }
    Err(StartError::Memlock {
        have: limit.rlim_cur / 1024,
        need: need / 1024,
        shards,
    })
}
