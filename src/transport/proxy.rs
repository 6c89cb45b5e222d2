//! The PROXY protocol header (v1 text or v2 binary) a load balancer such as HAProxy sends
//! first on each connection, naming the client it accepted. Parsed with the `ppp` crate.

use std::net::SocketAddr;

use ppp::{v1, v2, HeaderResult, PartialResult};

use super::TransportError;

/// v2 headers carry TLVs; a longer "header" is not one we accept to buffer.
const MAX_HEADER: usize = 4096;

/// Bytes of a connection's start until its PROXY header is whole.
#[derive(Debug, Default)]
pub struct ProxyHeader {
    buffered: Vec<u8>,
}

/// A complete header.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed {
    /// The client's address; `None` for a health check (`LOCAL`, `UNKNOWN`): the connection is
    /// the proxy's own.
    pub client: Option<SocketAddr>,
    /// How many of the bytes given last belonged to the header; the rest is the client's.
    pub consumed: usize,
}

impl ProxyHeader {
    /// Takes the next bytes read; `None` while the header is not whole yet.
    pub fn feed(&mut self, input: &[u8]) -> Result<Option<Parsed>, TransportError> {
        let before = self.buffered.len();
        self.buffered.extend_from_slice(input);
        let (client, len) = match HeaderResult::parse(&self.buffered) {
            result if result.is_incomplete() => {
                if self.buffered.len() > MAX_HEADER {
                    return Err(TransportError::Proxy("header too long".into()));
                }
                return Ok(None);
            }
            HeaderResult::V1(Ok(header)) => (v1_client(&header.addresses), header.header.len()),
            HeaderResult::V2(Ok(header)) => {
                let client = match header.command {
                    v2::Command::Local => None,
                    v2::Command::Proxy => v2_client(&header.addresses),
                };
                (client, header.len())
            }
            HeaderResult::V1(Err(error)) => return Err(TransportError::Proxy(error.to_string())),
            HeaderResult::V2(Err(error)) => return Err(TransportError::Proxy(error.to_string())),
        };
        self.buffered = Vec::new();
        Ok(Some(Parsed {
            client,
            consumed: len - before,
        }))
    }
}

fn v1_client(addresses: &v1::Addresses) -> Option<SocketAddr> {
    match addresses {
        v1::Addresses::Tcp4(a) => Some((a.source_address, a.source_port).into()),
        v1::Addresses::Tcp6(a) => Some((a.source_address, a.source_port).into()),
        v1::Addresses::Unknown => None,
    }
}

fn v2_client(addresses: &v2::Addresses) -> Option<SocketAddr> {
    match addresses {
        v2::Addresses::IPv4(a) => Some((a.source_address, a.source_port).into()),
        v2::Addresses::IPv6(a) => Some((a.source_address, a.source_port).into()),
        v2::Addresses::Unspecified | v2::Addresses::Unix(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2_header(client: SocketAddr) -> Vec<u8> {
        let SocketAddr::V4(client) = client else {
            panic!("v4 only here")
        };
        let local = std::net::Ipv4Addr::LOCALHOST;
        let addresses = v2::IPv4::new(*client.ip(), local, client.port(), 1883);
        v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            addresses,
        )
        .build()
        .unwrap()
    }

    #[test]
    fn v1_header_then_mqtt_bytes() {
        let mut header = ProxyHeader::default();
        let input = b"PROXY TCP4 10.1.2.3 127.0.0.1 40000 1883\r\n\x10\x0c";
        // In two pieces: the first is not a whole header.
        assert_eq!(header.feed(&input[..10]).unwrap(), None);
        let parsed = header.feed(&input[10..]).unwrap().unwrap();
        assert_eq!(parsed.client, Some("10.1.2.3:40000".parse().unwrap()));
        assert_eq!(&input[10 + parsed.consumed..], b"\x10\x0c");
    }

    #[test]
    fn v2_header_names_the_client() {
        let mut input = v2_header("192.168.7.9:5555".parse().unwrap());
        let len = input.len();
        input.extend_from_slice(b"\x10");
        let parsed = ProxyHeader::default().feed(&input).unwrap().unwrap();
        assert_eq!(parsed.client, Some("192.168.7.9:5555".parse().unwrap()));
        assert_eq!(parsed.consumed, len);
    }

    #[test]
    fn v2_local_is_the_proxy_itself() {
        let local = v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Local,
            v2::Protocol::Unspecified,
            v2::Addresses::Unspecified,
        )
        .build()
        .unwrap();
        let parsed = ProxyHeader::default().feed(&local).unwrap().unwrap();
        assert_eq!(parsed.client, None);
    }

    #[test]
    fn mqtt_without_a_header_is_refused() {
        // A CONNECT where a header must be.
        let connect = b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00";
        assert!(ProxyHeader::default().feed(connect).is_err());
        let mut endless = ProxyHeader::default();
        let mut result = Ok(None);
        for _ in 0..500 {
            result = endless.feed(b"PROXY TCP4 ");
            if result.is_err() {
                break;
            }
        }
        assert!(result.is_err(), "a header that never ends is refused");
    }
}
