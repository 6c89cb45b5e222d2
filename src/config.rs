//! Command line and defaults. Flags that Mosquitto also has use its letters (`-p`, `-v`), so
//! scripts written for `mosquitto -v -p 1884` start ringmq unchanged.

use std::net::{IpAddr, SocketAddr};

use clap::Parser;

use crate::core::Limits;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "ringmq",
    version,
    about = "A thread-per-core MQTT 3.1 / 3.1.1 / 5.0 broker on io_uring"
)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind: IpAddr,
    /// TCP port for MQTT.
    #[arg(short = 'p', long, default_value_t = 1883)]
    pub port: u16,
    /// Shards (threads, one per CPU, pinned). Default: one per online CPU. At most 64.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub shards: Option<u16>,
    /// Verbose logging (debug level); RUST_LOG overrides.
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Largest packet accepted from a client, in bytes.
    #[arg(long, default_value_t = 1024 * 1024, value_parser = clap::value_parser!(u32).range(16..=268_435_460))]
    pub max_packet_size: u32,
    /// Most connections per shard.
    #[arg(long, default_value_t = 100_000)]
    pub max_connections: usize,
    /// Outgoing QoS 1/2 messages in flight per client (lowered to a 5.0 client's Receive Maximum).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_inflight: u16,
    /// Messages queued per session while the client is offline or slow; further ones are dropped
    /// and counted.
    #[arg(long, default_value_t = 10_000)]
    pub max_queued_messages: usize,
    /// Bytes (topic + payload) queued per session.
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    pub max_queued_bytes: usize,
}

impl Config {
    pub fn listen_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.port)
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
            ..Limits::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mosquitto_style_flags_parse() {
        let c = Config::try_parse_from(["ringmq", "-v", "-p", "1884"]).unwrap();
        assert!(c.verbose);
        assert_eq!(c.listen_addr().port(), 1884);
        assert!(Config::try_parse_from(["ringmq", "--shards", "0"]).is_err());
        assert!(Config::try_parse_from(["ringmq", "--bogus"]).is_err());
        let c = Config::try_parse_from(["ringmq", "--max-inflight", "7", "--shards", "2"]).unwrap();
        assert_eq!((c.limits().max_inflight, c.shard_count()), (7, 2));
    }
}
