//! A topic trie: topic filters as paths of levels, a value at the node where a filter ends.
//! Matching a topic name walks exact, `+` and `#` branches at once. It serves both the local
//! subscription index (value: subscribers) and the replicated route table (value: shard set).

use ahash::AHashMap;
use smallvec::SmallVec;

#[derive(Debug)]
struct Node<T> {
    exact: AHashMap<Box<str>, Node<T>>,
    plus: Option<Box<Node<T>>>,
    hash: Option<Box<Node<T>>>,
    value: Option<T>,
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Node {
            exact: AHashMap::new(),
            plus: None,
            hash: None,
            value: None,
        }
    }
}

impl<T> Node<T> {
    fn is_empty(&self) -> bool {
        self.value.is_none() && self.exact.is_empty() && self.plus.is_none() && self.hash.is_none()
    }
}

#[derive(Debug)]
pub struct Trie<T> {
    root: Node<T>,
    len: usize,
}

impl<T> Default for Trie<T> {
    fn default() -> Self {
        Trie {
            root: Node::default(),
            len: 0,
        }
    }
}

impl<T> Trie<T> {
    /// Number of filters holding a value.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value of `filter`, created with `make` if absent.
    pub fn get_or_insert_with(&mut self, filter: &str, make: impl FnOnce() -> T) -> &mut T {
        let mut node = &mut self.root;
        for level in filter.split('/') {
            node = match level {
                "+" => node.plus.get_or_insert_with(Box::default),
                "#" => node.hash.get_or_insert_with(Box::default),
                _ => node.exact.entry(level.into()).or_default(),
            };
        }
        if node.value.is_none() {
            self.len += 1;
        }
        node.value.get_or_insert_with(make)
    }

    pub fn get(&self, filter: &str) -> Option<&T> {
        let mut node = &self.root;
        for level in filter.split('/') {
            node = node.child(level)?;
        }
        node.value.as_ref()
    }

    pub fn get_mut(&mut self, filter: &str) -> Option<&mut T> {
        let mut node = &mut self.root;
        for level in filter.split('/') {
            node = node.child_mut(level)?;
        }
        node.value.as_mut()
    }

    /// Removes the value of `filter` and prunes the nodes left empty. Two passes down the
    /// path, no recursion: the depth of a filter costs no stack.
    pub fn remove(&mut self, filter: &str) -> Option<T> {
        let removed = self.get_mut_node(filter)?.value.take()?;
        self.len -= 1;
        // The start of the run of nodes, down to the end of the path, that hold nothing but
        // the path: `cut` is the depth of its parent.
        let depth_of_end = filter.split('/').count() - 1;
        let mut cut: Option<usize> = None;
        let mut node = &self.root;
        for (depth, level) in filter.split('/').enumerate() {
            let child = node.child(level).expect("the path exists");
            let only_path = if depth == depth_of_end {
                child.is_empty()
            } else {
                child.only_child_is_path()
            };
            if !only_path {
                cut = None;
            } else if cut.is_none() {
                cut = Some(depth);
            }
            node = child;
        }
        if let Some(depth) = cut {
            let mut parent = &mut self.root;
            let mut levels = filter.split('/');
            for level in levels.by_ref().take(depth) {
                parent = parent.child_mut(level).expect("the path exists");
            }
            let level = levels.next().expect("cut is on the path");
            if let Some(subtree) = parent.take_child(level) {
                dismantle(subtree);
            }
        }
        Some(removed)
    }

    fn get_mut_node(&mut self, filter: &str) -> Option<&mut Node<T>> {
        let mut node = &mut self.root;
        for level in filter.split('/') {
            node = node.child_mut(level)?;
        }
        Some(node)
    }

    /// Calls `visit` with the value of every filter that matches topic `name`. An explicit
    /// stack (inline for usual depths) instead of recursion: no topic depth can exhaust the
    /// thread's stack. Each frame keeps the rest of the name, split a level at a time.
    pub fn for_each_match<'a>(&'a self, name: &str, mut visit: impl FnMut(&'a T)) {
        // A filter starting with a wildcard does not match a `$` topic (MQTT-4.7.2-1).
        let dollar = name.starts_with('$');
        let mut stack: SmallVec<[MatchFrame<'a, '_, T>; 16]> = SmallVec::new();
        stack.push((&self.root, Some(name), true));
        while let Some((node, rest, at_root)) = stack.pop() {
            let wildcards = !at_root || !dollar;
            // `#` matches this level and everything below, including the parent ("a/#" ~ "a").
            if wildcards {
                if let Some(value) = node.hash.as_ref().and_then(|h| h.value.as_ref()) {
                    visit(value);
                }
            }
            let Some(rest) = rest else {
                if let Some(value) = &node.value {
                    visit(value);
                }
                continue;
            };
            let (level, tail) = match rest.split_once('/') {
                Some((level, tail)) => (level, Some(tail)),
                None => (rest, None),
            };
            if let Some(child) = node.exact.get(level) {
                stack.push((child, tail, false));
            }
            if wildcards {
                if let Some(plus) = &node.plus {
                    stack.push((plus, tail, false));
                }
            }
        }
    }
}

/// A node still to look at, the rest of the topic name below it (`None`: all consumed), and
/// whether it is the root.
type MatchFrame<'t, 'n, T> = (&'t Node<T>, Option<&'n str>, bool);

impl<T> Node<T> {
    fn child(&self, level: &str) -> Option<&Node<T>> {
        match level {
            "+" => self.plus.as_deref(),
            "#" => self.hash.as_deref(),
            _ => self.exact.get(level),
        }
    }

    fn child_mut(&mut self, level: &str) -> Option<&mut Node<T>> {
        match level {
            "+" => self.plus.as_deref_mut(),
            "#" => self.hash.as_deref_mut(),
            _ => self.exact.get_mut(level),
        }
    }

    fn take_child(&mut self, level: &str) -> Option<Node<T>> {
        match level {
            "+" => self.plus.take().map(|b| *b),
            "#" => self.hash.take().map(|b| *b),
            _ => self.exact.remove(level),
        }
    }

    fn children(&self) -> usize {
        self.exact.len() + usize::from(self.plus.is_some()) + usize::from(self.hash.is_some())
    }

    fn only_child_is_path(&self) -> bool {
        self.value.is_none() && self.children() == 1
    }
}

/// Drops a subtree node by node: the default drop recurses once per level.
fn dismantle<T>(node: Node<T>) {
    let mut stack = vec![node];
    while let Some(mut node) = stack.pop() {
        stack.extend(node.exact.drain().map(|(_, child)| child));
        stack.extend(node.plus.take().map(|b| *b));
        stack.extend(node.hash.take().map(|b| *b));
    }
}

impl<T> Drop for Trie<T> {
    fn drop(&mut self) {
        dismantle(std::mem::take(&mut self.root));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::topic::matches;

    fn matched(trie: &Trie<String>, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        trie.for_each_match(name, |v| out.push(v.clone()));
        out.sort();
        out
    }

    const FILTERS: [&str; 14] = [
        "#", "+", "a", "a/b", "a/+", "a/#", "+/b", "+/+", "a/b/c", "a/+/c", "$SYS/#", "$SYS/+",
        "/+", "a//b",
    ];
    const NAMES: [&str; 10] = [
        "a", "a/b", "a/b/c", "b/b", "$SYS/x", "$SYS", "/x", "a//b", "a/", "x/y/z",
    ];

    #[test]
    fn agrees_with_the_reference_matcher() {
        let mut trie = Trie::default();
        for f in FILTERS {
            trie.get_or_insert_with(f, || f.to_string());
        }
        for name in NAMES {
            let mut expected: Vec<String> = FILTERS
                .iter()
                .filter(|f| matches(f, name))
                .map(|f| f.to_string())
                .collect();
            expected.sort();
            assert_eq!(matched(&trie, name), expected, "topic {name}");
        }
    }

    #[test]
    fn remove_prunes_and_counts() {
        let mut trie = Trie::default();
        trie.get_or_insert_with("a/+/c", || 1);
        trie.get_or_insert_with("a/b", || 2);
        assert_eq!(trie.len(), 2);
        assert_eq!(trie.remove("a/+/c"), Some(1));
        assert_eq!(trie.remove("a/+/c"), None);
        assert_eq!(trie.len(), 1);
        assert!(trie.root.exact["a"].plus.is_none());
        assert_eq!(trie.remove("a/b"), Some(2));
        assert!(trie.root.is_empty());
        assert!(trie.is_empty());
    }

    #[test]
    fn remove_keeps_what_other_filters_still_need() {
        let mut trie = Trie::default();
        for f in ["a/b/c/d", "a/b", "a/b/x", "a/+/c"] {
            trie.get_or_insert_with(f, || f.to_string());
        }
        assert_eq!(trie.remove("a/b/c/d").as_deref(), Some("a/b/c/d"));
        assert!(trie.root.exact["a"].exact["b"].exact.get("c").is_none());
        assert_eq!(matched(&trie, "a/b/x"), ["a/b/x"]);
        assert_eq!(trie.remove("a/b").as_deref(), Some("a/b"));
        assert_eq!(matched(&trie, "a/b/x"), ["a/b/x"], "a/b/x hangs below a/b");
        assert_eq!(matched(&trie, "a/b/c"), ["a/+/c"]);
        assert_eq!(trie.remove("a/nothing"), None);
        assert_eq!(trie.remove("a/b/x").as_deref(), Some("a/b/x"));
        assert_eq!(trie.remove("a/+/c").as_deref(), Some("a/+/c"));
        assert!(trie.root.is_empty());
    }

    /// Far beyond any topic-level limit: every operation walks without recursion, and the
    /// trie drops without it.
    #[test]
    fn deep_filters_cost_no_stack() {
        let levels = 200_000;
        let deep = "x/".repeat(levels) + "#";
        let plus = "+/".repeat(levels) + "y";
        let name = "x/".repeat(levels) + "y";
        let mut trie = Trie::default();
        trie.get_or_insert_with(&deep, || "deep".to_string());
        trie.get_or_insert_with(&plus, || "plus".to_string());
        assert_eq!(matched(&trie, &name), ["deep", "plus"]);
        assert!(trie.get_mut(&deep).is_some());
        assert_eq!(trie.remove(&deep).as_deref(), Some("deep"));
        assert_eq!(matched(&trie, &name), ["plus"]);
        let mut left = Trie::default();
        left.get_or_insert_with(&deep, || 1);
        drop(left);
    }
}
