//! `-c FILE`: a Mosquitto configuration file starts ringmq unchanged (issue 13): Debian's own
//! `/etc/mosquitto/mosquitto.conf` (paths moved to a scratch folder) and a typical password +
//! ACL configuration; an option ringmq lacks that would change what clients get stops the start.

use std::path::{Path, PathBuf};
use std::process::Command;

use ringmq_test_support::Stderr;

use crate::common::enc::{kind, Connect, Publish};
use crate::common::raw::{RawClient, LONG};
use crate::common::{broker_bin, run_bounded, secs, unique, wait_for_text, Broker};

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(unique("ringmq-conf"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn debians_default_file_starts_ringmq_with_its_persistence_log_and_pid_file() {
    run_bounded(secs(60), || {
        let dir = scratch();
        let debian = std::fs::read_to_string(fixture("debian-mosquitto.conf")).unwrap();
        let conf_d = dir.join("conf.d");
        std::fs::create_dir_all(&conf_d).unwrap();
        std::fs::write(conf_d.join("local.conf"), "max_keepalive 300\n").unwrap();
        let text = debian
            .replace("/run/mosquitto/", &format!("{}/", dir.display()))
            .replace("/var/lib/mosquitto/", &format!("{}/data/", dir.display()))
            .replace("/var/log/mosquitto/", &format!("{}/", dir.display()))
            .replace("/etc/mosquitto/conf.d", conf_d.to_str().unwrap());
        let conf = dir.join("mosquitto.conf");
        std::fs::write(&conf, text).unwrap();
        let broker = Broker::start_unwatched(&["-c", conf.to_str().unwrap()], Stderr::Null);
        wait_for_text(&dir.join("mosquitto.log"), "ringmq ready");
        let pid = std::fs::read_to_string(dir.join("mosquitto.pid")).unwrap();
        assert_eq!(pid.trim(), broker.pid().to_string());
        // Persistence is on: a persistent session comes back after a restart.
        let (mut c, present) = RawClient::connect311(broker.port, "debian", false, 60);
        assert!(!present);
        assert_eq!(c.subscribe(1, &[("d/t", 1)]), [1]);
        c.publish(Publish::new("d/t", "hello").qos(1).pkid(1));
        assert_eq!(c.next_publish(LONG).text(), "hello");
        assert!(dir.join("data/shard-0.log").exists());
        broker.signal("TERM");
        assert!(broker.wait_exit(secs(10)).is_some());
        assert!(
            !dir.join("mosquitto.pid").exists(),
            "the pid file is removed at exit"
        );
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn a_password_and_acl_configuration_admits_users_and_applies_the_acl() {
    run_bounded(secs(60), || {
        let dir = scratch();
        let acl = dir.join("acl");
        std::fs::write(
            &acl,
            "user sensor-1\ntopic write sensors/#\ntopic read sensors/#\n",
        )
        .unwrap();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "# a typical production file\nlistener 1883\nallow_anonymous false\n\
                 password_file {}\nacl_file {}\nmax_queued_messages 1000\nuser mosquitto\n",
                fixture("passwords.txt").display(),
                acl.display()
            ),
        )
        .unwrap();
        // The command line's port and bind win over the file's listener.
        let broker = Broker::start_unwatched(&["-c", conf.to_str().unwrap()], Stderr::Null);
        let port = broker.port;
        let (_, anon) = RawClient::connect_raw(port, &Connect::v311(unique("anon")).encode());
        assert_eq!(
            anon.expect("CONNACK").bytes(),
            [0x20, 0x02, 0x00, 0x05],
            "anonymous refused"
        );
        let sensor = Connect::v311(unique("sensor"))
            .username("sensor-1")
            .password("s3cret!");
        let (mut c, ack) = RawClient::connect_raw(port, &sensor.encode());
        assert_eq!(ack.expect("CONNACK").bytes()[3], 0, "sensor-1 admitted");
        // Reading outside its grant is refused in the SUBACK; inside it works.
        assert_eq!(c.subscribe(1, &[("secret/#", 1)]), [0x80]);
        assert_eq!(c.subscribe(2, &[("sensors/#", 1)]), [1]);
        c.publish(Publish::new("sensors/t", "42").qos(1).pkid(3));
        let got = c.expect_where(LONG, "PUBLISH", |p| p.kind() == kind::PUBLISH);
        assert_eq!(got.publish().text(), "42");
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn a_bridge_section_stops_the_start_with_a_clear_error() {
    let dir = scratch();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        "listener 1883\nconnection upstream\naddress 10.0.0.1:1883\n",
    )
    .unwrap();
    let out = Command::new(broker_bin())
        .args(["-c", conf.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("connection") && stderr.contains("mosquitto.conf:2"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unknown_option_is_named_in_a_warning_and_the_broker_starts() {
    run_bounded(secs(60), || {
        let dir = scratch();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            "listener 1883\nallow_anonymous true\nfancy_option 7\n",
        )
        .unwrap();
        let broker = Broker::start(&["-c", conf.to_str().unwrap()]);
        let log = broker.log_tail();
        assert!(log.contains("fancy_option"), "{log}");
        let (c, _) = RawClient::connect311(broker.port, "anyone", true, 60);
        c.disconnect();
        let _ = std::fs::remove_dir_all(&dir);
    });
}

/// A typical TLS + WebSockets + password + ACL file: the TLS and WebSocket listeners it
/// names serve users from the password file under the ACL, and refuse anonymous clients.
#[test]
fn a_tls_websockets_password_and_acl_configuration_starts_ringmq() {
    crate::interop::require_mosquitto_clients();
    run_bounded(secs(60), || {
        let dir = scratch();
        let pki = crate::tls::pki("conf-tls");
        let acl = dir.join("acl");
        std::fs::write(&acl, "user sensor-1\ntopic readwrite sensors/#\n").unwrap();
        let (tls, ws) = (
            ringmq_test_support::free_port(),
            ringmq_test_support::free_port(),
        );
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "per_listener_settings false\nlistener 1883\n\
                 listener {tls} 127.0.0.1\ncertfile {}\nkeyfile {}\ntls_version tlsv1.2\n\
                 listener {ws} 127.0.0.1\nprotocol websockets\n\
                 allow_anonymous false\npassword_file {}\nacl_file {}\n",
                pki.server_cert().display(),
                pki.server_key().display(),
                fixture("passwords.txt").display(),
                acl.display()
            ),
        )
        .unwrap();
        let _broker = Broker::start(&["-c", conf.to_str().unwrap()]);
        let ca = pki.ca().to_str().unwrap().to_string();
        let user = ["--cafile", ca.as_str(), "-u", "sensor-1", "-P", "s3cret!"];
        let sub = crate::interop::MosqSub::start_with(tls, &user, "sensors/#", 1, "mqttv5", 1);
        // Over WebSockets, with the same credentials.
        let (mut ws, _) = crate::websockets::ws_connect(ws, "mqtt");
        let connect = Connect::v311(unique("ws-user"))
            .username("sensor-1")
            .password("s3cret!");
        ws.send(tungstenite::Message::binary(connect.encode()))
            .unwrap();
        assert_eq!(
            crate::websockets::read_packets(&mut ws, 1)[0].connack(),
            (false, 0)
        );
        let publish = Publish::new("sensors/ws", "from a browser").qos(1).pkid(1);
        ws.send(tungstenite::Message::binary(publish.encode()))
            .unwrap();
        let got: Vec<String> = sub.messages(1).into_iter().map(|m| m.3).collect();
        assert_eq!(got, ["from a browser"]);
        // Anonymous over TLS: refused.
        let (status, out, err) = crate::interop::run(
            Command::new("mosquitto_pub").args([
                "-h",
                "localhost",
                "-p",
                &tls.to_string(),
                "--cafile",
                &ca,
                "-t",
                "sensors/x",
                "-m",
                "x",
            ]),
            None,
            secs(20),
        );
        assert!(!status.success(), "anonymous admitted: {out}{err}");
        let _ = std::fs::remove_dir_all(&dir);
    });
}
