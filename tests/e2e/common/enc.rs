//! Encoding MQTT 3.1 / 3.1.1 / 5.0 packets byte by byte, for the raw test clients. Deliberately
//! independent of `ringmq::protocol` (a test of our codec must not use our codec), and small
//! enough to check against the spec by eye. Every field is public, so a test can get any of
//! them wrong on purpose.
//!
//! One builder per packet that has options: `Connect` (any level, will, credentials,
//! properties), `Will`, `Publish` and `Props` (an MQTT 5 property list). The packets without
//! options are plain functions. Where a packet differs between 3.x and 5.0, the 5.0 form is
//! chosen by the builder (`Connect::v5`, `Publish::v5` / `props`) or by a `_v5` function.

/// Control packet types (the high nibble of the first byte).
pub mod kind {
    pub const CONNECT: u8 = 1;
    pub const CONNACK: u8 = 2;
    pub const PUBLISH: u8 = 3;
    pub const PUBACK: u8 = 4;
    pub const PUBREC: u8 = 5;
    pub const PUBREL: u8 = 6;
    pub const PUBCOMP: u8 = 7;
    pub const SUBSCRIBE: u8 = 8;
    pub const SUBACK: u8 = 9;
    pub const UNSUBSCRIBE: u8 = 10;
    pub const UNSUBACK: u8 = 11;
    pub const PINGREQ: u8 = 12;
    pub const PINGRESP: u8 = 13;
    pub const DISCONNECT: u8 = 14;
    pub const AUTH: u8 = 15;

    pub fn name(k: u8) -> &'static str {
        match k {
            CONNECT => "CONNECT",
            CONNACK => "CONNACK",
            PUBLISH => "PUBLISH",
            PUBACK => "PUBACK",
            PUBREC => "PUBREC",
            PUBREL => "PUBREL",
            PUBCOMP => "PUBCOMP",
            SUBSCRIBE => "SUBSCRIBE",
            SUBACK => "SUBACK",
            UNSUBSCRIBE => "UNSUBSCRIBE",
            UNSUBACK => "UNSUBACK",
            PINGREQ => "PINGREQ",
            PINGRESP => "PINGRESP",
            DISCONNECT => "DISCONNECT",
            AUTH => "AUTH",
            _ => "RESERVED",
        }
    }
}

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

// ---------------------------------------------------------------------------------------------
// Primitives.
// ---------------------------------------------------------------------------------------------

/// The variable byte integer of "remaining length" and of property lengths (1..=4 bytes,
/// 7 bits each, high bit = continue).
pub fn remaining_length(mut n: usize) -> Vec<u8> {
    assert!(n <= 268_435_455, "remaining length {n} cannot be encoded");
    let mut out = Vec::with_capacity(4);
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            return out;
        }
    }
}

/// Fixed header byte + remaining length + body.
pub fn packet(header: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![header];
    out.extend(remaining_length(body.len()));
    out.extend_from_slice(body);
    out
}

/// A length-prefixed (u16 big endian) string or binary field.
pub fn string(s: &[u8]) -> Vec<u8> {
    assert!(s.len() <= u16::MAX as usize);
    let mut out = (s.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(s);
    out
}

// ---------------------------------------------------------------------------------------------
// MQTT 5 properties.
// ---------------------------------------------------------------------------------------------

/// An encoded MQTT 5 property list (without its length prefix), built by chaining.
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
        self.0.extend(remaining_length(v));
        self
    }
    pub fn str(self, id: u8, s: &str) -> Props {
        self.bin(id, s.as_bytes())
    }
    pub fn bin(mut self, id: u8, b: &[u8]) -> Props {
        self.0.push(id);
        self.0.extend(string(b));
        self
    }
    pub fn user(mut self, k: &str, v: &str) -> Props {
        self.0.push(p::USER_PROPERTY);
        self.0.extend(string(k.as_bytes()));
        self.0.extend(string(v.as_bytes()));
        self
    }
    /// Length prefix + properties, as they go into a packet.
    pub fn block(&self) -> Vec<u8> {
        let mut out = remaining_length(self.0.len());
        out.extend_from_slice(&self.0);
        out
    }
    pub fn parsed(&self) -> Vec<(u8, super::dec::PropValue)> {
        super::dec::parse_properties(&self.0)
    }
}

// ---------------------------------------------------------------------------------------------
// CONNECT.
// ---------------------------------------------------------------------------------------------

/// A will message. `props` (the will properties) go on the wire only in an MQTT 5 CONNECT.
#[derive(Clone, Debug, Default)]
pub struct Will {
    pub topic: Vec<u8>,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
    pub props: Props,
}

impl Will {
    /// QoS 0, not retained, no properties.
    pub fn new(topic: impl AsRef<[u8]>, payload: impl AsRef<[u8]>) -> Will {
        Will {
            topic: topic.as_ref().to_vec(),
            payload: payload.as_ref().to_vec(),
            ..Default::default()
        }
    }
    pub fn qos(mut self, qos: u8) -> Will {
        self.qos = qos;
        self
    }
    pub fn retain(mut self, retain: bool) -> Will {
        self.retain = retain;
        self
    }
    pub fn props(mut self, props: Props) -> Will {
        self.props = props;
        self
    }
}

/// Every field of a CONNECT. The properties (CONNECT's and the will's) are written only when
/// `level` is 5.
#[derive(Clone, Debug)]
pub struct Connect {
    pub protocol_name: Vec<u8>,
    pub level: u8,
    /// Clean Session (3.x) / Clean Start (5.0).
    pub clean: bool,
    pub keepalive: u16,
    pub client_id: Vec<u8>,
    pub will: Option<Will>,
    pub username: Option<Vec<u8>>,
    pub password: Option<Vec<u8>>,
    /// Sets bit 0 of the connect flags, which the spec reserves (must be 0).
    pub reserved_flag: bool,
    /// MQTT 5 only: the CONNECT properties.
    pub props: Props,
}

impl Connect {
    /// MQTT 3.1.1 ("MQTT", level 4), clean session, keep alive 60, no will or credentials.
    pub fn v311(client_id: impl AsRef<[u8]>) -> Connect {
        Connect {
            protocol_name: b"MQTT".to_vec(),
            level: 4,
            clean: true,
            keepalive: 60,
            client_id: client_id.as_ref().to_vec(),
            will: None,
            username: None,
            password: None,
            reserved_flag: false,
            props: Props::new(),
        }
    }
    /// MQTT 3.1 ("MQIsdp", level 3), otherwise as `v311`.
    pub fn v31(client_id: impl AsRef<[u8]>) -> Connect {
        Connect::v311(client_id).protocol(b"MQIsdp", 3)
    }
    /// MQTT 5.0 ("MQTT", level 5), clean start, no properties, otherwise as `v311`.
    pub fn v5(client_id: impl AsRef<[u8]>) -> Connect {
        Connect::v311(client_id).protocol(b"MQTT", 5)
    }
    /// Any protocol name and level, right or wrong.
    pub fn protocol(mut self, name: &[u8], level: u8) -> Connect {
        self.protocol_name = name.to_vec();
        self.level = level;
        self
    }
    pub fn clean(mut self, clean: bool) -> Connect {
        self.clean = clean;
        self
    }
    pub fn keepalive(mut self, secs: u16) -> Connect {
        self.keepalive = secs;
        self
    }
    pub fn will(mut self, will: Will) -> Connect {
        self.will = Some(will);
        self
    }
    pub fn username(mut self, user: impl AsRef<[u8]>) -> Connect {
        self.username = Some(user.as_ref().to_vec());
        self
    }
    pub fn password(mut self, password: impl AsRef<[u8]>) -> Connect {
        self.password = Some(password.as_ref().to_vec());
        self
    }
    pub fn props(mut self, props: Props) -> Connect {
        self.props = props;
        self
    }
    /// Adds Session Expiry Interval (MQTT 5).
    pub fn expiry(mut self, secs: u32) -> Connect {
        self.props = self.props.u32(p::SESSION_EXPIRY, secs);
        self
    }
    /// The client id, for messages.
    pub fn id(&self) -> String {
        String::from_utf8_lossy(&self.client_id).into_owned()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut flags = 0u8;
        if self.reserved_flag {
            flags |= 0x01;
        }
        if self.clean {
            flags |= 0x02;
        }
        if let Some(w) = &self.will {
            flags |= 0x04 | ((w.qos & 0x03) << 3);
            if w.retain {
                flags |= 0x20;
            }
        }
        if self.password.is_some() {
            flags |= 0x40;
        }
        if self.username.is_some() {
            flags |= 0x80;
        }
        let v5 = self.level == 5;
        let mut body = string(&self.protocol_name);
        body.push(self.level);
        body.push(flags);
        body.extend(self.keepalive.to_be_bytes());
        if v5 {
            body.extend(self.props.block());
        }
        body.extend(string(&self.client_id));
        if let Some(w) = &self.will {
            if v5 {
                body.extend(w.props.block());
            }
            body.extend(string(&w.topic));
            body.extend(string(&w.payload));
        }
        if let Some(u) = &self.username {
            body.extend(string(u));
        }
        if let Some(pw) = &self.password {
            body.extend(string(pw));
        }
        packet(0x10, &body)
    }
}

// ---------------------------------------------------------------------------------------------
// PUBLISH.
// ---------------------------------------------------------------------------------------------

/// A PUBLISH. `pkid` is written only for QoS > 0 (QoS 3 included, so that a malformed QoS 3
/// packet still looks plausible); `props` Some = the MQTT 5 form with that property list,
/// None = the 3.1 / 3.1.1 form.
#[derive(Clone, Debug, Default)]
pub struct Publish {
    pub topic: Vec<u8>,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
    pub dup: bool,
    pub pkid: u16,
    pub props: Option<Props>,
}

impl Publish {
    /// QoS 0, no flags, packet id 0, 3.x form.
    pub fn new(topic: impl AsRef<[u8]>, payload: impl AsRef<[u8]>) -> Publish {
        Publish {
            topic: topic.as_ref().to_vec(),
            payload: payload.as_ref().to_vec(),
            ..Default::default()
        }
    }
    pub fn qos(mut self, qos: u8) -> Publish {
        self.qos = qos;
        self
    }
    pub fn pkid(mut self, pkid: u16) -> Publish {
        self.pkid = pkid;
        self
    }
    pub fn retain(mut self, retain: bool) -> Publish {
        self.retain = retain;
        self
    }
    pub fn dup(mut self, dup: bool) -> Publish {
        self.dup = dup;
        self
    }
    /// The MQTT 5 form with no properties (keeps properties already set).
    pub fn v5(mut self) -> Publish {
        self.props.get_or_insert_with(Props::new);
        self
    }
    /// The MQTT 5 form with these properties.
    pub fn props(mut self, props: Props) -> Publish {
        self.props = Some(props);
        self
    }
    /// The topic, for messages.
    pub fn topic_str(&self) -> String {
        String::from_utf8_lossy(&self.topic).into_owned()
    }

    pub fn encode(&self) -> Vec<u8> {
        let header = 0x30 | ((self.dup as u8) << 3) | ((self.qos & 0x03) << 1) | self.retain as u8;
        let mut body = string(&self.topic);
        if self.qos > 0 {
            body.extend(self.pkid.to_be_bytes());
        }
        if let Some(props) = &self.props {
            body.extend(props.block());
        }
        body.extend_from_slice(&self.payload);
        packet(header, &body)
    }
}

// ---------------------------------------------------------------------------------------------
// The other packets.
// ---------------------------------------------------------------------------------------------

/// Subscription options byte (MQTT 5.0, 3.8.3.1). In 3.x the byte is the requested QoS.
pub fn sub_opts(qos: u8, no_local: bool, retain_as_published: bool, retain_handling: u8) -> u8 {
    (qos & 3)
        | (no_local as u8) << 2
        | (retain_as_published as u8) << 3
        | (retain_handling & 3) << 4
}

/// SUBSCRIBE: packet id, the property block (MQTT 5 only), then each filter followed by its
/// options byte (3.x: the requested QoS).
fn subscribe_packet(pkid: u16, props: Option<&Props>, filters: &[(&str, u8)]) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    if let Some(props) = props {
        body.extend(props.block());
    }
    for (f, o) in filters {
        body.extend(string(f.as_bytes()));
        body.push(*o);
    }
    packet(0x82, &body)
}

/// SUBSCRIBE (3.1 / 3.1.1 form): each filter with its requested QoS.
pub fn subscribe(pkid: u16, filters: &[(&str, u8)]) -> Vec<u8> {
    subscribe_packet(pkid, None, filters)
}

/// SUBSCRIBE (MQTT 5 form): properties, then each filter with its options byte (`sub_opts`).
pub fn subscribe_v5(pkid: u16, props: &Props, filters: &[(&str, u8)]) -> Vec<u8> {
    subscribe_packet(pkid, Some(props), filters)
}

fn unsubscribe_packet(pkid: u16, props: Option<&Props>, filters: &[&str]) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    if let Some(props) = props {
        body.extend(props.block());
    }
    for f in filters {
        body.extend(string(f.as_bytes()));
    }
    packet(0xA2, &body)
}

/// UNSUBSCRIBE (3.1 / 3.1.1 form).
pub fn unsubscribe(pkid: u16, filters: &[&str]) -> Vec<u8> {
    unsubscribe_packet(pkid, None, filters)
}

/// UNSUBSCRIBE (MQTT 5 form) with an empty property block.
pub fn unsubscribe_v5(pkid: u16, filters: &[&str]) -> Vec<u8> {
    unsubscribe_packet(pkid, Some(&Props::new()), filters)
}

/// PUBACK (0x40) / PUBREC (0x50) / PUBREL (0x62) / PUBCOMP (0x70). A reason code other than 0
/// (MQTT 5) is written after the packet id; 0 is left out, which is also the 3.x form.
pub fn ack(header: u8, pkid: u16, reason: u8) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    if reason != 0 {
        body.push(reason);
    }
    packet(header, &body)
}

pub fn puback(pkid: u16) -> Vec<u8> {
    ack(0x40, pkid, 0)
}
pub fn pubrec(pkid: u16) -> Vec<u8> {
    ack(0x50, pkid, 0)
}
pub fn pubrel(pkid: u16) -> Vec<u8> {
    ack(0x62, pkid, 0)
}
pub fn pubcomp(pkid: u16) -> Vec<u8> {
    ack(0x70, pkid, 0)
}

/// DISCONNECT (MQTT 5 form) with a reason code and properties.
pub fn disconnect_v5(reason: u8, props: &Props) -> Vec<u8> {
    let mut body = vec![reason];
    body.extend(props.block());
    packet(0xE0, &body)
}

/// AUTH (MQTT 5) with a reason code and properties.
pub fn auth(reason: u8, props: &Props) -> Vec<u8> {
    let mut body = vec![reason];
    body.extend(props.block());
    packet(0xF0, &body)
}

pub const PINGREQ: [u8; 2] = [0xC0, 0x00];
pub const PINGRESP: [u8; 2] = [0xD0, 0x00];
/// DISCONNECT, 3.x form (in MQTT 5 the same bytes mean reason 0x00, no properties).
pub const DISCONNECT: [u8; 2] = [0xE0, 0x00];
