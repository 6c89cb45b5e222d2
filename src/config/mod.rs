//! Command line and defaults. Flags that Mosquitto also has use its letters (`-p`, `-v`), so
//! scripts written for `mosquitto -v -p 1884` start ringmq unchanged.

use std::net::{IpAddr, SocketAddr};

use clap::{Parser, ValueEnum};

use crate::core::{Features, Limits, SharedPolicy};
use crate::protocol::QoS;

pub mod listeners;
pub mod mosquitto;

use listeners::{ListenerSpec, TlsFiles, TlsVersion};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "ringmq",
    version,
    about = "A thread-per-core MQTT 3.1 / 3.1.1 / 5.0 broker on io_uring"
)]
pub struct Config {
    /// A Mosquitto configuration file: its options set the flags they match (flags given on
    /// the command line win); unknown ones are warned of, unsupported ones stop the start.
    #[arg(short = 'c', long = "config-file", value_name = "FILE")]
    pub config_file: Option<std::path::PathBuf>,
    /// Write the process id to this file (removed at exit).
    #[arg(long, value_name = "PATH")]
    pub pid_file: Option<std::path::PathBuf>,
    /// Set by a Mosquitto file that allows no anonymous client and names no password file:
    /// every client is refused, as Mosquitto does.
    #[arg(skip)]
    pub refuse_anonymous_without_passwords: bool,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<SocketAddr>,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind: IpAddr,
    /// TCP port for MQTT.
    #[arg(short = 'p', long, default_value_t = 1883)]
    pub port: u16,
    /// Listen here instead of --bind and --port (repeatable): `mqtt://`, `mqtts://` (TLS),
    /// `ws://` or `wss://` (WebSockets), then ADDR:PORT; `+proxy` after the scheme expects a
    /// PROXY protocol header first (`mqtt+proxy://0.0.0.0:1884` behind HAProxy).
    #[arg(long = "listen", value_name = "URL")]
    pub listen: Vec<String>,
    /// TLS listeners: the server certificate chain (PEM). Reread on SIGHUP.
    #[arg(long, value_name = "PATH")]
    pub certfile: Option<std::path::PathBuf>,
    /// TLS listeners: the server's private key (PEM). Reread on SIGHUP.
    #[arg(long, value_name = "PATH")]
    pub keyfile: Option<std::path::PathBuf>,
    /// TLS listeners: CA certificates (PEM) that client certificates must chain to.
    #[arg(long, value_name = "PATH")]
    pub cafile: Option<std::path::PathBuf>,
    /// TLS listeners: a folder of CA certificates (`*.pem`, `*.crt`).
    #[arg(long, value_name = "DIR")]
    pub capath: Option<std::path::PathBuf>,
    /// TLS listeners: refuse clients without a valid certificate (needs --cafile or --capath).
    #[arg(long)]
    pub require_certificate: bool,
    /// TLS listeners: the client certificate's Common Name is the user name (for the ACL);
    /// the password file is not consulted.
    #[arg(long)]
    pub use_identity_as_username: bool,
    /// TLS listeners: the oldest version accepted, tlsv1.2 or tlsv1.3.
    #[arg(long, value_name = "VERSION", value_parser = TlsVersion::parse)]
    pub tls_version: Option<TlsVersion>,
    /// The listeners of a Mosquitto file (`-c`), when it has any.
    #[arg(skip)]
    pub file_listeners: Vec<ListenerSpec>,
    /// Shards (threads, one per CPU, pinned). Default: one per online CPU. At most 64.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub shards: Option<u16>,
    /// Verbose logging (debug level: connections, disconnections, refusals); RUST_LOG
    /// overrides (`RUST_LOG=ringmq=trace` for more).
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Append log lines to this file instead of stderr; it is reopened on SIGHUP (logrotate).
    #[arg(long, value_name = "PATH", conflicts_with = "log_dest")]
    pub log_file: Option<std::path::PathBuf>,
    /// Where log lines go: stderr or syslog (which journald reads too).
    #[arg(long, value_enum, default_value_t = LogDestArg::Stderr)]
    pub log_dest: LogDestArg,
    /// Log lines as text or as one JSON object a line.
    #[arg(long, value_enum, default_value_t = crate::logging::LogFormat::Text)]
    pub log_format: crate::logging::LogFormat,
    /// Let the allocator use transparent huge pages. Off by default: they made each idle
    /// connection cost about 1 KB more and can stall on compaction.
    #[arg(long)]
    pub huge_pages: bool,
    /// Largest packet accepted from a client, in bytes.
    #[arg(long, default_value_t = Limits::DEFAULT.max_packet_size, value_parser = clap::value_parser!(u32).range(16..=268_435_460))]
    pub max_packet_size: u32,
    /// Most sockets per shard, CONNECT sent or not; further CONNECTs are refused (5.0: Quota
    /// exceeded) and, a few beyond, sockets are closed at once.
    #[arg(long, default_value_t = Limits::DEFAULT.max_connections)]
    pub max_connections: usize,
    /// Most sessions (connected or not) in the whole broker; new ones beyond it are refused
    /// (5.0: Quota exceeded).
    #[arg(long, default_value_t = Limits::DEFAULT.max_sessions)]
    pub max_sessions: usize,
    /// Most subscriptions per session; further ones are refused (5.0: Quota exceeded).
    #[arg(long, default_value_t = Limits::DEFAULT.max_subscriptions)]
    pub max_subscriptions: usize,
    /// Most levels in a topic name or filter; deeper ones are refused (5.0: Topic Name /
    /// Topic Filter invalid).
    #[arg(long, default_value_t = Limits::DEFAULT.max_topic_levels as u32, value_parser = clap::value_parser!(u32).range(1..=65_535))]
    pub max_topic_levels: u32,
    /// Seconds a socket has to send CONNECT before it is closed.
    #[arg(long, default_value_t = Limits::DEFAULT.connect_timeout.as_secs() as u32, value_parser = clap::value_parser!(u32).range(1..))]
    pub connect_timeout: u32,
    /// Seconds within which a connection's pending output must be written, else it is closed
    /// (a client that stopped reading).
    #[arg(long, default_value_t = Limits::DEFAULT.write_timeout.as_secs() as u32, value_parser = clap::value_parser!(u32).range(1..))]
    pub write_timeout: u32,
    /// Milliseconds a connected subscriber may take nothing (no ack, no byte read) while
    /// messages wait for it before it is stalled: it stops slowing its QoS 1/2 publishers, and
    /// its messages queue up to --max-queued-messages / --max-queued-bytes, then drop.
    #[arg(long, default_value_t = Limits::DEFAULT.stall_timeout.as_millis() as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub stall_timeout_ms: u64,
    /// Seconds after which sessions that would never expire (3.x clean session 0, 5.0
    /// 0xFFFFFFFF) expire once their client is gone (Mosquitto's
    /// persistent_client_expiration). Default: never.
    #[arg(long, value_name = "SECS")]
    pub persistent_client_expiration: Option<u32>,
    /// Longest Session Expiry Interval granted to a 5.0 client, in seconds (the CONNACK says
    /// so when it is cut). Default: what the client asks.
    #[arg(long, value_name = "SECS")]
    pub max_session_expiry: Option<u32>,
    /// Most retained messages (all topics); further new topics are delivered but not retained.
    #[arg(long, default_value_t = Limits::DEFAULT.max_retained_messages)]
    pub max_retained_messages: usize,
    /// Most bytes (topic, payload, properties) of all retained messages.
    #[arg(long, default_value_t = Limits::DEFAULT.max_retained_bytes)]
    pub max_retained_bytes: usize,
    /// Use the user name as the client id, so that sessions belong to users; clients without
    /// a user name are refused (Mosquitto's use_username_as_clientid).
    #[arg(long)]
    pub use_username_as_clientid: bool,
    /// Outgoing QoS 1/2 messages in flight per client (lowered to a 5.0 client's Receive Maximum).
    #[arg(long, default_value_t = Limits::DEFAULT.max_inflight, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_inflight: u16,
    /// Messages queued per session while the client is offline or slow; further ones are dropped
    /// and counted.
    #[arg(long, default_value_t = Limits::DEFAULT.max_queued_messages)]
    pub max_queued_messages: usize,
    /// Bytes (topic + payload) queued per session.
    #[arg(long, default_value_t = Limits::DEFAULT.max_queued_bytes)]
    pub max_queued_bytes: usize,
    /// With --data-dir: queued QoS 1/2 messages of a persistent session kept in memory; those
    /// behind them are read back from disk when the queue gets down to half of this (up to
    /// --max-queued-messages in all, which may then be far larger).
    #[arg(long, default_value_t = Limits::DEFAULT.max_queued_in_memory)]
    pub max_queued_in_memory: usize,
    /// Topic aliases a 5.0 client may set (0: none).
    #[arg(long, default_value_t = Features::DEFAULT.topic_alias_maximum)]
    pub topic_alias_maximum: u16,
    /// QoS 2 messages a 5.0 client may have awaiting PUBREL (its Receive Maximum towards us).
    #[arg(long, default_value_t = Features::DEFAULT.receive_maximum, value_parser = clap::value_parser!(u16).range(1..))]
    pub receive_maximum: u16,
    /// Longest keep alive granted, in seconds; longer requests (and 0) get this (0: no limit).
    #[arg(long, default_value_t = Features::DEFAULT.max_keep_alive)]
    pub max_keepalive: u16,
    /// Highest QoS accepted and granted.
    #[arg(long, default_value_t = Features::DEFAULT.max_qos as u8, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub max_qos: u8,
    /// Refuse retained messages.
    #[arg(long)]
    pub no_retain: bool,
    /// Refuse subscriptions with wildcards.
    #[arg(long)]
    pub no_wildcard_subscriptions: bool,
    /// Refuse subscription identifiers.
    #[arg(long)]
    pub no_subscription_identifiers: bool,
    /// Refuse shared subscriptions ($share/...).
    #[arg(long)]
    pub no_shared_subscriptions: bool,
    /// How a shared subscription group picks the member for a message.
    #[arg(long, value_enum, default_value_t = SharedPolicyArg::RoundRobin)]
    pub shared_policy: SharedPolicyArg,
    /// Mosquitto password file (`mosquitto_passwd`): clients must give a user name and password
    /// from it.
    #[arg(long, value_name = "PATH")]
    pub password_file: Option<std::path::PathBuf>,
    /// With --password-file, also let in clients that give no user name.
    #[arg(long)]
    pub allow_anonymous: bool,
    /// Mosquitto ACL file: what each client may publish and subscribe to (everything else is
    /// denied).
    #[arg(long, value_name = "PATH")]
    pub acl_file: Option<std::path::PathBuf>,
    /// Seconds between updates of the `$SYS/broker/...` topics (0: none).
    #[arg(long, default_value_t = 10)]
    pub sys_interval: u32,
    /// Keep sessions, their subscriptions, the QoS 1/2 messages they are owed and retained
    /// messages in this directory (one log per shard), so that they survive a restart or a
    /// crash. Off without it.
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
    /// With --data-dir: `always` sends the acks (CONNACK, SUBACK, PUBACK, ...) of what must
    /// be durable only once it is on disk (one synchronous write per batch); `interval=MS`
    /// sends them at once and syncs every MS milliseconds.
    #[arg(long, default_value = "always", value_parser = parse_fsync)]
    pub fsync: Fsync,
    /// With --data-dir: a shard's log is rewritten as a snapshot of its live state once it
    /// has grown by this many bytes (and to twice its last snapshot), so it stays bounded by
    /// what is live, not by its history.
    #[arg(long, default_value_t = 64 << 20, value_name = "BYTES")]
    pub compact_after_bytes: u64,
    /// With --data-dir: bounds the logs of all shards together. Once they reach it, new
    /// QoS 1/2 publishes are refused (5.0: PUBACK/PUBREC 0x97 Quota exceeded; 3.x: the
    /// connection is closed, the client sends them again) until deliveries and compaction
    /// make room; acks, sessions and QoS 0 go on. A full disk does the same without it.
    #[arg(long, value_name = "BYTES")]
    pub max_data_bytes: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SharedPolicyArg {
    /// Members in turn.
    RoundRobin,
    /// One member per publisher, keeping each publisher's order.
    Publisher,
}

impl Config {
    /// Where to listen and what each port speaks: `--listen`, else the file's listeners,
    /// else MQTT on `--bind`:`--port`.
    pub fn listeners(&self) -> Result<Vec<ListenerSpec>, String> {
        if !self.listen.is_empty() {
            let tls = self.tls_files()?;
            return self
                .listen
                .iter()
                .map(|url| ListenerSpec::parse_url(url, tls.as_ref()))
                .collect();
        }
        if !self.file_listeners.is_empty() {
            return Ok(self.file_listeners.clone());
        }
        Ok(vec![ListenerSpec::mqtt(SocketAddr::new(
            self.bind, self.port,
        ))])
    }

    /// The TLS flags, if a certificate is given.
    fn tls_files(&self) -> Result<Option<TlsFiles>, String> {
        let (certfile, keyfile) = match (&self.certfile, &self.keyfile) {
            (Some(c), Some(k)) => (c.clone(), k.clone()),
            (None, None) => return Ok(None),
            _ => return Err("--certfile and --keyfile go together".into()),
        };
        Ok(Some(TlsFiles {
            certfile,
            keyfile,
            cafile: self.cafile.clone(),
            capath: self.capath.clone(),
            require_certificate: self.require_certificate,
            use_identity_as_username: self.use_identity_as_username,
            min_version: self.tls_version.unwrap_or_default(),
        }))
    }

    /// How often the `$SYS` topics are published, if at all.
    pub fn sys_interval(&self) -> Option<std::time::Duration> {
        (self.sys_interval > 0).then(|| std::time::Duration::from_secs(self.sys_interval.into()))
    }

    pub fn shard_count(&self) -> usize {
        match self.shards {
            Some(n) => n as usize,
            None => std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(64),
        }
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_packet_size: self.max_packet_size,
            max_inflight: self.max_inflight,
            max_queued_messages: self.max_queued_messages,
            max_queued_bytes: self.max_queued_bytes,
            max_queued_in_memory: self.max_queued_in_memory.max(1),
            max_connections: self.max_connections,
            max_sessions: self.max_sessions,
            max_subscriptions: self.max_subscriptions,
            max_topic_levels: self.max_topic_levels as usize,
            connect_timeout: std::time::Duration::from_secs(self.connect_timeout.into()),
            write_timeout: std::time::Duration::from_secs(self.write_timeout.into()),
            stall_timeout: std::time::Duration::from_millis(self.stall_timeout_ms),
            persistent_client_expiration: self.persistent_client_expiration,
            max_session_expiry: self.max_session_expiry,
            max_retained_messages: self.max_retained_messages,
            max_retained_bytes: self.max_retained_bytes,
            ..Limits::default()
        }
    }

    pub fn features(&self) -> Features {
        Features {
            max_qos: QoS::from_u8(self.max_qos).unwrap_or(QoS::ExactlyOnce),
            retain_available: !self.no_retain,
            wildcard_subscriptions: !self.no_wildcard_subscriptions,
            subscription_identifiers: !self.no_subscription_identifiers,
            shared_subscriptions: !self.no_shared_subscriptions,
            topic_alias_maximum: self.topic_alias_maximum,
            receive_maximum: self.receive_maximum,
            max_keep_alive: self.max_keepalive,
            shared_policy: match self.shared_policy {
                SharedPolicyArg::RoundRobin => SharedPolicy::RoundRobin,
                SharedPolicyArg::Publisher => SharedPolicy::Publisher,
            },
            use_username_as_clientid: self.use_username_as_clientid,
        }
    }

    /// Where log lines go.
    pub fn log_dest(&self) -> crate::logging::LogDest {
        match (&self.log_file, self.log_dest) {
            (Some(path), _) => crate::logging::LogDest::File(path.clone()),
            (None, LogDestArg::Syslog) => crate::logging::LogDest::Syslog,
            (None, LogDestArg::Stderr) => crate::logging::LogDest::Stderr,
        }
    }
}

/// `--log-dest`: a file is `--log-file`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogDestArg {
    Stderr,
    Syslog,
}

/// When the durable store syncs its log (see `--fsync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// Before the acks of a batch leave.
    Always,
    /// Every so often; acks do not wait.
    Interval(std::time::Duration),
}

fn parse_fsync(text: &str) -> Result<Fsync, String> {
    if text == "always" {
        return Ok(Fsync::Always);
    }
    let ms = text
        .strip_prefix("interval=")
        .and_then(|ms| ms.parse::<u64>().ok())
        .filter(|&ms| ms > 0)
        .ok_or_else(|| format!("{text:?}: expected `always` or `interval=MS` (MS > 0)"))?;
    Ok(Fsync::Interval(std::time::Duration::from_millis(ms)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_flags_replace_bind_and_port() {
        let c = Config::try_parse_from([
            "ringmq",
            "--listen",
            "mqtt://127.0.0.1:1883",
            "--listen",
            "wss+proxy://127.0.0.1:9443",
            "--certfile",
            "c.pem",
            "--keyfile",
            "k.pem",
            "--tls-version",
            "tlsv1.3",
        ])
        .unwrap();
        let listeners = c.listeners().unwrap();
        assert_eq!(listeners.len(), 2);
        assert!(listeners[0].is_plain());
        let tls = listeners[1].tls.as_ref().unwrap();
        assert_eq!(tls.min_version, TlsVersion::Tls13);
        let c = Config::try_parse_from(["ringmq", "--listen", "mqtts://127.0.0.1:8883"]).unwrap();
        assert!(c.listeners().unwrap_err().contains("--certfile"));
        let c =
            Config::try_parse_from(["ringmq", "--certfile", "c.pem", "--listen", "ws://[::1]:1"])
                .unwrap();
        assert!(c.listeners().unwrap_err().contains("together"));
    }

    #[test]
    fn mosquitto_style_flags_parse() {
        let c = Config::try_parse_from(["ringmq", "-v", "-p", "1884"]).unwrap();
        assert!(c.verbose);
        assert_eq!(c.listeners().unwrap()[0].addr.port(), 1884);
        assert!(Config::try_parse_from(["ringmq", "--shards", "0"]).is_err());
        assert!(Config::try_parse_from(["ringmq", "--bogus"]).is_err());
        let c = Config::try_parse_from(["ringmq", "--max-inflight", "7", "--shards", "2"]).unwrap();
        assert_eq!((c.limits().max_inflight, c.shard_count()), (7, 2));
        let c = Config::try_parse_from([
            "ringmq",
            "--max-qos",
            "1",
            "--no-retain",
            "--shared-policy",
            "publisher",
        ])
        .unwrap();
        let f = c.features();
        assert_eq!(
            (f.max_qos, f.retain_available, f.shared_policy),
            (QoS::AtLeastOnce, false, SharedPolicy::Publisher)
        );
        assert!(Config::try_parse_from(["ringmq", "--max-qos", "3"]).is_err());
    }

    #[test]
    fn limits_flags_reach_the_core() {
        let c = Config::try_parse_from(["ringmq"]).unwrap();
        let l = c.limits();
        assert_eq!(
            (
                l.max_topic_levels,
                l.connect_timeout.as_secs(),
                l.persistent_client_expiration
            ),
            (128, 10, None)
        );
        let c = Config::try_parse_from([
            "ringmq",
            "--max-topic-levels",
            "8",
            "--max-subscriptions",
            "3",
            "--max-sessions",
            "5",
            "--connect-timeout",
            "2",
            "--write-timeout",
            "4",
            "--persistent-client-expiration",
            "3600",
            "--max-session-expiry",
            "60",
            "--use-username-as-clientid",
        ])
        .unwrap();
        let l = c.limits();
        assert_eq!(
            (l.max_topic_levels, l.max_subscriptions, l.max_sessions),
            (8, 3, 5)
        );
        assert_eq!(
            (l.connect_timeout.as_secs(), l.write_timeout.as_secs()),
            (2, 4)
        );
        assert_eq!(l.granted_expiry(u32::MAX), 60);
        assert!(c.features().use_username_as_clientid);
        assert!(Config::try_parse_from(["ringmq", "--max-topic-levels", "0"]).is_err());
    }

    #[test]
    fn without_flags_the_core_gets_its_own_defaults() {
        let c = Config::try_parse_from(["ringmq"]).unwrap();
        assert_eq!(
            format!("{:?}", c.limits()),
            format!("{:?}", Limits::default())
        );
        assert_eq!(
            format!("{:?}", c.features()),
            format!("{:?}", Features::default())
        );
    }

    #[test]
    fn sys_interval_defaults_to_ten_seconds_and_zero_turns_it_off() {
        let c = Config::try_parse_from(["ringmq"]).unwrap();
        assert_eq!(c.sys_interval(), Some(std::time::Duration::from_secs(10)));
        let c = Config::try_parse_from(["ringmq", "--sys-interval", "0"]).unwrap();
        assert_eq!(c.sys_interval(), None);
    }

    #[test]
    fn fsync_is_always_or_an_interval() {
        assert_eq!(parse_fsync("always"), Ok(Fsync::Always));
        assert_eq!(
            parse_fsync("interval=250"),
            Ok(Fsync::Interval(std::time::Duration::from_millis(250)))
        );
        for bad in ["never", "interval=", "interval=0", "interval=x"] {
            assert!(parse_fsync(bad).is_err(), "{bad}");
        }
    }
}
