//! MQTT 5 CONNACK properties from the command line flags, Server Keep Alive, Response
//! Information, and the reason codes of server-initiated DISCONNECTs (takeover, keep alive
//! timeout, SIGTERM) and of refused connections (quota).

use std::time::Instant;

use crate::common;
use crate::common::dec::{parse_connack_v5, prop_num, prop_str};
use crate::common::enc::{kind, p, Connect, Props, Publish};
use crate::common::raw::{RawClient, LONG, SHORT};
use crate::common::v5::V5;
use crate::common::{client_id_on_shard, millis, run_bounded, secs, Broker, SHARDS};

/// Defaults: Maximum Packet Size 1048576, Topic Alias Maximum 64, Receive Maximum 1024; no
/// Maximum QoS, no Retain / Wildcard / Subscription Identifier / Shared Available (all
/// supported), no Assigned Client Identifier (id given), no Server Keep Alive, no Response
/// Information (not requested).
#[test]
fn connack_properties_defaults() {
    run_bounded(secs(30), || {
        let broker = Broker::start_sharded(&[]);
        let c = V5::connect(broker.port, "props-default", true);
        let props = &c.connack_props;
        assert_eq!(
            prop_num(props, p::MAXIMUM_PACKET_SIZE),
            Some(1_048_576),
            "{props:?}"
        );
        assert_eq!(
            prop_num(props, p::TOPIC_ALIAS_MAXIMUM),
            Some(64),
            "{props:?}"
        );
        assert_eq!(prop_num(props, p::RECEIVE_MAXIMUM), Some(1024), "{props:?}");
        for absent in [
            p::MAXIMUM_QOS,
            p::RETAIN_AVAILABLE,
            p::WILDCARD_SUB_AVAILABLE,
            p::SUB_ID_AVAILABLE,
            p::SHARED_SUB_AVAILABLE,
            p::ASSIGNED_CLIENT_ID,
            p::SERVER_KEEP_ALIVE,
            p::RESPONSE_INFO,
        ] {
            assert_eq!(
                prop_num_or_str(props, absent),
                None,
                "property 0x{absent:02X} must be absent by default: {props:?}"
            );
        }
        for (id, _) in props {
            let n = props.iter().filter(|(j, _)| j == id).count();
            assert!(
                n == 1 || *id == p::USER_PROPERTY,
                "property 0x{id:02X} repeated: {props:?}"
            );
        }
    });
}

fn prop_num_or_str(props: &[(u8, common::dec::PropValue)], id: u8) -> Option<String> {
    common::dec::prop(props, id).map(|v| format!("{v:?}"))
}

/// Every flag shows up in CONNACK.
#[test]
fn connack_properties_follow_flags() {
    run_bounded(secs(30), || {
        let broker = Broker::start_sharded(&[
            "--topic-alias-maximum",
            "10",
            "--receive-maximum",
            "20",
            "--max-packet-size",
            "5000",
            "--max-qos",
            "1",
            "--no-retain",
            "--no-wildcard-subscriptions",
            "--no-subscription-identifiers",
            "--no-shared-subscriptions",
        ]);
        let c = V5::connect(broker.port, "props-flags", true);
        let props = &c.connack_props;
        let want = [
            (p::MAXIMUM_PACKET_SIZE, 5000),
            (p::TOPIC_ALIAS_MAXIMUM, 10),
            (p::RECEIVE_MAXIMUM, 20),
            (p::MAXIMUM_QOS, 1),
            (p::RETAIN_AVAILABLE, 0),
            (p::WILDCARD_SUB_AVAILABLE, 0),
            (p::SUB_ID_AVAILABLE, 0),
            (p::SHARED_SUB_AVAILABLE, 0),
        ];
        for (id, v) in want {
            assert_eq!(
                prop_num(props, id),
                Some(v),
                "property 0x{id:02X}: {props:?}"
            );
        }
        // --max-qos 0 as well.
        let broker0 = Broker::start_sharded(&["--max-qos", "0"]);
        let c = V5::connect(broker0.port, "props-qos0", true);
        assert_eq!(c.connack_num(p::MAXIMUM_QOS), Some(0));
    });
}

/// A 3.1.1 CONNACK stays 2 bytes whatever the v5 flags.
#[test]
fn v311_connack_unchanged_by_v5_flags() {
    run_bounded(secs(30), || {
        let broker =
            Broker::start_sharded(&["--max-qos", "1", "--no-retain", "--max-keepalive", "5"]);
        let (mut c, sp) = RawClient::connect311(broker.port, "v311-plain", true, 60);
        assert!(!sp);
        c.ping();
    });
}

/// Empty client id: Assigned Client Identifier present.
#[test]
fn assigned_client_identifier_for_empty_id() {
    run_bounded(secs(30), || {
        let broker = Broker::start_sharded(&[]);
        let c = V5::connect(broker.port, "", true);
        let id =
            prop_str(&c.connack_props, p::ASSIGNED_CLIENT_ID).expect("Assigned Client Identifier");
        assert!(!id.is_empty());
    });
}

/// Request Response Information = 1 -> Response Information "ringmq/response/<client id>";
/// = 0 or absent -> none.
#[test]
fn response_information_only_when_requested() {
    run_bounded(secs(30), || {
        let broker = Broker::start_sharded(&[]);
        let c = V5::connect_with(
            broker.port,
            Connect::v5("rri-yes").props(Props::new().byte(p::REQUEST_RESPONSE_INFO, 1)),
        );
        assert_eq!(
            prop_str(&c.connack_props, p::RESPONSE_INFO).as_deref(),
            Some("ringmq/response/rri-yes")
        );
        let c = V5::connect_with(
            broker.port,
            Connect::v5("rri-no").props(Props::new().byte(p::REQUEST_RESPONSE_INFO, 0)),
        );
        assert_eq!(prop_str(&c.connack_props, p::RESPONSE_INFO), None);
        let c = V5::connect(broker.port, "rri-absent", true);
        assert_eq!(prop_str(&c.connack_props, p::RESPONSE_INFO), None);
    });
}

/// --max-keepalive 2: a client asking for 60 or for 0 gets Server Keep Alive 2, and the broker
/// enforces it: the silent client is disconnected with 0x8D well before its own 60 s (bound
/// 12 s). A client asking for 1 gets no Server Keep Alive other than 1.
#[test]
fn max_keepalive_sets_server_keep_alive_and_is_enforced() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&["--max-keepalive", "2"]);
        let mut a = V5::connect_with(broker.port, Connect::v5("ska-60").keepalive(60));
        assert_eq!(
            a.connack_num(p::SERVER_KEEP_ALIVE),
            Some(2),
            "{:?}",
            a.connack_props
        );
        let mut z = V5::connect_with(broker.port, Connect::v5("ska-0").keepalive(0));
        assert_eq!(
            z.connack_num(p::SERVER_KEEP_ALIVE),
            Some(2),
            "{:?}",
            z.connack_props
        );
        let one = V5::connect_with(broker.port, Connect::v5("ska-1").keepalive(1));
        if let Some(v) = one.connack_num(p::SERVER_KEEP_ALIVE) {
            assert_eq!(v, 1, "client asked for less than the maximum");
        }
        let t = Instant::now();
        let (rc, _) = a.expect_disconnect(secs(12), "silent client, server keep alive 2 s");
        assert_eq!(rc, 0x8D, "Keep alive timeout");
        assert!(
            t.elapsed() >= millis(1500),
            "closed after {:?}, before the keep alive",
            t.elapsed()
        );
        let (rc, _) = z.expect_disconnect(secs(12), "keep alive 0 replaced by 2 s");
        assert_eq!(rc, 0x8D);
    });
}

/// Keep alive 1 s and silence: DISCONNECT 0x8D, then close. A pinging client stays.
#[test]
fn keepalive_timeout_disconnects_0x8d() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let mut pinger = V5::connect_with(broker.port, Connect::v5("ka-ping").keepalive(1));
        let mut silent = V5::connect_with(broker.port, Connect::v5("ka-silent").keepalive(1));
        // The pinger pings every 300 ms for 4 s on its own thread while the silent one waits.
        let pinging = std::thread::spawn(move || {
            let until = Instant::now() + secs(4);
            while Instant::now() < until {
                pinger.ping();
                std::thread::sleep(millis(300));
            }
            pinger
        });
        let (rc, _) = silent.expect_disconnect(secs(10), "keep alive 1 s, silent");
        assert_eq!(rc, 0x8D);
        let mut pinger = pinging.join().expect("pinging client was disconnected");
        pinger.ping();
        assert!(pinger.log.iter().all(|pk| pk.kind() != kind::DISCONNECT));
    });
}

/// Takeover: the old connection gets DISCONNECT 0x8E and is closed; repeated so that the two
/// connections land on different shards (the kernel spreads accepts) as well as the same one;
/// client ids homed on both shards. With a session the new connection gets session present.
#[test]
fn takeover_sends_0x8e_to_old_connection() {
    run_bounded(secs(90), || {
        let broker = Broker::start_sharded(&[]);
        for i in 0..8 {
            let id = client_id_on_shard(&format!("to-{i}"), i % SHARDS, SHARDS);
            let mut a = V5::connect_with(broker.port, Connect::v5(&id).expiry(60));
            a.sub_ok(&format!("to/{i}"), 1);
            let mut b = V5::connect_with(broker.port, Connect::v5(&id).clean(false).expiry(60));
            assert!(b.session_present, "{id}: session taken over");
            let (rc, _) =
                a.expect_disconnect(SHORT, &format!("{id}: old connection after takeover"));
            assert_eq!(rc, 0x8E, "{id}: Session taken over");
            // The subscription moved with the session.
            b.publish(Publish::new(format!("to/{i}"), b"still-here").qos(1));
            assert_eq!(b.expect_pub(LONG).text(), "still-here");
        }
    });
}

/// SIGTERM: every v5 client gets DISCONNECT 0x8B (Server shutting down) and is closed; a 3.1.1
/// client is just closed; the process exits with status 0 within a few seconds.
#[test]
fn sigterm_sends_0x8b_and_exits_0() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let mut v5s: Vec<V5> = (0..4)
            .map(|i| {
                V5::connect(
                    broker.port,
                    &client_id_on_shard(&format!("term-{i}"), i % SHARDS, SHARDS),
                    true,
                )
            })
            .collect();
        for c in &mut v5s {
            c.ping();
        }
        let (mut old, _) = RawClient::connect311(broker.port, "term-311", true, 60);
        old.ping();
        broker.signal("TERM");
        for c in &mut v5s {
            let (rc, _) = c.expect_disconnect(secs(10), "broker stopped with SIGTERM");
            assert_eq!(rc, 0x8B, "{}: Server shutting down", c.id);
        }
        let got = old.expect_closed(secs(10), "3.1.1 client on SIGTERM");
        assert!(
            got.is_empty(),
            "nothing (no DISCONNECT) to a 3.1.1 client: {got:?}"
        );
        let st = broker
            .wait_exit(secs(10))
            .expect("broker still running 10 s after SIGTERM");
        assert_eq!(st.code(), Some(0), "exit status after SIGTERM: {st}");
    });
}

/// --max-connections 2 (one shard): a third v5 client gets CONNACK 0x97 (Quota exceeded), a
/// 3.1.1 client CONNACK 0x03; once a connection is gone a new one is accepted again.
#[test]
fn max_connections_quota_exceeded() {
    run_bounded(secs(60), || {
        let broker = Broker::start(&["--shards", "1", "--max-connections", "2"]);
        let mut a = V5::connect(broker.port, "quota-a", true);
        let b = V5::connect(broker.port, "quota-b", true);
        let (mut c, ack) = V5::try_connect(broker.port, &Connect::v5("quota-c"));
        let (sp, rc, _) = parse_connack_v5(&ack.expect("CONNACK for the third connection"));
        assert_eq!((sp, rc), (false, 0x97), "Quota exceeded");
        c.expect_closed(SHORT, "after CONNACK 0x97");
        let (mut d, ack) = RawClient::connect_raw(broker.port, &Connect::v311("quota-d").encode());
        let ack = ack.expect("CONNACK for the 3.1.1 client");
        assert_eq!(
            ack.bytes(),
            vec![0x20, 0x02, 0x00, 0x03],
            "3.1.1: Server unavailable"
        );
        d.expect_closed(SHORT, "after CONNACK 0x03");
        a.ping();
        b.disconnect();
        // The slot frees up (the close may take a moment to be noticed): retry for a while.
        let deadline = Instant::now() + secs(10);
        loop {
            let (_conn, ack) = V5::try_connect(broker.port, &Connect::v5("quota-e"));
            let rc = parse_connack_v5(&ack.expect("CONNACK")).1;
            if rc == 0 {
                break;
            }
            assert_eq!(rc, 0x97);
            assert!(
                Instant::now() < deadline,
                "slot never freed after a disconnect"
            );
            std::thread::sleep(millis(100));
        }
    });
}
