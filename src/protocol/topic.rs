//! Topic names and filters (MQTT 4.7): validation, matching and shared subscriptions.

/// A topic name a PUBLISH may carry: non-empty, no wildcards, at most 65,535 bytes.
pub fn valid_topic_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 65_535 && !name.bytes().any(|b| b == b'+' || b == b'#')
}

/// Levels of a topic name or filter: one more than its `/` separators.
pub fn topic_levels(topic: &str) -> usize {
    topic.bytes().filter(|&b| b == b'/').count() + 1
}

/// A topic filter: `+` fills a whole level, `#` is a whole level and the last one.
pub fn valid_topic_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.len() > 65_535 {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let has_plus = level.contains('+');
        let has_hash = level.contains('#');
        if (has_plus || has_hash) && level.len() != 1 {
            return false;
        }
        if has_hash && levels.peek().is_some() {
            return false;
        }
    }
    true
}

/// A shared subscription, `$share/{group}/{filter}` (MQTT 5.0, 4.8.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedFilter<'a> {
    pub group: &'a str,
    pub filter: &'a str,
}

/// Splits `$share/{group}/{filter}`; `None` for a filter that is not shared.
/// `Some(Err(()))` when it starts with `$share/` but is not a valid shared subscription.
pub fn parse_shared(filter: &str) -> Option<Result<SharedFilter<'_>, ()>> {
    let rest = filter.strip_prefix("$share/")?;
    let Some((group, inner)) = rest.split_once('/') else {
        return Some(Err(()));
    };
    if group.is_empty() || group.contains(['+', '#']) || !valid_topic_filter(inner) {
        return Some(Err(()));
    }
    Some(Ok(SharedFilter {
        group,
        filter: inner,
    }))
}

/// Whether `filter` matches topic `name`. Names starting with `$` are not matched by a filter
/// whose first level is a wildcard (MQTT-4.7.2-1).
pub fn matches(filter: &str, name: &str) -> bool {
    if name.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut name_levels = name.split('/');
    for level in filter.split('/') {
        match level {
            "#" => return true,
            "+" => {
                if name_levels.next().is_none() {
                    return false;
                }
            }
            exact => {
                if name_levels.next() != Some(exact) {
                    return false;
                }
            }
        }
    }
    name_levels.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_counted_by_separators() {
        assert_eq!(topic_levels("a"), 1);
        assert_eq!(topic_levels("/"), 2);
        assert_eq!(topic_levels("a/b/#"), 3);
        assert_eq!(topic_levels(&"/".repeat(65_000)), 65_001);
    }

    #[test]
    fn names() {
        assert!(valid_topic_name("a/b"));
        assert!(valid_topic_name("/"));
        assert!(!valid_topic_name(""));
        assert!(!valid_topic_name("a/+"));
        assert!(!valid_topic_name("a/#"));
    }

    #[test]
    fn filters_follow_the_spec_examples() {
        for ok in [
            "#",
            "+",
            "sport/#",
            "sport/tennis/#",
            "+/tennis/#",
            "sport/+/player1",
            "/+",
            "+/+",
            "a//b",
        ] {
            assert!(valid_topic_filter(ok), "{ok}");
        }
        for bad in [
            "",
            "sport/tennis#",
            "sport/tennis/#/ranking",
            "sport+",
            "a/#/b",
            "##",
        ] {
            assert!(!valid_topic_filter(bad), "{bad}");
        }
    }

    #[test]
    fn matching_follows_the_spec_examples() {
        // 4.7.1.2: "sport/tennis/player1/#" matches these.
        for name in [
            "sport/tennis/player1",
            "sport/tennis/player1/ranking",
            "sport/tennis/player1/score/wimbledon",
        ] {
            assert!(matches("sport/tennis/player1/#", name));
        }
        assert!(matches("sport/#", "sport"));
        // 4.7.1.3
        assert!(matches("sport/tennis/+", "sport/tennis/player1"));
        assert!(!matches("sport/tennis/+", "sport/tennis/player1/ranking"));
        assert!(!matches("sport/+", "sport"));
        assert!(matches("sport/+", "sport/"));
        assert!(matches("+/+", "/finance"));
        assert!(matches("/+", "/finance"));
        assert!(!matches("+", "/finance"));
        // 4.7.2: $ topics.
        assert!(!matches("#", "$SYS/broker"));
        assert!(!matches("+/monitor/Clients", "$SYS/monitor/Clients"));
        assert!(matches("$SYS/#", "$SYS/monitor/Clients"));
        assert!(matches("$SYS/monitor/+", "$SYS/monitor/Clients"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(!matches("a/b/c", "a/b"));
    }

    #[test]
    fn shared_subscriptions() {
        assert_eq!(
            parse_shared("$share/g1/a/+"),
            Some(Ok(SharedFilter {
                group: "g1",
                filter: "a/+"
            }))
        );
        assert_eq!(parse_shared("a/b"), None);
        assert_eq!(parse_shared("$share/g1"), Some(Err(())));
        assert_eq!(parse_shared("$share//a"), Some(Err(())));
        assert_eq!(parse_shared("$share/g+/a"), Some(Err(())));
        assert_eq!(parse_shared("$share/g/a/#/b"), Some(Err(())));
    }
}
