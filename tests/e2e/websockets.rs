//! MQTT over WebSockets (issue 13), plain and over TLS: paho-mqtt, MQTT.js under Node and in
//! headless Chromium, and tungstenite driving the framing by hand (packets split across
//! frames, several in one).

use std::net::TcpStream;
use std::process::Command;

use ringmq_test_support::free_port;
use tungstenite::client::IntoClientRequest;
use tungstenite::Message;

use crate::common::dec::{parse_packets, RawPacket};
use crate::common::enc::{self, kind, Connect, Publish};
use crate::common::raw::LONG;
use crate::common::{run_bounded, secs, Broker};
use crate::interop::{require_paho, run};
use crate::tls::{broker_with_listeners, pki};

/// Ports of a broker serving MQTT (its own port), ws, wss and mqtts.
struct Ports {
    ws: u16,
    wss: u16,
    tls: u16,
}

fn broker_with_every_transport(
    pki: &ringmq_test_support::pki::Pki,
    extra: &[&str],
) -> (Broker, Ports) {
    let ports = Ports {
        ws: free_port(),
        wss: free_port(),
        tls: free_port(),
    };
    let listeners = [
        format!("ws://127.0.0.1:{}", ports.ws),
        format!("wss://127.0.0.1:{}", ports.wss),
        format!("mqtts://127.0.0.1:{}", ports.tls),
    ];
    (broker_with_listeners(pki, &listeners, extra), ports)
}

/// paho-mqtt over ws, wss and TLS, 3.1.1 and 5.0, QoS 0 to 2, a 200 KB message, and across
/// transports; with two shards, so that connections also move to their session's shard.
#[test]
fn paho_over_websockets_and_tls() {
    require_paho();
    run_bounded(secs(90), || {
        let pki = pki("paho-ws");
        let (_broker, ports) = broker_with_every_transport(&pki, &["--shards", "2"]);
        let script = format!(
            "{}/tests/interop/paho_transports.py",
            env!("CARGO_MANIFEST_DIR")
        );
        let (status, out, err) = run(
            Command::new("python3").args([
                &script,
                &ports.ws.to_string(),
                &ports.wss.to_string(),
                &ports.tls.to_string(),
                pki.ca().to_str().unwrap(),
            ]),
            None,
            secs(75),
        );
        assert!(
            status.success() && out.lines().any(|l| l == "OK"),
            "paho_transports.py ({status}):\n{out}\n{err}"
        );
    });
}

/// A WebSocket client (tungstenite) with the given subprotocol offer; the subprotocol the
/// broker chose.
pub(crate) fn ws_connect(
    port: u16,
    offer: &str,
) -> (tungstenite::WebSocket<TcpStream>, Option<String>) {
    let mut request = format!("ws://127.0.0.1:{port}/any/path")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", offer.parse().unwrap());
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(LONG)).unwrap();
    let (ws, response) = tungstenite::client(request, stream).expect("upgrade");
    let chosen = response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .map(|v| v.to_str().unwrap().to_string());
    (ws, chosen)
}

/// Reads binary messages until `n` whole packets have come.
pub(crate) fn read_packets(ws: &mut tungstenite::WebSocket<TcpStream>, n: usize) -> Vec<RawPacket> {
    let mut bytes = Vec::new();
    loop {
        let packets = parse_packets(&bytes);
        if packets.len() >= n {
            return packets;
        }
        match ws.read().expect("a message before the timeout") {
            Message::Binary(data) => bytes.extend_from_slice(&data),
            other => panic!("not a binary message: {other:?}"),
        }
    }
}

/// Packets split across WebSocket messages and several in one message are read as MQTT
/// streams them; `mqtt` and `mqttv3.1` are answered; any path is served.
#[test]
fn packets_span_messages_and_share_them() {
    run_bounded(secs(60), || {
        let pki = pki("ws-frames");
        let (_broker, ports) = broker_with_every_transport(&pki, &[]);
        let (mut ws, chosen) = ws_connect(ports.ws, "mqtt");
        assert_eq!(chosen.as_deref(), Some("mqtt"));
        let connect = Connect::v311("ws-frames").encode();
        // CONNECT in three messages.
        for part in [&connect[..3], &connect[3..10], &connect[10..]] {
            ws.send(Message::binary(part.to_vec())).unwrap();
        }
        let connack = &read_packets(&mut ws, 1)[0];
        assert_eq!(connack.connack(), (false, 0));
        // SUBSCRIBE and a PUBLISH to it in one message, a second PUBLISH split over two.
        let mut shared = enc::subscribe(1, &[("ws/t", 1)]);
        shared.extend(Publish::new("ws/t", "first").qos(1).pkid(2).encode());
        ws.send(Message::binary(shared)).unwrap();
        let second = Publish::new("ws/t", "second").encode();
        ws.send(Message::binary(second[..4].to_vec())).unwrap();
        ws.send(Message::binary(second[4..].to_vec())).unwrap();
        let packets = read_packets(&mut ws, 4);
        let kinds: Vec<u8> = packets.iter().map(|p| p.kind()).collect();
        assert!(
            kinds.contains(&kind::SUBACK) && kinds.contains(&kind::PUBACK),
            "{kinds:?}"
        );
        let texts: Vec<String> = packets
            .iter()
            .filter(|p| p.kind() == kind::PUBLISH)
            .map(|p| p.publish().text())
            .collect();
        assert_eq!(texts, ["first", "second"]);

        // 3.1 clients ask for mqttv3.1.
        let (mut ws, chosen) = ws_connect(ports.ws, "mqttv3.1");
        assert_eq!(chosen.as_deref(), Some("mqttv3.1"));
        ws.send(Message::binary(Connect::v31("ws-31").encode()))
            .unwrap();
        assert_eq!(read_packets(&mut ws, 1)[0].connack(), (false, 0));
    });
}

/// A text message is not MQTT (MQTT-6.0.0-1): the connection is closed.
#[test]
fn a_text_message_closes_the_connection() {
    run_bounded(secs(60), || {
        let pki = pki("ws-text");
        let (broker, ports) = broker_with_every_transport(&pki, &[]);
        let (mut ws, _) = ws_connect(ports.ws, "mqtt");
        ws.send(Message::text("CONNECT please")).unwrap();
        loop {
            match ws.read() {
                Ok(Message::Close(_)) => {}
                Ok(other) => panic!("{other:?}"),
                Err(_) => break,
            }
        }
        broker.wait_log("a text message");
    });
}

fn node_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/node")
}

/// MQTT.js (Node) and its browser bundle need `npm ci` in tests/interop/node.
fn require_mqttjs() {
    assert!(
        node_dir()
            .join("node_modules/mqtt/dist/mqtt.min.js")
            .exists(),
        "MQTT.js is not installed in tests/interop/node: {}",
        crate::interop::INSTALL_HINT
    );
}

/// MQTT.js under Node over ws and wss, MQTT 5.0 and 3.1.1, QoS 0 to 2, 100 KB messages.
#[test]
fn mqttjs_under_node_over_ws_and_wss() {
    require_mqttjs();
    run_bounded(secs(90), || {
        let pki = pki("mqttjs");
        let (_broker, ports) = broker_with_every_transport(&pki, &["--shards", "2"]);
        let ca = pki.ca();
        for (url, ca) in [
            (format!("ws://127.0.0.1:{}", ports.ws), None),
            (
                format!("wss://localhost:{}", ports.wss),
                Some(ca.to_str().unwrap()),
            ),
        ] {
            let mut node = Command::new("node");
            node.current_dir(node_dir())
                .arg("mqttjs_roundtrip.js")
                .arg(&url)
                .args(ca);
            let (status, out, err) = run(&mut node, None, secs(40));
            assert!(
                status.success() && out.lines().any(|l| l == "OK"),
                "MQTT.js over {url} ({status}):\n{out}\n{err}"
            );
        }
    });
}

/// Headless Chromium, started by a test; killed (and its profile removed) when dropped.
struct Chromium {
    child: std::process::Child,
    profile: std::path::PathBuf,
}

impl Chromium {
    fn open(url: &str, extra: &[&str]) -> Chromium {
        let profile = std::env::temp_dir().join(crate::common::unique("chromium-profile"));
        let child = Command::new("chromium")
            .args(["--headless=new", "--no-sandbox", "--disable-gpu"])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("chromium: {e}: {}", crate::interop::INSTALL_HINT));
        Chromium { child, profile }
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// MQTT.js in a real browser (Debian's Chromium, headless): a page connects over ws (and
/// wss, the test CA not being the browser's, with certificate errors ignored), sends itself
/// a message, and reports through the broker once it came back.
#[test]
fn mqttjs_in_headless_chromium_over_ws_and_wss() {
    require_mqttjs();
    run_bounded(secs(120), || {
        let pki = pki("chromium");
        let (broker, ports) = broker_with_every_transport(&pki, &[]);
        let page = node_dir().join("browser.html");
        for (url, extra) in [
            (format!("ws://127.0.0.1:{}", ports.ws), &[][..]),
            (
                format!("wss://localhost:{}", ports.wss),
                &["--ignore-certificate-errors"][..],
            ),
        ] {
            let topic = crate::common::unique("browser");
            let (mut watcher, _) = crate::common::raw::RawClient::connect311(
                broker.port,
                &crate::common::unique("watcher"),
                true,
                60,
            );
            watcher.subscribe_ok(1, &[(&format!("{topic}/result"), 0)]);
            let _browser = Chromium::open(
                &format!("file://{}?url={url}&topic={topic}", page.display()),
                extra,
            );
            let result = watcher.expect_kind(kind::PUBLISH, secs(60)).publish();
            assert_eq!(result.text(), "browser-ok", "over {url}");
        }
    });
}
