//! The durable store's sans-IO half (issue 12, in progress): the records of the per-shard
//! append-only log, their framing with checksums, reading a segment back up to its first
//! damage, and the state a sequence of records recovers. Writing segments (glommio DMA files,
//! group commit) and feeding the recovered state to the broker are the shell's and the next
//! steps; nothing here touches a file.

pub mod frame;
pub mod record;
pub mod recovery;

pub use frame::{scan, write_frame, Damage, Scan};
pub use record::{DeliveryState, Record, RecordError, StoredMessage};
pub use recovery::{Pending, Recovered, RecoveredSession};
