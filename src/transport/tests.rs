//! Each layer driven by a real peer over memory: rustls's client, tungstenite's client
//! framing, `ppp`'s header builder.

use std::io::{Read, Write};
use std::sync::Arc;

use bytes::BytesMut;
use ringmq_test_support::pki::Pki;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use super::*;
use crate::config::listeners::TlsFiles;

/// A CONNECT (3.1.1, client id "c").
const CONNECT: &[u8] = b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01c";

fn pki(name: &str) -> Pki {
    let dir = std::env::temp_dir().join(format!("ringmq-pki-{name}-{}", std::process::id()));
    Pki::new(&dir)
}

fn tls_files(pki: &Pki) -> TlsFiles {
    TlsFiles {
        certfile: pki.server_cert(),
        keyfile: pki.server_key(),
        cafile: Some(pki.ca()),
        ..TlsFiles::default()
    }
}

fn acceptor(url: &str, tls: Option<&TlsFiles>) -> Acceptor {
    Acceptor::new(ListenerSpec::parse_url(url, tls).unwrap(), 1 << 20).unwrap()
}

fn client(pki: &Pki, cert: Option<(&str, &str)>) -> ClientConnection {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(pki.ca()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match cert {
        None => builder.with_no_client_auth(),
        Some((file, cn)) => {
            let (cert, key) = pki.client(file, cn);
            builder
                .with_client_auth_cert(
                    vec![CertificateDer::from_pem_file(cert).unwrap()],
                    PrivateKeyDer::from_pem_file(key).unwrap(),
                )
                .unwrap()
        }
    };
    let name = ServerName::try_from("localhost").unwrap();
    ClientConnection::new(Arc::new(config), name).unwrap()
}

/// Moves bytes both ways until neither side has anything to say; returns what the server
/// side decoded.
fn pump(client: &mut ClientConnection, server: &mut Transport) -> Result<BytesMut, TransportError> {
    let mut mqtt = BytesMut::new();
    for _ in 0..20 {
        let mut to_server = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut to_server).unwrap();
        }
        if !to_server.is_empty() {
            server.receive(&to_server, &mut mqtt)?;
        }
        let to_client = server.take_wire();
        if !to_client.is_empty() {
            let mut slice = &to_client[..];
            while !slice.is_empty() {
                client.read_tls(&mut slice).unwrap();
                client.process_new_packets().unwrap();
            }
        }
        if to_server.is_empty() && to_client.is_empty() {
            break;
        }
    }
    Ok(mqtt)
}

fn read_plain(client: &mut ClientConnection) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = client.reader().read_to_end(&mut out);
    out
}

#[test]
fn tls_carries_mqtt_both_ways() {
    let pki = pki("both-ways");
    let acceptor = acceptor("mqtts://127.0.0.1:8883", Some(&tls_files(&pki)));
    let mut server = acceptor.transport().unwrap();
    let mut client = client(&pki, None);
    client.writer().write_all(CONNECT).unwrap();
    let mqtt = pump(&mut client, &mut server).unwrap();
    assert_eq!(&mqtt[..], CONNECT);
    server.send(b"\x20\x02\x00\x00").unwrap();
    pump(&mut client, &mut server).unwrap();
    assert_eq!(read_plain(&mut client), b"\x20\x02\x00\x00");
    assert_eq!(server.take_identity(), None, "not asked for");
    // The close: the client's close_notify ends the connection.
    client.send_close_notify();
    let mut wire = Vec::new();
    client.write_tls(&mut wire).unwrap();
    let mut mqtt = BytesMut::new();
    assert_eq!(server.receive(&wire, &mut mqtt), Ok(Received::Closed));
}

#[test]
fn garbage_instead_of_a_handshake_is_an_error_with_an_alert() {
    let pki = pki("garbage");
    let acceptor = acceptor("mqtts://127.0.0.1:8883", Some(&tls_files(&pki)));
    let mut server = acceptor.transport().unwrap();
    let mut mqtt = BytesMut::new();
    // Plain MQTT on the TLS port.
    assert!(matches!(
        server.receive(CONNECT, &mut mqtt),
        Err(TransportError::Tls(_))
    ));
    assert!(mqtt.is_empty());
    assert!(!server.take_wire().is_empty(), "an alert for the client");
}

#[test]
fn the_client_certificate_names_the_user() {
    let pki = pki("identity");
    let files = TlsFiles {
        require_certificate: true,
        use_identity_as_username: true,
        ..tls_files(&pki)
    };
    let acceptor = acceptor("mqtts://127.0.0.1:8883", Some(&files));
    let mut server = acceptor.transport().unwrap();
    assert_eq!(server.take_identity(), None, "no handshake yet");
    let mut sensor = client(&pki, Some(("sensor", "sensor-7")));
    sensor.writer().write_all(CONNECT).unwrap();
    pump(&mut sensor, &mut server).unwrap();
    assert_eq!(server.take_identity().as_deref(), Some("sensor-7"));
    assert_eq!(server.take_identity(), None, "once");
    assert_eq!(server.identity().as_deref(), Some("sensor-7"));

    // Without a certificate the handshake fails: it is required (TLS 1.3 lets the client
    // finish its side and the server refuse).
    let mut server = acceptor.transport().unwrap();
    let mut anonymous = client(&pki, None);
    anonymous.writer().write_all(CONNECT).unwrap();
    assert!(pump(&mut anonymous, &mut server).is_err());
}

#[test]
fn capath_is_a_folder_of_cas() {
    let pki = pki("capath");
    let folder = pki.path("cas");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::copy(pki.ca(), folder.join("clients.crt")).unwrap();
    std::fs::write(folder.join("notes.txt"), "not a certificate").unwrap();
    let files = TlsFiles {
        cafile: None,
        capath: Some(folder),
        require_certificate: true,
        use_identity_as_username: true,
        ..tls_files(&pki)
    };
    let mut server = acceptor("mqtts://127.0.0.1:8883", Some(&files))
        .transport()
        .unwrap();
    let mut client = client(&pki, Some(("meter", "meter-3")));
    client.writer().write_all(CONNECT).unwrap();
    assert_eq!(&pump(&mut client, &mut server).unwrap()[..], CONNECT);
    assert_eq!(server.take_identity().as_deref(), Some("meter-3"));
}

/// A WebSocket client's upgrade request.
fn upgrade_request(protocols: &str) -> String {
    format!(
        "GET /mqtt HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Protocol: {protocols}\r\n\r\n"
    )
}

/// Client-side framing (masked), over a pipe whose output we take.
fn ws_client() -> tungstenite::WebSocket<Pipe> {
    tungstenite::WebSocket::from_raw_socket(
        Pipe::default(),
        tungstenite::protocol::Role::Client,
        None,
    )
}

#[derive(Default)]
struct Pipe(Vec<u8>);

impl Read for Pipe {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(std::io::ErrorKind::WouldBlock.into())
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn frames(messages: &[&[u8]]) -> Vec<u8> {
    let mut ws = ws_client();
    for m in messages {
        ws.write(tungstenite::Message::binary(m.to_vec())).unwrap();
    }
    ws.flush().unwrap();
    std::mem::take(&mut ws.get_mut().0)
}

#[test]
fn websocket_upgrade_then_packets_split_and_shared() {
    let acceptor = acceptor("ws://127.0.0.1:9001", None);
    let mut server = acceptor.transport().unwrap();
    let mut mqtt = BytesMut::new();
    let request = upgrade_request("mqttv3.1, mqtt");
    // The request in two reads.
    server
        .receive(&request.as_bytes()[..20], &mut mqtt)
        .unwrap();
    assert!(server.take_wire().is_empty());
    server
        .receive(&request.as_bytes()[20..], &mut mqtt)
        .unwrap();
    let answer = String::from_utf8(server.take_wire().to_vec()).unwrap();
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    assert!(
        answer.contains("sec-websocket-protocol: mqtt\r\n"),
        "{answer}"
    );
    // A CONNECT across two messages, then two PINGREQs in one.
    let wire = frames(&[&CONNECT[..5], &CONNECT[5..], b"\xc0\x00\xc0\x00"]);
    // Fed a byte at a time: frames split anywhere.
    for byte in &wire {
        assert_eq!(server.receive(&[*byte], &mut mqtt), Ok(Received::Open));
    }
    let mut expected = CONNECT.to_vec();
    expected.extend_from_slice(b"\xc0\x00\xc0\x00");
    assert_eq!(&mqtt[..], &expected[..]);
    // The answer is one binary frame (unmasked, server to client).
    server.send(b"\xd0\x00").unwrap();
    assert_eq!(&server.take_wire()[..], b"\x82\x02\xd0\x00");
}

/// A WebSocket connection past its upgrade (the answer taken).
fn open_websocket() -> Box<Transport> {
    let mut server = acceptor("ws://127.0.0.1:9001", None).transport().unwrap();
    server
        .receive(upgrade_request("mqtt").as_bytes(), &mut BytesMut::new())
        .unwrap();
    server.take_wire();
    server
}

/// One client message, framed.
fn client_frame(message: tungstenite::Message) -> Vec<u8> {
    let mut ws = ws_client();
    ws.write(message).unwrap();
    ws.flush().unwrap();
    std::mem::take(&mut ws.get_mut().0)
}

#[test]
fn websocket_text_frames_close_the_connection() {
    let mut server = open_websocket();
    let mut mqtt = BytesMut::new();
    let wire = client_frame(tungstenite::Message::text("hello"));
    assert!(matches!(
        server.receive(&wire, &mut mqtt),
        Err(TransportError::WebSocket(_))
    ));
}

#[test]
fn websocket_pings_are_answered_and_closes_echoed() {
    let mut server = open_websocket();
    let mut mqtt = BytesMut::new();
    let ping = client_frame(tungstenite::Message::Ping(b"p".to_vec().into()));
    server.receive(&ping, &mut mqtt).unwrap();
    assert_eq!(&server.take_wire()[..], b"\x8a\x01p", "a pong");
    let close = client_frame(tungstenite::Message::Close(None));
    assert_eq!(server.receive(&close, &mut mqtt), Ok(Received::Closed));
    assert_eq!(server.take_wire()[0], 0x88, "the close echoed");
}

#[test]
fn proxy_header_then_tls_then_websocket() {
    let pki = pki("stack");
    let acceptor = acceptor("wss+proxy://127.0.0.1:9443", Some(&tls_files(&pki)));
    let mut server = acceptor.transport().unwrap();
    let mut mqtt = BytesMut::new();
    server
        .receive(b"PROXY TCP4 10.9.8.7 127.0.0.1 4242 9443\r\n", &mut mqtt)
        .unwrap();
    assert_eq!(server.client(), Some("10.9.8.7:4242".parse().unwrap()));
    let mut client = client(&pki, None);
    client
        .writer()
        .write_all(upgrade_request("mqtt").as_bytes())
        .unwrap();
    pump(&mut client, &mut server).unwrap();
    let answer = read_plain(&mut client);
    assert!(answer.starts_with(b"HTTP/1.1 101"));
    client.writer().write_all(&frames(&[CONNECT])).unwrap();
    let mqtt = pump(&mut client, &mut server).unwrap();
    assert_eq!(&mqtt[..], CONNECT);
    server.send(b"\x20\x02\x00\x00").unwrap();
    pump(&mut client, &mut server).unwrap();
    assert_eq!(read_plain(&mut client), b"\x82\x04\x20\x02\x00\x00");
}

#[test]
fn plain_listeners_have_no_transport() {
    assert!(acceptor("mqtt://127.0.0.1:1883", None)
        .transport()
        .is_none());
    assert!(acceptor("mqtt+proxy://127.0.0.1:1883", None)
        .transport()
        .is_some());
}

mod arbitrary_input {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Whatever a client sends, in whatever pieces, each transport answers with bytes or an
        /// error: never a panic.
        #[test]
        fn never_panics(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..8)) {
            let pki = pki("arbitrary");
            let files = tls_files(&pki);
            for url in ["ws://127.0.0.1:1", "wss://127.0.0.1:1", "mqtts://127.0.0.1:1", "mqtt+proxy://127.0.0.1:1"] {
                let mut server = acceptor(url, Some(&files)).transport().unwrap();
                let mut mqtt = BytesMut::new();
                for chunk in &chunks {
                    if server.receive(chunk, &mut mqtt).is_err() {
                        break;
                    }
                    server.take_wire();
                }
                let _ = server.send(b"\xd0\x00");
                server.close();
            }
        }

        /// A valid upgrade followed by arbitrary frame bytes: the same.
        #[test]
        fn websocket_frames_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
            let mut server = open_websocket();
            let mut mqtt = BytesMut::new();
            let _ = server.receive(&bytes, &mut mqtt);
        }
    }
}
