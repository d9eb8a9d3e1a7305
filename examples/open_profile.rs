//! Splits start-up on a seeded `DATA_DIR` (issue 14): time and RSS after sled's open
//! alone, after `Store::open` (sled + feed index + the rest) and after the integrity
//! check: `cargo run --release --example open_profile -- DATA_DIR [CACHE_MB]`.

use std::time::Instant;

fn rss_mb() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096 / (1 << 20)
}

/// Gives glibc's freed pages back to the kernel (see `startup::trim_malloc`).
fn trimmed() -> u64 {
    amber::startup::trim_malloc();
    rss_mb()
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: open_profile DATA_DIR [CACHE_MB]"))?;
    let cache_mb: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(64);
    let path = std::path::Path::new(&dir).join("db");
    eprintln!("before anything: rss {} MB", rss_mb());
    let t = Instant::now();
    let db = sled::Config::new()
        .path(&path)
        .cache_capacity(cache_mb * 1024 * 1024)
        .flush_every_ms(None)
        .open()?;
    eprintln!(
        "sled open alone: {} ms, rss {} MB, {} MB trimmed",
        t.elapsed().as_millis(),
        rss_mb(),
        trimmed()
    );
    drop(db);
    eprintln!("sled closed: rss {} MB, {} MB trimmed", rss_mb(), trimmed());
    let t = Instant::now();
    let store = amber::storage::Store::open(&path, cache_mb)?;
    eprintln!(
        "Store::open: {} ms, rss {} MB, {} MB trimmed",
        t.elapsed().as_millis(),
        rss_mb(),
        trimmed()
    );
    let t = Instant::now();
    let report = store.reader().check_integrity(None)?;
    eprintln!(
        "integrity check: {} ms, rss {} MB, {} MB trimmed ({} damaged)",
        t.elapsed().as_millis(),
        rss_mb(),
        trimmed(),
        report.total()
    );
    Ok(())
}
