//! Fills a `DATA_DIR` with a full notification outbox for `benches/load/notify.sh`:
//! `seed_outbox DATA_DIR N URL [TARGETS [FORMAT]]` creates `TARGETS` (default 1) targets on
//! `URL` in `FORMAT` (default `json`), then stores `N` synthetic X posts as new posts (as a
//! scheduled run would), so each target's queue holds `N` deliveries when Amber starts.

use amber::notify::target::{Format, TargetDraft};
use amber::storage::{IngestMode, Store};

#[path = "../benches/support/synth.rs"]
mod synth;

const USAGE: &str = "usage: seed_outbox DATA_DIR N URL [TARGETS [FORMAT]]";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, n, url, rest @ ..] = &args[..] else {
        anyhow::bail!(USAGE);
    };
    let n: u64 = n.parse()?;
    let targets: u64 = rest.first().map_or(Ok(1), |t| t.parse())?;
    let format = rest.get(1).map_or("json", String::as_str);
    let format = Format::parse(format).ok_or_else(|| anyhow::anyhow!("unknown format {format}"))?;
    let path = std::path::Path::new(dir).join("db");
    std::fs::create_dir_all(&path)?;
    let mut store = Store::open(&path, 64)?;
    if store.reader().leaders().is_empty() {
        synth::add_leaders(&mut store);
    }
    for _ in 0..targets {
        let draft = TargetDraft {
            url: url.clone(),
            format,
            leaders: Vec::new(),
            kinds: Vec::new(),
            keywords: Vec::new(),
            approved_only: false,
        };
        store.create_notify_target(draft, false, synth::T0_MS)?;
    }
    let mut start = 0;
    while start < n {
        let end = (start + 1000).min(n);
        store.insert_posts_as((start..end).map(synth::x_post).collect(), IngestMode::New)?;
        start = end;
    }
    store.flush()?;
    eprintln!("{targets} target(s) on {url}, {n} posts queued for each");
    Ok(())
}
