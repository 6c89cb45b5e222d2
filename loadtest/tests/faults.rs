//! The fault scenarios against the real broker for a couple of seconds: the healthy pair gets
//! its messages, the faulty clients are counted, and the broker's memory is sampled.

mod common;

use common::{load_json, num, start_broker, Broker};

fn run(b: &Broker, mode: &str, extra: &[&str]) -> String {
    let pid = b.pid().to_string();
    let mut args = vec![
        mode,
        "--duration",
        "2",
        "--settle",
        "0",
        "--broker-pid",
        &pid,
    ];
    args.extend_from_slice(extra);
    load_json(b.port, &args)
}

fn assert_pair_served(j: &str) {
    let sent = num(j, "pair_sent");
    assert!(sent > 0.0, "{j}");
    assert_eq!(
        num(j, "pair_received"),
        sent,
        "the healthy pair lost nothing: {j}"
    );
    assert!(num(j, "rss_peak_kib") >= num(j, "rss_start_kib"), "{j}");
    assert!(num(j, "rss_start_kib") > 0.0, "sampled: {j}");
}

#[test]
fn slowsub_keeps_the_healthy_subscriber_served() {
    let b = start_broker();
    let j = run(&b, "slowsub", &["--qos", "1", "--rate", "2000"]);
    assert_pair_served(&j);
    assert_eq!(num(&j, "fault_connections"), 1.0, "{j}");
}

#[test]
fn storm_connects_and_leaves_many_times() {
    let b = start_broker();
    let j = run(&b, "storm", &["--clients", "4", "--rate", "1000"]);
    assert_pair_served(&j);
    assert!(num(&j, "fault_connections") > 10.0, "{j}");
}

#[test]
fn garbage_clients_are_closed_and_the_pair_is_untouched() {
    let b = start_broker();
    let j = run(&b, "garbage", &["--clients", "4", "--rate", "1000"]);
    assert_pair_served(&j);
    assert!(num(&j, "fault_closed_by_broker") > 0.0, "{j}");
}
