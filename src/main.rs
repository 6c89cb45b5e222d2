use clap::parser::ValueSource;
use clap::FromArgMatches;
use ringmq::config::{mosquitto, Config};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let matches = <Config as clap::CommandFactory>::command().get_matches();
    let mut config = match Config::from_arg_matches(&matches) {
        Ok(config) => config,
        Err(error) => error.exit(),
    };
    // A Mosquitto file sets what the command line did not.
    let mut warnings = Vec::new();
    if let Some(path) = config.config_file.clone() {
        let from_cli = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
        let applied = mosquitto::read(&path)
            .and_then(|entries| mosquitto::apply(&entries, &mut config, &from_cli));
        match applied {
            Ok(w) => warnings = w,
            Err(error) => {
                eprintln!("ringmq: {error}");
                std::process::exit(2);
            }
        }
    }
    if !config.huge_pages {
        // Before the shards allocate: mappings made from here on use small pages only.
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
    // rustls warns of each client's TLS mistakes (an IP address as server name, ...), and
    // tungstenite's debug lines are per connection: our own lines say what matters.
    let default_level = if config.verbose {
        "debug,rustls=error,tungstenite=info"
    } else {
        "info,rustls=error"
    };
    let logging = match ringmq::logging::init(default_level, &config.log_dest(), config.log_format)
    {
        Ok(logging) => logging,
        Err(error) => {
            eprintln!("ringmq: cannot log to {:?}: {error}", config.log_dest());
            std::process::exit(1);
        }
    };
    for warning in &warnings {
        tracing::warn!("configuration file: {warning}");
    }
    let pid_file = config.pid_file.clone();
    if let Some(path) = &pid_file {
        if let Err(error) = std::fs::write(path, format!("{}\n", std::process::id())) {
            tracing::warn!(path = %path.display(), %error, "cannot write the pid file");
        }
    }
    let result = ringmq::server::run(config);
    if let Some(path) = &pid_file {
        let _ = std::fs::remove_file(path);
    }
    if let Err(error) = result {
        // The lines still queued go out first (exit runs no destructors).
        drop(logging);
        eprintln!("ringmq: {error}");
        std::process::exit(1);
    }
}
