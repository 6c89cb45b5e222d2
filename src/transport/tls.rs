//! TLS on one connection: rustls's own state machine, fed the bytes the socket gave and asked
//! for the bytes to send, so that the shard keeps writing straight to the socket and a
//! connection can move to another shard with its TLS state.

use std::io::{Read, Write};
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use rustls::{ServerConfig, ServerConnection};

use super::TransportError;

pub struct TlsLayer {
    conn: ServerConnection,
    /// Take the client certificate's Common Name as the user name.
    identity_as_username: bool,
}

impl TlsLayer {
    pub fn new(config: Arc<ServerConfig>, identity_as_username: bool) -> TlsLayer {
        let conn = ServerConnection::new(config).expect("a server config builds a connection");
        TlsLayer {
            conn,
            identity_as_username,
        }
    }

    /// Decrypts `input`, appending the plaintext to `plain`; `Ok(true)` once the client has
    /// closed (close_notify). Whatever the layer must send meanwhile (handshake, alerts) waits
    /// in [`TlsLayer::take_output`].
    pub fn decode(
        &mut self,
        mut input: &[u8],
        plain: &mut BytesMut,
    ) -> Result<bool, TransportError> {
        while !input.is_empty() {
            self.conn
                .read_tls(&mut input)
                .map_err(|e| TransportError::Tls(e.to_string()))?;
            let state = self
                .conn
                .process_new_packets()
                .map_err(|e| TransportError::Tls(e.to_string()))?;
            let n = state.plaintext_bytes_to_read();
            if n > 0 {
                let start = plain.len();
                plain.resize(start + n, 0);
                self.conn
                    .reader()
                    .read_exact(&mut plain[start..])
                    .map_err(|e| TransportError::Tls(e.to_string()))?;
            }
            if state.peer_has_closed() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Encrypts `plain` for the socket, into `wire`.
    pub fn encode(&mut self, mut plain: &[u8], wire: &mut BytesMut) -> Result<(), TransportError> {
        while !plain.is_empty() {
            // rustls takes what fits its buffer limit; what it took is drained right away.
            let n = self
                .conn
                .writer()
                .write(plain)
                .map_err(|e| TransportError::Tls(e.to_string()))?;
            self.take_output(wire);
            if n == 0 {
                return Err(TransportError::Tls("TLS writer takes nothing".into()));
            }
            plain = &plain[n..];
        }
        Ok(())
    }

    /// The bytes rustls has for the socket.
    pub fn take_output(&mut self, wire: &mut BytesMut) {
        let mut writer = wire.writer();
        while self.conn.wants_write() {
            if self.conn.write_tls(&mut writer).is_err() {
                break;
            }
        }
    }

    /// Says goodbye (close_notify) before the socket closes.
    pub fn close(&mut self, wire: &mut BytesMut) {
        self.conn.send_close_notify();
        self.take_output(wire);
    }

    /// With `use_identity_as_username`, once the handshake is over: the client certificate's
    /// Common Name (`Some("")` when it has no certificate or no Common Name: the connection is
    /// then refused, not let in as anonymous).
    pub fn identity(&self) -> Option<String> {
        if !self.identity_as_username || self.conn.is_handshaking() {
            return None;
        }
        let Some(cert) = self.conn.peer_certificates().and_then(|c| c.first()) else {
            return Some(String::new());
        };
        Some(common_name(cert.as_ref()).unwrap_or_default())
    }
}

/// The subject's Common Name of a DER certificate.
fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}
