//! One client's session: its subscriptions and the outgoing half of the QoS 1/2 flows — packet
//! ids, the inflight window, the queue behind it, resend with DUP after a reconnect — plus the
//! packet ids of incoming QoS 2 messages awaiting PUBREL.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytestring::ByteString;

use super::acl::ClientAcl;
use super::filter::Filter;
use super::limits::Limits;
pub use super::link::Link;
use super::link::Unsent;
use super::message::{Delivery, Message, SharedMessage};
use super::spill::SpilledDelivery;
use super::store::Owing;
use super::{SmallMap, SmallSet};
use crate::protocol::{PacketType, QoS, SubscriptionOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AwaitingFromClient {
    /// QoS 1: PUBACK; QoS 2: PUBREC.
    Ack,
    /// QoS 2 after PUBREC: PUBCOMP.
    Complete,
}

#[derive(Debug)]
struct Inflight {
    packet_id: u16,
    delivery: Delivery,
    awaiting: AwaitingFromClient,
    /// When its packet id was allocated (see [`Session::allocate_packet_id`]); 0 for one
    /// restored from the store.
    allocated: u64,
}

/// Packet ids there are (1 to 65,535): one allocated this many allocations ago may be reused.
const PACKET_IDS: u64 = u16::MAX as u64;

/// One subscription of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscription {
    pub options: SubscriptionOptions,
    /// The Subscription Identifier it was made with (5.0).
    pub id: Option<u32>,
    /// When it was first made: messages published before are not its to receive.
    pub since: Instant,
}

/// The retained messages of one new subscription not sent yet.
#[derive(Debug)]
pub struct RetainedBacklog {
    pub filter: ByteString,
    pub subscription: Subscription,
    /// The last topic walked; `None` before the first step.
    pub cursor: Option<String>,
}

/// A will to publish at `due` unless the client comes back first (MQTT-3.1.3-9).
#[derive(Debug)]
pub struct PendingWill {
    pub due: Instant,
    pub will: Box<crate::protocol::Will>,
}

/// A change to the state of a message in the durable store (`Delivery::stored` non-zero),
/// for the broker to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryEvent {
    /// The session is owed it: queued (`pkid` 0) or sent.
    Owed(Owing),
    /// Sent from the queue.
    Sent { id: u64, pkid: u16 },
    /// QoS 2: PUBREC came.
    Released { id: u64 },
    /// Acknowledged, or dropped.
    Delivered { id: u64 },
}

impl DeliveryEvent {
    fn owed(delivery: &Delivery, pkid: u16) -> DeliveryEvent {
        DeliveryEvent::Owed(Owing {
            id: delivery.stored,
            qos: delivery.qos,
            retain: delivery.retain,
            subscription_ids: delivery.subscription_ids.clone(),
            pkid,
            receipt: delivery.message.receipt.id,
        })
    }
}

/// What became of a message handed to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliverOutcome {
    Sent,
    Queued,
    /// QoS 0 for a client that is not connected: at most once means not at all.
    DroppedOffline,
    /// The session's queue is at its message or byte limit.
    DroppedQueueFull,
    /// Larger than the client's Maximum Packet Size.
    DroppedTooLarge,
    /// Its Message Expiry Interval passed before it could be sent.
    DroppedExpired,
}

/// What became of the messages a [`Session::pump`] or [`Session::resume`] released.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PumpReport {
    pub sent: usize,
    /// What was sent (first sends, not resends), by QoS, and how long each had waited.
    pub traffic: crate::metrics::Traffic,
    pub latency: crate::metrics::LatencyHistogram,
    pub too_large: usize,
    pub expired: usize,
    /// Queued or in flight, but the ACL of the connection now attached does not let the
    /// client read them.
    pub not_authorized: usize,
}

impl From<Result<(), Unsent>> for DeliverOutcome {
    fn from(written: Result<(), Unsent>) -> DeliverOutcome {
        match written {
            Ok(()) => DeliverOutcome::Sent,
            Err(Unsent::Expired) => DeliverOutcome::DroppedExpired,
            Err(Unsent::TooLarge) => DeliverOutcome::DroppedTooLarge,
        }
    }
}

impl PumpReport {
    fn add(&mut self, outcome: DeliverOutcome) {
        match outcome {
            DeliverOutcome::Sent => self.sent += 1,
            DeliverOutcome::DroppedTooLarge => self.too_large += 1,
            DeliverOutcome::DroppedExpired => self.expired += 1,
            _ => {}
        }
    }
}

#[derive(Debug)]
pub struct Session {
    pub client_id: ByteString,
    /// The connection it is attached to, if the client is connected.
    pub conn: Option<u64>,
    /// Seconds the session outlives its connection: 0 ends it at disconnect, `u32::MAX`
    /// never expires (3.x clean session 0).
    pub expiry_interval: u32,
    /// When an offline session ends.
    pub expires_at: Option<Instant>,
    /// Filter (`$share/...` included) -> options and subscription identifier.
    pub subscriptions: SmallMap<ByteString, Subscription>,
    /// What the client may publish and receive, from the ACL file as of its last CONNECT;
    /// `None`: no ACL file, everything allowed.
    pub acl: Option<Arc<ClientAcl>>,
    /// Retained messages still to send for new subscriptions, walked in steps.
    pub retained: Vec<RetainedBacklog>,
    /// Whether the broker has this session on its list of retained work to do.
    pub retained_scheduled: bool,
    /// A will waiting out its Will Delay Interval while the client is away.
    pub pending_will: Option<Box<PendingWill>>,
    /// The earliest time the broker's timers will look at this session, if any.
    pub timer_armed: Option<Instant>,
    /// Some of its QoS 1/2 publishers are not being read because of its backlog.
    pub holding: bool,
    /// It is in the durable store's log (it outlives its connection): its changes are too.
    pub durable: bool,
    /// Since when it has had messages waiting and taken none (see [`Session::is_stalled`]).
    progress_at: Option<Instant>,
    inflight: VecDeque<Inflight>,
    /// Queued messages in memory: the head of the queue.
    queue: VecDeque<Delivery>,
    queued_bytes: usize,
    /// Queued messages on disk, behind those in memory (see `spill`).
    spilled: VecDeque<SpilledDelivery>,
    /// The first `n` of `spilled` are being read back.
    pub spill_loading: usize,
    /// Messages it just spilled, for the broker to keep on disk: their store ids and bodies.
    pub to_spill: Vec<(u64, SharedMessage)>,
    /// Inbound QoS 2 packet ids awaiting PUBREL, with the receipt of each (0: none).
    awaiting_pubrel: SmallMap<u16, u64>,
    /// Those of them received before a restart and not resent since: a resend of one is
    /// routed again, to whoever did not get it (see `message::Receipt`).
    restored_qos2: SmallSet<u16>,
    /// A durable session: the receipts of the QoS 2 messages it got whose publishers have
    /// not released them yet (see `message::Receipt`).
    pub receipts: SmallSet<u64>,
    next_packet_id: u16,
    /// Packet ids allocated so far (see [`Session::allocate_packet_id`]).
    allocations: u64,
    /// Changes to stored messages' state since the broker last took them.
    pub delivery_events: Vec<DeliveryEvent>,
}

impl Session {
    pub fn new(client_id: ByteString, expiry_interval: u32) -> Session {
        Session {
            client_id,
            conn: None,
            expiry_interval,
            expires_at: None,
            subscriptions: SmallMap::default(),
            acl: None,
            retained: Vec::new(),
            retained_scheduled: false,
            pending_will: None,
            timer_armed: None,
            inflight: VecDeque::new(),
            queue: VecDeque::new(),
            queued_bytes: 0,
            spilled: VecDeque::new(),
            spill_loading: 0,
            to_spill: Vec::new(),
            holding: false,
            durable: false,
            progress_at: None,
            awaiting_pubrel: SmallMap::default(),
            restored_qos2: SmallSet::default(),
            receipts: SmallSet::default(),
            next_packet_id: 1,
            allocations: 0,
            delivery_events: Vec::new(),
        }
    }

    /// Whether the ACL lets a message on `topic` reach this client.
    pub fn may_receive(&self, topic: &str) -> bool {
        self.acl.as_ref().is_none_or(|acl| acl.may_receive(topic))
    }

    pub fn inflight_len(&self) -> usize {
        self.inflight.len()
    }

    /// Queued messages, in memory and spilled.
    pub fn queued_len(&self) -> usize {
        self.queue.len() + self.spilled.len()
    }

    /// Hands a message to the session: sent now if the link and window allow, else queued.
    pub fn deliver(
        &mut self,
        delivery: Delivery,
        link: Option<&mut Link>,
        limits: &Limits,
        now: Instant,
    ) -> DeliverOutcome {
        let nothing_queued = self.queue.is_empty() && self.spilled.is_empty();
        if nothing_queued && self.inflight.is_empty() {
            // Nothing was waiting: the clock on its progress starts now.
            self.progress_at = Some(now);
        }
        if let Some(link) = link {
            if nothing_queued && link.has_room(limits) && self.window_open(&delivery, link) {
                let owed = (delivery.stored != 0).then(|| DeliveryEvent::owed(&delivery, 0));
                let outcome = self.send(delivery, link, now);
                if let (Some(mut owed), DeliverOutcome::Sent) = (owed, outcome) {
                    if let DeliveryEvent::Owed(owing) = &mut owed {
                        owing.pkid = self.last_packet_id();
                    }
                    self.note_owed(owed);
                }
                return outcome;
            }
        } else if delivery.qos == QoS::AtMostOnce {
            return DeliverOutcome::DroppedOffline;
        }
        let size = delivery.message.size();
        let (max_messages, max_bytes) = match delivery.qos {
            QoS::AtMostOnce => limits.queue_high_water(),
            _ => (limits.max_queued_messages, limits.max_queued_bytes),
        };
        // A stored message goes to disk behind the ones there, or once the memory's share
        // is full and the session is away or stalled (a live one is kept within its marks by
        // flow control, in memory); shared-group messages stay in memory (another member may
        // take them).
        let spills = delivery.stored != 0
            && delivery.shared_group.is_none()
            && (!self.spilled.is_empty()
                || (self.queue.len() >= limits.max_queued_in_memory && !self.is_live(limits, now)));
        if spills {
            if self.queued_len() >= max_messages {
                return DeliverOutcome::DroppedQueueFull;
            }
            self.note_owed(DeliveryEvent::owed(&delivery, 0));
            self.spilled.push_back(SpilledDelivery::of(&delivery));
            self.to_spill.push((delivery.stored, delivery.message));
            return DeliverOutcome::Queued;
        }
        if self.queued_len() >= max_messages || self.queued_bytes + size > max_bytes {
            return DeliverOutcome::DroppedQueueFull;
        }
        self.queued_bytes += size;
        // Queued for an unknown time: must not pin the read buffer it was decoded into.
        let mut delivery = delivery;
        if !delivery.message.is_compact() {
            delivery.message = Message::compacted(&delivery.message);
        }
        if delivery.stored != 0 {
            self.note_owed(DeliveryEvent::owed(&delivery, 0));
        }
        self.queue.push_back(delivery);
        DeliverOutcome::Queued
    }

    fn window_open(&self, delivery: &Delivery, link: &Link) -> bool {
        delivery.qos == QoS::AtMostOnce || self.inflight.len() < usize::from(link.receive_maximum)
    }

    /// Sends queued messages while the link has room and the window is open, in order.
    pub fn pump(&mut self, link: &mut Link, limits: &Limits, now: Instant) -> PumpReport {
        let mut report = PumpReport::default();
        while let Some(front) = self.queue.front() {
            if !link.has_room(limits) || !self.window_open(front, link) {
                break;
            }
            let delivery = self.queue.pop_front().expect("front exists");
            self.queued_bytes -= delivery.message.size();
            let id = delivery.stored;
            // Queued under the ACL of an earlier connection: the current one decides.
            if !self.may_receive(delivery.message.topic()) {
                report.not_authorized += 1;
                self.note_delivered(id);
                continue;
            }
            let note = delivery.send_note();
            let outcome = self.send(delivery, link, now);
            report.add(outcome);
            if outcome == DeliverOutcome::Sent {
                note.sent(&mut report.traffic, &mut report.latency, now);
            }
            if id != 0 {
                let event = match outcome {
                    DeliverOutcome::Sent => DeliveryEvent::Sent {
                        id,
                        pkid: self.last_packet_id(),
                    },
                    _ => DeliveryEvent::Delivered { id },
                };
                self.delivery_events.push(event);
            }
        }
        report
    }

    /// How many spilled messages to read back now: some, once the in-memory part of the
    /// queue is down to half its share and no read is on its way.
    pub fn spill_to_load(&self, limits: &Limits) -> usize {
        let share = limits.max_queued_in_memory.max(1);
        if self.spill_loading > 0 || self.spilled.is_empty() || self.queue.len() > share / 2 {
            return 0;
        }
        (share - self.queue.len()).min(self.spilled.len())
    }

    /// The store ids of the first `n` spilled messages, now being read back.
    pub fn start_loading(&mut self, n: usize) -> Vec<u64> {
        self.spill_loading = n;
        self.spilled.iter().take(n).map(|s| s.stored).collect()
    }

    /// The first `asked` spilled messages were read back, `messages` of them sound (the
    /// first ones): those join the in-memory queue, in order; the rest are dropped (done
    /// with in the store). Returns how many were dropped.
    pub fn finish_loading(&mut self, messages: Vec<SharedMessage>, asked: usize) -> usize {
        self.spill_loading = 0;
        let sound = messages.len();
        for message in messages {
            let Some(spilled) = self.spilled.pop_front() else {
                break;
            };
            let mut delivery = Delivery::new(message, spilled.qos, spilled.retain);
            delivery.subscription_ids = spilled.subscription_ids;
            delivery.stored = spilled.stored;
            self.queued_bytes += delivery.message.size();
            self.queue.push_back(delivery);
        }
        let mut lost = 0;
        for _ in sound..asked {
            if let Some(spilled) = self.spilled.pop_front() {
                self.note_delivered(spilled.stored);
                lost += 1;
            }
        }
        lost
    }

    /// What it holds spilled (to release when the session ends).
    pub fn spilled(&self) -> impl Iterator<Item = &SpilledDelivery> + '_ {
        self.spilled.iter()
    }

    /// The client took something (an ack, bytes written): it is not stalled.
    pub fn note_progress(&mut self, now: Instant) {
        self.progress_at = Some(now);
    }

    /// Whether it has had messages waiting and taken none of them for the stall timeout.
    pub fn is_stalled(&self, limits: &Limits, now: Instant) -> bool {
        self.has_pending()
            && self
                .progress_at
                .is_some_and(|at| now.saturating_duration_since(at) >= limits.stall_timeout)
    }

    /// Whether a QoS 1/2 message just queued for it should stop its publisher: it is
    /// connected, keeps taking messages, but more wait than the high-water mark.
    pub fn holds_publishers(&self, limits: &Limits, now: Instant) -> bool {
        self.backlog_over(limits.queue_high_water()) && self.is_live(limits, now)
    }

    /// Whether the publishers it holds stay held: its backlog is still over the low-water
    /// mark, and it is still connected and taking messages.
    pub fn keeps_holding(&self, limits: &Limits, now: Instant) -> bool {
        let (messages, bytes) = limits.queue_low_water();
        (self.queued_len() > messages || self.queued_bytes > bytes) && self.is_live(limits, now)
    }

    /// Whether a shared group's next message should go elsewhere if another member has room.
    pub fn is_backlogged(&self, limits: &Limits) -> bool {
        self.backlog_over(limits.queue_high_water())
    }

    fn is_live(&self, limits: &Limits, now: Instant) -> bool {
        self.conn.is_some() && !self.is_stalled(limits, now)
    }

    /// Whether it has reached the mark (high water: at least 1 message).
    fn backlog_over(&self, (messages, bytes): (usize, usize)) -> bool {
        self.queued_len() >= messages || self.queued_bytes >= bytes
    }

    /// Whether the link can take more and nothing queued is ahead: room for retained messages.
    pub fn ready_for_more(&self, link: &Link, limits: &Limits) -> bool {
        self.queue.is_empty()
            && self.spilled.is_empty()
            && link.has_room(limits)
            && self.inflight.len() < usize::from(link.receive_maximum)
    }

    /// Messages that end with the session: queued, or sent and not yet acknowledged.
    pub fn undelivered(&self) -> usize {
        self.queued_len()
            + self
                .inflight
                .iter()
                .filter(|i| i.awaiting == AwaitingFromClient::Ack)
                .count()
    }

    fn send(&mut self, delivery: Delivery, link: &mut Link, now: Instant) -> DeliverOutcome {
        let packet_id = if delivery.qos == QoS::AtMostOnce {
            0
        } else {
            self.allocate_packet_id()
        };
        let outcome = link.write_publish(&delivery, packet_id, false, now).into();
        if outcome != DeliverOutcome::Sent {
            return outcome;
        }
        if packet_id != 0 {
            self.inflight.push_back(Inflight {
                packet_id,
                delivery,
                awaiting: AwaitingFromClient::Ack,
                allocated: self.allocations,
            });
        }
        DeliverOutcome::Sent
    }

    /// The packet id of the message sent last (QoS 1/2).
    fn last_packet_id(&self) -> u16 {
        self.inflight.back().map_or(0, |i| i.packet_id)
    }

    /// A stored message is owed: logged, and its receipt kept (see `message::Receipt`).
    fn note_owed(&mut self, owed: DeliveryEvent) {
        if let DeliveryEvent::Owed(owing) = &owed {
            if owing.receipt != 0 {
                self.receipts.insert(owing.receipt);
            }
        }
        self.delivery_events.push(owed);
    }

    /// A stored message (`id` non-zero) is done with.
    fn note_delivered(&mut self, id: u64) {
        if id != 0 {
            self.delivery_events.push(DeliveryEvent::Delivered { id });
        }
    }

    /// Puts back a message the durable store recovered: in flight with packet id `pkid`
    /// (PUBREC already in if `released`), or queued (`pkid` 0). Call in the order they were
    /// owed.
    pub fn restore_owed(&mut self, delivery: Delivery, pkid: u16, released: bool, limits: &Limits) {
        if pkid == 0 {
            if !self.spilled.is_empty() || self.queue.len() >= limits.max_queued_in_memory {
                self.spilled.push_back(SpilledDelivery::of(&delivery));
                self.to_spill.push((delivery.stored, delivery.message));
                return;
            }
            self.queued_bytes += delivery.message.size();
            self.queue.push_back(delivery);
            return;
        }
        self.next_packet_id = pkid.checked_add(1).unwrap_or(1);
        let awaiting = match released {
            true => AwaitingFromClient::Complete,
            false => AwaitingFromClient::Ack,
        };
        // Its id was allocated before the restart: until it is gone, new ids are checked
        // against every one in flight.
        self.allocations = self.allocations.max(PACKET_IDS);
        self.inflight.push_back(Inflight {
            packet_id: pkid,
            delivery,
            awaiting,
            allocated: 0,
        });
    }

    /// The next packet id not in flight. Ids go round in order, and the oldest message in
    /// flight is at the front: while it was allocated fewer than 65,535 allocations ago, every
    /// id in flight is younger than the last use of the next one, which is free without a look
    /// at the window (a scan of up to --max-inflight entries a message, else).
    fn allocate_packet_id(&mut self) -> u16 {
        loop {
            let id = self.next_packet_id;
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            self.allocations += 1;
            let recent = self
                .inflight
                .front()
                .is_none_or(|oldest| self.allocations - oldest.allocated < PACKET_IDS);
            if recent || !self.inflight.iter().any(|i| i.packet_id == id) {
                return id;
            }
        }
    }

    fn position(
        &self,
        packet_id: u16,
        awaiting: AwaitingFromClient,
        qos: Option<QoS>,
    ) -> Option<usize> {
        // Acks mostly come in order: the front is the usual hit.
        self.inflight.iter().position(|i| {
            i.packet_id == packet_id
                && i.awaiting == awaiting
                && qos.is_none_or(|q| i.delivery.qos == q)
        })
    }

    /// PUBACK from the client. Returns whether it matched a message in flight.
    pub fn on_puback(&mut self, packet_id: u16) -> bool {
        match self.position(packet_id, AwaitingFromClient::Ack, Some(QoS::AtLeastOnce)) {
            Some(at) => {
                let done = self.inflight.remove(at).expect("position is in range");
                self.note_delivered(done.delivery.stored);
                true
            }
            None => false,
        }
    }

    /// PUBREC from the client: answer PUBREL and wait for PUBCOMP.
    pub fn on_pubrec(&mut self, packet_id: u16, link: &mut Link) -> bool {
        let found = match self.position(packet_id, AwaitingFromClient::Ack, Some(QoS::ExactlyOnce))
        {
            Some(at) => {
                self.inflight[at].awaiting = AwaitingFromClient::Complete;
                let id = self.inflight[at].delivery.stored;
                if id != 0 {
                    self.delivery_events.push(DeliveryEvent::Released { id });
                }
                true
            }
            // A PUBREC repeated after our PUBREL was lost: answer it again.
            None => self
                .position(packet_id, AwaitingFromClient::Complete, None)
                .is_some(),
        };
        if found {
            link.write_ack(PacketType::PubRel, packet_id);
        }
        found
    }

    /// A 5.0 PUBREC with an error code: the client refused the QoS 2 message, which is done
    /// with (its packet id and window slot free, no PUBREL).
    pub fn on_pubrec_refused(&mut self, packet_id: u16) -> bool {
        let Some(at) = self.position(packet_id, AwaitingFromClient::Ack, Some(QoS::ExactlyOnce))
        else {
            return false;
        };
        let done = self.inflight.remove(at).expect("position is in range");
        self.note_delivered(done.delivery.stored);
        true
    }

    pub fn on_pubcomp(&mut self, packet_id: u16) -> bool {
        match self.position(packet_id, AwaitingFromClient::Complete, None) {
            Some(at) => {
                let done = self.inflight.remove(at).expect("position is in range");
                self.note_delivered(done.delivery.stored);
                true
            }
            None => false,
        }
    }

    /// An incoming QoS 2 PUBLISH: true when it is new and must be routed, false for a
    /// retransmission of one not yet released (exactly once: route it only the first time).
    pub fn receive_qos2(&mut self, packet_id: u16) -> bool {
        match self.awaiting_pubrel.entry(packet_id) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(0);
                true
            }
        }
    }

    /// The store's receipt for the inbound QoS 2 message with `packet_id`, just received.
    pub fn set_qos2_receipt(&mut self, packet_id: u16, receipt: u64) {
        if let Some(r) = self.awaiting_pubrel.get_mut(&packet_id) {
            *r = receipt;
        }
    }

    /// PUBREL from the client: the id may be reused. Returns the receipt of the message it
    /// released (0: none) if it was known.
    pub fn on_pubrel(&mut self, packet_id: u16) -> Option<u64> {
        self.restored_qos2.remove(&packet_id);
        self.awaiting_pubrel.remove(&packet_id)
    }

    /// An inbound QoS 2 message awaiting PUBREL, as the store recovered it.
    pub fn restore_qos2(&mut self, packet_id: u16, receipt: u64) {
        self.awaiting_pubrel.insert(packet_id, receipt);
        if receipt != 0 {
            self.restored_qos2.insert(packet_id);
        }
    }

    /// For a resent PUBLISH with `packet_id` (not new, see [`Session::receive_qos2`]): the
    /// receipt of the message it repeats if that was received before a restart, once.
    pub fn take_restored_qos2(&mut self, packet_id: u16) -> Option<u64> {
        self.restored_qos2
            .remove(&packet_id)
            .then(|| self.awaiting_pubrel.get(&packet_id).copied())
            .flatten()
    }

    /// Inbound QoS 2 packet ids awaiting PUBREL, with their receipts.
    pub fn inbound_qos2(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.awaiting_pubrel
            .iter()
            .map(|(&pkid, &receipt)| (pkid, receipt))
    }

    /// What the session is owed, in order (in flight, then queued): each delivery, its packet
    /// id (0: queued) and whether its PUBREC came.
    pub fn owed(&self) -> impl Iterator<Item = (&Delivery, u16, bool)> + '_ {
        let inflight = self.inflight.iter().map(|i| {
            let released = i.awaiting == AwaitingFromClient::Complete;
            (&i.delivery, i.packet_id, released)
        });
        inflight.chain(self.queue.iter().map(|d| (d, 0, false)))
    }

    /// Whether an inbound QoS 2 message with `packet_id` was taken and awaits its PUBREL.
    pub fn awaits_pubrel(&self, packet_id: u16) -> bool {
        self.awaiting_pubrel.contains_key(&packet_id)
    }

    pub fn awaiting_pubrel_len(&self) -> usize {
        self.awaiting_pubrel.len()
    }

    /// After a reconnect: resend every unacknowledged message in its original order, with DUP
    /// set, and PUBREL for those already received (MQTT-4.4.0-1); then the queue. A message
    /// the connection's ACL no longer lets the client read is dropped, and its packet id freed.
    pub fn resume(&mut self, link: &mut Link, limits: &Limits, now: Instant) -> PumpReport {
        let mut report = PumpReport::default();
        let acl = self.acl.clone();
        let readable = |i: &Inflight| {
            i.awaiting == AwaitingFromClient::Complete
                || acl
                    .as_ref()
                    .is_none_or(|acl| acl.may_receive(i.delivery.message.topic()))
        };
        let mut unreadable = Vec::new();
        self.inflight.retain(|i| {
            let keep = readable(i);
            if !keep {
                unreadable.push(i.delivery.stored);
            }
            keep
        });
        report.not_authorized += unreadable.len();
        for id in unreadable {
            self.note_delivered(id);
        }
        // Once sent, a message is resent even if it has expired meanwhile: the client may
        // have it already, and the packet id must be completed either way.
        for inflight in &self.inflight {
            match inflight.awaiting {
                AwaitingFromClient::Ack => {
                    let written =
                        link.write_publish(&inflight.delivery, inflight.packet_id, true, now);
                    report.add(written.into());
                }
                AwaitingFromClient::Complete => {
                    link.write_ack(PacketType::PubRel, inflight.packet_id)
                }
            }
        }
        let more = self.pump(link, limits, now);
        report.sent += more.sent;
        report.traffic.add(&more.traffic);
        report.latency.add(&more.latency);
        report.too_large += more.too_large;
        report.expired += more.expired;
        report.not_authorized += more.not_authorized;
        report
    }

    /// Takes back what was routed through shared subscription `group` (any group for `None`)
    /// and is not yet acknowledged, so the group can give it to another member.
    pub fn take_shared(&mut self, group: Option<&Filter>) -> Vec<Delivery> {
        let mut taken = Vec::new();
        let from_group = |d: &Delivery| match (&d.shared_group, group) {
            (Some(g), Some(wanted)) => g == wanted,
            (Some(_), None) => true,
            (None, _) => false,
        };
        self.inflight.retain(|i| {
            // A QoS 2 message once sent may have reached the client: it must not go to another
            // (MQTT-4.8.2-5). A QoS 1 message may.
            if i.delivery.qos == QoS::AtLeastOnce && from_group(&i.delivery) {
                taken.push(i.delivery.clone());
                false
            } else {
                true
            }
        });
        let mut kept = VecDeque::with_capacity(self.queue.len());
        for d in self.queue.drain(..) {
            if from_group(&d) {
                self.queued_bytes -= d.message.size();
                taken.push(d);
            } else {
                kept.push_back(d);
            }
        }
        self.queue = kept;
        for d in &taken {
            if d.stored != 0 {
                self.delivery_events
                    .push(DeliveryEvent::Delivered { id: d.stored });
            }
        }
        taken
    }

    /// Whether anything is waiting to be sent or acknowledged.
    pub fn has_pending(&self) -> bool {
        !self.inflight.is_empty() || !self.queue.is_empty() || !self.spilled.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::message::Message;
    use crate::protocol::{Ack, Decoder, Packet, ProtocolVersion, MAX_PACKET_SIZE};
    use bytes::BytesMut;
    use std::sync::Arc;

    fn delivery(n: u8, qos: QoS) -> Delivery {
        Delivery::new(
            Arc::new(Message::new("t", &[n], qos, Instant::now())),
            qos,
            false,
        )
    }

    fn sent(link: &mut Link) -> Vec<Packet> {
        let decoder = Decoder::new(link.version, MAX_PACKET_SIZE);
        let mut out = Vec::new();
        while let Some(p) = decoder.decode(&mut link.out).unwrap() {
            out.push(p);
        }
        out
    }

    fn publishes(packets: &[Packet]) -> Vec<(u8, u16, bool)> {
        packets
            .iter()
            .filter_map(|p| match p {
                Packet::Publish(p) => Some((p.payload()[0], p.packet_id, p.dup)),
                _ => None,
            })
            .collect()
    }

    /// A QoS 0 message decoded from `read_buffer`, as the broker builds it.
    fn sliced_message(read_buffer: &mut BytesMut) -> Arc<Message> {
        let Some(Packet::Publish(p)) = Decoder::new(ProtocolVersion::V3_1_1, MAX_PACKET_SIZE)
            .decode(read_buffer)
            .unwrap()
        else {
            panic!("a PUBLISH");
        };
        Arc::new(Message::from_publish(p, None, Instant::now()))
    }

    #[test]
    fn a_queued_message_does_not_pin_the_read_buffer_it_came_from() {
        let mut read_buffer = BytesMut::from(&b"\x30\x06\x00\x01tabc"[..]);
        let message = sliced_message(&mut read_buffer);
        assert!(!message.is_compact(), "QoS 0 is routed zero-copy");
        let limits = Limits::default();
        // Offline: QoS 1 queued.
        let mut s = Session::new("c".into(), u32::MAX);
        let outcome = s.deliver(
            Delivery::new(message.clone(), QoS::AtLeastOnce, false),
            None,
            &limits,
            Instant::now(),
        );
        assert_eq!(outcome, DeliverOutcome::Queued);
        let queued = &s.queue.front().unwrap().message;
        assert!(queued.is_compact());
        assert_eq!((queued.topic(), queued.payload()), ("t", &b"abc"[..]));
        // Online but slow: QoS 0 queued behind a full write buffer.
        let mut link = Link::new(ProtocolVersion::V3_1_1);
        link.unflushed = limits.write_high_water;
        let mut s = Session::new("c".into(), u32::MAX);
        let outcome = s.deliver(
            Delivery::new(message, QoS::AtMostOnce, false),
            Some(&mut link),
            &limits,
            Instant::now(),
        );
        assert_eq!(outcome, DeliverOutcome::Queued);
        assert!(s.queue.front().unwrap().message.is_compact());
    }

    #[test]
    fn window_limits_inflight_and_acks_release_the_queue_in_order() {
        let limits = Limits::default();
        let mut link = Link::new(ProtocolVersion::V3_1_1);
        link.receive_maximum = 2;
        let mut s = Session::new("c".into(), u32::MAX);
        for n in 0..4 {
            s.deliver(
                delivery(n, QoS::AtLeastOnce),
                Some(&mut link),
                &limits,
                Instant::now(),
            );
        }
        assert_eq!(
            publishes(&sent(&mut link)),
            vec![(0, 1, false), (1, 2, false)]
        );
        assert_eq!(s.queued_len(), 2);
        assert!(s.on_puback(1));
        assert!(
            !s.on_puback(1),
            "a second PUBACK for the same id matches nothing"
        );
        s.pump(&mut link, &limits, Instant::now());
        assert_eq!(publishes(&sent(&mut link)), vec![(2, 3, false)]);
    }

    #[test]
    fn reconnect_resends_unacked_with_dup_in_order_then_queue() {
        let limits = Limits::default();
        let mut s = Session::new("c".into(), u32::MAX);
        let mut link = Link::new(ProtocolVersion::V3_1_1);
        link.receive_maximum = 2;
        for n in 0..3 {
            s.deliver(
                delivery(n, QoS::AtLeastOnce),
                Some(&mut link),
                &limits,
                Instant::now(),
            );
        }
        // The connection drops; one more arrives while offline, one QoS 0 is dropped.
        assert_eq!(
            s.deliver(delivery(3, QoS::AtLeastOnce), None, &limits, Instant::now()),
            DeliverOutcome::Queued
        );
        assert_eq!(
            s.deliver(delivery(9, QoS::AtMostOnce), None, &limits, Instant::now()),
            DeliverOutcome::DroppedOffline
        );
        let mut link = Link::new(ProtocolVersion::V3_1_1);
        link.receive_maximum = 3;
        s.resume(&mut link, &limits, Instant::now());
        assert_eq!(
            publishes(&sent(&mut link)),
            vec![(0, 1, true), (1, 2, true), (2, 3, false)]
        );
    }

    #[test]
    fn qos2_outbound_flow_and_pubrel_resend() {
        let limits = Limits::default();
        let mut s = Session::new("c".into(), u32::MAX);
        let mut link = Link::new(ProtocolVersion::V3_1_1);
        s.deliver(
            delivery(7, QoS::ExactlyOnce),
            Some(&mut link),
            &limits,
            Instant::now(),
        );
        sent(&mut link);
        assert!(!s.on_puback(1), "PUBACK does not complete a QoS 2 message");
        assert!(s.on_pubrec(1, &mut link));
        assert_eq!(sent(&mut link), vec![Packet::PubRel(Ack::new(1))]);
        // Reconnect before PUBCOMP: PUBREL again, not the PUBLISH.
        let mut link = Link::new(ProtocolVersion::V3_1_1);
        s.resume(&mut link, &limits, Instant::now());
        assert_eq!(sent(&mut link), vec![Packet::PubRel(Ack::new(1))]);
        assert!(s.on_pubcomp(1));
        assert!(!s.has_pending());
    }

    #[test]
    fn qos2_inbound_duplicates_are_not_routed_twice() {
        let mut s = Session::new("c".into(), u32::MAX);
        assert!(s.receive_qos2(5));
        assert!(!s.receive_qos2(5));
        assert_eq!(s.on_pubrel(5), Some(0));
        assert_eq!(s.on_pubrel(5), None);
        assert!(
            s.receive_qos2(5),
            "after PUBREL the id starts a new message"
        );
    }

    #[test]
    fn queue_limits_drop_and_count() {
        let limits = Limits {
            max_queued_messages: 2,
            ..Limits::default()
        };
        let mut s = Session::new("c".into(), u32::MAX);
        let outcomes: Vec<_> = (0..3)
            .map(|n| s.deliver(delivery(n, QoS::AtLeastOnce), None, &limits, Instant::now()))
            .collect();
        assert_eq!(
            outcomes,
            vec![
                DeliverOutcome::Queued,
                DeliverOutcome::Queued,
                DeliverOutcome::DroppedQueueFull
            ]
        );
    }

    #[test]
    fn a_full_write_buffer_queues_instead_of_growing() {
        let limits = Limits {
            write_high_water: 10,
            ..Limits::default()
        };
        let mut s = Session::new("c".into(), u32::MAX);
        let mut link = Link::new(ProtocolVersion::V3_1_1);
        for n in 0..5 {
            s.deliver(
                delivery(n, QoS::AtMostOnce),
                Some(&mut link),
                &limits,
                Instant::now(),
            );
        }
        assert!(link.out.len() < 20);
        assert!(s.queued_len() >= 3);
        link.out.clear();
        s.pump(&mut link, &limits, Instant::now());
        assert!(!link.out.is_empty());
    }

    /// Delivers message `n` at QoS 1 and acks it at once; its packet id.
    fn deliver_and_ack(s: &mut Session, link: &mut Link, n: u64) -> u16 {
        let limits = Limits::default();
        let d = delivery(n as u8, QoS::AtLeastOnce);
        s.deliver(d, Some(&mut *link), &limits, Instant::now());
        let id = publishes(&sent(link))[0].1;
        assert!(s.on_puback(id));
        id
    }

    #[test]
    fn packet_ids_skip_those_in_flight_after_wrapping() {
        let limits = Limits::default();
        let now = Instant::now();
        let mut s = Session::new("c".into(), u32::MAX);
        let mut link = Link::new(ProtocolVersion::V3_1_1);
        // Id 1 stays unacked while the ids go round, one message at a time, twice.
        s.deliver(delivery(0, QoS::AtLeastOnce), Some(&mut link), &limits, now);
        assert_eq!(publishes(&sent(&mut link))[0].1, 1);
        let mut previous = 1;
        for n in 1..=2 * PACKET_IDS {
            let id = deliver_and_ack(&mut s, &mut link, n);
            assert_ne!(id, 1, "message {n} got the id in flight");
            let expected = if previous == u16::MAX {
                2
            } else {
                previous + 1
            };
            assert_eq!(id, expected, "message {n}");
            previous = id;
        }
    }

    #[test]
    fn restored_packet_ids_are_not_reused() {
        let limits = Limits::default();
        let mut s = Session::new("c".into(), u32::MAX);
        let mut link = Link::new(ProtocolVersion::V3_1_1);
        // Restored in flight: 5 (from before the ids went round), then 60,000.
        s.restore_owed(delivery(0, QoS::AtLeastOnce), 5, false, &limits);
        s.restore_owed(delivery(1, QoS::AtLeastOnce), 60_000, false, &limits);
        let seen: Vec<u16> = (2..10_000)
            .map(|n| deliver_and_ack(&mut s, &mut link, n))
            .collect();
        assert!(!seen.contains(&5) && !seen.contains(&60_000));
        assert!(seen.contains(&4) && seen.contains(&6), "it went round");
    }
}
