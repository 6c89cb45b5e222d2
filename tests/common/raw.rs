//! Raw MQTT over a blocking `std::net::TcpStream`: hand-written packet bytes in, the broker's
//! reply bytes out. Deliberately independent of `ringmq::protocol` (a test of our codec must not
//! use our codec), and small enough to check against the spec by eye.
//!
//! Everything here has a deadline: every read takes a timeout, so a raw test can never hang.

use std::collections::{HashSet, VecDeque};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

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

// ---------------------------------------------------------------------------------------------
// Encoding: MQTT 3.1 / 3.1.1 / 5.0 packets built byte by byte.
// ---------------------------------------------------------------------------------------------

pub mod enc {
    /// The variable-length "remaining length" (1..=4 bytes, 7 bits each, high bit = continue).
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

    #[derive(Clone, Debug)]
    pub struct Will<'a> {
        pub topic: &'a [u8],
        pub payload: &'a [u8],
        pub qos: u8,
        pub retain: bool,
    }

    /// Every field of a CONNECT, so tests can get any of them wrong on purpose.
    #[derive(Clone, Debug)]
    pub struct Connect<'a> {
        pub protocol_name: &'a [u8],
        pub level: u8,
        pub clean: bool,
        pub keepalive: u16,
        pub client_id: &'a [u8],
        pub will: Option<Will<'a>>,
        pub username: Option<&'a [u8]>,
        pub password: Option<&'a [u8]>,
        /// Sets bit 0 of the connect flags, which the spec reserves (must be 0).
        pub reserved_flag: bool,
        /// MQTT 5 only: the encoded CONNECT properties (without their length prefix).
        pub properties: Vec<u8>,
    }

    impl Default for Connect<'_> {
        fn default() -> Self {
            Connect {
                protocol_name: b"MQTT",
                level: 4,
                clean: true,
                keepalive: 60,
                client_id: b"",
                will: None,
                username: None,
                password: None,
                reserved_flag: false,
                properties: Vec::new(),
            }
        }
    }

    pub fn connect(c: &Connect) -> Vec<u8> {
        let mut flags = 0u8;
        if c.reserved_flag {
            flags |= 0x01;
        }
        if c.clean {
            flags |= 0x02;
        }
        if let Some(w) = &c.will {
            flags |= 0x04 | ((w.qos & 0x03) << 3);
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
        let v5 = c.level == 5;
        let mut body = string(c.protocol_name);
        body.push(c.level);
        body.push(flags);
        body.extend(c.keepalive.to_be_bytes());
        if v5 {
            body.extend(remaining_length(c.properties.len()));
            body.extend_from_slice(&c.properties);
        }
        body.extend(string(c.client_id));
        if let Some(w) = &c.will {
            if v5 {
                body.push(0); // no will properties
            }
            body.extend(string(w.topic));
            body.extend(string(w.payload));
        }
        if let Some(u) = c.username {
            body.extend(string(u));
        }
        if let Some(p) = c.password {
            body.extend(string(p));
        }
        packet(0x10, &body)
    }

    /// A plain MQTT 3.1.1 CONNECT.
    pub fn connect_v311(client_id: &str, clean: bool, keepalive: u16) -> Vec<u8> {
        connect(&Connect {
            client_id: client_id.as_bytes(),
            clean,
            keepalive,
            ..Default::default()
        })
    }

    /// A plain MQTT 5 CONNECT with no properties.
    pub fn connect_v5(client_id: &str, clean_start: bool, keepalive: u16) -> Vec<u8> {
        connect(&Connect {
            level: 5,
            client_id: client_id.as_bytes(),
            clean: clean_start,
            keepalive,
            ..Default::default()
        })
    }

    /// SUBSCRIBE (3.1.1 form): each filter followed by its requested QoS byte.
    pub fn subscribe(pkid: u16, filters: &[(&str, u8)]) -> Vec<u8> {
        let mut body = pkid.to_be_bytes().to_vec();
        for (f, q) in filters {
            body.extend(string(f.as_bytes()));
            body.push(*q);
        }
        packet(0x82, &body)
    }

    /// SUBSCRIBE (MQTT 5 form): empty property block, options byte = QoS.
    pub fn subscribe_v5(pkid: u16, filters: &[(&str, u8)]) -> Vec<u8> {
        let mut body = pkid.to_be_bytes().to_vec();
        body.push(0);
        for (f, q) in filters {
            body.extend(string(f.as_bytes()));
            body.push(*q);
        }
        packet(0x82, &body)
    }

    pub fn unsubscribe(pkid: u16, filters: &[&str]) -> Vec<u8> {
        let mut body = pkid.to_be_bytes().to_vec();
        for f in filters {
            body.extend(string(f.as_bytes()));
        }
        packet(0xA2, &body)
    }

    /// PUBLISH (3.1 / 3.1.1 form). `pkid` is written only for QoS > 0 (QoS 3 included, so that
    /// a malformed QoS 3 packet still looks plausible).
    pub fn publish(
        topic: &[u8],
        payload: &[u8],
        qos: u8,
        retain: bool,
        dup: bool,
        pkid: u16,
    ) -> Vec<u8> {
        let header = 0x30 | ((dup as u8) << 3) | ((qos & 0x03) << 1) | retain as u8;
        let mut body = string(topic);
        if qos > 0 {
            body.extend(pkid.to_be_bytes());
        }
        body.extend_from_slice(payload);
        packet(header, &body)
    }

    /// PUBLISH (MQTT 5 form) with an empty property block.
    pub fn publish_v5(topic: &[u8], payload: &[u8], qos: u8, retain: bool, pkid: u16) -> Vec<u8> {
        let header = 0x30 | ((qos & 0x03) << 1) | retain as u8;
        let mut body = string(topic);
        if qos > 0 {
            body.extend(pkid.to_be_bytes());
        }
        body.push(0);
        body.extend_from_slice(payload);
        packet(header, &body)
    }

    pub fn puback(pkid: u16) -> Vec<u8> {
        packet(0x40, &pkid.to_be_bytes())
    }
    pub fn pubrec(pkid: u16) -> Vec<u8> {
        packet(0x50, &pkid.to_be_bytes())
    }
    pub fn pubrel(pkid: u16) -> Vec<u8> {
        packet(0x62, &pkid.to_be_bytes())
    }
    pub fn pubcomp(pkid: u16) -> Vec<u8> {
        packet(0x70, &pkid.to_be_bytes())
    }

    pub const PINGREQ: [u8; 2] = [0xC0, 0x00];
    pub const PINGRESP: [u8; 2] = [0xD0, 0x00];
    pub const DISCONNECT: [u8; 2] = [0xE0, 0x00];
}

// ---------------------------------------------------------------------------------------------
// Decoding what the broker sends back.
// ---------------------------------------------------------------------------------------------

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
        self.publish_impl(false)
    }
    /// An MQTT 5 PUBLISH (the property block is skipped).
    pub fn publish_v5(&self) -> RawPublish {
        self.publish_impl(true)
    }
    fn publish_impl(&self, v5: bool) -> RawPublish {
        assert_eq!(self.kind(), kind::PUBLISH, "expected PUBLISH, got {self:?}");
        let qos = (self.header >> 1) & 0x03;
        let b = &self.body;
        assert!(b.len() >= 2, "short PUBLISH {self:?}");
        let tlen = u16::from_be_bytes([b[0], b[1]]) as usize;
        let mut i = 2 + tlen;
        assert!(b.len() >= i, "PUBLISH topic overruns packet {self:?}");
        let topic = String::from_utf8_lossy(&b[2..i]).into_owned();
        let mut pkid = 0;
        if qos > 0 {
            pkid = u16::from_be_bytes([b[i], b[i + 1]]);
            i += 2;
        }
        if v5 {
            let (plen, used) = decode_varint(&b[i..]).expect("bad property length in v5 PUBLISH");
            i += used + plen;
        }
        RawPublish {
            topic,
            payload: b[i..].to_vec(),
            qos,
            dup: self.header & 0x08 != 0,
            retain: self.header & 0x01 != 0,
            pkid,
        }
    }
}

/// Decodes a variable byte integer; returns (value, bytes used), None when incomplete/invalid.
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

/// One MQTT 5 property as found in a CONNACK (or any other property block).
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

/// Parses an MQTT 5 property block (without its length prefix).
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

/// An MQTT 5 CONNACK: (session present, reason code, properties).
pub fn parse_connack_v5(p: &RawPacket) -> (bool, u8, Vec<(u8, PropValue)>) {
    assert_eq!(p.kind(), kind::CONNACK, "expected CONNACK, got {p:?}");
    let b = &p.body;
    assert!(b.len() >= 2, "short v5 CONNACK {p:?}");
    let props = if b.len() > 2 {
        let (plen, used) = decode_varint(&b[2..]).expect("bad CONNACK property length");
        parse_properties(&b[2 + used..2 + used + plen])
    } else {
        Vec::new()
    };
    (b[0] & 1 == 1, b[1], props)
}

// ---------------------------------------------------------------------------------------------
// The raw connection.
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
pub enum ReadErr {
    /// Nothing (complete) arrived before the deadline.
    Timeout,
    /// The broker closed the connection (EOF or reset). The string says how.
    Closed(String),
}

pub struct RawClient {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Packets already read but not yet handed out (kept aside while waiting for another one).
    pending: VecDeque<RawPacket>,
}

pub const SHORT: Duration = Duration::from_secs(5);
pub const LONG: Duration = Duration::from_secs(15);

impl RawClient {
    /// A TCP connection to the broker; no MQTT sent yet.
    pub fn tcp(port: u16) -> RawClient {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("tcp connect to 127.0.0.1:{port}: {e}"));
        stream.set_nodelay(true).unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        RawClient {
            stream,
            buf: Vec::new(),
            pending: VecDeque::new(),
        }
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Writes bytes. Errors are returned, not panicked on: a test that sends garbage expects the
    /// broker may already have closed the socket.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// `send` that panics on error, for well-formed traffic.
    pub fn send_ok(&mut self, bytes: &[u8]) {
        self.send(bytes)
            .unwrap_or_else(|e| panic!("write to broker failed: {e}"));
    }

    /// Half-closes our side (the broker reads EOF), keeps reading possible.
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Parses one complete packet from `buf`, if there is one.
    fn parse_one(&mut self) -> Option<RawPacket> {
        if self.buf.len() < 2 {
            return None;
        }
        let (len, used) = match decode_varint(&self.buf[1..]) {
            Some(x) => x,
            None => {
                assert!(
                    self.buf.len() < 5,
                    "broker sent an invalid remaining length: {:02X?}",
                    &self.buf[..5]
                );
                return None;
            }
        };
        let total = 1 + used + len;
        if self.buf.len() < total {
            return None;
        }
        let p = RawPacket {
            header: self.buf[0],
            body: self.buf[1 + used..total].to_vec(),
        };
        self.buf.drain(..total);
        Some(p)
    }

    /// Reads more bytes from the socket into `buf`, waiting at most until `deadline`.
    fn fill(&mut self, deadline: Instant) -> Result<(), ReadErr> {
        let mut tmp = [0u8; 64 * 1024];
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(ReadErr::Timeout);
            }
            let wait = (deadline - now).max(Duration::from_millis(1));
            self.stream.set_read_timeout(Some(wait)).unwrap();
            match self.stream.read(&mut tmp) {
                Ok(0) => {
                    let note = if self.buf.is_empty() {
                        "eof".to_string()
                    } else {
                        format!("eof with {} bytes of an incomplete packet", self.buf.len())
                    };
                    return Err(ReadErr::Closed(note));
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&tmp[..n]);
                    return Ok(());
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ReadErr::Closed(format!("read error: {e}"))),
            }
        }
    }

    /// The next packet from the broker, waiting at most `timeout`.
    pub fn read_packet(&mut self, timeout: Duration) -> Result<RawPacket, ReadErr> {
        if let Some(p) = self.pending.pop_front() {
            return Ok(p);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(p) = self.parse_one() {
                return Ok(p);
            }
            self.fill(deadline)?;
        }
    }

    /// Every complete packet available now, after waiting at most `timeout` for the first.
    pub fn read_batch(&mut self, timeout: Duration) -> Result<Vec<RawPacket>, ReadErr> {
        let mut out: Vec<RawPacket> = self.pending.drain(..).collect();
        if out.is_empty() {
            out.push(self.read_packet(timeout)?);
        }
        while let Some(p) = self.parse_one() {
            out.push(p);
        }
        Ok(out)
    }

    /// The next packet; panics (naming `what`) on timeout or close.
    pub fn expect_packet(&mut self, timeout: Duration, what: &str) -> RawPacket {
        match self.read_packet(timeout) {
            Ok(p) => p,
            Err(e) => panic!("waiting for {what}: {e:?}"),
        }
    }

    /// The next packet matching `pred`; packets that don't match are kept for later reads.
    pub fn expect_where(
        &mut self,
        timeout: Duration,
        what: &str,
        mut pred: impl FnMut(&RawPacket) -> bool,
    ) -> RawPacket {
        if let Some(i) = self.pending.iter().position(&mut pred) {
            return self.pending.remove(i).unwrap();
        }
        let deadline = Instant::now() + timeout;
        let mut skipped = Vec::new();
        let result = loop {
            let p = loop {
                if let Some(p) = self.parse_one() {
                    break Ok(p);
                }
                if let Err(e) = self.fill(deadline) {
                    break Err(e);
                }
            };
            match p {
                Ok(p) if pred(&p) => break Ok(p),
                Ok(p) => skipped.push(p),
                Err(e) => break Err(e),
            }
        };
        self.pending.extend(skipped);
        match result {
            Ok(p) => p,
            Err(e) => panic!(
                "waiting for {what}: {e:?} (other packets seen meanwhile: {:?})",
                self.pending
            ),
        }
    }

    /// The next packet, which must be of kind `k`.
    pub fn expect_kind(&mut self, k: u8, timeout: Duration) -> RawPacket {
        let p = self.expect_packet(timeout, kind::name(k));
        assert_eq!(p.kind(), k, "expected {}, got {p:?}", kind::name(k));
        p
    }

    /// Waits until the broker closes the connection; returns what it sent before closing.
    /// Panics if the connection is still open after `timeout`.
    pub fn expect_closed(&mut self, timeout: Duration, what: &str) -> Vec<RawPacket> {
        let deadline = Instant::now() + timeout;
        let mut got: Vec<RawPacket> = self.pending.drain(..).collect();
        loop {
            while let Some(p) = self.parse_one() {
                got.push(p);
            }
            match self.fill(deadline) {
                Ok(()) => continue,
                Err(ReadErr::Closed(_)) => {
                    while let Some(p) = self.parse_one() {
                        got.push(p);
                    }
                    return got;
                }
                Err(ReadErr::Timeout) => panic!(
                    "{what}: connection still open after {timeout:?} (packets received: {got:?})"
                ),
            }
        }
    }

    // --- MQTT 3.1.1 conveniences -------------------------------------------------------------

    /// Sends a 3.1.1 CONNECT and expects CONNACK with return code 0; returns session present.
    pub fn connect311(
        port: u16,
        client_id: &str,
        clean: bool,
        keepalive: u16,
    ) -> (RawClient, bool) {
        let mut c = RawClient::tcp(port);
        c.send_ok(&enc::connect_v311(client_id, clean, keepalive));
        let ack = c.expect_kind(kind::CONNACK, LONG);
        assert_eq!(
            ack.body.len(),
            2,
            "3.1.1 CONNACK has 2 bytes of body: {ack:?}"
        );
        let (sp, rc) = ack.connack();
        assert_eq!(rc, 0, "CONNACK for {client_id:?} refused: {ack:?}");
        (c, sp)
    }

    /// Sends any CONNECT and returns the first packet the broker answers with (or the error).
    pub fn connect_raw(port: u16, connect: &[u8]) -> (RawClient, Result<RawPacket, ReadErr>) {
        let mut c = RawClient::tcp(port);
        let _ = c.send(connect); // the broker may close before reading it all
        let r = c.read_packet(LONG);
        (c, r)
    }

    /// SUBSCRIBE and wait for the SUBACK with the same packet id; returns its return codes.
    pub fn subscribe(&mut self, pkid: u16, filters: &[(&str, u8)]) -> Vec<u8> {
        self.send_ok(&enc::subscribe(pkid, filters));
        let ack = self.expect_where(LONG, "SUBACK", |p| p.kind() == kind::SUBACK);
        assert_eq!(ack.header, 0x90, "SUBACK fixed header: {ack:?}");
        assert_eq!(ack.pkid(), pkid, "SUBACK packet id");
        let codes = ack.suback_codes();
        assert_eq!(
            codes.len(),
            filters.len(),
            "one SUBACK code per filter: {ack:?}"
        );
        codes
    }

    /// SUBSCRIBE and require every filter granted at the QoS asked for.
    pub fn subscribe_ok(&mut self, pkid: u16, filters: &[(&str, u8)]) {
        let codes = self.subscribe(pkid, filters);
        let want: Vec<u8> = filters.iter().map(|f| f.1).collect();
        assert_eq!(codes, want, "granted QoS for {filters:?}");
    }

    pub fn unsubscribe(&mut self, pkid: u16, filters: &[&str]) {
        self.send_ok(&enc::unsubscribe(pkid, filters));
        let ack = self.expect_where(LONG, "UNSUBACK", |p| p.kind() == kind::UNSUBACK);
        assert_eq!(
            ack.bytes(),
            vec![0xB0, 0x02, (pkid >> 8) as u8, pkid as u8],
            "UNSUBACK bytes"
        );
    }

    /// Publishes and completes the QoS flow for it (PUBACK, or PUBREC/PUBREL/PUBCOMP),
    /// checking the exact bytes of each ack.
    pub fn publish(&mut self, qos: u8, pkid: u16, topic: &str, payload: &[u8], retain: bool) {
        self.send_ok(&enc::publish(
            topic.as_bytes(),
            payload,
            qos,
            retain,
            false,
            pkid,
        ));
        self.complete_inbound(qos, pkid);
    }

    /// The broker's half of an inbound QoS flow for `pkid` after our PUBLISH was sent.
    pub fn complete_inbound(&mut self, qos: u8, pkid: u16) {
        let [hi, lo] = pkid.to_be_bytes();
        match qos {
            0 => {}
            1 => {
                let ack = self.expect_where(LONG, "PUBACK", |p| p.kind() == kind::PUBACK);
                assert_eq!(ack.bytes(), vec![0x40, 0x02, hi, lo], "PUBACK bytes");
            }
            2 => {
                let rec = self.expect_where(LONG, "PUBREC", |p| p.kind() == kind::PUBREC);
                assert_eq!(rec.bytes(), vec![0x50, 0x02, hi, lo], "PUBREC bytes");
                self.send_ok(&enc::pubrel(pkid));
                let comp = self.expect_where(LONG, "PUBCOMP", |p| p.kind() == kind::PUBCOMP);
                assert_eq!(comp.bytes(), vec![0x70, 0x02, hi, lo], "PUBCOMP bytes");
            }
            q => panic!("no QoS {q} flow"),
        }
    }

    /// PINGREQ -> exactly PINGRESP (D0 00).
    pub fn ping(&mut self) {
        self.send_ok(&enc::PINGREQ);
        let p = self.expect_where(LONG, "PINGRESP", |p| p.kind() == kind::PINGRESP);
        assert_eq!(p.bytes(), enc::PINGRESP.to_vec(), "PINGRESP bytes");
    }

    /// The next PUBLISH (3.1.1 form), without acking it. Other packets are kept aside.
    pub fn next_publish(&mut self, timeout: Duration) -> RawPublish {
        self.expect_where(timeout, "PUBLISH", |p| p.kind() == kind::PUBLISH)
            .publish()
    }

    /// Sends DISCONNECT and waits for the broker to close the socket.
    pub fn disconnect(mut self) {
        let _ = self.send(&enc::DISCONNECT);
        self.expect_closed(LONG, "after DISCONNECT the broker closes the connection");
    }
}

// ---------------------------------------------------------------------------------------------
// A persistent-session subscriber that does the receiver's side of QoS 1 and 2 properly,
// including across reconnects (which rumqttc 0.24 does not: it forgets its incoming QoS 2
// state on reconnect and treats the broker's re-sent PUBREL as an error).
// ---------------------------------------------------------------------------------------------

pub struct RawSession {
    pub port: u16,
    pub client_id: String,
    conn: Option<RawClient>,
    /// QoS 2 packet ids we have PUBREC'd but not yet seen PUBREL for (survives reconnects).
    qos2_received: HashSet<u16>,
    /// Acks not yet written; flushed in one write before the next blocking read.
    out: Vec<u8>,
    ready: VecDeque<RawPublish>,
    /// Number of PUBLISH packets received with DUP=1.
    pub dup_flagged: u64,
    /// Number of QoS 2 re-sends of a packet id still awaiting PUBREL (suppressed).
    pub qos2_suppressed: u64,
}

impl RawSession {
    pub fn new(port: u16, client_id: &str) -> RawSession {
        RawSession {
            port,
            client_id: client_id.to_string(),
            conn: None,
            qos2_received: HashSet::new(),
            out: Vec::new(),
            ready: VecDeque::new(),
            dup_flagged: 0,
            qos2_suppressed: 0,
        }
    }

    /// Connects (3.1.1); returns session present. A clean session forgets QoS 2 state.
    pub fn connect(&mut self, clean: bool, keepalive: u16) -> bool {
        assert!(self.conn.is_none(), "already connected");
        if clean {
            self.qos2_received.clear();
        }
        let (c, sp) = RawClient::connect311(self.port, &self.client_id, clean, keepalive);
        self.conn = Some(c);
        sp
    }

    pub fn conn(&mut self) -> &mut RawClient {
        self.conn.as_mut().expect("not connected")
    }

    pub fn subscribe(&mut self, pkid: u16, filters: &[(&str, u8)]) -> Vec<u8> {
        self.conn().subscribe(pkid, filters)
    }

    fn flush(&mut self) {
        if !self.out.is_empty() {
            let out = std::mem::take(&mut self.out);
            self.conn().send_ok(&out);
        }
    }

    fn handle(&mut self, p: RawPacket) {
        match p.kind() {
            kind::PUBLISH => {
                let m = p.publish();
                if m.dup {
                    self.dup_flagged += 1;
                }
                match m.qos {
                    0 => self.ready.push_back(m),
                    1 => {
                        self.out.extend(enc::puback(m.pkid));
                        self.ready.push_back(m);
                    }
                    2 => {
                        self.out.extend(enc::pubrec(m.pkid));
                        if self.qos2_received.insert(m.pkid) {
                            self.ready.push_back(m);
                        } else {
                            // The broker did not get our PUBREC: it is the same message.
                            self.qos2_suppressed += 1;
                        }
                    }
                    q => panic!("broker sent a PUBLISH with QoS {q}: {p:?}"),
                }
            }
            kind::PUBREL => {
                assert_eq!(p.header, 0x62, "PUBREL fixed header: {p:?}");
                let id = p.pkid();
                self.qos2_received.remove(&id);
                self.out.extend(enc::pubcomp(id));
            }
            kind::PINGRESP | kind::SUBACK | kind::UNSUBACK => {}
            _ => panic!("unexpected packet from broker: {p:?}"),
        }
    }

    /// The next application message (QoS 2 re-sends suppressed), or None after `timeout`.
    /// Panics if the broker closes the connection.
    pub fn recv(&mut self, timeout: Duration) -> Option<RawPublish> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(m) = self.ready.pop_front() {
                return Some(m);
            }
            self.flush();
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            match self.conn().read_batch(left) {
                Ok(ps) => {
                    for p in ps {
                        self.handle(p);
                    }
                }
                Err(ReadErr::Timeout) => return None,
                Err(ReadErr::Closed(how)) => {
                    panic!("{}: broker closed the connection ({how})", self.client_id)
                }
            }
        }
    }

    /// Clean disconnect: flushes pending acks, sends DISCONNECT, waits for the close.
    /// Messages already read but not yet returned by `recv` stay queued for later `recv`s.
    pub fn disconnect(&mut self) {
        self.flush();
        let c = self.conn.take().expect("not connected");
        c.disconnect();
    }

    /// Abrupt disconnect: drops the socket without DISCONNECT and without flushing acks
    /// (so the broker re-sends the unacknowledged messages after the reconnect). Messages
    /// already handed out are the application's; the un-returned ones stay queued.
    pub fn drop_connection(&mut self) {
        self.out.clear();
        self.conn = None;
    }

    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }
}
