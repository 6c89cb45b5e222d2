//! ringmq as the remote end of a real Mosquitto bridge (issue 16): Mosquitto (Debian's
//! `mosquitto`, installed by `scripts/test.sh`) connects with `try_private` (protocol level
//! 0x84), messages flow both ways, and what the bridge forwards to ringmq does not come back
//! to it.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::enc::Publish;
use crate::common::raw::{RawClient, ReadErr, LONG};
use crate::common::{free_port, run_bounded, secs, unique, Broker};

const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// A Mosquitto broker on a free loopback port, bridged to ringmq on `remote` for `bridge/#`.
struct Mosquitto {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Mosquitto {
    fn bridged_to(remote: u16) -> Mosquitto {
        assert!(
            std::path::Path::new(MOSQUITTO).exists(),
            "{MOSQUITTO} not found: run scripts/test.sh (it installs the mosquitto package)"
        );
        let port = free_port();
        let dir = std::env::temp_dir().join(unique("ringmq-bridge"));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("mosquitto.conf");
        let mut f = std::fs::File::create(&conf).unwrap();
        write!(
            f,
            "listener {port} 127.0.0.1\n\
             allow_anonymous true\n\
             persistence false\n\
             connection to-ringmq\n\
             address 127.0.0.1:{remote}\n\
             bridge_protocol_version mqttv311\n\
             try_private true\n\
             cleansession true\n\
             restart_timeout 1\n\
             topic bridge/# both 1\n"
        )
        .unwrap();
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        Mosquitto { child, port, dir }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A 3.1.1 subscriber of `filter` on `port`, retrying while the broker is not up yet.
fn subscriber(port: u16, filter: &str) -> RawClient {
    let deadline = Instant::now() + LONG;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (mut c, _) = RawClient::connect311(port, &unique("bridge-sub"), true, 60);
    assert_eq!(c.subscribe(1, &[(filter, 1)]), [1]);
    c
}

/// Publishes on `topic/N` from `from` until `to` (subscribed to `topic/#`) gets one: the
/// bridge is up in that direction (it connects a moment after Mosquitto starts).
fn until_bridged(from: &mut RawClient, to: &mut RawClient, topic: &str) {
    let deadline = Instant::now() + secs(20);
    for n in 1u16.. {
        from.publish(Publish::new(format!("{topic}/{n}"), "probe").qos(1).pkid(n));
        match to.read_packet(Duration::from_millis(300)) {
            Ok(p) if p.kind() == crate::common::enc::kind::PUBLISH => return,
            Ok(_) | Err(ReadErr::Timeout) => {}
            Err(e) => panic!("{e:?}"),
        }
        assert!(
            Instant::now() < deadline,
            "{topic} never crossed the bridge"
        );
    }
}

fn texts(c: &mut RawClient, n: usize) -> Vec<String> {
    (0..n).map(|_| c.next_publish(LONG).text()).collect()
}

/// Messages cross both ways, once: on each side, what comes from the other side is followed
/// by what was published after it, with no echo in between (an echo would travel the same
/// bridge connection, ahead of what follows it).
#[test]
fn a_mosquitto_bridge_forwards_both_ways_without_echo() {
    run_bounded(secs(60), || {
        let ringmq = Broker::start_sharded(&[]);
        let mosquitto = Mosquitto::bridged_to(ringmq.port);
        let mut on_ringmq = subscriber(ringmq.port, "bridge/data/#");
        let mut on_mosquitto = subscriber(mosquitto.port, "bridge/data/#");
        let (mut ringmq_pub, _) = RawClient::connect311(ringmq.port, &unique("r-pub"), true, 60);
        let (mut mosq_pub, _) = RawClient::connect311(mosquitto.port, &unique("m-pub"), true, 60);
        let mut probe = subscriber(mosquitto.port, "bridge/probe-out/#");
        until_bridged(&mut ringmq_pub, &mut probe, "bridge/probe-out");
        let mut probe = subscriber(ringmq.port, "bridge/probe-in/#");
        until_bridged(&mut mosq_pub, &mut probe, "bridge/probe-in");

        let publish = |c: &mut RawClient, text: &str, pkid: u16| {
            c.publish(
                Publish::new(format!("bridge/data/{text}"), text)
                    .qos(1)
                    .pkid(pkid),
            );
        };
        publish(&mut mosq_pub, "from-mosquitto", 100);
        assert_eq!(texts(&mut on_ringmq, 1), ["from-mosquitto"]);
        publish(&mut ringmq_pub, "from-ringmq", 100);
        assert_eq!(
            texts(&mut on_mosquitto, 2),
            ["from-mosquitto", "from-ringmq"],
            "Mosquitto's subscriber"
        );
        publish(&mut mosq_pub, "marker", 101);
        assert_eq!(
            texts(&mut on_ringmq, 2),
            ["from-ringmq", "marker"],
            "ringmq's subscriber"
        );
        ringmq.assert_alive();
    });
}
