//! A subscription made on one shard is seen at once by another shard's publishes (issue 14):
//! no mesh round between the SUBSCRIBE and the PUBLISH.

use super::deliveries::id_on;
use super::*;
use crate::harness::Cluster;

#[test]
fn a_publish_on_another_shard_right_after_a_subscribe_reaches_the_subscriber() {
    let mut c = Cluster::new(2, Limits::default());
    let sub = c.connect(connect_packet(&id_on("sub", 1, 2), V4, true));
    let publisher = c.connect(connect_packet(&id_on("pub", 0, 2), V4, true));
    c.settle();
    c.packets(sub);
    assert_eq!((sub.shard, publisher.shard), (1, 0));
    // SUBSCRIBE on shard 1, then at once a PUBLISH on shard 0: no exchange in between.
    c.send(sub, subscribe_packet("t", QoS::AtMostOnce));
    c.send(
        publisher,
        publish_packet("t", b"right after", QoS::AtMostOnce, 0),
    );
    c.settle();
    let got = c.packets(sub);
    assert_eq!(publishes(&got).len(), 1, "{got:?}");
    assert_eq!(publishes(&got)[0].payload(), b"right after");
}
