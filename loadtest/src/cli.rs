//! Command line of `ringmq-load`.

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "ringmq-load", about = "Load harness for MQTT brokers", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// N publisher/subscriber pairs: publisher i floods `load/i`, subscriber i receives it.
    Fanin(FaninArgs),
}

#[derive(Debug, Clone, Args)]
pub struct FaninArgs {
    /// Broker host.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Broker MQTT port.
    #[arg(long, default_value_t = 1883)]
    pub port: u16,
    /// Publisher/subscriber pairs (one thread per client).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub pairs: u32,
    /// QoS of publishes and subscriptions (0 or 1).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub qos: u8,
    /// Payload bytes per message (at least 20: publisher id, sequence, send time).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(20..=1_048_576))]
    pub payload: u32,
    /// Seconds to publish for.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub duration: u64,
    /// QoS 1: unacknowledged messages each publisher may have in flight.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65535))]
    pub inflight: u32,
    /// Publishes encoded into one buffer per write.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=65535))]
    pub batch: u32,
    /// Print one JSON object instead of the text summary.
    #[arg(long)]
    pub json: bool,
}
