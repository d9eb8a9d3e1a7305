//! The `amber` binary: parse the command line, load settings, set up logging, run.

use clap::Parser;

use amber::cli::{self, Cli};
use amber::config::Settings;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(err) => {
            eprintln!("amber: {err}");
            return std::process::ExitCode::from(2);
        }
    };
    amber::telemetry::init(settings.log_format, &settings.rust_log);
    match cli::run(cli, settings) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("amber: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
