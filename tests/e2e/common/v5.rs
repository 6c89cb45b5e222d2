//! The MQTT 5.0 raw client for the `tests/v5_*.rs` suites: `V5`, a blocking client on a
//! `RawClient` that resolves the broker's outbound topic aliases, acks on demand and keeps every
//! packet it received for later audits. Packets are built with `enc` and read with `dec`.
//!
//! Every read has a deadline (as in `raw`), so nothing here can hang.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::time::{Duration, Instant};

use super::dec::{
    decode_ack, decode_disconnect, decode_publish, decode_suback, parse_connack_v5, prop_num,
    texts, Ack5, PropValue, Pub5, RawPacket,
};
use super::enc::{self, ack, kind, p, Connect, Props, Publish};
use super::raw::{RawClient, ReadErr, LONG, SHORT};

// ---------------------------------------------------------------------------------------------
// The client.
// ---------------------------------------------------------------------------------------------

pub struct V5 {
    pub id: String,
    pub conn: RawClient,
    pub session_present: bool,
    pub connack_props: Vec<(u8, PropValue)>,
    /// Ack every incoming PUBLISH as it arrives (PUBACK / PUBREC). PUBREL is always answered.
    pub auto_ack: bool,
    /// The Topic Alias Maximum this client announced (0 = none: no alias may arrive).
    pub alias_max: u16,
    aliases: HashMap<u16, String>,
    pubs: VecDeque<Pub5>,
    others: VecDeque<RawPacket>,
    /// Every packet the broker sent on this connection after CONNACK, in order.
    pub log: Vec<RawPacket>,
    next_pkid: u16,
}

impl V5 {
    /// Connects (v5, no properties besides what `clean_start` implies); CONNACK must be 0x00.
    pub fn connect(port: u16, id: &str, clean_start: bool) -> V5 {
        Self::connect_with(port, Connect::v5(id).clean(clean_start))
    }

    /// Sends `c` (an MQTT 5 CONNECT: `Connect::v5`) and requires CONNACK 0x00.
    pub fn connect_with(port: u16, c: Connect) -> V5 {
        let id = c.id();
        let (conn, ack) = Self::try_connect(port, &c);
        let ack = ack.unwrap_or_else(|e| panic!("{id}: no CONNACK: {e:?}"));
        let (sp, rc, props) = parse_connack_v5(&ack);
        assert_eq!(rc, 0, "{id}: CONNACK refused: {ack:?} {props:?}");
        let alias_max = prop_num(&c.props.parsed(), p::TOPIC_ALIAS_MAXIMUM).unwrap_or(0) as u16;
        V5 {
            id,
            conn,
            session_present: sp,
            connack_props: props,
            auto_ack: true,
            alias_max,
            aliases: HashMap::new(),
            pubs: VecDeque::new(),
            others: VecDeque::new(),
            log: Vec::new(),
            next_pkid: 0,
        }
    }

    /// Sends `c`; returns the connection and the broker's first answer (CONNACK or an error).
    pub fn try_connect(port: u16, c: &Connect) -> (RawClient, Result<RawPacket, ReadErr>) {
        assert_eq!(c.level, 5, "V5 sends MQTT 5 CONNECTs: {c:?}");
        RawClient::connect_raw(port, &c.encode())
    }

    pub fn connack_num(&self, id: u8) -> Option<u64> {
        prop_num(&self.connack_props, id)
    }

    pub fn pkid(&mut self) -> u16 {
        self.next_pkid = self.next_pkid.wrapping_add(1);
        if self.next_pkid == 0 {
            self.next_pkid = 1;
        }
        self.next_pkid
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.conn.send(bytes)
    }

    pub fn send_ok(&mut self, bytes: &[u8]) {
        let id = self.id.clone();
        self.conn
            .send(bytes)
            .unwrap_or_else(|e| panic!("{id}: write failed: {e}"));
    }

    fn handle(&mut self, pk: RawPacket) {
        self.log.push(pk.clone());
        match pk.kind() {
            kind::PUBLISH => {
                let mut m = decode_publish(&pk);
                match m.alias {
                    Some(a) => {
                        assert!(
                            a >= 1 && a <= self.alias_max,
                            "{}: broker sent topic alias {a}, outside 1..={} (the client's Topic Alias Maximum): {m:?}",
                            self.id,
                            self.alias_max
                        );
                        if m.wire_topic.is_empty() {
                            m.topic = self.aliases.get(&a).cloned().unwrap_or_else(|| {
                                panic!("{}: empty topic with unknown alias {a}: {m:?}", self.id)
                            });
                        } else {
                            self.aliases.insert(a, m.wire_topic.clone());
                        }
                    }
                    None => assert!(
                        !m.wire_topic.is_empty(),
                        "{}: PUBLISH with empty topic and no alias: {m:?}",
                        self.id
                    ),
                }
                if self.auto_ack {
                    match m.qos {
                        1 => self.send_ok(&ack(0x40, m.pkid, 0)),
                        2 => self.send_ok(&ack(0x50, m.pkid, 0)),
                        _ => {}
                    }
                }
                self.pubs.push_back(m);
            }
            kind::PUBREL => {
                let id = decode_ack(&pk).pkid;
                self.send_ok(&ack(0x70, id, 0));
            }
            _ => self.others.push_back(pk),
        }
    }

    /// Reads and handles one packet (or a batch), waiting until `deadline` at most.
    fn pump(&mut self, deadline: Instant) -> Result<(), ReadErr> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadErr::Timeout);
        }
        let batch = self.conn.read_batch(left)?;
        for pk in batch {
            self.handle(pk);
        }
        Ok(())
    }

    /// The next PUBLISH within `timeout`, or None. Panics if the connection closes.
    pub fn try_pub(&mut self, timeout: Duration) -> Option<Pub5> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(m) = self.pubs.pop_front() {
                return Some(m);
            }
            match self.pump(deadline) {
                Ok(()) => {}
                Err(ReadErr::Timeout) => return None,
                Err(ReadErr::Closed(how)) => panic!(
                    "{}: broker closed the connection ({how}); other packets: {:?}",
                    self.id, self.others
                ),
            }
        }
    }

    pub fn expect_pub(&mut self, timeout: Duration) -> Pub5 {
        self.try_pub(timeout)
            .unwrap_or_else(|| panic!("{}: no PUBLISH within {timeout:?}", self.id))
    }

    pub fn expect_pubs(&mut self, n: usize, timeout: Duration) -> Vec<Pub5> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.try_pub(left) {
                Some(m) => got.push(m),
                None => panic!(
                    "{}: only {} of {n} PUBLISHes within {timeout:?}: {:?}",
                    self.id,
                    got.len(),
                    texts(&got)
                ),
            }
        }
        got
    }

    /// PUBLISHes up to and including the one whose payload is `marker`.
    pub fn pubs_until(&mut self, marker: &str, timeout: Duration) -> Vec<Pub5> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.try_pub(left) {
                Some(m) => {
                    let done = m.payload == marker.as_bytes();
                    got.push(m);
                    if done {
                        return got;
                    }
                }
                None => panic!(
                    "{}: marker {marker:?} not seen within {timeout:?}; got {:?}",
                    self.id,
                    texts(&got)
                ),
            }
        }
    }

    /// The next non-PUBLISH packet of kind `k` (others are kept; PUBLISHes are queued).
    pub fn expect_kind(&mut self, k: u8, timeout: Duration) -> RawPacket {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.others.iter().position(|pk| pk.kind() == k) {
                return self.others.remove(i).unwrap();
            }
            match self.pump(deadline) {
                Ok(()) => {}
                Err(e) => panic!(
                    "{}: waiting for {}: {e:?}; other packets: {:?}",
                    self.id,
                    kind::name(k),
                    self.others
                ),
            }
        }
    }

    /// SUBSCRIBE with properties and (filter, options byte) pairs; returns the SUBACK.
    pub fn subscribe_with(&mut self, props: Props, filters: &[(&str, u8)]) -> Ack5 {
        let id = self.pkid();
        self.send_ok(&enc::subscribe_v5(id, &props, filters));
        let ack = decode_suback(&self.expect_kind(kind::SUBACK, LONG));
        assert_eq!(ack.pkid, id, "{}: SUBACK packet id", self.id);
        assert_eq!(
            ack.codes.len(),
            filters.len(),
            "{}: one SUBACK code per filter: {ack:?}",
            self.id
        );
        ack
    }

    /// SUBSCRIBE one filter with an options byte; returns the reason code.
    pub fn subscribe(&mut self, filter: &str, opts: u8) -> u8 {
        self.subscribe_with(Props::new(), &[(filter, opts)]).codes[0]
    }

    /// SUBSCRIBE one filter at `qos` (plain options) and require it granted.
    pub fn sub_ok(&mut self, filter: &str, qos: u8) {
        let rc = self.subscribe(filter, qos);
        assert_eq!(rc, qos, "{}: SUBACK for {filter:?} at QoS {qos}", self.id);
    }

    pub fn unsubscribe(&mut self, filters: &[&str]) -> Ack5 {
        let id = self.pkid();
        self.send_ok(&enc::unsubscribe_v5(id, filters));
        let ack = decode_suback(&self.expect_kind(kind::UNSUBACK, LONG));
        assert_eq!(ack.pkid, id, "{}: UNSUBACK packet id", self.id);
        ack
    }

    /// Sends `m` in the MQTT 5 form (with its properties, if any) under the next packet id
    /// (QoS > 0; `m.pkid` is ignored), and completes the QoS flow. QoS 0: None. QoS 1: the
    /// PUBACK. QoS 2: the PUBREC (then PUBREL / PUBCOMP if the PUBREC reason is a success).
    pub fn publish_ack(&mut self, m: Publish) -> Option<Ack5> {
        let qos = m.qos;
        let id = if qos > 0 { self.pkid() } else { 0 };
        self.send_ok(&m.pkid(id).v5().encode());
        match qos {
            0 => None,
            1 => {
                let a = decode_ack(&self.expect_kind(kind::PUBACK, LONG));
                assert_eq!(a.pkid, id, "{}: PUBACK packet id", self.id);
                Some(a)
            }
            2 => {
                let a = decode_ack(&self.expect_kind(kind::PUBREC, LONG));
                assert_eq!(a.pkid, id, "{}: PUBREC packet id", self.id);
                if a.code() < 0x80 {
                    self.send_ok(&ack(0x62, id, 0));
                    let c = decode_ack(&self.expect_kind(kind::PUBCOMP, LONG));
                    assert_eq!(c.pkid, id, "{}: PUBCOMP packet id", self.id);
                }
                Some(a)
            }
            q => panic!("QoS {q}"),
        }
    }

    /// `publish_ack`, returning the PUBACK / PUBREC reason code (0 for QoS 0).
    pub fn publish(&mut self, m: Publish) -> u8 {
        self.publish_ack(m).map_or(0, |a| a.code())
    }

    pub fn puback(&mut self, pkid: u16) {
        self.send_ok(&ack(0x40, pkid, 0));
    }

    pub fn ping(&mut self) {
        self.send_ok(&enc::PINGREQ);
        self.expect_kind(kind::PINGRESP, LONG);
    }

    /// Waits for a DISCONNECT from the broker and then for the connection to close; returns the
    /// DISCONNECT's (reason code, properties). Panics if the connection closes without one.
    pub fn expect_disconnect(
        &mut self,
        timeout: Duration,
        what: &str,
    ) -> (u8, Vec<(u8, PropValue)>) {
        let deadline = Instant::now() + timeout;
        let pk = loop {
            if let Some(i) = self
                .others
                .iter()
                .position(|pk| pk.kind() == kind::DISCONNECT)
            {
                break self.others.remove(i).unwrap();
            }
            match self.pump(deadline) {
                Ok(()) => {}
                Err(e) => panic!(
                    "{}: {what}: no DISCONNECT from the broker ({e:?}); packets received: {:?}",
                    self.id, self.log
                ),
            }
        };
        let after = self.conn.expect_closed(
            SHORT,
            &format!("{}: {what}: close after DISCONNECT", self.id),
        );
        assert!(
            after.is_empty(),
            "{}: {what}: packets after DISCONNECT: {after:?}",
            self.id
        );
        decode_disconnect(&pk)
    }

    /// Clean disconnect (DISCONNECT 0x00) and wait for the close.
    pub fn disconnect(self) {
        self.disconnect_with(0, Props::new());
    }

    pub fn disconnect_with(mut self, reason: u8, props: Props) {
        let _ = self.conn.send(&enc::disconnect_v5(reason, &props));
        let id = self.id.clone();
        self.conn
            .expect_closed(LONG, &format!("{id}: close after our DISCONNECT"));
    }

    /// Abrupt disconnect: the socket is closed without DISCONNECT.
    pub fn drop_connection(self) {
        drop(self);
    }

    /// PUBLISHes already received but not yet returned.
    pub fn queued(&self) -> usize {
        self.pubs.len()
    }
}

/// Waits (bounded) until a retained message on `topic` with `payload` is served on subscribe by
/// every one of `shards` shards (retained replicas are updated asynchronously across shards),
/// using probe clients homed on each shard.
pub fn wait_retained_on_all_shards(port: u16, topic: &str, payload: &[u8], shards: usize) {
    for shard in 0..shards {
        let id = super::client_id_on_shard(&format!("retained-probe-{topic}"), shard, shards);
        let mut c = V5::connect(port, &id, true);
        let deadline = Instant::now() + LONG;
        loop {
            c.sub_ok(topic, 1);
            if let Some(m) = c.try_pub(Duration::from_millis(200)) {
                if m.retain && m.payload == payload {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "retained message on {topic:?} not served by shard {shard} within {LONG:?}"
            );
            c.unsubscribe(&[topic]);
        }
        c.disconnect();
    }
}
