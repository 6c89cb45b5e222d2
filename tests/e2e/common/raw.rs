//! Raw MQTT over a blocking `std::net::TcpStream`: packets built with `enc` in, the broker's
//! replies out as `dec::RawPacket`s. `RawClient` is the connection (plus 3.1.1 conveniences),
//! `RawSession` a persistent-session 3.1.1 subscriber; the MQTT 5 client is `v5::V5`.
//!
//! Everything here has a deadline: every read takes a timeout, so a raw test can never hang.

use std::collections::{HashSet, VecDeque};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use super::dec::{decode_varint, RawPacket, RawPublish};
use super::enc::{self, kind, Connect, Publish};

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
        RawClient::try_tcp(port).unwrap_or_else(|e| panic!("tcp connect to 127.0.0.1:{port}: {e}"))
    }

    /// [`RawClient::tcp`], with a refused connection an error.
    pub fn try_tcp(port: u16) -> io::Result<RawClient> {
        Ok(RawClient::over(TcpStream::connect(("127.0.0.1", port))?))
    }

    /// A client over a connection made elsewhere (from a chosen source address, ...).
    pub fn over(stream: TcpStream) -> RawClient {
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
        c.send_ok(
            &Connect::v311(client_id)
                .clean(clean)
                .keepalive(keepalive)
                .encode(),
        );
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

    /// Sends `p` and completes the QoS flow for it (PUBACK, or PUBREC/PUBREL/PUBCOMP),
    /// checking the exact bytes of each ack (3.x acks: MQTT 5 clients use `v5::V5`).
    pub fn publish(&mut self, p: Publish) {
        self.send_ok(&p.encode());
        self.complete_inbound(p.qos, p.pkid);
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
        self.try_connect(clean, keepalive)
            .unwrap_or_else(|e| panic!("{}: no CONNACK: {e}", self.client_id))
    }

    /// [`RawSession::connect`], with a connection that closes before its CONNACK (a broker
    /// killed meanwhile) an error.
    pub fn try_connect(&mut self, clean: bool, keepalive: u16) -> Result<bool, String> {
        assert!(self.conn.is_none(), "already connected");
        if clean {
            self.qos2_received.clear();
        }
        let connect = Connect::v311(&self.client_id)
            .clean(clean)
            .keepalive(keepalive)
            .encode();
        let mut c = RawClient::try_tcp(self.port).map_err(|e| e.to_string())?;
        let _ = c.send(&connect);
        let ack = c.read_packet(LONG).map_err(|e| format!("{e:?}"))?;
        assert_eq!(ack.kind(), kind::CONNACK, "{}: {ack:?}", self.client_id);
        let bytes = ack.bytes();
        assert_eq!(bytes[3], 0, "{}: CONNACK refused: {ack:?}", self.client_id);
        self.conn = Some(c);
        Ok(bytes[2] & 1 == 1)
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
        self.try_recv(timeout).unwrap_or_else(|how| {
            panic!("{}: broker closed the connection ({how})", self.client_id)
        })
    }

    /// [`RawSession::recv`], with a closed connection an error (and the session
    /// disconnected, its QoS 2 state kept for the next connection).
    pub fn try_recv(&mut self, timeout: Duration) -> Result<Option<RawPublish>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(m) = self.ready.pop_front() {
                return Ok(Some(m));
            }
            if !self.out.is_empty() {
                let out = std::mem::take(&mut self.out);
                if let Err(e) = self.conn().send(&out) {
                    self.conn = None;
                    return Err(e.to_string());
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            match self.conn().read_batch(left) {
                Ok(ps) => {
                    for p in ps {
                        self.handle(p);
                    }
                }
                Err(ReadErr::Timeout) => return Ok(None),
                Err(ReadErr::Closed(how)) => {
                    self.out.clear();
                    self.conn = None;
                    return Err(how);
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
