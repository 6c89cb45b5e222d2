//! Each composite scenario against the real broker for about a second: no loss at QoS 1, and
//! counts that add up.

mod common;

use common::{load_json, num, start_broker};

/// Sent, received and lost of a QoS 1 run where every group must get every message once.
fn assert_lossless(json: &str, copies: f64) {
    let (sent, acked) = (num(json, "sent"), num(json, "acked"));
    assert!(sent > 0.0, "nothing sent: {json}");
    assert_eq!(acked, sent, "every publish acknowledged: {json}");
    assert_eq!(num(json, "expected"), sent * copies, "{json}");
    assert_eq!(num(json, "distinct"), sent * copies, "{json}");
    assert_eq!(num(json, "lost"), 0.0, "{json}");
    assert_eq!(num(json, "unexpected"), 0.0, "{json}");
    assert_eq!(num(json, "foreign"), 0.0, "{json}");
    assert!(num(json, "samples") >= sent * copies, "{json}");
}

#[test]
fn fanin_qos1_loses_nothing() {
    let b = start_broker();
    let j = load_json(
        b.port,
        &["fanin", "--pairs", "2", "--qos", "1", "--duration", "1"],
    );
    assert_lossless(&j, 1.0);
    assert_eq!(
        num(&j, "out_of_order"),
        0.0,
        "one publisher per subscriber: {j}"
    );
}

#[test]
fn fanin_qos0_counts_add_up() {
    let b = start_broker();
    let j = load_json(b.port, &["fanin", "--pairs", "2", "--duration", "1"]);
    let (sent, distinct) = (num(&j, "sent"), num(&j, "distinct"));
    assert!(sent > 0.0 && distinct <= sent, "{j}");
    assert_eq!(num(&j, "lost"), sent - distinct, "{j}");
    assert_eq!(num(&j, "duplicates"), 0.0, "QoS 0 is at most once: {j}");
}

#[test]
fn fanout_qos1_every_subscriber_gets_everything() {
    let b = start_broker();
    let j = load_json(
        b.port,
        &[
            "fanout",
            "--subscribers",
            "10",
            "--qos",
            "1",
            "--duration",
            "1",
            "--rate",
            "5000",
        ],
    );
    assert_lossless(&j, 10.0);
}

#[test]
fn funnel_qos1_one_subscriber_gets_all_publishers() {
    let b = start_broker();
    let j = load_json(
        b.port,
        &[
            "funnel",
            "--publishers",
            "4",
            "--qos",
            "1",
            "--duration",
            "1",
        ],
    );
    assert_lossless(&j, 1.0);
}

#[test]
fn mqtt5_persistent_sessions_work() {
    let b = start_broker();
    let j = load_json(
        b.port,
        &[
            "fanin",
            "--pairs",
            "2",
            "--qos",
            "1",
            "--duration",
            "1",
            "--protocol",
            "5",
            "--persistent",
        ],
    );
    assert_lossless(&j, 1.0);
}

#[test]
fn shared_group_gets_each_message_once() {
    let b = start_broker();
    let j = load_json(
        b.port,
        &[
            "shared",
            "--publishers",
            "2",
            "--subscribers",
            "3",
            "--qos",
            "1",
            "--duration",
            "1",
            "--protocol",
            "5",
        ],
    );
    assert_lossless(&j, 1.0);
    assert_eq!(num(&j, "duplicates"), 0.0, "{j}");
}

#[test]
fn paced_rate_and_count_are_kept() {
    let b = start_broker();
    // 2 publishers x 1000 msgs/s for up to 3 s, but at most 600 each.
    let j = load_json(
        b.port,
        &[
            "fanin",
            "--pairs",
            "2",
            "--qos",
            "1",
            "--rate",
            "2000",
            "--count",
            "600",
            "--duration",
            "3",
        ],
    );
    assert_eq!(num(&j, "sent"), 1200.0, "{j}");
    assert_lossless(&j, 1.0);
    let secs = num(&j, "publish_secs");
    assert!(secs < 2.0, "stops at the count, not the duration: {j}");
    assert!(secs > 0.55, "paced: 600 at 1000/s take 0.6 s: {j}");
}

#[test]
fn separate_pub_and_sub_processes() {
    let b = start_broker();
    let port = b.port.to_string();
    let sub = std::process::Command::new(common::LOAD)
        .args([
            "sub",
            "--clients",
            "2",
            "--topic",
            "split/#",
            "--qos",
            "1",
            "--duration",
            "3",
        ])
        .args(["--drain", "0", "--json", "--quiet", "--port", &port])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn sub");
    // The subscribers connect first; publish while they listen.
    let publisher = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(800));
        load_json(
            b.port,
            &[
                "pub",
                "--clients",
                "3",
                "--topic",
                "split/%i",
                "--qos",
                "1",
                "--count",
                "100",
                "--duration",
                "1",
            ],
        )
    });
    let p = publisher.join().unwrap();
    let s = sub.wait_with_output().expect("run sub");
    let s = String::from_utf8_lossy(&s.stdout).into_owned();
    assert_eq!(num(&p, "sent"), 300.0, "{p}");
    assert_eq!(num(&s, "distinct"), 600.0, "2 subscribers x 300: {s}");
    assert_eq!(num(&s, "lost"), 0.0, "{s}");
}

#[test]
fn conn_opens_and_holds_connections() {
    let b = start_broker();
    let j = load_json(
        b.port,
        &[
            "conn",
            "--clients",
            "300",
            "--hold",
            "1",
            "--connect-rate",
            "2000",
        ],
    );
    assert_eq!(num(&j, "opened"), 300.0, "{j}");
    assert_eq!(num(&j, "failed"), 0.0, "{j}");
    assert_eq!(num(&j, "dropped"), 0.0, "{j}");
    assert!(
        num(&j, "open_secs") >= 0.14,
        "2000 conn/s: 300 take >= 0.15 s: {j}"
    );
}
