//! Scenarios as plans: which publishers, which subscribers, and what each receiving group
//! must get. One engine ([`crate::engine`]) runs them all.

use crate::cli::{
    ClientArgs, FaninArgs, FanoutArgs, FunnelArgs, PubArgs, PublishArgs, RunArgs, SharedArgs,
    SubArgs,
};

#[derive(Debug, Clone)]
pub struct SubPlan {
    pub filter: String,
    /// Index into [`Plan::groups`].
    pub group: usize,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub scenario: &'static str,
    pub client: ClientArgs,
    pub publish: PublishArgs,
    pub run: RunArgs,
    /// Topic of each publisher; a publisher's id is its index.
    pub pubs: Vec<String>,
    pub subs: Vec<SubPlan>,
    /// Per group, the publishers whose every message the group (all its members together)
    /// must receive exactly once. `None`: publishers are outside this run (loss = gaps).
    pub groups: Vec<Option<Vec<u32>>>,
}

/// `%i` -> index (as emqtt-bench); `%%` -> `%`.
pub fn expand(template: &str, i: u32) -> String {
    template
        .replace("%%", "\u{0}")
        .replace("%i", &i.to_string())
        .replace('\u{0}', "%")
}

impl Plan {
    fn new(scenario: &'static str, c: &ClientArgs, p: &PublishArgs, r: &RunArgs) -> Plan {
        Plan {
            scenario,
            client: c.clone(),
            publish: p.clone(),
            run: r.clone(),
            pubs: Vec::new(),
            subs: Vec::new(),
            groups: Vec::new(),
        }
    }

    pub fn fanin(a: &FaninArgs) -> Plan {
        let mut plan = Plan::new("fanin", &a.client, &a.publish, &a.run);
        for i in 0..a.pairs {
            plan.pubs.push(format!("load/{i}"));
            plan.subs.push(SubPlan {
                filter: format!("load/{i}"),
                group: i as usize,
            });
            plan.groups.push(Some(vec![i]));
        }
        plan
    }

    pub fn fanout(a: &FanoutArgs) -> Plan {
        let mut plan = Plan::new("fanout", &a.client, &a.publish, &a.run);
        plan.pubs.push("load/fanout".into());
        for i in 0..a.subscribers {
            plan.subs.push(SubPlan {
                filter: "load/fanout".into(),
                group: i as usize,
            });
            plan.groups.push(Some(vec![0]));
        }
        plan
    }

    pub fn funnel(a: &FunnelArgs) -> Plan {
        let mut plan = Plan::new("funnel", &a.client, &a.publish, &a.run);
        plan.pubs = (0..a.publishers).map(|i| format!("load/{i}")).collect();
        plan.subs.push(SubPlan {
            filter: "load/+".into(),
            group: 0,
        });
        plan.groups.push(Some((0..a.publishers).collect()));
        plan
    }

    pub fn shared(a: &SharedArgs) -> Plan {
        let mut plan = Plan::new("shared", &a.client, &a.publish, &a.run);
        plan.pubs = (0..a.publishers).map(|i| format!("load/{i}")).collect();
        for _ in 0..a.subscribers {
            plan.subs.push(SubPlan {
                filter: format!("$share/{}/load/+", a.group),
                group: 0,
            });
        }
        plan.groups.push(Some((0..a.publishers).collect()));
        plan
    }

    pub fn publishers(a: &PubArgs) -> Plan {
        let mut plan = Plan::new("pub", &a.client, &a.publish, &a.run);
        plan.pubs = (0..a.clients).map(|i| expand(&a.topic, i)).collect();
        plan
    }

    pub fn subscribers(a: &SubArgs) -> Plan {
        let publish = PublishArgs {
            qos: a.qos,
            payload: 64,
            rate: 0,
            interval_ms: None,
            count: 0,
            inflight: 1,
            batch: 1,
        };
        let mut plan = Plan::new("sub", &a.client, &publish, &a.run);
        for i in 0..a.clients {
            plan.subs.push(SubPlan {
                filter: expand(&a.topic, i),
                group: i as usize,
            });
            plan.groups.push(None);
        }
        plan
    }

    /// Messages per second for each publisher, if paced.
    pub fn rate_per_publisher(&self) -> Option<f64> {
        match self.publish.interval_ms {
            Some(ms) if ms > 0.0 => Some(1000.0 / ms),
            _ if self.publish.rate > 0 && !self.pubs.is_empty() => {
                Some(self.publish.rate as f64 / self.pubs.len() as f64)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::expand;

    #[test]
    fn templates() {
        assert_eq!(expand("t/%i/x", 7), "t/7/x");
        assert_eq!(expand("t/%%i", 7), "t/%i");
        assert_eq!(expand("plain", 7), "plain");
    }
}
