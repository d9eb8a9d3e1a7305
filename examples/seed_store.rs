//! Fills a `DATA_DIR` with synthetic X posts for load tests and size measurements:
//! `cargo run --release --example seed_store -- DATA_DIR N`.

use std::time::Instant;

use amber::storage::Store;

#[path = "../benches/support/synth.rs"]
mod synth;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: seed_store DATA_DIR N"))?;
    let n: u64 = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: seed_store DATA_DIR N"))?
        .parse()?;
    let path = std::path::Path::new(&dir).join("db");
    std::fs::create_dir_all(&path)?;
    let mut store = Store::open(&path, 64)?;
    if store.reader().leaders().is_empty() {
        synth::add_leaders(&mut store);
    }
    let started = Instant::now();
    synth::fill(&mut store, n, 10_000);
    store.flush()?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "inserted {n} posts in {secs:.2} s ({:.0} posts/s)",
        n as f64 / secs
    );
    Ok(())
}
