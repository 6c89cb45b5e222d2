//! Connections over TLS (`--tls-ca FILE`): a [`Stream`] is a TCP socket, with a rustls client
//! session when TLS is on. A publisher writes on one thread and reads acks on another, so the
//! session is shared behind a mutex; the socket itself is read and written outside the lock.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

/// How every connection of this run is made: set once, from the command line.
static TLS: OnceLock<(Arc<ClientConfig>, ServerName<'static>)> = OnceLock::new();

/// Turns TLS on for every connection: the broker's certificate must chain to `ca` and name
/// `server_name`; `x25519_only` leaves out the post-quantum hybrid key exchange (rustls's
/// first choice), to compare with brokers that cannot offer it on the same terms.
pub fn configure(ca: &std::path::Path, server_name: &str, x25519_only: bool) -> Result<(), String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| format!("{}: {e}", ca.display()))? {
        let cert = cert.map_err(|e| format!("{}: {e}", ca.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    if x25519_only {
        provider.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::X25519];
    }
    let provider = Arc::new(provider);
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(server_name.to_string()).map_err(|e| e.to_string())?;
    TLS.set((Arc::new(config), name))
        .map_err(|_| "TLS configured twice".to_string())
}

pub struct Stream {
    tcp: TcpStream,
    tls: Option<Arc<Mutex<ClientConnection>>>,
}

impl Stream {
    /// Wraps a connected socket; with TLS on, completes the handshake by `deadline`.
    pub fn new(mut tcp: TcpStream, deadline: Instant) -> io::Result<Stream> {
        let Some((config, name)) = TLS.get() else {
            return Ok(Stream { tcp, tls: None });
        };
        let mut conn =
            ClientConnection::new(config.clone(), name.clone()).map_err(io::Error::other)?;
        while conn.is_handshaking() {
            match conn.complete_io(&mut tcp) {
                Ok(_) => {}
                Err(e) if is_timeout(&e) && Instant::now() < deadline => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Stream {
            tcp,
            tls: Some(Arc::new(Mutex::new(conn))),
        })
    }

    pub fn try_clone(&self) -> io::Result<Stream> {
        Ok(Stream {
            tcp: self.tcp.try_clone()?,
            tls: self.tls.clone(),
        })
    }

    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.tcp.shutdown(how)
    }

    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        self.tcp.set_nonblocking(on)
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = &self.tls else {
            return self.tcp.read(buf);
        };
        loop {
            {
                let mut conn = tls.lock().expect("tls lock");
                match conn.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            let mut wire = [0u8; 16 * 1024];
            let n = self.tcp.read(&mut wire)?;
            if n == 0 {
                return Ok(0);
            }
            let mut conn = tls.lock().expect("tls lock");
            // rustls takes a record's worth at a time: feed it all, processing as it goes.
            let mut rest = &wire[..n];
            while !rest.is_empty() {
                conn.read_tls(&mut rest)?;
                conn.process_new_packets().map_err(io::Error::other)?;
            }
        }
    }
}

impl Write for Stream {
    /// With TLS, all of `buf` or an error: a record half written cannot be taken back.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(tls) = &self.tls else {
            return self.tcp.write(buf);
        };
        let mut wire = Vec::with_capacity(buf.len() + 64);
        {
            let mut conn = tls.lock().expect("tls lock");
            conn.writer().write_all(buf)?;
            while conn.wants_write() {
                conn.write_tls(&mut wire)?;
            }
        }
        let mut done = 0;
        while done < wire.len() {
            match self.tcp.write(&wire[done..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
