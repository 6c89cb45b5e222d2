//! The `$SYS` topics: the broker's figures as retained messages, under the names Mosquitto
//! uses where it has one, so existing dashboards and `mosquitto_sub -t '$SYS/#'` work.

use std::time::Duration;

use crate::metrics::ShardStats;

/// (topic, payload) of every `$SYS` message for `stats` after `uptime`.
pub fn sys_messages(stats: &ShardStats, uptime: Duration) -> Vec<(&'static str, String)> {
    let c = &stats.counters;
    let offline = stats.sessions.saturating_sub(stats.clients_connected);
    let figures = [
        ("$SYS/broker/clients/connected", stats.clients_connected),
        ("$SYS/broker/clients/disconnected", offline),
        ("$SYS/broker/clients/total", stats.sessions),
        ("$SYS/broker/connections/opened", c.connections_opened),
        ("$SYS/broker/connections/closed", c.connections_closed),
        ("$SYS/broker/messages/received", c.publishes_received),
        ("$SYS/broker/messages/sent", c.messages_sent),
        ("$SYS/broker/publish/messages/dropped", c.dropped()),
        (
            "$SYS/broker/publish/messages/dropped/queue_full",
            c.dropped_queue_full,
        ),
        (
            "$SYS/broker/publish/messages/dropped/offline_qos0",
            c.dropped_offline_qos0,
        ),
        (
            "$SYS/broker/publish/messages/dropped/too_large",
            c.dropped_too_large,
        ),
        (
            "$SYS/broker/publish/messages/dropped/expired",
            c.dropped_expired,
        ),
        (
            "$SYS/broker/publish/messages/dropped/no_shared_member",
            c.dropped_no_member,
        ),
        (
            "$SYS/broker/publish/messages/dropped/not_authorized",
            c.dropped_not_authorized,
        ),
        (
            "$SYS/broker/publish/messages/dropped/session_expired",
            c.dropped_session_expired,
        ),
        (
            "$SYS/broker/publish/messages/dropped/subscriber_gone",
            c.dropped_subscriber_gone,
        ),
        ("$SYS/broker/retained messages/refused", c.retained_refused),
        ("$SYS/broker/connections/write_timeouts", c.write_timeouts),
        ("$SYS/broker/publishers/paused", c.publishers_paused),
        ("$SYS/broker/publishers/held", c.publishers_held),
        ("$SYS/broker/protocol_errors", c.protocol_errors),
        ("$SYS/broker/store/records", c.store_records),
        ("$SYS/broker/store/bytes", c.store_bytes),
        ("$SYS/broker/store/syncs", c.store_syncs),
        ("$SYS/broker/store/compactions", c.store_compactions),
        ("$SYS/broker/store/refused", c.refused_store_full),
        ("$SYS/broker/store/write_errors", c.store_write_errors),
        ("$SYS/broker/store/spilled", c.spilled_messages),
        ("$SYS/broker/store/spilled_now", stats.spilled),
        (
            "$SYS/broker/publish/messages/dropped/spill_unreadable",
            c.dropped_spill_unreadable,
        ),
        ("$SYS/broker/retained messages/count", stats.retained),
        ("$SYS/broker/log/dropped", stats.log_lines_dropped),
    ];
    let mut messages = vec![
        (
            "$SYS/broker/version",
            concat!("ringmq ", env!("CARGO_PKG_VERSION")).to_string(),
        ),
        (
            "$SYS/broker/uptime",
            format!("{} seconds", uptime.as_secs()),
        ),
    ];
    messages.extend(figures.map(|(topic, n)| (topic, n.to_string())));
    messages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_land_on_their_topics() {
        let mut stats = ShardStats {
            clients_connected: 2,
            sessions: 5,
            retained: 1,
            ..Default::default()
        };
        stats.counters.dropped_queue_full = 3;
        stats.counters.dropped_expired = 4;
        stats.counters.publishes_received = 9;
        let got = sys_messages(&stats, Duration::from_millis(61_500));
        let value = |topic: &str| {
            got.iter()
                .find(|(t, _)| *t == topic)
                .map(|(_, v)| v.as_str())
                .unwrap_or_else(|| panic!("no {topic}"))
        };
        assert_eq!(value("$SYS/broker/uptime"), "61 seconds");
        assert_eq!(value("$SYS/broker/clients/connected"), "2");
        assert_eq!(value("$SYS/broker/clients/disconnected"), "3");
        assert_eq!(value("$SYS/broker/messages/received"), "9");
        assert_eq!(value("$SYS/broker/publish/messages/dropped"), "7");
        assert_eq!(value("$SYS/broker/retained messages/count"), "1");
        for (topic, _) in &got {
            assert!(crate::protocol::topic::valid_topic_name(topic), "{topic}");
        }
    }
}
