//! A subscription made on one shard is seen at once by every other shard (issue 14): a PUBLISH
//! the broker reads after it has read a SUBSCRIBE, on any shard, reaches that subscriber, as on
//! a single-threaded broker, without waiting for the SUBACK.

use crate::common::enc::{self, kind, Publish};
use crate::common::raw::{RawClient, LONG};
use crate::common::{client_id_on_shard, run_bounded, secs, unique, Broker, SHARDS};

#[test]
fn a_publish_read_after_a_subscribe_on_another_shard_reaches_the_subscriber() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let port = broker.port;
        let sub_id = client_id_on_shard(&unique("xs-sub"), 1, SHARDS);
        let pub_id = client_id_on_shard(&unique("xs-pub"), 0, SHARDS);
        let (mut sub, _) = RawClient::connect311(port, &sub_id, true, 60);
        let (mut publisher, _) = RawClient::connect311(port, &pub_id, true, 60);
        for round in 0..50u16 {
            let topic = format!("xs/{round}");
            // SUBSCRIBE and PINGREQ in one write: the PINGRESP says the broker has read the
            // SUBSCRIBE (the SUBACK itself waits for every shard's acknowledgement).
            let mut request = enc::subscribe(round + 1, &[(&topic, 0)]);
            request.extend_from_slice(&enc::PINGREQ);
            sub.send_ok(&request);
            sub.expect_where(LONG, "PINGRESP", |p| p.kind() == kind::PINGRESP);
            publisher.send_ok(&Publish::new(&topic, "right after").encode());
            let got = sub.next_publish(LONG);
            assert_eq!(got.topic, topic, "round {round}");
        }
    });
}
