//! `ringmq-load`: a load harness for MQTT brokers.

mod cli;
mod connection;
mod payload;
mod report;
mod scenario;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use cli::{Cli, Command};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Fanin(args) => {
            // Safety net: every socket operation is bounded, but never outlive the run by much.
            let limit = Duration::from_secs(args.duration + 30);
            std::thread::spawn(move || {
                std::thread::sleep(limit);
                eprintln!("ringmq-load: watchdog: run exceeded {limit:?}, aborting");
                std::process::exit(3);
            });
            match scenario::run_fanin(&args) {
                Ok(summary) => {
                    if args.json {
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
                    if summary.errors.is_empty() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("ringmq-load: error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
