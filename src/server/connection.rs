//! A client connection: one task reads, decodes what arrives and feeds the broker; the flush
//! after each read batch writes what the broker encoded (see `writer`), so all that one batch
//! produced, the PUBACKs of a batch included, goes out in one write.
//!
//! A connection accepted on a shard other than its session's home is handed over right after
//! CONNECT (the broker decides): the socket (duplicated) and the bytes read so far travel over
//! the mesh.

use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::rc::Rc;
use std::time::Instant;

use bytes::BytesMut;
use futures_lite::io::{AsyncReadExt, ReadHalf};
use glommio::net::TcpStream;
use glommio::spawn_local;

use super::mesh::Envelope;
use super::shard::Shard;
use super::writer::LINGER;
use crate::core::{Closing, ConnId, ReadPause, Receive};
use crate::transport::{Acceptor, Received, Transport};

/// Spare room in the shard's read buffer before each read.
const READ_CHUNK: usize = 64 * 1024;

/// Serves a connection accepted by this shard on a listener of `acceptor`'s kind. It counts
/// against the connection limit from now on, CONNECT or not; the broker's connect timeout
/// closes it if no CONNECT comes.
pub fn spawn(shard: Rc<Shard>, stream: TcpStream, acceptor: &Acceptor) {
    let id = shard.broker().open(Instant::now());
    tracing::debug!(
        shard = shard.broker().shard(),
        conn = id,
        peer = ?stream.peer_addr().ok(),
        listener = %acceptor.spec,
        "connection accepted"
    );
    serve(shard, stream, BytesMut::new(), id, acceptor.transport());
}

/// Serves a connection another shard handed to this one.
pub fn adopt(shard: Rc<Shard>, fd: RawFd, buffered: Vec<u8>, transport: Option<Box<Transport>>) {
    // SAFETY: the fd was dup'ed for us by the sending shard, which no longer uses it.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    let id = shard.broker().adopt(Instant::now());
    serve(shard, stream, BytesMut::from(&buffered[..]), id, transport);
}

/// Moves a connection whose session lives on shard `home` there. Its own task, so that the
/// read loop's future (which every idle connection carries) does not hold this one's state.
fn hand_off(
    shard: &Rc<Shard>,
    fd: RawFd,
    home: usize,
    buffered: Vec<u8>,
    transport: Option<Box<Transport>>,
) {
    let shard = shard.clone();
    spawn_local(async move {
        let envelope = Envelope::Handoff {
            fd,
            buffered,
            transport,
        };
        if let Err(error) = shard.send_to(home, envelope).await {
            // Only when the mesh is closing, i.e. the process is stopping.
            tracing::warn!(%error, "cannot hand a connection over");
        }
    })
    .detach();
}

/// A duplicate of the connection's socket, which outlives the stream's halves being dropped.
fn dup(fd: RawFd) -> std::io::Result<RawFd> {
    // SAFETY: fcntl on an fd we own.
    match unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) } {
        -1 => Err(std::io::Error::last_os_error()),
        fd => Ok(fd),
    }
}

/// Registers the connection with the writers, then spawns its read loop. The setup is done
/// here, outside the task, so the task's future does not hold the whole socket.
fn serve(
    shard: Rc<Shard>,
    stream: TcpStream,
    buf: BytesMut,
    id: ConnId,
    transport: Option<Box<Transport>>,
) {
    let _ = stream.set_nodelay(true);
    let fd = stream.as_raw_fd();
    let peer = transport
        .as_ref()
        .and_then(|t| t.client())
        .or_else(|| stream.peer_addr().ok());
    if let Some(peer) = peer {
        shard.broker().set_peer(id, peer);
    }
    // A connection moved here after its TLS handshake: the broker here needs it too.
    if let Some(identity) = transport.as_ref().and_then(|t| t.identity()) {
        shard.broker().set_identity(id, identity);
    }
    let framed = transport.is_some();
    let (reader, writer) = futures_lite::io::split(stream);
    shard.register(id, fd, writer, transport);
    spawn_local(read_loop(shard, id, fd, reader, buf, framed)).detach();
}

async fn read_loop(
    shard: Rc<Shard>,
    id: ConnId,
    fd: RawFd,
    mut reader: ReadHalf<TcpStream>,
    buf: BytesMut,
    framed: bool,
) {
    // An idle connection owns no read buffer: reads go into the shard's buffer, and only the
    // start of a packet still incomplete is kept here.
    let mut pending = buf;
    let mut next = process(&shard, id, &mut pending);
    // Since when the broker has been closing the connection: what the client still sends is
    // read and discarded for at most the linger, then the socket goes, sending or not.
    let mut closing_since: Option<Instant> = None;
    loop {
        if let Next::HandOff(_) = next {
            break;
        }
        let closing = shard.broker().closing_state(id);
        match closing {
            Closing::No => {}
            Closing::Abort => break,
            Closing::Linger => {
                let since = *closing_since.get_or_insert_with(Instant::now);
                if since.elapsed() > LINGER {
                    break;
                }
            }
        }
        if pending.is_empty() {
            pending = BytesMut::new();
        }
        let pause = shard.broker().read_pause(id);
        if let Some(pause) = pause {
            // Boxed: a future is as large as its largest state, and this wait (a channel and
            // a timer) would make every idle connection's read loop that large.
            Box::pin(shard.wait_readable(id, pause)).await;
            if let ReadPause::Subscriber { .. } = pause {
                // Ask again: held, the socket is not read at all.
                continue;
            }
        }
        if let Next::Again = next {
            // The PUBLISHes it was held at are here already: they go first (the client may
            // be waiting for their acks), and the socket is read after them.
            next = process(&shard, id, &mut pending);
            continue;
        }
        // A socket with data always ready never makes the read pend, so without this a busy
        // publisher would starve the writers and the mesh tasks of its shard.
        futures_lite::future::yield_now().await;
        let mut scratch = shard.take_scratch();
        let read = match futures_lite::future::poll_once(read_into(&mut reader, &mut scratch)).await
        {
            Some(result) => result,
            None => {
                // Nothing to read: wait for the first byte with no buffer held.
                shard.return_scratch(scratch);
                let mut first = [0u8; 1];
                match reader.read(&mut first).await {
                    Ok(1) => {}
                    _ => break,
                }
                scratch = shard.take_scratch();
                scratch.extend_from_slice(&first);
                let more =
                    futures_lite::future::poll_once(read_into(&mut reader, &mut scratch)).await;
                match more {
                    Some(Ok(0)) | Some(Err(_)) => Err(std::io::ErrorKind::UnexpectedEof.into()),
                    _ => Ok(1),
                }
            }
        };
        if !matches!(read, Ok(n) if n > 0) {
            shard.return_scratch(scratch);
            break;
        }
        if framed {
            // What the transport unwraps is the client's: it joins `pending`.
            let received = shard.unwrap_transport(id, &scratch, &mut pending);
            scratch.clear();
            shard.return_scratch(scratch);
            next = process(&shard, id, &mut pending);
            match received {
                Ok(Received::Open) => continue,
                Ok(Received::Closed) => break,
                Err(error) => {
                    tracing::info!(shard = shard.broker().shard(), conn = id, %error, "closing connection");
                    break;
                }
            }
        }
        if pending.is_empty() {
            next = process(&shard, id, &mut scratch);
            pending.extend_from_slice(&scratch);
        } else {
            pending.extend_from_slice(&scratch);
            next = process(&shard, id, &mut pending);
        }
        scratch.clear();
        shard.return_scratch(scratch);
    }
    if let Next::HandOff(home) = next {
        // The broker has forgotten the connection; the socket goes on, duplicated, on `home`.
        let moved = dup(fd);
        drop(reader);
        let transport = shard.handed_off(id);
        match moved {
            Ok(fd) => hand_off(&shard, fd, home, pending.to_vec(), transport),
            Err(error) => tracing::warn!(%error, "cannot hand a connection over"),
        }
        return;
    }
    let closing_by_us = shard.broker().is_closing(id);
    if closing_by_us {
        // Let a drain still writing deliver the last words (CONNACK refusal, DISCONNECT).
        if let Some(drain) = shard.take_drain(id) {
            drain.await;
        }
    }
    drop(reader);
    shard.closed(id);
}

/// Reads what the socket has into the spare room of `buf`.
async fn read_into<R: futures_lite::AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
) -> std::io::Result<usize> {
    buf.reserve(READ_CHUNK);
    let start = buf.len();
    let spare = buf.spare_capacity_mut();
    // SAFETY: the reader only writes into the slice, and only the bytes it reports written
    // are made part of the buffer.
    let spare =
        unsafe { std::slice::from_raw_parts_mut(spare.as_mut_ptr().cast::<u8>(), spare.len()) };
    let n = reader.read(spare).await?;
    // SAFETY: `n` bytes after `start` were just written.
    unsafe { buf.set_len(start + n) };
    Ok(n)
}

/// What the read loop does after handing the broker what was read.
enum Next {
    /// Read the socket.
    Read,
    /// Hand the buffer in again once the connection may be read: the broker held it back
    /// with whole PUBLISHes still in it.
    Again,
    /// Move the connection to this shard (with the buffer, untouched).
    HandOff(usize),
}

/// Gives the broker what was read.
fn process(shard: &Rc<Shard>, id: ConnId, buf: &mut BytesMut) -> Next {
    let received = shard.broker().receive(id, buf, Instant::now());
    shard.flush();
    match received {
        Receive::Continue => Next::Read,
        Receive::Held => Next::Again,
        Receive::HandOff(home) => Next::HandOff(home),
    }
}
