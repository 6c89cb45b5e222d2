//! A blocking MQTT 3.1.1 client connection over std TCP: every read and write is bounded in time.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};

use crate::tls::Stream;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ringmq::protocol::{
    encode, Connect, Decoder, Packet, ProtocolVersion, QoS, Subscribe, SubscribeFilter,
    SubscriptionOptions, MAX_PACKET_SIZE,
};

/// Socket timeout of a single read or write; callers loop on it against their own deadline.
pub const POLL: Duration = Duration::from_millis(100);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

pub type Result<T> = std::result::Result<T, String>;

pub fn resolve(host: &str, port: u16) -> Result<SocketAddr> {
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}:{port}: {e}"))?
        .next()
        .ok_or_else(|| format!("cannot resolve {host}:{port}: no address"))
}

/// How a client connects: protocol version and session.
#[derive(Debug, Clone, Copy)]
pub struct SessionOpts {
    pub version: ProtocolVersion,
    pub clean: bool,
    /// MQTT 5 session expiry (seconds) for persistent sessions.
    pub session_expiry: u32,
    pub keep_alive: u16,
}

impl Default for SessionOpts {
    fn default() -> Self {
        SessionOpts {
            version: ProtocolVersion::V3_1_1,
            clean: true,
            session_expiry: 0,
            keep_alive: 60,
        }
    }
}

pub struct Connection {
    pub stream: Stream,
    pub version: ProtocolVersion,
    pub rbuf: BytesMut,
    pub decoder: Decoder,
    chunk: Vec<u8>,
}

impl Connection {
    /// TCP connect (TCP_NODELAY), CONNECT, and wait for a successful CONNACK.
    pub fn open(addr: SocketAddr, client_id: &str, opts: &SessionOpts) -> Result<Connection> {
        let stream = TcpStream::connect_timeout(&addr, HANDSHAKE_TIMEOUT).map_err(|e| {
            let hint = match e.kind() {
                ErrorKind::ConnectionRefused => " (is the broker running on that port?)",
                ErrorKind::TimedOut | ErrorKind::WouldBlock => {
                    " (no answer: firewall or wrong host?)"
                }
                _ => "",
            };
            format!("cannot connect to broker at {addr}: {e}{hint}")
        })?;
        stream
            .set_nodelay(true)
            .and_then(|_| stream.set_read_timeout(Some(POLL)))
            .and_then(|_| stream.set_write_timeout(Some(POLL)))
            .map_err(|e| format!("socket options: {e}"))?;
        let stream = Stream::new(stream, Instant::now() + HANDSHAKE_TIMEOUT)
            .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
        let mut conn = Connection {
            stream,
            version: opts.version,
            rbuf: BytesMut::new(),
            decoder: Decoder::new(opts.version, MAX_PACKET_SIZE),
            chunk: vec![0; 4096],
        };
        let mut connect = Connect {
            version: opts.version,
            clean_start: opts.clean,
            keep_alive: opts.keep_alive,
            client_id: client_id.to_string().into(),
            will: None,
            username: None,
            password: None,
            properties: Default::default(),
            bridge: false,
        };
        if opts.version.is_v5() && !opts.clean {
            connect.properties.session_expiry_interval = Some(opts.session_expiry);
        }
        let mut out = BytesMut::new();
        encode(&Packet::Connect(Box::new(connect)), opts.version, &mut out)
            .map_err(|e| format!("encode CONNECT: {e}"))?;
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        conn.write_all(&out, deadline)
            .map_err(|e| format!("{client_id}: send CONNECT: {e}"))?;
        match conn.next_packet(deadline)? {
            Some(Packet::ConnAck(ack)) if !ack.code.is_error() => Ok(conn),
            Some(Packet::ConnAck(ack)) => {
                Err(format!("{client_id}: CONNACK refused: {:?}", ack.code))
            }
            Some(other) => Err(format!(
                "{client_id}: expected CONNACK, got {:?}",
                other.packet_type()
            )),
            None => Err(format!(
                "{client_id}: no CONNACK within {HANDSHAKE_TIMEOUT:?}"
            )),
        }
    }

    /// SUBSCRIBE one filter and wait for a SUBACK granting exactly `qos`.
    pub fn subscribe(&mut self, filter: &str, qos: QoS) -> Result<()> {
        let sub = Subscribe {
            packet_id: 1,
            properties: Default::default(),
            filters: vec![SubscribeFilter {
                filter: filter.to_string().into(),
                options: SubscriptionOptions {
                    qos,
                    ..Default::default()
                },
            }],
        };
        let mut out = BytesMut::new();
        encode(&Packet::Subscribe(sub), self.version, &mut out)
            .map_err(|e| format!("encode SUBSCRIBE: {e}"))?;
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        self.write_all(&out, deadline)
            .map_err(|e| format!("send SUBSCRIBE: {e}"))?;
        // The broker may send matching PUBLISHes before the SUBACK (MQTT 3.8.4): their bytes
        // are kept, and go back in front of the read buffer for the reader to count.
        let mut early = BytesMut::new();
        let suback = loop {
            match self.next_packet_raw(deadline)? {
                Some((Packet::Publish(_), raw)) => early.extend_from_slice(&raw),
                other => break other.map(|(packet, _)| packet),
            }
        };
        if !early.is_empty() {
            early.extend_from_slice(&self.rbuf);
            self.rbuf = early;
        }
        match suback {
            Some(Packet::SubAck(ack)) => match ack.codes.first() {
                Some(code) if !code.is_error() && *code as u8 == qos as u8 => Ok(()),
                Some(code) => Err(format!(
                    "SUBACK for {filter}: {code:?} (0x{:02X}), wanted QoS {}",
                    *code as u8, qos as u8
                )),
                None => Err(format!("SUBACK for {filter} without a code")),
            },
            Some(other) => Err(format!("expected SUBACK, got {:?}", other.packet_type())),
            None => Err(format!("no SUBACK within {HANDSHAKE_TIMEOUT:?}")),
        }
    }

    /// The next whole packet, or `None` once `deadline` passes first.
    fn next_packet(&mut self, deadline: Instant) -> Result<Option<Packet>> {
        Ok(self.next_packet_raw(deadline)?.map(|(packet, _)| packet))
    }

    /// [`Connection::next_packet`], with the packet's bytes.
    fn next_packet_raw(&mut self, deadline: Instant) -> Result<Option<(Packet, BytesMut)>> {
        loop {
            let before = self.rbuf.clone();
            if let Some(p) = self
                .decoder
                .decode(&mut self.rbuf)
                .map_err(|e| format!("decode: {e}"))?
            {
                let raw = BytesMut::from(&before[..before.len() - self.rbuf.len()]);
                return Ok(Some((p, raw)));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            match self.fill() {
                Ok(0) => return Err("broker closed the connection".into()),
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {}
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }

    /// Switches to large buffers for a busy client (idle ones keep the small ones).
    pub fn grow_buffers(&mut self) {
        self.chunk.resize(64 * 1024, 0);
        self.rbuf.reserve(64 * 1024);
    }

    /// One read (at most [`POLL`] long) appended to `rbuf`; `Ok(0)` is end of stream.
    pub fn fill(&mut self) -> io::Result<usize> {
        let n = self.stream.read(&mut self.chunk)?;
        self.rbuf.extend_from_slice(&self.chunk[..n]);
        Ok(n)
    }

    pub fn write_all(&mut self, buf: &[u8], deadline: Instant) -> io::Result<()> {
        let n = write_until(&mut self.stream, buf, deadline)?;
        if n < buf.len() {
            return Err(io::Error::new(ErrorKind::TimedOut, "write deadline passed"));
        }
        Ok(())
    }
}

/// Writes as much of `buf` as possible before `deadline`; returns the bytes written.
pub fn write_until(stream: &mut Stream, buf: &[u8], deadline: Instant) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match stream.write(&buf[done..]) {
            Ok(0) => return Err(io::Error::new(ErrorKind::WriteZero, "socket closed")),
            Ok(n) => done += n,
            Err(e) if is_timeout(&e) || e.kind() == ErrorKind::Interrupted => {
                if Instant::now() >= deadline {
                    break;
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

pub fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// DISCONNECT, half-close, and read until the broker closes (or `deadline`), so that no unread
/// bytes make the kernel reset the connection under data the broker has not read yet.
pub fn close_gracefully(stream: &mut Stream, deadline: Instant) {
    let _ = write_until(stream, &[0xE0, 0x00], deadline);
    let _ = stream.shutdown(Shutdown::Write);
    let mut sink = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if is_timeout(&e) || e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
}
