//! The run summary, as text or as one JSON object.

use hdrhistogram::Histogram;

use crate::cli::FaninArgs;

#[derive(Debug, Default)]
pub struct Summary {
    pub broker: String,
    pub pairs: u32,
    pub qos: u8,
    pub payload: u32,
    pub inflight: u32,
    pub duration_s: u64,
    /// Measured publish window, and how long the drain took.
    pub publish_secs: f64,
    pub drain_secs: f64,
    pub sent: u64,
    /// QoS 1: PUBACKs the publishers received.
    pub acked: u64,
    pub received: u64,
    pub distinct: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    /// Payloads that were not from the subscriber's own publisher (or not ours at all).
    pub foreign: u64,
    /// Distinct messages beyond what the publisher counted as sent.
    pub unexpected: u64,
    pub latency_us: [f64; 4],
    pub latency_samples: u64,
    pub errors: Vec<String>,
}

impl Summary {
    pub fn new(args: &FaninArgs, broker: String, publish_secs: f64, drain_secs: f64) -> Summary {
        Summary {
            broker,
            pairs: args.pairs,
            qos: args.qos,
            payload: args.payload,
            inflight: args.inflight,
            duration_s: args.duration,
            publish_secs,
            drain_secs,
            ..Summary::default()
        }
    }

    pub fn set_latency(&mut self, h: &Histogram<u64>) {
        let us = |ns: u64| ns as f64 / 1000.0;
        self.latency_samples = h.len();
        if h.is_empty() {
            return;
        }
        self.latency_us = [
            us(h.value_at_quantile(0.5)),
            us(h.value_at_quantile(0.99)),
            us(h.value_at_quantile(0.999)),
            us(h.max()),
        ];
    }

    /// Received messages per second of the publish window.
    pub fn msgs_per_sec(&self) -> f64 {
        if self.publish_secs > 0.0 {
            self.received as f64 / self.publish_secs
        } else {
            0.0
        }
    }

    pub fn text(&self) -> String {
        let [p50, p99, p999, max] = self.latency_us;
        let mut s = format!(
            "fanin  broker={}  pairs={}  qos={}  payload={} B  duration={} s (measured {:.3} s, drain {:.3} s)\n\
             sent          {}\n\
             received      {}  ({} distinct)\n\
             delivered     {:.0} msgs/s\n\
             lost          {}\n\
             duplicates    {}\n\
             out-of-order  {}\n\
             latency (µs)  p50 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  ({} samples)\n",
            self.broker,
            self.pairs,
            self.qos,
            self.payload,
            self.duration_s,
            self.publish_secs,
            self.drain_secs,
            self.sent,
            self.received,
            self.distinct,
            self.msgs_per_sec(),
            self.lost,
            self.duplicates,
            self.out_of_order,
            p50,
            p99,
            p999,
            max,
            self.latency_samples,
        );
        if self.qos == 1 {
            s += &format!("acked         {}\n", self.acked);
        }
        if self.foreign > 0 || self.unexpected > 0 {
            s += &format!(
                "foreign       {}  unexpected {}\n",
                self.foreign, self.unexpected
            );
        }
        for e in &self.errors {
            s += &format!("error: {e}\n");
        }
        s
    }

    pub fn json(&self) -> String {
        let [p50, p99, p999, max] = self.latency_us;
        let errors: Vec<String> = self.errors.iter().map(|e| json_string(e)).collect();
        format!(
            "{{\"scenario\":\"fanin\",\"broker\":{},\"pairs\":{},\"qos\":{},\"payload\":{},\
             \"inflight\":{},\"duration_s\":{},\"publish_secs\":{:.6},\"drain_secs\":{:.6},\
             \"sent\":{},\"acked\":{},\"received\":{},\"distinct\":{},\"msgs_per_sec\":{:.1},\
             \"lost\":{},\"duplicates\":{},\"out_of_order\":{},\"foreign\":{},\"unexpected\":{},\
             \"latency_us\":{{\"p50\":{:.1},\"p99\":{:.1},\"p999\":{:.1},\"max\":{:.1},\"samples\":{}}},\
             \"errors\":[{}]}}",
            json_string(&self.broker),
            self.pairs,
            self.qos,
            self.payload,
            self.inflight,
            self.duration_s,
            self.publish_secs,
            self.drain_secs,
            self.sent,
            self.acked,
            self.received,
            self.distinct,
            self.msgs_per_sec(),
            self.lost,
            self.duplicates,
            self.out_of_order,
            self.foreign,
            self.unexpected,
            p50,
            p99,
            p999,
            max,
            self.latency_samples,
            errors.join(","),
        )
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::json_string;

    #[test]
    fn escapes() {
        assert_eq!(json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
