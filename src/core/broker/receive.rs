//! The one way bytes from a client enter the core: framing, the maximum packet size, the
//! version-dependent decoder, and the decision to serve a connection here or on the home shard
//! of its session.

use std::time::Instant;

use bytes::BytesMut;

use super::connection::session_home;
use super::{Broker, ConnId};
use crate::core::home_shard;
use crate::protocol::{read_frame, Decoder, Packet, ProtocolVersion};

/// The packet type of PUBLISH, in the first byte's high nibble.
const PUBLISH: u8 = 3;

/// What the shell does with a connection after [`Broker::receive`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receive {
    /// Go on reading it (whatever is left in the buffer is the start of a packet).
    Continue,
    /// It is held for a subscriber that is behind ([`Broker::read_pause`]): the buffer starts
    /// with a PUBLISH not taken yet. Once the pause ends, hand the buffer in again before
    /// reading more (the client may be waiting for the acks of what is in it).
    Held,
    /// Its session lives on shard `N`: move the socket there with the bytes read so far,
    /// which were left untouched. This shard has already forgotten the connection.
    HandOff(usize),
}

impl Broker {
    /// Takes the bytes read for `id`: decodes and handles every whole packet in `buf`, leaving
    /// only the start of an incomplete one, or, while the connection is held for a subscriber
    /// that is behind ([`ReadPause::Subscriber`]), everything from its next PUBLISH on. Once
    /// the broker is closing the connection, what the client still sends is discarded.
    ///
    /// [`ReadPause::Subscriber`]: super::ReadPause::Subscriber
    pub fn receive(&mut self, id: ConnId, buf: &mut BytesMut, now: Instant) -> Receive {
        self.now = now;
        let max_packet_size = self.limits.max_packet_size;
        let Some(conn) = self.conns.get_mut(&id) else {
            buf.clear();
            return Receive::Continue;
        };
        if std::mem::take(&mut conn.may_hand_off) {
            match self.first_packet_home(id, buf) {
                // Asked again after the next read.
                None => {
                    self.conns.get_mut(&id).expect("checked above").may_hand_off = true;
                    return Receive::Continue;
                }
                Some(home) if home != self.shard => {
                    self.forget(id);
                    return Receive::HandOff(home);
                }
                Some(_) => {}
            }
        }
        // The version changes once, at CONNECT; the decoder follows it.
        let mut version = None;
        let mut decoder = Decoder::new(ProtocolVersion::V3_1_1, max_packet_size);
        loop {
            let Some(conn) = self.conns.get(&id) else {
                buf.clear();
                break;
            };
            if conn.closing {
                buf.clear();
                break;
            }
            let (speaks, maybe_held) = (conn.link.version, conn.held_by.is_some());
            if maybe_held && buf.first().is_some_and(|b| b >> 4 == PUBLISH) && self.is_held(id) {
                // Held for a subscriber that is behind: its PUBLISHes wait in the buffer (and,
                // unread, in the socket); what it sends before the next one still goes on.
                return Receive::Held;
            }
            if version != Some(speaks) {
                version = Some(speaks);
                decoder = Decoder::new(speaks, max_packet_size);
            }
            match decoder.decode(buf) {
                Ok(Some(packet)) => self.handle(id, packet, now),
                Ok(None) => break,
                Err(error) => {
                    self.decode_failed(id, &error);
                    buf.clear();
                    break;
                }
            }
        }
        Receive::Continue
    }

    /// The shard whose session a connection's first packet is for, once that packet is whole
    /// (`None` until then). Anything but a well-formed CONNECT with a client id (bad input
    /// included) is served here, where it gets the right reaction.
    fn first_packet_home(&self, id: ConnId, buf: &BytesMut) -> Option<usize> {
        let max_packet_size = self.limits.max_packet_size;
        let here = Some(self.shard);
        let frame = match read_frame(buf, max_packet_size) {
            Err(_) => return here,
            Ok(None) => return None,
            Ok(Some(frame)) if buf.len() < frame.total_len() => return None,
            Ok(Some(frame)) => frame,
        };
        // Decoded from a copy of the frame: the buffer goes to the home shard untouched.
        let mut probe = BytesMut::from(&buf[..frame.total_len()]);
        let decoder = Decoder::new(ProtocolVersion::V3_1_1, max_packet_size);
        let Ok(Some(Packet::Connect(connect))) = decoder.decode(&mut probe) else {
            return here;
        };
        let identity = self.peers.identity(id);
        let home_id = session_home(&connect, identity, self.features.use_username_as_clientid);
        if home_id.is_empty() {
            return here;
        }
        Some(home_shard(home_id.as_bytes(), self.shards))
    }
}
