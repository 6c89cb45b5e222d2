//! Limits and bad input. Every offending connection must be closed, and only that one: an idle
//! raw connection and a publisher/subscriber pair that were connected before keep working, a
//! fresh pair works afterwards, and the broker process stays up.

use std::time::Duration;

use crate::common;
use crate::common::dec::RawPacket;
use crate::common::enc::{self, kind, Connect, Publish, Will};
use crate::common::raw::{RawClient, LONG};
use crate::common::{
    bounded, client_id_on_shard, connect, connect_with, opts, recv_n, recv_one, secs, text, texts,
    unique, Broker, Mqtt, SHARDS,
};

/// Connections that must keep working while others misbehave.
struct Bystanders {
    port: u16,
    sub: Mqtt,
    publ: Mqtt,
    idle: RawClient,
    n: usize,
}

impl Bystanders {
    async fn new(port: u16) -> Bystanders {
        let mut sub = connect(port, &client_id_on_shard("bystander-sub", 0, SHARDS), true).await;
        sub.subscribe_ok("bystander/t", 1).await;
        let publ = connect(port, &client_id_on_shard("bystander-pub", 1, SHARDS), true).await;
        let (idle, _) = RawClient::connect311(port, "bystander-idle", true, 120);
        Bystanders {
            port,
            sub,
            publ,
            idle,
            n: 0,
        }
    }

    /// The old pair still exchanges a message, the idle connection still answers PINGREQ, and
    /// a brand-new pair works.
    async fn check(&mut self, after: &str) {
        self.n += 1;
        let payload = format!("{after}#{}", self.n);
        self.publ
            .publish("bystander/t", 1, false, payload.clone())
            .await;
        let m = recv_one(&mut self.sub.publishes, secs(10)).await;
        assert_eq!(text(&m), payload, "existing pair after {after}");
        self.idle.ping();

        let topic = unique("fresh");
        let mut s = connect(self.port, &unique("fresh-sub"), true).await;
        s.subscribe_ok(&topic, 1).await;
        let mut p = connect(self.port, &unique("fresh-pub"), true).await;
        p.publish(&topic, 1, false, "fresh").await;
        let m = recv_one(&mut s.publishes, secs(10)).await;
        assert_eq!(text(&m), "fresh", "fresh pair after {after}");
        s.disconnect().await;
        p.disconnect().await;
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Stage {
    /// Bytes sent on a fresh TCP connection, instead of / as the CONNECT.
    BeforeConnect,
    /// Bytes sent after a successful CONNECT.
    AfterConnect,
}

struct Case {
    name: &'static str,
    stage: Stage,
    bytes: Vec<u8>,
    /// Half-close our side after sending (so a broker waiting for more bytes sees EOF).
    eof: bool,
    /// Check that nothing but a refusing CONNACK came back (false for random garbage).
    strict: bool,
}

fn case(name: &'static str, stage: Stage, bytes: Vec<u8>) -> Case {
    Case {
        name,
        stage,
        bytes,
        eof: false,
        strict: true,
    }
}

/// Runs each case on its own connection: it must be closed within 10 s, answered by nothing
/// that accepts it, and the bystanders must be unaffected.
async fn run_cases(broker: &Broker, cases: Vec<Case>) {
    let mut by = Bystanders::new(broker.port).await;
    for c in cases {
        let mut conn = match c.stage {
            Stage::BeforeConnect => RawClient::tcp(broker.port),
            Stage::AfterConnect => {
                RawClient::connect311(broker.port, &format!("bad-{}", c.name), true, 60).0
            }
        };
        let _ = conn.send(&c.bytes);
        if c.eof {
            conn.shutdown_write();
        }
        let got = conn.expect_closed(Duration::from_secs(10), c.name);
        if c.strict {
            let acceptable = |p: &RawPacket| {
                c.stage == Stage::BeforeConnect && p.kind() == kind::CONNACK && p.connack().1 != 0
            };
            assert!(
                got.iter().all(acceptable),
                "{}: broker answered {got:?} before closing",
                c.name
            );
        }
        broker.assert_alive();
        by.check(c.name).await;
    }
}

fn connect_bytes(f: impl FnOnce(&mut Connect)) -> Vec<u8> {
    let mut c = Connect::v311("bad-connect");
    f(&mut c);
    c.encode()
}

/// Malformed CONNECT packets and non-MQTT bytes on a fresh connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_connect_closes_only_that_connection() {
    bounded(secs(120), async {
        let broker = Broker::start_sharded(&[]);
        use Stage::BeforeConnect as B;
        let valid = Connect::v311("truncated").encode();
        let cases = vec![
            Case {
                eof: true,
                strict: false,
                ..case(
                    "http request",
                    B,
                    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
                )
            },
            Case {
                eof: true,
                ..case("zero bytes", B, vec![0u8; 64])
            },
            Case {
                eof: true,
                ..case("truncated CONNECT then EOF", B, valid[..10].to_vec())
            },
            case(
                "CONNECT with 5-byte remaining length",
                B,
                vec![0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F],
            ),
            case(
                "CONNECT reserved flag set",
                B,
                connect_bytes(|c| c.reserved_flag = true),
            ),
            case(
                "CONNECT will QoS 3",
                B,
                connect_bytes(|c| c.will = Some(Will::new(b"w", b"x").qos(3))),
            ),
            case(
                "CONNECT password without username",
                B,
                connect_bytes(|c| c.password = Some(b"pw".to_vec())),
            ),
            case(
                "CONNECT client id not UTF-8",
                B,
                connect_bytes(|c| c.client_id = vec![0xC3, 0x28]),
            ),
            case("CONNECT fixed header flags 0x1F", B, {
                let mut v = Connect::v311("flags").encode();
                v[0] = 0x1F;
                v
            }),
        ];
        run_cases(&broker, cases).await;
    })
    .await;
}

/// Malformed PUBLISH packets after a good CONNECT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_publish_closes_only_that_connection() {
    bounded(secs(120), async {
        let broker = Broker::start_sharded(&[]);
        use Stage::AfterConnect as A;
        let cases = vec![
            case(
                "PUBLISH QoS 3",
                A,
                Publish::new(b"bad/t", b"x").qos(3).pkid(1).encode(),
            ),
            case(
                "PUBLISH topic not UTF-8",
                A,
                Publish::new([b'a', 0xC3, 0x28], b"x").encode(),
            ),
            case(
                "PUBLISH topic with U+0000",
                A,
                Publish::new(b"a\0b", b"x").encode(),
            ),
            case(
                "PUBLISH topic with UTF-16 surrogate",
                A,
                Publish::new([b'a', 0xED, 0xA0, 0x80], b"x")
                    .qos(1)
                    .pkid(1)
                    .encode(),
            ),
            case(
                "PUBLISH topic with +",
                A,
                Publish::new(b"a/+", b"x").qos(1).pkid(1).encode(),
            ),
            case(
                "PUBLISH topic with #",
                A,
                Publish::new(b"a/#", b"x").encode(),
            ),
            case(
                "PUBLISH empty topic",
                A,
                Publish::new(b"", b"x").qos(1).pkid(1).encode(),
            ),
            case(
                "PUBLISH QoS 1 packet id 0",
                A,
                Publish::new(b"bad/t", b"x").qos(1).encode(),
            ),
            case(
                "PUBLISH topic length past the end",
                A,
                vec![0x30, 0x03, 0x00, 0x0A, b'a'],
            ),
            case(
                "PUBLISH QoS 1 without room for packet id",
                A,
                vec![0x32, 0x03, 0x00, 0x01, b't'],
            ),
        ];
        run_cases(&broker, cases).await;
    })
    .await;
}

/// Other malformed packets after a good CONNECT: wrong reserved flags, empty SUBSCRIBE, QoS 3
/// subscription, reserved packet types, packets only a server may send, bad lengths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_control_packets_close_only_that_connection() {
    bounded(secs(120), async {
        let broker = Broker::start_sharded(&[]);
        use Stage::AfterConnect as A;
        let mut sub_flags = enc::subscribe(1, &[("t", 0)]);
        sub_flags[0] = 0x80;
        let mut unsub_flags = enc::unsubscribe(1, &["t"]);
        unsub_flags[0] = 0xA0;
        let cases = vec![
            case("SUBSCRIBE flags 0000", A, sub_flags),
            case("SUBSCRIBE without filters", A, vec![0x82, 0x02, 0x00, 0x01]),
            case(
                "SUBSCRIBE requested QoS 3",
                A,
                enc::subscribe(1, &[("t", 3)]),
            ),
            case("SUBSCRIBE packet id 0", A, enc::subscribe(0, &[("t", 0)])),
            case("UNSUBSCRIBE flags 0000", A, unsub_flags),
            case(
                "UNSUBSCRIBE without filters",
                A,
                vec![0xA2, 0x02, 0x00, 0x01],
            ),
            case("PUBREL flags 0000", A, vec![0x60, 0x02, 0x00, 0x01]),
            case("reserved packet type 0", A, vec![0x00, 0x00]),
            case("reserved packet type 15", A, vec![0xF0, 0x00]),
            case("CONNACK from a client", A, vec![0x20, 0x02, 0x00, 0x00]),
            case(
                "remaining length of 5 bytes",
                A,
                vec![0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
            ),
        ];
        run_cases(&broker, cases).await;
    })
    .await;
}

/// Truncated packets (then EOF) and random bytes after a good CONNECT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_and_garbage_close_only_that_connection() {
    bounded(secs(120), async {
        let broker = Broker::start_sharded(&[]);
        use Stage::AfterConnect as A;
        // Deterministic pseudo-random bytes (xorshift).
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let garbage: Vec<u8> = (0..2048)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let full = Publish::new(b"trunc/t", [7u8; 100]).qos(1).pkid(1).encode();
        let cases = vec![
            Case {
                eof: true,
                ..case("PUBLISH cut short, then EOF", A, full[..20].to_vec())
            },
            Case {
                eof: true,
                ..case("fixed header only, then EOF", A, vec![0x82])
            },
            Case {
                eof: true,
                strict: false,
                ..case("random bytes", A, garbage.clone())
            },
            Case {
                eof: true,
                strict: false,
                ..case(
                    "random bytes, reversed",
                    A,
                    garbage.iter().rev().copied().collect(),
                )
            },
        ];
        run_cases(&broker, cases).await;
    })
    .await;
}

/// With --max-packet-size 1024: a PUBLISH just under the limit is delivered; one over it closes
/// that connection; a header that merely declares a huge packet closes it without waiting for
/// the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_packet_closes_only_that_connection() {
    bounded(secs(120), async {
        let broker = Broker::start_sharded(&["--max-packet-size", "1024"]);
        let port = broker.port;

        // Under the limit: works end to end.
        let mut sub = connect(port, "size-sub", true).await;
        sub.subscribe_ok("size/t", 1).await;
        let (mut p, _) = RawClient::connect311(port, "size-pub", true, 60);
        let small = vec![b's'; 900];
        p.publish(Publish::new("size/t", &small).qos(1).pkid(1));
        let m = recv_one(&mut sub.publishes, secs(10)).await;
        assert_eq!(m.payload.len(), 900);

        use Stage::AfterConnect as A;
        let mut declared = vec![0x30];
        declared.extend(enc::remaining_length(1_000_000));
        declared.extend([0x00, 0x01, b't']);
        let cases = vec![
            case(
                "PUBLISH of 2000 bytes",
                A,
                Publish::new(b"size/t", [b'x'; 2000])
                    .qos(1)
                    .pkid(2)
                    .encode(),
            ),
            case("PUBLISH declaring 1 MB", A, declared),
            case(
                "CONNECT declaring 256 MB",
                Stage::BeforeConnect,
                vec![0x10, 0xFF, 0xFF, 0xFF, 0x7F, 0x00, 0x04, b'M'],
            ),
            case(
                "SUBSCRIBE of 1500 bytes",
                A,
                enc::subscribe(3, &[(&"f".repeat(1500), 0)]),
            ),
        ];
        run_cases(&broker, cases).await;

        // The oversized message reached nobody; the connection used above still works.
        p.publish(Publish::new("size/t", b"after").qos(1).pkid(4));
        let m = recv_one(&mut sub.publishes, secs(10)).await;
        assert_eq!(
            text(&m),
            "after",
            "the oversized PUBLISH must not have been delivered"
        );
    })
    .await;
}

/// With --max-connections 4 (one shard): a fifth client is refused (closed, at most a CONNACK
/// 0x03 first); the four keep working; after one leaves a new client gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_refuses_extra_clients() {
    bounded(secs(60), async {
        let broker = Broker::start(&["--shards", "1", "--max-connections", "4"]);
        let port = broker.port;
        let mut conns: Vec<RawClient> = (0..4)
            .map(|i| RawClient::connect311(port, &format!("mc-{i}"), true, 60).0)
            .collect();

        let (mut extra, first) = RawClient::connect_raw(port, &Connect::v311("mc-extra").encode());
        if let Ok(p) = &first {
            assert_eq!(
                p.bytes(),
                vec![0x20, 0x02, 0x00, 0x03],
                "5th client: only CONNACK 0x03 (server unavailable) allowed"
            );
            extra.expect_closed(LONG, "5th client after CONNACK 0x03");
        }
        for c in conns.iter_mut() {
            c.ping();
        }

        conns.pop().unwrap().disconnect();
        // The broker may take a moment to count the closed connection: retry for up to 10 s.
        let deadline = std::time::Instant::now() + secs(10);
        loop {
            let (mut c, first) = RawClient::connect_raw(port, &Connect::v311("mc-late").encode());
            match first {
                Ok(p) if p.bytes() == vec![0x20, 0x02, 0x00, 0x00] => {
                    c.ping();
                    break;
                }
                other => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "no room after a client left: {other:?}"
                    );
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
        for c in conns.iter_mut() {
            c.ping();
        }
        broker.assert_alive();
    })
    .await;
}

/// Outbound flow control: with --max-inflight 5, a subscriber that does not PUBACK gets 5
/// messages and no more; each PUBACK lets exactly one more through; all 20 arrive in order.
/// (The "no more" check waits 1 s: it can only miss a violation, never fail a correct broker.)
#[test]
fn max_inflight_limits_unacknowledged_messages() {
    common::run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&["--max-inflight", "5"]);
        let (mut sub, _) = RawClient::connect311(
            broker.port,
            &client_id_on_shard("if-sub", 0, SHARDS),
            true,
            60,
        );
        sub.subscribe_ok(1, &[("if/t", 1)]);
        let (mut p, _) = RawClient::connect311(
            broker.port,
            &client_id_on_shard("if-pub", 1, SHARDS),
            true,
            60,
        );
        for i in 0..20u16 {
            p.publish(
                Publish::new("if/t", format!("{i}").as_bytes())
                    .qos(1)
                    .pkid(i + 1),
            );
        }
        let mut got: Vec<_> = (0..5).map(|_| sub.next_publish(LONG)).collect();
        match sub.read_packet(secs(1)) {
            Err(common::raw::ReadErr::Timeout) => {}
            other => panic!(
                "a 6th message (or something else) with 5 unacknowledged in flight: {other:?}"
            ),
        }
        sub.send_ok(&enc::puback(got[0].pkid));
        got.push(sub.next_publish(LONG));
        let unacked: Vec<u16> = got[1..].iter().map(|m| m.pkid).collect();
        for pkid in unacked {
            sub.send_ok(&enc::puback(pkid));
        }
        while got.len() < 20 {
            let m = sub.next_publish(LONG);
            sub.send_ok(&enc::puback(m.pkid));
            got.push(m);
        }
        let order: Vec<String> = got.iter().map(|m| m.text()).collect();
        let want: Vec<String> = (0..20).map(|i| i.to_string()).collect();
        assert_eq!(order, want, "all 20, in order");
    });
}

/// The offline queue of a persistent session is bounded: with --max-queued-messages 10 (and
/// --max-inflight 5), of 50 messages published while offline at most 10 (+ 5 in flight) are
/// delivered on reconnect, in order, and at least half the limit. The end of the backlog is
/// found with a marker published after the reconnect (re-published until it gets through,
/// since a full queue may drop it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_queue_bounded_by_max_queued_messages() {
    bounded(secs(90), async {
        let broker = Broker::start_sharded(&["--max-queued-messages", "10", "--max-inflight", "5"]);
        let kept = offline_backlog(&broker, "oqm", 10).await;
        assert!(
            (5..=15).contains(&kept.len()),
            "kept {} of 50: {kept:?}",
            kept.len()
        );
    })
    .await;
}

/// Same with --max-queued-bytes 20000 and 1000-byte payloads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_queue_bounded_by_max_queued_bytes() {
    bounded(secs(90), async {
        let broker = Broker::start_sharded(&["--max-queued-bytes", "20000", "--max-inflight", "5"]);
        let kept = offline_backlog(&broker, "oqb", 1000).await;
        assert!(
            (5..=25).contains(&kept.len()),
            "kept {} of 50: {kept:?}",
            kept.len()
        );
    })
    .await;
}

/// Publishes 50 messages (seq + padding to `size` bytes) to an offline persistent subscriber,
/// reconnects it, and returns the sequence numbers it got before the marker (checked increasing).
async fn offline_backlog(broker: &Broker, name: &str, size: usize) -> Vec<usize> {
    let port = broker.port;
    let topic = format!("{name}/t");
    let sub_id = client_id_on_shard(&format!("{name}-sub"), 0, SHARDS);
    let mut sub = connect(port, &sub_id, false).await;
    sub.subscribe_ok(&topic, 1).await;
    sub.disconnect().await;

    let mut publ = connect(
        port,
        &client_id_on_shard(&format!("{name}-pub"), 1, SHARDS),
        true,
    )
    .await;
    for i in 0..50 {
        let mut payload = format!("{i}:").into_bytes();
        payload.resize(size.max(payload.len()), b'.');
        publ.publish(&topic, 1, false, payload).await;
    }
    broker.assert_alive();

    let mut sub = connect(port, &sub_id, false).await;
    assert!(sub.session_present());
    let mut kept = Vec::new();
    for k in 0..40 {
        publ.publish(&topic, 1, false, format!("END-{k}")).await;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
        while let Ok(Some(m)) = tokio::time::timeout_at(deadline, sub.publishes.recv()).await {
            let t = text(&m);
            if t.starts_with("END-") {
                for w in kept.windows(2) {
                    let w: &[usize] = w;
                    assert!(w[0] < w[1], "backlog out of order: {kept:?}");
                }
                return kept;
            }
            kept.push(t.split(':').next().unwrap().parse::<usize>().unwrap());
        }
    }
    panic!("no marker got through; backlog so far {kept:?}");
}

/// A subscriber that stops reading until its socket is full (the broker's sends would block, so
/// a drain task takes over the socket) and then reads again gets every message in order, and
/// messages published after the backlog still arrive (the socket is back to direct writes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reader_catches_up_in_order_and_keeps_receiving() {
    // 32 MiB: far more than the loopback socket buffers hold, well within the queue limits.
    const N: usize = 4000;
    const SIZE: usize = 8 * 1024;
    bounded(secs(120), async {
        let broker = Broker::start_sharded(&[]);
        let port = broker.port;
        let (mut sub, _) =
            RawClient::connect311(port, &client_id_on_shard("stall-sub", 0, SHARDS), true, 0);
        sub.subscribe_ok(1, &[("stall/t", 0)]);
        let (mut publ, _) =
            RawClient::connect311(port, &client_id_on_shard("stall-pub", 1, SHARDS), true, 0);
        for i in 0..N {
            let mut payload = format!("{i:08}").into_bytes();
            payload.resize(SIZE, b'x');
            publ.publish(Publish::new("stall/t", &payload));
        }
        // Packets are handled in order: once PINGRESP is back, all N were routed.
        publ.ping();
        for i in 0..N {
            let m = sub.next_publish(LONG);
            assert_eq!(m.payload.len(), SIZE);
            assert_eq!(&m.payload[..8], format!("{i:08}").as_bytes(), "order");
        }
        for k in 0..5 {
            publ.publish(Publish::new("stall/t", format!("after-{k}").as_bytes()));
            assert_eq!(sub.next_publish(LONG).text(), format!("after-{k}"));
        }
        broker.assert_alive();
    })
    .await;
}

/// A slow consumer (raw subscribers that never read their socket, one at QoS 0 and one at
/// QoS 1 that never acks) with a small --max-queued-messages does not hold up a normal
/// subscriber on the same topic: all 6000 messages of 16 KiB reach it in order. The broker's
/// memory does not grow with what the slow consumers failed to take (checked loosely: less
/// than half of the 96 MiB sent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_does_not_block_others() {
    const N: usize = 6000;
    const SIZE: usize = 16 * 1024;
    const BATCH: usize = 20;
    bounded(secs(240), async {
        let broker =
            Broker::start_sharded(&["--max-queued-messages", "50", "--max-inflight", "10"]);
        let port = broker.port;
        let (mut slow0, _) =
            RawClient::connect311(port, &client_id_on_shard("slow-q0", 0, SHARDS), true, 0);
        slow0.subscribe_ok(1, &[("slow/t", 0)]);
        let (mut slow1, _) =
            RawClient::connect311(port, &client_id_on_shard("slow-q1", 1, SHARDS), true, 0);
        slow1.subscribe_ok(1, &[("slow/t", 1)]);

        let mut o = opts(port, &client_id_on_shard("slow-normal", 1, SHARDS));
        o.set_max_packet_size(1 << 20, 1 << 20);
        let mut normal = connect_with(o).await;
        normal.subscribe_ok("slow/t", 1).await;
        let mut o = opts(port, &client_id_on_shard("slow-pub", 0, SHARDS));
        o.set_max_packet_size(1 << 20, 1 << 20);
        o.set_inflight(BATCH as u16);
        let mut publ = connect_with(o).await;

        let rss_before = broker.rss_bytes();
        // Lock-step batches: the normal subscriber's own queue never holds more than BATCH.
        for b in 0..N / BATCH {
            let payloads: Vec<Vec<u8>> = (b * BATCH..(b + 1) * BATCH)
                .map(|i| {
                    let mut v = format!("{i:08}").into_bytes();
                    v.resize(SIZE, b'x');
                    v
                })
                .collect();
            publ.publish_all("slow/t", 1, payloads).await;
            let got = recv_n(&mut normal.publishes, BATCH, secs(30)).await;
            for (k, m) in got.iter().enumerate() {
                let seq: usize = std::str::from_utf8(&m.payload[..8])
                    .unwrap()
                    .parse()
                    .unwrap();
                assert_eq!(seq, b * BATCH + k, "normal subscriber: message order");
                assert_eq!(m.payload.len(), SIZE);
            }
        }
        let rss_after = broker.rss_bytes();
        eprintln!("broker RSS before {rss_before:?} after {rss_after:?}");
        if let (Some(before), Some(after)) = (rss_before, rss_after) {
            let grown = after.saturating_sub(before);
            assert!(
                grown < 48 << 20,
                "broker RSS grew by {} MiB while slow consumers held back (sent {} MiB)",
                grown >> 20,
                (N * SIZE) >> 20
            );
        }
        broker.assert_alive();
        // A fresh pair still works.
        let mut s = connect(port, "slow-after-sub", true).await;
        s.subscribe_ok("slow/after", 1).await;
        publ.publish("slow/after", 1, false, "ok").await;
        assert_eq!(texts(&recv_n(&mut s.publishes, 1, secs(10)).await), ["ok"]);
        drop((slow0, slow1));
    })
    .await;
}
