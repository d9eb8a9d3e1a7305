//! The floor under `amber import` (BENCHMARKS.md, issue 10): sled alone, writing what an
//! import writes for each synthetic post — a `P` record of `VALUE` bytes, a `T` key and a
//! `D` key — in batches of `BATCH` posts, each `apply_batch` followed by a flush, with no
//! parsing, no encoding and no reads.
//! `cargo build --profile fastrel --example sled_floor &&
//!  target/fastrel/examples/sled_floor DIR [POSTS] [BATCH] [VALUE]`.

use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: sled_floor DIR [POSTS] [BATCH] [VALUE]"))?;
    let mut next = |default: u64| -> anyhow::Result<u64> {
        Ok(args
            .next()
            .map(|a| a.parse())
            .transpose()?
            .unwrap_or(default))
    };
    let (posts, batch, value) = (next(100_000)?, next(500)?, next(900)?);
    let db = sled::Config::new()
        .path(&dir)
        .cache_capacity(16 << 20)
        .flush_every_ms(None)
        .open()?;
    let tree = db.open_tree("amber")?;
    let record = vec![0x5a_u8; value as usize];
    let started = Instant::now();
    let mut n = 0;
    while n < posts {
        let mut b = sled::Batch::default();
        for id in n..(n + batch).min(posts) {
            let mut p = vec![b'P'];
            p.extend_from_slice(&id.to_be_bytes());
            b.insert(p, &record[..]);
            let mut t = vec![b'T'];
            t.extend_from_slice(&(1_735_689_600_000 + id * 60_000).to_be_bytes());
            t.extend_from_slice(&id.to_be_bytes());
            b.insert(t, &[0u8; 10][..]);
            let mut d = vec![b'D', 1];
            d.extend_from_slice((1_800_000_000_000_000_000 + id).to_string().as_bytes());
            b.insert(d, &id.to_be_bytes()[..]);
        }
        tree.apply_batch(b)?;
        db.flush()?;
        for _ in 0..(3 * batch / 2 + 256) {
            drop(sled::pin());
        }
        n += batch;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{posts} posts in batches of {batch} ({value}-byte records): {secs:.2} s, {:.0} posts/s",
        posts as f64 / secs
    );
    Ok(())
}
