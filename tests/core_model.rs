//! A property test of the sans-IO core (issue 9): random sequences of packets from several
//! clients against two in-process shards, with the mesh and the clock driven by the test.
//!
//! Clients: plain subscribers, members of a shared group, publishers, and hostile clients that
//! send garbage. Steps: connects (clean or not, 3.1.1 or 5.0 with a session expiry), clean and
//! abrupt disconnects, takeovers, subscribes and unsubscribes, QoS 1 and 2 publishes, deep
//! topics, garbage bytes, acks that come late, mesh deliveries and clock steps.
//!
//! What must hold:
//! - nothing panics;
//! - every QoS 1/2 message the broker acknowledged, for every session (or shared group) that
//!   had a confirmed subscription to it, reaches that client, or is counted as dropped;
//! - once every client has come back with a clean session and left, no session, subscription,
//!   route, connection or pending reply is left on either shard.
//!
//! `PROPTEST_CASES` sets the number of cases (default 64); the long run in the note
//! used `PROPTEST_CASES=200000`.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use ringmq::core::{home_shard, Broker, ConnId, Limits};
use ringmq::harness::Cluster;
use ringmq::protocol::*;

const SHARDS: usize = 2;
const TOPICS: [&str; 3] = ["t/a", "t/b", "u/c"];
const PLAIN_FILTERS: [&str; 5] = ["t/#", "t/+", "t/a", "#", "u/c"];
const GROUP_FILTER: &str = "$share/g/t/#";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Subscriber,
    Member,
    Publisher,
    Hostile,
}

/// Who a message is owed to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Owed {
    Session(usize),
    Group,
}

#[derive(Debug, Clone)]
enum Step {
    Connect {
        client: usize,
        clean: bool,
        v5: bool,
    },
    Disconnect {
        client: usize,
        graceful: bool,
    },
    Subscribe {
        client: usize,
        filter: usize,
        qos: u8,
    },
    Unsubscribe {
        client: usize,
        filter: usize,
    },
    Publish {
        client: usize,
        topic: usize,
        qos: u8,
    },
    Deep {
        client: usize,
    },
    Garbage {
        client: usize,
        bytes: Vec<u8>,
    },
    Ack {
        client: usize,
    },
    Mesh,
    Tick {
        millis: u64,
    },
}

struct Client {
    id: String,
    role: Role,
    home: usize,
    conn: Option<ConnId>,
    version: ProtocolVersion,
    /// Session expiry the current session was made with (0: ends with the connection).
    expiry: u32,
    inbox: BytesMut,
    next_pid: u16,
    /// Acks owed to the broker, sent at the next `Ack` step.
    acks: Vec<Packet>,
    /// Subscriptions whose SUBACK granted QoS 1 or 2.
    confirmed: HashSet<String>,
    pending_subs: HashMap<u16, String>,
    /// Our publishes awaiting PUBACK / PUBREC: packet id -> (message, who it is owed to).
    unacked: HashMap<u16, (u32, Vec<Owed>)>,
    /// The session lives on while offline until then (5.0 expiry).
    offline_until: Option<Instant>,
    /// Bytes sent that the broker has not taken yet (it holds back the PUBLISHes of a
    /// publisher whose subscriber is behind): they go in again at every step.
    outbox: BytesMut,
    /// The packets in `outbox`, oldest first: their length, and the packet id of a QoS 1/2
    /// PUBLISH (whose subscribers are those when the broker takes it, not when it was sent).
    in_outbox: std::collections::VecDeque<(usize, Option<u16>)>,
}

struct World {
    shards: Cluster,
    now: Instant,
    clients: Vec<Client>,
    next_message: u32,
    owed: HashSet<(u32, Owed)>,
    received: HashSet<(u32, Owed)>,
    /// The topic of each message.
    topics: HashMap<u32, &'static str>,
    /// In the last phase, when every client leaves for good.
    leaving: bool,
    /// Persistence on, with spilled queues: the store commits at every step.
    durable: bool,
}

impl World {
    fn new(limits: Limits, durable: bool) -> World {
        let mut shards = Cluster::new(SHARDS, limits);
        if durable {
            shards = shards.configure(|b| b.with_journal().with_spill());
        }
        let now = shards.now();
        let roles = [
            Role::Subscriber,
            Role::Subscriber,
            Role::Subscriber,
            Role::Member,
            Role::Member,
            Role::Publisher,
            Role::Publisher,
            Role::Hostile,
        ];
        let clients = roles
            .iter()
            .enumerate()
            .map(|(i, &role)| {
                let id = format!("c{i}");
                Client {
                    home: home_shard(id.as_bytes(), SHARDS),
                    id,
                    role,
                    conn: None,
                    version: ProtocolVersion::V3_1_1,
                    expiry: 0,
                    inbox: BytesMut::new(),
                    next_pid: 0,
                    acks: Vec::new(),
                    confirmed: HashSet::new(),
                    pending_subs: HashMap::new(),
                    unacked: HashMap::new(),
                    offline_until: None,
                    outbox: BytesMut::new(),
                    in_outbox: Default::default(),
                }
            })
            .collect();
        World {
            shards,
            now,
            clients,
            next_message: 1,
            owed: HashSet::new(),
            received: HashSet::new(),
            topics: HashMap::new(),
            leaving: false,
            durable,
        }
    }

    fn pid(&mut self, c: usize) -> u16 {
        let client = &mut self.clients[c];
        client.next_pid = client.next_pid % 60_000 + 1;
        client.next_pid
    }

    /// Sends a packet as bytes, as a socket would: what the broker does not take yet stays in
    /// the client's outbox, in order.
    fn send(&mut self, c: usize, packet: Packet) {
        let client = &mut self.clients[c];
        if client.conn.is_none() {
            return;
        }
        let version = match &packet {
            Packet::Connect(connect) => connect.version,
            _ => client.version,
        };
        let before = client.outbox.len();
        if encode(&packet, version, &mut client.outbox).is_err() {
            return;
        }
        let pid = match &packet {
            Packet::Publish(p) if p.qos != QoS::AtMostOnce => Some(p.packet_id),
            _ => None,
        };
        let len = client.outbox.len() - before;
        client.in_outbox.push_back((len, pid));
        self.push(c);
    }

    /// Hands the broker what the client's outbox holds.
    fn push(&mut self, c: usize) {
        let client = &mut self.clients[c];
        let Some(conn) = client.conn else {
            return;
        };
        let target = ringmq::harness::Client {
            shard: client.home,
            conn,
        };
        let mut outbox = std::mem::take(&mut client.outbox);
        let before = outbox.len();
        self.shards.receive(target, &mut outbox);
        let mut taken = before - outbox.len();
        self.clients[c].outbox = outbox;
        // The PUBLISHes the broker took just now are owed to whoever is subscribed now.
        while let Some(&(len, pid)) = self.clients[c].in_outbox.front() {
            if len > taken {
                break;
            }
            taken -= len;
            self.clients[c].in_outbox.pop_front();
            let Some(pid) = pid else { continue };
            let Some(&(message, _)) = self.clients[c].unacked.get(&pid) else {
                continue;
            };
            let owed = self.owed_for(self.topics[&message]);
            self.clients[c].unacked.insert(pid, (message, owed));
        }
    }

    fn step(&mut self, step: Step) {
        match step {
            Step::Connect { client, clean, v5 } => self.connect(client, clean, v5),
            Step::Disconnect { client, graceful } => {
                let Some(conn) = self.clients[client].conn else {
                    return;
                };
                if graceful {
                    self.send(client, Packet::Disconnect(Disconnect::default()));
                }
                let home = self.clients[client].home;
                self.shards[home].closed(conn, self.now);
                self.gone(client);
            }
            Step::Subscribe {
                client,
                filter,
                qos,
            } => {
                let Some(filter) = self.filter_for(client, filter) else {
                    return;
                };
                let pid = self.pid(client);
                self.clients[client]
                    .pending_subs
                    .insert(pid, filter.to_string());
                let options = SubscriptionOptions {
                    qos: QoS::from_u8(qos).unwrap(),
                    ..Default::default()
                };
                self.send(
                    client,
                    Packet::Subscribe(Subscribe {
                        packet_id: pid,
                        filters: vec![SubscribeFilter {
                            filter: filter.into(),
                            options,
                        }],
                        ..Default::default()
                    }),
                );
            }
            Step::Unsubscribe { client, filter } => {
                let Some(filter) = self.filter_for(client, filter) else {
                    return;
                };
                // No longer owed anything new from the moment it is sent, whatever SUBACK for
                // it is still to come; what was published before and has not reached the
                // client may be dropped too (MQTT 3.10.4: only deliveries already started
                // must complete).
                self.clients[client].confirmed.remove(filter);
                self.clients[client].pending_subs.retain(|_, f| f != filter);
                self.release_owed(client, filter);
                let pid = self.pid(client);
                self.send(
                    client,
                    Packet::Unsubscribe(Unsubscribe {
                        packet_id: pid,
                        filters: vec![filter.into()],
                        ..Default::default()
                    }),
                );
            }
            Step::Publish { client, topic, qos } => {
                if self.clients[client].role != Role::Publisher
                    || self.clients[client].conn.is_none()
                {
                    return;
                }
                let topic = TOPICS[topic % TOPICS.len()];
                let message = self.next_message;
                self.next_message += 1;
                let owed = self.owed_for(topic);
                self.topics.insert(message, topic);
                let pid = self.pid(client);
                self.clients[client].unacked.insert(pid, (message, owed));
                let qos = QoS::from_u8(qos).unwrap();
                let publish = Publish::new(topic, &message.to_be_bytes()).with_qos(qos, pid);
                self.send(client, Packet::Publish(publish));
            }
            Step::Deep { client } => {
                let topic = vec!["d"; 200].join("/");
                self.send(client, Packet::Publish(Publish::new(&topic, b"deep")));
            }
            Step::Garbage { client, bytes } => {
                if self.clients[client].role != Role::Hostile {
                    return;
                }
                let Some(conn) = self.clients[client].conn else {
                    return;
                };
                let home = self.clients[client].home;
                let broker = &mut self.shards[home];
                let mut buf = BytesMut::from(&bytes[..]);
                broker.receive(conn, &mut buf, self.now);
            }
            Step::Ack { client } => {
                let acks = std::mem::take(&mut self.clients[client].acks);
                for ack in acks {
                    self.send(client, ack);
                }
            }
            Step::Mesh => self.mesh(),
            Step::Tick { millis } => {
                self.shards.advance(Duration::from_millis(millis));
                self.now = self.shards.now();
                let now = self.now;
                for client in &mut self.clients {
                    if client.offline_until.is_some_and(|at| at <= now) {
                        client.offline_until = None;
                        client.confirmed.clear();
                    }
                }
            }
        }
        self.pump();
    }

    /// The filter a connected subscriber or group member subscribes to for choice `n`.
    fn filter_for(&self, client: usize, n: usize) -> Option<&'static str> {
        let c = &self.clients[client];
        c.conn?;
        match c.role {
            Role::Subscriber => Some(PLAIN_FILTERS[n % PLAIN_FILTERS.len()]),
            Role::Member => Some(GROUP_FILTER),
            _ => None,
        }
    }

    fn connect(&mut self, c: usize, clean: bool, v5: bool) {
        if !self.leaving && self.clients[c].conn.is_some() && self.clients[c].role == Role::Hostile
        {
            return;
        }
        // A group member keeps its session, so that what the group gave it is its to read (a
        // clean start may discard a QoS 2 message already sent to it, by the client's choice).
        let clean = clean && (self.leaving || self.clients[c].role != Role::Member);
        let expiry = if v5 && !clean { 30 } else { 0 };
        if clean {
            // What the old session still held is discarded at the client's request.
            self.clients[c].confirmed.clear();
            self.owed.retain(|(_, owed)| *owed != Owed::Session(c));
            // Also what it would be owed once a PUBACK still on its way (waiting for the
            // store's commit) comes.
            for other in &mut self.clients {
                for (_, owed) in other.unacked.values_mut() {
                    owed.retain(|o| *o != Owed::Session(c));
                }
            }
        }
        let client = &mut self.clients[c];
        if let Some(old) = client.conn.take() {
            // The old connection goes first (as if its socket had died), then the new one
            // connects.
            let home = client.home;
            self.shards[home].closed(old, self.now);
            self.gone(c);
        }
        let version = if v5 {
            ProtocolVersion::V5
        } else {
            ProtocolVersion::V3_1_1
        };
        let persistent = !clean && (!v5 || expiry > 0);
        let client = &mut self.clients[c];
        client.version = version;
        client.expiry = if persistent { expiry.max(1) } else { 0 };
        client.offline_until = None;
        client.inbox.clear();
        client.acks.clear();
        client.unacked.clear();
        client.pending_subs.clear();
        let conn = self.shards[client.home].open(self.now);
        client.conn = Some(conn);
        let connect = Connect {
            version,
            clean_start: clean,
            keep_alive: 60,
            client_id: client.id.as_str().into(),
            will: None,
            username: None,
            password: None,
            properties: if v5 {
                PropertyValues {
                    session_expiry_interval: Some(expiry),
                    receive_maximum: Some(4),
                    ..Default::default()
                }
                .into()
            } else {
                Default::default()
            },
            bridge: false,
        };
        self.send(c, Packet::Connect(Box::new(connect)));
    }

    /// The client's connection is gone: its session lives on if it was persistent.
    fn gone(&mut self, c: usize) {
        let now = self.now;
        let client = &mut self.clients[c];
        client.conn = None;
        // Unread bytes die with the socket; none of them was acknowledged.
        client.outbox.clear();
        client.in_outbox.clear();
        client.unacked.clear();
        client.pending_subs.clear();
        client.acks.clear();
        match (client.version, client.expiry) {
            (_, 0) => client.confirmed.clear(),
            (ProtocolVersion::V5, secs) => {
                client.offline_until = Some(now + Duration::from_secs(secs.into()))
            }
            _ => {}
        }
    }

    /// After `client` unsubscribed from `filter`: what it is owed only through that filter
    /// is owed no more.
    fn release_owed(&mut self, client: usize, filter: &str) {
        let role = self.clients[client].role;
        let still_member = self
            .clients
            .iter()
            .any(|c| c.role == Role::Member && !c.confirmed.is_empty());
        let confirmed = self.clients[client].confirmed.clone();
        let topics = &self.topics;
        let keep = |message: u32, owed: &Owed| {
            let topic = topics[&message];
            match owed {
                Owed::Session(c) if *c == client => {
                    !topic::matches(filter, topic)
                        || confirmed.iter().any(|f| topic::matches(f, topic))
                }
                Owed::Group if role == Role::Member => still_member,
                _ => true,
            }
        };
        self.owed.retain(|(message, owed)| keep(*message, owed));
        // Also what would be owed once a PUBACK still on its way (waiting for the store's
        // commit) comes.
        for other in &mut self.clients {
            for (message, owed) in other.unacked.values_mut() {
                owed.retain(|o| keep(*message, o));
            }
        }
    }

    /// The sessions and group a QoS 1/2 message on `topic` is owed to now.
    fn owed_for(&self, topic: &str) -> Vec<Owed> {
        let mut owed = Vec::new();
        let mut group = false;
        for (i, client) in self.clients.iter().enumerate() {
            for filter in &client.confirmed {
                match client.role {
                    Role::Subscriber if topic::matches(filter, topic) => {
                        owed.push(Owed::Session(i));
                        break;
                    }
                    Role::Member if topic::matches("t/#", topic) => group = true,
                    _ => {}
                }
            }
        }
        if group {
            owed.push(Owed::Group);
        }
        owed
    }

    /// Moves every shard's output to its clients, as the shell would.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            if self.durable {
                self.shards.commit();
            }
            self.shards.walk_retained();
            for c in 0..self.clients.len() {
                let Some(conn) = self.clients[c].conn else {
                    continue;
                };
                let home = self.clients[c].home;
                let Some(out) = self.shards[home].take_output(conn) else {
                    if self.shards[home].has_connection(conn) {
                        // Waiting for another shard's commit of its publishes.
                        continue;
                    }
                    self.gone(c);
                    continue;
                };
                let n = out.bytes.len();
                moved |= n > 0;
                self.shards[home].output_written(conn, n, self.now);
                self.clients[c].inbox.extend_from_slice(&out.bytes);
                self.read_inbox(c);
                if out.close {
                    self.shards[home].closed(conn, self.now);
                    self.gone(c);
                }
            }
            if !moved {
                return;
            }
        }
    }

    fn mesh(&mut self) {
        self.shards.exchange();
        if self.durable {
            self.shards.commit();
        }
    }

    fn read_inbox(&mut self, c: usize) {
        let decoder = Decoder::new(self.clients[c].version, u32::MAX);
        let mut inbox = std::mem::take(&mut self.clients[c].inbox);
        while let Ok(Some(packet)) = decoder.decode(&mut inbox) {
            self.on_packet(c, packet);
        }
        self.clients[c].inbox = inbox;
    }

    fn on_packet(&mut self, c: usize, packet: Packet) {
        match packet {
            Packet::SubAck(ack) => {
                if let Some(filter) = self.clients[c].pending_subs.remove(&ack.packet_id) {
                    if matches!(
                        ack.codes[0],
                        ReasonCode::GrantedQoS1 | ReasonCode::GrantedQoS2
                    ) {
                        self.clients[c].confirmed.insert(filter);
                    }
                }
            }
            Packet::Publish(p) => {
                if let Ok(id) = <[u8; 4]>::try_from(p.payload()) {
                    let owed = match self.clients[c].role {
                        Role::Member => Owed::Group,
                        _ => Owed::Session(c),
                    };
                    self.received.insert((u32::from_be_bytes(id), owed));
                }
                let ack = match p.qos {
                    QoS::AtMostOnce => None,
                    QoS::AtLeastOnce => Some(Packet::PubAck(Ack::new(p.packet_id))),
                    QoS::ExactlyOnce => Some(Packet::PubRec(Ack::new(p.packet_id))),
                };
                self.clients[c].acks.extend(ack);
            }
            Packet::PubRel(ack) => self.clients[c]
                .acks
                .push(Packet::PubComp(Ack::new(ack.packet_id))),
            Packet::PubAck(ack) => self.accepted(c, &ack),
            Packet::PubRec(ack) => {
                self.accepted(c, &ack);
                self.clients[c]
                    .acks
                    .push(Packet::PubRel(Ack::new(ack.packet_id)));
            }
            _ => {}
        }
    }

    /// The broker acknowledged one of our publishes: from now on it owes the message.
    fn accepted(&mut self, c: usize, ack: &Ack) {
        if let Some((message, owed)) = self.clients[c].unacked.remove(&ack.packet_id) {
            if !ack.reason.is_error() {
                for o in owed {
                    self.owed.insert((message, o));
                }
            }
        }
    }

    /// Everyone with a session comes back and reads everything there is.
    fn drain(&mut self) {
        for c in 0..self.clients.len() {
            let persistent = self.clients[c].expiry > 0
                && (self.clients[c].conn.is_some()
                    || self.clients[c].version == ProtocolVersion::V3_1_1
                    || self.clients[c].offline_until.is_some());
            if persistent && self.clients[c].conn.is_none() {
                let v5 = self.clients[c].version.is_v5();
                self.connect(c, false, v5);
            }
        }
        for _ in 0..10_000 {
            for c in 0..self.clients.len() {
                self.push(c);
            }
            self.mesh();
            self.pump();
            let mut acked = false;
            for c in 0..self.clients.len() {
                acked |= !self.clients[c].acks.is_empty();
                self.step(Step::Ack { client: c });
            }
            let unsent = self
                .clients
                .iter()
                .any(|c| c.conn.is_some() && !c.outbox.is_empty());
            if !acked && !unsent && !self.shards.brokers().any(Broker::has_outbox) {
                return;
            }
        }
        panic!("the brokers never went quiet");
    }

    fn dropped(&self) -> u64 {
        self.shards
            .brokers()
            .map(|b| b.counters.dropped() - b.counters.dropped_offline_qos0)
            .sum()
    }

    /// Every client comes back with a clean session, then leaves.
    fn leave(&mut self) {
        self.leaving = true;
        for c in 0..self.clients.len() {
            self.connect(c, true, c % 2 == 0);
            self.pump();
        }
        self.mesh();
        self.pump();
        for c in 0..self.clients.len() {
            self.step(Step::Disconnect {
                client: c,
                graceful: true,
            });
        }
        for _ in 0..4 {
            self.mesh();
            self.pump();
        }
    }
}

fn step() -> impl Strategy<Value = Step> {
    let client = 0usize..8;
    prop_oneof![
        3 => (client.clone(), any::<bool>(), any::<bool>())
            .prop_map(|(client, clean, v5)| Step::Connect { client, clean, v5 }),
        1 => (client.clone(), any::<bool>())
            .prop_map(|(client, graceful)| Step::Disconnect { client, graceful }),
        3 => (client.clone(), 0usize..5, 1u8..=2)
            .prop_map(|(client, filter, qos)| Step::Subscribe { client, filter, qos }),
        1 => (client.clone(), 0usize..5)
            .prop_map(|(client, filter)| Step::Unsubscribe { client, filter }),
        6 => (client.clone(), 0usize..3, 1u8..=2)
            .prop_map(|(client, topic, qos)| Step::Publish { client, topic, qos }),
        1 => client.clone().prop_map(|client| Step::Deep { client }),
        1 => (client.clone(), proptest::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(client, bytes)| Step::Garbage { client, bytes }),
        3 => client.prop_map(|client| Step::Ack { client }),
        3 => Just(Step::Mesh),
        2 => prop_oneof![Just(0u64), Just(100), Just(1_000), Just(10_000), Just(40_000)]
            .prop_map(|millis| Step::Tick { millis }),
    ]
}

fn limits() -> impl Strategy<Value = Limits> {
    (
        prop_oneof![Just(3usize), Just(10_000)],
        prop_oneof![Just(2u16), Just(256)],
        prop_oneof![Just(1usize), Just(2), Just(1000)],
    )
        .prop_map(
            |(max_queued_messages, max_inflight, max_queued_in_memory)| Limits {
                max_queued_messages,
                max_inflight,
                max_queued_in_memory,
                ..Limits::default()
            },
        )
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn the_core_keeps_its_promises_under_any_sequence(
        limits in limits(),
        durable in any::<bool>(),
        steps in proptest::collection::vec(step(), 1..120),
    ) {
        let mut world = World::new(limits, durable);
        // A hostile client is always connected, for the garbage to reach.
        world.step(Step::Connect { client: 7, clean: true, v5: true });
        for s in steps {
            world.step(s);
        }
        world.drain();
        let missing: Vec<&(u32, Owed)> = world.owed.difference(&world.received).collect();
        let dropped = world.dropped();
        prop_assert!(
            missing.len() as u64 <= dropped,
            "{} acknowledged deliveries neither arrived nor were counted as dropped \
             ({dropped} dropped): {:?}",
            missing.len(),
            missing
        );
        world.leave();
        for (shard, broker) in world.shards.brokers().enumerate() {
            let census = broker.census();
            prop_assert_eq!(
                census,
                ringmq::core::Census::default(),
                "shard {} holds state after every client left",
                shard
            );
        }
    }
}

#[test]
fn payloads_are_message_numbers() {
    // The model reads a PUBLISH's payload as its message number.
    let p = Publish::new("t/a", &7u32.to_be_bytes());
    assert_eq!(
        Bytes::copy_from_slice(p.payload()),
        Bytes::from_static(&[0, 0, 0, 7])
    );
}
