//! `ringmq-load`: a load harness for MQTT brokers.

mod cli;
mod conn;
mod connection;
mod engine;
mod faults;
mod hdr;
mod json;
mod output;
mod payload;
mod plan;
mod plot;
mod progress;
mod publisher;
mod report;
mod subscriber;
mod tls;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use cli::{Cli, Command};
use plan::Plan;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    raise_fd_limit();
    if let Some(ca) = &cli.tls_ca {
        if let Err(e) = tls::configure(ca, &cli.tls_server_name, cli.tls_x25519_only) {
            eprintln!("ringmq-load: error: --tls-ca: {e}");
            return ExitCode::FAILURE;
        }
    }
    let result = match cli.command {
        Command::Conn(a) => {
            watchdog(a.hold + 120);
            conn::run(&a).map(|s| {
                println!("{}", if a.json { s.json() } else { s.text() });
                s.failed == 0 && s.dropped == 0
            })
        }
        Command::Plot(a) => output::plot_files(&a).map(|_| true),
        Command::Slowsub(a) => run_fault(faults::Fault::SlowSubscriber, &a),
        Command::Storm(a) => run_fault(faults::Fault::Storm, &a),
        Command::Garbage(a) => run_fault(faults::Fault::Garbage, &a),
        Command::Pub(a) => run_plan(Plan::publishers(&a)),
        Command::Sub(a) => run_plan(Plan::subscribers(&a)),
        Command::Fanin(a) => run_plan(Plan::fanin(&a)),
        Command::Fanout(a) => run_plan(Plan::fanout(&a)),
        Command::Funnel(a) => run_plan(Plan::funnel(&a)),
        Command::Shared(a) => run_plan(Plan::shared(&a)),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("ringmq-load: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a load scenario and writes its reports; `Ok(false)` when it broke a delivery promise.
fn run_plan(plan: Plan) -> Result<bool, String> {
    // Connecting, draining and closing are bounded too; this only catches a hang.
    watchdog(plan.run.duration + plan.run.drain + 120);
    let summary = engine::run(&plan)?;
    if plan.run.json {
        println!("{}", summary.json());
    } else {
        print!("{}", summary.text());
    }
    if summary.qos == 1 && summary.lost > 0 {
        eprintln!(
            "ringmq-load: WARNING: {} messages lost at QoS 1 (at-least-once broken?)",
            summary.lost
        );
    }
    output::write_files(&plan.run, &summary)?;
    Ok(!summary.failed())
}

/// Runs a fault scenario and prints its report; `Ok(false)` when the healthy pair suffered.
fn run_fault(fault: faults::Fault, a: &cli::FaultArgs) -> Result<bool, String> {
    watchdog(a.duration + a.settle + 120);
    let summary = faults::run(fault, a)?;
    if a.json {
        println!("{}", summary.json());
    } else {
        print!("{}", summary.text());
    }
    Ok(!summary.failed())
}

fn watchdog(secs: u64) {
    let limit = Duration::from_secs(secs);
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("ringmq-load: watchdog: run exceeded {limit:?}, aborting");
        std::process::exit(3);
    });
}

/// Many connections need many descriptors: lift the soft limit to the hard one.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a stack struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
