//! What lies between a socket and MQTT on listeners that are not plain MQTT over TCP: a PROXY
//! protocol header, TLS, WebSockets. Sans-IO like the core: a [`Transport`] is given the
//! bytes the socket read and hands back the MQTT bytes they carry; it is given MQTT bytes to
//! send and hands back the bytes for the socket. The shell keeps its one direct write per
//! flush, and a connection moves to another shard with its transport state.
//!
//! Plain MQTT connections have no transport at all and pay nothing for this.

pub mod proxy;
pub mod tls;
pub mod tls_config;
pub mod websocket;

use std::net::SocketAddr;

use bytes::BytesMut;

use crate::config::listeners::{ListenerSpec, Protocol};
use proxy::ProxyHeader;
use tls::TlsLayer;
use tls_config::{TlsConfig, TlsConfigError};
use websocket::WsLayer;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TransportError {
    #[error("PROXY protocol: {0}")]
    Proxy(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("WebSocket: {0}")]
    WebSocket(String),
}

/// A listener's way of starting connections, shared by all shards.
#[derive(Debug)]
pub struct Acceptor {
    pub spec: ListenerSpec,
    tls: Option<TlsConfig>,
    /// Bounds one WebSocket message.
    max_ws_message: usize,
}

impl Acceptor {
    pub fn new(spec: ListenerSpec, max_packet_size: u32) -> Result<Acceptor, TlsConfigError> {
        let tls = spec.tls.as_ref().map(TlsConfig::load).transpose()?;
        Ok(Acceptor {
            spec,
            tls,
            // Room for a largest packet and a few small ones sharing its message.
            max_ws_message: max_packet_size as usize + 64 * 1024,
        })
    }

    /// A new connection's transport; `None` on a plain MQTT listener.
    pub fn transport(&self) -> Option<Box<Transport>> {
        if self.spec.is_plain() {
            return None;
        }
        Some(Box::new(Transport {
            proxy: self.spec.proxy_protocol.then(ProxyHeader::default),
            client: None,
            tls: self
                .tls
                .as_ref()
                .map(|tls| TlsLayer::new(tls.current(), tls.use_identity_as_username())),
            ws: (self.spec.protocol == Protocol::WebSockets)
                .then(|| WsLayer::new(self.max_ws_message)),
            identity_given: false,
            wire: BytesMut::new(),
        }))
    }

    /// Rereads the certificates (SIGHUP); a no-op without TLS.
    pub fn reload(&self) -> Result<(), TlsConfigError> {
        self.tls.as_ref().map_or(Ok(()), TlsConfig::reload)
    }
}

/// One connection's layers, outermost first.
pub struct Transport {
    /// Until the PROXY header is whole.
    proxy: Option<ProxyHeader>,
    /// The client's address from the PROXY header.
    client: Option<SocketAddr>,
    tls: Option<TlsLayer>,
    ws: Option<WsLayer>,
    /// Whether the certificate identity was handed out.
    identity_given: bool,
    /// Bytes for the socket.
    wire: BytesMut,
}

/// What came of bytes read from the socket.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    Open,
    /// The client closed its side at the transport level (close_notify, a close frame).
    Closed,
}

impl Transport {
    /// Takes bytes read from the socket, appending the MQTT bytes they carry to `mqtt`. What
    /// the layers have to send back (handshakes, pongs, alerts) waits in [`Transport::take_wire`],
    /// also after an error.
    pub fn receive(&mut self, raw: &[u8], mqtt: &mut BytesMut) -> Result<Received, TransportError> {
        let mut raw = raw;
        if let Some(header) = &mut self.proxy {
            let Some(parsed) = header.feed(raw)? else {
                return Ok(Received::Open);
            };
            self.proxy = None;
            self.client = parsed.client;
            raw = &raw[parsed.consumed..];
        }
        if raw.is_empty() {
            return Ok(Received::Open);
        }
        let mut decrypted = BytesMut::new();
        let (from_below, mut closed) = match &mut self.tls {
            Some(tls) => {
                let closed = tls.decode(raw, &mut decrypted);
                tls.take_output(&mut self.wire);
                (&decrypted[..], closed?)
            }
            None => (raw, false),
        };
        match &mut self.ws {
            Some(ws) => {
                let ws_closed = ws.decode(from_below, mqtt);
                let reply = ws.take_output();
                self.send_below_ws(&reply)?;
                closed |= ws_closed?;
            }
            None => mqtt.extend_from_slice(from_below),
        }
        Ok(if closed {
            Received::Closed
        } else {
            Received::Open
        })
    }

    /// Encodes MQTT bytes for the socket.
    pub fn send(&mut self, mqtt: &[u8]) -> Result<(), TransportError> {
        match &mut self.ws {
            Some(ws) => {
                ws.encode(mqtt)?;
                let framed = ws.take_output();
                self.send_below_ws(&framed)
            }
            None => self.send_below_ws(mqtt),
        }
    }

    fn send_below_ws(&mut self, bytes: &[u8]) -> Result<(), TransportError> {
        if bytes.is_empty() {
            return Ok(());
        }
        match &mut self.tls {
            Some(tls) => tls.encode(bytes, &mut self.wire),
            None => {
                self.wire.extend_from_slice(bytes);
                Ok(())
            }
        }
    }

    /// The goodbyes of the layers (a WebSocket close frame, a TLS close_notify) before the
    /// socket closes.
    pub fn close(&mut self) {
        if let Some(ws) = &mut self.ws {
            ws.close();
            let frame = ws.take_output();
            let _ = self.send_below_ws(&frame);
        }
        if let Some(tls) = &mut self.tls {
            tls.close(&mut self.wire);
        }
    }

    /// Whether it has bytes for the socket of its own (a handshake, a pong, an alert).
    pub fn has_wire(&self) -> bool {
        !self.wire.is_empty()
    }

    /// The bytes for the socket, taken whole.
    pub fn take_wire(&mut self) -> BytesMut {
        std::mem::take(&mut self.wire)
    }

    /// The client's address as a PROXY header gave it.
    pub fn client(&self) -> Option<SocketAddr> {
        self.client
    }

    /// The TLS client certificate's Common Name as the user name, once it is known and only
    /// once (see [`TlsLayer::identity`]).
    pub fn take_identity(&mut self) -> Option<String> {
        if self.identity_given {
            return None;
        }
        let identity = self.identity()?;
        self.identity_given = true;
        Some(identity)
    }

    /// The same, again (for a connection moved to another shard).
    pub fn identity(&self) -> Option<String> {
        self.tls.as_ref()?.identity()
    }
}

#[cfg(test)]
mod tests;
