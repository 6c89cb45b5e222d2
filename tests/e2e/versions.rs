//! MQTT 3.1, 3.1.1 and 5 clients on one broker: messages cross between protocol versions, each
//! receiver getting the PUBLISH form of its own version.

use std::collections::BTreeSet;

use crate::common::dec::RawPublish;
use crate::common::enc::{self, kind, Connect, Props, Publish};
use crate::common::raw::{RawClient, LONG};
use crate::common::{run_bounded, secs, Broker};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Version {
    V31,
    V311,
    V5,
}

fn connect(port: u16, v: Version, id: &str) -> RawClient {
    let bytes = match v {
        Version::V31 => Connect::v31(id).encode(),
        Version::V311 => Connect::v311(id).encode(),
        Version::V5 => Connect::v5(id).encode(),
    };
    let (c, ack) = RawClient::connect_raw(port, &bytes);
    let ack = ack.unwrap_or_else(|e| panic!("{v:?}: no CONNACK: {e:?}"));
    assert_eq!(ack.kind(), kind::CONNACK, "{v:?}: {ack:?}");
    assert_eq!(ack.body[1], 0, "{v:?}: CONNACK refused: {ack:?}");
    c
}

fn subscribe(c: &mut RawClient, v: Version, topic: &str) {
    let bytes = match v {
        Version::V5 => enc::subscribe_v5(1, &Props::new(), &[(topic, 1)]),
        _ => enc::subscribe(1, &[(topic, 1)]),
    };
    c.send_ok(&bytes);
    let ack = c.expect_kind(kind::SUBACK, LONG);
    assert_eq!(ack.pkid(), 1);
    let codes = match v {
        // packet id, property length (0), reason codes
        Version::V5 => ack.body[3..].to_vec(),
        _ => ack.body[2..].to_vec(),
    };
    assert_eq!(codes, vec![1], "{v:?}: granted QoS 1");
}

fn publish(c: &mut RawClient, v: Version, topic: &str, payload: &str, pkid: u16) {
    let bytes = match v {
        Version::V5 => Publish::new(topic.as_bytes(), payload.as_bytes())
            .qos(1)
            .pkid(pkid)
            .v5()
            .encode(),
        _ => Publish::new(topic.as_bytes(), payload.as_bytes())
            .qos(1)
            .pkid(pkid)
            .encode(),
    };
    c.send_ok(&bytes);
    let ack = c.expect_where(LONG, "PUBACK", |p| p.kind() == kind::PUBACK);
    assert_eq!(ack.pkid(), pkid, "{v:?}: PUBACK packet id");
    if v == Version::V5 && ack.body.len() > 2 {
        assert_eq!(
            ack.body[2], 0x00,
            "{v:?}: PUBACK reason code (there are subscribers)"
        );
    } else {
        assert_eq!(
            ack.body.len(),
            2,
            "{v:?}: 3.x PUBACK is exactly 2 bytes of body"
        );
    }
}

fn receive(c: &mut RawClient, v: Version) -> RawPublish {
    let p = c.expect_where(LONG, "PUBLISH", |p| p.kind() == kind::PUBLISH);
    let m = match v {
        Version::V5 => p.publish_v5(),
        _ => p.publish(),
    };
    c.send_ok(&enc::puback(m.pkid));
    m
}

/// Each of a 3.1, a 3.1.1 and a 5 client subscribes and publishes once; every client receives
/// all three messages, correctly framed for its version, at QoS 1.
#[test]
fn messages_cross_protocol_versions() {
    run_bounded(secs(60), || {
        let broker = Broker::start_sharded(&[]);
        let versions = [Version::V31, Version::V311, Version::V5];
        let mut clients: Vec<RawClient> = versions
            .iter()
            .enumerate()
            .map(|(i, v)| connect(broker.port, *v, &format!("ver{i}")))
            .collect();
        for (c, v) in clients.iter_mut().zip(versions) {
            subscribe(c, v, "ver/t");
        }
        for (i, (c, v)) in clients.iter_mut().zip(versions).enumerate() {
            publish(c, v, "ver/t", &format!("from-{v:?}"), i as u16 + 1);
        }
        let want: BTreeSet<String> = versions.iter().map(|v| format!("from-{v:?}")).collect();
        for (c, v) in clients.iter_mut().zip(versions) {
            let mut got = BTreeSet::new();
            for _ in 0..3 {
                let m = receive(c, v);
                assert_eq!((m.topic.as_str(), m.qos), ("ver/t", 1), "{v:?}");
                assert!(got.insert(m.text()), "{v:?}: {} twice", m.text());
            }
            assert_eq!(got, want, "{v:?} receiver");
            c.ping();
        }
    });
}
