//! `--metrics ADDR:PORT` (issue 13): a scrape of `/metrics` in the Prometheus text format whose
//! counters move as clients publish; the `$SYS` topics stay.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use crate::common::enc::Publish;
use crate::common::raw::{RawClient, RawSession, LONG};
use crate::common::{free_port, run_bounded, secs, unique, Broker};

/// GET `path` on `port`: (status line, body).
fn get(port: u16, path: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(LONG)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

/// The sum of the samples of `name` whose labels contain every one of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64)
        .sum()
}

#[test]
fn a_scrape_shows_counters_that_move_as_clients_publish() {
    run_bounded(secs(60), || {
        let metrics = free_port();
        let addr = format!("127.0.0.1:{metrics}");
        let broker = Broker::start_sharded(&["--metrics", &addr, "--sys-interval", "1"]);
        let (status, before) = get(metrics, "/metrics");
        assert!(status.contains("200"), "{status}");
        assert!(
            before.contains("# TYPE ringmq_messages_received counter"),
            "{before}"
        );
        assert!(get(metrics, "/other").0.contains("404"));
        let received_before = sample(&before, "ringmq_messages_received_total", &["qos=\"1\""]);

        let mut sub = RawSession::new(broker.port, &unique("prom-sub"));
        sub.connect(true, 60);
        assert_eq!(sub.subscribe(1, &[("prom/t", 1)]), [1]);
        let (mut publisher, _) = RawClient::connect311(broker.port, &unique("prom-pub"), true, 60);
        for pkid in 1..=20u16 {
            publisher.publish(Publish::new("prom/t", "0123456789").qos(1).pkid(pkid));
        }
        for _ in 0..20 {
            assert!(sub.recv(LONG).is_some());
        }
        // Shards post their figures on their clock tick (100 ms).
        let deadline = Instant::now() + LONG;
        let after = loop {
            let (_, text) = get(metrics, "/metrics");
            if sample(&text, "ringmq_messages_received_total", &["qos=\"1\""])
                >= received_before + 20
            {
                break text;
            }
            assert!(
                Instant::now() < deadline,
                "the counters did not move:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(sample(&after, "ringmq_received_bytes_total", &["qos=\"1\""]) >= 200);
        assert!(sample(&after, "ringmq_messages_sent_total", &["qos=\"1\""]) >= 20);
        assert!(sample(&after, "ringmq_connections", &[]) >= 2, "{after}");
        assert!(sample(&after, "ringmq_delivery_latency_seconds_count", &[]) >= 20);
        assert!(
            sample(
                &after,
                "ringmq_delivery_latency_seconds_bucket",
                &["le=\"+Inf\""]
            ) >= 20
        );
        // The $SYS topics are still there.
        broker.sys_figure("$SYS/broker/messages/received", LONG, |n| n >= 20);
    });
}
