//! Store benches: batch insert with dedup (new posts and pure dedup hits), and feed
//! pages (page 1, a deep offset, a deep cursor) from stores of 10k and 100k posts
//! (1M with `AMBER_BENCH_1M=1`).

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};

use amber::domain::cursor::Cursor;
use amber::storage::query::{PageStart, PostQuery};
use amber::storage::Store;

#[path = "support/synth.rs"]
mod synth;

/// Posts per insert message, as ingestion sends them (one page of X results is ≤ 100;
/// a run over many leaders sends many such batches).
const BATCH: u64 = 1000;

fn open(dir: &tempfile::TempDir) -> Store {
    let mut store = Store::open(dir.path(), 64).expect("open");
    synth::add_leaders(&mut store);
    store
}

fn insert(c: &mut Criterion) {
    let mut group = c.benchmark_group("store_insert");
    group.throughput(Throughput::Elements(BATCH));
    group.sample_size(20);
    group.bench_function("new_posts_batch_1000", |b| {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(&dir);
        let mut next = 0u64;
        b.iter_batched(
            || {
                let posts: Vec<_> = (next..next + BATCH).map(synth::x_post).collect();
                next += BATCH;
                posts
            },
            |posts| store.insert_posts(posts).unwrap(),
            BatchSize::LargeInput,
        );
    });
    group.bench_function("dedup_hits_batch_1000", |b| {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(&dir);
        synth::fill(&mut store, 10_000, BATCH);
        let mut round = 0u64;
        b.iter_batched(
            || {
                round = (round + 1) % 10;
                (round * BATCH..(round + 1) * BATCH)
                    .map(synth::x_post)
                    .collect::<Vec<_>>()
            },
            |posts| {
                let report = store.insert_posts(posts).unwrap();
                assert_eq!(report.duplicates, BATCH as usize);
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

fn feed(c: &mut Criterion) {
    let mut sizes = vec![10_000u64, 100_000];
    if std::env::var("AMBER_BENCH_1M").is_ok() {
        sizes.push(1_000_000);
    }
    let mut group = c.benchmark_group("feed_page_20");
    for n in sizes {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(&dir);
        synth::fill(&mut store, n, 10_000);
        let reader = store.reader();
        let page_1 = PostQuery::newest(20);
        group.bench_with_input(BenchmarkId::new("page_1", n), &n, |b, _| {
            b.iter(|| reader.page(&page_1).unwrap())
        });
        // Offset of page 4000 at page_size 20 (or the last page of a smaller store).
        let deep = (80_000u64.min(n - 20)) as usize;
        let deep_offset = PostQuery::newest(20).starting(PageStart::Offset(deep));
        group.bench_with_input(BenchmarkId::new("deep_offset", n), &n, |b, _| {
            b.iter(|| reader.page(&deep_offset).unwrap())
        });
        // A cursor near the oldest end of the store.
        let cursor = Cursor {
            timestamp_ms: synth::T0_MS + 100 * 60_000,
            post_id: u64::MAX,
        };
        let deep_cursor = PostQuery::newest(20).starting(PageStart::Before(cursor));
        group.bench_with_input(BenchmarkId::new("deep_cursor", n), &n, |b, _| {
            b.iter(|| reader.page(&deep_cursor).unwrap())
        });
        let one_leader = PostQuery::newest(20)
            .leaders([3])
            .starting(PageStart::Offset(deep / 10));
        group.bench_with_input(BenchmarkId::new("leader_deep_offset", n), &n, |b, _| {
            b.iter(|| reader.page(&one_leader).unwrap())
        });
        drop(store);
    }
    group.finish();
}

criterion_group!(benches, insert, feed);
criterion_main!(benches);
