//! Decoding what the broker sends back, MQTT 3.1 / 3.1.1 / 5.0: whole packets out of a byte
//! stream (`RawPacket`), then the fields of each kind. Independent of `ringmq::protocol`, as
//! `enc` is. Decoders assert what they rely on, so a malformed reply fails the test by name.

use super::enc::{self, kind, p};

/// Decodes a variable byte integer; returns (value, bytes used), None when incomplete/invalid.
pub fn decode_varint(b: &[u8]) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for i in 0..4 {
        let byte = *b.get(i)?;
        value |= ((byte & 0x7F) as usize) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// One control packet as it came over the wire: the fixed header byte and the body.
#[derive(Clone, PartialEq, Eq)]
pub struct RawPacket {
    pub header: u8,
    pub body: Vec<u8>,
}

impl std::fmt::Debug for RawPacket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}(header=0x{:02X}, body={:02X?})",
            kind::name(self.kind()),
            self.header,
            &self.body[..self.body.len().min(64)]
        )
    }
}

/// The whole packets at the start of `bytes`, in order.
pub fn parse_packets(mut bytes: &[u8]) -> Vec<RawPacket> {
    let mut out = Vec::new();
    while bytes.len() >= 2 {
        let Some((len, used)) = decode_varint(&bytes[1..]) else {
            break;
        };
        let total = 1 + used + len;
        if bytes.len() < total {
            break;
        }
        out.push(RawPacket {
            header: bytes[0],
            body: bytes[1 + used..total].to_vec(),
        });
        bytes = &bytes[total..];
    }
    out
}

/// A PUBLISH as the 3.x clients see it (an MQTT 5 one with its properties skipped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawPublish {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub dup: bool,
    pub retain: bool,
    /// 0 for QoS 0.
    pub pkid: u16,
}

impl RawPublish {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// The fields of a PUBLISH, borrowed from its packet.
struct PublishParts<'a> {
    topic: &'a [u8],
    pkid: u16,
    /// The property list without its length (empty in the 3.x form).
    props: &'a [u8],
    payload: &'a [u8],
}

impl RawPacket {
    pub fn kind(&self) -> u8 {
        self.header >> 4
    }
    pub fn flags(&self) -> u8 {
        self.header & 0x0F
    }
    /// The whole packet as it came over the wire.
    pub fn bytes(&self) -> Vec<u8> {
        enc::packet(self.header, &self.body)
    }
    /// The packet identifier of an ack (PUBACK..PUBCOMP, SUBACK, UNSUBACK).
    pub fn pkid(&self) -> u16 {
        assert!(self.body.len() >= 2, "{self:?} has no packet identifier");
        u16::from_be_bytes([self.body[0], self.body[1]])
    }
    /// A 3.1.1 CONNACK: (session present, return code).
    pub fn connack(&self) -> (bool, u8) {
        assert_eq!(self.kind(), kind::CONNACK, "expected CONNACK, got {self:?}");
        assert!(self.body.len() >= 2, "short CONNACK {self:?}");
        (self.body[0] & 0x01 == 1, self.body[1])
    }
    /// A 3.1.1 SUBACK's return codes.
    pub fn suback_codes(&self) -> Vec<u8> {
        assert_eq!(self.kind(), kind::SUBACK, "expected SUBACK, got {self:?}");
        self.body[2..].to_vec()
    }
    /// A 3.1 / 3.1.1 PUBLISH.
    pub fn publish(&self) -> RawPublish {
        self.raw_publish(false)
    }
    /// An MQTT 5 PUBLISH (the property block is skipped).
    pub fn publish_v5(&self) -> RawPublish {
        self.raw_publish(true)
    }
    fn raw_publish(&self, v5: bool) -> RawPublish {
        let parts = self.publish_parts(v5);
        RawPublish {
            topic: String::from_utf8_lossy(parts.topic).into_owned(),
            payload: parts.payload.to_vec(),
            qos: self.publish_qos(),
            dup: self.header & 0x08 != 0,
            retain: self.header & 0x01 != 0,
            pkid: parts.pkid,
        }
    }
    fn publish_qos(&self) -> u8 {
        (self.header >> 1) & 0x03
    }
    /// The one PUBLISH decoder: topic, packet id (QoS > 0), properties (`v5`), payload.
    fn publish_parts(&self, v5: bool) -> PublishParts<'_> {
        assert_eq!(self.kind(), kind::PUBLISH, "expected PUBLISH, got {self:?}");
        let b = &self.body;
        assert!(b.len() >= 2, "short PUBLISH {self:?}");
        let tlen = u16::from_be_bytes([b[0], b[1]]) as usize;
        let mut i = 2 + tlen;
        assert!(b.len() >= i, "PUBLISH topic overruns packet {self:?}");
        let topic = &b[2..i];
        let mut pkid = 0;
        if self.publish_qos() > 0 {
            pkid = u16::from_be_bytes([b[i], b[i + 1]]);
            i += 2;
        }
        let mut props: &[u8] = &[];
        if v5 {
            let (plen, used) = decode_varint(&b[i..]).expect("bad property length in v5 PUBLISH");
            i += used;
            props = &b[i..i + plen];
            i += plen;
        }
        PublishParts {
            topic,
            pkid,
            props,
            payload: &b[i..],
        }
    }
}

// ---------------------------------------------------------------------------------------------
// MQTT 5 properties.
// ---------------------------------------------------------------------------------------------

/// One MQTT 5 property value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PropValue {
    Byte(u8),
    U16(u16),
    U32(u32),
    Varint(usize),
    Str(String),
    Bin(Vec<u8>),
    Pair(String, String),
}

/// Parses an MQTT 5 property list (without its length prefix).
pub fn parse_properties(mut b: &[u8]) -> Vec<(u8, PropValue)> {
    fn take_str(b: &mut &[u8]) -> Vec<u8> {
        let n = u16::from_be_bytes([b[0], b[1]]) as usize;
        let s = b[2..2 + n].to_vec();
        *b = &b[2 + n..];
        s
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        let (id, used) = decode_varint(b).expect("bad property id");
        b = &b[used..];
        let id = id as u8;
        let v = match id {
            0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => {
                let v = PropValue::Byte(b[0]);
                b = &b[1..];
                v
            }
            0x13 | 0x21 | 0x22 | 0x23 => {
                let v = PropValue::U16(u16::from_be_bytes([b[0], b[1]]));
                b = &b[2..];
                v
            }
            0x02 | 0x11 | 0x18 | 0x27 => {
                let v = PropValue::U32(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                b = &b[4..];
                v
            }
            0x0B => {
                let (v, used) = decode_varint(b).expect("bad varint property");
                b = &b[used..];
                PropValue::Varint(v)
            }
            0x03 | 0x08 | 0x12 | 0x15 | 0x1A | 0x1C | 0x1F => {
                PropValue::Str(String::from_utf8_lossy(&take_str(&mut b)).into_owned())
            }
            0x09 | 0x16 => PropValue::Bin(take_str(&mut b)),
            0x26 => {
                let k = String::from_utf8_lossy(&take_str(&mut b)).into_owned();
                let v = String::from_utf8_lossy(&take_str(&mut b)).into_owned();
                PropValue::Pair(k, v)
            }
            other => panic!("unknown MQTT 5 property id 0x{other:02X}"),
        };
        out.push((id, v));
    }
    out
}

/// The property block (length prefix + list) that starts at `b[at..]`, parsed, and the index
/// just after it; no properties when the packet ends at `at` (reason code and properties may be
/// left out together).
fn props_at(b: &[u8], at: usize, what: &str) -> (Vec<(u8, PropValue)>, usize) {
    if b.len() <= at {
        return (Vec::new(), b.len());
    }
    let (plen, used) =
        decode_varint(&b[at..]).unwrap_or_else(|| panic!("bad {what} property length"));
    let end = at + used + plen;
    (parse_properties(&b[at + used..end]), end)
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
// MQTT 5 packets.
// ---------------------------------------------------------------------------------------------

/// An MQTT 5 CONNACK: (session present, reason code, properties).
pub fn parse_connack_v5(pk: &RawPacket) -> (bool, u8, Vec<(u8, PropValue)>) {
    assert_eq!(pk.kind(), kind::CONNACK, "expected CONNACK, got {pk:?}");
    let b = &pk.body;
    assert!(b.len() >= 2, "short v5 CONNACK {pk:?}");
    let (props, _) = props_at(b, 2, "CONNACK");
    (b[0] & 1 == 1, b[1], props)
}

/// An MQTT 5 PUBLISH with its properties; the V5 client resolves `topic` from an alias.
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

/// The payloads as text.
pub fn texts(ps: &[Pub5]) -> Vec<String> {
    ps.iter().map(|m| m.text()).collect()
}

/// An MQTT 5 PUBLISH; its topic must be UTF-8.
pub fn decode_publish(pk: &RawPacket) -> Pub5 {
    let parts = pk.publish_parts(true);
    let topic = String::from_utf8(parts.topic.to_vec()).expect("PUBLISH topic is not UTF-8");
    let props = parse_properties(parts.props);
    let alias = prop_num(&props, p::TOPIC_ALIAS).map(|a| a as u16);
    Pub5 {
        topic: topic.clone(),
        wire_topic: topic,
        alias,
        props,
        payload: parts.payload.to_vec(),
        qos: pk.publish_qos(),
        dup: pk.header & 0x08 != 0,
        retain: pk.header & 0x01 != 0,
        pkid: parts.pkid,
    }
}

/// An MQTT 5 ack: PUBACK..PUBCOMP, SUBACK or UNSUBACK.
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
    let (props, end) = props_at(b, 3, "ack");
    assert_eq!(end, b.len(), "ack length mismatch {pk:?}");
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
    (b[0], props_at(b, 1, "DISCONNECT").0)
}

/// The property list of any v5 packet the broker sends (empty for packets without one).
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
