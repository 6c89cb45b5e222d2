//! MQTT 5.0 topic aliases (3.3.2.3.4), one map per direction per connection.

use crate::core::SmallMap;
use bytestring::ByteString;

/// Aliases the client set towards us: alias -> topic.
#[derive(Debug, Default)]
pub struct InboundAliases {
    topics: SmallMap<u16, ByteString>,
}

/// Why an inbound alias was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AliasError {
    /// 0 or above the maximum we advertised (0x94).
    OutOfRange,
    /// An empty topic with an alias never set (a protocol error).
    Unknown,
}

impl InboundAliases {
    /// The topic a PUBLISH stands for, recording `alias` when it carries a topic.
    pub fn resolve(
        &mut self,
        topic: &str,
        alias: u16,
        maximum: u16,
    ) -> Result<ByteString, AliasError> {
        if alias == 0 || alias > maximum {
            return Err(AliasError::OutOfRange);
        }
        if topic.is_empty() {
            return self.topics.get(&alias).cloned().ok_or(AliasError::Unknown);
        }
        let topic = ByteString::from(topic);
        self.topics.insert(alias, topic.clone());
        Ok(topic)
    }
}

/// Aliases we assign towards the client, least recently used replaced first, holding at most
/// a byte budget of topics. Allocated on first use: most clients never take aliases.
#[derive(Debug, Default)]
pub struct OutboundAliases(Option<Box<AliasCache>>);

#[derive(Debug)]
struct AliasCache {
    by_topic: lru::LruCache<ByteString, u16>,
    /// Bytes of the topics held.
    bytes: usize,
    /// Alias numbers given up by evicted topics, reused before new ones.
    free: Vec<u16>,
    /// The highest alias number handed out so far.
    highest: u16,
}

/// How to send a topic: in full with a new alias, or by an alias the client knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboundAlias {
    /// Send topic and alias: the client learns it.
    Set(u16),
    /// Send an empty topic and the alias.
    Use(u16),
}

impl OutboundAliases {
    /// The alias for `topic` within the client's `maximum` and `budget` bytes of topics (None
    /// when it takes none, or the topic alone exceeds the budget). Evicting is O(1).
    pub fn assign(&mut self, topic: &str, maximum: u16, budget: usize) -> Option<OutboundAlias> {
        if maximum == 0 || topic.len() > budget {
            return None;
        }
        let cache = self.0.get_or_insert_with(|| {
            Box::new(AliasCache {
                by_topic: lru::LruCache::unbounded(),
                bytes: 0,
                free: Vec::new(),
                highest: 0,
            })
        });
        if let Some(&alias) = cache.by_topic.get(topic) {
            return Some(OutboundAlias::Use(alias));
        }
        while cache.by_topic.len() >= usize::from(maximum) || cache.bytes + topic.len() > budget {
            let (evicted, alias) = cache.by_topic.pop_lru()?;
            cache.bytes -= evicted.len();
            cache.free.push(alias);
        }
        let alias = match cache.free.pop() {
            Some(alias) => alias,
            None => {
                cache.highest += 1;
                cache.highest
            }
        };
        // An owned copy: a slice would pin the message's buffer for as long as the alias lives.
        cache.by_topic.put(ByteString::from(topic), alias);
        cache.bytes += topic.len();
        Some(OutboundAlias::Set(alias))
    }

    /// Bytes of topics held, for tests and diagnostics.
    pub fn bytes(&self) -> usize {
        self.0.as_ref().map_or(0, |c| c.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbound_set_use_and_errors() {
        let mut a = InboundAliases::default();
        assert_eq!(a.resolve("t", 1, 5).unwrap(), "t");
        assert_eq!(a.resolve("", 1, 5).unwrap(), "t");
        assert_eq!(a.resolve("", 2, 5), Err(AliasError::Unknown));
        assert_eq!(a.resolve("x", 6, 5), Err(AliasError::OutOfRange));
        assert_eq!(a.resolve("x", 0, 5), Err(AliasError::OutOfRange));
    }

    #[test]
    fn outbound_reuses_and_evicts_least_recently_used() {
        let mut a = OutboundAliases::default();
        const ANY: usize = 1 << 20;
        assert_eq!(a.assign("a", 0, ANY), None);
        assert_eq!(a.assign("a", 2, ANY), Some(OutboundAlias::Set(1)));
        assert_eq!(a.assign("b", 2, ANY), Some(OutboundAlias::Set(2)));
        assert_eq!(a.assign("a", 2, ANY), Some(OutboundAlias::Use(1)));
        // "b" is the least recently used: "c" takes its alias.
        assert_eq!(a.assign("c", 2, ANY), Some(OutboundAlias::Set(2)));
        assert_eq!(a.assign("a", 2, ANY), Some(OutboundAlias::Use(1)));
        assert_eq!(a.assign("b", 2, ANY), Some(OutboundAlias::Set(2)));
    }

    #[test]
    fn outbound_topics_stay_within_the_byte_budget() {
        let mut a = OutboundAliases::default();
        let topic = |i: usize| format!("t/{i:04}"); // 6 bytes each
        for i in 0..1000 {
            assert!(a.assign(&topic(i), 1000, 60).is_some());
            assert!(a.bytes() <= 60, "{} bytes held", a.bytes());
        }
        // The ten most recent fit; older ones were evicted, their alias numbers reused.
        assert!(matches!(
            a.assign(&topic(999), 1000, 60),
            Some(OutboundAlias::Use(_))
        ));
        assert!(matches!(a.assign(&topic(0), 1000, 60), Some(OutboundAlias::Set(n)) if n <= 10));
        assert_eq!(
            a.assign(&"x".repeat(61), 1000, 60),
            None,
            "larger than the budget"
        );
    }
}
