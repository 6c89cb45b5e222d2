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

/// Aliases we assign towards the client, least recently used replaced first.
#[derive(Debug, Default)]
pub struct OutboundAliases {
    by_topic: SmallMap<ByteString, (u16, u64)>,
    clock: u64,
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
    /// The alias for `topic` within the client's `maximum` (None when it takes none).
    pub fn assign(&mut self, topic: &str, maximum: u16) -> Option<OutboundAlias> {
        if maximum == 0 {
            return None;
        }
        self.clock += 1;
        if let Some(entry) = self.by_topic.get_mut(topic) {
            entry.1 = self.clock;
            return Some(OutboundAlias::Use(entry.0));
        }
        let alias = if self.by_topic.len() < usize::from(maximum) {
            self.by_topic.len() as u16 + 1
        } else {
            let (victim, &(alias, _)) = self.by_topic.iter().min_by_key(|(_, (_, used))| *used)?;
            let victim = victim.clone();
            self.by_topic.remove(&victim);
            alias
        };
        // An owned copy: a slice would pin the message's buffer for as long as the alias lives.
        self.by_topic
            .insert(ByteString::from(topic), (alias, self.clock));
        Some(OutboundAlias::Set(alias))
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
        assert_eq!(a.assign("a", 0), None);
        assert_eq!(a.assign("a", 2), Some(OutboundAlias::Set(1)));
        assert_eq!(a.assign("b", 2), Some(OutboundAlias::Set(2)));
        assert_eq!(a.assign("a", 2), Some(OutboundAlias::Use(1)));
        // "b" is the least recently used: "c" takes its alias.
        assert_eq!(a.assign("c", 2), Some(OutboundAlias::Set(2)));
        assert_eq!(a.assign("a", 2), Some(OutboundAlias::Use(1)));
        assert_eq!(a.assign("b", 2), Some(OutboundAlias::Set(2)));
    }
}
