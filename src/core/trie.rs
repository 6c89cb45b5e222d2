//! A topic trie: topic filters as paths of levels, a value at the node where a filter ends.
//! Matching a topic name walks exact, `+` and `#` branches at once. It serves both the local
//! subscription index (value: subscribers) and the replicated route table (value: shard set).

use ahash::AHashMap;

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

    pub fn get_mut(&mut self, filter: &str) -> Option<&mut T> {
        let mut node = &mut self.root;
        for level in filter.split('/') {
            node = match level {
                "+" => node.plus.as_deref_mut()?,
                "#" => node.hash.as_deref_mut()?,
                _ => node.exact.get_mut(level)?,
            };
        }
        node.value.as_mut()
    }

    /// Removes the value of `filter` and prunes the nodes left empty.
    pub fn remove(&mut self, filter: &str) -> Option<T> {
        let levels: Vec<&str> = filter.split('/').collect();
        let removed = remove_at(&mut self.root, &levels);
        if removed.is_some() {
            self.len -= 1;
        }
        removed
    }

    /// Calls `visit` with the value of every filter that matches topic `name`.
    pub fn for_each_match<'a>(&'a self, name: &str, mut visit: impl FnMut(&'a T)) {
        // A filter starting with a wildcard does not match a `$` topic (MQTT-4.7.2-1).
        let dollar = name.starts_with('$');
        let levels = name.split('/');
        match_levels(&self.root, levels, !dollar, &mut visit);
    }
}

fn remove_at<T>(node: &mut Node<T>, levels: &[&str]) -> Option<T> {
    let Some((&level, rest)) = levels.split_first() else {
        return node.value.take();
    };
    let (removed, now_empty) = match level {
        "+" | "#" => {
            let slot = if level == "+" {
                &mut node.plus
            } else {
                &mut node.hash
            };
            let child = slot.as_deref_mut()?;
            let removed = remove_at(child, rest);
            let empty = child.is_empty();
            if empty {
                *slot = None;
            }
            (removed, false)
        }
        _ => {
            let child = node.exact.get_mut(level)?;
            let removed = remove_at(child, rest);
            (removed, child.is_empty())
        }
    };
    if now_empty {
        node.exact.remove(level);
    }
    removed
}

fn match_levels<'a, 'n, T>(
    node: &'a Node<T>,
    mut levels: std::str::Split<'n, char>,
    wildcards: bool,
    visit: &mut impl FnMut(&'a T),
) {
    // `#` matches this level and everything below, including the parent itself ("a/#" ~ "a").
    if wildcards {
        if let Some(value) = node.hash.as_ref().and_then(|h| h.value.as_ref()) {
            visit(value);
        }
    }
    let Some(level) = levels.next() else {
        if let Some(value) = &node.value {
            visit(value);
        }
        return;
    };
    if wildcards {
        if let Some(plus) = &node.plus {
            match_levels(plus, levels.clone(), true, visit);
        }
    }
    if let Some(child) = node.exact.get(level) {
        match_levels(child, levels, true, visit);
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
}
