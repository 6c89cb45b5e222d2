//! Getting each connection's output onto its socket.
//!
//! The shard writes a connection's output as soon as the broker has produced it (all the
//! PUBACKs of a read batch, a fan-out's deliveries): one non-blocking `send` straight from the
//! flush, with no task switch. Only when a socket does not take everything does a drain task
//! start; it waits for room, writes the rest and whatever came meanwhile, and ends. So an idle
//! connection has no writer task at all, and a write costs one system call.

use std::cell::RefCell;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::Instant;

use ahash::AHashMap;
use bytes::Buf;
use futures_lite::io::{AsyncWriteExt, WriteHalf};
use glommio::net::TcpStream;
use glommio::spawn_local;
use glommio::task::JoinHandle;

use super::shard::Shard;
use crate::core::{ConnId, Output};

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

    /// The socket of `id`, while it is registered.
    pub fn fd(&self, id: ConnId) -> Option<RawFd> {
        self.conns.borrow().get(&id).map(|w| w.fd)
    }

    /// The running drain task of `id`, to await before the connection's state goes.
    pub fn take_drain(&self, id: ConnId) -> Option<JoinHandle<()>> {
        self.conns.borrow_mut().get_mut(&id)?.draining.take()
    }
}

/// Writes what the broker holds for `id`, now if the socket takes it, else from a drain task.
pub fn write_out(shard: &Rc<Shard>, id: ConnId, now: Instant) {
    let mut conns = shard.writers.conns.borrow_mut();
    let Some(writer) = conns.get_mut(&id) else {
        return;
    };
    if writer.shut {
        return;
    }
    if shard.broker.borrow().is_aborted(id) {
        // Its output made no progress: drop it and close now (a drain task stops too).
        writer.shut = true;
        shutdown(writer.fd, libc::SHUT_RDWR);
        return;
    }
    if writer.half.is_none() {
        // A drain task owns the socket and takes new output itself.
        return;
    }
    let mut broker = shard.broker.borrow_mut();
    loop {
        let Some(mut output) = broker.take_output(id) else {
            return;
        };
        let len = output.bytes.len();
        let sent = match send_now(writer.fd, &output.bytes) {
            Ok(sent) => sent,
            Err(_) => {
                // The peer is gone: the reader sees the shutdown and closes the connection.
                writer.shut = true;
                shutdown(writer.fd, libc::SHUT_RDWR);
                return;
            }
        };
        if len > 0 {
            broker.output_written(id, sent, now);
        }
        if sent < len {
            output.bytes.advance(sent);
            let half = writer.half.take().expect("checked above");
            let task = spawn_local(drain(shard.clone(), id, writer.fd, half, output));
            writer.draining = Some(task.detach());
            return;
        }
        if output.close {
            writer.shut = true;
            close_gracefully(shard, id, writer.fd);
            return;
        }
        if len == 0 {
            return;
        }
    }
}

/// Writes `output` and everything after it as the socket makes room, then hands the socket
/// back to direct writes. The broker's write timeout decides how long a socket that takes
/// nothing may hold us (it shuts the socket, which ends the write).
async fn drain(
    shard: Rc<Shard>,
    id: ConnId,
    fd: RawFd,
    mut half: WriteHalf<TcpStream>,
    mut output: Output,
) {
    loop {
        if half.write_all(&output.bytes).await.is_err() {
            shutdown(fd, libc::SHUT_RDWR);
            return;
        }
        let written = output.bytes.len();
        shard
            .broker
            .borrow_mut()
            .output_written(id, written, Instant::now());
        shard.gates.output_written(&shard, id);
        if output.close {
            let _ = half.flush().await;
            if let Some(writer) = shard.writers.conns.borrow_mut().get_mut(&id) {
                writer.shut = true;
            }
            close_gracefully(&shard, id, fd);
            return;
        }
        match shard.broker.borrow_mut().take_output(id) {
            Some(next) if !next.bytes.is_empty() || next.close => output = next,
            _ => break,
        }
    }
    if let Some(writer) = shard.writers.conns.borrow_mut().get_mut(&id) {
        writer.half = Some(half);
        writer.draining = None;
    }
    // Room freed by what was written may have let queued messages out.
    shard.flush();
}

/// After the last words (a refusing CONNACK, a DISCONNECT): shuts our side for writing, so the
/// client reads them and then our FIN. Its own input is read and discarded meanwhile (closing
/// with unread input would send a reset, and the client could lose the reason code) until it
/// closes, or [`LINGER`] has passed.
fn close_gracefully(shard: &Rc<Shard>, id: ConnId, fd: RawFd) {
    shutdown(fd, libc::SHUT_WR);
    let shard = shard.clone();
    spawn_local(async move {
        glommio::timer::sleep(LINGER).await;
        if shard.writers.fd(id) == Some(fd) {
            shutdown(fd, libc::SHUT_RDWR);
        }
    })
    .detach();
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
