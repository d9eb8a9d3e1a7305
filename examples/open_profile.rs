//! Splits start-up on a seeded `DATA_DIR` (issue 14): time and RSS after sled's open
//! alone, after `Store::open` (sled + feed index + the rest) and after the integrity
//! check: `cargo run --release --example open_profile -- DATA_DIR [CACHE_MB] [keys]`.
//! It also prints how many pages sled's page table holds (each costs resident memory,
//! cached or not) and, with `keys`, how many keys, key bytes and value bytes each key
//! space of the `amber` tree has (a full scan, after the other figures).

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
    let count_keys = args.next().as_deref() == Some("keys");
    let path = std::path::Path::new(&dir).join("db");
    eprintln!("before anything: rss {} MB", rss_mb());
    let t = Instant::now();
    let db = sled::Config::new()
        .path(&path)
        .cache_capacity(cache_mb * 1024 * 1024)
        .flush_every_ms(None)
        .open()?;
    eprintln!(
        "sled open alone: {} ms, rss {} MB, {} MB trimmed, {} pages in sled's page table",
        t.elapsed().as_millis(),
        rss_mb(),
        trimmed(),
        db.page_table_len()
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
    if count_keys {
        // (keys, key bytes, value bytes) per first byte of the key.
        let mut spaces = std::collections::BTreeMap::<u8, (u64, u64, u64)>::new();
        drop(store);
        let db = sled::Config::new()
            .path(&path)
            .cache_capacity(cache_mb * 1024 * 1024)
            .flush_every_ms(None)
            .open()?;
        for kv in db.open_tree("amber")?.iter() {
            let (k, v) = kv?;
            let e = spaces.entry(k.first().copied().unwrap_or(0)).or_default();
            e.0 += 1;
            e.1 += k.len() as u64;
            e.2 += v.len() as u64;
        }
        eprintln!(
            "after that scan: rss {} MB, {} MB trimmed",
            rss_mb(),
            trimmed()
        );
        db.page_out_cache()?;
        eprintln!(
            "after page_out_cache: rss {} MB, {} MB trimmed",
            rss_mb(),
            trimmed()
        );
        for (space, (n, kb, vb)) in spaces {
            eprintln!(
                "key space {:?}: {n} keys, {kb} key bytes, {vb} value bytes ({} bytes a value)",
                space as char,
                vb / n.max(1)
            );
        }
    }
    Ok(())
}
