use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let config = ringmq::config::Config::parse();
    if !config.huge_pages {
        // Before the shards allocate: mappings made from here on use small pages only.
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
    let default_level = if config.verbose { "debug" } else { "info" };
    let logging = match ringmq::logging::init(default_level, &config.log_dest(), config.log_format)
    {
        Ok(logging) => logging,
        Err(error) => {
            eprintln!("ringmq: cannot log to {:?}: {error}", config.log_dest());
            std::process::exit(1);
        }
    };
    if let Err(error) = ringmq::server::run(config) {
        // The lines still queued go out first (exit runs no destructors).
        drop(logging);
        eprintln!("ringmq: {error}");
        std::process::exit(1);
    }
}
