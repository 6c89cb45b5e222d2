//! `--metrics ADDR:PORT`: the broker's figures for Prometheus at `/metrics`, in the OpenMetrics
//! text format (`prometheus-client`), served by a thread of its own (`tiny_http`) so that a
//! scrape never runs on a shard. Each scrape reads the figures every shard posts on its clock
//! tick (the same ones as the `$SYS` topics), so they are at most a tick old.
//!
//! Counters end in `_total`; most carry a `shard` label (sum them for the broker), messages a
//! `qos` label and drops a `reason` label. `ringmq_delivery_latency_seconds` is the time from
//! the broker taking a message to writing it to a subscriber, measured inside the broker.

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::metrics::{Counters, LatencyHistogram, ShardStats, StatsBoard, Traffic};

type Labels = Vec<(&'static str, String)>;
/// A metric's name, help and where its value is.
type Figure<T> = (&'static str, &'static str, fn(&T) -> u64);
/// A per-QoS figure: name, help, which traffic, bytes (or messages).
type TrafficFigure = (&'static str, &'static str, fn(&Counters) -> &Traffic, bool);
/// A drop reason and where its count is.
type Drop = (&'static str, fn(&Counters) -> u64);

/// Starts serving `/metrics` on `addr`.
pub fn serve(addr: SocketAddr, board: Arc<StatsBoard>) -> std::io::Result<()> {
    let server = tiny_http::Server::http(addr).map_err(std::io::Error::other)?;
    std::thread::Builder::new()
        .name("ringmq-metrics".into())
        .spawn(move || {
            for request in server.incoming_requests() {
                let response = if request.url() == "/metrics" {
                    let header = tiny_http::Header::from_bytes(
                        &b"Content-Type"[..],
                        &b"application/openmetrics-text; version=1.0.0; charset=utf-8"[..],
                    )
                    .expect("a valid header");
                    tiny_http::Response::from_string(render(&board)).with_header(header)
                } else {
                    tiny_http::Response::from_string("not found: try /metrics\n")
                        .with_status_code(404)
                };
                let _ = request.respond(response);
            }
        })?;
    tracing::info!(%addr, "Prometheus metrics at /metrics");
    Ok(())
}

/// The figures of every shard, in the text format.
pub fn render(board: &StatsBoard) -> String {
    let shards = board.shards();
    let mut registry = Registry::default();
    let shard = |n: usize| vec![("shard", n.to_string())];

    let gauges: [Figure<ShardStats>; 4] = [
        ("ringmq_connections", "Clients connected", |s| {
            s.clients_connected
        }),
        ("ringmq_sessions", "Sessions, connected or not", |s| {
            s.sessions
        }),
        (
            "ringmq_subscription_filters",
            "Distinct subscription filters",
            |s| s.subscription_filters,
        ),
        (
            "ringmq_spilled_messages",
            "Queued messages in the spill files",
            |s| s.spilled,
        ),
    ];
    for (name, help, value) in gauges {
        let family = Family::<Labels, Gauge>::default();
        for (n, s) in shards.iter().enumerate() {
            family.get_or_create(&shard(n)).set(value(s) as i64);
        }
        registry.register(name, help, family);
    }
    let retained = Gauge::<i64>::default();
    retained.set(shards.iter().map(|s| s.retained).max().unwrap_or(0) as i64);
    registry.register(
        "ringmq_retained_messages",
        "Retained messages (every shard holds them all)",
        retained,
    );

    let counters: [Figure<Counters>; 17] = [
        ("ringmq_connections_opened", "Connections accepted", |c| {
            c.connections_opened
        }),
        ("ringmq_connections_closed", "Connections closed", |c| {
            c.connections_closed
        }),
        (
            "ringmq_publishers_paused",
            "Publishers paused for another shard",
            |c| c.publishers_paused,
        ),
        (
            "ringmq_publishers_held",
            "Publishers held for a slow subscriber",
            |c| c.publishers_held,
        ),
        (
            "ringmq_write_timeouts",
            "Connections closed for output making no progress",
            |c| c.write_timeouts,
        ),
        ("ringmq_protocol_errors", "Protocol errors", |c| {
            c.protocol_errors
        }),
        (
            "ringmq_retained_refused",
            "Retained messages not kept: store full",
            |c| c.retained_refused,
        ),
        (
            "ringmq_store_records",
            "Records appended to the durable store",
            |c| c.store_records,
        ),
        (
            "ringmq_store_bytes",
            "Bytes appended to the durable store",
            |c| c.store_bytes,
        ),
        (
            "ringmq_store_syncs",
            "Durable writes (O_DSYNC or fdatasync)",
            |c| c.store_syncs,
        ),
        (
            "ringmq_store_compactions",
            "Logs rewritten as snapshots",
            |c| c.store_compactions,
        ),
        (
            "ringmq_store_refused",
            "QoS 1/2 publishes refused: store full",
            |c| c.refused_store_full,
        ),
        (
            "ringmq_store_write_errors",
            "Failed writes to the store (retried)",
            |c| c.store_write_errors,
        ),
        (
            "ringmq_spilled",
            "Queued messages put in the spill files",
            |c| c.spilled_messages,
        ),
        ("ringmq_messages_received_all", "PUBLISHes received", |c| {
            c.publishes_received
        }),
        (
            "ringmq_messages_sent_all",
            "Messages sent to subscribers",
            |c| c.messages_sent,
        ),
        (
            "ringmq_messages_dropped_all",
            "Messages dropped, every reason",
            |c| c.dropped(),
        ),
    ];
    for (name, help, value) in counters {
        let family = Family::<Labels, Counter>::default();
        for (n, s) in shards.iter().enumerate() {
            family.get_or_create(&shard(n)).inc_by(value(&s.counters));
        }
        registry.register(name, help, family);
    }

    let traffic: [TrafficFigure; 4] = [
        (
            "ringmq_messages_received",
            "PUBLISHes received, by QoS",
            |c| &c.received,
            false,
        ),
        (
            "ringmq_received_bytes",
            "Payload bytes received, by QoS",
            |c| &c.received,
            true,
        ),
        (
            "ringmq_messages_sent",
            "Messages sent to subscribers, by QoS",
            |c| &c.sent,
            false,
        ),
        (
            "ringmq_sent_bytes",
            "Payload bytes sent to subscribers, by QoS",
            |c| &c.sent,
            true,
        ),
    ];
    for (name, help, of, bytes) in traffic {
        let family = Family::<Labels, Counter>::default();
        for (n, s) in shards.iter().enumerate() {
            let t = of(&s.counters);
            for qos in 0..3 {
                let v = if bytes {
                    t.payload_bytes[qos]
                } else {
                    t.messages[qos]
                };
                let labels = vec![("shard", n.to_string()), ("qos", qos.to_string())];
                family.get_or_create(&labels).inc_by(v);
            }
        }
        registry.register(name, help, family);
    }

    let drops: [Drop; 9] = [
        ("queue_full", |c| c.dropped_queue_full),
        ("offline_qos0", |c| c.dropped_offline_qos0),
        ("too_large", |c| c.dropped_too_large),
        ("expired", |c| c.dropped_expired),
        ("no_shared_member", |c| c.dropped_no_member),
        ("not_authorized", |c| c.dropped_not_authorized),
        ("session_expired", |c| c.dropped_session_expired),
        ("subscriber_gone", |c| c.dropped_subscriber_gone),
        ("spill_unreadable", |c| c.dropped_spill_unreadable),
    ];
    let dropped = Family::<Labels, Counter>::default();
    for (n, s) in shards.iter().enumerate() {
        for (reason, value) in drops {
            let labels = vec![("shard", n.to_string()), ("reason", reason.to_string())];
            dropped.get_or_create(&labels).inc_by(value(&s.counters));
        }
    }
    registry.register(
        "ringmq_messages_dropped",
        "Messages dropped, by reason",
        dropped,
    );

    let log_dropped = Counter::<u64>::default();
    log_dropped.inc_by(crate::logging::dropped_lines());
    registry.register(
        "ringmq_log_lines_dropped",
        "Log lines dropped: their destination did not take them",
        log_dropped,
    );

    let mut latency = LatencyHistogram::default();
    for s in &shards {
        latency.add(&s.counters.delivery_latency);
    }
    registry.register(
        "ringmq_delivery_latency_seconds",
        "Time from the broker taking a message to writing it to a subscriber",
        Latency(latency),
    );

    let mut text = String::new();
    if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &registry) {
        tracing::warn!(%error, "cannot encode the metrics");
    }
    text
}

/// A histogram made of the buckets the shards counted.
#[derive(Debug)]
struct Latency(LatencyHistogram);

impl EncodeMetric for Latency {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = self
            .0
            .counts
            .iter()
            .enumerate()
            .map(|(k, &n)| {
                (
                    LatencyHistogram::upper_bound_secs(k).unwrap_or(f64::INFINITY),
                    n,
                )
            })
            .collect();
        encoder.encode_histogram::<NoLabelSet>(
            self.0.sum_micros as f64 / 1e6,
            self.0.count(),
            &buckets,
            None,
        )
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_render_in_the_text_format_with_shard_and_qos_labels() {
        let board = StatsBoard::new(2);
        let mut stats = ShardStats {
            clients_connected: 3,
            ..ShardStats::default()
        };
        stats
            .counters
            .received
            .note(crate::protocol::QoS::AtLeastOnce, 10);
        stats
            .counters
            .delivery_latency
            .record(std::time::Duration::from_micros(300));
        stats.counters.dropped_queue_full = 2;
        board.post(1, stats);
        let text = render(&board);
        assert!(text.contains("ringmq_connections{shard=\"1\"} 3"), "{text}");
        assert!(
            text.contains("ringmq_messages_received_total{shard=\"1\",qos=\"1\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("ringmq_received_bytes_total{shard=\"1\",qos=\"1\"} 10"),
            "{text}"
        );
        assert!(
            text.contains("ringmq_messages_dropped_total{shard=\"1\",reason=\"queue_full\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE ringmq_delivery_latency_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("ringmq_delivery_latency_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("ringmq_delivery_latency_seconds_bucket{le=\"0.000512\"} 1"),
            "{text}"
        );
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
    }
}
