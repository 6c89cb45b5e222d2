//! What each listening port speaks: MQTT over TCP or WebSockets, with or without TLS, behind a
//! PROXY-protocol load balancer or not. From `--listen URL` flags, a Mosquitto file's
//! `listener` sections, or (neither given) `--bind` and `--port`.

use std::net::SocketAddr;
use std::path::PathBuf;

/// What runs over the TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Mqtt,
    WebSockets,
}

/// The oldest TLS version a listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsVersion {
    #[default]
    Tls12,
    Tls13,
}

impl TlsVersion {
    /// Mosquitto's `tls_version` values.
    pub fn parse(text: &str) -> Result<TlsVersion, String> {
        match text {
            "tlsv1.2" => Ok(TlsVersion::Tls12),
            "tlsv1.3" => Ok(TlsVersion::Tls13),
            "tlsv1.1" | "tlsv1" => Err(format!("{text} is not offered (TLS 1.2 is the oldest)")),
            other => Err(format!("tlsv1.2 or tlsv1.3, not {other:?}")),
        }
    }
}

/// A TLS listener's certificates and client-certificate policy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsFiles {
    /// The server's certificate chain (PEM).
    pub certfile: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub keyfile: PathBuf,
    /// CA certificates that client certificates are checked against (PEM).
    pub cafile: Option<PathBuf>,
    /// A folder of such CA certificates (every `*.pem` and `*.crt` in it).
    pub capath: Option<PathBuf>,
    /// Refuse clients without a valid certificate.
    pub require_certificate: bool,
    /// The client certificate's Common Name is the user name; the password file is not used.
    pub use_identity_as_username: bool,
    pub min_version: TlsVersion,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    pub addr: SocketAddr,
    pub protocol: Protocol,
    pub tls: Option<TlsFiles>,
    /// Each connection starts with a PROXY protocol (v1 or v2) header, which names the client.
    pub proxy_protocol: bool,
}

impl ListenerSpec {
    pub fn mqtt(addr: SocketAddr) -> ListenerSpec {
        ListenerSpec {
            addr,
            protocol: Protocol::Mqtt,
            tls: None,
            proxy_protocol: false,
        }
    }

    /// Plain MQTT over TCP: the connection needs no transport state at all.
    pub fn is_plain(&self) -> bool {
        self.protocol == Protocol::Mqtt && self.tls.is_none() && !self.proxy_protocol
    }

    /// `mqtt://`, `mqtts://`, `ws://` or `wss://`, `+proxy` after the scheme for a PROXY
    /// protocol header (`mqtt+proxy://0.0.0.0:1884`), then `ADDR:PORT` (IPv6 in brackets).
    /// TLS listeners take `tls`, the `--certfile`... flags.
    pub fn parse_url(url: &str, tls: Option<&TlsFiles>) -> Result<ListenerSpec, String> {
        let (scheme, addr) = url
            .split_once("://")
            .ok_or_else(|| format!("{url:?}: SCHEME://ADDR:PORT, e.g. mqtts://0.0.0.0:8883"))?;
        let (scheme, proxy_protocol) = match scheme.strip_suffix("+proxy") {
            Some(scheme) => (scheme, true),
            None => (scheme, false),
        };
        let (protocol, secure) = match scheme {
            "mqtt" | "tcp" => (Protocol::Mqtt, false),
            "mqtts" | "ssl" => (Protocol::Mqtt, true),
            "ws" => (Protocol::WebSockets, false),
            "wss" => (Protocol::WebSockets, true),
            other => return Err(format!("{url:?}: mqtt, mqtts, ws or wss, not {other:?}")),
        };
        let addr: SocketAddr = addr
            .trim_end_matches('/')
            .parse()
            .map_err(|e| format!("{url:?}: {e} (ADDR:PORT, e.g. 0.0.0.0:8883)"))?;
        let tls = match (secure, tls) {
            (false, _) => None,
            (true, Some(tls)) => Some(tls.clone()),
            (true, None) => return Err(format!("{url:?}: TLS needs --certfile and --keyfile")),
        };
        Ok(ListenerSpec {
            addr,
            protocol,
            tls,
            proxy_protocol,
        })
    }
}

impl std::fmt::Display for ListenerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = match (self.protocol, self.tls.is_some()) {
            (Protocol::Mqtt, false) => "mqtt",
            (Protocol::Mqtt, true) => "mqtts",
            (Protocol::WebSockets, false) => "ws",
            (Protocol::WebSockets, true) => "wss",
        };
        let proxy = if self.proxy_protocol { "+proxy" } else { "" };
        write!(f, "{scheme}{proxy}://{}", self.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls() -> TlsFiles {
        TlsFiles {
            certfile: "c.pem".into(),
            keyfile: "k.pem".into(),
            ..TlsFiles::default()
        }
    }

    #[test]
    fn urls_name_protocol_tls_and_proxy() {
        let l = ListenerSpec::parse_url("wss+proxy://127.0.0.1:9443", Some(&tls())).unwrap();
        assert_eq!(l.protocol, Protocol::WebSockets);
        assert_eq!(l.tls, Some(tls()));
        assert!(l.proxy_protocol);
        assert_eq!(l.to_string(), "wss+proxy://127.0.0.1:9443");
        let l = ListenerSpec::parse_url("mqtt://[::1]:1883", Some(&tls())).unwrap();
        assert!(
            l.is_plain(),
            "no TLS on mqtt:// even with certificates given"
        );
        assert_eq!(l.addr, "[::1]:1883".parse().unwrap());
    }

    #[test]
    fn bad_urls_say_why() {
        for (url, why) in [
            ("127.0.0.1:1883", "SCHEME://"),
            ("http://127.0.0.1:80", "not \"http\""),
            ("mqtt://localhost:1883", "ADDR:PORT"),
            ("mqtts://127.0.0.1:8883", "--certfile"),
        ] {
            let error = ListenerSpec::parse_url(url, None).unwrap_err();
            assert!(error.contains(why), "{url}: {error}");
        }
    }

    #[test]
    fn tls_versions() {
        assert_eq!(TlsVersion::parse("tlsv1.3"), Ok(TlsVersion::Tls13));
        assert!(TlsVersion::parse("tlsv1.1").unwrap_err().contains("oldest"));
    }
}
