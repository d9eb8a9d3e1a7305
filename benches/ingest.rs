//! End-to-end ingestion benchmark: the fake X API on loopback → `XFetcher` (reqwest,
//! JSON, mapping, VADER) → `PostStore` (sled, dedup, flush per leader), driven by the
//! real `IngestScheduler`. Not criterion: each scenario is one long run, timed whole.
//!
//! ```text
//! cargo bench --bench ingest                 # all scenarios
//! cargo bench --bench ingest -- throughput   # new posts/s, then re-ingest (dedup) posts/s
//! cargo bench --bench ingest -- scheduled    # 1,000 leaders, 5 ms latency per X call
//! ```

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use amber::actors::scheduler::{IngestScheduler, RunRecord, TriggerRun, WaitIdle};
use amber::actors::store::{PostStore, SeedLeaders};
use amber::config::Settings;
use amber::domain::leader::LeaderDraft;
use amber::storage::Store;
use amber::x_api::fake::{username, FakeScript, FakeX};

struct Bench {
    fake: FakeX,
    scheduler: actix::Addr<IngestScheduler>,
    reader: amber::storage::StoreReader,
    _dir: tempfile::TempDir,
}

async fn setup(users: u32, posts: u32, backfill: u32, latency: Duration) -> Bench {
    let fake = FakeX::start(FakeScript {
        users,
        posts_per_user: posts,
        latency,
        ..FakeScript::default()
    })
    .expect("fake X API");
    let dir = tempfile::tempdir().expect("temp dir");
    let token = fake.token();
    let env: HashMap<String, String> = [
        ("DATA_DIR", dir.path().to_str().expect("utf-8 path")),
        ("X_API_BASE_URL", fake.base_url()),
        ("TWITTER_BEARER_TOKEN", token.as_str()),
        ("X_BACKFILL_COUNT", &backfill.to_string()),
        ("X_INGEST_LIMIT", "100"),
        ("SLED_CACHE_MB", "64"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let settings = Settings::from_map(&env).expect("settings");
    let store = Store::open(&dir.path().join("db"), settings.sled_cache_mb).expect("store");
    let reader = store.reader();
    let store = PostStore::start(store);
    let drafts: Vec<LeaderDraft> = (0..users)
        .map(|u| {
            let mut handles = BTreeMap::new();
            handles.insert("x".to_string(), username(u));
            LeaderDraft::parse(&format!("Leader {u}"), handles, vec![], None).expect("draft")
        })
        .collect();
    store
        .send(SeedLeaders(drafts))
        .await
        .expect("store actor")
        .expect("seed");
    let ingestion =
        IngestScheduler::launch(&settings, store, reader.clone(), false).expect("launch");
    Bench {
        fake,
        scheduler: ingestion.scheduler,
        reader,
        _dir: dir,
    }
}

async fn timed_run(bench: &Bench, backfill: bool) -> (RunRecord, Duration) {
    let started = Instant::now();
    bench
        .scheduler
        .send(TriggerRun {
            backfill,
            source: "cli",
        })
        .await
        .expect("scheduler")
        .expect("trigger");
    let record = bench
        .scheduler
        .send(WaitIdle)
        .await
        .expect("scheduler")
        .expect("record");
    (record, started.elapsed())
}

fn per_sec(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

async fn throughput() {
    let (users, posts) = (200, 500);
    let bench = setup(users, posts, posts, Duration::ZERO).await;
    let (first, took) = timed_run(&bench, true).await;
    assert_eq!(first.posts_ingested, u64::from(users * posts), "{first:?}");
    println!(
        "throughput/new:   {} posts from {} leaders ({} pages of 100) in {:.2} s = {:.0} new posts/s",
        first.posts_ingested,
        users,
        bench.fake.stats().timeline_calls,
        took.as_secs_f64(),
        per_sec(first.posts_ingested, took)
    );
    let (again, took) = timed_run(&bench, true).await;
    assert_eq!(again.posts_ingested, 0);
    assert_eq!(again.duplicates, u64::from(users * posts));
    println!(
        "throughput/dedup: {} posts re-read, all duplicates, in {:.2} s = {:.0} posts/s",
        again.duplicates,
        took.as_secs_f64(),
        per_sec(again.duplicates, took)
    );
    assert_eq!(bench.reader.stats().posts, u64::from(users * posts));
}

async fn scheduled() {
    let leaders = 1000;
    let bench = setup(leaders, 10, 10, Duration::from_millis(5)).await;
    let (first, took) = timed_run(&bench, false).await;
    assert_eq!(first.leaders, u64::from(leaders));
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    println!(
        "scheduled/first:  {leaders} leaders, first sight (user lookup + 1 page each, {} X calls), 5 ms latency: {:.2} s",
        bench.fake.stats().api_calls,
        took.as_secs_f64()
    );
    for u in 0..leaders {
        bench.fake.add_posts(&username(u), 1);
    }
    let calls = bench.fake.stats().api_calls;
    let (next, took) = timed_run(&bench, false).await;
    assert_eq!(next.posts_ingested, u64::from(leaders));
    println!(
        "scheduled/incr:   {leaders} leaders, incremental (since_id, {} X calls), 5 ms latency: {:.2} s",
        bench.fake.stats().api_calls - calls,
        took.as_secs_f64()
    );
}

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wants = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    actix::System::new().block_on(async {
        if wants("throughput") {
            throughput().await;
        }
        if wants("scheduled") {
            scheduled().await;
        }
    });
}
