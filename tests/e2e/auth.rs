//! Authentication and authorization: a Mosquitto password file (`--password-file`), refusals
//! with the right CONNACK code in 3.1.1 and 5.0, `--allow-anonymous`, SIGHUP reloads, the ACL
//! file (`--acl-file`), and 5.0 enhanced authentication refused (an unsupported Authentication
//! Method, an unsolicited AUTH). Attacks on the ACL are in `hostile::acl`.

use crate::common;
use crate::common::dec::parse_connack_v5;
use crate::common::enc::{self, kind, p, Connect, Props, Publish, Will};
use crate::common::raw::{RawClient, LONG, SHORT};
use crate::common::v5::V5;
use crate::common::{
    bounded, connect_with, opts, recv_one, run_bounded, secs, text, try_connect_with, Broker,
};
use rumqttc::{ConnectReturnCode, ConnectionError};

/// Users written by `mosquitto_passwd` (see src/core/auth.rs): sensor-1 / `s3cret!`,
/// ops / `pässwörd`, legacy / `old-style` (the older sha512 format).
fn password_file() -> String {
    format!(
        "{}/tests/fixtures/passwords.txt",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_from_the_password_file_get_in_and_others_are_refused() {
    bounded(secs(60), async {
        let file = password_file();
        let broker = Broker::start_sharded(&["--password-file", &file]);
        let port = broker.port;
        let mut good = Vec::new();
        for (i, (user, password)) in [
            ("sensor-1", "s3cret!"),
            ("ops", "pässwörd"),
            ("legacy", "old-style"),
        ]
        .into_iter()
        .enumerate()
        {
            let mut o = opts(port, &format!("auth-good-{i}"));
            o.set_credentials(user, password);
            good.push(connect_with(o).await);
        }
        // They work: one subscribes, another publishes.
        good[0].subscribe_ok("auth/t", 1).await;
        good[1].publish("auth/t", 1, false, "in").await;
        assert_eq!(
            text(&recv_one(&mut good[0].publishes, secs(10)).await),
            "in"
        );

        for (user, password) in [("sensor-1", "wrong"), ("nobody", "s3cret!")] {
            let mut o = opts(port, "auth-bad");
            o.set_credentials(user, password);
            match try_connect_with(o).await {
                Err(ConnectionError::ConnectionRefused(code)) => {
                    assert_eq!(code, ConnectReturnCode::BadUserNamePassword, "{user}")
                }
                Ok(_) => panic!("{user} / {password} was let in"),
                Err(other) => panic!("{user}: {other:?}"),
            }
        }
        match try_connect_with(opts(port, "auth-anonymous")).await {
            Err(ConnectionError::ConnectionRefused(code)) => {
                assert_eq!(code, ConnectReturnCode::NotAuthorized)
            }
            other => panic!("anonymous: {:?}", other.map(|_| "connected")),
        }
        broker.assert_alive();
    })
    .await;
}

/// 3.1.1 return codes 4 and 5, 5.0 reason codes 0x86 and 0x87, each followed by the close.
#[test]
fn refusals_carry_the_spec_codes_then_close() {
    common::run_bounded(secs(60), || {
        let broker = Broker::start(&["--password-file", &password_file()]);
        let cases: [(u8, Option<&[u8]>, u8); 4] = [
            (4, Some(b"wrong"), 4),
            (4, None, 5),
            (5, Some(b"wrong"), 0x86),
            (5, None, 0x87),
        ];
        for (level, password, expected) in cases {
            let mut connect = Connect::v311("auth-raw").protocol(b"MQTT", level);
            if let Some(password) = password {
                connect = connect.username("sensor-1").password(password);
            }
            let connect = connect.encode();
            let (mut c, ack) = RawClient::connect_raw(broker.port, &connect);
            let ack = ack.expect("a CONNACK");
            assert_eq!(ack.kind(), kind::CONNACK);
            let code = if level == 5 {
                parse_connack_v5(&ack).1
            } else {
                ack.connack().1
            };
            assert_eq!(code, expected, "level {level}, password {password:?}");
            c.expect_closed(LONG, "refused connection");
        }
        broker.assert_alive();
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_anonymous_admits_clients_without_a_user_name_only() {
    bounded(secs(60), async {
        let broker = Broker::start(&["--password-file", &password_file(), "--allow-anonymous"]);
        let port = broker.port;
        let anonymous = try_connect_with(opts(port, "auth-anon-ok")).await;
        assert!(anonymous.is_ok(), "anonymous refused");
        let mut o = opts(port, "auth-anon-bad");
        o.set_credentials("sensor-1", "wrong");
        assert!(matches!(
            try_connect_with(o).await,
            Err(ConnectionError::ConnectionRefused(
                ConnectReturnCode::BadUserNamePassword
            ))
        ));
    })
    .await;
}

/// SIGHUP rereads the password file: a user added to it gets in without a restart; a file that
/// no longer parses is reported and the passwords in force stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_password_file() {
    bounded(secs(60), async {
        let path = std::env::temp_dir().join(format!("ringmq-passwords-{}", std::process::id()));
        let original = std::fs::read_to_string(password_file()).unwrap();
        std::fs::write(&path, &original).unwrap();
        let broker = Broker::start(&["--password-file", path.to_str().unwrap()]);
        let port = broker.port;
        let new_user = |id: &str| {
            let mut o = opts(port, id);
            o.set_credentials("newcomer", "s3cret!");
            o
        };
        assert!(try_connect_with(new_user("hup-before")).await.is_err());

        // The same salted hash under another name: the password is "s3cret!" again.
        let hash = original.lines().next().unwrap().split_once(':').unwrap().1;
        std::fs::write(&path, format!("{original}newcomer:{hash}\n")).unwrap();
        broker.signal("HUP");
        let mut attempt = 0;
        let newcomer = loop {
            attempt += 1;
            match try_connect_with(new_user(&format!("hup-after-{attempt}"))).await {
                Ok(client) => break client,
                Err(_) => tokio::time::sleep(common::millis(50)).await,
            }
        };
        drop(newcomer);

        std::fs::write(&path, "newcomer:not-a-hash\n").unwrap();
        broker.signal("HUP");
        let deadline = tokio::time::Instant::now() + secs(20);
        while !broker.log_tail().contains("reload failed") {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no reload error logged"
            );
            tokio::time::sleep(common::millis(50)).await;
        }
        assert!(try_connect_with(new_user("hup-kept")).await.is_ok());
        let _ = std::fs::remove_file(&path);
        broker.assert_alive();
    })
    .await;
}

fn acl_file() -> String {
    format!("{}/tests/fixtures/acl.txt", env!("CARGO_MANIFEST_DIR"))
}

/// A broker with both fixture files, plus `extra` flags.
fn broker_with_acl(extra: &[&str]) -> Broker {
    let (passwords, acl) = (password_file(), acl_file());
    let files = ["--password-file", &passwords, "--acl-file", &acl];
    Broker::start(&[&files[..], extra].concat())
}

/// A raw CONNECT as sensor-1 (password `s3cret!`); callers set the rest.
fn as_sensor(client_id: &str) -> Connect {
    Connect::v311(client_id)
        .username("sensor-1")
        .password("s3cret!")
}

async fn login(port: u16, client_id: &str, user: &str, password: &str) -> common::Mqtt {
    let mut o = opts(port, client_id);
    o.set_credentials(user, password);
    connect_with(o).await
}

/// tests/fixtures/acl.txt: grants per user, a pattern with %c, and a deny inside a grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_acl_file_limits_what_each_client_publishes_and_receives() {
    bounded(secs(60), async {
        let broker = Broker::start_sharded(&[
            "--password-file",
            &password_file(),
            "--acl-file",
            &acl_file(),
        ]);
        let port = broker.port;
        let mut sensor = login(port, "acl-sensor", "sensor-1", "s3cret!").await;
        let mut ops = login(port, "acl-ops", "ops", "pässwörd").await;
        let mut legacy = login(port, "acl-legacy", "legacy", "old-style").await;

        // Subscriptions: wider than a read grant, or inside none, are refused.
        assert_eq!(
            sensor.subscribe("telemetry/#", 1).await,
            [rumqttc::SubscribeReasonCode::Failure]
        );
        sensor.subscribe_ok("commands/sensor-1", 1).await;
        sensor.subscribe_ok("devices/acl-sensor/#", 1).await;
        // `#` is within ops's `readwrite #`; its deny applies message by message.
        ops.subscribe_ok("telemetry/#", 1).await;

        // Not allowed to write: acked as usual in 3.1.1, but never delivered. Each publisher's
        // messages arrive in order, so its last one marks the end of what it sent.
        sensor
            .publish("telemetry/sensor-2/temp", 1, false, "forged")
            .await;
        sensor
            .publish("telemetry/sensor-1/temp", 1, false, "21.5")
            .await;
        legacy
            .publish("telemetry/secret/key", 1, false, "hidden")
            .await;
        legacy
            .publish("telemetry/legacy/done", 1, false, "end")
            .await;
        let mut got = Vec::new();
        while got.len() < 2 {
            let m = recv_one(&mut ops.publishes, secs(10)).await;
            got.push(format!("{} {}", m.topic, text(&m)));
        }
        got.sort();
        assert_eq!(
            got,
            ["telemetry/legacy/done end", "telemetry/sensor-1/temp 21.5"]
        );

        ops.publish("commands/sensor-1", 1, false, "reboot").await;
        ops.publish("devices/acl-sensor/led", 1, false, "on").await;
        let got = common::recv_n(&mut sensor.publishes, 2, secs(10)).await;
        assert_eq!(common::texts(&got), ["reboot", "on"]);
        broker.assert_alive();
    })
    .await;
}

/// In 5.0 a refused PUBLISH is acked with 0x87 (not authorized) and a refused SUBSCRIBE gets
/// 0x87 in its SUBACK; clients without a user name get the anonymous rules.
#[test]
fn v5_refusals_say_not_authorized() {
    common::run_bounded(secs(60), || {
        let broker = broker_with_acl(&["--allow-anonymous"]);
        let connect = as_sensor("acl-v5").protocol(b"MQTT", 5).encode();
        let (mut c, ack) = RawClient::connect_raw(broker.port, &connect);
        assert_eq!(parse_connack_v5(&ack.expect("CONNACK")).1, 0);
        c.send_ok(
            &Publish::new(b"commands/sensor-1", b"x")
                .qos(1)
                .pkid(7)
                .v5()
                .encode(),
        );
        let puback = c.expect_kind(kind::PUBACK, LONG);
        assert_eq!(puback.body[..3], [0, 7, 0x87]);
        c.send_ok(&enc::subscribe_v5(
            8,
            &Props::new(),
            &[("telemetry/#", 1), ("commands/sensor-1", 1)],
        ));
        let suback = c.expect_kind(kind::SUBACK, LONG);
        assert_eq!(suback.body[suback.body.len() - 2..], [0x87, 0x01]);

        let (mut anonymous, ack) =
            RawClient::connect_raw(broker.port, &Connect::v5("acl-anon").encode());
        assert_eq!(parse_connack_v5(&ack.expect("CONNACK")).1, 0);
        anonymous.send_ok(&enc::subscribe_v5(
            1,
            &Props::new(),
            &[("public/#", 0), ("commands/#", 0)],
        ));
        let suback = anonymous.expect_kind(kind::SUBACK, LONG);
        assert_eq!(suback.body[suback.body.len() - 2..], [0x00, 0x87]);
        broker.assert_alive();
    });
}

/// 3.1.1 has no way to refuse a PUBLISH: a QoS 2 one the ACL denies still completes its
/// PUBREC / PUBREL / PUBCOMP exchange, and the connection stays up.
#[test]
fn a_refused_qos2_publish_completes_its_exchange_in_3_1_1() {
    common::run_bounded(secs(60), || {
        let broker = broker_with_acl(&[]);
        let connect = as_sensor("acl-q2").encode();
        let (mut c, ack) = RawClient::connect_raw(broker.port, &connect);
        assert_eq!(ack.expect("CONNACK").connack().1, 0);
        // Completes PUBREC / PUBREL / PUBCOMP and checks their bytes.
        c.publish(Publish::new("commands/sensor-1", b"denied").qos(2).pkid(9));
        c.ping();
        broker.assert_alive();
    });
}

/// A will is a publish made later: its topic must be one the client may write to, or the
/// CONNECT is refused (3.1.1 code 5).
#[test]
fn a_will_on_a_topic_the_acl_denies_refuses_the_connect() {
    common::run_bounded(secs(60), || {
        let broker = broker_with_acl(&[]);
        for (topic, expected) in [
            (&b"commands/sensor-1"[..], 5),
            (&b"telemetry/sensor-1/status"[..], 0),
        ] {
            let connect = as_sensor("acl-will")
                .will(Will::new(topic, b"gone"))
                .encode();
            let (_c, ack) = RawClient::connect_raw(broker.port, &connect);
            assert_eq!(ack.expect("CONNACK").connack().1, expected, "{topic:?}");
        }
        broker.assert_alive();
    });
}

/// CONNECT with an Authentication Method ringmq does not support -> CONNACK 0x8C and close.
#[test]
fn auth_method_refused_connack_0x8c() {
    run_bounded(secs(30), || {
        let broker = Broker::start_sharded(&[]);
        let c = Connect::v5("auth-m").props(
            Props::new()
                .str(p::AUTH_METHOD, "SCRAM-SHA-256")
                .bin(p::AUTH_DATA, b"client-first"),
        );
        let (mut conn, ack) = V5::try_connect(broker.port, &c);
        let ack = ack.expect("CONNACK");
        let (sp, rc, _) = parse_connack_v5(&ack);
        assert_eq!(rc, 0x8C, "Bad authentication method: {ack:?}");
        assert!(!sp);
        conn.expect_closed(SHORT, "after CONNACK 0x8C");
    });
}

/// An AUTH packet from a client that did not start authentication -> DISCONNECT 0x82.
#[test]
fn unsolicited_auth_disconnects_0x82() {
    run_bounded(secs(30), || {
        let broker = Broker::start_sharded(&[]);
        let mut c = V5::connect(broker.port, "auth-u", true);
        let _ = c.send(&enc::auth(0x18, &Props::new().str(p::AUTH_METHOD, "X")));
        let (rc, _) = c.expect_disconnect(SHORT, "unsolicited AUTH");
        assert_eq!(rc, 0x82);
    });
}
