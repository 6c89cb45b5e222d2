//! One shard's broker state machine: its connections, the sessions homed here, the local
//! subscription trie, a replica of the route table and of the retained messages.
//!
//! The server calls in with decoded packets, closed sockets, clock ticks and messages from other
//! shards; it takes out encoded bytes per connection ([`Broker::take_output`]) and batches of
//! messages per shard ([`Broker::take_outbox`]).

mod commit;
mod connection;
mod conns;
mod deliveries;
mod expiry;
mod flow;
mod journal;
mod packets;
mod peers;
mod receive;
mod replies;
mod retained_work;
mod routing;
mod snapshot;
mod spilling;
mod subscribe;
mod tombstones;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use ahash::AHashMap;
use bytes::BytesMut;
use bytestring::ByteString;

use super::auth::AuthHandle;
use super::features::Features;
use super::limits::Limits;
use super::quota::Quota;
use super::retained::RetainedStore;
use super::router::Router;
use super::session::{DeliverOutcome, PumpReport, Subscription};
use super::shard_msg::ShardMsg;
use super::timers::Timers;
use expiry::Timer;

use crate::metrics::{Counters, DropLog};
use crate::protocol::{Properties, PropertyValues, ProtocolVersion, QoS};
use flow::{Feeder, Hold};
pub use flow::{ReadPause, OUTBOX_HIGH_WATER, OUTBOX_LOW_WATER};

use conns::{Conn, Connections};
pub use receive::Receive;

/// A connection on this shard, numbered by the broker.
pub type ConnId = u64;
use super::sessions::{SessionKey, Sessions};

/// What one shard holds (see [`Broker::census`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Census {
    pub sessions: usize,
    pub client_ids: usize,
    pub subscriptions: usize,
    pub routes: usize,
    pub connections: usize,
    /// SUBACK / UNSUBACK replies and route changes waiting for acknowledgements.
    pub pending_replies: usize,
    /// Messages queued or in flight in sessions.
    pub messages_held: usize,
}

/// How the broker is closing a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    No,
    /// After its last words: input is read and discarded for a short while, so that the
    /// client reads them rather than a reset.
    Linger,
    /// At once: its output made no progress.
    Abort,
}

/// Bytes to write to one connection, and whether to close it once they are written.
#[derive(Debug)]
pub struct Output {
    pub bytes: BytesMut,
    pub close: bool,
}

/// The rate-limited log lines of what limits do: at most one a second of each kind.
#[derive(Debug, Default)]
struct Logs {
    /// Messages dropped by limits or the ACL.
    drops: DropLog,
    /// Retained messages not retained: the store was full.
    retained: DropLog,
    /// Publishers paused for another shard's outbox.
    pauses: DropLog,
    /// Publishers held for a subscriber that is behind.
    holds: DropLog,
    /// QoS 1/2 publishes refused: the durable store is full.
    store_full: DropLog,
}

/// A SUBACK (or UNSUBACK) waiting for every shard to acknowledge the routes its filters added
/// (or removed): a client that publishes after it must find the routes as it says.
#[derive(Debug)]
struct PendingReply {
    conn: ConnId,
    /// Route changes (syncs) that must be in on every shard first.
    waits: Vec<u64>,
    reply: BytesMut,
    /// Filters whose retained messages follow a SUBACK.
    retained_for: Vec<(ByteString, Subscription)>,
}

#[derive(Debug)]
pub struct Broker {
    shard: usize,
    shards: usize,
    limits: Limits,
    features: Features,
    /// The clock as of the last call in.
    now: Instant,
    conns: Connections,
    sessions: Sessions,
    router: Router,
    retained: RetainedStore,
    /// Sessions whose retained backlog can make progress, served a step at a time.
    retained_ready: VecDeque<SessionKey>,
    /// Connections' addresses and certificate identities.
    peers: peers::Peers,
    /// Whose messages are being routed right now.
    feeder: Option<Feeder>,
    /// Per peer shard: the session whose backlog stops this shard taking more of that
    /// peer's messages (the peer's outbox then fills, and its publishers wait).
    peer_held: Vec<Option<Hold>>,
    /// Per peer shard: what is left of its batches while it is held back.
    parked: Vec<VecDeque<ShardMsg>>,
    /// A session that held publishers has drained (or gone): they may be read again.
    eased: bool,
    /// The leaving member's client id and the stored message being sent to other members
    /// right now; taken when its removal is held back (see `reroute_token`).
    rerouting: Option<(ByteString, u64)>,
    /// What the durable store must record, when persistence is on (see `journal`).
    journal: Option<journal::Journal>,
    /// Records made since the start, and how many of them are on disk.
    journal_made: u64,
    journal_committed: u64,
    /// Connections whose output waits for records to be committed.
    awaiting_commit: Vec<ConnId>,
    /// The counter of this shard's stored message ids, and the message given one last (the
    /// sessions of one publish share its record).
    next_message_id: u64,
    /// When [`Broker::restore`] brought back the store's state, if it did.
    restored_at: Option<Instant>,
    last_stored: Option<(super::message::SharedMessage, u64)>,
    /// Per topic, the last retained update this shard logged (sequence, message; `None`:
    /// cleared): what a snapshot of its log keeps of retained messages.
    logged_retained: AHashMap<ByteString, (u64, Option<super::message::SharedMessage>)>,
    /// Durable sessions holding each receipt of an inbound QoS 2 message not yet released.
    receipt_holders: AHashMap<u64, Vec<SessionKey>>,
    /// Durable deliveries between this shard and the others, and their commits.
    peer_commits: commit::PeerCommits,
    /// Replies waiting, by the order they were made in.
    pending_replies: AHashMap<u64, PendingReply>,
    next_reply: u64,
    /// Sessions just ended, for messages still on their way to them.
    tombstones: Vec<tombstones::Tombstone>,
    timers: Timers<Timer>,
    flush_queue: Vec<ConnId>,
    /// Reused per publish: each matched session once, with its best subscription.
    /// In an Option so that taking it out costs nothing: `mem::take` of the map itself built a
    /// new one, drawing a random hasher seed for every publish (8% of a QoS 0 fan-in).
    match_scratch: Option<AHashMap<SessionKey, routing::Match>>,
    /// For assigned client ids, which must not be guessable.
    rng: rand::rngs::StdRng,
    pub counters: Counters,
    logs: Logs,
    /// Who may connect; shared by every shard.
    auth: Arc<AuthHandle>,
    /// Broker-wide counts; shared by every shard.
    quota: Arc<Quota>,
    /// Room left in the durable store; shared by every shard.
    store_space: Arc<crate::core::store::StoreSpace>,
    /// Spilled queues (see `spilling`), when on.
    spill: Option<crate::core::spill::SpillIndex>,
    /// `--max-queued-in-memory`, in effect once spilling is on.
    spill_share: usize,
    spill_reads: AHashMap<u64, spilling::SpillRead>,
    next_spill_token: u64,
}

impl Broker {
    /// The broker of shard `shard` out of `shards` (at most 64).
    pub fn new(shard: usize, shards: usize, mut limits: Limits, now: Instant) -> Broker {
        // Queues stay in memory until spilling is on (`with_spill`).
        let spill_share = std::mem::replace(&mut limits.max_queued_in_memory, usize::MAX);
        Broker {
            router: Router::new(shard, shards),
            shard,
            shards,
            limits,
            features: Features::default(),
            now,
            conns: Connections::default(),
            sessions: Sessions::default(),
            retained: RetainedStore::default(),
            retained_ready: VecDeque::new(),
            peers: peers::Peers::default(),
            feeder: None,
            peer_held: vec![None; shards],
            parked: (0..shards).map(|_| VecDeque::new()).collect(),
            eased: false,
            rerouting: None,
            journal: None,
            journal_made: 0,
            journal_committed: 0,
            awaiting_commit: Vec::new(),
            next_message_id: 0,
            restored_at: None,
            last_stored: None,
            receipt_holders: AHashMap::new(),
            logged_retained: AHashMap::new(),
            peer_commits: commit::PeerCommits::new(shards),
            pending_replies: AHashMap::new(),
            next_reply: 1,
            tombstones: Vec::new(),
            timers: Timers::default(),
            flush_queue: Vec::new(),
            match_scratch: Some(AHashMap::new()),
            rng: rand::SeedableRng::from_os_rng(),
            counters: Counters::default(),
            logs: Logs::default(),
            auth: Arc::default(),
            quota: Arc::default(),
            store_space: Arc::default(),
            spill: None,
            spill_share,
            spill_reads: AHashMap::new(),
            next_spill_token: 0,
        }
    }

    /// Shares the board of route hints with the other shards (see `router::hints`): a
    /// subscription made on one shard is seen at once by the others' publishes.
    pub fn with_route_hints(mut self, hints: Arc<super::router::RouteHints>) -> Broker {
        self.router.share_hints(hints);
        self
    }

    /// Shares the broker-wide counts with the other shards.
    pub fn with_quota(mut self, quota: Arc<Quota>) -> Broker {
        self.quota = quota;
        self
    }

    pub fn with_features(mut self, features: Features) -> Broker {
        self.features = features;
        self
    }

    pub fn with_auth(mut self, auth: Arc<AuthHandle>) -> Broker {
        self.auth = auth;
        self
    }

    pub fn shard(&self) -> usize {
        self.shard
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// What this shard holds, for leak checks: sessions, filters in the subscription trie,
    /// filters in the route table, connections, pending SUBACK / UNSUBACK replies.
    pub fn census(&self) -> Census {
        Census {
            sessions: self.sessions.len(),
            client_ids: self.sessions.client_ids(),
            subscriptions: self.router.subscription_filters(),
            routes: self.router.route_filters(),
            connections: self.conns.len(),
            pending_replies: self.pending_replies.len()
                + self.router.pending_syncs()
                + self.tombstones.len(),
            messages_held: self.sessions.values().map(|s| s.undelivered()).sum(),
        }
    }

    /// This shard's figures, for the broker-wide `$SYS` topics.
    pub fn stats(&self) -> crate::metrics::ShardStats {
        crate::metrics::ShardStats {
            counters: self.counters.clone(),
            clients_connected: self.conns.attached() as u64,
            sessions: self.sessions.len() as u64,
            retained: self.retained.len() as u64,
            spilled: self.spilled_now() as u64,
            subscription_filters: self.router.subscription_filters() as u64,
            log_lines_dropped: 0,
        }
    }

    /// Registers a connection accepted by this shard. At the connection limit it is still
    /// registered, so that its CONNECT gets a refusal the client can read (0x97), but refused
    /// it will be. [`Broker::receive`] may hand it to its session's home shard.
    pub fn open(&mut self, now: Instant) -> ConnId {
        self.register(now, self.shards > 1)
    }

    /// Registers a connection another shard handed to this one: it is served here.
    pub fn adopt(&mut self, now: Instant) -> ConnId {
        self.register(now, false)
    }

    fn register(&mut self, now: Instant, may_hand_off: bool) -> ConnId {
        self.now = now;
        let over_limit = self.conns.live() >= self.limits.max_connections;
        let id = self.conns.insert(Conn::new(now, over_limit, may_hand_off));
        self.arm_conn(id, now + self.limits.connect_timeout);
        self.counters.connections_opened += 1;
        id
    }

    /// Whether the shell should accept another socket: past the connection limit (and a
    /// few more, which get a CONNACK refusal) sockets are closed at once.
    pub fn accepts_sockets(&self) -> bool {
        self.conns.live() < self.limits.max_connections.saturating_add(REFUSAL_SLOTS)
    }

    /// Whether connection `id` is open here.
    pub fn has_connection(&self, id: ConnId) -> bool {
        self.conns.contains_key(&id)
    }

    /// The protocol version the connection speaks (3.1.1 until its CONNECT says).
    pub fn version(&self, id: ConnId) -> ProtocolVersion {
        self.conns
            .get(&id)
            .map_or(ProtocolVersion::V3_1_1, |c| c.link.version)
    }

    /// Whether the broker has decided to close this connection.
    pub fn is_closing(&self, id: ConnId) -> bool {
        self.conns.get(&id).is_none_or(|c| c.closing)
    }

    /// Whether the connection is to be closed at once, its output abandoned.
    pub fn is_aborted(&self, id: ConnId) -> bool {
        self.conns.get(&id).is_none_or(|c| c.aborted)
    }

    /// Whether, and how, the broker is closing the connection.
    pub fn closing_state(&self, id: ConnId) -> Closing {
        match self.conns.get(&id) {
            None => Closing::Abort,
            Some(c) if c.aborted => Closing::Abort,
            Some(c) if c.closing => Closing::Linger,
            Some(_) => Closing::No,
        }
    }

    /// Connections with bytes to write (or to close) since the last call.
    pub fn drain_flush_queue(&mut self, into: &mut Vec<ConnId>) {
        into.append(&mut self.flush_queue);
    }

    /// Takes the bytes encoded for `id`. They count against its write high-water mark until
    /// [`Broker::output_written`] reports them written.
    ///
    /// With persistence on, output whose records are not yet committed
    /// ([`Broker::committed`]) is not given out: `None`, and the connection is flushed again
    /// once they are.
    pub fn take_output(&mut self, id: ConnId) -> Option<Output> {
        if self.output_waits(id) {
            return None;
        }
        let conn = self.conns.get_mut(&id)?;
        conn.queued_for_flush = false;
        // Taken whole, so an idle connection keeps no buffer capacity.
        let bytes = std::mem::take(&mut conn.link.out);
        conn.link.unflushed += bytes.len();
        Some(Output {
            bytes,
            close: conn.closing,
        })
    }

    /// `n` bytes taken with [`Broker::take_output`] reached the socket (0 when the socket
    /// took nothing): room for more, and the clock on stalled output.
    pub fn output_written(&mut self, id: ConnId, n: usize, now: Instant) {
        self.now = now;
        let write_timeout = self.limits.write_timeout;
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.link.unflushed = conn.link.unflushed.saturating_sub(n);
        let progress = &mut conn.write;
        progress.written += n as u64;
        if progress
            .mark
            .is_some_and(|(target, _)| progress.written >= target)
        {
            progress.mark = None;
        }
        let pending = conn.link.unflushed + conn.link.out.len();
        let mut deadline = None;
        if progress.mark.is_none() && pending > 0 {
            let at = now + write_timeout;
            progress.mark = Some((progress.written + pending as u64, at));
            deadline = Some(at);
        }
        let session = conn.session;
        if let Some(at) = deadline {
            self.arm_conn(id, at);
        }
        if let Some(key) = session {
            if n > 0 {
                if let Some(session) = self.sessions.get_mut(&key) {
                    session.note_progress(now);
                }
            }
            self.pump(id, key);
        }
    }

    /// Up to `max` of the messages waiting for shard `to`, oldest first. Batches stay small
    /// so that the receiving shard can interleave them with writing to its clients.
    pub fn take_outbox(&mut self, to: usize, max: usize) -> Vec<ShardMsg> {
        self.router.take_outbox(to, max, self.journal_committed)
    }

    /// When the broker next has something to do by the clock.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    pub fn has_outbox(&self) -> bool {
        self.router.has_outbox(self.journal_committed)
    }

    /// Backlog figures for diagnostics: (messages queued in sessions, connections with bytes
    /// not yet written, bytes taken by writers and not yet written, outbox messages).
    pub fn backlog(&self) -> (usize, usize, usize, usize) {
        let queued = self.sessions.values().map(|s| s.queued_len()).sum();
        let pending_out = self
            .conns
            .values()
            .filter(|c| !c.link.out.is_empty())
            .count();
        let unflushed = self.conns.values().map(|c| c.link.unflushed).sum();
        (queued, pending_out, unflushed, self.outbox_len())
    }

    /// Messages waiting in all outboxes.
    pub fn outbox_len(&self) -> usize {
        self.router.outbox_len()
    }

    /// The server is stopping: 5.0 clients are told (0x8B), every connection closes.
    pub fn shutdown(&mut self) {
        let ids = self.conns.ids();
        for id in ids {
            self.disconnect(id, crate::protocol::ReasonCode::ServerShuttingDown);
        }
    }

    fn queue_flush(&mut self, id: ConnId) {
        if let Some(conn) = self.conns.get_mut(&id) {
            // What a durable session is sent now leaves after the records made so far are on
            // disk: among them those of the messages in it. A session that ends with its
            // connection waits only for its acks (`after_records`): its QoS 0 traffic goes
            // on while a full disk holds the store back.
            if self.journal.is_some()
                && conn
                    .session
                    .and_then(|key| self.sessions.get(&key))
                    .is_some_and(|s| s.durable)
            {
                conn.out_needs.set_records(self.journal_made);
            }
            if !conn.queued_for_flush {
                conn.queued_for_flush = true;
                self.flush_queue.push(id);
            }
        }
    }

    /// What `id` is sent from now on leaves once the records made so far are on disk: an
    /// ack that says "taken" (PUBACK, PUBREC, CONNACK) means on disk.
    fn after_records(&mut self, id: ConnId) {
        if self.journal.is_some() {
            if let Some(conn) = self.conns.get_mut(&id) {
                conn.out_needs.set_records(self.journal_made);
            }
        }
    }

    /// Marks the connection for closing once its pending bytes are written; its session
    /// goes on without it from now.
    fn close(&mut self, id: ConnId) {
        self.conns.mark_closing(id);
        self.detach(id);
        self.queue_flush(id);
    }

    /// Sends what the session has queued, as far as its window and the link allow; then,
    /// if there is room left, lets its retained backlog go on.
    fn pump(&mut self, id: ConnId, key: SessionKey) {
        let (Some(conn), Some(session)) = (self.conns.get_mut(&id), self.sessions.get_mut(&key))
        else {
            return;
        };
        if conn.closing {
            return;
        }
        let report = session.pump(&mut conn.link, &self.limits, self.now);
        if session.holding && !session.keeps_holding(&self.limits, self.now) {
            session.holding = false;
            self.eased = true;
        }
        if !session.retained.is_empty()
            && !session.retained_scheduled
            && session.ready_for_more(&conn.link, &self.limits)
        {
            session.retained_scheduled = true;
            self.retained_ready.push_back(key);
        }
        self.account_report(report);
        self.journal_deliveries(key);
        self.load_spilled(key);
        if !self.conns[&id].link.out.is_empty() {
            self.queue_flush(id);
        }
    }

    /// Reason String properties for an error ack, when the client allows them.
    fn problem(&self, id: ConnId, reason: &str) -> Properties {
        match self.conns.get(&id) {
            Some(c) if c.link.version.is_v5() && c.problem_information => PropertyValues {
                reason_string: Some(reason.into()),
                ..PropertyValues::default()
            }
            .into(),
            _ => Properties::default(),
        }
    }

    fn account(&mut self, outcome: DeliverOutcome) {
        match outcome {
            DeliverOutcome::Sent => self.counters.messages_sent += 1,
            DeliverOutcome::Queued => {}
            DeliverOutcome::DroppedOffline => self.counters.dropped_offline_qos0 += 1,
            DeliverOutcome::DroppedQueueFull => self.note_drop(|c| &mut c.dropped_queue_full),
            DeliverOutcome::DroppedTooLarge => self.note_drop(|c| &mut c.dropped_too_large),
            DeliverOutcome::DroppedExpired => self.note_drop(|c| &mut c.dropped_expired),
        }
    }

    fn account_report(&mut self, report: PumpReport) {
        self.counters.messages_sent += report.sent as u64;
        self.counters.sent.add(&report.traffic);
        self.counters.delivery_latency.add(&report.latency);
        self.note_drops(report.too_large, |c| &mut c.dropped_too_large);
        self.note_drops(report.expired, |c| &mut c.dropped_expired);
        self.note_drops(report.not_authorized, |c| &mut c.dropped_not_authorized);
    }

    fn note_drop(&mut self, counter: impl FnOnce(&mut Counters) -> &mut u64) {
        self.note_drops(1, counter);
    }

    /// Counts `n` dropped messages and logs, at most once a second, how many were dropped.
    fn note_drops(&mut self, n: usize, counter: impl FnOnce(&mut Counters) -> &mut u64) {
        if n == 0 {
            return;
        }
        *counter(&mut self.counters) += n as u64;
        if let Some(n) = self.logs.drops.record(n as u64, self.now) {
            tracing::warn!(
                shard = self.shard,
                dropped = n,
                queue_full_total = self.counters.dropped_queue_full,
                too_large_total = self.counters.dropped_too_large,
                expired_total = self.counters.dropped_expired,
                not_authorized_total = self.counters.dropped_not_authorized,
                session_expired_total = self.counters.dropped_session_expired,
                "messages dropped by limits or the ACL"
            );
        }
    }
}

/// Sockets beyond the connection limit that are still read, to refuse their CONNECT with a
/// reason the client can read; further ones are closed at once.
const REFUSAL_SLOTS: usize = 64;

/// The QoS a subscriber receives: the lower of the published and the granted QoS.
fn effective_qos(published: QoS, granted: QoS) -> QoS {
    published.min(granted)
}

#[cfg(test)]
mod tests;
