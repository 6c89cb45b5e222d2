//! Getting each connection's output onto its socket.
//!
//! The shard writes a connection's output as soon as the broker has produced it (all the
//! PUBACKs of a read batch, a fan-out's deliveries): one non-blocking `send` straight from the
//! flush, with no task switch. Only when a socket does not take everything does a drain task
//! start; it waits for room, writes the rest and whatever came meanwhile, and ends. So an idle
//! connection has no writer task at all, and a write costs one system call.

use std::cell::RefCell;
use std::os::fd::RawFd;
use std::time::Instant;

use ahash::AHashMap;
use bytes::Buf;
use futures_lite::io::{AsyncWriteExt, WriteHalf};
use glommio::net::TcpStream;
use glommio::task::JoinHandle;

use crate::core::{Broker, ConnId, Output};

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
    output: Output,
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
    pub fn register(&self, id: ConnId, fd: RawFd, half: WriteHalf<TcpStream>) {
        let writer = ConnWriter {
            fd,
            half: Some(half),
            draining: None,
            shut: false,
        };
        self.conns.borrow_mut().insert(id, writer);
    }

    pub fn unregister(&self, id: ConnId) {
        self.conns.borrow_mut().remove(&id);
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
            let mut output = broker.take_output(id)?;
            let len = output.bytes.len();
            let Ok(sent) = send_now(writer.fd, &output.bytes) else {
                // The peer is gone: the reader sees the shutdown and closes the connection.
                writer.shut = true;
                shutdown(writer.fd, libc::SHUT_RDWR);
                return None;
            };
            if len > 0 {
                broker.output_written(id, sent, now);
            }
            if sent < len {
                output.bytes.advance(sent);
                let half = writer.half.take().expect("checked above");
                return Some(FollowUp::Drain(Drain {
                    id,
                    fd: writer.fd,
                    half,
                    output,
                }));
            }
            if output.close {
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
            mut output,
        } = drain;
        loop {
            if half.write_all(&output.bytes).await.is_err() {
                shutdown(fd, libc::SHUT_RDWR);
                return Drained::Failed;
            }
            let len = output.bytes.len();
            broker.borrow_mut().output_written(id, len, Instant::now());
            written(id);
            if output.close {
                let _ = half.flush().await;
                if let Some(writer) = self.conns.borrow_mut().get_mut(&id) {
                    writer.shut = true;
                }
                close_gracefully(fd);
                return Drained::Linger(fd);
            }
            match broker.borrow_mut().take_output(id) {
                Some(next) if !next.bytes.is_empty() || next.close => output = next,
                _ => break,
            }
        }
        if let Some(writer) = self.conns.borrow_mut().get_mut(&id) {
            writer.half = Some(half);
            writer.draining = None;
        }
        Drained::Idle
    }
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
