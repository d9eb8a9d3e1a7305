//! `XFetcher`: fetches one leader's new posts from X and hands them to `PostStore`.
//!
//! For a leader it resolves the X user id once (cached in the store, so restarts do not
//! repeat the lookup), then reads the timeline: one page of up to `limit` posts newer than
//! the newest stored id (incremental), or, on backfill, pages following `meta.next_token`
//! until `X_BACKFILL_COUNT` posts (never more than 100 a page). Every try of every X call,
//! retries included, first asks the `CircuitBreaker` and reports its outcome to it; the
//! retry rules are the client's ([`RetryPolicy::after_failure`]), the loop is here, so a
//! wait for X's rate-limit reset is announced to the scheduler ([`RateLimitWait`]) and
//! ends at once when the fetch's [`StopSignal`] fires. The posts of one leader are stored
//! in one `InsertPosts` batch, so a leader is either fully ingested or not at all (a
//! backfill cut short by a crash is redone whole, never left with a hole behind
//! `since_id`).
//!
//! Requests run concurrently: each `FetchLeader` is its own future, and the scheduler
//! decides how many are in flight.

use std::sync::atomic::{AtomicU64, Ordering};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::actors::breaker::{AskPermit, CircuitBreaker, TryOutcome};
use crate::actors::signal::StopSignal;
use crate::actors::store::{CacheXUser, PostStore, SetMeta, StoreTimeline};
use crate::actors::usage::Resource;
use crate::domain::cursor::Cursor;
use crate::domain::leader::Leader;
use crate::domain::post::{Counts, NewPost, Platform, Post};
use crate::replication::Writes;
use crate::storage::query::{PageStart, PostQuery};
use crate::storage::{x_id_newer, IngestMode, StoreReader};
use crate::x_api::client::{FetchError, RetryPolicy, Step, XClient, MAX_PAGE, MIN_PAGE};
use crate::x_api::dto::{map_tweet, stored_counts, AuthorProfile, TimelineResponse, User};

/// How much of a timeline to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchMode {
    /// The posts newer than the newest stored one: a first page of `limit`; when X says
    /// there are more new posts than that (`next_token`), further pages up to `catch_up`
    /// in all, so a leader who posted a lot since the last run leaves no hole behind
    /// `since_id` (unless more than `catch_up` posts came in).
    Incremental { limit: u32, catch_up: u32 },
    /// The newest `count` posts, whatever is stored, following `meta.next_token`.
    Backfill { count: u32 },
}

/// What was read from X (X bills per post and per user read).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reads {
    pub posts: u64,
    pub users: u64,
}

impl Reads {
    /// Adds `other` to `self`.
    pub fn add(&mut self, other: Reads) {
        self.posts += other.posts;
        self.users += other.users;
    }
}

/// A fetch waits for X's rate-limit reset (`until` Some), or that wait is over (None).
/// `id` tells concurrent waits apart.
#[derive(Debug, Clone, PartialEq, Message)]
#[rtype(result = "()")]
pub struct RateLimitWait {
    pub id: u64,
    pub wait: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

static WAIT_IDS: AtomicU64 = AtomicU64::new(1);

/// Why one leader's fetch failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LeaderError {
    #[error("leader has no X handle")]
    NoHandle,
    #[error(transparent)]
    X(#[from] FetchError),
    #[error("could not store posts: {0}")]
    Store(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl LeaderError {
    /// A stable snake_case name for the run record.
    pub fn kind(&self) -> &'static str {
        match self {
            LeaderError::NoHandle => "no_handle",
            LeaderError::X(e) => e.kind(),
            LeaderError::Store(_) => "store",
            LeaderError::Internal(_) => "internal",
        }
    }
}

/// The result of one leader's fetch.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LeaderReport {
    /// Posts stored for the first time.
    pub inserted: Vec<Post>,
    /// Stored posts replaced by an edit.
    pub updated: usize,
    /// Stored posts read again whose counts changed (updated in place).
    pub refreshed: usize,
    /// Posts already stored.
    pub duplicates: usize,
    /// Timeline pages read.
    pub pages: u32,
}

/// Outcome and cost of one leader's fetch; `reads` counts even when the fetch failed.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchOutcome {
    pub leader_id: u64,
    pub reads: Reads,
    /// Every resource X returned (posts, includes, users), for the UTC-day billing.
    pub resources: Vec<Resource>,
    pub result: Result<LeaderReport, LeaderError>,
}

/// The profile kept next to the cached user id, so posts carry name and avatar after a
/// restart without another user lookup.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CachedProfile {
    handle: String,
    name: Option<String>,
    avatar: Option<String>,
}

fn profile_meta_name(leader_id: u64) -> String {
    format!("x_profile:{leader_id}")
}

/// The leader's X profile as cached by an earlier lookup of `handle` (user id, name,
/// avatar); None when the handle was never resolved. Blocking (two sled point reads).
pub(crate) fn cached_author(
    reader: &StoreReader,
    leader: &Leader,
    handle: &str,
) -> Result<Option<AuthorProfile>, crate::storage::StoreError> {
    let Some(user_id) = reader.x_user_id(leader.id, handle)? else {
        return Ok(None);
    };
    let profile = reader
        .meta(&profile_meta_name(leader.id))
        .ok()
        .flatten()
        .and_then(|b| serde_json::from_slice::<CachedProfile>(&b).ok())
        .filter(|p| p.handle.eq_ignore_ascii_case(handle));
    Ok(Some(match profile {
        Some(p) => AuthorProfile {
            user_id,
            handle: p.handle,
            name: p.name,
            avatar_url: p.avatar,
        },
        None => AuthorProfile {
            user_id,
            handle: handle.to_string(),
            name: Some(leader.name.clone()),
            avatar_url: leader.avatar_url.clone(),
        },
    }))
}

/// The two writes that cache a resolved handle: the profile (send it first: once the id
/// is cached, the profile is looked for), then the user id.
pub(crate) fn author_cache_writes(
    leader_id: u64,
    handle: &str,
    user: &User,
) -> (SetMeta, CacheXUser) {
    let profile = AuthorProfile::from_user(user);
    let cached = CachedProfile {
        handle: handle.to_string(),
        name: profile.name,
        avatar: profile.avatar_url,
    };
    (
        SetMeta {
            name: profile_meta_name(leader_id),
            value: serde_json::to_vec(&cached).ok(),
        },
        CacheXUser {
            leader_id,
            handle: handle.to_string(),
            user_id: user.id.clone(),
        },
    )
}

/// The fetcher actor.
pub struct XFetcher {
    client: XClient,
    breaker: Addr<CircuitBreaker>,
    store: Writes,
    reader: StoreReader,
}

impl XFetcher {
    /// A fetcher using `client`, guarded by `breaker`, storing through `store`.
    pub fn new(
        client: XClient,
        breaker: Addr<CircuitBreaker>,
        store: impl Into<Writes>,
        reader: StoreReader,
    ) -> XFetcher {
        XFetcher {
            client,
            breaker,
            store: store.into(),
            reader,
        }
    }
}

impl Actor for XFetcher {
    type Context = Context<Self>;
}

/// Fetch one leader's posts and store them.
#[derive(Debug, Message)]
#[rtype(result = "FetchOutcome")]
pub struct FetchLeader {
    pub leader: Leader,
    pub mode: FetchMode,
    /// Posts that may still be read this month (`X_MONTHLY_READ_BUDGET`); None: no cap.
    pub read_allowance: Option<u64>,
    /// Fires when the run is stopped: a wait for X's rate-limit reset ends at once
    /// (tries and short retry pauses finish: the run stops at leader boundaries).
    pub stop: StopSignal,
    /// Told when a try waits for X's rate-limit reset, and when that wait ends.
    pub waits: Option<Recipient<RateLimitWait>>,
    /// Incremental fetches re-read the posts created since then (unix ms; the start of
    /// today's UTC day: X bills them once a day, so today's counts move for free):
    /// `since_id` is the newest stored post older than this. None: since the newest.
    pub reread_from_ms: Option<i64>,
}

impl Handler<FetchLeader> for XFetcher {
    type Result = ResponseFuture<FetchOutcome>;

    fn handle(&mut self, msg: FetchLeader, _: &mut Context<Self>) -> Self::Result {
        let job = Job {
            client: self.client.clone(),
            breaker: self.breaker.clone(),
            store: self.store.clone(),
            reader: self.reader.clone(),
            reads: Reads::default(),
            resources: Vec::new(),
            stop: msg.stop.clone(),
            waits: msg.waits.clone(),
        };
        Box::pin(job.run(msg))
    }
}

/// One leader's fetch, owning clones of what it needs so many run at once.
struct Job {
    client: XClient,
    breaker: Addr<CircuitBreaker>,
    store: Writes,
    reader: StoreReader,
    reads: Reads,
    resources: Vec<Resource>,
    stop: StopSignal,
    waits: Option<Recipient<RateLimitWait>>,
}

impl Job {
    async fn run(mut self, msg: FetchLeader) -> FetchOutcome {
        let leader_id = msg.leader.id;
        let result = self.fetch(msg).await;
        if let Err(err) = &result {
            tracing::warn!(leader_id, error = %err, "leader fetch failed");
        }
        FetchOutcome {
            leader_id,
            reads: self.reads,
            resources: self.resources,
            result,
        }
    }

    /// Runs one X call under the retry rules, every try under the breaker: each asks
    /// for a permit first (waiting while the breaker can afford no more tries in flight,
    /// refused once it is open) and reports its outcome. A retry the breaker refuses
    /// ends the call with the last error X gave.
    async fn guarded<T, F, Fut>(&self, mut once: F) -> Result<T, LeaderError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, FetchError>>,
    {
        let policy: RetryPolicy = *self.client.policy();
        let mut last: Option<FetchError> = None;
        let mut tries = 0;
        loop {
            // A stop does not cut a leader in flight (the run stops at leader
            // boundaries): only the long wait for a rate-limit reset ends at once.
            let permit = match self.breaker.send(AskPermit).await {
                Ok(Ok(permit)) => permit,
                Ok(Err(open)) => {
                    return Err(last
                        .unwrap_or(FetchError::CircuitOpen {
                            retry_at: open.retry_at,
                        })
                        .into())
                }
                Err(e) => return Err(LeaderError::Internal(format!("circuit breaker: {e}"))),
            };
            tries += 1;
            let result = once().await;
            permit.report(match &result {
                Err(e) if e.counts_as_failure() => TryOutcome::Failure,
                _ => TryOutcome::Success,
            });
            let err = match result {
                Ok(v) => return Ok(v),
                Err(err) => err,
            };
            let step = policy.after_failure(tries, &err, Utc::now());
            match step {
                Step::GiveUp => return Err(err.into()),
                Step::Retry(pause) => {
                    tracing::warn!(error = %err, try_no = tries, pause_ms = pause.as_millis() as u64, "X call failed, retrying");
                    tokio::time::sleep(pause).await;
                }
                Step::WaitForReset { until, pause } => {
                    tracing::info!(until = %until.to_rfc3339(), "rate limited by X; waiting for the reset");
                    if !self.wait_for_reset(until, pause).await {
                        return Err(FetchError::Stopped.into());
                    }
                }
            }
            last = Some(err);
        }
    }

    /// Waits `pause` for X's rate-limit reset at `until`, announced to the scheduler;
    /// false when stopped first.
    async fn wait_for_reset(&self, until: DateTime<Utc>, pause: std::time::Duration) -> bool {
        let id = WAIT_IDS.fetch_add(1, Ordering::Relaxed);
        if let Some(waits) = &self.waits {
            waits.do_send(RateLimitWait {
                id,
                wait: Some((Utc::now(), until)),
            });
        }
        let waited = self.stop.sleep(pause).await;
        if let Some(waits) = &self.waits {
            waits.do_send(RateLimitWait { id, wait: None });
        }
        waited
    }

    async fn author(
        &mut self,
        leader: &Leader,
        handle: &str,
    ) -> Result<AuthorProfile, LeaderError> {
        // Two point reads of sled: off the async executor, like every sled call.
        let (reader, owned_leader, owned_handle) =
            (self.reader.clone(), leader.clone(), handle.to_string());
        let cached = tokio::task::spawn_blocking(move || {
            cached_author(&reader, &owned_leader, &owned_handle)
        })
        .await
        .map_err(|e| LeaderError::Store(e.to_string()))?
        .map_err(|e| LeaderError::Store(e.to_string()))?;
        if let Some(profile) = cached {
            return Ok(profile);
        }
        let client = self.client.clone();
        let lookup = self.guarded(|| client.resolve_user_once(handle)).await;
        self.reads.users += 1;
        let user: User = lookup?;
        self.resources.push(Resource::user(user.id.clone()));
        let (meta, cache) = author_cache_writes(leader.id, handle, &user);
        // Profile first: once the id is cached, the profile is looked for.
        self.store_call(meta).await?;
        self.store_call(cache).await?;
        Ok(AuthorProfile::from_user(&user))
    }

    async fn store_call<M>(&self, msg: M) -> Result<(), LeaderError>
    where
        M: Message<Result = Result<(), crate::storage::StoreError>> + Send + 'static,
        PostStore: Handler<M>,
    {
        match self.store.local().send(msg).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(LeaderError::Store(e.to_string())),
            Err(e) => Err(LeaderError::Internal(format!("post store: {e}"))),
        }
    }

    async fn fetch(&mut self, msg: FetchLeader) -> Result<LeaderReport, LeaderError> {
        let leader = msg.leader;
        let handle = leader.x_handle().ok_or(LeaderError::NoHandle)?.to_string();
        let author = self.author(&leader, &handle).await?;
        let (first_page, want, since_id) = match msg.mode {
            FetchMode::Incremental { limit, catch_up } => {
                let (reader, id, from) = (self.reader.clone(), leader.id, msg.reread_from_ms);
                let since = tokio::task::spawn_blocking(move || reread_since(&reader, id, from))
                    .await
                    .map_err(|e| LeaderError::Internal(format!("since_id: {e}")))?;
                (limit, catch_up.max(limit), since)
            }
            FetchMode::Backfill { count } => (count, count, None),
        };
        let want = match msg.read_allowance {
            Some(left) => want.min(u32::try_from(left).unwrap_or(u32::MAX)),
            None => want,
        };
        let mut report = LeaderReport::default();
        let mut pages: Vec<TimelineResponse> = Vec::new();
        let mut token: Option<String> = None;
        let mut got: u32 = 0;
        while got < want {
            let this_page = if report.pages == 0 {
                first_page.min(want)
            } else {
                want - got
            };
            let page_size = this_page.clamp(MIN_PAGE, MAX_PAGE);
            let client = self.client.clone();
            let page = self
                .guarded(|| {
                    client.timeline_once(
                        &author.user_id,
                        since_id.as_deref(),
                        page_size,
                        token.as_deref(),
                    )
                })
                .await?;
            report.pages += 1;
            self.reads.posts += page.data.len() as u64;
            self.resources.extend(billed_resources(&page));
            got = got.saturating_add(page.data.len() as u32);
            token = page.meta.next_token.clone();
            let last_page = token.is_none() || page.data.is_empty();
            pages.push(page);
            if last_page {
                break;
            }
        }
        // Mapping scores every post with VADER: CPU work, done on the blocking pool so
        // several leaders' pages are scored in parallel with the network and the store.
        let reader = self.reader.clone();
        let leader_id = leader.id;
        let (posts, counts, known) =
            tokio::task::spawn_blocking(move || map_pages(&pages, &reader, leader_id, &author))
                .await
                .map_err(|e| LeaderError::Internal(format!("mapping posts: {e}")))?;
        report.duplicates += known;
        if posts.is_empty() && counts.is_empty() {
            return Ok(report);
        }
        let mode = match msg.mode {
            FetchMode::Incremental { .. } => IngestMode::New,
            FetchMode::Backfill { .. } => IngestMode::Backfill,
        };
        let stored = match self
            .store
            .send(StoreTimeline {
                posts,
                counts,
                mode,
            })
            .await
        {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(LeaderError::Store(e.to_string())),
            Err(e) => return Err(LeaderError::Internal(format!("post store: {e}"))),
        };
        report.duplicates += stored.duplicates;
        report.updated = stored.updated.len();
        report.refreshed = stored.refreshed;
        report.inserted = stored.inserted;
        if report.inserted.len() + report.updated > 0 {
            // The original system's event, for runbooks that grep the log for it.
            tracing::info!(event = "ingest_success", leaderId = %leader_id, handle = %handle,
                count = report.inserted.len(), updated = report.updated, "ingest_success");
        }
        Ok(report)
    }
}

/// Every resource X bills on a timeline page: the posts in `data` and, from `includes`,
/// the referenced posts (Posts: Read) and users (User: Read). Media objects are not a
/// read resource on X's price list (`x-api/docs/getting-started--pricing.mdx`), so they
/// cost nothing.
pub(crate) fn billed_resources(page: &TimelineResponse) -> impl Iterator<Item = Resource> + '_ {
    let includes = page.includes.iter();
    page.data
        .iter()
        .map(|t| Resource::post(t.id.clone()))
        .chain(
            includes
                .clone()
                .flat_map(|i| i.tweets.iter().map(|t| Resource::post(t.id.clone()))),
        )
        .chain(includes.flat_map(|i| i.users.iter().map(|u| Resource::user(u.id.clone()))))
}

/// The `since_id` of an incremental fetch: the newest stored X post, or with
/// `reread_from_ms`, the newest stored post created before then (so the posts since are
/// read again and their counts move), never newer than the newest stored one.
fn reread_since(
    reader: &StoreReader,
    leader_id: u64,
    reread_from_ms: Option<i64>,
) -> Option<String> {
    let newest = reader.newest_x_id(leader_id)?;
    let Some(from) = reread_from_ms else {
        return Some(newest);
    };
    let query = PostQuery::newest(1)
        .leaders([leader_id])
        .platform(Some(Platform::X))
        .starting(PageStart::Before(Cursor {
            timestamp_ms: from,
            post_id: 0,
        }));
    let before = reader
        .page(&query)
        .ok()
        .and_then(|p| p.posts.into_iter().next())
        .and_then(|p| p.platform_post_id);
    match before {
        Some(id) if !x_id_newer(&id, &newest) => Some(id),
        // Nothing stored before then: every stored post is today's; read them all again
        // (the catch-up bound caps how many).
        None => None,
        Some(_) => Some(newest),
    }
}

/// Maps timeline pages to posts. Posts already stored are not mapped again (that saves
/// scoring their sentiment): their counts, when X's differ from the stored ones, are
/// returned as count updates. Returns the new posts, the count updates and how many
/// posts were already stored.
pub(crate) fn map_pages(
    pages: &[TimelineResponse],
    reader: &StoreReader,
    leader_id: u64,
    author: &AuthorProfile,
) -> (Vec<NewPost>, Vec<(String, Counts)>, usize) {
    let mut posts = Vec::new();
    let mut counts = Vec::new();
    let mut known = 0;
    for page in pages {
        let index = page.index();
        for tweet in &page.data {
            if let Ok(Some(stored)) = reader.post_by_external_id(Platform::X, &tweet.id) {
                known += 1;
                let now = stored_counts(tweet, &index);
                // A post entered through the API under its X id has no counts yet.
                if stored.details.counts != Some(now) {
                    counts.push((tweet.id.clone(), now));
                }
                continue;
            }
            posts.push(map_tweet(tweet, &index, leader_id, author));
        }
    }
    (posts, counts, known)
}

/// A small world for actor tests: a fake X, a store in a temp dir, the actors.
#[cfg(test)]
pub(crate) mod testkit {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use actix::prelude::*;
    use tokio::sync::watch;

    use crate::actors::breaker::{BreakerConfig, BreakerSnapshot, CircuitBreaker};
    use crate::actors::fetcher::XFetcher;
    use crate::actors::store::{CreateLeader, PostStore};
    use crate::config::Secret;
    use crate::domain::leader::{Leader, LeaderDraft};
    use crate::storage::{Store, StoreReader};
    use crate::x_api::client::{RetryPolicy, XClient};
    use crate::x_api::fake::{username, FakeScript, FakeX};

    #[allow(dead_code)] // Not every test needs every part.
    pub(crate) struct Rig {
        pub fake: FakeX,
        pub store: Addr<PostStore>,
        pub reader: StoreReader,
        pub breaker: Addr<CircuitBreaker>,
        pub breaker_rx: watch::Receiver<BreakerSnapshot>,
        pub fetcher: Addr<XFetcher>,
        pub leaders: Vec<Leader>,
        pub _dir: tempfile::TempDir,
    }

    pub(crate) fn fast_policy() -> RetryPolicy {
        RetryPolicy {
            max_tries: 3,
            base_delay: Duration::from_millis(5),
            max_reset_wait: Duration::from_secs(2),
            request_timeout: Duration::from_millis(800),
        }
    }

    /// `users` fake accounts with `posts` posts each, one leader per account.
    pub(crate) async fn rig(users: u32, posts: u32, fail_max: u32) -> Rig {
        let fake = FakeX::start(FakeScript {
            users,
            posts_per_user: posts,
            ..FakeScript::default()
        })
        .expect("fake X starts");
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path(), 16).expect("store opens");
        let reader = store.reader();
        let store = PostStore::start(store);
        let mut leaders = Vec::new();
        for u in 0..users {
            let mut handles = BTreeMap::new();
            handles.insert("x".to_string(), format!("@{}", username(u)));
            let draft = LeaderDraft::parse(&format!("Leader {u}"), handles, vec![], None)
                .expect("valid draft");
            leaders.push(store.send(CreateLeader(draft)).await.unwrap().unwrap());
        }
        let (breaker, breaker_rx) = CircuitBreaker::new(BreakerConfig {
            fail_max,
            reset: Duration::from_millis(300),
        });
        let breaker = breaker.start();
        let client = XClient::new(fake.base_url(), Secret::new(fake.token()), fast_policy())
            .expect("client");
        let fetcher = XFetcher::new(client, breaker.clone(), store.clone(), reader.clone()).start();
        Rig {
            fake,
            store,
            reader,
            breaker,
            breaker_rx,
            fetcher,
            leaders,
            _dir: dir,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testkit::rig;
    use super::*;
    use crate::x_api::fake::{username, Fault};

    async fn fetch(rig: &testkit::Rig, idx: usize, mode: FetchMode) -> FetchOutcome {
        rig.fetcher
            .send(FetchLeader {
                leader: rig.leaders[idx].clone(),
                mode,
                read_allowance: None,
                stop: crate::actors::signal::StopSignal::never(),
                waits: None,
                reread_from_ms: None,
            })
            .await
            .unwrap()
    }

    #[actix::test]
    async fn first_fetch_backfills_through_pages_and_stores_every_field() {
        let rig = rig(1, 230, 5).await;
        let out = fetch(&rig, 0, FetchMode::Backfill { count: 150 }).await;
        let report = out.result.unwrap();
        assert_eq!(report.inserted.len(), 150);
        assert_eq!(report.pages, 2, "100 then 50");
        assert_eq!(
            out.reads,
            Reads {
                posts: 150,
                users: 1
            }
        );
        let newest = rig.fake.post_ids(&username(0))[0].clone();
        assert_eq!(
            rig.reader.newest_x_id(rig.leaders[0].id),
            Some(newest.clone())
        );
        let post = rig
            .reader
            .post_by_external_id(Platform::X, &newest)
            .unwrap()
            .unwrap();
        let m = serde_json::to_value(crate::shape::post::PostJson::from(&post, None)).unwrap()
            ["metrics"]
            .clone();
        assert_eq!(m["origin"], "x");
        assert_eq!(m["author"], username(0));
        assert_eq!(m["authorName"], "Leader 0");
        assert!(m["avatarUrl"]
            .as_str()
            .unwrap()
            .starts_with("https://pbs.twimg.com/"));
        let with_media = report
            .inserted
            .iter()
            .filter(|p| {
                p.details.media.iter().any(|m| {
                    m.url
                        .as_deref()
                        .is_some_and(|u| u.contains("pbs.twimg.com/media/"))
                })
            })
            .count();
        assert!(with_media >= 40, "{with_media}");
    }

    #[actix::test]
    async fn incremental_fetch_asks_since_the_newest_stored_id() {
        let rig = rig(1, 12, 5).await;
        fetch(&rig, 0, FetchMode::Backfill { count: 50 })
            .await
            .result
            .unwrap();
        let newest = rig.reader.newest_x_id(rig.leaders[0].id).unwrap();
        let added = rig.fake.add_posts(&username(0), 3);
        let out = fetch(
            &rig,
            0,
            FetchMode::Incremental {
                limit: 10,
                catch_up: 10,
            },
        )
        .await;
        let report = out.result.unwrap();
        let mut got: Vec<_> = report
            .inserted
            .iter()
            .filter_map(|p| p.platform_post_id.clone())
            .collect();
        got.sort();
        assert_eq!(got, added);
        assert_eq!(
            out.reads,
            Reads { posts: 3, users: 0 },
            "user id was cached"
        );
        let line = rig.fake.stats().recent_requests.last().cloned().unwrap();
        assert!(line.contains(&format!("since_id={newest}")), "{line}");
        assert!(line.contains("max_results=10"), "{line}");
    }

    #[actix::test]
    async fn a_busy_leaders_backlog_is_caught_up_through_pages_not_skipped() {
        let rig = rig(1, 5, 5).await;
        fetch(&rig, 0, FetchMode::Backfill { count: 10 })
            .await
            .result
            .unwrap();
        let added = rig.fake.add_posts(&username(0), 25);
        let out = fetch(
            &rig,
            0,
            FetchMode::Incremental {
                limit: 10,
                catch_up: 50,
            },
        )
        .await;
        let report = out.result.unwrap();
        assert_eq!(report.inserted.len(), 25);
        assert_eq!(report.pages, 2, "10, then the other 15");
        assert_eq!(
            rig.reader.newest_x_id(rig.leaders[0].id).as_ref(),
            added.last()
        );
        assert_eq!(rig.reader.stats().posts, 30);
    }

    #[actix::test]
    async fn repeated_fetches_store_each_post_once() {
        let rig = rig(1, 40, 5).await;
        for _ in 0..3 {
            fetch(&rig, 0, FetchMode::Backfill { count: 40 })
                .await
                .result
                .unwrap();
        }
        assert_eq!(rig.reader.stats().posts, 40);
        let last = fetch(&rig, 0, FetchMode::Backfill { count: 40 })
            .await
            .result
            .unwrap();
        assert!(last.inserted.is_empty());
        assert_eq!(last.duplicates, 40);
    }

    #[actix::test]
    async fn todays_posts_are_read_again_and_their_counts_move_in_place_billed_once() {
        use crate::actors::usage::{day_start_ms, DailyReads};
        let rig = rig(1, 6, 5).await;
        let mut daily = DailyReads::new(Utc::now());
        let out = fetch(&rig, 0, FetchMode::Backfill { count: 10 }).await;
        daily.bill(&out.resources, Utc::now());
        let old_newest = rig.reader.newest_x_id(rig.leaders[0].id).unwrap();
        let today = rig.fake.add_posts(&username(0), 1)[0].clone();
        let today_ms = day_start_ms(Utc::now());
        let incremental = |rig: &testkit::Rig| {
            rig.fetcher.send(FetchLeader {
                leader: rig.leaders[0].clone(),
                mode: FetchMode::Incremental {
                    limit: 10,
                    catch_up: 10,
                },
                read_allowance: None,
                stop: crate::actors::signal::StopSignal::never(),
                waits: None,
                reread_from_ms: Some(today_ms),
            })
        };
        let first = incremental(&rig).await.unwrap();
        assert_eq!(first.result.unwrap().inserted.len(), 1);
        // The new post is billed (its photo is no read resource); its author (in
        // `includes.users`) was billed already today by the backfill.
        let billed = daily.bill(&first.resources, Utc::now());
        assert_eq!(billed.posts, 1, "{billed:?}");
        assert_eq!(billed.users, 0, "{:?}", first.resources);
        let before = rig
            .reader
            .post_by_external_id(Platform::X, &today)
            .unwrap()
            .unwrap();
        rig.fake
            .set_counts(
                &today,
                &crate::x_api::fake::CountsUpdate {
                    like_count: Some(4321),
                    ..Default::default()
                },
            )
            .unwrap();
        let again = incremental(&rig).await.unwrap();
        let line = rig.fake.stats().recent_requests.last().cloned().unwrap();
        assert!(line.contains(&format!("since_id={old_newest}")), "{line}");
        let report = again.result.unwrap();
        assert!(report.inserted.is_empty());
        assert_eq!((report.refreshed, report.duplicates), (1, 1));
        assert_eq!(
            daily.bill(&again.resources, Utc::now()),
            crate::actors::usage::Billed::default(),
            "read twice today, billed once"
        );
        let after = rig
            .reader
            .post_by_external_id(Platform::X, &today)
            .unwrap()
            .unwrap();
        assert_eq!(after.id, before.id);
        assert_eq!(after.timestamp_ms, before.timestamp_ms);
        assert_eq!(after.details.counts.unwrap().likes, 4321);
        assert_ne!(before.details.counts, after.details.counts);
        assert_eq!(
            after.revision,
            before.revision + 1,
            "moved counts are a revision"
        );
        let json = serde_json::to_value(crate::shape::post::PostJson::from(&after, None)).unwrap();
        assert_eq!(json["metrics"]["likes"], 4321);
        assert_eq!(json["metrics"]["revision"], after.revision);
        assert_eq!(rig.reader.stats().posts, 7);
        // Unchanged counts write nothing.
        let third = incremental(&rig).await.unwrap().result.unwrap();
        assert_eq!(third.refreshed, 0);
        let last = rig
            .reader
            .post_by_external_id(Platform::X, &today)
            .unwrap()
            .unwrap();
        assert_eq!(last.revision, after.revision);
    }

    #[actix::test]
    async fn an_edited_post_updates_the_stored_one() {
        let rig = rig(1, 6, 5).await;
        fetch(&rig, 0, FetchMode::Backfill { count: 10 })
            .await
            .result
            .unwrap();
        let old = rig.fake.post_ids(&username(0))[0].clone();
        let before = rig
            .reader
            .post_by_external_id(Platform::X, &old)
            .unwrap()
            .unwrap();
        let new = rig
            .fake
            .edit_post(&old, "Corrected: a wonderful day")
            .unwrap();
        let report = fetch(
            &rig,
            0,
            FetchMode::Incremental {
                limit: 10,
                catch_up: 10,
            },
        )
        .await
        .result
        .unwrap();
        assert!(report.inserted.is_empty());
        assert_eq!(report.updated, 1);
        let after = rig
            .reader
            .post_by_external_id(Platform::X, &new)
            .unwrap()
            .unwrap();
        assert_eq!(after.id, before.id);
        assert_eq!(after.content, "Corrected: a wonderful day");
        assert_eq!(rig.reader.stats().posts, 6);
    }

    #[actix::test]
    async fn an_open_breaker_keeps_every_call_away_from_x() {
        let rig = rig(2, 5, 2).await;
        rig.fake.inject(Fault::ServerError, None);
        let out = fetch(&rig, 0, FetchMode::Backfill { count: 5 }).await;
        assert!(
            matches!(out.result, Err(LeaderError::X(FetchError::Server { .. }))),
            "the leader's error is the last X gave: {:?}",
            out.result
        );
        let calls = rig.fake.api_calls();
        assert_eq!(
            calls, 2,
            "two failed tries open it: the third try asks and is refused"
        );
        let out = fetch(&rig, 1, FetchMode::Backfill { count: 5 }).await;
        assert!(matches!(
            out.result,
            Err(LeaderError::X(FetchError::CircuitOpen { .. }))
        ));
        assert_eq!(rig.fake.api_calls(), calls, "no call while open");
    }

    #[actix::test]
    async fn concurrent_fetches_never_send_more_failing_tries_than_fail_max() {
        let rig = rig(6, 5, 5).await;
        rig.fake.inject(Fault::ServerError, None);
        rig.fake.set_latency(std::time::Duration::from_millis(30));
        let fetches = (0..6).map(|i| fetch(&rig, i, FetchMode::Backfill { count: 5 }));
        let outcomes = futures_util::future::join_all(fetches).await;
        assert!(outcomes.iter().all(|o| o.result.is_err()));
        assert_eq!(
            rig.fake.api_calls(),
            5,
            "six leaders in flight at once, retries included: five tries reach X"
        );
        assert_eq!(rig.fake.stats().max_in_flight, 5);
    }

    #[actix::test]
    async fn an_unknown_user_is_an_error_that_does_not_trip_the_breaker() {
        let rig = rig(1, 5, 1).await;
        let mut ghost = rig.leaders[0].clone();
        ghost.handles.insert("x".into(), "nobody_here".into());
        let out = rig
            .fetcher
            .send(FetchLeader {
                leader: ghost,
                mode: FetchMode::Backfill { count: 5 },
                read_allowance: None,
                stop: crate::actors::signal::StopSignal::never(),
                waits: None,
                reread_from_ms: None,
            })
            .await
            .unwrap();
        assert!(matches!(
            out.result,
            Err(LeaderError::X(FetchError::NotFound(_)))
        ));
        assert_eq!(rig.breaker_rx.borrow().failures, 0);
        assert!(fetch(&rig, 0, FetchMode::Backfill { count: 5 })
            .await
            .result
            .is_ok());
    }

    #[actix::test]
    async fn a_backfill_cut_short_stores_nothing_so_it_is_redone_whole() {
        let rig = rig(1, 230, 10).await;
        // Resolve (and cache) the user first.
        fetch(
            &rig,
            0,
            FetchMode::Incremental {
                limit: 5,
                catch_up: 5,
            },
        )
        .await
        .result
        .unwrap();
        let stored = rig.reader.stats().posts;
        // Page one answers normally, page two fails all three tries.
        rig.fake.inject(
            Fault::Slow {
                delay: std::time::Duration::ZERO,
            },
            Some(1),
        );
        rig.fake.inject(Fault::ServerError, Some(3));
        let out = fetch(&rig, 0, FetchMode::Backfill { count: 150 }).await;
        assert!(matches!(
            out.result,
            Err(LeaderError::X(FetchError::Server { .. }))
        ));
        assert_eq!(out.reads.posts, 100, "page one was read, and billed");
        assert_eq!(
            rig.reader.stats().posts,
            stored,
            "nothing of the cut backfill stored"
        );
        let again = fetch(&rig, 0, FetchMode::Backfill { count: 150 }).await;
        assert_eq!(again.result.unwrap().inserted.len() as u64 + stored, 150);
    }

    #[actix::test]
    async fn the_read_allowance_caps_what_is_asked_for() {
        let rig = rig(1, 50, 5).await;
        let out = rig
            .fetcher
            .send(FetchLeader {
                leader: rig.leaders[0].clone(),
                mode: FetchMode::Backfill { count: 50 },
                read_allowance: Some(7),
                stop: crate::actors::signal::StopSignal::never(),
                waits: None,
                reread_from_ms: None,
            })
            .await
            .unwrap();
        assert_eq!(out.reads.posts, 7);
        assert_eq!(out.result.unwrap().inserted.len(), 7);
    }
}
