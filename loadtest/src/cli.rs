//! Command line of `ringmq-load`. Flag names follow emqtt-bench where it has one.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "ringmq-load", about = "Load harness for MQTT brokers", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Connect over TLS, trusting the CA certificates (PEM) in this file.
    #[arg(long, global = true, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// With --tls-ca: the name the broker's certificate must carry.
    #[arg(long, global = true, default_value = "localhost")]
    pub tls_server_name: String,
    /// With --tls-ca: X25519 key exchange only, without the post-quantum hybrid rustls prefers
    /// (as OpenSSL 3.0 brokers such as Mosquitto 2.0 negotiate).
    #[arg(long, global = true)]
    pub tls_x25519_only: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Open many connections (at a connect rate) and hold them idle.
    Conn(ConnArgs),
    /// Publishers only: `--clients` publishers on `--topic` (with `%i`).
    Pub(PubArgs),
    /// Subscribers only: `--clients` subscribers on `--topic` (with `%i`); counts what arrives.
    Sub(SubArgs),
    /// N publisher/subscriber pairs: publisher i floods `load/i`, subscriber i receives it.
    Fanin(FaninArgs),
    /// 1 publisher -> N subscribers of the same topic.
    Fanout(FanoutArgs),
    /// N publishers -> 1 subscriber of `load/+`.
    Funnel(FunnelArgs),
    /// N publishers -> M subscribers sharing one `$share/<group>/load/+` subscription (MQTT 5).
    Shared(SharedArgs),
    /// A subscriber that never reads beside a healthy pair on its topic.
    Slowsub(FaultArgs),
    /// Clients connecting and leaving as fast as they can beside a healthy pair (leak check).
    Storm(FaultArgs),
    /// Clients sending malformed input beside a healthy pair.
    Garbage(FaultArgs),
    /// Draw several `--hdr` files as percentile curves on one chart (SVG or HTML).
    Plot(PlotArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    #[value(name = "3.1.1", alias = "4")]
    V311,
    #[value(name = "5", alias = "5.0")]
    V5,
}

/// Where the broker is and how clients connect.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Broker host (loopback by default).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Broker MQTT port.
    #[arg(short, long, default_value_t = 1883)]
    pub port: u16,
    /// MQTT protocol version.
    #[arg(long, value_enum, default_value = "3.1.1")]
    pub protocol: Protocol,
    /// Persistent sessions (clean session / clean start off).
    #[arg(long)]
    pub persistent: bool,
    /// MQTT 5 session expiry interval in seconds (with `--persistent`).
    #[arg(long, default_value_t = 300)]
    pub session_expiry: u32,
    /// Keep alive in seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u16).range(0..))]
    pub keepalive: u16,
    /// Connections opened per second (0: as fast as possible).
    #[arg(long = "connect-rate", short = 'R', default_value_t = 0)]
    pub connect_rate: u32,
    /// Client id prefix; clients are `<prefix>-<role>-<i>`.
    #[arg(long, default_value = "load")]
    pub prefix: String,
}

/// How publishers publish.
#[derive(Debug, Clone, Args)]
pub struct PublishArgs {
    /// QoS of publishes and subscriptions (0 or 1).
    #[arg(short, long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub qos: u8,
    /// Payload bytes per message (at least 20: publisher id, sequence, send time).
    #[arg(short = 's', long, alias = "size", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(20..=1_048_576))]
    pub payload: u32,
    /// Total publish rate over all publishers, msgs/s (0: as fast as the broker takes them).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Per-publisher interval between publishes in ms (emqtt-bench -I); overrides --rate.
    #[arg(short = 'I', long)]
    pub interval_ms: Option<f64>,
    /// Messages per publisher, then stop (0: until --duration ends).
    #[arg(short = 'L', long, default_value_t = 0)]
    pub count: u64,
    /// QoS 1: unacknowledged messages each publisher may have in flight.
    #[arg(short = 'F', long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65535))]
    pub inflight: u32,
    /// Publishes encoded into one buffer per write (unpaced runs).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=65535))]
    pub batch: u32,
}

/// How long and how results are reported.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Seconds to publish (or hold) for.
    #[arg(short, long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub duration: u64,
    /// Seconds to wait after publishing for the last deliveries.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub drain: u64,
    /// The drain also ends once nothing has arrived for this many seconds.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub drain_idle: u64,
    /// Print one JSON object instead of the text summary.
    #[arg(long)]
    pub json: bool,
    /// Write the latency histogram as an HdrHistogram percentile distribution (milliseconds).
    #[arg(long, value_name = "FILE")]
    pub hdr: Option<PathBuf>,
    /// Write a latency percentile plot (`.svg`, or `.html` wrapping the SVG).
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// Name of this run in plots and reports (default: scenario@host:port).
    #[arg(long)]
    pub label: Option<String>,
    /// No live progress line.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ConnArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Connections to open.
    #[arg(short, long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=200_000))]
    pub clients: u32,
    /// Threads opening connections in parallel.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub workers: u32,
    /// Seconds to hold the connections open once all are up.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub hold: u64,
    /// Create this file once every connection is open (for scripts sampling the broker).
    #[arg(long, value_name = "FILE")]
    pub ready_file: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Args)]
pub struct PubArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub publish: PublishArgs,
    #[command(flatten)]
    pub run: RunArgs,
    /// Publishers (one thread each).
    #[arg(short, long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=2000))]
    pub clients: u32,
    /// Topic; `%i` is the publisher index.
    #[arg(short, long, default_value = "load/%i")]
    pub topic: String,
}

#[derive(Debug, Clone, Args)]
pub struct SubArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub run: RunArgs,
    /// Subscribers (one thread each).
    #[arg(short, long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=2000))]
    pub clients: u32,
    /// Topic filter; `%i` is the subscriber index.
    #[arg(short, long, default_value = "load/#")]
    pub topic: String,
    /// Subscription QoS.
    #[arg(short, long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub qos: u8,
}

#[derive(Debug, Clone, Args)]
pub struct FaninArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub publish: PublishArgs,
    #[command(flatten)]
    pub run: RunArgs,
    /// Publisher/subscriber pairs (one thread per client).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub pairs: u32,
}

#[derive(Debug, Clone, Args)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub publish: PublishArgs,
    #[command(flatten)]
    pub run: RunArgs,
    /// Subscribers of the one topic.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=2000))]
    pub subscribers: u32,
}

#[derive(Debug, Clone, Args)]
pub struct FunnelArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub publish: PublishArgs,
    #[command(flatten)]
    pub run: RunArgs,
    /// Publishers, each on its own topic.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=2000))]
    pub publishers: u32,
}

#[derive(Debug, Clone, Args)]
pub struct SharedArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub publish: PublishArgs,
    #[command(flatten)]
    pub run: RunArgs,
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=2000))]
    pub publishers: u32,
    /// Members of the shared subscription group.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=2000))]
    pub subscribers: u32,
    #[arg(long, default_value = "load")]
    pub group: String,
}

/// A fault scenario: the faulty clients, the healthy pair beside them, the broker to watch.
#[derive(Debug, Clone, Args)]
pub struct FaultArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Faulty clients (storm and garbage workers; slowsub has one). 0 for storm or garbage:
    /// the healthy pair alone, a baseline for the others.
    #[arg(short, long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(0..=2000))]
    pub clients: u32,
    /// The healthy pair's publish rate, msgs/s.
    #[arg(long, default_value_t = 5000)]
    pub rate: u64,
    /// The healthy pair's QoS (0 or 1).
    #[arg(short, long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub qos: u8,
    /// The healthy pair's payload bytes.
    #[arg(short = 's', long, default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(20..=1_048_576))]
    pub payload: u32,
    /// Seconds the fault lasts.
    #[arg(short, long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub duration: u64,
    /// Seconds to wait after the fault before the last memory sample.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub settle: u64,
    /// The broker's process id: its RSS is sampled every 100 ms.
    #[arg(long)]
    pub broker_pid: Option<u32>,
    #[arg(long)]
    pub json: bool,
    /// Accepted for symmetry with the load modes (fault runs print no progress line).
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Args)]
pub struct PlotArgs {
    /// Output file (`.svg` or `.html`).
    #[arg(short, long)]
    pub out: PathBuf,
    /// Chart title.
    #[arg(long, default_value = "End-to-end latency by percentile")]
    pub title: String,
    /// Curves as `LABEL=FILE.hdr` (or just `FILE.hdr`, labelled by its file name).
    #[arg(required = true)]
    pub runs: Vec<String>,
}
