//! The sans-IO MQTT codec: bytes in, packets out, and back. It knows nothing of sockets or
//! sessions; every rule a receiver must check is checked here and reported as a typed error.

mod codec;
mod content;
pub mod error;
pub mod packet;
pub mod primitives;
pub mod properties;
pub mod reason;
pub mod topic;

pub use codec::{encode, read_frame, Decoder, Frame, MAX_PACKET_SIZE};
pub use content::TopicPayload;
pub use error::{DecodeError, EncodeError};
pub use packet::*;
pub use properties::{Properties, PropertyContext, PropertyValues};
pub use reason::{ReasonCode, ReasonContext};

#[cfg(test)]
mod spec_vectors;
