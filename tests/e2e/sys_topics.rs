//! The `$SYS` topics: broker figures published as retained messages every `--sys-interval`,
//! added up over all shards; drops by limits show there, not only in the log.

use crate::common;
use crate::common::dec::parse_connack_v5;
use crate::common::enc::{kind, Connect, Publish};
use crate::common::raw::{RawClient, LONG};
use crate::common::{bounded, client_id_on_shard, connect, recv_until, secs, text, Broker, SHARDS};

/// Waits for a `$SYS` figure on `topic` that satisfies `ok`.
async fn wait_for_figure(watcher: &mut common::Mqtt, topic: &str, ok: impl Fn(u64) -> bool) -> u64 {
    let got = recv_until(&mut watcher.publishes, secs(20), |p| {
        p.topic == topic && text(p).parse().is_ok_and(&ok)
    })
    .await;
    text(got.last().unwrap()).parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sys_topics_count_clients_and_drops_over_all_shards() {
    bounded(secs(60), async {
        let broker = Broker::start_sharded(&["--sys-interval", "1"]);
        let port = broker.port;
        let mut watcher = connect(port, &client_id_on_shard("sys-watch", 1, SHARDS), true).await;
        watcher.subscribe_ok("$SYS/broker/#", 0).await;
        // `#` does not match `$` topics (MQTT-4.7.2-1).
        let mut everything = connect(port, &client_id_on_shard("sys-all", 0, SHARDS), true).await;
        everything.subscribe_ok("#", 0).await;

        let connected =
            wait_for_figure(&mut watcher, "$SYS/broker/clients/connected", |n| n >= 2).await;
        assert!(connected >= 2);

        // A persistent subscriber goes offline; a QoS 0 message for it is dropped and counted.
        let offline_id = client_id_on_shard("sys-offline", 0, SHARDS);
        let mut offline = connect(port, &offline_id, false).await;
        offline.subscribe_ok("sys/t", 0).await;
        offline.disconnect().await;
        let mut publ = connect(port, &client_id_on_shard("sys-pub", 1, SHARDS), true).await;
        publ.publish("sys/t", 0, false, "dropped").await;
        wait_for_figure(
            &mut watcher,
            "$SYS/broker/publish/messages/dropped/offline_qos0",
            |n| n >= 1,
        )
        .await;
        let total = wait_for_figure(&mut watcher, "$SYS/broker/publish/messages/dropped", |n| {
            n >= 1
        })
        .await;
        assert!(total >= 1);
        wait_for_figure(&mut watcher, "$SYS/broker/clients/disconnected", |n| n >= 1).await;

        // Only the publish on sys/t reached the `#` subscriber: no `$SYS` message did.
        let got = recv_until(&mut everything.publishes, secs(10), |p| p.topic == "sys/t").await;
        assert!(
            got.iter().all(|p| !p.topic.starts_with('$')),
            "{:?}",
            got.iter().map(|p| &p.topic).collect::<Vec<_>>()
        );
        broker.assert_alive();
    })
    .await;
}

/// `$SYS` is the broker's: a client's PUBLISH there is refused (5.0: PUBACK 0x87), even with
/// no ACL file, so the figures cannot be forged.
#[test]
fn clients_cannot_publish_to_sys_topics() {
    common::run_bounded(secs(30), || {
        let broker = Broker::start(&[]);
        let connect = Connect::v5("sys-forger").encode();
        let (mut c, ack) = RawClient::connect_raw(broker.port, &connect);
        assert_eq!(parse_connack_v5(&ack.expect("CONNACK")).1, 0);
        c.send_ok(
            &Publish::new(b"$SYS/broker/version", b"fake")
                .qos(1)
                .pkid(9)
                .retain(true)
                .v5()
                .encode(),
        );
        assert_eq!(c.expect_kind(kind::PUBACK, LONG).body[..3], [0, 9, 0x87]);
        // Other `$` topics are ordinary ones.
        c.send_ok(&Publish::new(b"$app/x", b"ok").qos(1).pkid(10).v5().encode());
        assert_eq!(c.expect_kind(kind::PUBACK, LONG).body[..3], [0, 10, 0x10]);
    });
}
