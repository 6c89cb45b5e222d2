//! Getting each connection's output onto its socket.
//!
//! The shard writes a connection's output as soon as the broker has produced it (all the
//! PUBACKs of a read batch, a fan-out's deliveries): one non-blocking `send` straight from the
//! flush, with no task switch. Only when a socket does not take everything does a drain task
//! start; it waits for room, writes the rest and whatever came meanwhile, and ends. So an idle
//! connection has no writer task at all, and a write costs one system call.
//!
//! A connection with a transport (TLS, WebSockets) has its output encoded on the way: the
//! broker counts the MQTT bytes written, the socket takes the encoded ones.

use std::cell::RefCell;
use std::os::fd::RawFd;
use std::time::Instant;

use ahash::AHashMap;
use bytes::{Buf, BytesMut};
use futures_lite::io::{AsyncWriteExt, WriteHalf};
use glommio::net::TcpStream;
use glommio::task::JoinHandle;

use crate::core::{Broker, ConnId};
use crate::transport::{Transport, TransportError};

/// How long a connection we closed may keep sending before the socket is closed outright.
pub const LINGER: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Default)]
pub struct Writers {
    conns: RefCell<AHashMap<ConnId, ConnWriter>>,
}

struct ConnWriter {
    fd: RawFd,
    /// The socket's write half, here while no drain task holds it.
    half: Option<WriteHalf<TcpStream>>,
    /// The drain task, while one runs.
    draining: Option<JoinHandle<()>>,
    /// Shut down after the last words: nothing more is written.
    shut: bool,
    /// TLS, WebSockets, a PROXY header: what lies between the socket and MQTT, if anything.
    transport: Option<Box<Transport>>,
}

/// Bytes for the socket, and how many of the broker's bytes they carry.
struct Chunk {
    wire: BytesMut,
    /// The broker's (MQTT) bytes in `wire` not yet reported written.
    carried: usize,
    /// Close once written.
    close: bool,
}

impl Chunk {
    /// `sent` of the wire bytes are out: the share of the carried bytes to report.
    fn advance(&mut self, sent: usize) -> usize {
        let wire_len = self.wire.len();
        let reported = if sent >= wire_len {
            self.carried
        } else {
            // Proportionally: the broker needs progress, not exact positions.
            (self.carried as u128 * sent as u128 / wire_len.max(1) as u128) as usize
        };
        self.wire.advance(sent.min(wire_len));
        self.carried -= reported;
        reported
    }
}

/// What the shard must start after a write: the writers spawn no tasks themselves, so that
/// they need nothing of the shard but its broker.
pub enum FollowUp {
    /// The socket did not take everything: run [`Writers::drain`] in a task and hand its
    /// handle to [`Writers::draining`].
    Drain(Drain),
    /// The last words are out and our side is shut for writing: after [`LINGER`], call
    /// [`Writers::linger_over`].
    Linger(RawFd),
}

/// A connection's rest of output, with the socket's write half, for a drain task.
pub struct Drain {
    id: ConnId,
    fd: RawFd,
    half: WriteHalf<TcpStream>,
    chunk: Chunk,
}

/// How a drain ended.
pub enum Drained {
    /// Everything is written and the socket is back to direct writes; freed room may let
    /// queued messages out, so flush.
    Idle,
    /// See [`FollowUp::Linger`].
    Linger(RawFd),
    /// The socket failed and is shut; its reader closes the connection.
    Failed,
}

impl Writers {
    pub fn register(
        &self,
        id: ConnId,
        fd: RawFd,
        half: WriteHalf<TcpStream>,
        transport: Option<Box<Transport>>,
    ) {
        let writer = ConnWriter {
            fd,
            half: Some(half),
            draining: None,
            shut: false,
            transport,
        };
        self.conns.borrow_mut().insert(id, writer);
    }

    /// Forgets the connection; its transport, for a connection moving to another shard.
    pub fn unregister(&self, id: ConnId) -> Option<Box<Transport>> {
        self.conns.borrow_mut().remove(&id)?.transport
    }

    /// Runs `f` on the connection's transport, if it has one.
    pub fn with_transport<T>(&self, id: ConnId, f: impl FnOnce(&mut Transport) -> T) -> Option<T> {
        let mut conns = self.conns.borrow_mut();
        conns.get_mut(&id)?.transport.as_deref_mut().map(f)
    }

    /// The running drain task of `id`, to await before the connection's state goes.
    pub fn take_drain(&self, id: ConnId) -> Option<JoinHandle<()>> {
        self.conns.borrow_mut().get_mut(&id)?.draining.take()
    }

    /// Records the task started for a [`FollowUp::Drain`].
    pub fn draining(&self, id: ConnId, task: JoinHandle<()>) {
        if let Some(writer) = self.conns.borrow_mut().get_mut(&id) {
            writer.draining = Some(task);
        }
    }

    /// The linger after the last words has passed: closes the socket if it is still the
    /// connection's (not closed and its fd number reused meanwhile).
    pub fn linger_over(&self, id: ConnId, fd: RawFd) {
        if self.conns.borrow().get(&id).map(|w| w.fd) == Some(fd) {
            shutdown(fd, libc::SHUT_RDWR);
        }
    }

    /// Writes what the broker holds for `id`, now if the socket takes it; else says what to
    /// start.
    pub fn write_out(&self, broker: &mut Broker, id: ConnId, now: Instant) -> Option<FollowUp> {
        let mut conns = self.conns.borrow_mut();
        let writer = conns.get_mut(&id)?;
        if writer.shut {
            return None;
        }
        if broker.is_aborted(id) {
            // Its output made no progress: drop it and close now (a drain task stops too).
            writer.shut = true;
            shutdown(writer.fd, libc::SHUT_RDWR);
            return None;
        }
        // While a drain task owns the socket it takes new output itself.
        writer.half.as_ref()?;
        loop {
            let mut chunk = match next_chunk(broker, id, writer.transport.as_deref_mut()) {
                Ok(Some(chunk)) => chunk,
                Ok(None) => return None,
                Err(error) => {
                    tracing::info!(conn = id, %error, "cannot encode output; closing");
                    writer.shut = true;
                    shutdown(writer.fd, libc::SHUT_RDWR);
                    return None;
                }
            };
            let len = chunk.wire.len();
            let Ok(sent) = send_now(writer.fd, &chunk.wire) else {
                // The peer is gone: the reader sees the shutdown and closes the connection.
                writer.shut = true;
                shutdown(writer.fd, libc::SHUT_RDWR);
                return None;
            };
            if len > 0 {
                let carried = chunk.advance(sent);
                broker.output_written(id, carried, now);
            }
            if sent < len {
                let half = writer.half.take().expect("checked above");
                return Some(FollowUp::Drain(Drain {
                    id,
                    fd: writer.fd,
                    half,
                    chunk,
                }));
            }
            if chunk.close {
                writer.shut = true;
                close_gracefully(writer.fd);
                return Some(FollowUp::Linger(writer.fd));
            }
            if len == 0 {
                return None;
            }
        }
    }

    /// Writes the drain's output and everything after it as the socket makes room, calling
    /// `written` after each write, then hands the socket back to direct writes. The broker's
    /// write timeout decides how long a socket that takes nothing may hold us (it shuts the
    /// socket, which ends the write).
    pub async fn drain(
        &self,
        broker: &RefCell<Broker>,
        drain: Drain,
        written: impl Fn(ConnId),
    ) -> Drained {
        let Drain {
            id,
            fd,
            mut half,
            mut chunk,
        } = drain;
        loop {
            if half.write_all(&chunk.wire).await.is_err() {
                shutdown(fd, libc::SHUT_RDWR);
                return Drained::Failed;
            }
            let carried = chunk.carried;
            broker
                .borrow_mut()
                .output_written(id, carried, Instant::now());
            written(id);
            if chunk.close {
                let _ = half.flush().await;
                if let Some(writer) = self.conns.borrow_mut().get_mut(&id) {
                    writer.shut = true;
                }
                close_gracefully(fd);
                return Drained::Linger(fd);
            }
            let next = {
                let mut conns = self.conns.borrow_mut();
                let transport = conns.get_mut(&id).and_then(|w| w.transport.as_deref_mut());
                next_chunk(&mut broker.borrow_mut(), id, transport)
            };
            match next {
                Ok(Some(next)) if !next.wire.is_empty() || next.close => chunk = next,
                Ok(_) => break,
                Err(_) => {
                    shutdown(fd, libc::SHUT_RDWR);
                    return Drained::Failed;
                }
            }
        }
        if let Some(writer) = self.conns.borrow_mut().get_mut(&id) {
            writer.half = Some(half);
            writer.draining = None;
        }
        Drained::Idle
    }
}

/// The connection's next output for the socket: what the broker has for it, encoded by its
/// transport with whatever the transport has to send of its own (a handshake, a pong).
/// `None`: nothing to write.
fn next_chunk(
    broker: &mut Broker,
    id: ConnId,
    transport: Option<&mut Transport>,
) -> Result<Option<Chunk>, TransportError> {
    let output = broker.take_output(id);
    let Some(transport) = transport else {
        return Ok(output.map(|output| Chunk {
            carried: output.bytes.len(),
            wire: output.bytes,
            close: output.close,
        }));
    };
    let (carried, close) = match &output {
        Some(output) => {
            if !output.bytes.is_empty() {
                transport.send(&output.bytes)?;
            }
            if output.close {
                transport.close();
            }
            (output.bytes.len(), output.close)
        }
        None => (0, false),
    };
    let wire = transport.take_wire();
    if output.is_none() && wire.is_empty() {
        return Ok(None);
    }
    Ok(Some(Chunk {
        wire,
        carried,
        close,
    }))
}

/// After the last words (a refusing CONNACK, a DISCONNECT): shuts our side for writing, so the
/// client reads them and then our FIN. Its own input is read and discarded meanwhile (closing
/// with unread input would send a reset, and the client could lose the reason code) until it
/// closes, or [`LINGER`] has passed (the shard's linger task, see [`FollowUp::Linger`]).
fn close_gracefully(fd: RawFd) {
    shutdown(fd, libc::SHUT_WR);
}

/// As much of `bytes` as the socket takes without waiting.
fn send_now(fd: RawFd, bytes: &[u8]) -> std::io::Result<usize> {
    let mut sent = 0;
    while sent < bytes.len() {
        let rest = &bytes[sent..];
        // SAFETY: sends from a live slice on the connection's own fd.
        let n = unsafe {
            libc::send(
                fd,
                rest.as_ptr().cast(),
                rest.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if n >= 0 {
            sent += n as usize;
            continue;
        }
        let error = std::io::Error::last_os_error();
        match error.kind() {
            std::io::ErrorKind::WouldBlock => break,
            std::io::ErrorKind::Interrupted => continue,
            _ => return Err(error),
        }
    }
    Ok(sent)
}

/// Ends one or both directions (`SHUT_WR`, `SHUT_RDWR`): the reader sees EOF once reading is
/// shut, the peer sees the close.
pub fn shutdown(fd: RawFd, how: libc::c_int) {
    // SAFETY: shutdown on the connection's own fd, which stays open until both halves drop.
    unsafe { libc::shutdown(fd, how) };
}
