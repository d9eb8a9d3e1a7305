//! `IngestScheduler`: decides when ingestion runs and keeps its books.
//!
//! - Schedule: every `X_INGEST_INTERVAL_MINUTES`, or the 5-field `X_INGEST_CRON` (which
//!   wins). Runs never overlap: a tick that arrives during a run marks the run "missed",
//!   and however many ticks are missed, one run follows (coalescing). After a restart, a
//!   fire time that passed while the process was down also gives one run.
//! - A run fetches every leader with an X handle through `XFetcher`, at most
//!   [`FETCH_CONCURRENCY`] at a time. A leader never seen on X (no stored post) is
//!   backfilled; the others are read incrementally with `since_id`.
//! - A leader whose fetch fails is skipped by scheduled runs for a backoff that doubles
//!   per consecutive failure (from [`LEADER_BACKOFF_BASE`] up to [`LEADER_BACKOFF_MAX`]),
//!   and then retried: never dropped. Manual triggers include every leader.
//! - Errors that concern X as a whole (token refused, a rate limit with a far reset, the
//!   breaker open) stop the run at the next leader boundary and are recorded; a far rate
//!   limit also pauses scheduled runs until its reset.
//! - Posts and users read from X are counted per calendar month (persisted in the store
//!   as `x_usage:YYYY-MM`) with an estimated cost; reaching `X_MONTHLY_READ_BUDGET` stops
//!   the run and pauses ingestion until the month turns.
//! - Stop/start are persisted (`ingestion_stopped`), so an emergency stop survives a restart.
//! - With `REDIS_URL`, a run first takes the lease `amber:ingest:lease` (SET NX PX,
//!   renewed while running), so among several instances exactly one ingests at a time.
//!   If Redis cannot be reached the run is skipped: two instances ingesting at once would
//!   double the X bill, a skipped run is only late.
//! - On shutdown the current run stops at a leader boundary: leaders in flight finish
//!   (each is one atomic store batch), no new one starts.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use futures_util::stream::{self, StreamExt};
use tokio::sync::watch;

use crate::actors::breaker::{BreakerConfig, BreakerSnapshot, CircuitBreaker};
use crate::actors::clock::Clock;
use crate::actors::fetcher::{FetchLeader, FetchMode, LeaderError, RateLimitWait, XFetcher};
use crate::actors::lease::{Lease, LEASE_TTL};
use crate::actors::policy::backoff::LeaderBackoff;
use crate::actors::policy::budget::{first_of_next_month, usage_meta_name, Budget};
use crate::actors::policy::cooldown::Cooldown;
use crate::actors::policy::run_book::{self, After, BackoffChange, RunBook};
use crate::actors::signal::StopSwitch;
use crate::actors::store::SetMeta;
use crate::actors::usage::{day_start_ms, DailyReads, Resource};
use crate::config::{Settings, XSettings};
use crate::domain::crontab::{self, CrontabError};
use crate::domain::leader::Leader;
use crate::domain::post::{Platform, Post};
use crate::status::{BreakerHealth, IngestSnapshot, SchedulerHealth};
use crate::storage::query::PostQuery;
use crate::storage::runs::{decode_run, encode_run};
use crate::storage::StoreReader;
use crate::x_api::client::{ClientError, RetryPolicy, XClient, MIN_PAGE};

pub use crate::actors::fetcher::FetchOutcome;
pub use crate::actors::policy::backoff::{leader_backoff, LEADER_BACKOFF_BASE, LEADER_BACKOFF_MAX};
pub use crate::actors::policy::budget::{Usage, COST_PER_POST_READ_USD, COST_PER_USER_READ_USD};
pub use crate::domain::run::{RunError, RunRecord};

/// Leaders fetched at once. X limits a user-timeline app to 1500 requests per 15 minutes
/// (10,000 per month of posts on the basic tier), not requests in flight, so concurrency
/// only hides latency: 8 requests in flight make a 1,000-leader run take about
/// 1000 / 8 round trips, while staying polite to the API and to a 2-core host.
pub const FETCH_CONCURRENCY: usize = 8;
/// Delay of the catch-up run after start-up, so the server is listening first.
pub const STARTUP_DELAY: Duration = Duration::from_secs(2);
/// How long a shutdown waits for in-flight leaders.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(30);
/// Usage counters are persisted at most this often during a run (and at its end).
const USAGE_PERSIST_EVERY: Duration = Duration::from_secs(1);

/// Meta names in the store.
pub const META_STOPPED: &str = "ingestion_stopped";
const META_LAST_RUN: &str = "ingestion_last_run";

/// When runs fire.
#[derive(Debug, Clone)]
pub enum Schedule {
    Interval(Duration),
    Cron {
        expr: String,
        schedule: Box<cron::Schedule>,
    },
}

impl Schedule {
    /// The first fire time strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Interval(every) => {
                Some(after + chrono::Duration::from_std(*every).unwrap_or(chrono::Duration::MAX))
            }
            Schedule::Cron { schedule, .. } => schedule.after(&after).next(),
        }
    }

    /// The job id status shows.
    pub fn job_id(&self) -> &'static str {
        match self {
            Schedule::Interval(_) => "x_ingestion_interval",
            Schedule::Cron { .. } => "x_ingestion_cron",
        }
    }

    /// The job name status shows.
    pub fn job_name(&self) -> &'static str {
        match self {
            Schedule::Interval(_) => "X Post Ingestion (Interval)",
            Schedule::Cron { .. } => "X Post Ingestion (Cron)",
        }
    }

    /// The trigger as status shows it: `interval[0:30:00]` or `cron[*/30 * * * *]`.
    pub fn describe(&self) -> String {
        match self {
            Schedule::Interval(every) => {
                let s = every.as_secs();
                format!("interval[{}:{:02}:{:02}]", s / 3600, s / 60 % 60, s % 60)
            }
            Schedule::Cron { expr, .. } => format!("cron[{expr}]"),
        }
    }
}

/// The scheduler's settings.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// `X_INGEST_ENABLED`: whether the schedule runs at all.
    pub enabled: bool,
    pub schedule: Schedule,
    pub ingest_limit: u32,
    pub backfill_count: u32,
    pub interval_minutes: u32,
    pub cron: Option<String>,
    pub refresh_cooldown: Duration,
    pub monthly_read_budget: Option<u64>,
    pub concurrency: usize,
    pub redis_url: Option<String>,
    /// The wall clock the books are kept by (the system clock, unless a test shifts it).
    pub clock: Clock,
}

impl SchedulerConfig {
    /// From the X settings (and `REDIS_URL`).
    pub fn from_settings(
        x: &XSettings,
        redis_url: Option<String>,
    ) -> Result<SchedulerConfig, CrontabError> {
        let schedule = match &x.cron {
            Some(expr) => Schedule::Cron {
                expr: expr.clone(),
                schedule: Box::new(crontab::parse(expr)?),
            },
            None => Schedule::Interval(Duration::from_secs(u64::from(x.interval_minutes) * 60)),
        };
        Ok(SchedulerConfig {
            enabled: x.ingest_enabled,
            schedule,
            ingest_limit: x.ingest_limit,
            backfill_count: x.backfill_count,
            interval_minutes: x.interval_minutes,
            cron: x.cron.clone(),
            refresh_cooldown: Duration::from_secs(x.refresh_cooldown_seconds),
            monthly_read_budget: x.monthly_read_budget,
            concurrency: FETCH_CONCURRENCY,
            redis_url,
            clock: x.test_clock.map(Clock::starting_at).unwrap_or_default(),
        })
    }
}

/// The job as status shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobInfo {
    pub id: &'static str,
    pub name: &'static str,
    pub next_run: Option<DateTime<Utc>>,
    pub trigger: String,
}

/// Everything `GET /api/ingestion/status` shows.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestStatus {
    /// The schedule runs: `X_INGEST_ENABLED` and not stopped.
    pub enabled: bool,
    /// Stopped by an admin.
    pub stopped: bool,
    /// A bearer token is configured.
    pub configured: bool,
    pub running: bool,
    pub breaker: BreakerSnapshot,
    pub jobs: Vec<JobInfo>,
    pub backfill_count: u32,
    pub ingest_limit: u32,
    pub interval_minutes: u32,
    pub cron: Option<String>,
    pub concurrency: usize,
    pub last_run: Option<RunRecord>,
    pub current_run: Option<RunRecord>,
    pub usage: Usage,
    pub monthly_read_budget: Option<u64>,
    /// Scheduled runs are paused until then (a far rate-limit reset, or the budget).
    pub paused_until: Option<DateTime<Utc>>,
    /// Leaders in backoff: (leader id, consecutive failures, next retry).
    pub backing_off: Vec<(u64, u32, DateTime<Utc>)>,
    /// A fetch is waiting for X's rate-limit reset.
    pub waiting: Option<XWait>,
    /// The last scheduled tick that did not run, and how many did not since start.
    pub last_skipped: Option<SkippedTick>,
    pub skipped_ticks: u64,
}

/// Why a trigger was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TriggerError {
    #[error("an ingestion run is already in progress")]
    AlreadyRunning,
    #[error("X ingestion is not configured: set TWITTER_BEARER_TOKEN")]
    NotConfigured,
    #[error("the server is shutting down")]
    ShuttingDown,
}

/// Why a refresh failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RefreshError {
    #[error("leader {0} not found")]
    UnknownLeader(u64),
    #[error("leader {0} has no X handle")]
    NoHandle(u64),
    #[error("X ingestion is not configured: set TWITTER_BEARER_TOKEN")]
    NotConfigured,
    #[error("the monthly X read budget is used up until {0}")]
    BudgetExhausted(DateTime<Utc>),
    #[error(transparent)]
    Fetch(LeaderError),
}

/// Where refreshed posts came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshOrigin {
    /// Fetched from X now: the posts are the new ones.
    X,
    /// Within the cooldown: no X call; the posts are the leader's newest stored ones.
    Cache,
}

impl RefreshOrigin {
    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RefreshOrigin::X => "x",
            RefreshOrigin::Cache => "cache",
        }
    }
}

/// The answer to a refresh.
#[derive(Debug, Clone, PartialEq)]
pub struct Refreshed {
    pub posts: Vec<Post>,
    pub origin: RefreshOrigin,
}

/// What the scheduler needs from the rest of the system. The fetcher and the store arrive
/// as recipients of the one message each is sent, so a test can stand in for either.
pub struct SchedulerDeps {
    /// None when no bearer token is configured: nothing is fetched.
    pub fetcher: Option<Recipient<FetchLeader>>,
    /// Where persisted state (stop switch, usage, last run) is written.
    pub store: Recipient<SetMeta>,
    pub reader: StoreReader,
    pub breaker: watch::Receiver<BreakerSnapshot>,
    /// Where health's view of ingestion is published.
    pub snapshot: watch::Sender<IngestSnapshot>,
}

struct CurrentRun {
    book: RunBook,
    started: Instant,
    cancel: StopSwitch,
}

/// A scheduled tick that did not run (status `last_skipped`).
#[derive(Debug, Clone, PartialEq)]
pub struct SkippedTick {
    pub at: DateTime<Utc>,
    pub reason: String,
}

/// A wait for X's rate-limit reset (status `waiting`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct XWait {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

/// The scheduler actor: the timer, the current run and the messages; every decision is
/// one of the policies' (`actors::policy`).
pub struct IngestScheduler {
    config: SchedulerConfig,
    deps: SchedulerDeps,
    clock: Clock,
    stopped: bool,
    shutting_down: bool,
    current: Option<CurrentRun>,
    /// A tick arrived while a run was going: run once more when it ends.
    missed: bool,
    next_run: Option<DateTime<Utc>>,
    timer: Option<SpawnHandle>,
    last_run: Option<RunRecord>,
    total_ingests: u64,
    last_ingest_ms: Option<u64>,
    backoff: LeaderBackoff,
    cooldown: Cooldown,
    /// The month's usage, today's billed resources, the budget and its reservations.
    budget: Budget,
    usage_persisted: Instant,
    /// A far rate-limit reset: scheduled runs wait for it.
    rate_limited_until: Option<DateTime<Utc>>,
    running_tx: watch::Sender<bool>,
    instance: String,
    /// Fetches waiting for X's rate-limit reset, by wait id.
    waits: HashMap<u64, XWait>,
    /// Stops refreshes (an emergency stop ends their waits too); replaced after firing.
    refresh_stop: StopSwitch,
    last_skipped: Option<SkippedTick>,
    skipped_ticks: u64,
}

impl IngestScheduler {
    /// A scheduler; state persisted in the store (stop switch, usage, last run) is loaded
    /// when it starts.
    pub fn new(config: SchedulerConfig, deps: SchedulerDeps) -> IngestScheduler {
        let clock = config.clock.clone();
        let now = clock.now();
        IngestScheduler {
            budget: Budget::new(config.monthly_read_budget, now),
            cooldown: Cooldown::new(config.refresh_cooldown),
            config,
            deps,
            clock,
            stopped: false,
            shutting_down: false,
            current: None,
            missed: false,
            next_run: None,
            timer: None,
            last_run: None,
            total_ingests: 0,
            last_ingest_ms: None,
            backoff: LeaderBackoff::new(),
            usage_persisted: Instant::now(),
            rate_limited_until: None,
            running_tx: watch::channel(false).0,
            instance: uuid::Uuid::new_v4().to_string(),
            waits: HashMap::new(),
            refresh_stop: StopSwitch::new(),
            last_skipped: None,
            skipped_ticks: 0,
        }
    }

    fn load_persisted(&mut self) {
        let reader = &self.deps.reader;
        let now = self.clock.now();
        self.stopped = matches!(reader.meta(META_STOPPED), Ok(Some(v)) if v == b"1");
        self.last_run = reader
            .meta(META_LAST_RUN)
            .ok()
            .flatten()
            .and_then(|b| decode_run(&b).ok());
        let month = crate::actors::policy::budget::month_of(now);
        let usage = reader.meta(&usage_meta_name(&month)).ok().flatten();
        let daily = reader.meta(DailyReads::META).ok().flatten();
        self.budget = Budget::restore(
            self.config.monthly_read_budget,
            usage.as_deref(),
            daily.as_deref(),
            now,
        );
    }

    /// Rolls the usage over when the month turned (the finished month is persisted).
    fn roll_month(&mut self) {
        if let Some(old) = self.budget.roll(self.clock.now()) {
            let bytes = serde_json::to_vec(&old).ok();
            actix_rt::spawn(self.persist_meta(usage_meta_name(&old.month), bytes));
        }
    }

    /// Books what a fetch read (X bills each resource once per UTC day: `resources`
    /// already returned today cost nothing) and releases the posts it had reserved.
    fn record_reads(&mut self, resources: &[Resource], reserved: u64) {
        self.roll_month();
        self.budget.book(resources, reserved, self.clock.now());
        if self.usage_persisted.elapsed() >= USAGE_PERSIST_EVERY {
            actix_rt::spawn(self.persist_usage());
        }
    }

    /// A write of a small persisted value; resolves once it is on disk (or failed, logged).
    fn persist_meta(
        &self,
        name: String,
        value: Option<Vec<u8>>,
    ) -> impl std::future::Future<Output = Result<(), String>> + 'static {
        let store = self.deps.store.clone();
        async move {
            let result = match store
                .send(SetMeta {
                    name: name.clone(),
                    value,
                })
                .await
            {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(format!("post store unavailable: {e}")),
            };
            if let Err(e) = &result {
                tracing::error!(error = %e, meta = %name, "could not persist ingestion state");
            }
            result
        }
    }

    /// Persists the month's usage, then today's read resources. In that order: a crash
    /// between the two can bill a resource again after a restart, never forget one.
    fn persist_usage(&mut self) -> impl std::future::Future<Output = Result<(), String>> + 'static {
        self.usage_persisted = Instant::now();
        let usage = self.persist_meta(
            usage_meta_name(&self.budget.usage().month),
            Some(self.budget.usage_bytes()),
        );
        let daily = self.persist_meta(
            DailyReads::META.to_string(),
            Some(self.budget.daily().to_bytes()),
        );
        async move {
            usage.await?;
            daily.await
        }
    }

    fn health(&self) -> SchedulerHealth {
        if !self.config.enabled {
            SchedulerHealth::Disabled
        } else if self.stopped {
            SchedulerHealth::Stopped
        } else {
            SchedulerHealth::Ok
        }
    }

    fn publish(&self) {
        let breaker = self.deps.breaker.borrow().state;
        self.deps.snapshot.send_replace(IngestSnapshot {
            enabled: self.config.enabled && !self.stopped,
            scheduler: self.health(),
            breaker,
            total_ingests: self.total_ingests,
            last_ingest_ms: self.last_ingest_ms,
            last_run: self.last_run.as_ref().map(|r| crate::status::LastRun {
                finished_at: r.finished_at,
                posts_ingested: r.posts_ingested,
                errors: r.errors.len() as u64,
                error: r
                    .errors
                    .first()
                    .map(|e| match &e.handle {
                        Some(h) => format!("@{h}: {}", e.message),
                        None => e.message.clone(),
                    })
                    .or_else(|| r.stopped_reason.clone()),
            }),
        });
        self.running_tx.send_replace(self.current.is_some());
    }

    fn paused_until(&self) -> Option<DateTime<Utc>> {
        let now = self.clock.now();
        self.budget
            .paused_until(now)
            .or_else(|| self.rate_limited_until.filter(|t| *t > now))
    }

    fn status(&self) -> IngestStatus {
        let breaker = *self.deps.breaker.borrow();
        let jobs = if self.config.enabled {
            vec![JobInfo {
                id: self.config.schedule.job_id(),
                name: self.config.schedule.job_name(),
                next_run: if self.stopped { None } else { self.next_run },
                trigger: self.config.schedule.describe(),
            }]
        } else {
            Vec::new()
        };
        IngestStatus {
            enabled: self.config.enabled && !self.stopped,
            stopped: self.stopped,
            configured: self.deps.fetcher.is_some(),
            running: self.current.is_some(),
            breaker,
            jobs,
            backfill_count: self.config.backfill_count,
            ingest_limit: self.config.ingest_limit,
            interval_minutes: self.config.interval_minutes,
            cron: self.config.cron.clone(),
            concurrency: self.config.concurrency,
            last_run: self.last_run.clone(),
            current_run: self.current.as_ref().map(|c| c.book.record().clone()),
            usage: self.budget.usage().clone(),
            monthly_read_budget: self.config.monthly_read_budget,
            paused_until: self.paused_until(),
            backing_off: self.backoff.list(),
            waiting: self.waiting(),
            last_skipped: self.last_skipped.clone(),
            skipped_ticks: self.skipped_ticks,
        }
    }

    /// The wait status shows: from the first wait still going until the last reset.
    fn waiting(&self) -> Option<XWait> {
        let since = self.waits.values().map(|w| w.since).min()?;
        let until = self.waits.values().map(|w| w.until).max()?;
        Some(XWait { since, until })
    }

    /// Books a scheduled tick that does not run: `last_run` stays the last real run.
    fn skip_tick(&mut self, reason: String) {
        tracing::info!(%reason, "scheduled ingestion tick skipped");
        self.skipped_ticks += 1;
        self.last_skipped = Some(SkippedTick {
            at: self.clock.now(),
            reason,
        });
    }

    /// Arms the timer for the next fire time after `after` (schedule times are the
    /// system clock's: the test clock moves the books, not the timer).
    fn schedule_from(&mut self, after: DateTime<Utc>, ctx: &mut Context<Self>) {
        if let Some(handle) = self.timer.take() {
            ctx.cancel_future(handle);
        }
        if !self.config.enabled {
            self.next_run = None;
            return;
        }
        let now = Utc::now();
        let mut next = self.config.schedule.next_after(after);
        // Fire times already past are coalesced into the next one to come.
        while let Some(t) = next {
            if t > now {
                break;
            }
            next = self.config.schedule.next_after(t);
        }
        self.next_run = next;
        if let Some(t) = next {
            let wait = (t - now).to_std().unwrap_or_default();
            self.timer = Some(ctx.run_later(wait, move |act, ctx| act.on_tick(t, ctx)));
        }
    }

    fn on_tick(&mut self, fired: DateTime<Utc>, ctx: &mut Context<Self>) {
        self.timer = None;
        self.schedule_from(fired, ctx);
        if self.stopped || self.shutting_down {
            return;
        }
        if self.current.is_some() {
            self.missed = true;
            return;
        }
        self.begin_scheduled("schedule", ctx);
    }

    /// Starts a scheduled (not manual) run unless something pauses the schedule, the
    /// breaker is open, or no leader is due; such a tick is booked as skipped.
    fn begin_scheduled(&mut self, trigger: &str, ctx: &mut Context<Self>) {
        if self.deps.fetcher.is_none() {
            return;
        }
        self.roll_month();
        if let Some(until) = self.paused_until() {
            let reason = if self.budget.exhausted() {
                format!(
                    "monthly read budget reached; paused until {}",
                    until.to_rfc3339()
                )
            } else {
                format!("rate limited by X; paused until {}", until.to_rfc3339())
            };
            self.skip_tick(reason);
            return;
        }
        let breaker = *self.deps.breaker.borrow();
        if breaker.state == BreakerHealth::Open {
            self.skip_tick(run_book::breaker_open_reason(&breaker));
            return;
        }
        if self.plan(false, true).is_empty() {
            self.skip_tick("no leader due (none with an X handle, or all backing off)".into());
            return;
        }
        self.begin_run(trigger, false, ctx);
    }

    /// How one leader is fetched: a leader never seen on X is backfilled.
    fn mode_for(&self, leader_id: u64, backfill: bool) -> FetchMode {
        let first_sight = self.deps.reader.newest_x_id(leader_id).is_none();
        if backfill || first_sight {
            FetchMode::Backfill {
                count: self.config.backfill_count,
            }
        } else {
            FetchMode::Incremental {
                limit: self.config.ingest_limit,
                catch_up: self.config.backfill_count,
            }
        }
    }

    /// Leaders to fetch in this run and how.
    fn plan(&self, backfill: bool, scheduled: bool) -> Vec<(Leader, FetchMode)> {
        let now = self.clock.now();
        self.deps.reader.with_leaders(|leaders| {
            leaders
                .values()
                .filter(|l| l.x_handle().is_some())
                .filter(|l| !scheduled || self.backoff.is_due(l.id, now))
                .map(|l| (l.clone(), self.mode_for(l.id, backfill)))
                .collect()
        })
    }

    fn begin_run(&mut self, trigger: &str, backfill: bool, ctx: &mut Context<Self>) {
        let Some(fetcher) = self.deps.fetcher.clone() else {
            return;
        };
        let scheduled = trigger == "schedule" || trigger == "startup";
        let plan = self.plan(backfill, scheduled);
        let cancel = StopSwitch::new();
        let now = self.clock.now();
        self.current = Some(CurrentRun {
            book: RunBook::new(trigger, backfill, now),
            started: Instant::now(),
            cancel: cancel.clone(),
        });
        tracing::info!(
            trigger,
            backfill,
            leaders = plan.len(),
            "ingestion run started"
        );
        self.publish();
        let me = ctx.address();
        let waits = me.clone().recipient::<RateLimitWait>();
        let concurrency = self.config.concurrency.max(1);
        // Today's posts are read again (their counts move; X bills them once a day).
        let reread_from_ms = day_start_ms(now);
        let lease = self
            .config
            .redis_url
            .clone()
            .map(|url| (url, self.instance.clone()));
        let run = async move {
            let lease = match lease {
                None => None,
                Some((url, token)) => match Lease::acquire(&url, &token).await {
                    Ok(Some(lease)) => Some(lease),
                    Ok(None) => {
                        return Some("another instance holds the ingestion lease".to_string())
                    }
                    Err(e) => return Some(format!("Redis unavailable, run skipped: {e}")),
                },
            };
            let renewal = lease.clone().map(|lease| {
                let cancel = cancel.clone();
                let me = me.clone();
                actix_rt::spawn(async move {
                    loop {
                        tokio::time::sleep(LEASE_TTL / 3).await;
                        if let Err(e) = lease.renew().await {
                            me.do_send(StopRun(format!("lost the Redis ingestion lease: {e}")));
                            cancel.fire();
                            break;
                        }
                    }
                })
            });
            let job = |(leader, mode): (Leader, FetchMode)| {
                let cancel = cancel.clone();
                let fetcher = fetcher.clone();
                let me = me.clone();
                let waits = waits.clone();
                async move {
                    // The leader boundary: nothing new starts once the run is stopped.
                    if cancel.is_fired() {
                        return;
                    }
                    let reserved = match me.send(Reserve(wanted(mode))).await {
                        Ok(r) => r,
                        Err(_) => return,
                    };
                    if reserved == Some(0) {
                        cancel.fire();
                        me.do_send(StopRun("monthly read budget reached".to_string()));
                        return;
                    }
                    let msg = FetchLeader {
                        leader,
                        mode,
                        read_allowance: reserved,
                        stop: cancel.signal(),
                        waits: Some(waits),
                        reread_from_ms: Some(reread_from_ms),
                    };
                    match fetcher.send(msg).await {
                        Ok(outcome) => {
                            let done = LeaderDone {
                                outcome,
                                reserved: reserved.unwrap_or(0),
                            };
                            let stop = me.send(done).await.unwrap_or(true);
                            if stop {
                                cancel.fire();
                            }
                        }
                        Err(e) => {
                            cancel.fire();
                            me.do_send(StopRun(format!("fetcher unavailable: {e}")));
                        }
                    }
                }
            };
            // After the breaker was open, the first try is its half-open trial and the
            // other leaders wait for the breaker's permit: once the trial closes it they
            // follow, once it fails they are refused.
            stream::iter(plan)
                .map(job)
                .buffer_unordered(concurrency)
                .collect::<()>()
                .await;
            if let Some(handle) = renewal {
                handle.abort();
            }
            if let Some(lease) = lease {
                if let Err(e) = lease.release().await {
                    tracing::warn!(error = %e, "could not release the Redis ingestion lease; it expires by itself");
                }
            }
            None
        };
        ctx.spawn(
            run.into_actor(self)
                .map(|skipped, act, ctx| act.finish_run(skipped, ctx)),
        );
    }

    fn stop_current(&mut self, reason: String) {
        if let Some(run) = &mut self.current {
            run.cancel.fire();
            if run.book.record().stopped_reason.is_none() {
                tracing::warn!(%reason, "ingestion run stopping");
            }
            run.book.stop(reason);
        }
    }

    fn finish_run(&mut self, skipped: Option<String>, ctx: &mut Context<Self>) {
        let Some(run) = self.current.as_ref() else {
            return;
        };
        if let Some(reason) = skipped {
            // Nothing was fetched (the lease is held elsewhere, Redis is down): the
            // last real run's record stays.
            self.current = None;
            self.skip_tick(reason);
            self.publish();
            self.after_run(ctx);
            return;
        }
        let elapsed = run.started.elapsed().as_millis() as u64;
        let record = run.book.clone().finish(self.clock.now(), elapsed);
        self.total_ingests += 1;
        self.last_ingest_ms = Some(elapsed);
        tracing::info!(
            leaders = record.leaders,
            posts_ingested = record.posts_ingested,
            errors = record.errors.len(),
            duration_ms = elapsed,
            stopped_reason = record.stopped_reason.as_deref().unwrap_or(""),
            "ingestion run finished"
        );
        let record_bytes = encode_run(&record).ok();
        // The run counts as finished once its record and the usage are on disk, so a
        // status that shows it finished survives a crash.
        let last_run = self.persist_meta(META_LAST_RUN.to_string(), record_bytes);
        let usage = self.persist_usage();
        let persisted = async move {
            let _ = futures_util::future::join(last_run, usage).await;
        };
        ctx.spawn(persisted.into_actor(self).map(move |_, act, ctx| {
            act.current = None;
            act.last_run = Some(record);
            act.publish();
            act.after_run(ctx);
        }));
    }

    /// A tick missed during the run gives one run now.
    fn after_run(&mut self, ctx: &mut Context<Self>) {
        if self.missed && !self.stopped && !self.shutting_down {
            self.missed = false;
            self.begin_scheduled("schedule", ctx);
        }
    }

    /// Books one leader's outcome; returns whether the run must stop.
    fn on_leader_done(&mut self, outcome: FetchOutcome, reserved: u64) -> bool {
        self.record_reads(&outcome.resources, reserved);
        let now = self.clock.now();
        let handle = self
            .deps
            .reader
            .leader(outcome.leader_id)
            .and_then(|l| l.x_handle().map(str::to_string));
        let after = After {
            budget_exhausted: self.budget.exhausted(),
            breaker: *self.deps.breaker.borrow(),
        };
        let Some(run) = &mut self.current else {
            return true;
        };
        let verdict = run.book.leader_done(&outcome, handle, after, now);
        match verdict.backoff {
            BackoffChange::Clear => self.backoff.succeeded(outcome.leader_id),
            BackoffChange::Fail => {
                self.backoff.failed(outcome.leader_id, now);
            }
            BackoffChange::Keep => {}
        }
        if let Some(until) = verdict.rate_limited_until {
            self.rate_limited_until = Some(until);
        }
        match verdict.stop {
            Some(reason) => {
                self.stop_current(reason);
                true
            }
            None => self.current.as_ref().is_some_and(|r| r.cancel.is_fired()),
        }
    }

    /// The leader's newest stored X posts (the answer of a refresh within its cooldown),
    /// read on the blocking pool: sled reads stay off the actor's thread.
    fn newest_posts(
        &self,
        leader_id: u64,
    ) -> impl std::future::Future<Output = Vec<Post>> + 'static {
        let reader = self.deps.reader.clone();
        let limit = self.config.ingest_limit as usize;
        async move {
            tokio::task::spawn_blocking(move || {
                let query = PostQuery::newest(limit)
                    .leaders([leader_id])
                    .platform(Some(Platform::X));
                reader.page(&query).map(|p| p.posts).unwrap_or_default()
            })
            .await
            .unwrap_or_default()
        }
    }
}

impl Actor for IngestScheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.load_persisted();
        // Republish health whenever the breaker changes.
        let mut breaker = self.deps.breaker.clone();
        let me = ctx.address();
        actix_rt::spawn(async move {
            while breaker.changed().await.is_ok() {
                if me.try_send(Republish).is_err() && !me.connected() {
                    break;
                }
            }
        });
        // A fire time missed while the process was down gives one run soon after start
        // (the run records' times are the clock's).
        let now = self.clock.now();
        let last = self
            .last_run
            .as_ref()
            .and_then(|r| r.finished_at.or(r.started_at));
        let missed = match last {
            None => true,
            Some(t) => self.config.schedule.next_after(t).is_some_and(|n| n <= now),
        };
        self.schedule_from(now, ctx);
        if self.config.enabled && !self.stopped && missed && self.deps.fetcher.is_some() {
            ctx.run_later(STARTUP_DELAY, |act, ctx| {
                if act.current.is_none() && !act.stopped && !act.shutting_down {
                    act.begin_scheduled("startup", ctx);
                }
            });
        }
        self.publish();
    }
}

/// Republish the health snapshot (the breaker changed).
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct Republish;

impl Handler<Republish> for IngestScheduler {
    type Result = ();
    fn handle(&mut self, _: Republish, _: &mut Context<Self>) {
        self.publish();
    }
}

/// One leader of the current run is done. Answers whether the run must stop.
#[derive(Debug, Message)]
#[rtype(result = "bool")]
struct LeaderDone {
    outcome: FetchOutcome,
    /// Posts of the budget reserved for this fetch.
    reserved: u64,
}

/// Resources the Activity API stream delivered (`post.create` posts, users looked up):
/// billed by the same UTC-day rule and month's usage as what a run reads.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StreamReads {
    pub resources: Vec<Resource>,
}

impl Handler<StreamReads> for IngestScheduler {
    type Result = ();
    fn handle(&mut self, msg: StreamReads, _: &mut Context<Self>) {
        self.record_reads(&msg.resources, 0);
    }
}

impl Handler<LeaderDone> for IngestScheduler {
    type Result = bool;
    fn handle(&mut self, msg: LeaderDone, _: &mut Context<Self>) -> bool {
        self.on_leader_done(msg.outcome, msg.reserved)
    }
}

/// Reserve budget for one fetch (see [`Budget::reserve`]).
#[derive(Debug, Message)]
#[rtype(result = "Option<u64>")]
struct Reserve(u64);

impl Handler<Reserve> for IngestScheduler {
    type Result = Option<u64>;
    fn handle(&mut self, msg: Reserve, _: &mut Context<Self>) -> Option<u64> {
        self.budget.reserve(msg.0)
    }
}

/// The most posts a fetch in `mode` may read (X's smallest page is 5).
fn wanted(mode: FetchMode) -> u64 {
    let n = match mode {
        FetchMode::Incremental { limit, catch_up } => limit.max(catch_up),
        FetchMode::Backfill { count } => count,
    };
    u64::from(n.max(MIN_PAGE))
}

/// Stop the current run at the next leader boundary, for `reason`.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct StopRun(String);

impl Handler<StopRun> for IngestScheduler {
    type Result = ();
    fn handle(&mut self, msg: StopRun, _: &mut Context<Self>) {
        self.stop_current(msg.0);
    }
}

impl Handler<RateLimitWait> for IngestScheduler {
    type Result = ();
    fn handle(&mut self, msg: RateLimitWait, _: &mut Context<Self>) {
        match msg.wait {
            Some((since, until)) => {
                self.waits.insert(msg.id, XWait { since, until });
            }
            None => {
                self.waits.remove(&msg.id);
            }
        }
    }
}

/// Start a run now (`POST /api/ingestion/trigger`, `amber ingest`).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), TriggerError>")]
pub struct TriggerRun {
    pub backfill: bool,
    /// `manual` (API) or `cli`.
    pub source: &'static str,
}

impl Handler<TriggerRun> for IngestScheduler {
    type Result = Result<(), TriggerError>;
    fn handle(&mut self, msg: TriggerRun, ctx: &mut Context<Self>) -> Self::Result {
        if self.deps.fetcher.is_none() {
            return Err(TriggerError::NotConfigured);
        }
        if self.shutting_down {
            return Err(TriggerError::ShuttingDown);
        }
        if self.current.is_some() {
            return Err(TriggerError::AlreadyRunning);
        }
        self.roll_month();
        self.begin_run(msg.source, msg.backfill, ctx);
        Ok(())
    }
}

/// Emergency stop of the schedule (persisted before the answer); the current run stops
/// at a leader boundary.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), String>")]
pub struct StopIngestion;

impl Handler<StopIngestion> for IngestScheduler {
    type Result = ResponseFuture<Result<(), String>>;
    fn handle(&mut self, _: StopIngestion, _: &mut Context<Self>) -> Self::Result {
        self.stopped = true;
        self.missed = false;
        self.stop_current("stopped by an admin".to_string());
        std::mem::take(&mut self.refresh_stop).fire();
        tracing::warn!("ingestion stopped by an admin");
        self.publish();
        Box::pin(self.persist_meta(META_STOPPED.to_string(), Some(b"1".to_vec())))
    }
}

/// Resume the schedule (persisted before the answer).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), String>")]
pub struct StartIngestion;

impl Handler<StartIngestion> for IngestScheduler {
    type Result = ResponseFuture<Result<(), String>>;
    fn handle(&mut self, _: StartIngestion, ctx: &mut Context<Self>) -> Self::Result {
        self.stopped = false;
        self.schedule_from(Utc::now(), ctx);
        tracing::info!("ingestion started by an admin");
        self.publish();
        Box::pin(self.persist_meta(META_STOPPED.to_string(), None))
    }
}

/// With replication: a stop or start applied from the stream (already persisted in the
/// entry's batch), or `None` to read the persisted switch again. The schedule follows
/// without writing anything.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct IngestionSwitched(pub Option<bool>);

impl Handler<IngestionSwitched> for IngestScheduler {
    type Result = ();
    fn handle(&mut self, msg: IngestionSwitched, ctx: &mut Context<Self>) {
        let stopped = msg.0.unwrap_or_else(
            || matches!(self.deps.reader.meta(META_STOPPED), Ok(Some(v)) if v == b"1"),
        );
        if stopped == self.stopped {
            return;
        }
        self.stopped = stopped;
        if stopped {
            self.missed = false;
            self.stop_current("stopped by an admin".to_string());
            std::mem::take(&mut self.refresh_stop).fire();
            tracing::warn!("ingestion stopped by an admin (replicated)");
        } else {
            self.schedule_from(Utc::now(), ctx);
            tracing::info!("ingestion started by an admin (replicated)");
        }
        self.publish();
    }
}

/// The status view.
#[derive(Debug, Message)]
#[rtype(result = "IngestStatus")]
pub struct GetStatus;

impl Handler<GetStatus> for IngestScheduler {
    type Result = MessageResult<GetStatus>;
    fn handle(&mut self, _: GetStatus, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.status())
    }
}

/// Fetch one leader now (`POST /api/leaders/{id}/refresh`), at most once per cooldown.
#[derive(Debug, Message)]
#[rtype(result = "Result<Refreshed, RefreshError>")]
pub struct RefreshLeader {
    pub leader_id: u64,
}

impl Handler<RefreshLeader> for IngestScheduler {
    type Result = ResponseActFuture<Self, Result<Refreshed, RefreshError>>;

    fn handle(&mut self, msg: RefreshLeader, ctx: &mut Context<Self>) -> Self::Result {
        let id = msg.leader_id;
        let ready =
            |r: Result<Refreshed, RefreshError>| -> Self::Result { Box::pin(actix::fut::ready(r)) };
        let Some(leader) = self.deps.reader.leader(id) else {
            return ready(Err(RefreshError::UnknownLeader(id)));
        };
        if leader.x_handle().is_none() {
            return ready(Err(RefreshError::NoHandle(id)));
        }
        let Some(fetcher) = self.deps.fetcher.clone() else {
            return ready(Err(RefreshError::NotConfigured));
        };
        if self.cooldown.is_cooling(id, Instant::now()) {
            let posts = self.newest_posts(id);
            return Box::pin(actix::fut::wrap_future(async move {
                Ok(Refreshed {
                    posts: posts.await,
                    origin: RefreshOrigin::Cache,
                })
            }));
        }
        self.roll_month();
        let now = self.clock.now();
        if self.budget.exhausted() {
            return ready(Err(RefreshError::BudgetExhausted(first_of_next_month(now))));
        }
        let mode = self.mode_for(id, false);
        let reserved = self.budget.reserve(wanted(mode));
        if reserved == Some(0) {
            return ready(Err(RefreshError::BudgetExhausted(first_of_next_month(now))));
        }
        self.cooldown.start(id, Instant::now());
        let fetch = FetchLeader {
            leader,
            mode,
            read_allowance: reserved,
            stop: self.refresh_stop.signal(),
            waits: Some(ctx.address().recipient()),
            reread_from_ms: Some(day_start_ms(now)),
        };
        Box::pin(
            fetcher
                .send(fetch)
                .into_actor(self)
                .map(move |res, act, _| {
                    let released = reserved.unwrap_or(0);
                    let outcome = match res {
                        Ok(outcome) => outcome,
                        Err(e) => {
                            act.record_reads(&[], released);
                            return Err(RefreshError::Fetch(LeaderError::Internal(e.to_string())));
                        }
                    };
                    act.record_reads(&outcome.resources, released);
                    match outcome.result {
                        Ok(report) => Ok(Refreshed {
                            posts: report.inserted,
                            origin: RefreshOrigin::X,
                        }),
                        Err(e) => Err(RefreshError::Fetch(e)),
                    }
                }),
        )
    }
}

/// Stop at a leader boundary and wait (up to [`SHUTDOWN_WAIT`]) for the run to end.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Shutdown;

impl Handler<Shutdown> for IngestScheduler {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) -> Self::Result {
        self.shutting_down = true;
        self.missed = false;
        if let Some(handle) = self.timer.take() {
            ctx.cancel_future(handle);
        }
        self.stop_current("server shutting down".to_string());
        std::mem::take(&mut self.refresh_stop).fire();
        actix_rt::spawn(self.persist_usage());
        let mut running = self.running_tx.subscribe();
        Box::pin(async move {
            let wait = running.wait_for(|r| !*r);
            if tokio::time::timeout(SHUTDOWN_WAIT, wait).await.is_err() {
                tracing::warn!("ingestion run did not stop in time");
            }
        })
    }
}

/// Wait until no run is in progress (for `amber ingest` and tests).
#[derive(Debug, Message)]
#[rtype(result = "Option<RunRecord>")]
pub struct WaitIdle;

impl Handler<WaitIdle> for IngestScheduler {
    type Result = ResponseActFuture<Self, Option<RunRecord>>;
    fn handle(&mut self, _: WaitIdle, _: &mut Context<Self>) -> Self::Result {
        let mut running = self.running_tx.subscribe();
        Box::pin(
            async move {
                let _ = running.wait_for(|r| !*r).await;
            }
            .into_actor(self)
            .map(|_, act, _| act.last_run.clone()),
        )
    }
}

/// The started ingestion actors, as the rest of the server holds them.
#[derive(Clone)]
pub struct Ingestion {
    pub scheduler: Addr<IngestScheduler>,
    /// The breaker every X call asks (the Activity API stream's too).
    pub breaker: Addr<CircuitBreaker>,
    /// Health's view, published by the scheduler.
    pub snapshot: watch::Receiver<IngestSnapshot>,
}

/// Why the ingestion actors could not start.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("X_INGEST_CRON: {0}")]
    Cron(#[from] CrontabError),
    #[error(transparent)]
    Client(#[from] ClientError),
}

impl IngestScheduler {
    /// Starts the breaker, the fetcher (when a bearer token is configured) and the
    /// scheduler on the current arbiter. `schedule` false keeps the timer off whatever
    /// `X_INGEST_ENABLED` says (for `amber ingest`, which runs once).
    pub fn launch(
        settings: &Settings,
        writes: impl Into<crate::replication::Writes>,
        reader: StoreReader,
        schedule: bool,
    ) -> Result<Ingestion, LaunchError> {
        let writes = writes.into();
        let store = writes.local().clone();
        let mut config = SchedulerConfig::from_settings(&settings.x, settings.redis_url.clone())?;
        config.enabled &= schedule;
        let (breaker, breaker_rx) = CircuitBreaker::new(BreakerConfig {
            fail_max: settings.x.circuit_fail_max,
            reset: Duration::from_secs(settings.x.circuit_reset_seconds),
        });
        let breaker = breaker.start();
        let fetcher = match &settings.x.bearer_token {
            Some(token) => {
                let client = XClient::new(
                    &settings.x.api_base_url,
                    token.clone(),
                    RetryPolicy::default(),
                )?;
                let fetcher = XFetcher::new(client, breaker.clone(), writes, reader.clone());
                Some(fetcher.start().recipient())
            }
            None => None,
        };
        let (snapshot_tx, snapshot) = watch::channel(IngestSnapshot::default());
        let scheduler = IngestScheduler::new(
            config,
            SchedulerDeps {
                fetcher,
                store: store.recipient(),
                reader,
                breaker: breaker_rx,
                snapshot: snapshot_tx,
            },
        )
        .start();
        Ok(Ingestion {
            scheduler,
            breaker,
            snapshot,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::fetcher::testkit::{rig, Rig};
    use crate::actors::fetcher::{LeaderReport, Reads};
    use chrono::TimeZone;
    use std::sync::{Arc, Mutex};

    /// What the stand-in was asked: (leader id, `reread_from_ms`) per fetch.
    type Asked = Arc<Mutex<Vec<(u64, Option<i64>)>>>;

    /// Stands in for `XFetcher`: answers every fetch with the same page (20 posts and the
    /// author), and remembers what it was asked.
    struct StandIn {
        asked: Asked,
    }

    impl Actor for StandIn {
        type Context = Context<Self>;
    }

    impl Handler<FetchLeader> for StandIn {
        type Result = MessageResult<FetchLeader>;
        fn handle(&mut self, msg: FetchLeader, _: &mut Context<Self>) -> Self::Result {
            self.asked
                .lock()
                .unwrap()
                .push((msg.leader.id, msg.reread_from_ms));
            let resources: Vec<Resource> = (0..20)
                .map(|i| Resource::post(format!("{}{i:02}", msg.leader.id)))
                .chain([Resource::user(format!("u{}", msg.leader.id))])
                .collect();
            MessageResult(FetchOutcome {
                leader_id: msg.leader.id,
                reads: Reads {
                    posts: 20,
                    users: 1,
                },
                resources,
                result: Ok(LeaderReport {
                    duplicates: 20,
                    ..LeaderReport::default()
                }),
            })
        }
    }

    #[actix::test]
    async fn with_a_stand_in_fetcher_posts_read_at_ten_and_eleven_are_billed_once_a_day() {
        let rig = rig(2, 1, 5).await;
        let asked = Arc::new(Mutex::new(Vec::new()));
        let stand_in = StandIn {
            asked: asked.clone(),
        }
        .start();
        let ten = Utc.with_ymd_and_hms(2026, 12, 2, 10, 0, 0).unwrap();
        let mut cfg = config(Schedule::Interval(Duration::from_secs(3600)), false);
        cfg.clock = Clock::starting_at(ten);
        let clock = cfg.clock.clone();
        let (tx, _rx) = watch::channel(IngestSnapshot::default());
        let deps = SchedulerDeps {
            fetcher: Some(stand_in.recipient()),
            store: rig.store.clone().recipient(),
            reader: rig.reader.clone(),
            breaker: rig.breaker_rx.clone(),
            snapshot: tx,
        };
        let addr = IngestScheduler::new(cfg, deps).start();
        let run = || async {
            let go = TriggerRun {
                backfill: false,
                source: "manual",
            };
            addr.send(go).await.unwrap().unwrap();
            addr.send(WaitIdle).await.unwrap().expect("a record")
        };
        let first = run().await;
        assert_eq!(
            (first.leaders, first.posts_read, first.duplicates),
            (2, 40, 40)
        );
        let usage = addr.send(GetStatus).await.unwrap().usage;
        assert_eq!((usage.posts_read, usage.users_read), (40, 2));
        clock.set(ten + chrono::Duration::hours(1));
        run().await;
        let usage = addr.send(GetStatus).await.unwrap().usage;
        assert_eq!(
            (usage.posts_read, usage.users_read),
            (40, 2),
            "read again at 11:00, billed once"
        );
        clock.set(Utc.with_ymd_and_hms(2026, 12, 3, 0, 5, 0).unwrap());
        run().await;
        let usage = addr.send(GetStatus).await.unwrap().usage;
        assert_eq!(
            (usage.posts_read, usage.users_read),
            (80, 4),
            "a new UTC day"
        );
        // Every fetch re-read from the start of the clock's UTC day.
        let asked = asked.lock().unwrap().clone();
        assert_eq!(asked.len(), 6);
        let day2 = day_start_ms(ten);
        let day3 = day_start_ms(Utc.with_ymd_and_hms(2026, 12, 3, 0, 0, 0).unwrap());
        assert!(
            asked[..4].iter().all(|(_, r)| *r == Some(day2)),
            "{asked:?}"
        );
        assert!(
            asked[4..].iter().all(|(_, r)| *r == Some(day3)),
            "{asked:?}"
        );
        // The books survive a restart the same day (persisted with the run).
        let mut cfg = config(Schedule::Interval(Duration::from_secs(3600)), false);
        cfg.clock = clock.clone();
        let (again, _) = scheduler(&rig, cfg);
        let mut again = again;
        again.load_persisted();
        assert_eq!(again.budget.usage().posts_read, 80);
        assert_eq!(again.budget.daily().len(), 42);
        assert_eq!(again.last_run.as_ref().map(|r| r.leaders), Some(2));
    }

    fn config(schedule: Schedule, enabled: bool) -> SchedulerConfig {
        SchedulerConfig {
            enabled,
            schedule,
            ingest_limit: 10,
            backfill_count: 50,
            interval_minutes: 30,
            cron: None,
            refresh_cooldown: Duration::from_secs(60),
            monthly_read_budget: None,
            concurrency: FETCH_CONCURRENCY,
            redis_url: None,
            clock: Clock::system(),
        }
    }

    fn scheduler(
        rig: &Rig,
        config: SchedulerConfig,
    ) -> (IngestScheduler, watch::Receiver<IngestSnapshot>) {
        let (tx, rx) = watch::channel(IngestSnapshot::default());
        let deps = SchedulerDeps {
            fetcher: Some(rig.fetcher.clone().recipient()),
            store: rig.store.clone().recipient(),
            reader: rig.reader.clone(),
            breaker: rig.breaker_rx.clone(),
            snapshot: tx,
        };
        (IngestScheduler::new(config, deps), rx)
    }

    #[test]
    fn schedules_describe_themselves_as_status_shows_them() {
        let every = Schedule::Interval(Duration::from_secs(30 * 60));
        assert_eq!(every.describe(), "interval[0:30:00]");
        assert_eq!(every.job_id(), "x_ingestion_interval");
        let t = Utc.with_ymd_and_hms(2026, 11, 27, 10, 5, 0).unwrap();
        assert_eq!(every.next_after(t), Some(t + chrono::Duration::minutes(30)));
        let cron = Schedule::Cron {
            expr: "*/30 * * * *".into(),
            schedule: Box::new(crontab::parse("*/30 * * * *").unwrap()),
        };
        assert_eq!(cron.describe(), "cron[*/30 * * * *]");
        assert_eq!(cron.job_id(), "x_ingestion_cron");
        assert_eq!(
            cron.next_after(t),
            Some(Utc.with_ymd_and_hms(2026, 11, 27, 10, 30, 0).unwrap())
        );
    }

    #[actix::test]
    async fn reservations_keep_concurrent_fetches_within_the_budget() {
        let rig = rig(1, 1, 5).await;
        let mut cfg = config(Schedule::Interval(Duration::from_secs(3600)), false);
        cfg.monthly_read_budget = Some(30);
        let (mut s, _) = scheduler(&rig, cfg);
        s.load_persisted();
        assert_eq!(s.budget.reserve(20), Some(20));
        assert_eq!(s.budget.reserve(20), Some(10));
        assert_eq!(s.budget.reserve(20), Some(0));
        let read: Vec<Resource> = (0..5).map(|i| Resource::post(i.to_string())).collect();
        s.record_reads(&read, 20);
        assert_eq!(
            s.budget.reserve(50),
            Some(15),
            "unused reservation came back"
        );
        assert!(!s.budget.exhausted());
    }

    #[actix::test]
    async fn scheduled_runs_skip_leaders_in_backoff_and_manual_runs_do_not() {
        let rig = rig(3, 1, 5).await;
        let (mut s, _) = scheduler(
            &rig,
            config(Schedule::Interval(Duration::from_secs(3600)), false),
        );
        let failing = rig.leaders[1].id;
        let failed_at = Utc::now();
        s.backoff.failed(failing, failed_at);
        assert!(!s
            .backoff
            .is_due(failing, failed_at + chrono::Duration::minutes(4)));
        let scheduled: Vec<u64> = s.plan(false, true).iter().map(|(l, _)| l.id).collect();
        assert!(!scheduled.contains(&failing));
        assert_eq!(scheduled.len(), 2);
        let manual: Vec<u64> = s.plan(false, false).iter().map(|(l, _)| l.id).collect();
        assert!(manual.contains(&failing));
        // Once its backoff has passed, the schedule takes it again.
        s.clock.set(failed_at + chrono::Duration::minutes(5));
        assert_eq!(s.plan(false, true).len(), 3);
        // Never-seen leaders are backfilled.
        assert!(s
            .plan(false, true)
            .iter()
            .all(|(_, m)| matches!(m, FetchMode::Backfill { count: 50 })));
    }

    #[actix::test]
    async fn missed_ticks_coalesce_and_runs_never_overlap() {
        let rig = rig(1, 10, 5).await;
        rig.fake.set_latency(Duration::from_millis(250));
        let (s, mut snapshots) = scheduler(
            &rig,
            config(Schedule::Interval(Duration::from_millis(50)), true),
        );
        let addr = s.start();
        let started = Instant::now();
        tokio::time::timeout(
            Duration::from_secs(20),
            snapshots.wait_for(|s| s.total_ingests >= 4),
        )
        .await
        .expect("four runs")
        .unwrap();
        let elapsed = started.elapsed();
        let ticks = elapsed.as_millis() / 50;
        let runs = u128::from(snapshots.borrow().total_ingests);
        assert!(
            runs < ticks / 2,
            "{runs} runs for {ticks} ticks: ticks were not coalesced"
        );
        assert_eq!(rig.fake.stats().max_in_flight, 1, "two runs overlapped");
        addr.send(Shutdown).await.unwrap();
    }

    #[actix::test]
    async fn a_trigger_during_a_run_is_refused_and_shutdown_waits_for_the_leader_boundary() {
        let rig = rig(12, 5, 5).await;
        rig.fake.set_latency(Duration::from_millis(100));
        let (s, _) = scheduler(
            &rig,
            config(Schedule::Interval(Duration::from_secs(3600)), false),
        );
        let addr = s.start();
        let go = TriggerRun {
            backfill: false,
            source: "manual",
        };
        assert_eq!(addr.send(go).await.unwrap(), Ok(()));
        let again = TriggerRun {
            backfill: false,
            source: "manual",
        };
        assert_eq!(
            addr.send(again).await.unwrap(),
            Err(TriggerError::AlreadyRunning)
        );
        addr.send(Shutdown).await.unwrap();
        let record = addr.send(WaitIdle).await.unwrap().expect("a record");
        assert_eq!(
            record.stopped_reason.as_deref(),
            Some("server shutting down")
        );
        assert!(
            record.leaders < 12,
            "stopped before the end: {}",
            record.leaders
        );
        // Whole leaders only: every fetched leader's posts are all there.
        assert_eq!(rig.reader.stats().posts, record.posts_ingested);
        assert_eq!(record.posts_ingested % 5, 0);
        let late = TriggerRun {
            backfill: false,
            source: "manual",
        };
        assert_eq!(
            addr.send(late).await.unwrap(),
            Err(TriggerError::ShuttingDown)
        );
    }

    async fn with_last_run_finished(rig: &Rig, ago: chrono::Duration) {
        let record = RunRecord {
            finished_at: Some(Utc::now() - ago),
            ..RunRecord::default()
        };
        let msg = SetMeta {
            name: META_LAST_RUN.to_string(),
            value: Some(encode_run(&record).unwrap()),
        };
        rig.store.send(msg).await.unwrap().unwrap();
    }

    #[actix::test]
    async fn a_fire_time_missed_while_down_gives_one_catch_up_run_at_start() {
        let rig = rig(1, 3, 5).await;
        with_last_run_finished(&rig, chrono::Duration::hours(2)).await;
        let hourly = config(Schedule::Interval(Duration::from_secs(3600)), true);
        let (s, mut rx) = scheduler(&rig, hourly);
        let addr = s.start();
        tokio::time::timeout(
            Duration::from_secs(10),
            rx.wait_for(|s| s.total_ingests == 1),
        )
        .await
        .expect("a catch-up run")
        .unwrap();
        let last = addr.send(GetStatus).await.unwrap().last_run.unwrap();
        assert_eq!(last.trigger, "startup");
        assert_eq!(last.posts_ingested, 3);
    }

    #[actix::test]
    async fn no_catch_up_run_when_no_fire_time_was_missed() {
        let rig = rig(1, 3, 5).await;
        with_last_run_finished(&rig, chrono::Duration::minutes(10)).await;
        let hourly = config(Schedule::Interval(Duration::from_secs(3600)), true);
        let (s, rx) = scheduler(&rig, hourly);
        let addr = s.start();
        tokio::time::sleep(STARTUP_DELAY + Duration::from_millis(500)).await;
        assert_eq!(rx.borrow().total_ingests, 0);
        assert!(!addr.send(GetStatus).await.unwrap().running);
        assert_eq!(rig.fake.api_calls(), 0);
    }

    #[actix::test]
    async fn the_stop_switch_is_persisted_and_loaded() {
        let rig = rig(1, 1, 5).await;
        let (s, rx) = scheduler(
            &rig,
            config(Schedule::Interval(Duration::from_secs(3600)), true),
        );
        let addr = s.start();
        addr.send(StopIngestion).await.unwrap().unwrap();
        assert_eq!(rx.borrow().scheduler, SchedulerHealth::Stopped);
        let (s2, rx2) = scheduler(
            &rig,
            config(Schedule::Interval(Duration::from_secs(3600)), true),
        );
        let addr2 = s2.start();
        let status = addr2.send(GetStatus).await.unwrap();
        assert!(status.stopped);
        assert_eq!(status.jobs[0].next_run, None);
        assert_eq!(rx2.borrow().scheduler, SchedulerHealth::Stopped);
        addr2.send(StartIngestion).await.unwrap().unwrap();
        assert!(!addr2.send(GetStatus).await.unwrap().stopped);
    }

    #[actix::test]
    async fn an_outage_backs_nobody_off_skipped_ticks_keep_the_last_run_and_healing_ingests() {
        let rig = rig(3, 4, 2).await;
        rig.fake
            .inject(crate::x_api::fake::Fault::ServerError, None);
        let (s, mut rx) = scheduler(
            &rig,
            config(Schedule::Interval(Duration::from_millis(100)), true),
        );
        let addr = s.start();
        addr.send(TriggerRun {
            backfill: false,
            source: "manual",
        })
        .await
        .unwrap()
        .unwrap();
        let failed = addr.send(WaitIdle).await.unwrap().expect("a record");
        assert!(failed
            .stopped_reason
            .unwrap()
            .contains("circuit breaker open"));
        assert!(!failed.errors.is_empty());
        // Ticks while the breaker is open are skipped and leave the failed run's record.
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            let status = addr.send(GetStatus).await.unwrap();
            if status.skipped_ticks > 0 {
                break status;
            }
            assert!(Instant::now() < deadline, "no tick was skipped");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(status.last_run.as_ref().unwrap().errors, failed.errors);
        assert!(status
            .last_skipped
            .unwrap()
            .reason
            .contains("circuit breaker open"));
        assert!(status.backing_off.is_empty(), "{:?}", status.backing_off);
        // X heals: a scheduled run's trial closes the breaker and it fetches everyone.
        rig.fake.clear_faults();
        tokio::time::timeout(
            Duration::from_secs(20),
            rx.wait_for(|_| rig.reader.stats().posts == 12),
        )
        .await
        .expect("every leader ingested after the outage")
        .unwrap();
        addr.send(Shutdown).await.unwrap();
    }
}
