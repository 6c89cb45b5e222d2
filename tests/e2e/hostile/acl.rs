//! Authorization on every path a message can take (issue 9): ACL substitution that cannot be
//! widened (item 2), wills checked as PUBLISHes (item 9), shared subscriptions and Subscription
//! Identifiers (item 10), resumed sessions, assigned client ids and sessions bound to user
//! names (item 11).

use crate::common;
use crate::common::dec::{decode_ack, decode_disconnect, parse_connack_v5};
use crate::common::enc::{self, kind, p, Connect, Props, Publish, Will};
use crate::common::raw::{RawClient, LONG, SHORT};
use crate::common::v5::V5;
use crate::common::{run_bounded, secs, unique, Broker};

fn write_temp(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(unique(name));
    std::fs::write(&path, text).unwrap();
    path
}

/// With `pattern readwrite devices/%c/#`, a client whose id is `+` (or holds `#` or `/`) gets
/// nothing from the pattern: it used to be able to subscribe to `devices/+/#` and read every
/// device (Mosquitto's CVE-2017-7650). Its own devices topic works for a normal id. Starting
/// with an ACL file and no password file says that user names are unauthenticated.
#[test]
fn a_client_id_cannot_widen_an_acl_pattern() {
    run_bounded(secs(60), || {
        let acl = write_temp(
            "acl-pattern",
            "pattern readwrite devices/%c/#\ntopic read public/#\n",
        );
        let broker = Broker::start(&["--acl-file", acl.to_str().unwrap()]);
        let port = broker.port;
        assert!(
            broker
                .log_tail()
                .contains("user names are not authenticated"),
            "{}",
            broker.log_tail()
        );
        let (mut device, _) = RawClient::connect311(port, "d1", true, 60);
        assert_eq!(device.subscribe(1, &[("devices/d1/#", 1)]), [1]);
        for id in ["+", "#", "a/b", "d1/+"] {
            let (mut thief, _) = RawClient::connect311(port, id, true, 60);
            let codes = thief.subscribe(1, &[("devices/+/#", 0), ("devices/#", 0), ("#", 0)]);
            assert_eq!(codes, [0x80, 0x80, 0x80], "client id {id:?}");
            // Nor may it write there (3.1.1 cannot say so: acked, not routed).
            thief.publish(Publish::new("devices/d1/cmd", b"forged").qos(1).pkid(2));
        }
        let (mut other, _) = RawClient::connect311(port, "d2", true, 60);
        other.publish(Publish::new("devices/d1/cmd", b"not d2's").qos(1).pkid(1));
        // d1's own topic works: its marker is the first thing it reads.
        device.publish(Publish::new("devices/d1/marker", b"marker").qos(1).pkid(1));
        let got = device.next_publish(LONG);
        assert_eq!(
            (got.topic.as_str(), got.text().as_str()),
            ("devices/d1/marker", "marker")
        );
        let _ = std::fs::remove_file(acl);
        broker.assert_alive();
    });
}

/// A will is a PUBLISH made later: `$SYS`, `--no-retain`, `--max-qos`, the topic-level limit
/// and the ACL refuse it at CONNECT, with the code a PUBLISH would get (5.0) or 5 / 3 (3.1.1).
/// A retained will used to forge `$SYS` figures and bypass `--no-retain`.
#[test]
fn wills_pass_the_checks_of_a_publish() {
    run_bounded(secs(60), || {
        let acl = write_temp(
            "acl-wills",
            "pattern readwrite devices/%c/#\ntopic readwrite w/#\n",
        );
        let broker = Broker::start(&[
            "--no-retain",
            "--max-qos",
            "1",
            "--max-topic-levels",
            "8",
            "--acl-file",
            acl.to_str().unwrap(),
        ]);
        let port = broker.port;
        let will =
            |topic: &str, qos: u8, retain: bool| Will::new(topic, b"gone").qos(qos).retain(retain);
        let deep = ["w"; 9].join("/");
        let cases = [
            (will("$SYS/broker/uptime", 0, false), 0x87),
            (will("w/retained", 0, true), 0x9A),
            (will("w/qos2", 2, false), 0x9B),
            (will(&deep, 0, false), 0x90),
            (will("devices/other/state", 0, false), 0x87),
            (will("devices/willer-5/state", 1, false), 0x00),
        ];
        for (i, (w, code)) in cases.into_iter().enumerate() {
            let topic = String::from_utf8_lossy(&w.topic).into_owned();
            let (_c, ack) = V5::try_connect(port, &Connect::v5(format!("willer-{i}")).will(w));
            let rc = parse_connack_v5(&ack.expect("CONNACK")).1;
            assert_eq!(rc, code, "will on {topic}");
        }
        let connect = Connect::v311("willer-v4")
            .will(Will::new("$SYS/broker/clients/connected", b"999"))
            .encode();
        let (_c, ack) = RawClient::connect_raw(port, &connect);
        assert_eq!(ack.expect("CONNACK").bytes(), [0x20, 2, 0, 5]);
        let _ = std::fs::remove_file(acl);
    });
}

/// A shared group gives each message to a member that may read it: one member's deny rule
/// sends its share to the other, and a message no member may read is counted as dropped, not
/// lost silently. A Subscription Identifier in a client's PUBLISH is a protocol error
/// (MQTT-3.3.4-6): DISCONNECT 0x82, not forwarded.
#[test]
fn shared_groups_respect_the_acl_and_publishes_carry_no_subscription_id() {
    run_bounded(secs(60), || {
        let acl = write_temp(
            "acl-shared",
            "topic read jobs/#\ntopic write #\ntopic deny jobs/forbidden\n\
             pattern deny jobs/not-%c\ntopic read $SYS/#\n",
        );
        let broker = Broker::start(&[
            "--shards",
            "1",
            "--sys-interval",
            "1",
            "--acl-file",
            acl.to_str().unwrap(),
        ]);
        let port = broker.port;
        let mut a = V5::connect(port, "a", true);
        let mut b = V5::connect(port, "b", true);
        for m in [&mut a, &mut b] {
            m.send_ok(&enc::subscribe_v5(
                1,
                &Props::new(),
                &[("$share/g/jobs/#", 0)],
            ));
            m.conn.expect_kind(kind::SUBACK, LONG);
        }
        let mut publisher = V5::connect(port, "boss", true);
        for i in 0..6 {
            publisher.send_ok(
                &Publish::new("jobs/not-a", format!("{i}").as_bytes())
                    .qos(1)
                    .pkid(i + 1)
                    .v5()
                    .encode(),
            );
            let ack = publisher.conn.expect_kind(kind::PUBACK, LONG);
            assert_eq!(decode_ack(&ack).code(), 0, "someone may read it");
        }
        assert_eq!(b.expect_pubs(6, LONG).len(), 6, "all go to b");
        assert!(a.try_pub(std::time::Duration::from_millis(300)).is_none());
        publisher.send_ok(&Publish::new("jobs/forbidden", b"x").v5().encode());
        broker.sys_figure(
            "$SYS/broker/publish/messages/dropped/not_authorized",
            LONG,
            |n| n >= 1,
        );

        let mut forger = V5::connect(port, "forger", true);
        let props = Props::new().varint(p::SUBSCRIPTION_ID, 5);
        forger.send_ok(
            &Publish::new("jobs/x", b"forged")
                .props(props.clone())
                .encode(),
        );
        let closed = forger
            .conn
            .expect_closed(LONG, "after a PUBLISH with a subscription id");
        let d = closed
            .iter()
            .find(|p| p.kind() == kind::DISCONNECT)
            .expect("DISCONNECT");
        assert_eq!(decode_disconnect(d).0, 0x82, "Protocol Error");
        assert!(b.try_pub(std::time::Duration::from_millis(300)).is_none());
        let _ = std::fs::remove_file(acl);
    });
}

/// Messages queued for a persistent session pass the ACL in force when it resumes: after a
/// reload that takes a topic away, they are dropped (and counted), not delivered.
#[test]
fn a_resumed_session_gets_only_what_it_may_read_now() {
    run_bounded(secs(60), || {
        let acl = write_temp(
            "acl-resume",
            "topic read t/#\ntopic write t/#\ntopic read $SYS/#\n",
        );
        let broker = Broker::start(&["--sys-interval", "1", "--acl-file", acl.to_str().unwrap()]);
        let port = broker.port;
        let (mut s, _) = RawClient::connect311(port, "resumer", false, 60);
        assert_eq!(s.subscribe(1, &[("t/#", 1)]), [1]);
        s.disconnect();
        let (mut p, _) = RawClient::connect311(port, "resume-pub", true, 60);
        p.publish(Publish::new("t/open", b"1").qos(1).pkid(1));
        p.publish(Publish::new("t/closed", b"2").qos(1).pkid(2));
        p.publish(Publish::new("t/open", b"3").qos(1).pkid(3));
        std::fs::write(
            &acl,
            "topic read t/open\ntopic write t/#\ntopic read $SYS/#\n",
        )
        .unwrap();
        broker.signal("HUP");
        let deadline = std::time::Instant::now() + LONG;
        while !broker.log_tail().contains("reloaded") {
            assert!(std::time::Instant::now() < deadline, "no reload logged");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let (mut s, present) = RawClient::connect311(port, "resumer", false, 60);
        assert!(present);
        let got: Vec<String> = (0..2)
            .map(|_| {
                let m = s.next_publish(LONG);
                s.send_ok(&enc::puback(m.pkid));
                format!("{}={}", m.topic, m.text())
            })
            .collect();
        assert_eq!(got, ["t/open=1", "t/open=3"]);
        broker.sys_figure(
            "$SYS/broker/publish/messages/dropped/not_authorized",
            LONG,
            |n| n >= 1,
        );
        let _ = std::fs::remove_file(acl);
    });
}

/// Assigned client ids are random, not a counter another client could guess and take over.
#[test]
fn assigned_client_ids_are_not_guessable() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let ids: Vec<String> = (0..4)
            .map(|_| {
                let c = V5::connect(broker.port, "", true);
                common::dec::prop_str(&c.connack_props, p::ASSIGNED_CLIENT_ID).unwrap()
            })
            .collect();
        for id in &ids {
            let random = id.strip_prefix("ringmq-").expect(id);
            assert_eq!(random.len(), 16, "{id}: 64 random bits");
            assert!(random.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
        }
        let mut unique_ids = ids.clone();
        unique_ids.sort();
        unique_ids.dedup();
        assert_eq!(unique_ids.len(), ids.len(), "{ids:?}");
    });
}

/// `--use-username-as-clientid`: a session belongs to its user name, whatever client id is
/// sent, so no one can resume another user's session by using its client id; clients without
/// a user name are refused.
#[test]
fn with_use_username_as_clientid_sessions_belong_to_users() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&["--use-username-as-clientid"]);
        let port = broker.port;
        let login = |user: &str, id: &str, clean: bool| {
            Connect::v311(id).username(user).clean(clean).encode()
        };
        let (mut alice, ack) = RawClient::connect_raw(port, &login("alice", "phone", false));
        assert_eq!(ack.unwrap().connack(), (false, 0));
        assert_eq!(alice.subscribe(1, &[("inbox/alice", 1)]), [1]);
        alice.disconnect();
        let (mut p, ack) = RawClient::connect_raw(port, &login("sender", "", true));
        assert_eq!(ack.unwrap().connack(), (false, 0));
        p.publish(Publish::new("inbox/alice", b"for alice").qos(1).pkid(1));

        // Mallory uses alice's old client id: a session of his own, nothing of hers.
        let (mut mallory, ack) = RawClient::connect_raw(port, &login("mallory", "phone", false));
        assert_eq!(ack.unwrap().connack(), (false, 0));
        mallory.ping();
        assert!(mallory
            .read_packet(std::time::Duration::from_millis(300))
            .is_err());
        // Alice, from another device: her session, her message.
        let (mut alice, ack) = RawClient::connect_raw(port, &login("alice", "laptop", false));
        assert_eq!(ack.unwrap().connack(), (true, 0));
        assert_eq!(alice.next_publish(LONG).text(), "for alice");

        let (mut anonymous, ack) = RawClient::connect_raw(port, &Connect::v311("nobody").encode());
        assert_eq!(ack.unwrap().bytes(), [0x20, 2, 0, 5]);
        anonymous.expect_closed(SHORT, "refused");
    });
}
