//! The application message of a PUBLISH, its topic name and payload, held in one buffer: one
//! reference count per message rather than one per field.

use bytes::{BufMut, Bytes, BytesMut};

/// A topic name and a payload in one `Bytes`: either a slice of a decoded PUBLISH body (the
/// topic, then packet id and properties, then the payload) or a compact buffer holding just the
/// two, one after the other.
#[derive(Clone, Default)]
pub struct TopicPayload {
    data: Bytes,
    /// `data[topic_start..topic_end]` is the topic name: valid UTF-8, checked on the way in.
    topic_start: u32,
    topic_end: u32,
    /// `data[payload_start..]` is the payload.
    payload_start: u32,
}

impl TopicPayload {
    /// Copies `topic` and `payload` into one buffer of exactly their size.
    pub fn new(topic: &str, payload: &[u8]) -> TopicPayload {
        let mut data = BytesMut::with_capacity(topic.len() + payload.len());
        data.put_slice(topic.as_bytes());
        data.put_slice(payload);
        let topic_end = offset(topic.len());
        TopicPayload {
            data: data.freeze(),
            topic_start: 0,
            topic_end,
            payload_start: topic_end,
        }
    }

    /// The parts of a PUBLISH body, at the given offsets.
    ///
    /// # Safety
    /// `body[topic_start..topic_end]` must be valid UTF-8, and the offsets in order and in
    /// bounds.
    #[inline(always)]
    pub(crate) unsafe fn in_body(
        body: Bytes,
        topic_start: usize,
        topic_end: usize,
        payload_start: usize,
    ) -> TopicPayload {
        debug_assert!(topic_start <= topic_end && topic_end <= payload_start);
        debug_assert!(payload_start <= body.len());
        debug_assert!(std::str::from_utf8(&body[topic_start..topic_end]).is_ok());
        // A decoded packet is at most 268,435,460 bytes: the offsets fit.
        debug_assert!(body.len() <= crate::protocol::MAX_PACKET_SIZE as usize);
        TopicPayload {
            data: body,
            topic_start: topic_start as u32,
            topic_end: topic_end as u32,
            payload_start: payload_start as u32,
        }
    }

    #[inline]
    pub fn topic(&self) -> &str {
        let bytes = &self.data[self.topic_start as usize..self.topic_end as usize];
        // SAFETY: checked by the decoder (see `in_body`) or taken from a `&str` by `new`.
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }

    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.data[self.payload_start as usize..]
    }

    /// The payload as a slice of this buffer (no copy).
    pub fn payload_bytes(&self) -> Bytes {
        self.data.slice(self.payload_start as usize..)
    }

    /// Topic and payload bytes, the measure of a message for queue limits.
    pub fn len(&self) -> usize {
        (self.topic_end - self.topic_start) as usize + self.payload().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when the buffer holds nothing else. A slice of a read buffer keeps all of that
    /// buffer alive, so anything kept for long must be compact.
    pub fn is_compact(&self) -> bool {
        self.topic_start == 0 && self.topic_end == self.payload_start
    }

    /// This, or a compact copy of it.
    pub fn compacted(&self) -> TopicPayload {
        if self.is_compact() {
            self.clone()
        } else {
            TopicPayload::new(self.topic(), self.payload())
        }
    }
}

/// Buffer offsets are `u32`: a packet is at most 268,435,460 bytes.
fn offset(at: usize) -> u32 {
    u32::try_from(at).expect("a PUBLISH is smaller than 4 GiB")
}

/// Equal when topic and payload are, wherever in their buffers they sit.
impl PartialEq for TopicPayload {
    fn eq(&self, other: &TopicPayload) -> bool {
        self.topic() == other.topic() && self.payload() == other.payload()
    }
}

impl Eq for TopicPayload {}

impl std::fmt::Debug for TopicPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicPayload")
            .field("topic", &self.topic())
            .field("payload", &Bytes::copy_from_slice(self.payload()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_slice_is_not_compact_and_compacts_to_an_equal_copy() {
        // Topic "t" at 2..3, a packet id, then the payload.
        let body = Bytes::from_static(b"\x00\x01t\x00\x07hello");
        // SAFETY: "t" is UTF-8 and the offsets are in order.
        let sliced = unsafe { TopicPayload::in_body(body.clone(), 2, 3, 5) };
        assert!(!sliced.is_compact());
        assert_eq!((sliced.topic(), sliced.payload()), ("t", &b"hello"[..]));
        assert_eq!(sliced.len(), 6);
        let compact = sliced.compacted();
        assert!(compact.is_compact());
        assert_eq!(compact, sliced);
        let range = body.as_ptr_range();
        assert!(!range.contains(&compact.payload().as_ptr()));
    }

    #[test]
    fn a_new_one_is_compact_and_compacting_it_shares_the_buffer() {
        let p = TopicPayload::new("a/b", b"xy");
        assert!(p.is_compact());
        assert_eq!(p.compacted().payload().as_ptr(), p.payload().as_ptr());
        assert_ne!(p, TopicPayload::new("a/b", b"xz"));
        assert_ne!(p, TopicPayload::new("a/c", b"xy"));
    }
}
