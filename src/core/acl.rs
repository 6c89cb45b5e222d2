//! What each client may publish and subscribe to: a Mosquitto ACL file (`acl_file`). With one,
//! everything not granted is denied, and `deny` wins over any grant.
//!
//! ```text
//! # before any `user` line: rules for clients without a user name
//! topic read $SYS/#
//! user sensor-1
//! topic write telemetry/sensor-1/#
//! # for every client; %c is its client id, %u its user name
//! pattern readwrite devices/%c/#
//! ```

use std::sync::Arc;

use ahash::AHashMap;

use crate::protocol::topic::matches;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
    ReadWrite,
    Deny,
}

impl Access {
    fn reads(self) -> bool {
        matches!(self, Access::Read | Access::ReadWrite)
    }

    fn writes(self) -> bool {
        matches!(self, Access::Write | Access::ReadWrite)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    access: Access,
    filter: String,
}

/// Why a line of an ACL file cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclProblem {
    #[error("no topic")]
    NoTopic,
    #[error("expected `user`, `topic` or `pattern`")]
    UnknownKeyword,
}

/// An ACL file that cannot be read, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct AclError {
    pub line: usize,
    pub problem: AclProblem,
}

/// A parsed ACL file.
#[derive(Debug, Clone, Default)]
pub struct AclFile {
    anonymous: Vec<Rule>,
    users: AHashMap<String, Vec<Rule>>,
    /// `pattern` rules, for every client, with `%c` and `%u` still in them.
    patterns: Vec<Rule>,
}

impl AclFile {
    pub fn parse(text: &str) -> Result<AclFile, AclError> {
        let mut acl = AclFile::default();
        let mut user: Option<String> = None;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fail = |problem| AclError {
                line: n + 1,
                problem,
            };
            let (keyword, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let rest = rest.trim();
            match keyword {
                "user" if !rest.is_empty() => user = Some(rest.to_string()),
                "topic" | "pattern" => {
                    let rule = parse_rule(rest).map_err(fail)?;
                    if keyword == "pattern" {
                        acl.patterns.push(rule);
                    } else if let Some(user) = &user {
                        acl.users.entry(user.clone()).or_default().push(rule);
                    } else {
                        acl.anonymous.push(rule);
                    }
                }
                _ => return Err(fail(AclProblem::UnknownKeyword)),
            }
        }
        Ok(acl)
    }

    /// The rules of one client: its user's (or the anonymous ones) and the patterns, with
    /// `%c` and `%u` filled in. A pattern naming `%u` does not apply to a client without one,
    /// and one naming a value that holds `+`, `#` or `/` applies to no one: filled in, it
    /// would grant a wildcard or another client's levels (Mosquitto's CVE-2017-7650).
    pub fn for_client(&self, username: Option<&str>, client_id: &str) -> Arc<ClientAcl> {
        let own = match username {
            Some(user) => self.users.get(user).map_or(&[][..], Vec::as_slice),
            None => &self.anonymous,
        };
        let unsafe_value = |v: &str| v.contains(['+', '#', '/']);
        let patterns = self.patterns.iter().filter_map(|rule| {
            let uses_user = rule.filter.contains("%u");
            let uses_client = rule.filter.contains("%c");
            if uses_user && username.is_none_or(unsafe_value) {
                return None;
            }
            if uses_client && unsafe_value(client_id) {
                return None;
            }
            let filter = rule
                .filter
                .replace("%c", client_id)
                .replace("%u", username.unwrap_or_default());
            Some(Rule {
                access: rule.access,
                filter,
            })
        });
        let rules = own.iter().cloned().chain(patterns).collect();
        Arc::new(ClientAcl { rules })
    }
}

fn parse_rule(text: &str) -> Result<Rule, AclProblem> {
    let (access, filter) = match text.split_once(char::is_whitespace) {
        Some((word, filter)) => match word {
            "read" => (Access::Read, filter.trim()),
            "write" => (Access::Write, filter.trim()),
            "readwrite" => (Access::ReadWrite, filter.trim()),
            "deny" => (Access::Deny, filter.trim()),
            // No access word: the whole rest is the topic, read and write (as Mosquitto).
            _ => (Access::ReadWrite, text),
        },
        None if matches!(text, "read" | "write" | "readwrite" | "deny") => {
            return Err(AclProblem::NoTopic)
        }
        None => (Access::ReadWrite, text),
    };
    if filter.is_empty() {
        return Err(AclProblem::NoTopic);
    }
    Ok(Rule {
        access,
        filter: filter.to_string(),
    })
}

/// One client's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAcl {
    rules: Vec<Rule>,
}

impl ClientAcl {
    pub fn may_publish(&self, topic: &str) -> bool {
        self.allows(topic, Access::writes)
    }

    /// Checked for every message delivered: a session resumed under other rules keeps its
    /// subscriptions, and a deny rule may cover part of what a subscription matches.
    pub fn may_receive(&self, topic: &str) -> bool {
        self.allows(topic, Access::reads)
    }

    fn allows(&self, topic: &str, grants: fn(Access) -> bool) -> bool {
        let hit = |r: &&Rule| matches(&r.filter, topic);
        !self
            .rules
            .iter()
            .filter(hit)
            .any(|r| r.access == Access::Deny)
            && self.rules.iter().filter(hit).any(|r| grants(r.access))
    }

    /// A subscription is allowed when a read grant covers every topic its filter can match and
    /// no deny rule covers it all; deny rules on part of it apply per message
    /// ([`ClientAcl::may_receive`]).
    pub fn may_subscribe(&self, filter: &str) -> bool {
        !self
            .rules
            .iter()
            .any(|r| r.access == Access::Deny && covers(&r.filter, filter))
            && self
                .rules
                .iter()
                .any(|r| r.access.reads() && covers(&r.filter, filter))
    }
}

/// Whether every topic name `inner` matches is matched by `outer` (both topic filters).
fn covers(outer: &str, inner: &str) -> bool {
    // A filter starting with a wildcard does not match `$` topics (MQTT-4.7.2-1).
    if inner.starts_with('$') && outer.starts_with(['+', '#']) {
        return false;
    }
    let mut outer_levels = outer.split('/');
    let mut inner_levels = inner.split('/');
    loop {
        match (outer_levels.next(), inner_levels.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(level)) if level != "#" => {}
            (Some(o), Some(i)) if o == i && o != "+" => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# anonymous clients
topic read public/#

user sensor-1
topic write telemetry/sensor-1/#
topic read commands/sensor-1
user ops
topic readwrite #
topic deny secrets/#

pattern readwrite devices/%c/#
pattern read users/%u/inbox
";

    #[test]
    fn grants_patterns_and_denials() {
        let acl = AclFile::parse(FILE).unwrap();
        let sensor = acl.for_client(Some("sensor-1"), "dev-9");
        assert!(sensor.may_publish("telemetry/sensor-1/temp"));
        assert!(!sensor.may_publish("telemetry/sensor-2/temp"));
        assert!(!sensor.may_publish("commands/sensor-1"), "read only");
        assert!(sensor.may_subscribe("commands/sensor-1"));
        assert!(!sensor.may_subscribe("commands/#"), "wider than the grant");
        assert!(sensor.may_publish("devices/dev-9/state"), "%c pattern");
        assert!(!sensor.may_publish("devices/dev-8/state"));
        assert!(sensor.may_subscribe("users/sensor-1/inbox"), "%u pattern");
        assert!(
            !sensor.may_subscribe("public/news"),
            "anonymous rules are not a user's"
        );

        let ops = acl.for_client(Some("ops"), "console");
        assert!(ops.may_publish("anything/at/all"));
        assert!(!ops.may_publish("secrets/key"), "deny wins");
        assert!(ops.may_subscribe("#"), "partly denied: checked per message");
        assert!(!ops.may_subscribe("secrets/#"));
        assert!(!ops.may_receive("secrets/key"));
        assert!(ops.may_receive("plant/line-1"));
        assert!(sensor.may_receive("commands/sensor-1"));
        assert!(!sensor.may_receive("telemetry/sensor-1/temp"), "write only");

        let anonymous = acl.for_client(None, "guest");
        assert!(anonymous.may_subscribe("public/#"));
        assert!(!anonymous.may_publish("public/news"));
        assert!(
            !anonymous.may_subscribe("users//inbox"),
            "no %u pattern without a user"
        );

        let stranger = acl.for_client(Some("nobody"), "x");
        assert!(!stranger.may_publish("telemetry/sensor-1/temp"));
        assert!(
            stranger.may_publish("devices/x/state"),
            "patterns apply to everyone"
        );
    }

    #[test]
    fn wildcards_or_separators_in_a_name_void_the_patterns_that_use_it() {
        let acl = AclFile::parse(FILE).unwrap();
        for id in ["+", "#", "a/b", "x/+", "dev+"] {
            let client = acl.for_client(Some("sensor-1"), id);
            assert!(
                !client.may_subscribe("devices/+/#") && !client.may_subscribe("devices/#"),
                "client id {id:?} widens devices/%c/#"
            );
            assert!(!client.may_publish("devices/a/b/state"), "client id {id:?}");
            assert!(!client.may_publish(&format!("devices/{id}/state")));
            // Its other rules still hold.
            assert!(client.may_publish("telemetry/sensor-1/temp"));
            assert!(client.may_subscribe("users/sensor-1/inbox"), "%u pattern");
        }
        for user in ["+", "#", "a/b"] {
            let client = acl.for_client(Some(user), "dev-1");
            assert!(!client.may_subscribe("users/+/inbox"), "user {user:?}");
            assert!(!client.may_receive("users/a/b/inbox"), "user {user:?}");
            assert!(
                client.may_publish("devices/dev-1/state"),
                "%c pattern still applies"
            );
        }
    }

    #[test]
    fn coverage_of_filters() {
        assert!(covers("#", "a/+/c"));
        assert!(covers("a/#", "a"), "a/# also matches the parent");
        assert!(covers("a/+", "a/b"));
        assert!(covers("a/+", "a/+"));
        assert!(!covers("a/+", "a/#"));
        assert!(!covers("a/b", "a/+"));
        assert!(!covers("+/b", "a/b/c"));
        assert!(!covers("#", "$SYS/x"));
        assert!(covers("$SYS/#", "$SYS/broker/uptime"));
    }

    #[test]
    fn bad_lines_are_reported() {
        assert_eq!(
            AclFile::parse("topic read\n").unwrap_err(),
            AclError {
                line: 1,
                problem: AclProblem::NoTopic
            }
        );
        let unknown = AclFile::parse("\nallow all\n").unwrap_err();
        assert_eq!(
            unknown,
            AclError {
                line: 2,
                problem: AclProblem::UnknownKeyword
            }
        );
        assert_eq!(
            unknown.to_string(),
            "line 2: expected `user`, `topic` or `pattern`"
        );
        let bare = AclFile::parse("topic a/b\n").unwrap().for_client(None, "c");
        assert!(bare.may_publish("a/b") && bare.may_subscribe("a/b"));
    }
}
