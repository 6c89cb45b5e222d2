//! Scale-out (issue 17): HAProxy in front of several nodes with the configuration the
//! repository ships (`scripts/haproxy-ringmq.cfg`), each node behind the PROXY protocol.

use ringmq_test_support::free_port;

use crate::common::enc::Connect;
use crate::common::haproxy::Haproxy;
use crate::common::raw::{RawClient, LONG};
use crate::common::{run_bounded, secs, Broker};

const NODES: usize = 3;

/// The shipped configuration, listening on `front` and sending to `nodes`.
fn shipped_config(front: u16, nodes: &[u16]) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/haproxy-ringmq.cfg");
    let mut config = std::fs::read_to_string(path).unwrap();
    let bind = "bind 0.0.0.0:1883";
    assert!(config.contains(bind), "the shipped file binds {bind}");
    config = config.replace(bind, &format!("bind 127.0.0.1:{front}"));
    for (i, port) in nodes.iter().enumerate() {
        let server = format!("127.0.0.1:{}", 1884 + i);
        assert!(config.contains(&server), "the shipped file has {server}");
        config = config.replace(&server, &format!("127.0.0.1:{port}"));
    }
    config
}

/// `NODES` nodes behind HAProxy with the shipped file, and HAProxy's port.
fn behind_haproxy() -> (Vec<Broker>, u16, Haproxy) {
    let nodes: Vec<Broker> = (0..NODES)
        .map(|_| Broker::start(&["-v", "--listen", "mqtt+proxy://127.0.0.1:{port}"]))
        .collect();
    let front = free_port();
    let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
    let haproxy = Haproxy::start(&shipped_config(front, &ports), front);
    (nodes, front, haproxy)
}

fn node_of(nodes: &[Broker], client: &str) -> Vec<usize> {
    let needle = format!("client={client} ");
    (0..nodes.len())
        .filter(|&n| {
            nodes[n]
                .log_tail()
                .lines()
                .any(|l| l.contains("client connected") && l.contains(&needle))
        })
        .collect()
}

#[test]
fn a_client_id_always_reaches_the_same_node() {
    let (nodes, front, _haproxy) = behind_haproxy();
    let ids: Vec<String> = (0..12).map(|i| format!("pinned-{i}")).collect();
    let clients = ids.clone();
    run_bounded(secs(60), move || {
        for id in &clients {
            let (c, present) = RawClient::connect311(front, id, false, 60);
            assert!(!present, "{id}: a new session");
            c.disconnect();
            // Round robin would send two reconnects in three to a node without the session.
            for _ in 0..2 {
                let (c, present) = RawClient::connect311(front, id, false, 60);
                assert!(present, "{id} reached a node without its session");
                c.disconnect();
            }
        }
    });
    let mut used = [false; NODES];
    for id in &ids {
        let on = node_of(&nodes, id);
        assert_eq!(on.len(), 1, "{id} on nodes {on:?}");
        used[on[0]] = true;
    }
    assert!(
        used.iter().filter(|&&u| u).count() > 1,
        "every id on one node: not spread"
    );
    for node in &nodes {
        node.assert_alive();
        // HAProxy's health checks come with a PROXY header too: nothing for a node to warn of.
        let log = node.log_tail();
        assert!(!log.contains(" WARN ") && !log.contains(" ERROR "), "{log}");
    }
}

#[test]
fn what_is_not_an_mqtt_connect_never_reaches_a_node() {
    let (nodes, front, _haproxy) = behind_haproxy();
    run_bounded(secs(30), move || {
        let mut c = RawClient::tcp(front);
        let _ = c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let got = c.expect_closed(LONG, "HTTP through the MQTT front door");
        assert!(got.is_empty(), "{got:?}");
        // A real client after it goes through.
        let mut ok = RawClient::tcp(front);
        ok.send_ok(&Connect::v311("after-garbage").encode());
        ok.expect_kind(crate::common::enc::kind::CONNACK, LONG);
    });
    let placed = node_of(&nodes, "after-garbage");
    assert_eq!(placed.len(), 1);
    for node in &nodes {
        assert!(!node.log_tail().contains("GET"), "{}", node.log_tail());
    }
}
