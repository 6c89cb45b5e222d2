//! Bad input. Every offending connection must be closed, and only that one: an idle raw
//! connection and a publisher/subscriber pair that were connected before keep working, a fresh
//! pair works afterwards, and the broker process stays up.

use std::time::Duration;

use crate::common::dec::RawPacket;
use crate::common::enc::{self, kind, Connect, Publish, Will};
use crate::common::raw::RawClient;
use crate::common::{
    bounded, client_id_on_shard, connect, recv_one, secs, text, unique, Broker, Mqtt, SHARDS,
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
