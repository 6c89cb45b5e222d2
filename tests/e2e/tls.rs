//! TLS listeners (issue 13) with real clients: mosquitto_pub / mosquitto_sub with `--cafile`
//! and client certificates, rumqttc over rustls. Certificates are made by each test (see
//! `ringmq_test_support::pki`).

use std::process::Command;
use std::time::{Duration, Instant};

use ringmq_test_support::free_port;
use ringmq_test_support::pki::Pki;

use crate::common::raw::{RawClient, LONG};
use crate::common::{client_id_on_shard, run_bounded, secs, unique, Broker};
use crate::interop::{require_mosquitto_clients, run, MosqSub};

pub(crate) fn pki(test: &str) -> Pki {
    let dir = std::env::temp_dir().join(format!("ringmq-e2e-pki-{}", unique(test)));
    Pki::new(&dir)
}

/// A broker with plain MQTT on its port, the `listeners` (URLs) beside it with `pki`'s server
/// certificate, and `extra`.
pub(crate) fn broker_with_listeners(pki: &Pki, listeners: &[String], extra: &[&str]) -> Broker {
    let (cert, key) = (pki.server_cert(), pki.server_key());
    let mut args = vec!["--listen", "mqtt://127.0.0.1:{port}"];
    for listener in listeners {
        args.extend(["--listen", listener.as_str()]);
    }
    args.extend(["--certfile", cert.to_str().unwrap()]);
    args.extend(["--keyfile", key.to_str().unwrap()]);
    args.extend_from_slice(extra);
    Broker::start(&args)
}

/// A broker with plain MQTT on its port and TLS on the returned one, plus `extra`.
fn tls_broker(pki: &Pki, extra: &[&str]) -> (Broker, u16) {
    let tls_port = free_port();
    let listeners = [format!("mqtts://127.0.0.1:{tls_port}")];
    (broker_with_listeners(pki, &listeners, extra), tls_port)
}

/// mosquitto_pub over TLS with `args` (`-t`, `-m`, certificates ...); its exit status and
/// output.
fn tls_pub(port: u16, args: &[&str]) -> (bool, String) {
    let (status, out, err) = run(
        Command::new("mosquitto_pub")
            .args(["-h", "localhost", "-p", &port.to_string()])
            .args(args),
        None,
        secs(20),
    );
    (status.success(), format!("{out}{err}"))
}

fn cafile(pki: &Pki) -> String {
    pki.ca().to_str().unwrap().to_string()
}

/// Subscribers over TLS get what is published over TLS and over plain TCP (3.1.1 and 5.0):
/// one broker, one topic space, whatever the listener.
#[test]
fn mosquitto_clients_over_tls_and_plain_tcp_share_topics() {
    require_mosquitto_clients();
    run_bounded(secs(60), || {
        let pki = pki("share");
        let (broker, tls_port) = tls_broker(&pki, &[]);
        let ca = cafile(&pki);
        let sub = MosqSub::start_with(tls_port, &["--cafile", &ca], "t/#", 1, "mqttv5", 3);
        let (ok, out) = tls_pub(
            tls_port,
            &["--cafile", &ca, "-t", "t/a", "-m", "one", "-q", "1"],
        );
        assert!(ok, "{out}");
        let (ok, out) = tls_pub(
            tls_port,
            &["--cafile", &ca, "-V", "mqttv311", "-t", "t/b", "-m", "two"],
        );
        assert!(ok, "{out}");
        crate::interop::mosquitto_pub(broker.port, "mqttv5", &["-t", "t/c", "-m", "three"], None);
        let got: Vec<String> = sub.messages(3).into_iter().map(|m| m.3).collect();
        assert_eq!(got, ["one", "two", "three"]);
    });
}

/// `--require-certificate --use-identity-as-username`: the certificate's Common Name is the
/// user the ACL applies to, a client without a certificate is not let in.
#[test]
fn client_certificates_name_the_user_the_acl_applies_to() {
    require_mosquitto_clients();
    run_bounded(secs(60), || {
        let pki = pki("identity");
        let (cert, key) = pki.client("sensor7", "sensor-7");
        let acl = pki.path("acl");
        // Anonymous clients (the plain listener) may read; sensor-7 may write its own topics.
        std::fs::write(
            &acl,
            "topic read sensors/#\nuser sensor-7\ntopic write sensors/7/#\n",
        )
        .unwrap();
        let ca = cafile(&pki);
        let (broker, tls_port) = tls_broker(
            &pki,
            &[
                "--cafile",
                &ca,
                "--require-certificate",
                "--use-identity-as-username",
                "--acl-file",
                acl.to_str().unwrap(),
            ],
        );
        let sub = MosqSub::start_with(broker.port, &[], "sensors/#", 0, "mqttv311", 2);
        let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
        let with_cert = ["--cafile", &ca, "--cert", cert, "--key", key];
        for (topic, message) in [
            ("sensors/7/temp", "allowed"),
            ("sensors/8/temp", "denied by the ACL"),
            ("sensors/7/end", "end"),
        ] {
            let mut args = with_cert.to_vec();
            args.extend(["-t", topic, "-m", message]);
            let (ok, out) = tls_pub(tls_port, &args);
            assert!(ok, "{topic}: {out}");
        }
        let got: Vec<(String, String)> = sub.messages(2).into_iter().map(|m| (m.2, m.3)).collect();
        assert_eq!(
            got,
            [
                ("sensors/7/temp".to_string(), "allowed".to_string()),
                ("sensors/7/end".to_string(), "end".to_string())
            ]
        );
        // No certificate: the handshake is refused.
        let (ok, out) = tls_pub(tls_port, &["--cafile", &ca, "-t", "sensors/7/x", "-m", "x"]);
        assert!(!ok, "a client without a certificate got in: {out}");
    });
}

/// A handshake with a rustls client that offers only `version`; the version agreed on, or
/// why there was none.
fn handshake(
    port: u16,
    pki: &Pki,
    version: &'static rustls::SupportedProtocolVersion,
) -> Result<rustls::ProtocolVersion, String> {
    use rustls::pki_types::pem::PemObject;
    use std::io::Write;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_file(pki.ca()).unwrap())
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(LONG)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(&crate::common::enc::Connect::v311(unique("v")).encode())
        .and_then(|()| tls.flush())
        .map_err(|e| e.to_string())?;
    tls.conn
        .protocol_version()
        .ok_or_else(|| "no version".into())
}

/// TLS 1.2 and 1.3 are offered; `--tls-version tlsv1.3` refuses 1.2.
#[test]
fn tls_1_2_and_1_3_and_the_oldest_version_allowed() {
    run_bounded(secs(60), || {
        let pki = pki("versions");
        let (_broker, tls_port) = tls_broker(&pki, &[]);
        assert_eq!(
            handshake(tls_port, &pki, &rustls::version::TLS12),
            Ok(rustls::ProtocolVersion::TLSv1_2)
        );
        assert_eq!(
            handshake(tls_port, &pki, &rustls::version::TLS13),
            Ok(rustls::ProtocolVersion::TLSv1_3)
        );
        let (_strict, strict_port) = tls_broker(&pki, &["--tls-version", "tlsv1.3"]);
        assert_eq!(
            handshake(strict_port, &pki, &rustls::version::TLS13),
            Ok(rustls::ProtocolVersion::TLSv1_3)
        );
        let refused = handshake(strict_port, &pki, &rustls::version::TLS12);
        assert!(
            refused.is_err(),
            "TLS 1.2 let in with --tls-version tlsv1.3"
        );
    });
}

/// SIGHUP rereads the certificate files: after new ones are written in place, new clients
/// meet the new certificate, and clients trusting only the old CA no longer connect.
#[test]
fn certificates_are_reloaded_on_sighup() {
    require_mosquitto_clients();
    run_bounded(secs(60), || {
        let old = pki("reload-old");
        let (broker, tls_port) = tls_broker(&old, &[]);
        let publish =
            |pki: &Pki| tls_pub(tls_port, &["--cafile", &cafile(pki), "-t", "r", "-m", "x"]);
        assert!(publish(&old).0);
        let new = pki("reload-new");
        for file in ["server.pem", "server.key"] {
            std::fs::copy(new.path(file), old.path(file)).unwrap();
        }
        broker.signal("HUP");
        broker.wait_log("TLS certificates reloaded");
        let (ok, out) = publish(&new);
        assert!(ok, "the new certificate: {out}");
        let (ok, out) = publish(&old);
        assert!(!ok, "the old certificate is still served: {out}");
        // A broken file keeps the certificates in use.
        std::fs::write(old.path("server.key"), "not a key").unwrap();
        broker.signal("HUP");
        broker.wait_log("TLS reload failed");
        assert!(publish(&new).0);
    });
}

/// With two shards, TLS connections whose session lives on the other shard move there with
/// their TLS state, mid-stream, and go on working: persistent subscribers on both shards get
/// what publishers on both shards send.
#[test]
fn tls_connections_move_to_their_sessions_shard() {
    require_mosquitto_clients();
    run_bounded(secs(90), || {
        let pki = pki("handoff");
        let ca = cafile(&pki);
        let (_broker, tls_port) = tls_broker(&pki, &["--shards", "2"]);
        let mut subs = Vec::new();
        for shard in [0, 1] {
            let id = client_id_on_shard(&unique("tls-sub"), shard, 2);
            let args = ["--cafile", ca.as_str(), "-i", id.as_str(), "-c"];
            subs.push(MosqSub::start_with(
                tls_port, &args, "h/#", 1, "mqttv311", 8,
            ));
        }
        // Eight publishers, four homed on each shard: whichever shard accepts them, about half
        // are moved.
        for i in 0..8 {
            let id = client_id_on_shard(&unique("tls-pub"), i % 2, 2);
            let (ok, out) = tls_pub(
                tls_port,
                &[
                    "--cafile",
                    &ca,
                    "-i",
                    &id,
                    "-q",
                    "1",
                    "-t",
                    &format!("h/{i}"),
                    "-m",
                    &i.to_string(),
                ],
            );
            assert!(ok, "{id}: {out}");
        }
        for sub in subs {
            let got: Vec<String> = sub.messages(8).into_iter().map(|m| m.3).collect();
            assert_eq!(got, ["0", "1", "2", "3", "4", "5", "6", "7"]);
        }
    });
}

/// Plain MQTT sent to the TLS port is not a handshake: the connection gets an alert and is
/// closed, and TLS clients go on.
#[test]
fn plain_mqtt_on_the_tls_port_is_closed() {
    require_mosquitto_clients();
    run_bounded(secs(60), || {
        let pki = pki("plain-on-tls");
        let (broker, tls_port) = tls_broker(&pki, &[]);
        let mut raw = RawClient::tcp(tls_port);
        let _ = raw.send(&crate::common::enc::Connect::v311("plain").encode());
        // What comes back (an alert) is not MQTT; then the socket closes.
        let deadline = Instant::now() + LONG;
        loop {
            match raw.read_packet(Duration::from_millis(200)) {
                Err(crate::common::raw::ReadErr::Closed(_)) => break,
                _ => assert!(Instant::now() < deadline, "still open"),
            }
        }
        let (ok, out) = tls_pub(tls_port, &["--cafile", &cafile(&pki), "-t", "x", "-m", "x"]);
        assert!(ok, "{out}");
        broker.assert_alive();
        assert!(broker.log_tail().contains("TLS"), "{}", broker.log_tail());
    });
}

/// rumqttc (rustls) over TLS: subscribe and publish at QoS 1.
#[test]
fn rumqttc_over_tls() {
    run_bounded(secs(60), || {
        let pki = pki("rumqttc");
        let (_broker, tls_port) = tls_broker(&pki, &[]);
        let ca = std::fs::read(pki.ca()).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            use rumqttc::{
                AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport,
            };
            let mut options = MqttOptions::new(unique("rumqttc-tls"), "localhost", tls_port);
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
                ca,
                alpn: None,
                client_auth: None,
            }));
            let (client, mut events) = AsyncClient::new(options, 10);
            client.subscribe("tls/r", QoS::AtLeastOnce).await.unwrap();
            let deadline = tokio::time::Instant::now() + LONG;
            loop {
                let event = tokio::time::timeout_at(deadline, events.poll())
                    .await
                    .expect("in time")
                    .expect("no error");
                match event {
                    Event::Incoming(Packet::SubAck(_)) => client
                        .publish("tls/r", QoS::AtLeastOnce, false, "over rustls")
                        .await
                        .unwrap(),
                    Event::Incoming(Packet::Publish(p)) => {
                        assert_eq!(&p.payload[..], b"over rustls");
                        break;
                    }
                    _ => {}
                }
            }
        });
    });
}
