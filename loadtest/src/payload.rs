//! The load payload: publisher id, sequence and send time, padded; and per-publisher tracking.

use bytes::BufMut;

pub const HEADER_LEN: usize = 4 + 8 + 8;

/// Appends one payload of `len` (>= [`HEADER_LEN`]) bytes.
pub fn write(dst: &mut impl BufMut, publisher: u32, seq: u64, sent_ns: u64, len: usize) {
    dst.put_u32(publisher);
    dst.put_u64(seq);
    dst.put_u64(sent_ns);
    dst.put_bytes(0xA5, len - HEADER_LEN);
}

/// `(publisher, seq, sent_ns)`, or `None` if the payload is too short to be ours.
pub fn read(payload: &[u8]) -> Option<(u32, u64, u64)> {
    if payload.len() < HEADER_LEN {
        return None;
    }
    let publisher = u32::from_be_bytes(payload[0..4].try_into().ok()?);
    let seq = u64::from_be_bytes(payload[4..12].try_into().ok()?);
    let sent = u64::from_be_bytes(payload[12..20].try_into().ok()?);
    Some((publisher, seq, sent))
}

/// Which sequence numbers of one publisher arrived: a bitset, so duplicates and late (out of
/// order) arrivals are told apart exactly.
#[derive(Debug, Default)]
pub struct SeqTracker {
    seen: Vec<u64>,
    /// One past the highest sequence seen.
    pub next: u64,
    pub received: u64,
    pub distinct: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
}

impl SeqTracker {
    pub fn record(&mut self, seq: u64) {
        self.received += 1;
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if word >= self.seen.len() {
            self.seen.resize((word + 1).next_power_of_two(), 0);
        }
        if self.seen[word] & bit != 0 {
            self.duplicates += 1;
            return;
        }
        self.seen[word] |= bit;
        self.distinct += 1;
        if seq < self.next {
            self.out_of_order += 1;
        } else {
            self.next = seq + 1;
        }
    }

    /// Folds in what another subscriber of the same group saw of the same publisher: a
    /// sequence both saw is a duplicate delivery to the group.
    pub fn merge(&mut self, other: &SeqTracker) {
        if other.seen.len() > self.seen.len() {
            self.seen.resize(other.seen.len(), 0);
        }
        let mut both = 0u64;
        for (mine, theirs) in self.seen.iter_mut().zip(&other.seen) {
            both += u64::from((*mine & theirs).count_ones());
            *mine |= theirs;
        }
        self.received += other.received;
        self.distinct += other.distinct - both;
        self.duplicates += other.duplicates + both;
        self.out_of_order += other.out_of_order;
        self.next = self.next.max(other.next);
    }

    /// Sequence numbers below the highest one seen that never arrived (loss when the sender's
    /// count is unknown).
    pub fn gaps(&self) -> u64 {
        self.next - self.distinct
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        write(&mut buf, 7, 42, 1234, 64);
        assert_eq!(buf.len(), 64);
        assert_eq!(read(&buf), Some((7, 42, 1234)));
        assert_eq!(read(&buf[..10]), None);
    }

    #[test]
    fn tracker_counts() {
        let mut t = SeqTracker::default();
        for seq in [0, 1, 3, 2, 2, 5, 200] {
            t.record(seq);
        }
        assert_eq!(t.received, 7);
        assert_eq!(t.distinct, 6);
        assert_eq!(t.duplicates, 1);
        assert_eq!(t.out_of_order, 1);
        assert_eq!(t.next, 201);
        assert_eq!(t.gaps(), 195);
    }

    #[test]
    fn merge_counts_cross_member_duplicates() {
        let (mut a, mut b) = (SeqTracker::default(), SeqTracker::default());
        for seq in [0, 2, 4] {
            a.record(seq);
        }
        for seq in [1, 2, 3, 100] {
            b.record(seq);
        }
        a.merge(&b);
        assert_eq!((a.received, a.distinct, a.duplicates), (7, 6, 1));
        assert_eq!(a.next, 101);
    }
}
