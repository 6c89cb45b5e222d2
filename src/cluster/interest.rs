//! What a node subscribes to on the NATS route plane: the reference-counted union of the
//! filters its sessions hold, as subjects ([`super::subject::subjects_of`]). Shared
//! subscriptions (`$share/{group}/{filter}`) subscribe in a NATS queue group of the same name,
//! so each message goes to one member in the whole cluster. Several filters can need the same
//! subject (`a/#` and `a` both need `a`): a subject is subscribed while any filter needs it.

use ahash::AHashMap;

use super::subject::subjects_of;
use crate::core::filter::Filter;
use crate::protocol::topic::parse_shared;

/// A NATS subscription: a subject, and the queue group for shared subscriptions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NatsSub {
    pub subject: String,
    pub queue: Option<String>,
}

#[derive(Debug, Default)]
pub struct Interest {
    filters: AHashMap<Filter, usize>,
    subs: AHashMap<NatsSub, usize>,
}

impl Interest {
    /// One more local subscription on `filter`; returns the NATS subscriptions to make.
    pub fn add(&mut self, filter: &Filter) -> Vec<NatsSub> {
        let count = self.filters.entry(filter.clone()).or_insert(0);
        *count += 1;
        if *count > 1 {
            return Vec::new();
        }
        nats_subs(filter)
            .into_iter()
            .filter(|sub| {
                let n = self.subs.entry(sub.clone()).or_insert(0);
                *n += 1;
                *n == 1
            })
            .collect()
    }

    /// One local subscription on `filter` fewer; returns the NATS subscriptions to drop.
    pub fn remove(&mut self, filter: &Filter) -> Vec<NatsSub> {
        let Some(count) = self.filters.get_mut(filter) else {
            return Vec::new();
        };
        *count -= 1;
        if *count > 0 {
            return Vec::new();
        }
        self.filters.remove(filter);
        nats_subs(filter)
            .into_iter()
            .filter(|sub| match self.subs.get_mut(sub) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                Some(_) => {
                    self.subs.remove(sub);
                    true
                }
                None => false,
            })
            .collect()
    }

    /// Every NATS subscription needed now (to make again after a reconnect).
    pub fn subscriptions(&self) -> impl Iterator<Item = &NatsSub> {
        self.subs.keys()
    }
}

fn nats_subs(filter: &Filter) -> Vec<NatsSub> {
    let queue = match parse_shared(filter.as_str()) {
        Some(Ok(shared)) => Some(shared.group.to_string()),
        _ => None,
    };
    subjects_of(filter.topic_filter())
        .into_iter()
        .map(|subject| NatsSub {
            subject,
            queue: queue.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subjects(subs: &[NatsSub]) -> Vec<&str> {
        let mut v: Vec<&str> = subs.iter().map(|s| s.subject.as_str()).collect();
        v.sort();
        v
    }

    #[test]
    fn a_subject_is_subscribed_while_any_filter_needs_it() {
        let mut i = Interest::default();
        let (hash, plain) = (Filter::new("a/#"), Filter::new("a"));
        assert_eq!(subjects(&i.add(&hash)), ["a", "a.>"]);
        assert!(i.add(&plain).is_empty(), "`a` is there already");
        assert!(i.add(&hash).is_empty(), "a second session on `a/#`");
        assert!(i.remove(&hash).is_empty());
        assert_eq!(subjects(&i.remove(&hash)), ["a.>"], "`a` is still needed");
        assert_eq!(subjects(&i.remove(&plain)), ["a"]);
        assert!(i.remove(&plain).is_empty(), "removing what is not there");
        assert_eq!(i.subscriptions().count(), 0);
    }

    #[test]
    fn shared_subscriptions_go_in_a_queue_group() {
        let mut i = Interest::default();
        let shared = Filter::new("$share/workers/jobs/+");
        let subs = i.add(&shared);
        assert_eq!(
            subs,
            [NatsSub {
                subject: "jobs.*".into(),
                queue: Some("workers".into())
            }]
        );
        // The same topic filter unshared is another subscription.
        assert_eq!(i.add(&Filter::new("jobs/+")).len(), 1);
        assert_eq!(i.subscriptions().count(), 2);
    }
}
