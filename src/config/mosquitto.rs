//! Mosquitto's configuration file (`-c FILE`), so that a broker configured for Mosquitto starts
//! ringmq unchanged. The format is line based: `option value...`, `#` comments, `listener`
//! starting a listener's section, `include_dir` reading every `*.conf` of a folder in order.
//!
//! Each option ringmq knows sets the matching flag, unless that flag was given on the command
//! line (flags override the file). An option ringmq does not know, or one it can safely do
//! without (`user`, `autosave_interval`, ...), is named in a warning. One whose absence would
//! change what clients get (a bridge, an auth plugin, a certificate revocation list) is an
//! error: the broker does not start on it.
//!
//! Listener options (`protocol`, `certfile`, ...) apply to the last `listener` above them, or
//! to the default listener (`port`, `bind_address`) before any, as in Mosquitto.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use super::listeners::{ListenerSpec, Protocol, TlsFiles, TlsVersion};
use super::{Config, LogDestArg};

/// One `option value...` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub option: String,
    pub args: Vec<String>,
    /// `file:line`, for messages.
    pub at: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{at}: `{option}` is not supported by ringmq: {why}")]
    Unsupported {
        option: String,
        at: String,
        why: &'static str,
    },
    #[error("{at}: `{option}`: {why}")]
    Invalid {
        option: String,
        at: String,
        why: String,
    },
}

/// Reads `path` and the folders it includes, in order.
pub fn read(path: &Path) -> Result<Vec<Entry>, ConfError> {
    let mut entries = Vec::new();
    read_into(path, &mut entries, 0)?;
    Ok(entries)
}

fn read_into(path: &Path, entries: &mut Vec<Entry>, depth: usize) -> Result<(), ConfError> {
    let io = |source| ConfError::Io {
        path: path.display().to_string(),
        source,
    };
    let text = std::fs::read_to_string(path).map_err(io)?;
    for entry in parse(&text, &path.display().to_string()) {
        if entry.option == "include_dir" && depth < 4 {
            let dir = PathBuf::from(arg(&entry, 0)?);
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map_err(|source| ConfError::Io {
                    path: dir.display().to_string(),
                    source,
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "conf"))
                .collect();
            files.sort();
            for file in files {
                read_into(&file, entries, depth + 1)?;
            }
        } else {
            entries.push(entry);
        }
    }
    Ok(())
}

/// The entries of one file's text (`name` is for messages).
pub fn parse(text: &str, name: &str) -> Vec<Entry> {
    text.lines()
        .enumerate()
        .filter_map(|(n, line)| {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                return None;
            }
            let mut words = line.split_whitespace();
            let option = words.next()?.to_string();
            Some(Entry {
                option,
                args: words.map(str::to_string).collect(),
                at: format!("{name}:{}", n + 1),
            })
        })
        .collect()
}

fn arg(entry: &Entry, i: usize) -> Result<&str, ConfError> {
    entry
        .args
        .get(i)
        .map(String::as_str)
        .ok_or_else(|| invalid(entry, "a value is missing"))
}

fn invalid(entry: &Entry, why: impl Into<String>) -> ConfError {
    ConfError::Invalid {
        option: entry.option.clone(),
        at: entry.at.clone(),
        why: why.into(),
    }
}

fn unsupported(entry: &Entry, why: &'static str) -> ConfError {
    ConfError::Unsupported {
        option: entry.option.clone(),
        at: entry.at.clone(),
        why,
    }
}

fn number<T: std::str::FromStr>(entry: &Entry) -> Result<T, ConfError> {
    arg(entry, 0)?
        .parse()
        .map_err(|_| invalid(entry, format!("not a number: {:?}", entry.args[0])))
}

/// Argument `i`, an IP address.
fn ip(entry: &Entry, i: usize) -> Result<IpAddr, ConfError> {
    let text = arg(entry, i)?;
    text.parse()
        .map_err(|_| invalid(entry, format!("not an IP address: {text:?}")))
}

fn boolean(entry: &Entry) -> Result<bool, ConfError> {
    match arg(entry, 0)? {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(invalid(entry, format!("true or false, not {other:?}"))),
    }
}

fn path(entry: &Entry) -> Result<PathBuf, ConfError> {
    arg(entry, 0).map(PathBuf::from)
}

/// The file's listeners so far.
#[derive(Debug, Default)]
struct FileListeners {
    list: Vec<FileListener>,
    /// Whether `list[0]` is the default listener (`port`, `bind_address`, or options before
    /// any `listener`).
    has_default: bool,
}

impl FileListeners {
    /// The listener the options that follow apply to: the last `listener`, else the default.
    fn current(&mut self, entry: &Entry) -> &mut FileListener {
        if self.list.is_empty() {
            return self.default_listener(entry);
        }
        self.list.last_mut().expect("not empty")
    }

    fn default_listener(&mut self, entry: &Entry) -> &mut FileListener {
        if !self.has_default {
            self.has_default = true;
            let listener = FileListener {
                at: entry.at.clone(),
                ..FileListener::default()
            };
            self.list.insert(0, listener);
        }
        &mut self.list[0]
    }
}

/// Mosquitto's durations: a number with `h`, `d`, `w`, `m` (30 days) or `y` (365 days).
fn duration_secs(entry: &Entry) -> Result<u32, ConfError> {
    let text = arg(entry, 0)?;
    let (n, unit) = text.split_at(text.len().saturating_sub(1));
    let n: u32 = n
        .parse()
        .map_err(|_| invalid(entry, format!("not a duration: {text:?}")))?;
    let unit_secs = match unit {
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "m" => 30 * 86_400,
        "y" => 365 * 86_400,
        _ => {
            return Err(invalid(
                entry,
                format!("not a duration (h, d, w, m, y): {text:?}"),
            ))
        }
    };
    Ok(n.saturating_mul(unit_secs))
}

/// Options Mosquitto has that ringmq can do without: warned of, then ignored.
const IGNORED: &[&str] = &[
    "user",
    "autosave_interval",
    "autosave_on_changes",
    "persistence_file",
    "log_timestamp",
    "log_timestamp_format",
    "connection_messages",
    "per_listener_settings",
    "set_tcp_nodelay",
    "check_retain_source",
    "max_inflight_bytes",
    "queue_qos0_messages",
    "upgrade_outgoing_qos",
    "memory_limit",
    "sys_interval_timeout",
    "websockets_log_level",
    "socket_domain",
    // rustls offers only its own modern suites.
    "ciphers",
    "ciphers_tls1.3",
    "websockets_headers_size",
];

/// A listener's options as the file gives them, before they are checked.
#[derive(Debug, Default)]
struct FileListener {
    port: Option<u16>,
    ip: Option<IpAddr>,
    protocol: Option<Protocol>,
    certfile: Option<PathBuf>,
    keyfile: Option<PathBuf>,
    cafile: Option<PathBuf>,
    capath: Option<PathBuf>,
    require_certificate: bool,
    use_identity_as_username: bool,
    tls_version: Option<TlsVersion>,
    proxy_protocol: bool,
    /// Where it starts, for messages.
    at: String,
}

impl FileListener {
    fn spec(self) -> Result<ListenerSpec, ConfError> {
        let fail = |why: &str| ConfError::Invalid {
            option: "listener".into(),
            at: self.at.clone(),
            why: why.into(),
        };
        let tls = match (self.certfile, self.keyfile) {
            (Some(certfile), Some(keyfile)) => Some(TlsFiles {
                certfile,
                keyfile,
                cafile: self.cafile,
                capath: self.capath,
                require_certificate: self.require_certificate,
                use_identity_as_username: self.use_identity_as_username,
                min_version: self.tls_version.unwrap_or_default(),
            }),
            (None, None) => {
                if self.cafile.is_some() || self.capath.is_some() || self.require_certificate {
                    return Err(fail("cafile, capath and require_certificate need certfile"));
                }
                None
            }
            _ => return Err(fail("certfile and keyfile go together")),
        };
        if let Some(tls) = &tls {
            if tls.require_certificate && tls.cafile.is_none() && tls.capath.is_none() {
                return Err(fail("require_certificate needs cafile or capath"));
            }
        }
        Ok(ListenerSpec {
            addr: SocketAddr::new(
                self.ip.unwrap_or(IpAddr::from([0, 0, 0, 0])),
                self.port.unwrap_or(1883),
            ),
            protocol: self.protocol.unwrap_or(Protocol::Mqtt),
            tls,
            proxy_protocol: self.proxy_protocol,
        })
    }
}

/// Options whose absence would change what clients get: the broker does not start on them.
fn refused(option: &str) -> Option<&'static str> {
    Some(match option {
        "connection" | "address" | "addresses" | "topic" | "bridge_protocol_version" => {
            "bridges are not built in; run the bridge on the other broker (ringmq accepts \
             Mosquitto bridges)"
        }
        "auth_plugin" | "plugin" | "auth_opt" | "plugin_opt" | "global_plugin" => {
            "plugins are not supported; use password_file and acl_file"
        }
        "crlfile" => {
            "certificate revocation lists are not checked; a revoked certificate \
                      would be let in"
        }
        "use_subject_as_username" => "use use_identity_as_username (the Common Name)",
        "psk_file" | "psk_hint" => "TLS pre-shared keys are not supported; use certificates",
        "tls_engine" | "tls_keyform" => "keys must be PEM files (no OpenSSL engines)",
        _ => return None,
    })
}

/// Applies `entries` to `config`, except the options `from_cli` says the command line gave.
/// Returns the warnings (options ignored), or the first error.
pub fn apply(
    entries: &[Entry],
    config: &mut Config,
    from_cli: &dyn Fn(&str) -> bool,
) -> Result<Vec<String>, ConfError> {
    let mut warnings = Vec::new();
    let mut listeners = FileListeners::default();
    let mut persistence = false;
    let mut persistence_location: Option<PathBuf> = None;
    let mut log_dest_set = false;
    let mut allow_anonymous: Option<bool> = None;
    macro_rules! set {
        ($field:ident, $value:expr) => {
            if !from_cli(stringify!($field)) {
                config.$field = $value;
            }
        };
    }
    for entry in entries {
        if let Some(why) = refused(&entry.option) {
            return Err(unsupported(entry, why));
        }
        match entry.option.as_str() {
            "listener" => {
                let port = number(entry)?;
                let ip = match entry.args.get(1) {
                    Some(_) => Some(ip(entry, 1)?),
                    None => None,
                };
                listeners.list.push(FileListener {
                    port: Some(port),
                    ip,
                    at: entry.at.clone(),
                    ..FileListener::default()
                });
            }
            "port" => {
                let port = number(entry)?;
                listeners.default_listener(entry).port = Some(port);
            }
            "bind_address" => {
                let ip = ip(entry, 0)?;
                listeners.default_listener(entry).ip = Some(ip);
            }
            "protocol" => {
                let protocol = match arg(entry, 0)? {
                    "mqtt" => Protocol::Mqtt,
                    "websockets" => Protocol::WebSockets,
                    other => {
                        return Err(invalid(entry, format!("mqtt or websockets, not {other:?}")))
                    }
                };
                listeners.current(entry).protocol = Some(protocol);
            }
            "certfile" => listeners.current(entry).certfile = Some(path(entry)?),
            "keyfile" => listeners.current(entry).keyfile = Some(path(entry)?),
            "cafile" => listeners.current(entry).cafile = Some(path(entry)?),
            "capath" => listeners.current(entry).capath = Some(path(entry)?),
            "require_certificate" => {
                listeners.current(entry).require_certificate = boolean(entry)?;
            }
            "use_identity_as_username" => {
                listeners.current(entry).use_identity_as_username = boolean(entry)?;
            }
            "tls_version" => {
                let version = TlsVersion::parse(arg(entry, 0)?).map_err(|e| invalid(entry, e))?;
                listeners.current(entry).tls_version = Some(version);
            }
            // Mosquitto 2.1: `enable_proxy_protocol 1` or `2`; either version is accepted.
            "enable_proxy_protocol" => {
                let version: u8 = number(entry)?;
                if !matches!(version, 1 | 2) {
                    return Err(invalid(entry, "1 or 2"));
                }
                listeners.current(entry).proxy_protocol = true;
            }
            "allow_anonymous" => allow_anonymous = Some(boolean(entry)?),
            "password_file" => set!(password_file, Some(PathBuf::from(arg(entry, 0)?))),
            "acl_file" => set!(acl_file, Some(PathBuf::from(arg(entry, 0)?))),
            "max_connections" => {
                let n: i64 = number(entry)?;
                if n >= 0 {
                    // Mosquitto counts a listener's connections; ringmq a shard's.
                    let shards = config.shard_count() as i64;
                    set!(
                        max_connections,
                        (n + shards - 1).div_euclid(shards).max(1) as usize
                    );
                }
            }
            "max_inflight_messages" => {
                let n: u32 = number(entry)?;
                set!(
                    max_inflight,
                    if n == 0 {
                        u16::MAX
                    } else {
                        n.min(65_535) as u16
                    }
                );
            }
            "max_queued_messages" => {
                let n: usize = number(entry)?;
                set!(max_queued_messages, if n == 0 { usize::MAX } else { n });
            }
            "max_queued_bytes" => {
                let n: usize = number(entry)?;
                set!(max_queued_bytes, if n == 0 { usize::MAX } else { n });
            }
            "message_size_limit" => {
                let n: u32 = number(entry)?;
                // A payload limit: the packet may add a topic and the headers.
                let packet = if n == 0 {
                    268_435_455
                } else {
                    n.saturating_add(65_546)
                };
                set!(max_packet_size, packet.min(268_435_460));
            }
            "max_keepalive" => set!(max_keepalive, number(entry)?),
            "max_qos" => {
                let n: u8 = number(entry)?;
                if n > 2 {
                    return Err(invalid(entry, "0, 1 or 2"));
                }
                set!(max_qos, n);
            }
            "retain_available" => set!(no_retain, !boolean(entry)?),
            "persistence" => persistence = boolean(entry)?,
            "persistence_location" => persistence_location = Some(PathBuf::from(arg(entry, 0)?)),
            "persistent_client_expiration" => {
                set!(persistent_client_expiration, Some(duration_secs(entry)?));
            }
            "sys_interval" => set!(sys_interval, number(entry)?),
            "pid_file" => set!(pid_file, Some(PathBuf::from(arg(entry, 0)?))),
            "log_dest" => {
                if log_dest_set {
                    warnings.push(format!(
                        "{}: a second log_dest is ignored (ringmq logs to one place)",
                        entry.at
                    ));
                    continue;
                }
                match arg(entry, 0)? {
                    "stderr" | "stdout" => {}
                    "syslog" => set!(log_dest, LogDestArg::Syslog),
                    "file" => set!(log_file, Some(PathBuf::from(arg(entry, 1)?))),
                    other => {
                        warnings.push(format!("{}: log_dest {other} is not supported", entry.at));
                        continue;
                    }
                }
                log_dest_set = true;
            }
            "log_type" => {
                if matches!(arg(entry, 0)?, "debug" | "all") {
                    set!(verbose, true);
                }
            }
            option if IGNORED.contains(&option) => warnings.push(format!(
                "{}: `{option}` is ignored (ringmq does without it)",
                entry.at
            )),
            option => warnings.push(format!("{}: unknown option `{option}` ignored", entry.at)),
        }
    }
    if persistence {
        let dir = persistence_location.unwrap_or_else(|| PathBuf::from("."));
        set!(data_dir, Some(dir));
    }
    let any_listener = !listeners.list.is_empty();
    let mut specs = listeners
        .list
        .into_iter()
        .map(FileListener::spec)
        .collect::<Result<Vec<_>, _>>()?;
    match specs.first_mut() {
        // Mosquitto 2: without any listener, only this machine may connect, anonymously.
        None => set!(bind, IpAddr::from([127, 0, 0, 1])),
        Some(first) => {
            // The command line's --bind and --port replace the first listener's.
            set!(bind, first.addr.ip());
            set!(port, first.addr.port());
            first.addr = SocketAddr::new(config.bind, config.port);
        }
    }
    config.file_listeners = specs;
    let anonymous = allow_anonymous.unwrap_or(!any_listener);
    set!(allow_anonymous, anonymous);
    if !config.allow_anonymous && config.password_file.is_none() {
        // Mosquitto refuses every client then; so does ringmq (not a flag: set here only).
        config.refuse_anonymous_without_passwords = true;
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {

    use super::*;

    fn config(text: &str, cli: &[&str]) -> Result<(Config, Vec<String>), ConfError> {
        let mut args = vec!["ringmq"];
        args.extend_from_slice(cli);
        let matches = <Config as clap::CommandFactory>::command().get_matches_from(&args);
        let mut config = <Config as clap::FromArgMatches>::from_arg_matches(&matches).unwrap();
        let from_cli =
            |id: &str| matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
        let warnings = apply(&parse(text, "test.conf"), &mut config, &from_cli)?;
        Ok((config, warnings))
    }

    #[test]
    fn debian_default_file_maps_onto_flags() {
        let text = include_str!("../../tests/fixtures/debian-mosquitto.conf")
            .replace("include_dir /etc/mosquitto/conf.d\n", "");
        let (c, warnings) = config(&text, &[]).unwrap();
        assert_eq!(
            c.pid_file.as_deref(),
            Some(Path::new("/run/mosquitto/mosquitto.pid"))
        );
        assert_eq!(
            c.data_dir.as_deref(),
            Some(Path::new("/var/lib/mosquitto/"))
        );
        assert_eq!(
            c.log_file.as_deref(),
            Some(Path::new("/var/log/mosquitto/mosquitto.log"))
        );
        // No listener: this machine only, anonymous, as Mosquitto 2.
        assert_eq!((c.bind, c.port), (IpAddr::from([127, 0, 0, 1]), 1883));
        assert!(c.allow_anonymous && !c.refuse_anonymous_without_passwords);
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn listener_port_and_limits() {
        let text = "listener 1884 127.0.0.2\nallow_anonymous true\nmax_inflight_messages 20\n\
                    max_queued_messages 0\nmax_queued_bytes 1000\nmessage_size_limit 100\n\
                    max_keepalive 120\nmax_qos 1\nretain_available false\nsys_interval 0\n\
                    persistent_client_expiration 2d\nmax_connections 1001\n";
        let (c, warnings) = config(text, &["--shards", "2"]).unwrap();
        assert_eq!((c.bind, c.port), (IpAddr::from([127, 0, 0, 2]), 1884));
        assert_eq!(c.max_inflight, 20);
        assert_eq!(c.max_queued_messages, usize::MAX);
        assert_eq!(c.max_queued_bytes, 1000);
        assert_eq!(c.max_packet_size, 100 + 65_546);
        assert_eq!((c.max_keepalive, c.max_qos), (120, 1));
        assert!(c.no_retain);
        assert_eq!(c.sys_interval, 0);
        assert_eq!(c.persistent_client_expiration, Some(2 * 86_400));
        assert_eq!(c.max_connections, 501, "1001 over 2 shards");
        assert!(c.allow_anonymous);
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn the_command_line_overrides_the_file() {
        let text = "listener 1884\nmax_inflight_messages 20\nlog_type debug\n";
        let (c, _) = config(text, &["-p", "2000", "--max-inflight", "7"]).unwrap();
        assert_eq!((c.port, c.max_inflight), (2000, 7));
        assert!(c.verbose);
    }

    #[test]
    fn passwords_acl_and_anonymous() {
        let text = "listener 1883\npassword_file /p\nacl_file /a\nallow_anonymous false\n";
        let (c, _) = config(text, &[]).unwrap();
        assert_eq!(c.password_file.as_deref(), Some(Path::new("/p")));
        assert_eq!(c.acl_file.as_deref(), Some(Path::new("/a")));
        assert!(!c.allow_anonymous && !c.refuse_anonymous_without_passwords);
        // A listener without passwords and without allow_anonymous: Mosquitto 2 admits no one.
        let (c, _) = config("listener 1883\n", &[]).unwrap();
        assert!(!c.allow_anonymous && c.refuse_anonymous_without_passwords);
    }

    #[test]
    fn log_destinations() {
        let (c, w) = config("log_dest syslog\nlog_dest stderr\n", &[]).unwrap();
        assert_eq!(c.log_dest, LogDestArg::Syslog);
        assert_eq!(w.len(), 1, "the second log_dest: {w:?}");
        let (c, _) = config("log_dest file /tmp/x.log\n", &[]).unwrap();
        assert_eq!(c.log_file.as_deref(), Some(Path::new("/tmp/x.log")));
        let (_, w) = config("log_dest topic\n", &[]).unwrap();
        assert!(w[0].contains("topic"), "{w:?}");
    }

    #[test]
    fn unknown_and_ignored_options_are_warned_of() {
        let (_, w) = config("user mosquitto\nno_such_option 1\n# comment\n\n", &[]).unwrap();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains("user") && w[1].contains("no_such_option"),
            "{w:?}"
        );
        assert!(w[1].contains("test.conf:2"), "{w:?}");
    }

    #[test]
    fn options_that_would_change_what_clients_get_are_errors() {
        for text in [
            "connection bridge-1\naddress 10.0.0.1\n",
            "listener 8883\ncertfile /c.pem\nkeyfile /k.pem\ncrlfile /crl.pem\n",
            "psk_file /psk\n",
            "auth_plugin /usr/lib/x.so\n",
        ] {
            let error = config(text, &[]).unwrap_err();
            assert!(
                matches!(error, ConfError::Unsupported { .. }),
                "{text}: {error}"
            );
        }
        for text in [
            "max_qos 3\n",
            "listener x\n",
            "persistent_client_expiration 3x\n",
            "listener 8883\ncertfile /c.pem\n",
            "listener 8883\ncafile /ca.pem\n",
            "listener 8883\ncertfile /c\nkeyfile /k\nrequire_certificate true\n",
            "listener 8883\ntls_version tlsv1.1\n",
            "listener 9001\nprotocol http\n",
            "listener 1883\nenable_proxy_protocol 3\n",
        ] {
            let error = config(text, &[]).unwrap_err();
            assert!(
                matches!(error, ConfError::Invalid { .. }),
                "{text}: {error}"
            );
        }
    }

    #[test]
    fn several_listeners_with_tls_websockets_and_proxy() {
        let text = "per_listener_settings false\n\
                    listener 1883 127.0.0.1\n\
                    listener 8883\ncertfile /etc/m/server.pem\nkeyfile /etc/m/server.key\n\
                    cafile /etc/m/ca.pem\nrequire_certificate true\n\
                    use_identity_as_username true\ntls_version tlsv1.3\n\
                    listener 9001\nprotocol websockets\n\
                    listener 9443 ::1\nprotocol websockets\ncertfile /c\nkeyfile /k\n\
                    capath /etc/m/cas\n\
                    listener 1884\nenable_proxy_protocol 2\n\
                    password_file /p\nacl_file /a\n";
        let (c, warnings) = config(text, &[]).unwrap();
        let l = c.listeners().unwrap();
        let urls: Vec<String> = l.iter().map(ToString::to_string).collect();
        assert_eq!(
            urls,
            [
                "mqtt://127.0.0.1:1883",
                "mqtts://0.0.0.0:8883",
                "ws://0.0.0.0:9001",
                "wss://[::1]:9443",
                "mqtt+proxy://0.0.0.0:1884"
            ]
        );
        let tls = l[1].tls.as_ref().unwrap();
        assert_eq!(tls.cafile.as_deref(), Some(Path::new("/etc/m/ca.pem")));
        assert!(tls.require_certificate && tls.use_identity_as_username);
        assert_eq!(tls.min_version, TlsVersion::Tls13);
        let tls = l[3].tls.as_ref().unwrap();
        assert!(!tls.require_certificate && tls.cafile.is_none());
        assert_eq!(tls.capath.as_deref(), Some(Path::new("/etc/m/cas")));
        assert_eq!(c.password_file.as_deref(), Some(Path::new("/p")));
        assert_eq!(warnings.len(), 1, "per_listener_settings: {warnings:?}");
        // The command line's port replaces the first listener's, --listen all of them.
        let (c, _) = config(text, &["-p", "2883"]).unwrap();
        assert_eq!(
            c.listeners().unwrap()[0].to_string(),
            "mqtt://127.0.0.1:2883"
        );
        assert_eq!(c.listeners().unwrap().len(), 5);
        let (c, _) = config(text, &["--listen", "ws://127.0.0.1:1"]).unwrap();
        assert_eq!(c.listeners().unwrap().len(), 1);
    }

    #[test]
    fn options_before_any_listener_are_the_default_listeners() {
        let text = "certfile /c\nkeyfile /k\nport 8883\nbind_address 127.0.0.1\n";
        let (c, _) = config(text, &[]).unwrap();
        let l = c.listeners().unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].to_string(), "mqtts://127.0.0.1:8883");
    }

    #[test]
    fn persistence_needs_persistence_true() {
        let (c, _) = config("persistence_location /d/\n", &[]).unwrap();
        assert_eq!(c.data_dir, None);
        let (c, _) = config("persistence true\npersistence_location /d/\n", &[]).unwrap();
        assert_eq!(c.data_dir.as_deref(), Some(Path::new("/d/")));
    }

    #[test]
    fn include_dir_reads_conf_files_in_order() {
        let dir = std::env::temp_dir().join(format!("ringmq-conf-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("conf.d")).unwrap();
        std::fs::write(dir.join("conf.d/b.conf"), "max_keepalive 20\n").unwrap();
        std::fs::write(
            dir.join("conf.d/a.conf"),
            "max_keepalive 10\nsys_interval 5\n",
        )
        .unwrap();
        std::fs::write(dir.join("conf.d/README"), "not read\n").unwrap();
        let main = dir.join("main.conf");
        std::fs::write(
            &main,
            format!("include_dir {}\n", dir.join("conf.d").display()),
        )
        .unwrap();
        let entries = read(&main).unwrap();
        let options: Vec<&str> = entries.iter().map(|e| e.option.as_str()).collect();
        assert_eq!(options, ["max_keepalive", "sys_interval", "max_keepalive"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
