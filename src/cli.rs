//! The command line (clap): `serve` (default), `token`, `export`, `import`.

use std::io::{BufWriter, Write};

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::backup;
use crate::config::Settings;
use crate::http::auth::{JwtKeys, Role};
use crate::startup::{open_store, Application};

/// Amber: follow public figures on X from one self-hosted binary.
#[derive(Debug, Parser)]
#[command(name = "amber", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve,
    /// Print a signed JWT for the admin API.
    Token {
        /// Token subject (who the token is for).
        #[arg(long)]
        sub: String,
        /// Role of the token.
        #[arg(long, default_value = "admin", value_parser = ["admin", "reviewer"])]
        role: String,
        /// Lifetime in seconds (default ADMIN_JWT_TTL).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
        ttl: Option<u64>,
    },
    /// Write every leader, post and review item to stdout as JSON lines.
    Export,
    /// Read a backup (JSON lines) from stdin into DATA_DIR; the server must be stopped.
    Import,
}

/// Runs a parsed command line with loaded settings.
pub fn run(cli: Cli, settings: Settings) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings),
        Command::Token { sub, role, ttl } => {
            let role = Role::parse(&role).context("role must be admin or reviewer")?;
            let keys = JwtKeys::new(&settings.auth);
            let ttl = ttl.unwrap_or(settings.auth.jwt_ttl_seconds);
            let token = keys
                .issue(&sub, role, ttl)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{token}");
            Ok(())
        }
        Command::Export => {
            let store = open_store(&settings)?;
            let reader = store.reader();
            let stdout = std::io::stdout();
            let mut out = BufWriter::new(stdout.lock());
            let mut n = 0usize;
            for record in reader.export() {
                backup::write_record(&mut out, &record?)?;
                n += 1;
            }
            out.flush()?;
            eprintln!("exported {n} records");
            Ok(())
        }
        Command::Import => {
            let records = backup::read_all(std::io::stdin().lock())?;
            let mut store = open_store(&settings)?;
            let report = store.import(records)?;
            store.flush()?;
            eprintln!(
                "imported {} leaders, {} posts, {} review items; skipped {} (already present or orphaned)",
                report.leaders, report.posts, report.reviews, report.skipped
            );
            Ok(())
        }
    }
}

fn serve(settings: Settings) -> anyhow::Result<()> {
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build(settings).await?;
        // One machine-readable line on stdout, so scripts and tests using PORT=0 can find us.
        println!("amber listening on {}", app.address());
        app.run_until_stopped().await
    })
}
