//! MQTT 5: Session Expiry Interval, Clean Start, Message Expiry Interval and Will Delay Interval,
//! with raw v5 clients on a 2-shard broker (subscriber and publisher on different shards).

use std::thread;
use std::time::Instant;

use crate::common;
use crate::common::dec::texts;
use crate::common::enc::{self, kind, p, Connect, Props, Publish, Will};
use crate::common::raw::{LONG, SHORT};
use crate::common::v5::V5;
use crate::common::{client_id_on_shard, run_bounded, secs, Broker, SHARDS};

/// Session Expiry Interval 60: subscription and the QoS 1 / QoS 2 messages published while the
/// client was away survive the disconnect; resume with Clean Start 0 -> session present = 1 and
/// the queued messages arrive in order.
#[test]
fn session_survives_disconnect_and_queued_messages_delivered() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let sid = client_id_on_shard("v5s-keep", 1, SHARDS);
        let pid = client_id_on_shard("v5s-keep-pub", 0, SHARDS);
        let mut s = V5::connect_with(broker.port, Connect::v5(&sid).expiry(60));
        assert!(!s.session_present, "fresh session");
        s.sub_ok("v5s/keep/#", 2);
        s.disconnect();

        let mut pb = V5::connect(broker.port, &pid, true);
        for (i, q) in [(1, 1u8), (2, 2), (3, 1)] {
            pb.publish(Publish::new(format!("v5s/keep/{i}"), format!("m{i}").as_bytes()).qos(q));
        }

        let mut s = V5::connect_with(broker.port, Connect::v5(&sid).clean(false).expiry(60));
        assert!(
            s.session_present,
            "session present after resume within the expiry interval"
        );
        let got = s.expect_pubs(3, LONG);
        assert_eq!(
            texts(&got),
            vec!["m1", "m2", "m3"],
            "queued messages in order"
        );
        assert_eq!(got.iter().map(|m| m.qos).collect::<Vec<_>>(), vec![1, 2, 1]);
        // The subscription is still live too.
        pb.publish(Publish::new("v5s/keep/live", b"live").qos(1));
        assert_eq!(s.expect_pub(LONG).text(), "live");
    });
}

/// No Session Expiry Interval (= 0): the session ends at disconnect; resume gives session
/// present = 0 and the old subscription is gone.
#[test]
fn session_expiry_zero_ends_session_at_disconnect() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let sid = client_id_on_shard("v5s-zero", 0, SHARDS);
        let pid = client_id_on_shard("v5s-zero-pub", 1, SHARDS);
        let mut s = V5::connect(broker.port, &sid, true);
        s.sub_ok("v5s/zero/old", 1);
        s.disconnect();

        let mut s = V5::connect(broker.port, &sid, false);
        assert!(
            !s.session_present,
            "session expiry 0: no session after disconnect"
        );
        s.sub_ok("v5s/zero/marker", 1);
        let mut pb = V5::connect(broker.port, &pid, true);
        pb.publish(Publish::new("v5s/zero/old", b"old-subscription").qos(1));
        pb.publish(Publish::new("v5s/zero/marker", b"marker").qos(1));
        let first = s.expect_pub(LONG);
        assert_eq!(
            first.text(),
            "marker",
            "old subscription must be gone: {first:?}"
        );
    });
}

/// Session Expiry Interval 1 s: after the interval the session is gone: session present = 0, the
/// message queued while away is not delivered and the old subscription no longer matches.
#[test]
fn session_expires_after_interval() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let sid = client_id_on_shard("v5s-exp", 1, SHARDS);
        let pid = client_id_on_shard("v5s-exp-pub", 0, SHARDS);
        let mut s = V5::connect_with(broker.port, Connect::v5(&sid).expiry(1));
        s.sub_ok("v5s/exp/t", 1);
        s.disconnect();
        let mut pb = V5::connect(broker.port, &pid, true);
        pb.publish(Publish::new("v5s/exp/t", b"queued-while-away").qos(1));

        thread::sleep(secs(4)); // interval 1 s + generous margin

        let mut s = V5::connect(broker.port, &sid, false);
        assert!(
            !s.session_present,
            "session must have expired after 1 s (waited 4 s)"
        );
        s.sub_ok("v5s/exp/marker", 1);
        pb.publish(Publish::new("v5s/exp/t", b"after-expiry").qos(1));
        pb.publish(Publish::new("v5s/exp/marker", b"marker").qos(1));
        let first = s.expect_pub(LONG);
        assert_eq!(
            first.text(),
            "marker",
            "neither the queued message nor the old subscription may survive expiry: {first:?}"
        );
    });
}

/// Session Expiry Interval 0xFFFFFFFF: the session never expires (checked after a few seconds).
#[test]
fn session_expiry_max_never_expires() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let sid = client_id_on_shard("v5s-never", 0, SHARDS);
        let pid = client_id_on_shard("v5s-never-pub", 1, SHARDS);
        let mut s = V5::connect_with(broker.port, Connect::v5(&sid).expiry(u32::MAX));
        s.sub_ok("v5s/never/t", 1);
        s.disconnect();
        let mut pb = V5::connect(broker.port, &pid, true);
        pb.publish(Publish::new("v5s/never/t", b"kept").qos(1));
        thread::sleep(secs(3));
        let mut s = V5::connect_with(broker.port, Connect::v5(&sid).clean(false).expiry(u32::MAX));
        assert!(s.session_present, "0xFFFFFFFF: session must not expire");
        assert_eq!(s.expect_pub(LONG).text(), "kept");
    });
}

/// DISCONNECT may change the Session Expiry Interval: CONNECT said 60, DISCONNECT says 0 -> the
/// session ends at disconnect.
#[test]
fn disconnect_lowers_session_expiry_to_zero() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let sid = client_id_on_shard("v5s-dz", 1, SHARDS);
        let mut s = V5::connect_with(broker.port, Connect::v5(&sid).expiry(60));
        s.sub_ok("v5s/dz/t", 1);
        s.disconnect_with(0x00, Props::new().u32(p::SESSION_EXPIRY, 0));
        let s = V5::connect_with(broker.port, Connect::v5(&sid).clean(false).expiry(60));
        assert!(
            !s.session_present,
            "DISCONNECT with Session Expiry 0 must end the session"
        );
    });
}

/// DISCONNECT setting a non-zero Session Expiry when CONNECT had 0 is a protocol error: the
/// server answers DISCONNECT 0x82 and closes. The session still ends (expiry stays 0).
#[test]
fn disconnect_raising_expiry_from_zero_is_protocol_error() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let sid = client_id_on_shard("v5s-dr", 0, SHARDS);
        let mut s = V5::connect(broker.port, &sid, true);
        s.sub_ok("v5s/dr/t", 1);
        let _ = s.send(&enc::disconnect_v5(
            0x00,
            &Props::new().u32(p::SESSION_EXPIRY, 30),
        ));
        let (rc, _) = s.expect_disconnect(SHORT, "DISCONNECT raising session expiry from 0");
        assert_eq!(rc, 0x82, "server DISCONNECT reason code");
        let s = V5::connect(broker.port, &sid, false);
        assert!(!s.session_present, "session expiry stayed 0: no session");
    });
}

/// Clean Start = 1 discards an existing (unexpired) session: session present = 0, neither the
/// old subscription nor the messages queued for it survive.
#[test]
fn clean_start_discards_existing_session() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let sid = client_id_on_shard("v5s-cs", 1, SHARDS);
        let pid = client_id_on_shard("v5s-cs-pub", 0, SHARDS);
        let mut s = V5::connect_with(broker.port, Connect::v5(&sid).expiry(300));
        s.sub_ok("v5s/cs/t", 1);
        s.disconnect();
        let mut pb = V5::connect(broker.port, &pid, true);
        pb.publish(Publish::new("v5s/cs/t", b"queued").qos(1));

        let mut s = V5::connect_with(broker.port, Connect::v5(&sid).clean(true).expiry(300));
        assert!(!s.session_present, "clean start: session present must be 0");
        s.sub_ok("v5s/cs/marker", 1);
        pb.publish(Publish::new("v5s/cs/t", b"old-sub").qos(1));
        pb.publish(Publish::new("v5s/cs/marker", b"marker").qos(1));
        let first = s.expect_pub(LONG);
        assert_eq!(
            first.text(),
            "marker",
            "old session must be discarded: {first:?}"
        );
    });
}

/// Message Expiry Interval: a queued message whose interval passed while the subscriber was away
/// is not delivered; the one still valid arrives carrying the remaining interval (<= original).
#[test]
fn message_expiry_drops_expired_and_decrements_remaining() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let sid = client_id_on_shard("v5s-me", 0, SHARDS);
        let pid = client_id_on_shard("v5s-me-pub", 1, SHARDS);
        let mut s = V5::connect_with(broker.port, Connect::v5(&sid).expiry(300));
        s.sub_ok("v5s/me/t", 1);
        s.disconnect();
        let mut pb = V5::connect(broker.port, &pid, true);
        pb.publish_ack(
            Publish::new("v5s/me/t", b"short-lived")
                .qos(1)
                .props(Props::new().u32(p::MESSAGE_EXPIRY, 1)),
        );
        pb.publish_ack(
            Publish::new("v5s/me/t", b"long-lived")
                .qos(1)
                .props(Props::new().u32(p::MESSAGE_EXPIRY, 100)),
        );
        let sent = Instant::now();
        thread::sleep(secs(3));
        let mut s = V5::connect_with(broker.port, Connect::v5(&sid).clean(false).expiry(300));
        assert!(s.session_present);
        let first = s.expect_pub(LONG);
        assert_eq!(
            first.text(),
            "long-lived",
            "the expired message must be dropped"
        );
        let remaining = first
            .num(p::MESSAGE_EXPIRY)
            .expect("delivered message carries Message Expiry Interval");
        let waited = sent.elapsed().as_secs();
        assert!(
            remaining <= 100 && remaining + waited + 2 >= 100 && remaining < 100,
            "remaining interval {remaining} after ~{waited} s queued (original 100)"
        );
    });
}

/// Live delivery of a message with Message Expiry Interval: it carries the (remaining) interval.
#[test]
fn message_expiry_on_live_delivery() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let mut s = V5::connect(broker.port, &client_id_on_shard("v5s-mel", 1, SHARDS), true);
        s.sub_ok("v5s/mel/t", 1);
        let mut pb = V5::connect(
            broker.port,
            &client_id_on_shard("v5s-mel-p", 0, SHARDS),
            true,
        );
        pb.publish_ack(
            Publish::new("v5s/mel/t", b"x")
                .qos(1)
                .props(Props::new().u32(p::MESSAGE_EXPIRY, 30)),
        );
        pb.publish(Publish::new("v5s/mel/t", b"no-expiry").qos(1));
        let m = s.expect_pub(LONG);
        let left = m
            .num(p::MESSAGE_EXPIRY)
            .expect("Message Expiry Interval forwarded");
        assert!(
            (25..=30).contains(&left),
            "remaining interval {left} (sent 30)"
        );
        let m = s.expect_pub(LONG);
        assert_eq!(m.text(), "no-expiry");
        assert_eq!(m.num(p::MESSAGE_EXPIRY), None, "no expiry was set: {m:?}");
    });
}

fn will_conn(id: &str, topic: &str, delay: u32, session_expiry: u32) -> Connect {
    Connect::v5(id).expiry(session_expiry).will(
        Will::new(topic, b"will-payload")
            .qos(1)
            .props(Props::new().u32(p::WILL_DELAY, delay)),
    )
}

/// Will Delay Interval 2 s (session expiry 60): after an abrupt close the will is published, but
/// not before the delay.
#[test]
fn will_published_after_delay() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let mut w = V5::connect(
            broker.port,
            &client_id_on_shard("v5s-wd-watch", 0, SHARDS),
            true,
        );
        w.sub_ok("v5s/wd/will", 1);
        let mut c = V5::connect_with(
            broker.port,
            will_conn(
                &client_id_on_shard("v5s-wd", 1, SHARDS),
                "v5s/wd/will",
                2,
                60,
            ),
        );
        c.ping();
        let closed = Instant::now();
        c.drop_connection();
        let m = w.expect_pub(secs(15));
        let after = closed.elapsed();
        assert_eq!(m.text(), "will-payload");
        assert_eq!(m.topic, "v5s/wd/will");
        assert!(
            after >= common::millis(1800),
            "will published {after:?} after the close; Will Delay Interval is 2 s"
        );
    });
}

/// Will Delay Interval 4 s: the client reconnects (same id, clean start 0) within the delay, so
/// the will is never published. Checked with a marker sent after the delay has passed.
#[test]
fn will_not_published_when_client_reconnects_within_delay() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let mut w = V5::connect(
            broker.port,
            &client_id_on_shard("v5s-wr-watch", 0, SHARDS),
            true,
        );
        w.sub_ok("v5s/wr/will", 1);
        let id = client_id_on_shard("v5s-wr", 1, SHARDS);
        let c = V5::connect_with(broker.port, will_conn(&id, "v5s/wr/will", 4, 60));
        c.drop_connection();
        thread::sleep(common::millis(300));
        let mut c = V5::connect_with(broker.port, Connect::v5(&id).clean(false).expiry(60));
        assert!(c.session_present, "session resumed within its expiry");
        thread::sleep(secs(6)); // past the 4 s delay
        c.publish(Publish::new("v5s/wr/will", b"marker").qos(1));
        let first = w.expect_pub(LONG);
        assert_eq!(
            first.text(),
            "marker",
            "the will must not be published: {first:?}"
        );
        // The client is still fine.
        c.ping();
        assert!(c.log.iter().all(|pk| pk.kind() != kind::DISCONNECT));
    });
}
