//! The durable store's sans-IO half: the records of the per-shard append-only log, their
//! framing with checksums, reading a segment back up to its first damage, and the state a
//! sequence of records recovers. Nothing here touches a file: `server::store` writes and reads
//! the logs, `broker::journal` makes the records and restores what they recover.

pub mod frame;
pub mod record;
pub mod recovery;
pub mod space;

pub use frame::{scan, write_frame, write_frame_with, Damage, Scan};
pub use record::{MessageView, Owing, Record, RecordError, StoredMessage};
pub use recovery::{OwedMessage, Recovered, RecoveredSession};
pub use space::StoreSpace;
