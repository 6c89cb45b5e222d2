//! A subscription filter as the router keys it, parsed once: plain (`a/+/c`), or a shared
//! group's (`$share/{group}/{filter}`, MQTT 5.0 4.8.2), whose topic filter is a part of it.

use bytestring::ByteString;

use crate::protocol::topic::parse_shared;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Filter {
    /// The filter as subscribed, `$share/...` prefix included: what names a shared group.
    text: ByteString,
    /// Where the topic filter starts in `text` (0 for a plain filter).
    topic_at: usize,
}

impl Filter {
    /// Takes a filter the decoder accepted (it refuses malformed `$share/` filters, so one
    /// reaching here is a plain filter, matched by no topic a client may publish to).
    pub fn new(text: &str) -> Filter {
        Filter::from(ByteString::from(text))
    }

    /// The whole filter, as the client wrote it.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The whole filter as a shared string (a cheap clone).
    pub fn text(&self) -> ByteString {
        self.text.clone()
    }

    /// What topics are matched against.
    pub fn topic_filter(&self) -> &str {
        &self.text[self.topic_at..]
    }

    pub fn is_shared(&self) -> bool {
        self.topic_at > 0
    }
}

impl From<ByteString> for Filter {
    fn from(text: ByteString) -> Filter {
        let topic_at = match parse_shared(&text) {
            Some(Ok(shared)) => text.len() - shared.filter.len(),
            _ => 0,
        };
        Filter { text, topic_at }
    }
}

impl std::fmt::Display for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_filters_name_their_group_and_match_their_topic_filter() {
        let shared = Filter::new("$share/g/a/+");
        assert!(shared.is_shared());
        assert_eq!(shared.as_str(), "$share/g/a/+");
        assert_eq!(shared.topic_filter(), "a/+");
        let plain = Filter::new("a/+");
        assert!(!plain.is_shared());
        assert_eq!(plain.topic_filter(), "a/+");
        assert_ne!(shared, plain);
        // Not a valid shared subscription: plain text (the decoder refuses it before).
        assert!(!Filter::new("$share/g").is_shared());
        assert!(!Filter::new("$share//t").is_shared());
    }
}
