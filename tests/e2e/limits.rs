//! What the limits flags bound: `--max-connections` (3.1.1 refusal, 5.0 CONNACK 0x97), the
//! offline queue of a persistent session (`--max-queued-messages`, `--max-queued-bytes`) and the
//! client's own Maximum Packet Size (5.0). Hostile clients against these bounds are in
//! `hostile::resources`.

use std::time::{Duration, Instant};

use crate::common;
use crate::common::dec::parse_connack_v5;
use crate::common::enc::{p, Connect, Props, Publish};
use crate::common::raw::{RawClient, LONG, SHORT};
use crate::common::v5::V5;
use crate::common::{
    bounded, client_id_on_shard, connect, millis, run_bounded, secs, text, Broker, SHARDS,
};

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

/// A message larger than the client's Maximum Packet Size is not sent to it (another subscriber
/// still gets it); a later small one still arrives.
#[test]
fn client_maximum_packet_size_skips_large_messages() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let mut small = V5::connect_with(
            broker.port,
            Connect::v5(client_id_on_shard("mps-small", 0, SHARDS))
                .props(Props::new().u32(p::MAXIMUM_PACKET_SIZE, 256)),
        );
        small.sub_ok("mps/t", 1);
        let mut big = V5::connect(broker.port, &client_id_on_shard("mps-big", 1, SHARDS), true);
        big.sub_ok("mps/t", 1);
        let mut pb = V5::connect(broker.port, &client_id_on_shard("mps-pub", 1, SHARDS), true);
        let large = vec![b'L'; 2000];
        pb.publish(Publish::new("mps/t", &large).qos(1));
        pb.publish(Publish::new("mps/t", b"small-1").qos(1));
        pb.publish(Publish::new("mps/t", &large));
        pb.publish(Publish::new("mps/t", b"small-2").qos(1));
        let got = small.expect_pubs(2, LONG);
        assert_eq!(common::dec::texts(&got), vec!["small-1", "small-2"]);
        for pk in &small.log {
            assert!(
                pk.bytes().len() <= 256,
                "packet over the client's maximum: {pk:?}"
            );
        }
        let got = big.expect_pubs(4, LONG);
        assert_eq!(got[0].payload, large);
        assert_eq!(got[1].text(), "small-1");
        assert_eq!(got[2].payload, large);
        assert_eq!(got[3].text(), "small-2");
        small.ping();
    });
}
