//! PROXY protocol listeners (issue 13): behind a load balancer, the log names the client's
//! own address. Headers written by hand (v1) and by the `ppp` crate (v2), then HAProxy
//! (Debian's, installed by scripts/test.sh) in front with `send-proxy-v2`.

use std::net::{SocketAddr, TcpStream};

use ppp::v2;
use ringmq_test_support::free_port;

use crate::common::enc::{kind, Connect, Publish};
use crate::common::haproxy::Haproxy;
use crate::common::raw::{RawClient, LONG};
use crate::common::{run_bounded, secs, Broker};

fn proxied_broker() -> Broker {
    Broker::start(&["-v", "--listen", "mqtt+proxy://127.0.0.1:{port}"])
}

/// The broker's log line of `client`'s connection, once it is there.
fn connected_line(broker: &Broker, client: &str) -> String {
    broker.wait_log(&format!("client={client} "));
    broker
        .log_tail()
        .lines()
        .find(|l| l.contains("client connected") && l.contains(&format!("client={client} ")))
        .unwrap_or_else(|| panic!("no line for {client}:\n{}", broker.log_tail()))
        .to_string()
}

#[test]
fn v1_and_v2_headers_name_the_client() {
    run_bounded(secs(60), || {
        let broker = proxied_broker();
        let mut c = RawClient::tcp(broker.port);
        let mut bytes = b"PROXY TCP4 10.1.2.3 127.0.0.1 40000 1883\r\n".to_vec();
        bytes.extend(Connect::v311("via-v1").encode());
        c.send_ok(&bytes);
        assert_eq!(c.expect_kind(kind::CONNACK, LONG).connack(), (false, 0));
        assert!(connected_line(&broker, "via-v1").contains("10.1.2.3:40000"));

        let addresses = v2::IPv4::new([192, 168, 7, 9], [127, 0, 0, 1], 5555, broker.port);
        let mut bytes = v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            addresses,
        )
        .build()
        .unwrap();
        bytes.extend(Connect::v311("via-v2").encode());
        let mut c = RawClient::tcp(broker.port);
        // The header and the CONNECT in separate writes, the header itself in two.
        c.send_ok(&bytes[..7]);
        c.send_ok(&bytes[7..]);
        assert_eq!(c.expect_kind(kind::CONNACK, LONG).connack(), (false, 0));
        assert!(connected_line(&broker, "via-v2").contains("192.168.7.9:5555"));
    });
}

#[test]
fn a_connection_without_a_header_is_closed() {
    run_bounded(secs(60), || {
        let broker = proxied_broker();
        let mut c = RawClient::tcp(broker.port);
        let _ = c.send(&Connect::v311("no-header").encode());
        let got = c.expect_closed(LONG, "a CONNECT without a PROXY header");
        assert!(got.is_empty(), "no CONNACK: {got:?}");
        broker.wait_log("PROXY protocol");
        broker.assert_alive();
    });
}

fn haproxy(front: u16, broker: u16) -> Haproxy {
    let config = format!(
        "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\
         frontend mqtt\n  bind 127.0.0.1:{front}\n  default_backend ringmq\n\
         backend ringmq\n  server ringmq 127.0.0.1:{broker} send-proxy-v2\n"
    );
    Haproxy::start(&config, front)
}

/// A client connecting from 127.0.0.7 through HAProxy (`send-proxy-v2`): the broker logs
/// 127.0.0.7, not HAProxy's 127.0.0.1, and the client talks MQTT as usual.
#[test]
fn behind_haproxy_the_log_names_the_client() {
    run_bounded(secs(60), || {
        let broker = proxied_broker();
        let front = free_port();
        let _haproxy = haproxy(front, broker.port);
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let source: SocketAddr = "127.0.0.7:0".parse().unwrap();
        socket.bind(&source.into()).unwrap();
        let front_addr: SocketAddr = ([127, 0, 0, 1], front).into();
        socket.connect(&front_addr.into()).unwrap();
        let stream: TcpStream = socket.into();
        let client_port = stream.local_addr().unwrap().port();
        let mut c = RawClient::over(stream);
        c.send_ok(&Connect::v311("via-haproxy").encode());
        assert_eq!(c.expect_kind(kind::CONNACK, LONG).connack(), (false, 0));
        c.subscribe_ok(1, &[("hap/t", 0)]);
        c.send_ok(&Publish::new("hap/t", "through haproxy").encode());
        let got = c.expect_kind(kind::PUBLISH, LONG).publish();
        assert_eq!(got.text(), "through haproxy");
        let line = connected_line(&broker, "via-haproxy");
        assert!(line.contains(&format!("127.0.0.7:{client_port}")), "{line}");
    });
}
