//! `ActivityStream`: X's Activity API stream (`X_ACTIVITY_STREAM=true`).
//!
//! The actor owns what the stream is (the snapshot status, health and `/metrics` show)
//! and starts one driver task, which owns the connection and its backoff:
//!
//! ```text
//!  loop:
//!    (REDIS_URL) take the stream lease `amber:ingest:stream-lease`, or stand by
//!    reconcile: every leader with an X handle → its user id (cached, else looked up) →
//!      exactly one `post.create` and one `post.delete` subscription tagged `amber`;
//!      `GET /2/activity/subscriptions` says what X holds: missing ones are created (up to
//!      X's cap: a 403 `subscription-limit` stops and is reported), Amber's orphans and
//!      duplicates deleted (others' subscriptions are left alone and counted)
//!    open `GET /2/activity/stream` (every try under the CircuitBreaker), replaying up
//!      to 5 minutes (`backfill_minutes`) of what a drop or a restart missed
//!    read lines: `\r\n` keep-alives, events; nothing for X_ACTIVITY_STALL_SECONDS is a
//!      stall; post.create → the polling mapping (`fetcher::map_pages`) → `StoreTimeline`
//!      (dedup, edits, `IngestMode::New`), billed like a read (`StreamReads` → the
//!      scheduler's UTC-day rule); post.delete → `DeleteAtSource` (the store's delete
//!      path plus a tombstone)
//!    dropped: reconnect at once after a connection that worked, else back off as X says
//!      (network: +250 ms to 16 s; HTTP: 5 s doubling to 320 s; 429: until its
//!      `x-rate-limit-reset`, else 1 min doubling), with jitter
//! ```
//!
//! Leader changes (`LeadersChanged`, from the leader endpoints) wake a reconcile at once;
//! a timer reconciles every [`RECONCILE_EVERY`] too (imports, seeds). Polling keeps
//! running beside the stream: dedup makes the overlap free.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use rand::Rng;
use tokio::sync::{mpsc, watch, Notify};

use crate::actors::breaker::{AskPermit, CircuitBreaker, TryOutcome};
use crate::actors::fetcher::{author_cache_writes, cached_author, map_pages};
use crate::actors::lease::{Lease, LEASE_TTL, STREAM_LEASE_KEY};
use crate::actors::scheduler::{IngestScheduler, StreamReads};
use crate::actors::store::{DeleteAtSource, StoreTimeline};
use crate::actors::usage::Resource;
use crate::domain::leader::Leader;
use crate::domain::post::{Counts, NewPost, Platform};
use crate::status::{StreamSnapshot, StreamState, SubscriptionStatus};
use crate::storage::{IngestMode, StoreReader};
use crate::x_api::activity::{self, parse_line, StreamItem, Subscription};
use crate::x_api::client::{FetchError, XClient};
use crate::x_api::dto::{AuthorProfile, Includes, Meta, TimelineResponse, Tweet};

/// A full reconcile at least this often (leaders imported or seeded send no message).
pub const RECONCILE_EVERY: Duration = Duration::from_secs(300);
/// The longest replay X offers on connect.
const MAX_BACKFILL_MINUTES: u32 = 5;
/// A line longer than this is not X's: the connection is dropped.
const MAX_LINE_BYTES: usize = 8 * 1024 * 1024;
/// Whole lines gathered at most into one store batch (about 700 events: under the live
/// hub's 1,000 a change, so each post is still announced as `new`).
const COALESCE_BYTES: usize = 1024 * 1024;

/// X's reconnect guidance (`fundamentals--handling-disconnections.mdx`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffRules {
    /// Network errors back off linearly by this step...
    pub network_step: Duration,
    /// ...up to this.
    pub network_max: Duration,
    /// HTTP errors back off exponentially from this...
    pub http_base: Duration,
    /// ...up to this.
    pub http_max: Duration,
    /// A 429 without a reset header: exponentially from this...
    pub rate_base: Duration,
    /// ...up to this.
    pub rate_max: Duration,
}

impl Default for BackoffRules {
    fn default() -> BackoffRules {
        BackoffRules {
            network_step: Duration::from_millis(250),
            network_max: Duration::from_secs(16),
            http_base: Duration::from_secs(5),
            http_max: Duration::from_secs(320),
            rate_base: Duration::from_secs(60),
            rate_max: Duration::from_secs(960),
        }
    }
}

/// Why a connection attempt failed or a connection ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// A connection that worked ended (cut, stall, a store error): reconnect at once.
    Dropped,
    /// TCP/IP trouble (refused, reset, timeout): linear backoff.
    Network,
    /// An HTTP error answer: exponential backoff.
    Http,
    /// 429: wait for its reset.
    RateLimited { reset_at: Option<DateTime<Utc>> },
    /// The breaker is open until then.
    BreakerOpen { retry_at: DateTime<Utc> },
}

impl Failure {
    fn of(err: &FetchError) -> Failure {
        match err {
            FetchError::Timeout | FetchError::Transport(_) => Failure::Network,
            FetchError::RateLimited { reset_at } => Failure::RateLimited {
                reset_at: *reset_at,
            },
            FetchError::CircuitOpen { retry_at } => Failure::BreakerOpen {
                retry_at: *retry_at,
            },
            _ => Failure::Http,
        }
    }
}

/// Consecutive failures per kind; the pause before the next connect.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Backoff {
    network: u32,
    http: u32,
    rate: u32,
}

impl Backoff {
    /// A connection worked: the next failure starts from the beginning.
    pub fn reset(&mut self) {
        *self = Backoff::default();
    }

    /// The pause (jitter included) after `failure` at `now`.
    pub fn after(
        &mut self,
        rules: &BackoffRules,
        failure: &Failure,
        now: DateTime<Utc>,
    ) -> Duration {
        let base = match failure {
            Failure::Dropped => return jitter(Duration::ZERO, Duration::from_millis(250)),
            Failure::Network => {
                self.network += 1;
                rules
                    .network_step
                    .saturating_mul(self.network)
                    .min(rules.network_max)
            }
            Failure::Http => {
                self.http += 1;
                doubling(rules.http_base, self.http, rules.http_max)
            }
            Failure::RateLimited { reset_at } => {
                self.rate += 1;
                match reset_at {
                    // X says when: wait that long (at least a second), whatever the count.
                    Some(at) => (*at - now)
                        .to_std()
                        .unwrap_or_default()
                        .max(Duration::from_secs(1)),
                    None => doubling(rules.rate_base, self.rate, rules.rate_max),
                }
            }
            Failure::BreakerOpen { retry_at } => (*retry_at - now)
                .to_std()
                .unwrap_or_default()
                .max(Duration::from_millis(100)),
        };
        jitter(base, base / 5)
    }
}

fn doubling(base: Duration, attempt: u32, max: Duration) -> Duration {
    base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(max)
}

/// `base` plus a random part of at most `spread`, so instances do not reconnect in step.
fn jitter(base: Duration, spread: Duration) -> Duration {
    let ms = u64::try_from(spread.as_millis()).unwrap_or(u64::MAX);
    let extra = if ms == 0 {
        0
    } else {
        rand::rng().random_range(0..=ms)
    };
    base + Duration::from_millis(extra)
}

/// The stream's settings.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// Nothing read for this long (X sends a keep-alive every 20 s): reconnect.
    pub stall_timeout: Duration,
    pub rules: BackoffRules,
    /// Set: only the holder of the stream lease holds the stream.
    pub redis_url: Option<String>,
}

/// What the actor needs.
pub struct StreamDeps {
    pub client: XClient,
    pub breaker: Addr<CircuitBreaker>,
    pub store: crate::replication::Writes,
    pub reader: StoreReader,
    /// Bills what the stream delivered (UTC-day rule, month's usage).
    pub scheduler: Addr<IngestScheduler>,
}

/// The actor.
pub struct ActivityStream {
    config: StreamConfig,
    deps: Option<StreamDeps>,
    snapshot: StreamSnapshot,
    publish: watch::Sender<StreamSnapshot>,
    wake: Arc<Notify>,
    driver: Option<tokio::task::JoinHandle<()>>,
    connects: u64,
}

impl ActivityStream {
    /// Starts the actor (and its driver) on the current arbiter; returns its address and
    /// the snapshots it publishes.
    pub fn launch(
        config: StreamConfig,
        deps: StreamDeps,
    ) -> (Addr<ActivityStream>, watch::Receiver<StreamSnapshot>) {
        let initial = StreamSnapshot {
            state: StreamState::Connecting,
            ..StreamSnapshot::default()
        };
        let (publish, rx) = watch::channel(initial.clone());
        let addr = ActivityStream {
            config,
            deps: Some(deps),
            snapshot: initial,
            publish,
            wake: Arc::new(Notify::new()),
            driver: None,
            connects: 0,
        }
        .start();
        (addr, rx)
    }

    fn publish(&self) {
        self.publish.send_replace(self.snapshot.clone());
    }
}

impl Actor for ActivityStream {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some(deps) = self.deps.take() else {
            return;
        };
        let driver = Driver {
            config: self.config.clone(),
            deps,
            me: ctx.address(),
            wake: self.wake.clone(),
            instance: uuid::Uuid::new_v4().to_string(),
            users: Arc::new(HashMap::new()),
            backoff: Backoff::default(),
            processed_at: Arc::new(Mutex::new(None)),
            reconciled_at: None,
        };
        self.driver = Some(actix_rt::spawn(driver.run()));
        self.publish();
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        if let Some(driver) = self.driver.take() {
            driver.abort();
        }
    }
}

/// The leaders changed (created, updated, deleted): reconcile the subscriptions now.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct LeadersChanged;

impl Handler<LeadersChanged> for ActivityStream {
    type Result = ();
    fn handle(&mut self, _: LeadersChanged, _: &mut Context<Self>) {
        self.wake.notify_one();
    }
}

/// Close the stream and stop (shutdown). Subscriptions stay: the next start reconciles.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopStream;

impl Handler<StopStream> for ActivityStream {
    type Result = ();
    fn handle(&mut self, _: StopStream, ctx: &mut Context<Self>) {
        if let Some(driver) = self.driver.take() {
            driver.abort();
        }
        self.snapshot.state = StreamState::Disabled;
        self.snapshot.since = None;
        self.publish();
        ctx.stop();
    }
}

/// What the driver tells the actor.
#[derive(Debug, Message)]
#[rtype(result = "()")]
enum Note {
    Connecting,
    Connected,
    Data,
    Waiting {
        retry_at: DateTime<Utc>,
        error: String,
    },
    Standby,
    Subscriptions(SubscriptionStatus),
    Events(Tally),
}

/// What one batch of lines did.
#[derive(Debug, Clone, Default, PartialEq)]
struct Tally {
    created: u64,
    deleted: u64,
    other: u64,
    malformed: u64,
    stored: u64,
    removed: u64,
}

impl Handler<Note> for ActivityStream {
    type Result = ();
    fn handle(&mut self, note: Note, _: &mut Context<Self>) {
        let s = &mut self.snapshot;
        let now = Utc::now();
        match note {
            Note::Connecting => {
                s.state = StreamState::Connecting;
                s.since = None;
            }
            Note::Connected => {
                self.connects += 1;
                if self.connects > 1 {
                    s.reconnects += 1;
                }
                s.state = StreamState::Connected;
                s.since = Some(now);
                s.last_data_at = Some(now);
                s.retry_at = None;
            }
            Note::Data => s.last_data_at = Some(now),
            Note::Waiting { retry_at, error } => {
                s.state = StreamState::Waiting;
                s.since = None;
                s.retry_at = Some(retry_at);
                s.last_error = Some(error);
            }
            Note::Standby => {
                s.state = StreamState::Standby;
                s.since = None;
            }
            Note::Subscriptions(subs) => s.subscriptions = subs,
            Note::Events(t) => {
                s.last_data_at = Some(now);
                if t.created + t.deleted + t.other > 0 {
                    s.last_event_at = Some(now);
                }
                s.events_post_create += t.created;
                s.events_post_delete += t.deleted;
                s.events_other += t.other;
                s.malformed += t.malformed;
                s.posts_stored += t.stored;
                s.deletions += t.removed;
            }
        }
        self.publish();
    }
}

/// A leader the stream follows.
#[derive(Debug, Clone)]
struct Followed {
    leader_id: u64,
    author: AuthorProfile,
}

/// The connection loop: lease, reconcile, connect, read, back off.
struct Driver {
    config: StreamConfig,
    deps: StreamDeps,
    me: Addr<ActivityStream>,
    wake: Arc<Notify>,
    instance: String,
    /// X user id → leader, from the last reconcile.
    users: Arc<HashMap<String, Followed>>,
    backoff: Backoff,
    /// When the last read was fully stored (what a reconnect must replay from); set by
    /// the store worker.
    processed_at: Arc<Mutex<Option<Instant>>>,
    reconciled_at: Option<Instant>,
}

/// How a connection ended.
enum End {
    Failed(Failure, String),
    LeaseLost(String),
}

impl Driver {
    async fn run(mut self) {
        loop {
            let lease = match self.take_lease().await {
                Some(lease) => lease,
                None => continue,
            };
            self.me.do_send(Note::Connecting);
            let due = self
                .reconciled_at
                .is_none_or(|at| at.elapsed() >= RECONCILE_EVERY);
            if due || lease.is_some() {
                self.reconcile().await;
            }
            let end = self.connect_and_read(lease.as_ref()).await;
            if let (Some(lease), false) = (&lease, matches!(end, End::LeaseLost(_))) {
                if let Err(e) = lease.release().await {
                    tracing::debug!(error = %e, "stream lease not released; it expires by itself");
                }
            }
            let (failure, error) = match end {
                End::Failed(f, e) => (f, e),
                End::LeaseLost(e) => {
                    tracing::warn!(error = %e, "lost the stream lease; standing by");
                    (Failure::Dropped, e)
                }
            };
            let pause = self.backoff.after(&self.config.rules, &failure, Utc::now());
            let retry_at = Utc::now() + chrono::Duration::from_std(pause).unwrap_or_default();
            tracing::warn!(error = %error, pause_ms = pause.as_millis() as u64, "activity stream down; reconnecting");
            self.me.do_send(Note::Waiting { retry_at, error });
            tokio::time::sleep(pause).await;
        }
    }

    /// With `REDIS_URL`: the stream lease (`Some(Some)`), or, when another instance holds
    /// it or Redis is down, a wait and `None` (stand by, try again). Without: `Some(None)`.
    async fn take_lease(&mut self) -> Option<Option<Lease>> {
        let Some(url) = self.config.redis_url.clone() else {
            return Some(None);
        };
        match Lease::acquire_key(&url, STREAM_LEASE_KEY, &self.instance).await {
            Ok(Some(lease)) => Some(Some(lease)),
            Ok(None) => {
                self.me.do_send(Note::Standby);
                tokio::time::sleep(LEASE_TTL / 6).await;
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "Redis unavailable: the activity stream waits for its lease");
                self.me.do_send(Note::Standby);
                tokio::time::sleep(LEASE_TTL / 6).await;
                None
            }
        }
    }

    /// One try of an X call under the breaker.
    async fn guarded<T, Fut>(&self, call: Fut) -> Result<T, FetchError>
    where
        Fut: std::future::Future<Output = Result<T, FetchError>>,
    {
        let permit = match self.deps.breaker.send(AskPermit).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(open)) => {
                return Err(FetchError::CircuitOpen {
                    retry_at: open.retry_at,
                })
            }
            Err(e) => return Err(FetchError::Transport(format!("circuit breaker: {e}"))),
        };
        let result = call.await;
        permit.report(match &result {
            Err(e) if e.counts_as_failure() => TryOutcome::Failure,
            _ => TryOutcome::Success,
        });
        result
    }

    /// The leaders with an X handle, each with its X profile (looked up when not cached).
    async fn followed(&mut self, status: &mut SubscriptionStatus) -> HashMap<String, Followed> {
        let reader = self.deps.reader.clone();
        let leaders: Vec<Leader> = match tokio::task::spawn_blocking(move || reader.leaders()).await
        {
            Ok(l) => l,
            Err(e) => {
                status.error = Some(format!("reading leaders: {e}"));
                return (*self.users).clone();
            }
        };
        let mut users = HashMap::new();
        for leader in leaders {
            let Some(handle) = leader.x_handle().map(str::to_string) else {
                continue;
            };
            let (reader, l, h) = (self.deps.reader.clone(), leader.clone(), handle.clone());
            let cached = tokio::task::spawn_blocking(move || cached_author(&reader, &l, &h))
                .await
                .ok()
                .and_then(Result::ok)
                .flatten();
            let author = match cached {
                Some(a) => a,
                None => match self.resolve(&leader, &handle).await {
                    Ok(a) => a,
                    Err(e) => {
                        status.unresolved_leaders += 1;
                        if !matches!(e, FetchError::NotFound(_) | FetchError::Suspended(_)) {
                            status.error = Some(format!("@{handle}: {e}"));
                        }
                        continue;
                    }
                },
            };
            users.insert(
                author.user_id.clone(),
                Followed {
                    leader_id: leader.id,
                    author,
                },
            );
        }
        users
    }

    /// Looks a handle up on X and caches it as polling does (billed as a user read).
    async fn resolve(&self, leader: &Leader, handle: &str) -> Result<AuthorProfile, FetchError> {
        let client = self.deps.client.clone();
        let user = self.guarded(client.resolve_user_once(handle)).await?;
        self.deps.scheduler.do_send(StreamReads {
            resources: vec![Resource::user(user.id.clone())],
        });
        let (meta, cache) = author_cache_writes(leader.id, handle, &user);
        let stored = match self.deps.store.local().send(meta).await {
            Ok(Ok(())) => match self.deps.store.local().send(cache).await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            },
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = stored {
            tracing::warn!(error = %e, "could not cache the X user id");
        }
        Ok(AuthorProfile::from_user(&user))
    }

    /// Makes X hold exactly one `post.create` and one `post.delete` subscription per
    /// followed leader, and none of Amber's for anyone else.
    async fn reconcile(&mut self) {
        let mut status = SubscriptionStatus::default();
        self.users = Arc::new(self.followed(&mut status).await);
        self.reconciled_at = Some(Instant::now());
        let wanted: BTreeSet<(String, String)> = self
            .users
            .keys()
            .flat_map(|uid| {
                activity::EVENT_TYPES
                    .iter()
                    .map(move |t| (t.to_string(), uid.clone()))
            })
            .collect();
        status.wanted = wanted.len() as u64;
        let mut held: Vec<Subscription> = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let client = self.deps.client.clone();
            let page = self
                .guarded(client.activity_subscriptions_once(token.as_deref()))
                .await;
            match page {
                Ok(page) => {
                    status.total_at_x = page.meta.total_subscriptions;
                    held.extend(page.data);
                    token = page.meta.next_token;
                    if token.is_none() {
                        break;
                    }
                }
                Err(e) => {
                    status.error = Some(format!("listing subscriptions: {e}"));
                    status.missing = status.wanted;
                    status.reconciled_at = Some(Utc::now());
                    self.me.do_send(Note::Subscriptions(status));
                    return;
                }
            }
        }
        let mut kept: BTreeMap<(String, String), String> = BTreeMap::new();
        let mut orphans = Vec::new();
        for sub in held.into_iter().filter(Subscription::is_ambers) {
            let key = (sub.event_type.clone(), sub.user_id().to_string());
            if wanted.contains(&key) && !kept.contains_key(&key) {
                kept.insert(key, sub.subscription_id);
            } else {
                orphans.push(sub.subscription_id);
            }
        }
        for id in orphans {
            let client = self.deps.client.clone();
            match self
                .guarded(client.delete_activity_subscription_once(&id))
                .await
            {
                Ok(()) => {
                    status.deleted += 1;
                    status.total_at_x = status.total_at_x.map(|n| n.saturating_sub(1));
                }
                Err(e) => status.error = Some(format!("deleting subscription {id}: {e}")),
            }
        }
        let missing: Vec<(String, String)> = wanted
            .iter()
            .filter(|k| !kept.contains_key(*k))
            .cloned()
            .collect();
        for (event_type, uid) in &missing {
            if status.cap_reached {
                break;
            }
            let client = self.deps.client.clone();
            match self
                .guarded(client.create_activity_subscription_once(event_type, uid))
                .await
            {
                Ok(created) => {
                    status.created += 1;
                    if created.meta.total_subscriptions.is_some() {
                        status.total_at_x = created.meta.total_subscriptions;
                    }
                    if let Some(sub) = created.subscription() {
                        kept.insert((event_type.clone(), uid.clone()), sub.subscription_id);
                    } else {
                        tracing::warn!("X's create answer named no subscription");
                        kept.insert((event_type.clone(), uid.clone()), String::new());
                    }
                }
                Err(FetchError::SubscriptionCap(detail)) => {
                    tracing::error!(detail = %detail, "X's cap on activity subscriptions is reached: some leaders are not streamed (polling still reads them)");
                    status.cap_reached = true;
                }
                Err(e) => status.error = Some(format!("creating a {event_type} subscription: {e}")),
            }
        }
        status.held = kept.len() as u64;
        status.missing = status.wanted.saturating_sub(status.held);
        status.reconciled_at = Some(Utc::now());
        self.me.do_send(Note::Subscriptions(status));
    }

    /// How many minutes a connect replays: what may have been missed since the last read
    /// was stored (all of X's 5 at start-up: the process may have died mid-event).
    fn backfill_minutes(&self) -> u32 {
        match *self.processed_at.lock() {
            None => MAX_BACKFILL_MINUTES,
            Some(at) => {
                let minutes = at.elapsed().as_secs().div_ceil(60);
                u32::try_from(minutes.max(1))
                    .unwrap_or(MAX_BACKFILL_MINUTES)
                    .min(MAX_BACKFILL_MINUTES)
            }
        }
    }

    async fn connect_and_read(&mut self, lease: Option<&Lease>) -> End {
        let client = self.deps.client.clone();
        let backfill = self.backfill_minutes();
        let mut resp = match self.guarded(client.open_activity_stream(backfill)).await {
            Ok(resp) => resp,
            Err(e) => return End::Failed(Failure::of(&e), e.to_string()),
        };
        self.backoff.reset();
        self.me.do_send(Note::Connected);
        tracing::info!(backfill_minutes = backfill, "activity stream connected");
        // Reads are parsed and mapped off this task and stored, in order, by the worker;
        // at most IN_FLIGHT of them wait for it, then reading waits too.
        let (queue, mapped) = mpsc::channel(IN_FLIGHT);
        let mut worker = Worker(actix_rt::spawn(store_in_order(mapped, self.sink())));
        let stopped = match self.read(&mut resp, lease, &queue, &mut worker).await {
            Ok(end) => {
                // What was read is stored before the reconnect (its replay would be
                // deduplicated anyway): the worker ends once the queue is empty.
                drop(queue);
                match worker_outcome((&mut worker.0).await) {
                    Ok(()) => return end,
                    Err(e) => e,
                }
            }
            Err(joined) => worker_outcome(joined)
                .err()
                .unwrap_or_else(|| "the stream's store worker stopped".to_string()),
        };
        End::Failed(Failure::Dropped, stopped)
    }

    /// The handles the store worker needs.
    fn sink(&self) -> Sink {
        Sink {
            store: self.deps.store.clone(),
            scheduler: self.deps.scheduler.clone(),
            me: self.me.clone(),
            processed_at: self.processed_at.clone(),
        }
    }

    /// Reads the connection until it ends (`Ok`) or the store worker stops (`Err`, with
    /// what it returned). Lines gather in `buf` while the worker is busy; whenever the
    /// queue has room, every whole line gathered becomes one mapping task (one store
    /// batch), so the batches grow exactly as far as the store falls behind. With the
    /// queue full and [`COALESCE_BYTES`] gathered, reading waits (backpressure).
    async fn read(
        &mut self,
        resp: &mut reqwest::Response,
        lease: Option<&Lease>,
        queue: &mpsc::Sender<tokio::task::JoinHandle<Mapped>>,
        worker: &mut Worker,
    ) -> Result<End, Joined> {
        let mut buf: Vec<u8> = Vec::new();
        // `buf[..whole]` is whole lines (up to the last line end).
        let mut whole = 0;
        let mut renew = tokio::time::interval(LEASE_TTL / 3);
        renew.tick().await;
        let stall = self.config.stall_timeout;
        let mut last_data = Instant::now();
        let wake = self.wake.clone();
        loop {
            let reconcile_due = self.reconciled_at.map_or(Duration::ZERO, |at| {
                RECONCILE_EVERY.saturating_sub(at.elapsed())
            });
            let room = whole == 0 || buf.len() < COALESCE_BYTES;
            tokio::select! {
                chunk = tokio::time::timeout(stall.saturating_sub(last_data.elapsed()), resp.chunk()), if room => {
                    let ended = match chunk {
                        Err(_) => format!("stalled: nothing for {} s", stall.as_secs()),
                        Ok(Err(e)) => format!("stream cut: {}", e.without_url()),
                        Ok(Ok(None)) => "X closed the stream".into(),
                        Ok(Ok(Some(chunk))) => {
                            last_data = Instant::now();
                            if let Some(end) = chunk.iter().rposition(|b| *b == b'\n') {
                                whole = buf.len() + end + 1;
                            }
                            buf.extend_from_slice(&chunk);
                            if buf.len() - whole > MAX_LINE_BYTES {
                                return Ok(End::Failed(Failure::Dropped, "a line longer than 8 MiB".into()));
                            }
                            continue;
                        }
                    };
                    // What was read whole is stored before the reconnect.
                    if whole > 0 && queue.send(self.map_lines(&mut buf, whole)).await.is_err() {
                        return Err((&mut worker.0).await);
                    }
                    return Ok(End::Failed(Failure::Dropped, ended));
                }
                permit = queue.reserve(), if whole > 0 => {
                    let Ok(permit) = permit else {
                        return Err((&mut worker.0).await);
                    };
                    permit.send(self.map_lines(&mut buf, whole));
                    whole = 0;
                    last_data = Instant::now();
                }
                joined = &mut worker.0 => return Err(joined),
                _ = renew.tick(), if lease.is_some() => {
                    if let Some(lease) = lease {
                        if let Err(e) = lease.renew().await {
                            return Ok(End::LeaseLost(e));
                        }
                    }
                }
                _ = wake.notified() => {
                    self.reconcile().await;
                    last_data = Instant::now();
                }
                _ = tokio::time::sleep(reconcile_due) => {
                    self.reconcile().await;
                    last_data = Instant::now();
                }
            }
        }
    }

    /// Takes the first `upto` bytes of `buf` (whole lines) into a mapping task on the
    /// blocking pool.
    fn map_lines(&self, buf: &mut Vec<u8>, upto: usize) -> tokio::task::JoinHandle<Mapped> {
        let rest = buf.split_off(upto);
        let lines = std::mem::replace(buf, rest);
        let whole = buf.is_empty();
        let (users, reader) = (self.users.clone(), self.deps.reader.clone());
        tokio::task::spawn_blocking(move || {
            let (steps, tally) = parse_and_map(&lines, &users, &reader);
            Mapped {
                steps,
                tally,
                whole,
            }
        })
    }
}

/// Mapped reads queued for the store worker beside the one it is storing: while it
/// stores one, the next is parsed and mapped and a third gathers in the reader, so at
/// most about three times [`COALESCE_BYTES`] of a burst is held at once.
const IN_FLIGHT: usize = 1;

/// What the store worker returned, as its task ended.
type Joined = Result<Result<(), String>, tokio::task::JoinError>;

fn worker_outcome(joined: Joined) -> Result<(), String> {
    joined.unwrap_or_else(|e| Err(format!("the stream's store worker failed: {e}")))
}

/// The store worker's task; aborted when the connection's reader goes (shutdown).
struct Worker(tokio::task::JoinHandle<Result<(), String>>);

impl Drop for Worker {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One thing to store, in stream order.
#[derive(Debug)]
enum Step {
    /// A run of `post.create`: the mapped new posts, the counts of posts already stored,
    /// and what X returned (billed).
    Created {
        posts: Vec<NewPost>,
        counts: Vec<(String, Counts)>,
        resources: Vec<Resource>,
    },
    /// A `post.delete` of this X id.
    Deleted(String),
}

/// One read of whole lines, parsed and mapped.
#[derive(Debug)]
struct Mapped {
    steps: Vec<Step>,
    /// What the lines were (`stored` and `removed` are the worker's to count).
    tally: Tally,
    /// Nothing received is left over after it: once it is stored, a reconnect need not
    /// replay anything before now.
    whole: bool,
}

/// Parses one read's lines and maps its `post.create` posts (the polling mapping,
/// sentiment included); runs on the blocking pool, several reads at once.
fn parse_and_map(
    lines: &[u8],
    users: &HashMap<String, Followed>,
    reader: &StoreReader,
) -> (Vec<Step>, Tally) {
    let mut tally = Tally::default();
    let mut steps = Vec::new();
    for line in lines.split(|b| *b == b'\n') {
        match parse_line(line) {
            StreamItem::KeepAlive => {}
            StreamItem::Created {
                user_id,
                tweet,
                includes,
            } => {
                tally.created += 1;
                let Some(followed) = users.get(&user_id) else {
                    tracing::debug!(user_id = %user_id, "post.create for a user no leader has");
                    continue;
                };
                let page = page_of(*tweet, includes);
                let (p, c, _) = map_pages(
                    std::slice::from_ref(&page),
                    reader,
                    followed.leader_id,
                    &followed.author,
                );
                // A run longer than the live hub's limit a change would reach SSE
                // clients as one `reset`: such a run is stored in several batches.
                let room = |p: &Vec<NewPost>| p.len() < crate::live::MAX_EVENTS_PER_CHANGE;
                if !matches!(steps.last(), Some(Step::Created { posts, .. }) if room(posts)) {
                    steps.push(Step::Created {
                        posts: Vec::new(),
                        counts: Vec::new(),
                        resources: Vec::new(),
                    });
                }
                if let Some(Step::Created {
                    posts,
                    counts,
                    resources,
                }) = steps.last_mut()
                {
                    posts.extend(p);
                    counts.extend(c);
                    resources.extend(page.data.iter().map(|t| Resource::post(t.id.clone())));
                }
            }
            StreamItem::Deleted { post_id, .. } => {
                tally.deleted += 1;
                steps.push(Step::Deleted(post_id));
            }
            StreamItem::Other(kind) => {
                tally.other += 1;
                tracing::debug!(event_type = %kind, "activity event Amber does not use");
            }
            StreamItem::Errors(text) => {
                tracing::warn!(errors = %text, "X wrote an error on the activity stream");
            }
            StreamItem::Malformed(why) => {
                tally.malformed += 1;
                tracing::warn!(error = %why, "unreadable activity stream line skipped");
            }
        }
    }
    (steps, tally)
}

/// What the store worker writes with and reports to.
struct Sink {
    store: crate::replication::Writes,
    scheduler: Addr<IngestScheduler>,
    me: Addr<ActivityStream>,
    processed_at: Arc<Mutex<Option<Instant>>>,
}

/// The store worker: takes the mapped reads in the order they were read and stores each
/// (one `StoreTimeline` per run of `post.create`, each `post.delete` a `DeleteAtSource`),
/// one at a time, so the `PostStore` sees the stream's order while the next reads are
/// parsed and mapped. The first error stops it (the connection is dropped and the
/// reconnect replays what was not stored).
async fn store_in_order(
    mut queue: mpsc::Receiver<tokio::task::JoinHandle<Mapped>>,
    sink: Sink,
) -> Result<(), String> {
    while let Some(mapping) = queue.recv().await {
        let Mapped {
            steps,
            mut tally,
            whole,
        } = mapping.await.map_err(|e| format!("mapping posts: {e}"))?;
        let stored = sink.store(steps, &mut tally).await;
        if tally == Tally::default() {
            sink.me.do_send(Note::Data);
        } else {
            sink.me.do_send(Note::Events(tally));
        }
        stored?;
        if whole {
            *sink.processed_at.lock() = Some(Instant::now());
        }
    }
    Ok(())
}

impl Sink {
    /// Stores one read's steps in order, billing what X returned.
    async fn store(&self, steps: Vec<Step>, tally: &mut Tally) -> Result<(), String> {
        for step in steps {
            match step {
                Step::Created {
                    posts,
                    counts,
                    resources,
                } => {
                    self.scheduler.do_send(StreamReads { resources });
                    if posts.is_empty() && counts.is_empty() {
                        continue;
                    }
                    let sent = self
                        .store
                        .send(StoreTimeline {
                            posts,
                            counts,
                            mode: IngestMode::New,
                        })
                        .await;
                    match sent {
                        Ok(Ok(report)) => tally.stored += report.inserted.len() as u64,
                        Ok(Err(e)) => return Err(format!("storing posts: {e}")),
                        Err(e) => return Err(format!("post store: {e}")),
                    }
                }
                Step::Deleted(post_id) => {
                    let sent = self
                        .store
                        .send(DeleteAtSource {
                            platform: Platform::X,
                            external_id: post_id.clone(),
                        })
                        .await;
                    match sent {
                        Ok(Ok(done)) => {
                            if done.removed.is_some() {
                                tally.removed += 1;
                                tracing::info!(event = "post_deleted_at_source", post = %post_id, "a post deleted on X was removed");
                            }
                        }
                        Ok(Err(e)) => return Err(format!("storing a deletion: {e}")),
                        Err(e) => return Err(format!("post store: {e}")),
                    }
                }
            }
        }
        Ok(())
    }
}

/// A `post.create` event as the one-post page the polling mapping reads.
fn page_of(tweet: Tweet, includes: Option<Includes>) -> TimelineResponse {
    TimelineResponse {
        data: vec![tweet],
        includes,
        meta: Meta::default(),
        errors: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;
    use crate::actors::clock::Clock;
    use crate::actors::fetcher::testkit::{fast_policy, rig};
    use crate::actors::scheduler::{Schedule, SchedulerConfig, SchedulerDeps};
    use crate::config::Secret;
    use crate::status::IngestSnapshot;
    use crate::storage::query::PostQuery;
    use crate::storage::Store;
    use crate::x_api::fake::username;

    fn created(user: &str, id: u64) -> String {
        json!({"data": {"event_type": "post.create", "filter": {"user_id": user},
            "payload": {"id": id.to_string(), "text": "a good day", "author_id": user,
                "created_at": "2026-12-02T12:00:00.000Z", "edit_history_tweet_ids": [id.to_string()]}}})
        .to_string()
    }

    fn deleted(user: &str, id: u64) -> String {
        json!({"data": {"event_type": "post.delete", "filter": {"user_id": user},
            "payload": {"id": id.to_string(), "author_id": user}}})
        .to_string()
    }

    #[test]
    fn a_read_maps_to_store_steps_in_stream_order_and_long_runs_are_split() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 4).unwrap();
        let users: HashMap<String, Followed> = [(
            "42".to_string(),
            Followed {
                leader_id: 7,
                author: AuthorProfile {
                    user_id: "42".into(),
                    handle: "someone".into(),
                    name: None,
                    avatar_url: None,
                },
            },
        )]
        .into();
        let max = crate::live::MAX_EVENTS_PER_CHANGE as u64;
        let mut lines: Vec<String> = vec![created("42", 1), "\r".into(), created("42", 2)];
        lines.push(deleted("42", 1));
        lines.push(created("99", 3)); // no leader has user 99: counted, not stored
        lines.push("{not json".into());
        lines.extend((10..10 + max + 5).map(|id| created("42", id)));
        let text = lines.join("\n") + "\n";
        let (steps, tally) = parse_and_map(text.as_bytes(), &users, &store.reader());
        let shape: Vec<String> = steps
            .iter()
            .map(|s| match s {
                Step::Created {
                    posts,
                    counts,
                    resources,
                } => {
                    assert!(counts.is_empty());
                    assert_eq!(resources.len(), posts.len());
                    assert!(posts.iter().all(|p| p.leader_id == 7));
                    format!("created {}", posts.len())
                }
                Step::Deleted(id) => format!("deleted {id}"),
            })
            .collect();
        assert_eq!(
            shape,
            [
                "created 2",
                "deleted 1",
                &format!("created {max}"),
                "created 5"
            ]
        );
        assert_eq!(
            tally,
            Tally {
                created: 3 + max + 5,
                deleted: 1,
                malformed: 1,
                ..Tally::default()
            }
        );
    }

    /// Polls `status` until `done` holds, within a deadline that scales with the load.
    async fn until(
        status: &mut watch::Receiver<StreamSnapshot>,
        what: &str,
        done: impl Fn(&StreamSnapshot) -> bool,
    ) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !done(&status.borrow_and_update()) {
            assert!(Instant::now() < deadline, "{what}: {:?}", *status.borrow());
            let _ = tokio::time::timeout(Duration::from_millis(200), status.changed()).await;
        }
    }

    #[actix::test]
    async fn a_burst_is_stored_whole_in_few_large_commits_and_a_deletion_after_it() {
        let rig = rig(1, 2, 5).await;
        let (snapshot, _) = watch::channel(IngestSnapshot::default());
        let scheduler = IngestScheduler::new(
            SchedulerConfig {
                enabled: false,
                schedule: Schedule::Interval(Duration::from_secs(3600)),
                ingest_limit: 10,
                backfill_count: 10,
                interval_minutes: 60,
                cron: None,
                refresh_cooldown: Duration::from_secs(60),
                monthly_read_budget: None,
                concurrency: 1,
                redis_url: None,
                clock: Clock::system(),
            },
            SchedulerDeps {
                fetcher: None,
                store: rig.store.clone().recipient(),
                reader: rig.reader.clone(),
                breaker: rig.breaker_rx.clone(),
                snapshot,
            },
        )
        .start();
        let client = XClient::new(
            rig.fake.base_url(),
            Secret::new(rig.fake.token()),
            fast_policy(),
        )
        .unwrap();
        let (stream, mut status) = ActivityStream::launch(
            StreamConfig {
                stall_timeout: Duration::from_secs(60),
                rules: BackoffRules::default(),
                redis_url: None,
            },
            StreamDeps {
                client,
                breaker: rig.breaker.clone(),
                store: rig.store.clone().into(),
                reader: rig.reader.clone(),
                scheduler,
            },
        );
        until(&mut status, "connected with both subscriptions", |s| {
            s.state == StreamState::Connected && s.subscriptions.held == 2
        })
        .await;
        let commits_before = rig.reader.generation();
        const N: u64 = 3_000;
        let burst = rig.fake.emit_burst(&username(0), N as u32);
        assert_eq!(burst.delivered, N);
        until(&mut status, "the burst stored", |s| s.posts_stored == N).await;
        let commits = rig.reader.generation() - commits_before;
        // Lines gather while the store commits: however fast the machine, a commit (a
        // flush) costs far more than reading a line, so batches are large.
        assert!(
            commits * 5 <= N,
            "{commits} commits for {N} events: the burst was not batched"
        );
        let s = status.borrow().clone();
        assert_eq!((s.events_post_create, s.malformed), (N, 0));
        let feed = rig.reader.page(&PostQuery::newest(1)).unwrap();
        assert_eq!(
            feed.total as u64, N,
            "every post of the burst is in the feed"
        );
        assert!(rig.fake.emit_post_delete(&burst.last).is_some());
        until(&mut status, "the deletion applied", |s| s.deletions == 1).await;
        assert!(rig
            .reader
            .post_by_external_id(Platform::X, &burst.last)
            .unwrap()
            .is_none());
        assert!(rig
            .reader
            .post_by_external_id(Platform::X, &burst.first)
            .unwrap()
            .is_some());
        stream.send(StopStream).await.unwrap();
    }

    fn within(d: Duration, lo_ms: u64, hi_ms: u64) -> bool {
        d >= Duration::from_millis(lo_ms) && d <= Duration::from_millis(hi_ms)
    }

    #[test]
    fn backoff_follows_x_guidance_per_kind_of_failure() {
        let rules = BackoffRules::default();
        let now = Utc.with_ymd_and_hms(2026, 12, 2, 12, 0, 0).unwrap();
        let mut b = Backoff::default();
        // A connection that worked and dropped: at once (jitter only).
        assert!(within(b.after(&rules, &Failure::Dropped, now), 0, 250));
        // Network: linear, 250 ms a step, capped at 16 s.
        assert!(within(b.after(&rules, &Failure::Network, now), 250, 300));
        assert!(within(b.after(&rules, &Failure::Network, now), 500, 600));
        for _ in 0..100 {
            b.after(&rules, &Failure::Network, now);
        }
        assert!(within(
            b.after(&rules, &Failure::Network, now),
            16_000,
            19_200
        ));
        // HTTP: 5 s doubling, capped at 320 s.
        assert!(within(b.after(&rules, &Failure::Http, now), 5_000, 6_000));
        assert!(within(b.after(&rules, &Failure::Http, now), 10_000, 12_000));
        for _ in 0..20 {
            b.after(&rules, &Failure::Http, now);
        }
        assert!(within(
            b.after(&rules, &Failure::Http, now),
            320_000,
            384_000
        ));
        // 429: its reset wins; without one, a minute doubling.
        let reset = now + chrono::Duration::seconds(7);
        let rl = Failure::RateLimited {
            reset_at: Some(reset),
        };
        assert!(within(b.after(&rules, &rl, now), 7_000, 8_400));
        let past = Failure::RateLimited {
            reset_at: Some(now - chrono::Duration::seconds(5)),
        };
        assert!(within(b.after(&rules, &past, now), 1_000, 1_200));
        let mut fresh = Backoff::default();
        let none = Failure::RateLimited { reset_at: None };
        assert!(within(fresh.after(&rules, &none, now), 60_000, 72_000));
        assert!(within(fresh.after(&rules, &none, now), 120_000, 144_000));
        // A connection that worked starts the count again.
        fresh.reset();
        assert!(within(fresh.after(&rules, &none, now), 60_000, 72_000));
        // The breaker: until it may be asked again.
        let open = Failure::BreakerOpen {
            retry_at: now + chrono::Duration::seconds(3),
        };
        assert!(within(b.after(&rules, &open, now), 3_000, 3_600));
    }

    #[test]
    fn errors_map_to_their_kind_of_backoff() {
        assert_eq!(Failure::of(&FetchError::Timeout), Failure::Network);
        assert_eq!(
            Failure::of(&FetchError::Transport("reset".into())),
            Failure::Network
        );
        assert_eq!(
            Failure::of(&FetchError::Server { status: 503 }),
            Failure::Http
        );
        assert_eq!(
            Failure::of(&FetchError::Auth { status: 401 }),
            Failure::Http
        );
        assert_eq!(
            Failure::of(&FetchError::RateLimited { reset_at: None }),
            Failure::RateLimited { reset_at: None }
        );
    }
}
