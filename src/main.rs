//! The `amber` binary: parse the command line, load settings, set up logging, run.

use clap::Parser;

use amber::cli::{self, Cli};
use amber::config::Settings;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(err) => {
            // LOG_FORMAT itself may be what is wrong: a line as asked if it can be read.
            let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
            let format = if json {
                amber::config::LogFormat::Json
            } else {
                amber::config::LogFormat::Pretty
            };
            let message = format!("amber: {err}");
            eprintln!(
                "{}",
                amber::telemetry::line(format, "ERROR", "fatal", &message, &[])
            );
            return std::process::ExitCode::from(2);
        }
    };
    let format = settings.log_format;
    amber::telemetry::init(format, &settings.rust_log);
    match cli::run(cli, settings) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            let message = format!("amber: {err:#}");
            let line = amber::telemetry::line(format, "ERROR", "fatal", &message, &[]);
            eprintln!("{line}");
            std::process::ExitCode::FAILURE
        }
    }
}
