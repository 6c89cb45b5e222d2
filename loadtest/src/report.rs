//! The run summary, as a text table or as one JSON object.

use hdrhistogram::Histogram;

use crate::json::{string as json_string, Obj};
use crate::plan::Plan;

#[derive(Debug)]
pub struct Summary {
    pub scenario: &'static str,
    pub label: String,
    pub broker: String,
    pub protocol: &'static str,
    pub publishers: usize,
    pub subscribers: usize,
    pub qos: u8,
    pub payload: u32,
    pub inflight: u32,
    /// Target total publish rate (msgs/s), if paced.
    pub rate: Option<f64>,
    pub duration_s: u64,
    pub connect_secs: f64,
    /// Measured publish window, how long the drain took, and start to last delivery.
    pub publish_secs: f64,
    pub drain_secs: f64,
    pub deliver_secs: f64,
    pub sent: u64,
    /// QoS 1: PUBACKs the publishers received.
    pub acked: u64,
    /// Deliveries owed to the subscribers (0 when publishers are outside the run).
    pub expected: u64,
    pub received: u64,
    pub distinct: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    /// Payloads that were not ours at all.
    pub foreign: u64,
    /// Distinct messages a group was not meant to get, or beyond what was sent.
    pub unexpected: u64,
    pub latency: Histogram<u64>,
    pub errors: Vec<String>,
}

impl Summary {
    pub fn new(plan: &Plan, broker: String) -> Summary {
        let label = plan
            .run
            .label
            .clone()
            .unwrap_or_else(|| format!("{}@{broker}", plan.scenario));
        Summary {
            scenario: plan.scenario,
            label,
            broker,
            protocol: match plan.client.protocol {
                crate::cli::Protocol::V311 => "3.1.1",
                crate::cli::Protocol::V5 => "5",
            },
            publishers: plan.pubs.len(),
            subscribers: plan.subs.len(),
            qos: plan.publish.qos,
            payload: plan.publish.payload,
            inflight: plan.publish.inflight,
            rate: plan
                .rate_per_publisher()
                .map(|r| r * plan.pubs.len() as f64),
            duration_s: plan.run.duration,
            connect_secs: 0.0,
            publish_secs: 0.0,
            drain_secs: 0.0,
            deliver_secs: 0.0,
            sent: 0,
            acked: 0,
            expected: 0,
            received: 0,
            distinct: 0,
            lost: 0,
            duplicates: 0,
            out_of_order: 0,
            foreign: 0,
            unexpected: 0,
            latency: crate::subscriber::new_histogram(),
            errors: Vec::new(),
        }
    }

    pub fn set_latency(&mut self, h: Histogram<u64>) {
        self.latency = h;
    }

    /// Latency quantile in microseconds (0 without samples).
    pub fn latency_us(&self, q: f64) -> f64 {
        if self.latency.is_empty() {
            return 0.0;
        }
        let v = if q >= 1.0 {
            self.latency.max()
        } else {
            self.latency.value_at_quantile(q)
        };
        v as f64 / 1000.0
    }

    /// Distinct deliveries per second, from the start of publishing to the last delivery.
    pub fn delivered_per_sec(&self) -> f64 {
        let secs = if self.deliver_secs > 0.0 {
            self.deliver_secs
        } else {
            self.publish_secs
        };
        if secs > 0.0 {
            self.distinct.saturating_sub(self.unexpected) as f64 / secs
        } else {
            0.0
        }
    }

    pub fn sent_per_sec(&self) -> f64 {
        if self.publish_secs > 0.0 {
            self.sent as f64 / self.publish_secs
        } else {
            0.0
        }
    }

    /// Whether the run broke a delivery promise (loss at QoS 1, or a client error).
    pub fn failed(&self) -> bool {
        !self.errors.is_empty() || (self.qos == 1 && self.lost > 0)
    }

    pub fn text(&self) -> String {
        let rate = self
            .rate
            .map_or("flat out".to_string(), |r| format!("{r:.0} msgs/s"));
        let mut s = format!(
            "{}  broker={}  MQTT {}  publishers={}  subscribers={}  qos={}  payload={} B  rate={}\n",
            self.scenario,
            self.broker,
            self.protocol,
            self.publishers,
            self.subscribers,
            self.qos,
            self.payload,
            rate
        );
        let rows: Vec<(&str, String)> = vec![
            ("connect", format!("{:.3} s", self.connect_secs)),
            (
                "publish",
                format!(
                    "{:.3} s (drain {:.3} s, last delivery at {:.3} s)",
                    self.publish_secs, self.drain_secs, self.deliver_secs
                ),
            ),
            (
                "sent",
                format!("{}  ({:.0} msgs/s)", self.sent, self.sent_per_sec()),
            ),
            ("acked", self.acked.to_string()),
            ("expected", self.expected.to_string()),
            (
                "received",
                format!("{}  ({} distinct)", self.received, self.distinct),
            ),
            (
                "delivered",
                format!("{:.0} msgs/s", self.delivered_per_sec()),
            ),
            ("lost", self.lost.to_string()),
            ("duplicates", self.duplicates.to_string()),
            ("out-of-order", self.out_of_order.to_string()),
            (
                "latency",
                format!(
                    "p50 {:.1} µs  p99 {:.1} µs  p99.9 {:.1} µs  max {:.1} µs  ({} samples)",
                    self.latency_us(0.5),
                    self.latency_us(0.99),
                    self.latency_us(0.999),
                    self.latency_us(1.0),
                    self.latency.len()
                ),
            ),
        ];
        for (k, v) in rows {
            if k == "acked" && self.qos == 0 {
                continue;
            }
            s += &format!("  {k:<13} {v}\n");
        }
        if self.foreign > 0 || self.unexpected > 0 {
            s += &format!(
                "  {:<13} foreign {}  unexpected {}\n",
                "strays", self.foreign, self.unexpected
            );
        }
        for e in &self.errors {
            s += &format!("  error: {e}\n");
        }
        s
    }

    pub fn json(&self) -> String {
        let mut lat = Obj::new();
        lat.num("p50", self.latency_us(0.5))
            .num("p99", self.latency_us(0.99))
            .num("p999", self.latency_us(0.999))
            .num("max", self.latency_us(1.0))
            .int("samples", self.latency.len());
        let errors: Vec<String> = self.errors.iter().map(|e| json_string(e)).collect();
        let mut o = Obj::new();
        o.str("scenario", self.scenario)
            .str("label", &self.label)
            .str("broker", &self.broker)
            .str("protocol", self.protocol)
            .int("publishers", self.publishers as u64)
            .int("subscribers", self.subscribers as u64)
            .int("qos", u64::from(self.qos))
            .int("payload", u64::from(self.payload))
            .int("inflight", u64::from(self.inflight))
            .num("rate", self.rate.unwrap_or(0.0))
            .int("duration_s", self.duration_s)
            .num("connect_secs", self.connect_secs)
            .num("publish_secs", self.publish_secs)
            .num("drain_secs", self.drain_secs)
            .num("deliver_secs", self.deliver_secs)
            .int("sent", self.sent)
            .int("acked", self.acked)
            .int("expected", self.expected)
            .int("received", self.received)
            .int("distinct", self.distinct)
            .num("msgs_per_sec", self.delivered_per_sec())
            .num("sent_per_sec", self.sent_per_sec())
            .int("lost", self.lost)
            .int("duplicates", self.duplicates)
            .int("out_of_order", self.out_of_order)
            .int("foreign", self.foreign)
            .int("unexpected", self.unexpected)
            .raw("latency_us", &lat.end())
            .raw("errors", &format!("[{}]", errors.join(",")));
        o.end()
    }
}
