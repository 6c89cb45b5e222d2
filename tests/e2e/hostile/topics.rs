//! Topics and subscriptions a hostile client can send: deep topics (issue 9, item 1), and
//! SUBSCRIBEs that would stall a shard (item 4): duplicate filters, too many subscriptions,
//! a subscription to `#` over a large retained set.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::common::dec::{decode_disconnect, decode_suback};
use crate::common::enc::{self, kind, Props, Publish};
use crate::common::raw::{RawClient, LONG};
use crate::common::v5::V5;
use crate::common::{run_bounded, secs, Broker};

fn levels(n: usize) -> String {
    vec!["l"; n].join("/")
}

/// One SUBSCRIBE to a filter of 65,000 levels used to overflow the shard's stack and abort
/// the process. Now: refused per filter at the limit (5.0: 0x8F; 3.1.1: 0x80), names too deep
/// close the connection (5.0: DISCONNECT 0x90), and everything at the limit works.
#[test]
fn deep_topics_are_refused_and_the_broker_stays_up() {
    run_bounded(secs(60), || {
        let broker = Broker::start(&[]);
        let port = broker.port;
        let at_limit = levels(128);
        let beyond = levels(129);
        let far = "/".repeat(65_000);

        let mut c = V5::connect(port, "deep-v5", true);
        c.send_ok(&enc::subscribe_v5(
            1,
            &Props::new(),
            &[(&at_limit, 0), (&beyond, 0), (&far, 0)],
        ));
        let ack = c.conn.expect_kind(kind::SUBACK, LONG);
        assert_eq!(decode_suback(&ack).codes, [0x00, 0x8F, 0x8F]);

        let (mut old, _) = RawClient::connect311(port, "deep-v4", true, 60);
        assert_eq!(old.subscribe(1, &[(&far, 0)]), [0x80]);
        // The connection lives on, and so does the broker.
        old.ping();

        let (mut publisher, _) = RawClient::connect311(port, "deep-pub", true, 60);
        publisher.publish(Publish::new(&at_limit, b"at the limit").qos(1).pkid(1));
        assert_eq!(c.expect_pub(LONG).text(), "at the limit");

        c.send_ok(&Publish::new(&beyond, b"too deep").v5().encode());
        let closed = c.conn.expect_closed(LONG, "after a too deep topic name");
        let disconnect = closed
            .iter()
            .find(|p| p.kind() == kind::DISCONNECT)
            .expect("a DISCONNECT");
        assert_eq!(decode_disconnect(disconnect).0, 0x90, "Topic Name invalid");

        publisher.send_ok(&Publish::new(far.as_bytes(), b"x").encode());
        publisher.expect_closed(LONG, "3.1.1: a too deep name closes the connection");
        broker.assert_alive();
        old.ping();
    });
}

/// `--max-subscriptions`: the one past the limit is refused (5.0: 0x97; 3.1.1: 0x80), a
/// filter given twice in one SUBSCRIBE is one subscription (and gets its code twice), and
/// replacing a subscription is not a new one.
#[test]
fn subscriptions_per_client_are_capped_and_duplicates_collapse() {
    run_bounded(secs(60), || {
        let broker = Broker::start(&["--max-subscriptions", "3"]);
        let mut c = V5::connect(broker.port, "many-subs", true);
        c.send_ok(&enc::subscribe_v5(
            1,
            &Props::new(),
            &[("a", 1), ("a", 1), ("b", 1), ("c", 1), ("d", 1), ("a", 0)],
        ));
        let ack = c.conn.expect_kind(kind::SUBACK, LONG);
        assert_eq!(decode_suback(&ack).codes, [0, 0, 1, 1, 0x97, 0]);
        let (mut old, _) = RawClient::connect311(broker.port, "many-subs-v4", true, 60);
        assert_eq!(old.subscribe(1, &[("a", 1), ("b", 1), ("c", 1)]), [1, 1, 1]);
        assert_eq!(old.subscribe(2, &[("d", 1), ("a", 0)]), [0x80, 0]);
    });
}

/// While one client subscribes to `#` over 100,000 retained messages, the shard goes on
/// serving: the PINGREQ the subscriber sends right behind its SUBSCRIBE is answered long before
/// the walk ends (an order in one byte stream, so no clock decides it), and another client's
/// pings on the same shard are answered meanwhile. The subscriber gets every retained message
/// exactly once, though it asked for `#` twice in one SUBSCRIBE.
#[test]
fn a_large_retained_set_does_not_stall_the_shard() {
    run_bounded(secs(180), || {
        const RETAINED: usize = 100_000;
        let broker = Broker::start(&["--shards", "1"]);
        let port = broker.port;
        let (mut publisher, _) = RawClient::connect311(port, "retainer", true, 60);
        let mut batch = Vec::new();
        for i in 0..RETAINED {
            batch.extend(
                Publish::new(
                    format!("fleet/{}/{}", i / 1000, i % 1000).as_bytes(),
                    b"reading",
                )
                .retain(true)
                .encode(),
            );
        }
        publisher.send_ok(&batch);
        // A QoS 1 round trip after them: all are stored.
        publisher.publish(
            Publish::new("fleet/done", b"last")
                .qos(1)
                .pkid(1)
                .retain(true),
        );

        let (mut pinger, _) = RawClient::connect311(port, "pinger", true, 60);
        let (subscriber, _) = RawClient::connect311(port, "everything", true, 60);
        let mut stream = subscriber.stream().try_clone().unwrap();
        let mut request = enc::subscribe(1, &[("#", 0), ("#", 0)]);
        request.extend_from_slice(&enc::PINGREQ);
        stream.write_all(&request).unwrap();
        let reader = std::thread::spawn(move || count_retained(subscriber));

        let mut slowest = Duration::ZERO;
        let mut pings = 0;
        while !reader.is_finished() {
            let sent = Instant::now();
            pinger.ping();
            slowest = slowest.max(sent.elapsed());
            pings += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
        let (suback, retained, pingresp_after) = reader.join().unwrap();
        eprintln!(
            "{pings} pings while the retained set went out; slowest {slowest:?}; the \
             subscriber's own PINGRESP after {pingresp_after:?} retained messages"
        );
        assert_eq!(suback, [0, 0]);
        assert_eq!(retained, RETAINED + 1, "each retained message once");
        // A walk in one go would answer the PINGREQ behind the SUBSCRIBE after all of them.
        let pingresp_after = pingresp_after.expect("a PINGRESP");
        assert!(
            pingresp_after < RETAINED / 10,
            "the PINGREQ behind the SUBSCRIBE waited for {pingresp_after} retained messages"
        );
        assert!(pings > 3, "the walk took {pings} pings");
    });
}

/// Reads a subscriber's SUBACK and counts retained PUBLISHes until `fleet/done` arrived and
/// the stream has gone quiet.
/// The SUBACK's codes, the retained messages received and how many of them came before the
/// PINGRESP.
fn count_retained(mut c: RawClient) -> (Vec<u8>, usize, Option<usize>) {
    let mut suback = Vec::new();
    let mut retained = 0;
    let mut pingresp_after = None;
    let mut done = false;
    loop {
        let timeout = if done { secs(1) } else { secs(60) };
        match c.read_packet(timeout) {
            Ok(p) if p.kind() == kind::SUBACK => suback = p.suback_codes(),
            Ok(p) if p.kind() == kind::PINGRESP => pingresp_after = Some(retained),
            Ok(p) if p.kind() == kind::PUBLISH => {
                let p = p.publish();
                assert!(p.retain);
                retained += 1;
                done |= p.topic == "fleet/done";
            }
            Ok(p) => panic!("unexpected {p:?}"),
            Err(_) if done => return (suback, retained, pingresp_after),
            Err(e) => panic!("after {retained} retained messages: {e:?}"),
        }
    }
}
