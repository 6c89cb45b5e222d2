//! What the log records: one entry per change that must survive a restart, each encoded with
//! the protocol's own primitives (length-prefixed strings and binaries, 5.0 property blocks).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use crate::protocol::primitives::{read_binary, read_string, read_u16, read_u32, read_u8};
use crate::protocol::primitives::{write_binary, write_string};
use crate::protocol::{
    DecodeError, EncodeError, Properties, PropertyContext, QoS, RetainHandling, SubscriptionOptions,
};

/// An application message as stored: what a subscriber must get after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub topic: ByteString,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// 5.0 properties as published (the Message Expiry Interval counts again from recovery).
    pub properties: Properties,
}

/// What a durable session is owed of one stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owing {
    /// The message's id (its [`Record::Message`]).
    pub id: u64,
    pub qos: QoS,
    pub retain: bool,
    pub subscription_ids: Vec<u32>,
    /// 0: queued; else sent with this packet id.
    pub pkid: u16,
    /// The inbound QoS 2 message it is (0: none), see `message::Receipt`.
    pub receipt: u64,
}

/// One change that must survive a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A session was made (or resumed with a new expiry), in seconds (`u32::MAX`: never).
    SessionOpen {
        client_id: ByteString,
        expiry: u32,
    },
    /// A session ended: everything of it goes.
    SessionEnd {
        client_id: ByteString,
    },
    Subscribe {
        client_id: ByteString,
        filter: ByteString,
        options: SubscriptionOptions,
        /// 5.0 Subscription Identifier, 0 for none.
        id: u32,
    },
    Unsubscribe {
        client_id: ByteString,
        filter: ByteString,
    },
    /// A retained message set (`RetainClear`: cleared). `seq` orders the updates of one
    /// topic made on different shards, whose logs are read one after the other: the highest
    /// wins (0: from a snapshot, older than anything after it).
    RetainSet {
        seq: u64,
        message: StoredMessage,
    },
    RetainClear {
        seq: u64,
        topic: ByteString,
    },
    /// An inbound QoS 2 message with this packet id was accepted: a resent PUBLISH with it is
    /// not delivered again until the PUBREL, except to durable sessions without its
    /// `receipt` (unique across every shard's log; see `message::Receipt`).
    Qos2Received {
        client_id: ByteString,
        pkid: u16,
        receipt: u64,
    },
    /// The PUBREL for it came.
    Qos2Released {
        client_id: ByteString,
        pkid: u16,
    },
    /// The client went, and its will waits out its Will Delay Interval (seconds).
    Will {
        client_id: ByteString,
        delay: u32,
        message: StoredMessage,
    },
    /// The waiting will was published, or the client came back in time.
    WillDone {
        client_id: ByteString,
    },
    /// A QoS 1/2 message some durable session on this shard is owed, once for all of them.
    /// `id` is unique across every shard's log.
    Message {
        id: u64,
        message: StoredMessage,
    },
    /// Session `client_id` is owed a stored message.
    Owed {
        client_id: ByteString,
        owing: Owing,
    },
    /// Session `client_id` got the inbound QoS 2 message `receipt` (written by snapshots;
    /// in the log, `Owed` says it).
    Receipt {
        client_id: ByteString,
        receipt: u64,
    },
    /// A queued message was sent with packet id `pkid`.
    Sent {
        client_id: ByteString,
        id: u64,
        pkid: u16,
    },
    /// The client's PUBREC came for QoS 2 message `id`: it has it; PUBREL is owed until the
    /// PUBCOMP.
    Released {
        client_id: ByteString,
        id: u64,
    },
    /// Message `id` is done with for the session: acknowledged, or dropped (and counted).
    Delivered {
        client_id: ByteString,
        id: u64,
    },
}

/// Why a record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
    #[error("bad record body: {0}")]
    Body(#[from] DecodeError),
    #[error("{0} bytes left over after the record")]
    Trailing(usize),
}

mod kind {
    pub const SESSION_OPEN: u8 = 1;
    pub const SESSION_END: u8 = 2;
    pub const SUBSCRIBE: u8 = 3;
    pub const UNSUBSCRIBE: u8 = 4;
    pub const RETAIN_SET: u8 = 5;
    pub const RETAIN_CLEAR: u8 = 6;
    pub const MESSAGE: u8 = 7;
    pub const OWED: u8 = 8;
    pub const QOS2_RECEIVED: u8 = 9;
    pub const QOS2_RELEASED: u8 = 10;
    pub const WILL: u8 = 11;
    pub const WILL_DONE: u8 = 12;
    pub const SENT: u8 = 13;
    pub const RELEASED: u8 = 14;
    pub const DELIVERED: u8 = 15;
    pub const RECEIPT: u8 = 16;
}

impl Record {
    /// Appends the record's kind byte and body.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        match self {
            Record::SessionOpen { client_id, expiry } => {
                out.put_u8(kind::SESSION_OPEN);
                write_string(out, client_id, "client id")?;
                out.put_u32(*expiry);
            }
            Record::SessionEnd { client_id } => {
                out.put_u8(kind::SESSION_END);
                write_string(out, client_id, "client id")?;
            }
            Record::Subscribe {
                client_id,
                filter,
                options,
                id,
            } => {
                out.put_u8(kind::SUBSCRIBE);
                write_string(out, client_id, "client id")?;
                write_string(out, filter, "filter")?;
                out.put_u8(options_byte(options));
                out.put_u32(*id);
            }
            Record::Unsubscribe { client_id, filter } => {
                out.put_u8(kind::UNSUBSCRIBE);
                write_string(out, client_id, "client id")?;
                write_string(out, filter, "filter")?;
            }
            Record::RetainSet { seq, message } => {
                out.put_u8(kind::RETAIN_SET);
                out.put_u64(*seq);
                message.view().encode(out)?;
            }
            Record::RetainClear { seq, topic } => {
                out.put_u8(kind::RETAIN_CLEAR);
                out.put_u64(*seq);
                write_string(out, topic, "topic")?;
            }
            Record::Qos2Received {
                client_id,
                pkid,
                receipt,
            } => {
                out.put_u8(kind::QOS2_RECEIVED);
                write_string(out, client_id, "client id")?;
                out.put_u16(*pkid);
                out.put_u64(*receipt);
            }
            Record::Qos2Released { client_id, pkid } => {
                out.put_u8(kind::QOS2_RELEASED);
                write_string(out, client_id, "client id")?;
                out.put_u16(*pkid);
            }
            Record::Receipt { client_id, receipt } => {
                out.put_u8(kind::RECEIPT);
                write_string(out, client_id, "client id")?;
                out.put_u64(*receipt);
            }
            Record::Will {
                client_id,
                delay,
                message,
            } => {
                out.put_u8(kind::WILL);
                write_string(out, client_id, "client id")?;
                out.put_u32(*delay);
                message.view().encode(out)?;
            }
            Record::WillDone { client_id } => {
                out.put_u8(kind::WILL_DONE);
                write_string(out, client_id, "client id")?;
            }
            Record::Message { id, message } => encode_message_record(out, *id, message.view())?,
            Record::Owed { client_id, owing } => encode_owed(out, client_id, owing)?,
            Record::Sent {
                client_id,
                id,
                pkid,
            } => encode_sent(out, client_id, *id, *pkid)?,
            Record::Released { client_id, id } => encode_released(out, client_id, *id)?,
            Record::Delivered { client_id, id } => encode_delivered(out, client_id, *id)?,
        }
        Ok(())
    }

    /// Reads a record from its kind byte and body (the whole of `buf`).
    pub fn decode(mut buf: Bytes) -> Result<Record, RecordError> {
        let record = match read_u8(&mut buf)? {
            kind::SESSION_OPEN => Record::SessionOpen {
                client_id: read_string(&mut buf)?,
                expiry: read_u32(&mut buf)?,
            },
            kind::SESSION_END => Record::SessionEnd {
                client_id: read_string(&mut buf)?,
            },
            kind::SUBSCRIBE => Record::Subscribe {
                client_id: read_string(&mut buf)?,
                filter: read_string(&mut buf)?,
                options: options_from(read_u8(&mut buf)?)?,
                id: read_u32(&mut buf)?,
            },
            kind::UNSUBSCRIBE => Record::Unsubscribe {
                client_id: read_string(&mut buf)?,
                filter: read_string(&mut buf)?,
            },
            kind::RETAIN_SET => Record::RetainSet {
                seq: read_u64(&mut buf)?,
                message: decode_message(&mut buf, PropertyContext::Publish)?,
            },
            kind::RETAIN_CLEAR => Record::RetainClear {
                seq: read_u64(&mut buf)?,
                topic: read_string(&mut buf)?,
            },
            kind::QOS2_RECEIVED => Record::Qos2Received {
                client_id: read_string(&mut buf)?,
                pkid: read_u16(&mut buf)?,
                receipt: read_u64(&mut buf)?,
            },
            kind::RECEIPT => Record::Receipt {
                client_id: read_string(&mut buf)?,
                receipt: read_u64(&mut buf)?,
            },
            kind::QOS2_RELEASED => Record::Qos2Released {
                client_id: read_string(&mut buf)?,
                pkid: read_u16(&mut buf)?,
            },
            kind::WILL => Record::Will {
                client_id: read_string(&mut buf)?,
                delay: read_u32(&mut buf)?,
                // A will's properties, its Will Delay Interval among them.
                message: decode_message(&mut buf, PropertyContext::Will)?,
            },
            kind::WILL_DONE => Record::WillDone {
                client_id: read_string(&mut buf)?,
            },
            kind::MESSAGE => Record::Message {
                id: read_u64(&mut buf)?,
                message: decode_message(&mut buf, PropertyContext::Publish)?,
            },
            kind::OWED => {
                let client_id = read_string(&mut buf)?;
                let id = read_u64(&mut buf)?;
                let receipt = read_u64(&mut buf)?;
                let flags = read_u8(&mut buf)?;
                if flags & !0b111 != 0 {
                    return Err(DecodeError::Malformed("delivery flags").into());
                }
                let pkid = read_u16(&mut buf)?;
                let count = read_u16(&mut buf)?;
                let subscription_ids = (0..count)
                    .map(|_| read_u32(&mut buf))
                    .collect::<Result<_, _>>()?;
                let owing = Owing {
                    id,
                    qos: qos_from(flags & 0b11)?,
                    retain: flags & 0b100 != 0,
                    subscription_ids,
                    pkid,
                    receipt,
                };
                Record::Owed { client_id, owing }
            }
            kind::SENT => Record::Sent {
                client_id: read_string(&mut buf)?,
                id: read_u64(&mut buf)?,
                pkid: read_u16(&mut buf)?,
            },
            kind::RELEASED => Record::Released {
                client_id: read_string(&mut buf)?,
                id: read_u64(&mut buf)?,
            },
            kind::DELIVERED => Record::Delivered {
                client_id: read_string(&mut buf)?,
                id: read_u64(&mut buf)?,
            },
            other => return Err(RecordError::UnknownKind(other)),
        };
        match buf.remaining() {
            0 => Ok(record),
            n => Err(RecordError::Trailing(n)),
        }
    }
}

/// A message as a record holds it, borrowed from wherever it lives: what the hot path encodes
/// without copying it into a [`StoredMessage`] first.
#[derive(Debug, Clone, Copy)]
pub struct MessageView<'a> {
    pub topic: &'a str,
    pub payload: &'a [u8],
    pub qos: QoS,
    pub retain: bool,
    pub properties: &'a Properties,
}

impl StoredMessage {
    pub fn view(&self) -> MessageView<'_> {
        MessageView {
            topic: &self.topic,
            payload: &self.payload,
            qos: self.qos,
            retain: self.retain,
            properties: &self.properties,
        }
    }
}

impl MessageView<'_> {
    fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        write_string(out, self.topic, "topic")?;
        write_binary(out, self.payload, "payload")?;
        out.put_u8(self.qos as u8 | u8::from(self.retain) << 2);
        self.properties.write(out)
    }
}

// The records made for every durable delivery, encoded from borrowed parts (see
// `broker::deliveries`); `Record::encode` goes through the same functions.

/// [`Record::Message`].
pub fn encode_message_record(
    out: &mut BytesMut,
    id: u64,
    message: MessageView<'_>,
) -> Result<(), EncodeError> {
    out.put_u8(kind::MESSAGE);
    out.put_u64(id);
    message.encode(out)
}

/// [`Record::Owed`].
pub fn encode_owed(out: &mut BytesMut, client_id: &str, owing: &Owing) -> Result<(), EncodeError> {
    out.put_u8(kind::OWED);
    write_string(out, client_id, "client id")?;
    out.put_u64(owing.id);
    out.put_u64(owing.receipt);
    out.put_u8(owing.qos as u8 | u8::from(owing.retain) << 2);
    out.put_u16(owing.pkid);
    let count = u16::try_from(owing.subscription_ids.len())
        .map_err(|_| EncodeError::FieldTooLong("subscription identifiers"))?;
    out.put_u16(count);
    for sid in &owing.subscription_ids {
        out.put_u32(*sid);
    }
    Ok(())
}

/// [`Record::Sent`].
pub fn encode_sent(
    out: &mut BytesMut,
    client_id: &str,
    id: u64,
    pkid: u16,
) -> Result<(), EncodeError> {
    out.put_u8(kind::SENT);
    write_string(out, client_id, "client id")?;
    out.put_u64(id);
    out.put_u16(pkid);
    Ok(())
}

/// [`Record::Released`].
pub fn encode_released(out: &mut BytesMut, client_id: &str, id: u64) -> Result<(), EncodeError> {
    encode_step(out, kind::RELEASED, client_id, id)
}

/// [`Record::Delivered`].
pub fn encode_delivered(out: &mut BytesMut, client_id: &str, id: u64) -> Result<(), EncodeError> {
    encode_step(out, kind::DELIVERED, client_id, id)
}

fn encode_step(out: &mut BytesMut, kind: u8, client_id: &str, id: u64) -> Result<(), EncodeError> {
    out.put_u8(kind);
    write_string(out, client_id, "client id")?;
    out.put_u64(id);
    Ok(())
}

fn decode_message(buf: &mut Bytes, context: PropertyContext) -> Result<StoredMessage, DecodeError> {
    let topic = read_string(buf)?;
    let payload = read_binary(buf)?;
    let flags = read_u8(buf)?;
    if flags & !0b111 != 0 {
        return Err(DecodeError::Malformed("message flags"));
    }
    Ok(StoredMessage {
        topic,
        payload,
        qos: qos_from(flags & 0b11)?,
        retain: flags & 0b100 != 0,
        properties: Properties::read(buf, context)?,
    })
}

fn read_u64(buf: &mut Bytes) -> Result<u64, DecodeError> {
    if buf.remaining() < 8 {
        return Err(DecodeError::Malformed("record ends inside a number"));
    }
    Ok(buf.get_u64())
}

fn qos_from(n: u8) -> Result<QoS, DecodeError> {
    QoS::from_u8(n)
}

fn options_byte(o: &SubscriptionOptions) -> u8 {
    let rh = match o.retain_handling {
        RetainHandling::OnSubscribe => 0,
        RetainHandling::OnNewSubscribe => 1,
        RetainHandling::Never => 2,
    };
    o.qos as u8 | u8::from(o.no_local) << 2 | u8::from(o.retain_as_published) << 3 | rh << 4
}

fn options_from(byte: u8) -> Result<SubscriptionOptions, DecodeError> {
    let retain_handling = match byte >> 4 & 0b11 {
        0 => RetainHandling::OnSubscribe,
        1 => RetainHandling::OnNewSubscribe,
        2 => RetainHandling::Never,
        _ => return Err(DecodeError::Malformed("retain handling")),
    };
    if byte & 0xC0 != 0 {
        return Err(DecodeError::Malformed("subscription options"));
    }
    Ok(SubscriptionOptions {
        qos: qos_from(byte & 0b11)?,
        no_local: byte & 0b100 != 0,
        retain_as_published: byte & 0b1000 != 0,
        retain_handling,
    })
}
