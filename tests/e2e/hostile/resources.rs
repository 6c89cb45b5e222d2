//! What a client can make the broker hold, and the flag that bounds it (issue 9): stored
//! properties (item 3), output of a client that never reads (item 5), sockets before CONNECT
//! (item 6), sessions (item 7), outbound topic aliases (item 8).

use std::io::Write;
use std::time::{Duration, Instant};

use crate::common::dec::{parse_connack_v5, prop_num};
use crate::common::enc::{self, kind, p, Connect, Props, Publish};
use crate::common::raw::{RawClient, LONG, SHORT};
use crate::common::v5::V5;
use crate::common::{run_bounded, secs, Broker};

const MIB: u64 = 1024 * 1024;

/// A QoS 1 message queued for an offline session used to keep its 5.0 properties as slices
/// of the 64 KiB read buffer it arrived in: 3,000 messages read one by one pinned ~190 MiB.
/// Now they own compact copies, and property bytes count against `--max-queued-bytes`.
#[test]
fn queued_properties_own_their_bytes_and_count_against_the_queue() {
    run_bounded(secs(120), || {
        let broker = Broker::start(&["--shards", "1", "--sys-interval", "1"]);
        let port = broker.port;
        let mut sub = V5::connect_with(port, Connect::v5("offline-sub").clean(false).expiry(600));
        sub.send_ok(&enc::subscribe_v5(1, &Props::new(), &[("props/#", 1)]));
        sub.conn.expect_kind(kind::SUBACK, LONG);
        sub.send_ok(&enc::disconnect_v5(0, &Props::new()));
        let before = broker.rss_bytes().unwrap();
        let mut publisher = V5::connect(port, "props-pub", true);
        let props = Props::new()
            .user("source", "sensor-17")
            .str(p::CONTENT_TYPE, "application/json")
            .bin(p::CORRELATION_DATA, b"0123456789abcdef");
        for i in 0..3000u16 {
            // One at a time: each arrives in a read of its own.
            publisher.send_ok(
                &Publish::new("props/t", b"21.5")
                    .qos(1)
                    .pkid(i + 1)
                    .props(props.clone())
                    .encode(),
            );
            publisher.conn.expect_kind(kind::PUBACK, LONG);
        }
        let grown = broker.rss_bytes().unwrap().saturating_sub(before);
        assert!(
            grown < 40 * MIB,
            "3,000 queued messages grew the broker by {} MiB",
            grown / MIB
        );
        drop(broker);

        // 1,000 bytes of properties, 4 of payload: a 10,000 byte queue holds nine.
        let broker = Broker::start(&["--sys-interval", "1", "--max-queued-bytes", "10000"]);
        let port = broker.port;
        let mut sub = V5::connect_with(port, Connect::v5("small-queue").clean(false).expiry(600));
        sub.send_ok(&enc::subscribe_v5(1, &Props::new(), &[("props/#", 1)]));
        sub.conn.expect_kind(kind::SUBACK, LONG);
        sub.send_ok(&enc::disconnect_v5(0, &Props::new()));
        let mut publisher = V5::connect(port, "props-pub", true);
        let big = Props::new().user("k", &"v".repeat(1000));
        for i in 0..20u16 {
            publisher.send_ok(
                &Publish::new("props/t", b"21.5")
                    .qos(1)
                    .pkid(i + 1)
                    .props(big.clone())
                    .encode(),
            );
            publisher.conn.expect_kind(kind::PUBACK, LONG);
        }
        let dropped = broker.sys_figure(
            "$SYS/broker/publish/messages/dropped/queue_full",
            LONG,
            |n| n >= 11,
        );
        assert_eq!(dropped, 11, "nine fit");
    });
}

/// `--max-retained-messages`: past it, new topics are delivered but not retained, and counted.
#[test]
fn the_retained_store_is_bounded() {
    run_bounded(secs(60), || {
        let broker =
            Broker::start_sharded(&["--sys-interval", "1", "--max-retained-messages", "2"]);
        let (mut publisher, _) = RawClient::connect311(broker.port, "retainer", true, 60);
        for t in ["r/1", "r/2", "r/3"] {
            publisher.publish(Publish::new(t, b"v").qos(1).pkid(1).retain(true));
        }
        publisher.publish(Publish::new("r/1", b"replaced").qos(1).pkid(1).retain(true));
        let (mut late, _) = RawClient::connect311(broker.port, "late", true, 60);
        late.subscribe(1, &[("r/#", 0)]);
        let mut got: Vec<String> = (0..2)
            .map(|_| {
                let m = late.next_publish(LONG);
                format!("{}={}", m.topic, m.text())
            })
            .collect();
        got.sort();
        assert_eq!(got, ["r/1=replaced", "r/2=v"]);
        assert!(late.read_packet(Duration::from_millis(300)).is_err());
        broker.sys_figure("$SYS/broker/retained messages/refused", LONG, |n| n == 1);
    });
}

/// Writes PINGREQs from another thread as fast as the socket takes them, never reading.
fn flood_pings(c: &RawClient, bytes: usize) -> std::thread::JoinHandle<()> {
    let mut stream = c.stream().try_clone().unwrap();
    stream.set_write_timeout(Some(secs(30))).unwrap();
    std::thread::spawn(move || {
        let chunk = enc::PINGREQ.repeat(32 * 1024);
        let mut sent = 0;
        while sent < bytes && stream.write_all(&chunk).is_ok() {
            sent += chunk.len();
        }
    })
}

/// A client that writes but never reads: past a high-water mark on its output the broker
/// stops reading it, so the PINGRESPs do not pile up in memory, and after `--write-timeout`
/// without progress the connection is closed, even if the client reads a byte now and then.
/// A bystander keeps working meanwhile.
#[test]
fn a_client_that_never_reads_is_bounded_and_closed() {
    run_bounded(secs(120), || {
        let broker = Broker::start(&[
            "--shards",
            "1",
            "--sys-interval",
            "1",
            "--write-timeout",
            "2",
        ]);
        let port = broker.port;
        let (mut bystander, _) = RawClient::connect311(port, "bystander", true, 600);
        let before = broker.rss_bytes().unwrap();

        let (deaf, _) = RawClient::connect311(port, "deaf", true, 60);
        let flood = flood_pings(&deaf, 64 * MIB as usize);
        let (mut trickler, _) = RawClient::connect311(port, "trickler", true, 60);
        let trickle = flood_pings(&trickler, 64 * MIB as usize);
        let started = Instant::now();
        // The trickler reads a byte every 100 ms, which must not keep it alive.
        let trickler_stream = trickler.stream().try_clone().unwrap();
        trickler_stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let figure = || broker.sys_figure("$SYS/broker/connections/write_timeouts", LONG, |_| true);
        while figure() < 2 {
            assert!(started.elapsed() < secs(30), "not closed within 30 s");
            let mut byte = [0u8; 1];
            let _ = std::io::Read::read(&mut &trickler_stream, &mut byte);
            bystander.ping();
        }
        assert_eq!(figure(), 2, "the deaf client and the trickler");
        eprintln!("both closed after {:?}", started.elapsed());
        let grown = broker.rss_bytes().unwrap().saturating_sub(before);
        assert!(
            grown < 16 * MIB,
            "two deaf clients grew the broker by {} MiB",
            grown / MIB
        );
        flood.join().unwrap();
        trickle.join().unwrap();
        eprintln!("floods ended after {:?}", started.elapsed());
        bystander.ping();
        trickler.expect_closed(LONG, "closed by the broker");
        drop(deaf);
    });
}

/// Before CONNECT: a CONNECT of 8 MiB sent in small pieces is read in time linear in its size
/// (the buffer used to be copied again after every 512-byte read); sockets that have not sent
/// CONNECT count against `--max-connections`; `--connect-timeout` closes silent ones.
#[test]
fn sockets_before_connect_are_bounded() {
    run_bounded(secs(120), || {
        let broker = Broker::start(&[
            "--shards",
            "1",
            "--max-connections",
            "3",
            "--connect-timeout",
            "2",
            "--max-packet-size",
            "16777216",
        ]);
        let port = broker.port;
        // 128 user properties of 64 KiB: 8 MiB.
        let mut props = Props::new();
        for _ in 0..128 {
            props = props.user("k", &"v".repeat(65_000));
        }
        let connect = Connect::v5("huge-connect").props(props).encode();
        let mut huge = RawClient::tcp(port);
        let started = Instant::now();
        for piece in connect.chunks(1024) {
            huge.send_ok(piece);
        }
        let ack = huge.expect_kind(kind::CONNACK, secs(20));
        assert_eq!(parse_connack_v5(&ack).1, 0);
        eprintln!(
            "an 8 MiB CONNECT in 1 KiB pieces took {:?}",
            started.elapsed()
        );
        drop(huge);

        let silent: Vec<RawClient> = (0..3).map(|_| RawClient::tcp(port)).collect();
        let (mut refused, ack) = V5::try_connect(port, &Connect::v5("one-too-many"));
        assert_eq!(parse_connack_v5(&ack.expect("CONNACK")).1, 0x97);
        refused.expect_closed(SHORT, "after 0x97");
        for mut s in silent {
            s.expect_closed(secs(8), "a socket that sent no CONNECT within 2 s");
        }
        let (mut late, _) = RawClient::connect311(port, "late", true, 60);
        late.ping();
    });
}

/// Sessions: `--persistent-client-expiration` ends a 3.1.1 persistent session once its client
/// is gone that long (its queued messages counted as dropped), `--max-session-expiry` caps
/// what a 5.0 client asks (and CONNACK says so), `--max-sessions` refuses new sessions.
#[test]
fn sessions_are_bounded() {
    run_bounded(secs(60), || {
        let broker =
            Broker::start_sharded(&["--sys-interval", "1", "--persistent-client-expiration", "2"]);
        let port = broker.port;
        let (mut s, _) = RawClient::connect311(port, "forever", false, 60);
        s.subscribe(1, &[("queued/#", 1)]);
        s.disconnect();
        let (mut publisher, _) = RawClient::connect311(port, "exp-pub", true, 60);
        publisher.publish(Publish::new("queued/a", b"1").qos(1).pkid(1));
        publisher.publish(Publish::new("queued/b", b"2").qos(1).pkid(2));
        broker.sys_figure(
            "$SYS/broker/publish/messages/dropped/session_expired",
            LONG,
            |n| n == 2,
        );
        let (s, present) = RawClient::connect311(port, "forever", false, 60);
        assert!(!present, "expired after 2 s away");

        drop(s);

        let broker = Broker::start(&["--max-session-expiry", "5", "--max-sessions", "2"]);
        let port = broker.port;
        let c = V5::connect_with(port, Connect::v5("asks-forever").expiry(u32::MAX));
        assert_eq!(prop_num(&c.connack_props, p::SESSION_EXPIRY), Some(5));
        let (d, _) = RawClient::connect311(port, "second", false, 60);
        let (_e, ack) = V5::try_connect(port, &Connect::v5("third"));
        assert_eq!(parse_connack_v5(&ack.expect("CONNACK")).1, 0x97);
        let (_f, ack) = RawClient::connect_raw(port, &Connect::v311("fourth").encode());
        assert_eq!(ack.expect("CONNACK").bytes(), [0x20, 2, 0, 3]);
        drop((c, d));
    });
}

/// Outbound topic aliases hold at most a byte budget of topics (16 KiB): after 40 topics of
/// 1,000 bytes, the first has been evicted and comes in full again, though the client allows
/// 1,000 aliases; a recent one still comes as its alias alone.
#[test]
fn outbound_topic_aliases_are_bounded_in_bytes() {
    run_bounded(secs(60), || {
        let broker = Broker::start(&["--shards", "1"]);
        let port = broker.port;
        let conn = Connect::v5("alias-sub").props(Props::new().u16(p::TOPIC_ALIAS_MAXIMUM, 1000));
        let mut sub = V5::connect_with(port, conn);
        sub.send_ok(&enc::subscribe_v5(1, &Props::new(), &[("long/#", 0)]));
        sub.conn.expect_kind(kind::SUBACK, LONG);
        let topic = |i: usize| format!("long/{i:02}/{}", "x".repeat(990));
        let (mut publisher, _) = RawClient::connect311(port, "alias-pub", true, 60);
        for i in (0..40).chain([39, 0]) {
            publisher.publish(Publish::new(topic(i), b"v").qos(1).pkid(1));
        }
        let got = sub.expect_pubs(42, LONG);
        assert!(
            got[..40].iter().all(|m| !m.wire_topic.is_empty()),
            "new topics in full"
        );
        assert!(got[40].wire_topic.is_empty(), "a recent topic by its alias");
        assert_eq!(got[41].topic, topic(0));
        assert!(
            !got[41].wire_topic.is_empty(),
            "the first topic was evicted: sent in full again"
        );
    });
}
