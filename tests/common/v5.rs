//! MQTT 5.0 over raw TCP for the `tests/v5_*.rs` suites: property builders, encoders for every
//! packet a v5 client sends (with properties), decoders for what the broker sends back, and
//! `V5`, a blocking client that resolves the broker's outbound topic aliases, acks on demand and
//! keeps every packet it received for later audits. Independent of `ringmq::protocol`.
//!
//! Every read has a deadline (as in `raw`), so nothing here can hang.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::time::{Duration, Instant};

use super::raw::{
    decode_varint, enc, kind, parse_connack_v5, parse_properties, PropValue, RawClient, RawPacket,
    ReadErr, LONG, SHORT,
};

/// MQTT 5 property identifiers (MQTT 5.0, 2.2.2.2).
pub mod p {
    pub const PAYLOAD_FORMAT: u8 = 0x01;
    pub const MESSAGE_EXPIRY: u8 = 0x02;
    pub const CONTENT_TYPE: u8 = 0x03;
    pub const RESPONSE_TOPIC: u8 = 0x08;
    pub const CORRELATION_DATA: u8 = 0x09;
    pub const SUBSCRIPTION_ID: u8 = 0x0B;
    pub const SESSION_EXPIRY: u8 = 0x11;
    pub const ASSIGNED_CLIENT_ID: u8 = 0x12;
    pub const SERVER_KEEP_ALIVE: u8 = 0x13;
    pub const AUTH_METHOD: u8 = 0x15;
    pub const AUTH_DATA: u8 = 0x16;
    pub const REQUEST_PROBLEM_INFO: u8 = 0x17;
    pub const WILL_DELAY: u8 = 0x18;
    pub const REQUEST_RESPONSE_INFO: u8 = 0x19;
    pub const RESPONSE_INFO: u8 = 0x1A;
    pub const SERVER_REFERENCE: u8 = 0x1C;
    pub const REASON_STRING: u8 = 0x1F;
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub const TOPIC_ALIAS: u8 = 0x23;
    pub const MAXIMUM_QOS: u8 = 0x24;
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    pub const USER_PROPERTY: u8 = 0x26;
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    pub const WILDCARD_SUB_AVAILABLE: u8 = 0x28;
    pub const SUB_ID_AVAILABLE: u8 = 0x29;
    pub const SHARED_SUB_AVAILABLE: u8 = 0x2A;
}

/// An encoded property list (without its length prefix), built by chaining.
#[derive(Clone, Debug, Default)]
pub struct Props(pub Vec<u8>);

impl Props {
    pub fn new() -> Props {
        Props::default()
    }
    pub fn byte(mut self, id: u8, v: u8) -> Props {
        self.0.extend([id, v]);
        self
    }
    pub fn u16(mut self, id: u8, v: u16) -> Props {
        self.0.push(id);
        self.0.extend(v.to_be_bytes());
        self
    }
    pub fn u32(mut self, id: u8, v: u32) -> Props {
        self.0.push(id);
        self.0.extend(v.to_be_bytes());
        self
    }
    pub fn varint(mut self, id: u8, v: usize) -> Props {
        self.0.push(id);
        self.0.extend(enc::remaining_length(v));
        self
    }
    pub fn str(mut self, id: u8, s: &str) -> Props {
        self.0.push(id);
        self.0.extend(enc::string(s.as_bytes()));
        self
    }
    pub fn bin(mut self, id: u8, b: &[u8]) -> Props {
        self.0.push(id);
        self.0.extend(enc::string(b));
        self
    }
    pub fn user(mut self, k: &str, v: &str) -> Props {
        self.0.push(p::USER_PROPERTY);
        self.0.extend(enc::string(k.as_bytes()));
        self.0.extend(enc::string(v.as_bytes()));
        self
    }
    /// Length prefix + properties, as they go into a packet.
    pub fn block(&self) -> Vec<u8> {
        let mut out = enc::remaining_length(self.0.len());
        out.extend_from_slice(&self.0);
        out
    }
    pub fn parsed(&self) -> Vec<(u8, PropValue)> {
        parse_properties(&self.0)
    }
}

/// The first property `id` of a parsed list.
pub fn prop(props: &[(u8, PropValue)], id: u8) -> Option<&PropValue> {
    props.iter().find(|(i, _)| *i == id).map(|(_, v)| v)
}

pub fn has_prop(props: &[(u8, PropValue)], id: u8) -> bool {
    prop(props, id).is_some()
}

/// The numeric value of property `id` (byte, u16, u32 or varint), if present.
pub fn prop_num(props: &[(u8, PropValue)], id: u8) -> Option<u64> {
    prop(props, id).map(|v| match v {
        PropValue::Byte(b) => *b as u64,
        PropValue::U16(n) => *n as u64,
        PropValue::U32(n) => *n as u64,
        PropValue::Varint(n) => *n as u64,
        other => panic!("property 0x{id:02X} is not numeric: {other:?}"),
    })
}

pub fn prop_str(props: &[(u8, PropValue)], id: u8) -> Option<String> {
    prop(props, id).map(|v| match v {
        PropValue::Str(s) => s.clone(),
        other => panic!("property 0x{id:02X} is not a string: {other:?}"),
    })
}

pub fn user_props(props: &[(u8, PropValue)]) -> Vec<(String, String)> {
    props
        .iter()
        .filter_map(|(_, v)| match v {
            PropValue::Pair(k, v) => Some((k.clone(), v.clone())),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Encoding.
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct Will5 {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
    pub props: Props,
}

#[derive(Clone, Debug)]
pub struct Conn5 {
    pub client_id: String,
    pub clean_start: bool,
    pub keepalive: u16,
    pub props: Props,
    pub will: Option<Will5>,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
}

impl Conn5 {
    /// Clean start, keep alive 60, no properties.
    pub fn new(client_id: &str) -> Conn5 {
        Conn5 {
            client_id: client_id.to_string(),
            clean_start: true,
            keepalive: 60,
            props: Props::new(),
            will: None,
            username: None,
            password: None,
        }
    }
    pub fn clean(mut self, clean_start: bool) -> Conn5 {
        self.clean_start = clean_start;
        self
    }
    pub fn keepalive(mut self, k: u16) -> Conn5 {
        self.keepalive = k;
        self
    }
    pub fn props(mut self, props: Props) -> Conn5 {
        self.props = props;
        self
    }
    /// Adds Session Expiry Interval.
    pub fn expiry(mut self, secs: u32) -> Conn5 {
        self.props = self.props.u32(p::SESSION_EXPIRY, secs);
        self
    }
    pub fn will(mut self, w: Will5) -> Conn5 {
        self.will = Some(w);
        self
    }
}

pub fn connect(c: &Conn5) -> Vec<u8> {
    let mut flags = 0u8;
    if c.clean_start {
        flags |= 0x02;
    }
    if let Some(w) = &c.will {
        flags |= 0x04 | ((w.qos & 3) << 3);
        if w.retain {
            flags |= 0x20;
        }
    }
    if c.password.is_some() {
        flags |= 0x40;
    }
    if c.username.is_some() {
        flags |= 0x80;
    }
    let mut body = enc::string(b"MQTT");
    body.push(5);
    body.push(flags);
    body.extend(c.keepalive.to_be_bytes());
    body.extend(c.props.block());
    body.extend(enc::string(c.client_id.as_bytes()));
    if let Some(w) = &c.will {
        body.extend(w.props.block());
        body.extend(enc::string(w.topic.as_bytes()));
        body.extend(enc::string(&w.payload));
    }
    if let Some(u) = &c.username {
        body.extend(enc::string(u.as_bytes()));
    }
    if let Some(pw) = &c.password {
        body.extend(enc::string(pw));
    }
    enc::packet(0x10, &body)
}

pub fn publish(
    topic: &str,
    payload: &[u8],
    qos: u8,
    retain: bool,
    pkid: u16,
    props: &Props,
) -> Vec<u8> {
    let header = 0x30 | ((qos & 3) << 1) | retain as u8;
    let mut body = enc::string(topic.as_bytes());
    if qos > 0 {
        body.extend(pkid.to_be_bytes());
    }
    body.extend(props.block());
    body.extend_from_slice(payload);
    enc::packet(header, &body)
}

/// Subscription options byte (MQTT 5.0, 3.8.3.1).
pub fn sub_opts(qos: u8, no_local: bool, retain_as_published: bool, retain_handling: u8) -> u8 {
    (qos & 3)
        | (no_local as u8) << 2
        | (retain_as_published as u8) << 3
        | (retain_handling & 3) << 4
}

pub fn subscribe(pkid: u16, props: &Props, filters: &[(&str, u8)]) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    body.extend(props.block());
    for (f, o) in filters {
        body.extend(enc::string(f.as_bytes()));
        body.push(*o);
    }
    enc::packet(0x82, &body)
}

pub fn unsubscribe(pkid: u16, filters: &[&str]) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    body.push(0);
    for f in filters {
        body.extend(enc::string(f.as_bytes()));
    }
    enc::packet(0xA2, &body)
}

/// PUBACK (0x40) / PUBREC (0x50) / PUBREL (0x62) / PUBCOMP (0x70) with a reason code.
pub fn ack(header: u8, pkid: u16, reason: u8) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    if reason != 0 {
        body.push(reason);
    }
    enc::packet(header, &body)
}

pub fn disconnect(reason: u8, props: &Props) -> Vec<u8> {
    let mut body = vec![reason];
    body.extend(props.block());
    enc::packet(0xE0, &body)
}

pub fn auth(reason: u8, props: &Props) -> Vec<u8> {
    let mut body = vec![reason];
    body.extend(props.block());
    enc::packet(0xF0, &body)
}

// ---------------------------------------------------------------------------------------------
// Decoding.
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct Pub5 {
    /// The topic after resolving a topic alias.
    pub topic: String,
    /// The topic as it was on the wire (empty when only an alias was sent).
    pub wire_topic: String,
    pub alias: Option<u16>,
    pub props: Vec<(u8, PropValue)>,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub dup: bool,
    pub retain: bool,
    pub pkid: u16,
}

impl Pub5 {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
    pub fn prop(&self, id: u8) -> Option<&PropValue> {
        prop(&self.props, id)
    }
    pub fn num(&self, id: u8) -> Option<u64> {
        prop_num(&self.props, id)
    }
    /// Every Subscription Identifier, sorted.
    pub fn sub_ids(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .props
            .iter()
            .filter_map(|(id, v)| match (id, v) {
                (&p::SUBSCRIPTION_ID, PropValue::Varint(n)) => Some(*n),
                _ => None,
            })
            .collect();
        v.sort();
        v
    }
    pub fn user_props(&self) -> Vec<(String, String)> {
        user_props(&self.props)
    }
}

pub fn texts(ps: &[Pub5]) -> Vec<String> {
    ps.iter().map(|m| m.text()).collect()
}

pub fn decode_publish(pk: &RawPacket) -> Pub5 {
    assert_eq!(pk.kind(), kind::PUBLISH, "expected PUBLISH, got {pk:?}");
    let qos = (pk.header >> 1) & 3;
    let b = &pk.body;
    let tlen = u16::from_be_bytes([b[0], b[1]]) as usize;
    let mut i = 2 + tlen;
    let topic = String::from_utf8(b[2..i].to_vec()).expect("PUBLISH topic is not UTF-8");
    let mut pkid = 0;
    if qos > 0 {
        pkid = u16::from_be_bytes([b[i], b[i + 1]]);
        i += 2;
    }
    let (plen, used) = decode_varint(&b[i..]).expect("bad v5 PUBLISH property length");
    i += used;
    let props = parse_properties(&b[i..i + plen]);
    i += plen;
    let alias = prop_num(&props, p::TOPIC_ALIAS).map(|a| a as u16);
    Pub5 {
        topic: topic.clone(),
        wire_topic: topic,
        alias,
        props,
        payload: b[i..].to_vec(),
        qos,
        dup: pk.header & 0x08 != 0,
        retain: pk.header & 0x01 != 0,
        pkid,
    }
}

#[derive(Clone, Debug)]
pub struct Ack5 {
    pub pkid: u16,
    /// One code for PUBACK..PUBCOMP (0 when omitted), one per filter for SUBACK / UNSUBACK.
    pub codes: Vec<u8>,
    pub props: Vec<(u8, PropValue)>,
}

impl Ack5 {
    pub fn code(&self) -> u8 {
        assert_eq!(self.codes.len(), 1, "one reason code expected: {self:?}");
        self.codes[0]
    }
}

/// PUBACK / PUBREC / PUBREL / PUBCOMP.
pub fn decode_ack(pk: &RawPacket) -> Ack5 {
    let b = &pk.body;
    assert!(b.len() >= 2, "short ack {pk:?}");
    let pkid = u16::from_be_bytes([b[0], b[1]]);
    let code = b.get(2).copied().unwrap_or(0);
    let props = if b.len() > 3 {
        let (plen, used) = decode_varint(&b[3..]).expect("bad ack property length");
        assert_eq!(3 + used + plen, b.len(), "ack length mismatch {pk:?}");
        parse_properties(&b[3 + used..])
    } else {
        Vec::new()
    };
    Ack5 {
        pkid,
        codes: vec![code],
        props,
    }
}

/// SUBACK / UNSUBACK.
pub fn decode_suback(pk: &RawPacket) -> Ack5 {
    let b = &pk.body;
    let pkid = u16::from_be_bytes([b[0], b[1]]);
    let (plen, used) = decode_varint(&b[2..]).expect("bad SUBACK property length");
    let props = parse_properties(&b[2 + used..2 + used + plen]);
    Ack5 {
        pkid,
        codes: b[2 + used + plen..].to_vec(),
        props,
    }
}

/// DISCONNECT / AUTH: (reason code, properties). An empty body means 0x00.
pub fn decode_disconnect(pk: &RawPacket) -> (u8, Vec<(u8, PropValue)>) {
    let b = &pk.body;
    if b.is_empty() {
        return (0, Vec::new());
    }
    let props = if b.len() > 1 {
        let (plen, used) = decode_varint(&b[1..]).expect("bad DISCONNECT property length");
        parse_properties(&b[1 + used..1 + used + plen])
    } else {
        Vec::new()
    };
    (b[0], props)
}

/// The property list of any v5 packet the broker sends, or None for packets without one.
pub fn packet_props(pk: &RawPacket) -> Vec<(u8, PropValue)> {
    match pk.kind() {
        kind::PUBLISH => decode_publish(pk).props,
        kind::PUBACK | kind::PUBREC | kind::PUBREL | kind::PUBCOMP => decode_ack(pk).props,
        kind::SUBACK | kind::UNSUBACK => decode_suback(pk).props,
        kind::DISCONNECT | kind::AUTH => decode_disconnect(pk).1,
        kind::CONNACK => parse_connack_v5(pk).2,
        _ => Vec::new(),
    }
}

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
        Self::connect_with(port, Conn5::new(id).clean(clean_start))
    }

    /// Sends `c` and requires CONNACK 0x00.
    pub fn connect_with(port: u16, c: Conn5) -> V5 {
        let (conn, ack) = RawClient::connect_raw(port, &connect(&c));
        let ack = ack.unwrap_or_else(|e| panic!("{}: no CONNACK: {e:?}", c.client_id));
        let (sp, rc, props) = parse_connack_v5(&ack);
        assert_eq!(rc, 0, "{}: CONNACK refused: {ack:?} {props:?}", c.client_id);
        let alias_max = prop_num(&c.props.parsed(), p::TOPIC_ALIAS_MAXIMUM).unwrap_or(0) as u16;
        V5 {
            id: c.client_id.clone(),
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
    pub fn try_connect(port: u16, c: &Conn5) -> (RawClient, Result<RawPacket, ReadErr>) {
        RawClient::connect_raw(port, &connect(c))
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
        self.send_ok(&subscribe(id, &props, filters));
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
        self.send_ok(&unsubscribe(id, filters));
        let ack = decode_suback(&self.expect_kind(kind::UNSUBACK, LONG));
        assert_eq!(ack.pkid, id, "{}: UNSUBACK packet id", self.id);
        ack
    }

    /// PUBLISH with properties and complete the QoS flow. QoS 0: None. QoS 1: the PUBACK.
    /// QoS 2: the PUBREC (then PUBREL / PUBCOMP if the PUBREC reason is a success).
    pub fn publish_with(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: u8,
        retain: bool,
        props: Props,
    ) -> Option<Ack5> {
        let id = if qos > 0 { self.pkid() } else { 0 };
        self.send_ok(&publish(topic, payload, qos, retain, id, &props));
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

    /// PUBLISH without properties; returns the PUBACK / PUBREC reason code (0 for QoS 0).
    pub fn publish(&mut self, topic: &str, payload: &[u8], qos: u8, retain: bool) -> u8 {
        self.publish_with(topic, payload, qos, retain, Props::new())
            .map_or(0, |a| a.code())
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
        let _ = self.conn.send(&disconnect(reason, &props));
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
