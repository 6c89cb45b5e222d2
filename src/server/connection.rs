//! A client connection: one task reads, decodes what arrives and feeds the broker; the flush
//! after each read batch writes what the broker encoded (see `writer`), so all that one batch
//! produced, the PUBACKs of a batch included, goes out in one write.
//!
//! A connection accepted on a shard other than its client id's home is handed over right after
//! CONNECT: the socket (duplicated) and the bytes read so far travel over the mesh.

use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_lite::io::{AsyncReadExt, ReadHalf};
use glommio::net::TcpStream;
use glommio::{spawn_local, timer};

use super::mesh::Envelope;
use super::shard::Shard;
use crate::core::{home_shard, ConnId};
use crate::protocol::{Decoder, Packet, ProtocolVersion};

/// Bytes asked of the socket per read before CONNECT (the connection's own small buffer).
const FIRST_READ_CHUNK: usize = 512;
/// Spare room in the shard's read buffer before each read.
const READ_CHUNK: usize = 64 * 1024;
/// A socket that accepts no bytes for this long is closed.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// Serves a connection accepted by this shard.
///
/// The connection's lasting task is spawned only once CONNECT is in: a future is as large as
/// its largest state, so one task for both phases made every idle connection carry the
/// CONNECT-phase state too (1,080 bytes; the read loop's future is 232).
pub fn spawn(shard: Rc<Shard>, stream: TcpStream) {
    spawn_local(async move {
        let mut buf = BytesMut::new();
        let mut stream = stream;
        match read_first_packet(&shard, &mut stream, &mut buf).await {
            Some(FirstPacket::HandOff(home)) => hand_off(&shard, stream, home, buf).await,
            Some(FirstPacket::Serve) => {
                serve(shard, stream, buf);
            }
            None => {}
        }
    })
    .detach();
}

/// Serves a connection another shard handed to this one.
pub fn adopt(shard: Rc<Shard>, fd: RawFd, buffered: Vec<u8>) {
    // SAFETY: the fd was dup'ed for us by the sending shard, which no longer uses it.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    serve(shard, stream, BytesMut::from(&buffered[..]));
}

enum FirstPacket {
    Serve,
    HandOff(usize),
}

/// Reads until the first packet is whole. A CONNECT whose client id lives on another shard is
/// handed there; anything else (including bad input) is served here, where the broker gives
/// the right reaction. `None`: the socket closed first.
async fn read_first_packet(
    shard: &Shard,
    reader: &mut TcpStream,
    buf: &mut BytesMut,
) -> Option<FirstPacket> {
    let deadline = Instant::now() + crate::core::broker::CONNECT_TIMEOUT;
    loop {
        let decoder = Decoder::new(ProtocolVersion::V3_1_1, shard.config.max_packet_size);
        let mut probe = buf.clone();
        match decoder.decode(&mut probe) {
            Ok(Some(Packet::Connect(connect)))
                if shard.shards > 1 && !connect.client_id.is_empty() =>
            {
                let home = home_shard(connect.client_id.as_bytes(), shard.shards);
                return Some(if home == shard.id {
                    FirstPacket::Serve
                } else {
                    FirstPacket::HandOff(home)
                });
            }
            Ok(None) => {}
            _ => return Some(FirstPacket::Serve),
        }
        let remaining = deadline.checked_duration_since(Instant::now())?;
        let read = futures_lite::future::or(read_some(reader, buf), async {
            timer::sleep(remaining).await;
            Ok(0)
        });
        match read.await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

async fn hand_off(shard: &Shard, stream: TcpStream, home: usize, buf: BytesMut) {
    // Dropping the stream closes its fd, so the home shard gets a duplicate.
    // SAFETY: fcntl on an fd we own.
    let fd = unsafe { libc::fcntl(stream.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
    drop(stream);
    if fd < 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot hand a connection over");
        return;
    }
    let envelope = Envelope::Handoff {
        fd,
        buffered: buf.to_vec(),
    };
    if let Err(error) = shard.senders.send_to(home, envelope).await {
        // Only when the mesh is closing, i.e. the process is stopping.
        tracing::warn!(%error, "cannot hand a connection over");
    }
}

async fn read_some<R: futures_lite::AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
) -> std::io::Result<usize> {
    let start = buf.len();
    buf.resize(start + FIRST_READ_CHUNK, 0);
    let result = reader.read(&mut buf[start..]).await;
    buf.truncate(start + *result.as_ref().unwrap_or(&0));
    result
}

/// Registers the connection with the broker and the writers, then spawns its read loop. The
/// setup is done here, outside the task, so the task's future does not hold the whole socket.
fn serve(shard: Rc<Shard>, stream: TcpStream, buf: BytesMut) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let fd = stream.as_raw_fd();
    let id = shard.broker.borrow_mut().open(Instant::now());
    let (reader, writer) = futures_lite::io::split(stream);
    shard.writers.register(id, fd, writer);
    spawn_local(read_loop(shard, id, reader, buf)).detach();
}

async fn read_loop(shard: Rc<Shard>, id: ConnId, mut reader: ReadHalf<TcpStream>, buf: BytesMut) {
    // An idle connection owns no read buffer: reads go into the shard's buffer, and only the
    // start of a packet still incomplete is kept here.
    let mut pending = buf;
    let mut open = process(&shard, id, &mut pending);
    while open {
        if pending.is_empty() {
            pending = BytesMut::new();
        }
        shard.outbox_backpressure().await;
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
        open = if pending.is_empty() {
            let open = process(&shard, id, &mut scratch);
            pending.extend_from_slice(&scratch);
            open
        } else {
            pending.extend_from_slice(&scratch);
            process(&shard, id, &mut pending)
        };
        scratch.clear();
        shard.return_scratch(scratch);
    }
    let closing_by_us = shard.broker.borrow().is_closing(id);
    if closing_by_us {
        // Let a drain still writing deliver the last words (CONNACK refusal, DISCONNECT).
        if let Some(drain) = shard.writers.take_drain(id) {
            drain.await;
        }
    }
    drop(reader);
    shard.writers.unregister(id);
    shard.broker.borrow_mut().closed(id, Instant::now());
    shard.flush();
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

/// Decodes and handles every whole packet in `buf`. False once the connection is closing.
fn process(shard: &Rc<Shard>, id: ConnId, buf: &mut BytesMut) -> bool {
    let now = Instant::now();
    let mut broker = shard.broker.borrow_mut();
    let max_packet_size = shard.config.max_packet_size;
    loop {
        if broker.is_closing(id) {
            break;
        }
        // The version changes once, at CONNECT: read it per packet.
        let decoder = Decoder::new(broker.version(id), max_packet_size);
        match decoder.decode(buf) {
            Ok(Some(packet)) => broker.handle(id, packet, now),
            Ok(None) => break,
            Err(error) => {
                broker.decode_failed(id, &error);
                break;
            }
        }
    }
    let open = !broker.is_closing(id);
    drop(broker);
    shard.flush();
    open
}
