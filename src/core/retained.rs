//! Retained messages: the last retained message of each topic, in a tree of topic levels.
//! Every shard keeps a full replica, so a new subscription is answered locally.
//!
//! Finding what a filter matches walks only the branches the filter can match, and a walk can
//! stop after a budget and resume after the last topic it reached (a cursor, not a snapshot):
//! a subscription to `#` over a million retained messages is served in steps, between which
//! the shard serves its other clients. Children are kept in order so that "after" is defined.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::message::{Message, SharedMessage};

#[derive(Debug, Default)]
struct Node {
    children: BTreeMap<Box<str>, Node>,
    message: Option<SharedMessage>,
}

/// How many retained messages, and how many bytes of them, a store may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetainedLimits {
    pub messages: usize,
    pub bytes: usize,
}

/// What [`RetainedStore::update`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetainOutcome {
    Stored,
    Deleted,
    /// An empty payload for a topic with nothing retained.
    NothingToDelete,
    /// Over the message or byte limit: not stored (the old message, if any, stays).
    Refused,
}

#[derive(Debug, Default)]
pub struct RetainedStore {
    root: Node,
    len: usize,
    bytes: usize,
}

impl RetainedStore {
    /// Stores, replaces, or (empty payload, MQTT-3.3.1-10) deletes the topic's retained
    /// message, within `limits` when given. The stored message owns all its bytes: a slice
    /// would keep the whole read buffer it came from alive for as long as it stays retained.
    pub fn update(
        &mut self,
        message: &SharedMessage,
        limits: Option<RetainedLimits>,
    ) -> RetainOutcome {
        let topic = message.topic();
        if message.payload().is_empty() {
            return match self.remove(topic) {
                Some(_) => RetainOutcome::Deleted,
                None => RetainOutcome::NothingToDelete,
            };
        }
        let old_size = self.get(topic).map_or(0, |m| m.size());
        let new_size = message.size();
        if let Some(limits) = limits {
            let grows_count = old_size == 0 && self.get(topic).is_none();
            if (grows_count && self.len >= limits.messages)
                || self.bytes - old_size + new_size > limits.bytes
            {
                return RetainOutcome::Refused;
            }
        }
        let mut node = &mut self.root;
        for level in topic.split('/') {
            node = node.children.entry(level.into()).or_default();
        }
        match node.message.replace(Message::compacted(message)) {
            Some(old) => self.bytes -= old.size(),
            None => self.len += 1,
        }
        self.bytes += new_size;
        RetainOutcome::Stored
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of all retained messages (topic, payload and properties).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn get(&self, topic: &str) -> Option<&SharedMessage> {
        let mut node = &self.root;
        for level in topic.split('/') {
            node = node.children.get(level)?;
        }
        node.message.as_ref()
    }

    fn remove(&mut self, topic: &str) -> Option<SharedMessage> {
        let mut node = &mut self.root;
        for level in topic.split('/') {
            node = node.children.get_mut(level)?;
        }
        let removed = node.message.take()?;
        self.len -= 1;
        self.bytes -= removed.size();
        self.prune(topic);
        Some(removed)
    }

    /// Cuts off the run of nodes at the end of `topic`'s path that hold nothing but the path.
    fn prune(&mut self, topic: &str) {
        let last = topic.split('/').count() - 1;
        let mut cut = None;
        let mut node = &self.root;
        for (depth, level) in topic.split('/').enumerate() {
            let Some(child) = node.children.get(level) else {
                return;
            };
            let only_path =
                child.message.is_none() && child.children.len() == usize::from(depth != last);
            if !only_path {
                cut = None;
            } else if cut.is_none() {
                cut = Some(depth);
            }
            node = child;
        }
        let Some(depth) = cut else {
            return;
        };
        let mut parent = &mut self.root;
        let mut levels = topic.split('/');
        for level in levels.by_ref().take(depth) {
            parent = parent.children.get_mut(level).expect("the path exists");
        }
        let level = levels.next().expect("the cut is on the path");
        if let Some(subtree) = parent.children.remove(level) {
            dismantle(subtree);
        }
    }

    /// Every retained message whose topic matches `filter`, in topic order.
    pub fn matching(&self, filter: &str) -> Vec<SharedMessage> {
        let mut out = Vec::new();
        self.scan(filter, None, usize::MAX, |m| {
            out.push(m.clone());
            true
        });
        out
    }

    /// Calls `visit` with the retained messages matching `filter` that come after topic
    /// `after` (from the start if `None`), in topic order, looking at no more than `budget`
    /// topics and stopping early when `visit` returns false. Returns where to resume, or
    /// `None` once every match has been visited.
    pub fn scan(
        &self,
        filter: &str,
        after: Option<&str>,
        budget: usize,
        mut visit: impl FnMut(&SharedMessage) -> bool,
    ) -> Option<String> {
        let filter: Vec<&str> = filter.split('/').collect();
        let walk = Walk { filter: &filter };
        let mut stack = walk.seek(&self.root, after);
        let mut looked = 0;
        while let Some(frame) = stack.last_mut() {
            let Some((name, child)) = frame.children.next() else {
                stack.pop();
                continue;
            };
            if frame.skip_dollar && name.starts_with('$') {
                continue;
            }
            let (depth, in_hash) = (frame.depth + 1, frame.child_in_hash);
            let mut more = true;
            if let Some(message) = &child.message {
                if walk.matches_at(depth, in_hash) {
                    more = visit(message);
                }
            }
            stack.push(walk.frame(child, name, depth, in_hash, None));
            looked += 1;
            if looked >= budget || !more {
                let path: Vec<&str> = stack[1..].iter().map(|f| f.name).collect();
                return Some(path.join("/"));
            }
        }
        None
    }
}

/// One node on the walk, and its children still to walk.
struct Frame<'a> {
    /// The node's level name ("" for the root).
    name: &'a str,
    /// Levels above the node: 0 for the root.
    depth: usize,
    /// Whether the children are under a `#` of the filter (everything below matches).
    child_in_hash: bool,
    /// At the root, a filter starting with a wildcard does not match `$` topics (MQTT-4.7.2-1).
    skip_dollar: bool,
    children: std::collections::btree_map::Range<'a, Box<str>, Node>,
}

struct Walk<'f> {
    filter: &'f [&'f str],
}

impl Walk<'_> {
    /// Whether a node `depth` levels down matches the filter.
    fn matches_at(&self, depth: usize, in_hash: bool) -> bool {
        let k = self.filter.len();
        // "a/#" also matches "a" (MQTT 4.7.1.2).
        in_hash || depth == k || (depth + 1 == k && self.filter[k - 1] == "#")
    }

    /// The frame of `node` (`depth` levels down): the children the filter can match, only
    /// those after level `after` when given.
    fn frame<'a>(
        &self,
        node: &'a Node,
        name: &'a str,
        depth: usize,
        in_hash: bool,
        after: Option<&str>,
    ) -> Frame<'a> {
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let all = (lower, Bound::Unbounded);
        let level = self.filter.get(depth).copied();
        let (range, child_in_hash) = match level {
            _ if in_hash => (node.children.range::<str, _>(all), true),
            Some("#") => (node.children.range::<str, _>(all), true),
            Some("+") => (node.children.range::<str, _>(all), false),
            Some(exact) if after.is_none_or(|a| a < exact) => (
                node.children
                    .range::<str, _>((Bound::Included(exact), Bound::Included(exact))),
                false,
            ),
            // Past the one child an exact level allows, or below the filter's last level.
            _ => (
                node.children
                    .range::<str, _>((Bound::Included(""), Bound::Excluded(""))),
                false,
            ),
        };
        Frame {
            name,
            depth,
            child_in_hash,
            skip_dollar: depth == 0 && matches!(level, Some("+" | "#")),
            children: range,
        }
    }

    /// The stack from which walking resumes right after topic `after` in topic order: along
    /// its path, the siblings after it at every level, then its own children.
    fn seek<'a>(&self, root: &'a Node, after: Option<&str>) -> Vec<Frame<'a>> {
        let Some(after) = after else {
            return vec![self.frame(root, "", 0, false, None)];
        };
        let mut stack = Vec::new();
        let (mut node, mut name, mut in_hash) = (root, "", false);
        let mut depth = 0;
        for level in after.split('/') {
            let frame = self.frame(node, name, depth, in_hash, Some(level));
            let child_in_hash = frame.child_in_hash;
            stack.push(frame);
            let Some((key, child)) = node.children.get_key_value(level) else {
                return stack;
            };
            (node, name, in_hash) = (child, key, child_in_hash);
            depth += 1;
        }
        stack.push(self.frame(node, name, depth, in_hash, None));
        stack
    }
}

/// Drops a subtree node by node: the default drop recurses once per level.
fn dismantle(node: Node) {
    let mut stack = vec![node];
    while let Some(mut node) = stack.pop() {
        while let Some((_, child)) = node.children.pop_first() {
            stack.push(child);
        }
    }
}

impl Drop for RetainedStore {
    fn drop(&mut self) {
        dismantle(std::mem::take(&mut self.root));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::topic::matches;
    use crate::protocol::QoS;
    use std::sync::Arc;
    use std::time::Instant;

    fn msg(topic: &str, payload: &[u8]) -> SharedMessage {
        let mut message = Message::new(topic, payload, QoS::AtMostOnce, Instant::now());
        message.retain = true;
        Arc::new(message)
    }

    fn topics(messages: &[SharedMessage]) -> Vec<String> {
        messages.iter().map(|m| m.topic().to_string()).collect()
    }

    const TOPICS: [&str; 14] = [
        "a",
        "a/b",
        "a/b/c",
        "a/c",
        "a/",
        "b/b",
        "$SYS/x",
        "$SYS",
        "/x",
        "/",
        "a//b",
        "x/y/z",
        "a/b/c/d",
        "$share/g/t",
    ];
    const FILTERS: [&str; 16] = [
        "#",
        "+",
        "a",
        "a/b",
        "a/+",
        "a/#",
        "+/b",
        "+/+",
        "a/b/c",
        "a/+/c",
        "$SYS/#",
        "$SYS/+",
        "/+",
        "a//b",
        "+/+/+/#",
        "nothing/#",
    ];

    fn store() -> RetainedStore {
        let mut store = RetainedStore::default();
        for t in TOPICS {
            assert_eq!(
                store.update(&msg(t, t.as_bytes()), None),
                RetainOutcome::Stored
            );
        }
        store
    }

    #[test]
    fn store_replace_delete_and_count_bytes() {
        let mut store = RetainedStore::default();
        store.update(&msg("a/b", b"1"), None);
        store.update(&msg("a/b", b"22"), None);
        store.update(&msg("a/c", b"3"), None);
        assert_eq!((store.len(), store.bytes()), (2, 5 + 4));
        assert_eq!(store.get("a/b").unwrap().payload(), b"22");
        assert_eq!(store.update(&msg("a/b", b""), None), RetainOutcome::Deleted);
        assert_eq!(
            store.update(&msg("a/b", b""), None),
            RetainOutcome::NothingToDelete
        );
        assert_eq!((store.len(), store.bytes()), (1, 4));
        store.update(&msg("a/c", b""), None);
        assert!(store.is_empty() && store.root.children.is_empty(), "pruned");
    }

    #[test]
    fn limits_refuse_new_topics_and_growth_but_not_smaller_replacements() {
        let limits = Some(RetainedLimits {
            messages: 2,
            bytes: 10,
        });
        let mut store = RetainedStore::default();
        assert_eq!(
            store.update(&msg("a", b"1234"), limits),
            RetainOutcome::Stored
        );
        assert_eq!(store.update(&msg("b", b"1"), limits), RetainOutcome::Stored);
        assert_eq!(
            store.update(&msg("c", b"1"), limits),
            RetainOutcome::Refused
        );
        assert_eq!(
            store.update(&msg("a", b"123456789"), limits),
            RetainOutcome::Refused,
            "over the byte limit"
        );
        assert_eq!(
            store.update(&msg("a", b"12"), limits),
            RetainOutcome::Stored
        );
        assert_eq!(store.get("a").unwrap().payload(), b"12");
        assert_eq!((store.len(), store.bytes()), (2, 5));
    }

    #[test]
    fn matches_agree_with_the_reference_matcher() {
        let store = store();
        for filter in FILTERS {
            let mut expected: Vec<String> = TOPICS
                .iter()
                .filter(|t| matches(filter, t))
                .map(|t| t.to_string())
                .collect();
            expected.sort();
            let mut got = topics(&store.matching(filter));
            got.sort();
            assert_eq!(got, expected, "filter {filter}");
        }
    }

    #[test]
    fn a_walk_in_steps_visits_each_match_once_whatever_the_budget() {
        let store = store();
        for filter in FILTERS {
            let whole = topics(&store.matching(filter));
            for budget in 1..=TOPICS.len() + 2 {
                let mut got = Vec::new();
                let mut cursor = None;
                let mut steps = 0;
                loop {
                    let next = store.scan(filter, cursor.as_deref(), budget, |m| {
                        got.push(m.topic().to_string());
                        true
                    });
                    steps += 1;
                    assert!(steps < 100, "the walk makes progress");
                    match next {
                        Some(c) => cursor = Some(c),
                        None => break,
                    }
                }
                assert_eq!(got, whole, "filter {filter}, budget {budget}");
            }
        }
    }

    #[test]
    fn a_walk_resumes_after_its_cursor_was_deleted_and_sees_topics_added_ahead_of_it() {
        let mut store = store();
        let mut got = Vec::new();
        let cursor = store.scan("a/#", None, usize::MAX, |m| {
            got.push(m.topic().to_string());
            got.len() < 2
        });
        assert_eq!(got, ["a", "a/"]);
        let cursor = cursor.unwrap();
        store.update(&msg(&cursor, b""), None);
        store.update(&msg("a//b", b""), None);
        assert!(
            !store.root.children["a"].children.contains_key(""),
            "pruned"
        );
        store.update(&msg("a/bb", b"new"), None);
        store.update(&msg("a/0", b"also ahead"), None);
        store.scan("a/#", Some(&cursor), usize::MAX, |m| {
            got.push(m.topic().to_string());
            true
        });
        assert_eq!(
            got,
            ["a", "a/", "a/0", "a/b", "a/b/c", "a/b/c/d", "a/bb", "a/c"]
        );
    }

    #[test]
    fn deep_topics_cost_no_stack() {
        let mut store = RetainedStore::default();
        let deep = "x/".repeat(100_000) + "end";
        store.update(&msg(&deep, b"deep"), None);
        assert_eq!(store.matching("#").len(), 1);
        let filter = "+/".repeat(100_000) + "#";
        assert_eq!(store.matching(&filter).len(), 1);
        store.update(&msg(&deep, b""), None);
        assert!(store.root.children.is_empty());
        store.update(&msg(&deep, b"dropped whole"), None);
    }

    #[test]
    fn a_walk_costs_what_the_filter_can_match_not_the_store_size() {
        let mut store = RetainedStore::default();
        for i in 0..50_000 {
            store.update(&msg(&format!("fleet/{}/{}", i / 100, i % 100), b"v"), None);
        }
        store.update(&msg("plant/line-1/state", b"up"), None);
        let mut found = Vec::new();
        // Three nodes to look at (a budget of four lets the walk see that it is done).
        let cursor = store.scan("plant/+/state", None, 4, |m| {
            found.push(m.topic().to_string());
            true
        });
        assert_eq!(cursor, None, "the walk finished within its budget");
        assert_eq!(found, ["plant/line-1/state"]);
        let cursor = store.scan("fleet/7/+", None, 103, |_| true);
        assert_eq!(cursor, None, "two levels and one branch of 100 topics");
    }
}
