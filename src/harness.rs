//! Several shards of the broker core in one process, on one fake clock: the shell's moves
//! (exchanging outboxes between shards, writing output, the retained walk, clock ticks) done
//! by hand and deterministically, for tests and benches. quinn-proto's `Pair` is the model.
//!
//! Nothing moves between shards unless asked: [`Cluster::exchange`] runs one round of the
//! mesh, [`Cluster::settle`] runs it (and the retained walks) until all is quiet, so a test can
//! stop at any interleaving it wants to look at.
//!
//! ```
//! use ringmq::harness::{connect_packet, Cluster};
//! use ringmq::protocol::{Packet, ProtocolVersion::V3_1_1, Publish};
//!
//! let mut cluster = Cluster::new(2, Default::default());
//! let sub = cluster.connect(connect_packet("sub", V3_1_1, true));
//! cluster.subscribe(sub, "t/+", ringmq::protocol::QoS::AtMostOnce);
//! cluster.settle(); // the route is on every shard, and the SUBACK out
//! let publisher = cluster.connect(connect_packet("pub", V3_1_1, true));
//! cluster.send(publisher, Packet::Publish(Publish::new("t/1", b"hi")));
//! cluster.settle();
//! let got = cluster.packets(sub);
//! assert!(matches!(&got[..], [Packet::ConnAck(_), Packet::SubAck(_), Packet::Publish(_)]));
//! ```

use std::ops::{Index, IndexMut};
use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::core::{home_shard, Broker, ConnId, Limits, Receive};
use crate::protocol::{
    Connect, Decoder, Packet, ProtocolVersion, QoS, Subscribe, SubscribeFilter, SubscriptionOptions,
};

/// The shell's spill I/O (`server::spill_files`), with a map for files: carried out in
/// order until the broker asks nothing more.
fn spill_io(broker: &mut Broker, files: &mut ahash::AHashMap<(u32, u64), bytes::Bytes>) {
    use crate::core::spill::SpillIo;
    loop {
        let io = broker.take_spill_io();
        if io.is_empty() {
            return;
        }
        for op in io {
            match op {
                SpillIo::Write {
                    segment,
                    offset,
                    bytes,
                } => {
                    files.insert((segment, offset), bytes);
                }
                SpillIo::Read { token, ranges } => {
                    let frames = ranges
                        .iter()
                        .map_while(|r| files.get(&(r.segment, r.offset)).cloned())
                        .collect();
                    broker.spill_loaded(token, frames);
                }
                SpillIo::Remove { segment } => files.retain(|&(s, _), _| s != segment),
            }
        }
    }
}

/// Messages per mesh batch, as the shell sends them.
const MESH_BATCH: usize = 512;

/// Rounds of [`Cluster::settle`] after which the shards are taken to be ping-ponging forever.
const SETTLE_ROUNDS: usize = 10_000;

/// A connection of the cluster: the shard serving it and its id there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Client {
    pub shard: usize,
    pub conn: ConnId,
}

/// N shards and the clock they share.
#[derive(Debug)]
pub struct Cluster {
    shards: Vec<Broker>,
    now: Instant,
    flush_scratch: Vec<ConnId>,
    /// Each shard's spill files, by segment and offset (see [`Cluster::commit`]).
    spill_files: Vec<ahash::AHashMap<(u32, u64), bytes::Bytes>>,
}

impl Cluster {
    pub fn new(shards: usize, limits: Limits) -> Cluster {
        let now = Instant::now();
        // One board of route hints for every shard, as the server shares one.
        let hints = std::sync::Arc::new(crate::core::router::RouteHints::new(shards));
        Cluster {
            shards: (0..shards)
                .map(|s| {
                    Broker::new(s, shards, limits.clone(), now).with_route_hints(hints.clone())
                })
                .collect(),
            now,
            flush_scratch: Vec::new(),
            spill_files: vec![Default::default(); shards],
        }
    }

    /// Applies `setup` to every shard's broker (features, authentication, a shared quota).
    pub fn configure(mut self, mut setup: impl FnMut(Broker) -> Broker) -> Cluster {
        self.shards = self.shards.into_iter().map(&mut setup).collect();
        self
    }

    pub fn now(&self) -> Instant {
        self.now
    }

    pub fn len(&self) -> usize {
        self.shards.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }

    pub fn brokers(&self) -> impl Iterator<Item = &Broker> {
        self.shards.iter()
    }

    /// A socket accepted by `shard`, with nothing read from it yet.
    pub fn open(&mut self, shard: usize) -> Client {
        Client {
            shard,
            conn: self.shards[shard].open(self.now),
        }
    }

    /// Opens a connection on the home shard of the client id (shard 0 for an empty one) and
    /// hands it the CONNECT.
    pub fn connect(&mut self, connect: Connect) -> Client {
        let shard = match connect.client_id.is_empty() {
            true => 0,
            false => home_shard(connect.client_id.as_bytes(), self.shards.len()),
        };
        self.connect_on(shard, connect)
    }

    /// Opens a connection on `shard` and hands it the CONNECT, wherever its home is (as
    /// if the shell had handed it over already).
    pub fn connect_on(&mut self, shard: usize, connect: Connect) -> Client {
        let client = self.open(shard);
        self.send(client, Packet::Connect(Box::new(connect)));
        client
    }

    /// Hands `packet` to the shard serving `client`, as if just decoded.
    pub fn send(&mut self, client: Client, packet: Packet) {
        self.shards[client.shard].handle(client.conn, packet, self.now);
    }

    /// Hands the bytes read for `client` to the shard serving it; what it does not take (the
    /// start of a packet, or PUBLISHes while it holds the client back) stays in `buf`. A
    /// hand-off moves the connection (and every byte) to the home shard; the returned client
    /// is where it is served now.
    pub fn receive(&mut self, client: Client, buf: &mut BytesMut) -> Client {
        match self.shards[client.shard].receive(client.conn, buf, self.now) {
            Receive::Continue | Receive::Held => client,
            Receive::HandOff(home) => {
                let conn = self.shards[home].adopt(self.now);
                let moved = Client { shard: home, conn };
                self.shards[home].receive(conn, buf, self.now);
                moved
            }
        }
    }

    /// Subscribes `client` to one filter with packet id 1.
    pub fn subscribe(&mut self, client: Client, filter: &str, qos: QoS) {
        self.send(client, subscribe_packet(filter, qos));
    }

    /// Moves what each shard has for each other shard, once (one mesh round), except where
    /// the receiving shard holds that peer back ([`Broker::mesh_hold`]), as the shell does.
    pub fn exchange(&mut self) -> bool {
        let mut moved = false;
        for from in 0..self.shards.len() {
            for to in 0..self.shards.len() {
                if from == to || self.shards[to].mesh_hold(from, self.now).is_some() {
                    continue;
                }
                let batch = self.shards[from].take_outbox(to, MESH_BATCH);
                if !batch.is_empty() || self.shards[to].has_parked(from) {
                    moved = true;
                    self.shards[to].remote(from, batch, self.now);
                }
            }
        }
        moved
    }

    /// Runs every shard's retained walks (the shell's background task) to their end.
    pub fn walk_retained(&mut self) -> bool {
        let mut walked = false;
        for broker in &mut self.shards {
            while broker.has_retained_work() {
                broker.retained_step(self.now);
                walked = true;
            }
        }
        walked
    }

    /// Runs the mesh and the retained walks until nothing moves between shards any more.
    pub fn settle(&mut self) {
        for _ in 0..SETTLE_ROUNDS {
            let exchanged = self.exchange();
            if !(self.walk_retained() || exchanged) {
                return;
            }
        }
        panic!("the shards did not settle in {SETTLE_ROUNDS} rounds");
    }

    /// Everything written to `client` since the last call, taken as the shell's writer would
    /// take it (and reported written).
    pub fn output(&mut self, client: Client) -> BytesMut {
        let mut bytes = BytesMut::new();
        let broker = &mut self.shards[client.shard];
        loop {
            let Some(out) = broker.take_output(client.conn) else {
                return bytes;
            };
            let n = out.bytes.len();
            broker.output_written(client.conn, n, self.now);
            bytes.extend_from_slice(&out.bytes);
            if n == 0 {
                return bytes;
            }
        }
    }

    /// [`Cluster::output`], decoded in the client's protocol version.
    pub fn packets(&mut self, client: Client) -> Vec<Packet> {
        let mut bytes = self.output(client);
        let version = self.shards[client.shard].version(client.conn);
        let decoder = Decoder::new(version, u32::MAX);
        let mut packets = Vec::new();
        while let Some(packet) = decoder
            .decode(&mut bytes)
            .expect("the broker's output decodes")
        {
            packets.push(packet);
        }
        packets
    }

    /// The shell's flush after a read batch on `shard`: takes every connection's output and
    /// reports it written. Returns how many bytes that was.
    pub fn flush(&mut self, shard: usize) -> usize {
        let broker = &mut self.shards[shard];
        broker.drain_flush_queue(&mut self.flush_scratch);
        let mut total = 0;
        for id in self.flush_scratch.drain(..) {
            if let Some(out) = broker.take_output(id) {
                let n = out.bytes.len();
                broker.output_written(id, n, self.now);
                total += n;
            }
        }
        total
    }

    /// The durable store's part, as the shell does it: takes every shard's records and reports
    /// them on disk, so that the output waiting for them may leave. Returns the records.
    pub fn commit(&mut self) -> Vec<crate::core::store::Record> {
        let mut all = Vec::new();
        for (broker, files) in self.shards.iter_mut().zip(&mut self.spill_files) {
            spill_io(broker, files);
            let (records, through) = broker.take_records();
            all.extend(records);
            broker.committed(through);
        }
        all
    }

    /// The frames shard `shard`'s spill files hold now.
    pub fn spill_frames(&self, shard: usize) -> usize {
        self.spill_files[shard].len()
    }

    /// The frames at `ranges` of shard `shard`'s spill files.
    pub fn spill_frames_at(
        &self,
        shard: usize,
        ranges: &[crate::core::spill::SpillRange],
    ) -> Vec<bytes::Bytes> {
        ranges
            .iter()
            .filter_map(|r| self.spill_files[shard].get(&(r.segment, r.offset)).cloned())
            .collect()
    }

    /// Damages every frame in shard `shard`'s spill files (a flipped byte each).
    pub fn corrupt_spill_frames(&mut self, shard: usize) {
        for frame in self.spill_files[shard].values_mut() {
            let mut bytes = frame.to_vec();
            if let Some(last) = bytes.last_mut() {
                *last ^= 0xff;
            }
            *frame = bytes.into();
        }
    }

    /// [`Cluster::settle`] with the durable store's commits in between (output and messages
    /// to other shards wait for them), until nothing moves. Returns the records committed.
    pub fn settle_committed(&mut self) -> Vec<crate::core::store::Record> {
        let mut all = Vec::new();
        for _ in 0..SETTLE_ROUNDS {
            self.settle();
            let records = self.commit();
            let quiet = records.is_empty();
            all.extend(records);
            if !self.exchange() && quiet {
                return all;
            }
        }
        panic!("the shards did not settle in {SETTLE_ROUNDS} rounds");
    }

    /// Moves the clock on by `by` and ticks every shard.
    pub fn advance(&mut self, by: Duration) {
        self.advance_to(self.now + by);
    }

    /// Moves the clock to the earliest deadline of any shard and runs it; `None` when no shard
    /// has anything to do by the clock.
    pub fn advance_to_next_deadline(&mut self) -> Option<Instant> {
        let next = self.shards.iter().filter_map(Broker::next_deadline).min()?;
        self.advance_to(next.max(self.now));
        Some(next)
    }

    fn advance_to(&mut self, at: Instant) {
        self.now = at;
        for broker in &mut self.shards {
            broker.tick(at);
        }
    }
}

impl Index<usize> for Cluster {
    type Output = Broker;
    fn index(&self, shard: usize) -> &Broker {
        &self.shards[shard]
    }
}

impl IndexMut<usize> for Cluster {
    fn index_mut(&mut self, shard: usize) -> &mut Broker {
        &mut self.shards[shard]
    }
}

/// A SUBSCRIBE (packet id 1) to one filter.
pub fn subscribe_packet(filter: &str, qos: QoS) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: vec![SubscribeFilter {
            filter: filter.into(),
            options: SubscriptionOptions {
                qos,
                ..SubscriptionOptions::default()
            },
        }],
        ..Subscribe::default()
    })
}

/// A CONNECT with no will, credentials, keep alive or properties.
pub fn connect_packet(client_id: &str, version: ProtocolVersion, clean: bool) -> Connect {
    Connect {
        version,
        clean_start: clean,
        keep_alive: 0,
        client_id: client_id.into(),
        will: None,
        username: None,
        password: None,
        properties: Default::default(),
        bridge: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{encode, Publish};

    #[test]
    fn a_connection_accepted_on_the_wrong_shard_ends_up_at_home() {
        let mut cluster = Cluster::new(2, Limits::default());
        let id = (0..)
            .map(|n| format!("c{n}"))
            .find(|id| home_shard(id.as_bytes(), 2) == 1)
            .unwrap();
        let mut wire = BytesMut::new();
        let connect = connect_packet(&id, ProtocolVersion::V3_1_1, true);
        encode(
            &Packet::Connect(Box::new(connect)),
            ProtocolVersion::V3_1_1,
            &mut wire,
        )
        .unwrap();
        let accepted = cluster.open(0);
        let served = cluster.receive(accepted, &mut wire);
        assert_eq!(served.shard, 1);
        assert_eq!(cluster[0].connection_count(), 0);
        cluster.settle();
        assert!(matches!(cluster.packets(served)[..], [Packet::ConnAck(_)]));
    }

    #[test]
    fn a_subscription_on_one_shard_gets_a_publish_from_the_other() {
        let mut cluster = Cluster::new(2, Limits::default());
        let (a, b) = ids_on_both_shards();
        let sub = cluster.connect(connect_packet(&a, ProtocolVersion::V3_1_1, true));
        let publisher = cluster.connect(connect_packet(&b, ProtocolVersion::V3_1_1, true));
        assert_ne!(sub.shard, publisher.shard);
        cluster.subscribe(sub, "t", QoS::AtLeastOnce);
        assert!(
            matches!(cluster.packets(sub)[..], [Packet::ConnAck(_)]),
            "the SUBACK waits for the other shard"
        );
        cluster.settle();
        cluster.send(publisher, Packet::Publish(Publish::new("t", b"x")));
        cluster.settle();
        let got = cluster.packets(sub);
        assert!(
            matches!(&got[..], [Packet::SubAck(_), Packet::Publish(p)] if p.payload() == &b"x"[..]),
            "{got:?}"
        );
    }

    #[test]
    fn the_clock_runs_to_each_deadline_in_turn() {
        let mut cluster = Cluster::new(2, Limits::default());
        let silent = cluster.open(1);
        let start = cluster.now();
        let timeout = cluster[1].limits().connect_timeout;
        assert_eq!(cluster.advance_to_next_deadline(), Some(start + timeout));
        assert!(cluster[1].is_closing(silent.conn));
        let now = cluster.now();
        cluster[1].closed(silent.conn, now);
        assert_eq!(cluster.advance_to_next_deadline(), None);
    }

    fn ids_on_both_shards() -> (String, String) {
        let on = |shard| {
            (0..)
                .map(|n| format!("c{n}"))
                .find(|id| home_shard(id.as_bytes(), 2) == shard)
                .unwrap()
        };
        (on(0), on(1))
    }
}
