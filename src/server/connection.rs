//! A client connection: one task reads, decodes what arrives and feeds the broker; the flush
//! after each read batch writes what the broker encoded (see `writer`), so all that one batch
//! produced, the PUBACKs of a batch included, goes out in one write.
//!
//! A connection accepted on a shard other than its session's home is handed over right after
//! CONNECT: the socket (duplicated) and the bytes read so far travel over the mesh.

use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::rc::Rc;
use std::time::Instant;

use bytes::BytesMut;
use futures_lite::io::{AsyncReadExt, ReadHalf};
use glommio::net::TcpStream;
use glommio::{spawn_local, timer};

use super::mesh::Envelope;
use super::shard::Shard;
use crate::core::broker::session_home;
use crate::core::{home_shard, Closing, ConnId};
use crate::protocol::{read_frame, Decoder, Packet, ProtocolVersion};

/// Bytes asked of the socket per read before CONNECT, unless the packet is known to be longer.
const FIRST_READ_CHUNK: usize = 512;
/// Spare room in the shard's read buffer before each read.
const READ_CHUNK: usize = 64 * 1024;

/// Serves a connection accepted by this shard. It counts against the connection limit from
/// now on, CONNECT or not.
///
/// The connection's lasting task is spawned only once CONNECT is in: a future is as large as
/// its largest state, so one task for both phases made every idle connection carry the
/// CONNECT-phase state too (1,080 bytes; the read loop's future is 232).
pub fn spawn(shard: Rc<Shard>, stream: TcpStream) {
    let id = shard.broker.borrow_mut().open(Instant::now());
    spawn_local(async move {
        let mut buf = BytesMut::new();
        let mut stream = stream;
        match read_first_packet(&shard, &mut stream, &mut buf).await {
            Some(FirstPacket::HandOff(home)) => {
                shard.broker.borrow_mut().forget(id);
                hand_off(&shard, stream, home, buf).await
            }
            Some(FirstPacket::Serve) => serve(shard, stream, buf, Some(id)),
            None => {
                shard.broker.borrow_mut().closed(id, Instant::now());
                shard.flush();
            }
        }
    })
    .detach();
}

/// Serves a connection another shard handed to this one.
pub fn adopt(shard: Rc<Shard>, fd: RawFd, buffered: Vec<u8>) {
    // SAFETY: the fd was dup'ed for us by the sending shard, which no longer uses it.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    serve(shard, stream, BytesMut::from(&buffered[..]), None);
}

enum FirstPacket {
    Serve,
    HandOff(usize),
}

/// Reads until the first packet is whole, in time linear in its size: the fixed header says
/// how long it is, and it is decoded once, when all there. A CONNECT for a session homed on
/// another shard is handed there; anything else (bad input included) is served here, where
/// the broker gives the right reaction. `None`: the socket closed first, or no packet came
/// within the connect timeout.
async fn read_first_packet(
    shard: &Shard,
    reader: &mut TcpStream,
    buf: &mut BytesMut,
) -> Option<FirstPacket> {
    let deadline = Instant::now() + shard.broker.borrow().limits().connect_timeout;
    let max_packet_size = shard.config.max_packet_size;
    loop {
        let want = match read_frame(buf, max_packet_size) {
            Err(_) => return Some(FirstPacket::Serve),
            Ok(Some(frame)) if buf.len() >= frame.total_len() => {
                return Some(route_first_packet(shard, buf));
            }
            Ok(Some(frame)) => (frame.total_len() - buf.len()).clamp(FIRST_READ_CHUNK, READ_CHUNK),
            Ok(None) => FIRST_READ_CHUNK,
        };
        let remaining = deadline.checked_duration_since(Instant::now())?;
        let read = futures_lite::future::or(read_some(reader, buf, want), async {
            timer::sleep(remaining).await;
            Ok(0)
        });
        match read.await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Where a whole first packet is served.
fn route_first_packet(shard: &Shard, buf: &BytesMut) -> FirstPacket {
    if shard.shards == 1 {
        return FirstPacket::Serve;
    }
    let decoder = Decoder::new(ProtocolVersion::V3_1_1, shard.config.max_packet_size);
    let mut probe = BytesMut::from(&buf[..]);
    let Ok(Some(Packet::Connect(connect))) = decoder.decode(&mut probe) else {
        return FirstPacket::Serve;
    };
    let home_id = session_home(&connect, shard.config.use_username_as_clientid);
    if home_id.is_empty() {
        return FirstPacket::Serve;
    }
    match home_shard(home_id.as_bytes(), shard.shards) {
        home if home == shard.id => FirstPacket::Serve,
        home => FirstPacket::HandOff(home),
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
    want: usize,
) -> std::io::Result<usize> {
    let start = buf.len();
    buf.resize(start + want, 0);
    let result = reader.read(&mut buf[start..]).await;
    buf.truncate(start + *result.as_ref().unwrap_or(&0));
    result
}

/// Registers the connection with the broker (unless `opened` already) and the writers, then
/// spawns its read loop. The setup is done here, outside the task, so the task's future does
/// not hold the whole socket.
fn serve(shard: Rc<Shard>, stream: TcpStream, buf: BytesMut, opened: Option<ConnId>) {
    let _ = stream.set_nodelay(true);
    let fd = stream.as_raw_fd();
    let id = opened.unwrap_or_else(|| shard.broker.borrow_mut().open(Instant::now()));
    let (reader, writer) = futures_lite::io::split(stream);
    shard.writers.register(id, fd, writer);
    spawn_local(read_loop(shard, id, reader, buf)).detach();
}

async fn read_loop(shard: Rc<Shard>, id: ConnId, mut reader: ReadHalf<TcpStream>, buf: BytesMut) {
    // An idle connection owns no read buffer: reads go into the shard's buffer, and only the
    // start of a packet still incomplete is kept here.
    let mut pending = buf;
    process(&shard, id, &mut pending);
    // Since when the broker has been closing the connection: what the client still sends is
    // read and discarded for at most the linger, then the socket goes, sending or not.
    let mut closing_since: Option<Instant> = None;
    loop {
        match shard.broker.borrow().closing_state(id) {
            Closing::No => {}
            Closing::Abort => break,
            Closing::Linger => {
                let since = *closing_since.get_or_insert_with(Instant::now);
                if since.elapsed() > super::writer::LINGER {
                    break;
                }
            }
        }
        if pending.is_empty() {
            pending = BytesMut::new();
        }
        let pause = shard.broker.borrow_mut().read_pause(id);
        if let Some(pause) = pause {
            // Boxed: a future is as large as its largest state, and this wait (a channel and
            // a timer) would make every idle connection's read loop that large.
            Box::pin(shard.gates.wait(id, pause)).await;
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
        if pending.is_empty() {
            process(&shard, id, &mut scratch);
            pending.extend_from_slice(&scratch);
        } else {
            pending.extend_from_slice(&scratch);
            process(&shard, id, &mut pending);
        }
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
    shard.gates.release(id);
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

/// Decodes and handles every whole packet in `buf`. Once the broker closes the connection,
/// what the client still sends is read and discarded: the socket closes when the client
/// closes its side, or when the writer's linger runs out.
fn process(shard: &Rc<Shard>, id: ConnId, buf: &mut BytesMut) {
    let now = Instant::now();
    let mut broker = shard.broker.borrow_mut();
    let max_packet_size = shard.config.max_packet_size;
    loop {
        if broker.is_closing(id) {
            buf.clear();
            break;
        }
        // The version changes once, at CONNECT: read it per packet.
        let decoder = Decoder::new(broker.version(id), max_packet_size);
        match decoder.decode(buf) {
            Ok(Some(packet)) => broker.handle(id, packet, now),
            Ok(None) => break,
            Err(error) => {
                broker.decode_failed(id, &error);
                buf.clear();
                break;
            }
        }
    }
    drop(broker);
    shard.flush();
}
