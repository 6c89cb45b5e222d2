//! Where messages go: this shard's subscription trie (filter -> local subscribers), its
//! replica of the route table (filter -> shards with subscribers), the outboxes to the other
//! shards, and the syncs of route changes on their way.
//!
//! One path for one shard and for many: a publish is matched against the route table, which
//! names this shard too; the outboxes and the syncs of a single shard simply stay empty.

mod hints;
mod outbox;
mod shared;
mod syncs;

use std::sync::Arc;

use ahash::AHashMap;

use super::features::SharedPolicy;
use super::filter::Filter;
use super::session::Subscription;
use super::sessions::SessionKey;
use super::shard_msg::ShardMsg;
use super::trie::Trie;
pub use hints::{Hint, RouteHints};
use outbox::Outbox;
pub use shared::{Room, SharedGroup};
use syncs::RouteSyncs;

/// The local subscribers of one topic filter.
#[derive(Debug, Default)]
struct Subscribers {
    plain: AHashMap<SessionKey, Subscription>,
    /// Shared groups on this topic filter, by their `$share/...` filter.
    shared: AHashMap<Filter, SharedGroup>,
}

impl Subscribers {
    fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.shared.is_empty()
    }
}

/// The route table's entry for one topic filter: which shards have subscribers.
#[derive(Debug, Default)]
struct Route {
    plain: u64,
    /// Shared groups on this topic filter -> shards with members.
    shared: AHashMap<Filter, u64>,
}

/// The shards a published topic is for.
#[derive(Debug, Default)]
pub struct Targets {
    /// Shards with plain subscribers, as a bit mask.
    pub plain: u64,
    /// Shared groups, each with the shards that have members.
    pub groups: Vec<(Filter, u64)>,
}

impl Targets {
    pub fn is_empty(&self) -> bool {
        self.plain == 0 && self.groups.is_empty()
    }
}

#[derive(Debug)]
pub struct Router {
    shard: usize,
    shards: usize,
    subscriptions: Trie<Subscribers>,
    routes: Trie<Route>,
    /// Round-robin position per shared group over shards.
    shared_turn: AHashMap<Filter, usize>,
    outbox: Vec<Outbox>,
    /// Records the shard has made so far: what is sent now leaves once they are on disk.
    needs: u64,
    syncs: RouteSyncs,
    /// Route adds posted for every shard at once (shared by the broker's shards).
    hints: Arc<RouteHints>,
    /// The number of this shard's last route change (add or remove).
    route_seq: u64,
    /// Per origin shard: the number of its last route change applied from the mesh.
    applied_seq: Vec<u64>,
    /// Adds applied from hints that the mesh has not brought yet: (filter, origin) -> number.
    hinted: AHashMap<(Filter, usize), u64>,
}

impl Router {
    /// The router of shard `shard` out of `shards` (at most 64: routes are bit masks).
    pub fn new(shard: usize, shards: usize) -> Router {
        assert!((1..=64).contains(&shards) && shard < shards);
        Router {
            shard,
            shards,
            subscriptions: Trie::default(),
            routes: Trie::default(),
            shared_turn: AHashMap::new(),
            outbox: (0..shards).map(|_| Outbox::default()).collect(),
            needs: 0,
            syncs: RouteSyncs::default(),
            hints: Arc::new(RouteHints::new(0)),
            route_seq: 0,
            applied_seq: vec![0; shards],
            hinted: AHashMap::new(),
        }
    }

    /// Shares the hints board with the other shards (see `hints`).
    pub fn share_hints(&mut self, hints: Arc<RouteHints>) {
        self.hints = hints;
    }

    pub fn shard(&self) -> usize {
        self.shard
    }

    fn others(&self) -> impl Iterator<Item = usize> {
        let me = self.shard;
        (0..self.shards).filter(move |&s| s != me)
    }

    // ---- local subscribers ------------------------------------------------------------

    /// Adds (or updates) a local subscription. True when it is this shard's first on the
    /// filter: its own route is in, and the other shards must hear of it ([`Router::announce`]).
    pub fn subscribe(&mut self, filter: &Filter, key: SessionKey, sub: Subscription) -> bool {
        let subscribers = self
            .subscriptions
            .get_or_insert_with(filter.topic_filter(), Subscribers::default);
        let first = match filter.is_shared() {
            false => subscribers.plain.insert(key, sub).is_none() && subscribers.plain.len() == 1,
            true => subscribers
                .shared
                .entry(filter.clone())
                .or_default()
                .join(key, sub),
        };
        if first {
            self.add_route(filter, self.shard);
        }
        first
    }

    /// Removes a local subscription. True when it was this shard's last on the filter: its
    /// own route is gone, and the other shards must hear of it ([`Router::withdraw`]).
    pub fn unsubscribe(&mut self, filter: &Filter, key: SessionKey) -> bool {
        let inner = filter.topic_filter();
        let Some(subscribers) = self.subscriptions.get_mut(inner) else {
            return false;
        };
        let last = match filter.is_shared() {
            false => subscribers.plain.remove(&key).is_some() && subscribers.plain.is_empty(),
            true => {
                let emptied = subscribers
                    .shared
                    .get_mut(filter)
                    .is_some_and(|group| group.leave(key));
                if emptied {
                    subscribers.shared.remove(filter);
                }
                emptied
            }
        };
        if subscribers.is_empty() {
            self.subscriptions.remove(inner);
        }
        if last {
            self.remove_route(filter, self.shard);
        }
        last
    }

    /// Visits this shard's subscriptions matching `topic`: each plain subscriber's (a
    /// session may come more than once, once per matching filter), and each shared group.
    pub fn for_each_local_match(
        &self,
        topic: &str,
        mut plain: impl FnMut(SessionKey, Subscription),
        mut group: impl FnMut(&Filter),
    ) {
        self.subscriptions.for_each_match(topic, |subscribers| {
            for (&key, &sub) in &subscribers.plain {
                plain(key, sub);
            }
            subscribers.shared.keys().for_each(&mut group);
        });
    }

    /// The members of shared group `group` on this shard.
    pub fn group(&self, group: &Filter) -> Option<&SharedGroup> {
        self.subscriptions
            .get(group.topic_filter())?
            .shared
            .get(group)
    }

    /// The members of shared group `group` on this shard, to pick one.
    pub fn group_mut(&mut self, group: &Filter) -> Option<&mut SharedGroup> {
        self.subscriptions
            .get_mut(group.topic_filter())?
            .shared
            .get_mut(group)
    }

    // ---- the route table ----------------------------------------------------------------

    /// The shards (this one included) with subscribers for `topic`.
    pub fn targets(&self, topic: &str) -> Targets {
        let mut targets = Targets::default();
        self.routes.for_each_match(topic, |route| {
            targets.plain |= route.plain;
            targets
                .groups
                .extend(route.shared.iter().map(|(g, mask)| (g.clone(), *mask)));
        });
        targets
    }

    /// The shards with members of shared group `group`.
    pub fn group_shards(&mut self, group: &Filter) -> u64 {
        self.routes
            .get_mut(group.topic_filter())
            .and_then(|r| r.shared.get(group).copied())
            .unwrap_or(0)
    }

    /// The shard (out of `mask`, not empty) whose members get the next message of `group`.
    pub fn pick_shard(
        &mut self,
        group: &Filter,
        mask: u64,
        policy: SharedPolicy,
        publisher: u64,
    ) -> usize {
        let candidates = mask.count_ones() as usize;
        let pick = match policy {
            SharedPolicy::Publisher => publisher as usize % candidates,
            SharedPolicy::RoundRobin => {
                let turn = self.shared_turn.entry(group.clone()).or_insert(0);
                *turn = turn.wrapping_add(1);
                *turn % candidates
            }
        };
        (0..self.shards)
            .filter(|s| mask & (1 << s) != 0)
            .nth(pick)
            .expect("pick < candidates")
    }

    /// `shard` has subscribers on `filter` now (as another shard said, or this one).
    pub fn add_route(&mut self, filter: &Filter, shard: usize) {
        let route = self
            .routes
            .get_or_insert_with(filter.topic_filter(), Route::default);
        match filter.is_shared() {
            false => route.plain |= 1 << shard,
            true => *route.shared.entry(filter.clone()).or_insert(0) |= 1 << shard,
        }
    }

    /// `shard` has no subscribers left on `filter`.
    pub fn remove_route(&mut self, filter: &Filter, shard: usize) {
        let inner = filter.topic_filter();
        let Some(route) = self.routes.get_mut(inner) else {
            return;
        };
        match filter.is_shared() {
            false => route.plain &= !(1 << shard),
            true => {
                if let Some(mask) = route.shared.get_mut(filter) {
                    *mask &= !(1 << shard);
                    if *mask == 0 {
                        route.shared.remove(filter);
                        self.shared_turn.remove(filter);
                    }
                }
            }
        }
        if route.plain == 0 && route.shared.is_empty() {
            self.routes.remove(inner);
        }
    }

    // ---- telling the other shards ---------------------------------------------------------

    /// Tells every other shard that this one now has subscribers on `filters`; returns the
    /// sync their acknowledgements complete.
    pub fn announce(&mut self, filters: Vec<Filter>) -> u64 {
        let sync = self.syncs.start(filters.len() * (self.shards - 1));
        for filter in &filters {
            self.route_seq += 1;
            let seq = self.route_seq;
            for to in self.others() {
                self.hints.post(
                    to,
                    Hint {
                        filter: filter.clone(),
                        shard: self.shard,
                        seq,
                    },
                );
                self.push(
                    to,
                    ShardMsg::RouteAdd {
                        filter: filter.clone(),
                        shard: self.shard,
                        sync,
                        seq,
                    },
                );
            }
        }
        self.syncs.adding(sync, &filters);
        sync
    }

    /// Tells every other shard that this one has no subscribers left on `filters`; returns
    /// the sync their acknowledgements complete.
    pub fn withdraw(&mut self, filters: Vec<Filter>) -> u64 {
        let sync = self.syncs.start(filters.len() * (self.shards - 1));
        for filter in filters {
            self.withdraw_with(filter, sync);
        }
        sync
    }

    /// [`Router::withdraw`] for one filter, with no acknowledgement asked (an ended session:
    /// no one waits for a reply).
    pub fn withdraw_quietly(&mut self, filter: Filter) {
        self.withdraw_with(filter, 0);
    }

    fn withdraw_with(&mut self, filter: Filter, sync: u64) {
        self.syncs.removing(&filter);
        self.route_seq += 1;
        let seq = self.route_seq;
        for to in self.others() {
            self.push(
                to,
                ShardMsg::RouteRemove {
                    filter: filter.clone(),
                    shard: self.shard,
                    sync,
                    seq,
                },
            );
        }
    }

    /// Whether route adds were hinted to this shard since it last looked: one atomic load.
    pub fn has_hints(&self) -> bool {
        self.hints.pending(self.shard)
    }

    /// Applies the route adds hinted to this shard that the mesh has not brought yet.
    pub fn apply_hints(&mut self) {
        for hint in self.hints.take(self.shard) {
            if hint.seq <= self.applied_seq[hint.shard] {
                continue; // The mesh brought it (and maybe more) already.
            }
            self.add_route(&hint.filter, hint.shard);
            let seen = self.hinted.entry((hint.filter, hint.shard)).or_insert(0);
            *seen = (*seen).max(hint.seq);
        }
    }

    /// Shard `origin`'s route change number `seq` from the mesh: it has subscribers on
    /// `filter` now.
    pub fn route_added(&mut self, filter: &Filter, origin: usize, seq: u64) {
        self.applied_seq[origin] = seq;
        self.add_route(filter, origin);
        self.forget_hint(filter, origin, seq);
    }

    /// Shard `origin`'s route change number `seq` from the mesh: no subscribers left on
    /// `filter`, unless a later add of it was hinted already.
    pub fn route_removed(&mut self, filter: &Filter, origin: usize, seq: u64) {
        self.applied_seq[origin] = seq;
        if self.forget_hint(filter, origin, seq) {
            self.remove_route(filter, origin);
        }
    }

    /// Drops the hint of `filter` from `origin` that the mesh caught up with at `seq`; false
    /// while a later hinted add stands.
    fn forget_hint(&mut self, filter: &Filter, origin: usize, seq: u64) -> bool {
        if self.hinted.is_empty() {
            return true;
        }
        let key = (filter.clone(), origin);
        match self.hinted.get(&key) {
            Some(&hinted) if hinted > seq => false,
            Some(_) => {
                self.hinted.remove(&key);
                true
            }
            None => true,
        }
    }

    /// A barrier to every other shard: its sync completes once each has applied everything
    /// this shard sent it before. None with no other shard.
    pub fn barrier(&mut self) -> Option<u64> {
        if self.shards == 1 {
            return None;
        }
        let sync = self.syncs.start(self.shards - 1);
        for to in self.others() {
            self.push(to, ShardMsg::Barrier { sync });
        }
        Some(sync)
    }

    /// Tells shard `to` that a change it asked to hear about (`sync` non-zero) is in.
    pub fn acknowledge(&mut self, to: usize, sync: u64) {
        if sync != 0 {
            self.push(to, ShardMsg::RouteAck { sync });
        }
    }

    /// Another shard acknowledged `sync`; true when that was the last acknowledgement.
    pub fn acknowledged(&mut self, sync: u64) -> bool {
        self.syncs.acknowledged(sync)
    }

    pub fn sync_pending(&self, sync: u64) -> bool {
        self.syncs.is_pending(sync)
    }

    /// The sync of a RouteAdd for `filter` still on its way to some shard.
    pub fn add_in_flight(&self, filter: &Filter) -> Option<u64> {
        self.syncs.add_in_flight(filter)
    }

    // ---- the outboxes -----------------------------------------------------------------------

    pub fn send(&mut self, to: usize, msg: ShardMsg) {
        self.push(to, msg);
    }

    fn push(&mut self, to: usize, msg: ShardMsg) {
        let needs = if msg.waits_for_records() {
            self.needs
        } else {
            0
        };
        self.outbox[to].push(msg, needs);
    }

    /// Sends `msg` to every other shard.
    pub fn broadcast(&mut self, msg: ShardMsg) {
        for to in self.others() {
            self.push(to, msg.clone());
        }
    }

    /// Tells shard `to` that the durable deliveries it sent are committed here through
    /// `through` (see `broker::commit`).
    pub fn send_durable_ack(&mut self, to: usize, through: u64) {
        self.outbox[to].durable_ack(through);
    }

    /// Tells shard `to` that the message it passed on with `token` is on disk (see
    /// `broker::commit`).
    pub fn send_pass_on_committed(&mut self, to: usize, token: u64) {
        self.outbox[to].pass_on_committed(token);
    }

    /// The shard has made `records` records (persistence on): messages sent from now on wait
    /// for them to be committed.
    pub fn records_made(&mut self, records: u64) {
        self.needs = records;
    }

    /// Up to `max` of the messages waiting for shard `to`, oldest first, of those that may
    /// leave with `committed` records on disk.
    pub fn take_outbox(&mut self, to: usize, max: usize, committed: u64) -> Vec<ShardMsg> {
        self.outbox[to].take(max, committed)
    }

    /// Messages waiting in all outboxes.
    pub fn outbox_len(&self) -> usize {
        self.outbox.iter().map(Outbox::len).sum()
    }

    /// Whether some outbox has messages that may leave with `committed` records on disk.
    pub fn has_outbox(&self, committed: u64) -> bool {
        self.outbox.iter().any(|o| o.releasable(committed) > 0)
    }

    // ---- figures ----------------------------------------------------------------------------

    /// Topic filters in the local trie.
    pub fn subscription_filters(&self) -> usize {
        self.subscriptions.len()
    }

    /// Topic filters in the route table.
    pub fn route_filters(&self) -> usize {
        self.routes.len()
    }

    /// Route changes and barriers not yet acknowledged by every shard.
    pub fn pending_syncs(&self) -> usize {
        self.syncs.pending()
    }
}

#[cfg(test)]
mod tests;
