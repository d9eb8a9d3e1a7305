//! What a 100-leader day costs in X reads, with and without the same-day re-read
//! (issue 9, BENCHMARKS.md "Ingestion"). Two identical fake X APIs, two stores; a
//! simulated UTC day of 48 runs (every 30 minutes), every leader posting once every two
//! hours. One side reads incrementally from the newest stored post (`since_id`, no
//! re-read); the other re-reads today's posts (`since_id` = the newest post before
//! today's midnight), so their counts move. Both are billed by the UTC-day rule
//! (`DailyReads`: X bills a resource once per UTC day).
//!
//! ```text
//! cargo run --example x_day_bill [leaders] [runs]     # default 100 48
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use actix::prelude::*;
use amber::actors::breaker::{BreakerConfig, CircuitBreaker};
use amber::actors::fetcher::{FetchLeader, FetchMode, XFetcher};
use amber::actors::signal::StopSwitch;
use amber::actors::store::{CreateLeader, PostStore};
use amber::actors::usage::{day_start_ms, DailyReads};
use amber::config::Secret;
use amber::domain::leader::{Leader, LeaderDraft};
use amber::storage::Store;
use amber::x_api::client::{RetryPolicy, XClient};
use amber::x_api::fake::{username, FakeScript, FakeX};
use chrono::Utc;

struct Side {
    fake: FakeX,
    fetcher: Addr<XFetcher>,
    leaders: Vec<Leader>,
    daily: DailyReads,
    returned: u64,
    billed_posts: u64,
    billed_users: u64,
    refreshed: u64,
    _dir: tempfile::TempDir,
}

async fn side(users: u32) -> Side {
    let fake = FakeX::start(FakeScript {
        users,
        posts_per_user: 20,
        ..FakeScript::default()
    })
    .expect("fake X");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path(), 64).expect("store");
    let reader = store.reader();
    let store = PostStore::start(store);
    let mut leaders = Vec::new();
    for u in 0..users {
        let mut handles = BTreeMap::new();
        handles.insert("x".to_string(), format!("@{}", username(u)));
        let draft = LeaderDraft::parse(&format!("Leader {u}"), handles, vec![], None).unwrap();
        leaders.push(store.send(CreateLeader(draft)).await.unwrap().unwrap());
    }
    let (breaker, _) = CircuitBreaker::new(BreakerConfig {
        fail_max: 5,
        reset: Duration::from_secs(60),
    });
    let client = XClient::new(
        fake.base_url(),
        Secret::new(fake.token()),
        RetryPolicy::default(),
    )
    .unwrap();
    let fetcher = XFetcher::new(client, breaker.start(), store, reader).start();
    Side {
        fake,
        fetcher,
        leaders,
        daily: DailyReads::new(Utc::now()),
        returned: 0,
        billed_posts: 0,
        billed_users: 0,
        refreshed: 0,
        _dir: dir,
    }
}

/// One run over every leader at simulated time `at`.
async fn run(side: &mut Side, first: bool, reread: bool, at: chrono::DateTime<Utc>) {
    let stop = StopSwitch::new();
    for leader in side.leaders.clone() {
        let mode = if first {
            FetchMode::Backfill { count: 50 }
        } else {
            FetchMode::Incremental {
                limit: 10,
                catch_up: 50,
            }
        };
        let out = side
            .fetcher
            .send(FetchLeader {
                leader,
                mode,
                read_allowance: None,
                stop: stop.signal(),
                waits: None,
                reread_from_ms: reread.then(|| day_start_ms(at)),
            })
            .await
            .expect("fetcher");
        let report = out.result.expect("fetch");
        side.refreshed += report.refreshed as u64;
        side.returned += out.resources.len() as u64;
        let billed = side.daily.bill(&out.resources, at);
        side.billed_posts += billed.posts;
        side.billed_users += billed.users;
    }
}

fn main() {
    let args: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let leaders = args.first().copied().unwrap_or(100);
    let runs = args.get(1).copied().unwrap_or(48);
    actix::System::new().block_on(async move {
        let started = Instant::now();
        let mut plain = side(leaders).await;
        let mut rereading = side(leaders).await;
        // The simulated day is the day of the posts the fakes create now.
        let midnight = chrono::DateTime::from_timestamp_millis(day_start_ms(Utc::now())).unwrap();
        for r in 0..runs {
            let at = midnight + chrono::Duration::minutes(30 * i64::from(r) + 15);
            if r % 4 == 0 {
                for u in 0..leaders {
                    plain.fake.add_posts(&username(u), 1);
                    rereading.fake.add_posts(&username(u), 1);
                }
            }
            run(&mut plain, r == 0, false, at).await;
            run(&mut rereading, r == 0, true, at).await;
        }
        for (name, s) in [("without re-read", &plain), ("with re-read", &rereading)] {
            let stats = s.fake.stats();
            println!(
                "{name:16} X calls {:6}  resources returned {:7}  billed: posts {:6} users {:4}  counts refreshed {:6}",
                stats.api_calls, s.returned, s.billed_posts, s.billed_users, s.refreshed
            );
        }
        println!(
            "{leaders} leaders, {runs} runs, {} new posts per leader; took {:.1} s",
            runs.div_ceil(4),
            started.elapsed().as_secs_f64()
        );
        assert_eq!(
            (plain.billed_posts, plain.billed_users),
            (rereading.billed_posts, rereading.billed_users),
            "the bill differs"
        );
    });
}
