//! MQTT topics and filters as NATS subjects, for the route plane between nodes (issue 17).
//!
//! Levels become tokens (`/` -> `.`), `+` becomes `*` and `#` becomes `>`. NATS tokens may not
//! be empty and may not hold `.`, `*`, `>` or whitespace, so each level is escaped: every byte
//! outside `[A-Za-z0-9_-]` (the escape character `~` among them) becomes `~` and two hex
//! digits, and an empty level is the token `~` alone, which no escaped level can be. The
//! mapping is reversible ([`topic_of`]), and a plain ASCII topic maps to itself with dots.
//!
//! A filter maps to the subjects whose union matches at least what it matches in MQTT:
//! `a/#` matches `a` itself as well, so it needs `a.>` and `a`. Routing on the receiving node
//! applies MQTT's own rules (`$` topics and `#`), so a superset is enough.

use std::fmt::Write as _;

const ESCAPE: u8 = b'~';
const EMPTY_LEVEL: &str = "~";

fn plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

fn push_level(out: &mut String, level: &str) {
    if level.is_empty() {
        out.push_str(EMPTY_LEVEL);
        return;
    }
    for &b in level.as_bytes() {
        if plain(b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "~{b:02X}");
        }
    }
}

/// The subject a message published to `topic` goes to.
pub fn subject_of(topic: &str) -> String {
    let mut out = String::with_capacity(topic.len() + 8);
    for (i, level) in topic.split('/').enumerate() {
        if i > 0 {
            out.push('.');
        }
        push_level(&mut out, level);
    }
    out
}

/// The subjects a node subscribes to for the topic filter `filter` (a valid one, without
/// `$share/`): together they match at least every subject of a topic the filter matches.
pub fn subjects_of(filter: &str) -> Vec<String> {
    let mut out = String::with_capacity(filter.len() + 8);
    let mut levels = filter.split('/').peekable();
    let mut first = true;
    while let Some(level) = levels.next() {
        let last = levels.peek().is_none();
        if level == "#" && last {
            // `#` matches the parent level too (MQTT-4.7.1-2).
            return match first {
                true => vec![">".to_string()],
                false => vec![format!("{out}.>"), out],
            };
        }
        if !first {
            out.push('.');
        }
        first = false;
        match level {
            "+" => out.push('*'),
            level => push_level(&mut out, level),
        }
    }
    vec![out]
}

/// The topic a subject made by [`subject_of`] came from; `None` for one it cannot have made.
pub fn topic_of(subject: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(subject.len());
    for (i, token) in subject.split('.').enumerate() {
        if i > 0 {
            bytes.push(b'/');
        }
        if token == EMPTY_LEVEL {
            continue;
        }
        let raw = token.as_bytes();
        let mut at = 0;
        while at < raw.len() {
            match raw[at] {
                ESCAPE => {
                    let hex = std::str::from_utf8(raw.get(at + 1..at + 3)?).ok()?;
                    let b = u8::from_str_radix(hex, 16).ok()?;
                    if plain(b)
                        || !hex
                            .bytes()
                            .all(|h| h.is_ascii_digit() || h.is_ascii_uppercase())
                    {
                        return None; // not how subject_of writes it
                    }
                    bytes.push(b);
                    at += 3;
                }
                b if plain(b) => {
                    bytes.push(b);
                    at += 1;
                }
                _ => return None,
            }
        }
        if raw.is_empty() {
            return None;
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_topics_read_as_they_are() {
        assert_eq!(subject_of("sensors/room-1/temp_c"), "sensors.room-1.temp_c");
        assert_eq!(
            topic_of("sensors.room-1.temp_c").unwrap(),
            "sensors/room-1/temp_c"
        );
    }

    #[test]
    fn what_nats_does_not_allow_is_escaped_and_comes_back() {
        for (topic, subject) in [
            ("a.b/c", "a~2Eb.c"),
            ("a/*/>", "a.~2A.~3E"),
            ("with space", "with~20space"),
            ("/lead", "~.lead"),
            ("a//b/", "a.~.b.~"),
            ("~", "~7E"),
            ("$SYS/x", "~24SYS.x"),
            ("é", "~C3~A9"),
        ] {
            assert_eq!(subject_of(topic), subject, "{topic}");
            assert_eq!(topic_of(subject).as_deref(), Some(topic), "{subject}");
        }
    }

    #[test]
    fn filters_map_to_wildcard_subjects() {
        assert_eq!(subjects_of("a/+/c"), ["a.*.c"]);
        assert_eq!(subjects_of("a/b/#"), ["a.b.>", "a.b"]);
        assert_eq!(subjects_of("#"), [">"]);
        assert_eq!(subjects_of("+"), ["*"]);
        assert_eq!(subjects_of("+/#"), ["*.>", "*"]);
        assert_eq!(subjects_of("a//+"), ["a.~.*"]);
    }

    #[test]
    fn subjects_it_cannot_have_made_are_refused() {
        for subject in ["a..b", "a.b*", "a.~2e", "a.~41", "a.~4", "a b", ""] {
            assert_eq!(topic_of(subject), None, "{subject:?}");
        }
    }

    /// Whether NATS subject `subject` is matched by subscription `pattern`.
    fn nats_matches(pattern: &str, subject: &str) -> bool {
        let (p, s): (Vec<&str>, Vec<&str>) =
            (pattern.split('.').collect(), subject.split('.').collect());
        for (i, token) in p.iter().enumerate() {
            match *token {
                ">" => return s.len() > i,
                "*" if i < s.len() => {}
                t if s.get(i) == Some(&t) => {}
                _ => return false,
            }
        }
        p.len() == s.len()
    }

    fn level() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            "[a-z]{1,3}",
            "[ -~]{1,4}".prop_filter("no MQTT separators or wildcards", |l| !l
                .contains(['/', '+', '#'])),
            "\\PC{1,2}".prop_filter("no MQTT separators or wildcards", |l| !l
                .contains(['/', '+', '#'])),
        ]
    }

    proptest! {
        #[test]
        fn every_topic_comes_back(levels in proptest::collection::vec(level(), 1..5)) {
            let topic = levels.join("/");
            let subject = subject_of(&topic);
            prop_assert!(subject.split('.').all(|t| !t.is_empty()
                && !t.contains(['*', '>', ' ', '\t', '\r', '\n'])));
            prop_assert_eq!(topic_of(&subject), Some(topic));
        }

        #[test]
        fn a_filters_subjects_match_every_topic_it_matches(
            levels in proptest::collection::vec(level(), 1..4),
            wild in proptest::collection::vec(0u8..4, 1..4),
        ) {
            let topic = levels.join("/");
            // A filter made from the topic: some levels `+`, maybe cut short with `#`.
            let mut filter: Vec<String> = Vec::new();
            for (i, level) in levels.iter().enumerate() {
                match wild.get(i).copied().unwrap_or(0) {
                    1 => filter.push("+".into()),
                    2 => { filter.push("#".into()); break; }
                    _ => filter.push(level.clone()),
                }
            }
            let filter = filter.join("/");
            prop_assume!(crate::protocol::topic::matches(&filter, &topic));
            let subject = subject_of(&topic);
            prop_assert!(subjects_of(&filter).iter().any(|p| nats_matches(p, &subject)),
                "{filter} -> {:?} does not match {subject}", subjects_of(&filter));
        }
    }
}
