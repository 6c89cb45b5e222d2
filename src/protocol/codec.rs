//! Framing: find a whole packet in the read buffer, split it off without copying, and parse it.

use bytes::{Buf, BytesMut};

use super::error::{DecodeError, EncodeError};
use super::packet::*;
use super::primitives::{parse_varint, Varint};

/// The most a packet can be: a 1-byte header, 4-byte remaining length and 268,435,455 bytes.
pub const MAX_PACKET_SIZE: u32 = 268_435_460;

/// Most bytes reserved ahead for a packet still arriving.
const RESERVE_AHEAD: usize = 64 * 1024;

/// A whole packet's outline, read from its fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub first_byte: u8,
    pub header_len: usize,
    pub remaining_len: usize,
}

impl Frame {
    pub fn total_len(&self) -> usize {
        self.header_len + self.remaining_len
    }
}

/// Reads the fixed header at the start of `buf`. `Ok(None)` until it is all there; a packet
/// larger than `max_packet_size` fails here, before its body is buffered.
pub fn read_frame(buf: &[u8], max_packet_size: u32) -> Result<Option<Frame>, DecodeError> {
    let Some(&first_byte) = buf.first() else {
        return Ok(None);
    };
    match parse_varint(&buf[1..])? {
        Varint::Incomplete => Ok(None),
        Varint::Complete(remaining, len) => {
            let frame = Frame {
                first_byte,
                header_len: 1 + len,
                remaining_len: remaining as usize,
            };
            if frame.total_len() > max_packet_size as usize {
                return Err(DecodeError::PacketTooLarge {
                    size: frame.total_len(),
                    max: max_packet_size,
                });
            }
            Ok(Some(frame))
        }
    }
}

/// Decodes the packets of one connection. CONNECT carries its own version; every other packet
/// is read as `version`, which the connection sets once CONNECT has been accepted.
#[derive(Debug, Clone, Copy)]
pub struct Decoder {
    pub version: ProtocolVersion,
    pub max_packet_size: u32,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder {
            version: ProtocolVersion::V3_1_1,
            max_packet_size: MAX_PACKET_SIZE,
        }
    }
}

impl Decoder {
    pub fn new(version: ProtocolVersion, max_packet_size: u32) -> Decoder {
        Decoder {
            version,
            max_packet_size,
        }
    }

    /// Splits the next whole packet off `buf` and parses it; `Ok(None)` while it is incomplete
    /// (then `buf` is untouched). Topic, payload and other variable fields share `buf`'s memory.
    ///
    /// Inlined, so the packet is built in the caller's frame: returning it through memory from
    /// an out-of-line call cost a store-forwarding stall per packet.
    #[inline]
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
        let Some(frame) = read_frame(buf, self.max_packet_size)? else {
            return Ok(None);
        };
        if buf.len() < frame.total_len() {
            // Room for the rest, but not all at once: a header alone must not make us
            // allocate the maximum packet size.
            buf.reserve((frame.total_len() - buf.len()).min(RESERVE_AHEAD));
            return Ok(None);
        }
        let mut bytes = buf.split_to(frame.total_len()).freeze();
        bytes.advance(frame.header_len);
        self.parse(frame.first_byte, bytes).map(Some)
    }

    #[inline]
    fn parse(&self, first_byte: u8, body: bytes::Bytes) -> Result<Packet, DecodeError> {
        // PUBLISH is nearly all of the traffic: parse it here; the rest out of line.
        if first_byte >> 4 == PacketType::Publish as u8 {
            return Ok(Packet::Publish(Publish::read(
                first_byte & 0x0F,
                body,
                self.version,
            )?));
        }
        self.parse_other(first_byte, body)
    }

    #[inline(never)]
    fn parse_other(&self, first_byte: u8, body: bytes::Bytes) -> Result<Packet, DecodeError> {
        let flags = first_byte & 0x0F;
        let version = self.version;
        let packet = match first_byte >> 4 {
            1 => Packet::Connect(Box::new(Connect::read(flags, body)?)),
            2 => Packet::ConnAck(ConnAck::read(flags, body, version)?),
            3 => Packet::Publish(Publish::read(flags, body, version)?),
            4 => Packet::PubAck(Ack::read(PacketType::PubAck, flags, body, version)?),
            5 => Packet::PubRec(Ack::read(PacketType::PubRec, flags, body, version)?),
            6 => Packet::PubRel(Ack::read(PacketType::PubRel, flags, body, version)?),
            7 => Packet::PubComp(Ack::read(PacketType::PubComp, flags, body, version)?),
            8 => Packet::Subscribe(Subscribe::read(flags, body, version)?),
            9 => Packet::SubAck(SubAck::read(flags, body, version)?),
            10 => Packet::Unsubscribe(Unsubscribe::read(flags, body, version)?),
            11 => Packet::UnsubAck(UnsubAck::read(flags, body, version)?),
            12 => {
                check_empty(PacketType::PingReq, flags, &body)?;
                Packet::PingReq
            }
            13 => {
                check_empty(PacketType::PingResp, flags, &body)?;
                Packet::PingResp
            }
            14 => Packet::Disconnect(Disconnect::read(flags, body, version)?),
            15 if version.is_v5() => Packet::Auth(Auth::read(flags, body)?),
            15 => return Err(DecodeError::Malformed("AUTH is not part of MQTT 3")),
            _ => return Err(DecodeError::Malformed("reserved packet type 0")),
        };
        Ok(packet)
    }
}

fn check_empty(packet: PacketType, flags: u8, body: &bytes::Bytes) -> Result<(), DecodeError> {
    check_reserved_flags(packet, flags)?;
    expect_end(body)
}

/// Appends `packet` to `dst` in the given protocol version (CONNECT uses its own). On error
/// `dst` is left as it was.
pub fn encode(
    packet: &Packet,
    version: ProtocolVersion,
    dst: &mut BytesMut,
) -> Result<(), EncodeError> {
    let start = dst.len();
    let result = encode_unchecked(packet, version, dst);
    if result.is_err() {
        dst.truncate(start);
    }
    result
}

fn encode_unchecked(
    packet: &Packet,
    version: ProtocolVersion,
    dst: &mut BytesMut,
) -> Result<(), EncodeError> {
    let v5_only = |what| {
        if version.is_v5() {
            Ok(())
        } else {
            Err(EncodeError::NotInVersion(what))
        }
    };
    match packet {
        Packet::Connect(p) => p.write(dst),
        Packet::ConnAck(p) => p.write(version, dst),
        Packet::Publish(p) => p.write(version, dst),
        Packet::PubAck(p) => p.write(PacketType::PubAck, version, dst),
        Packet::PubRec(p) => p.write(PacketType::PubRec, version, dst),
        Packet::PubRel(p) => p.write(PacketType::PubRel, version, dst),
        Packet::PubComp(p) => p.write(PacketType::PubComp, version, dst),
        Packet::Subscribe(p) => p.write(version, dst),
        Packet::SubAck(p) => p.write(version, dst),
        Packet::Unsubscribe(p) => p.write(version, dst),
        Packet::UnsubAck(p) => p.write(version, dst),
        Packet::PingReq => write_fixed_header(dst, (PacketType::PingReq as u8) << 4, 0),
        Packet::PingResp => write_fixed_header(dst, (PacketType::PingResp as u8) << 4, 0),
        Packet::Disconnect(p) => p.write(version, dst),
        Packet::Auth(p) => {
            v5_only("AUTH")?;
            p.write(dst)
        }
    }
}
