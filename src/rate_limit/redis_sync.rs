//! Shared buckets in Redis for several instances, kept off the request path by leases.
//!
//! Each client key has one token bucket in Redis, a hash at `rate_limit:ip:<addr>` or
//! `rate_limit:user:<sub>` with fields `tokens` and `ts` (ms, Redis's own clock), expiring
//! when it would be full again. An instance spends shared tokens only after taking them
//! from Redis: an atomic Lua script refills the bucket and hands out up to `want` tokens,
//! which the instance keeps as a local *lease* and spends without talking to Redis. No
//! request is ever admitted on tokens Redis has not handed out, so all instances together
//! admit at most what the shared bucket allows, however late Redis answers; leased tokens
//! that go unused for [`LEASE_IDLE`] are given back.
//!
//! The request path touches Redis only when its key has no leased token left; then it
//! waits for the key's one acquire in flight at most [`REQUEST_DEADLINE`], and if the
//! answer is later than that it is refused with a one-second `Retry-After` (the answer
//! still lands in the lease, for the retry). A lease running low is topped up in the
//! background, so a steady client keeps being served from memory. When the shared bucket
//! is empty, the refusal is remembered for at most [`DENIAL_RECHECK`], so a `redis-cli DEL`
//! of the key frees the client within that time. An error, or an acquire unanswered for
//! [`STALL_LIMIT`], marks Redis unavailable: requests are then decided by the per-instance
//! limiter alone without touching Redis (fail open on Redis, never on limiting), health
//! reports `unavailable`, and a supervisor task probes Redis every [`PROBE_INTERVAL`] and
//! resumes sync by itself when it answers.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use parking_lot::RwLock;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{watch, Notify};

use crate::rate_limit::key::ClientKey;
use crate::rate_limit::limiter::{Decision, Limit};
use crate::status::RedisHealth;

/// The longest a request waits for Redis (only when its key has no leased token left).
/// Far above a healthy Redis round trip (well under a millisecond on a LAN), so it
/// matters only when Redis or the machine is slow.
pub const REQUEST_DEADLINE: Duration = Duration::from_millis(20);
/// What a request refused because Redis answered later than [`REQUEST_DEADLINE`] is told
/// to wait: SPEC's smallest `Retry-After`. The late answer is in the lease by then.
pub const LATE_RETRY: Duration = Duration::from_secs(1);
/// An acquire still unanswered after this marks Redis unavailable. Lateness below it is
/// a slow Redis (or a busy machine), which costs refusals of keys without a lease but
/// never over-admission; a stall beyond it is an outage, limited per instance.
pub const STALL_LIMIT: Duration = Duration::from_secs(1);
/// How often the supervisor checks on Redis (and returns idle leases).
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);
/// The longest a refusal from the shared bucket is reused without asking Redis again.
pub const DENIAL_RECHECK: Duration = Duration::from_millis(500);
/// Leased tokens unused for this long go back to the shared bucket.
pub const LEASE_IDLE: Duration = Duration::from_secs(2);
/// A probe must answer within this to make an unavailable Redis available again, so a
/// Redis that is up but too slow for requests stays out of their way.
pub const RESTORE_DEADLINE: Duration = Duration::from_millis(50);
/// Deadline for the supervisor's probes and admin commands.
pub const BACKGROUND_DEADLINE: Duration = Duration::from_secs(1);
/// The most keys with a live lease; beyond it a key without one is limited per instance.
pub const LEASE_CAP: usize = 100_000;
/// A lease is about a tenth of the bucket (at least 1, at most this), so tokens parked in
/// other instances cost little accuracy.
pub const MAX_LEASE: u32 = 50;

/// Refills the shared bucket and takes up to `want` tokens.
/// KEYS[1] = bucket; ARGV = capacity, tokens per ms, want.
/// Returns {granted, tokens left (floored), ms until one token, ms until full}.
/// With want = 0 it only reads, and never creates the key.
const ACQUIRE_SCRIPT: &str = r#"
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = capacity
  ts = now
end
if now > ts then
  tokens = math.min(capacity, tokens + (now - ts) * rate)
end
local granted = math.min(want, math.floor(tokens))
if granted < 0 then granted = 0 end
tokens = tokens - granted
local full_ms = math.ceil((capacity - tokens) / rate)
if want > 0 then
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
  redis.call('PEXPIRE', KEYS[1], full_ms + 1000)
end
local retry_ms = 0
if tokens < 1 then retry_ms = math.ceil((1 - tokens) / rate) end
return {granted, math.floor(tokens), retry_ms, full_ms}
"#;

/// Gives unused leased tokens back, without ever creating a key that was deleted.
/// KEYS[1] = bucket; ARGV = capacity, tokens.
const GIVE_BACK_SCRIPT: &str = r#"
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens'))
if tokens == nil then return 0 end
tokens = math.min(tonumber(ARGV[1]), tokens + tonumber(ARGV[2]))
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens))
return 1
"#;

/// Why a Redis operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("redis is unavailable")]
    Unavailable,
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
}

/// What the shared bucket of one key holds, as Redis says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedView {
    pub remaining: u32,
    pub full_after: Duration,
}

/// One answer of the acquire script.
#[derive(Debug, Clone, Copy)]
struct Grant {
    granted: u32,
    left: u32,
    retry: Duration,
    full_after: Duration,
}

/// The acquire in flight for one key.
#[derive(Debug)]
struct Pending {
    /// Tells this acquire apart from a later one of the same key (after a reset).
    id: u64,
    /// Turns `true` once the answer is in the lease (or the acquire failed).
    answered: watch::Receiver<bool>,
}

/// Tokens this instance holds for one key.
#[derive(Debug)]
struct Lease {
    /// Tokens Redis handed out to this instance and no request has spent yet.
    /// Invariant: only an answer of the acquire script adds to it, so every admission
    /// while Redis is available spends a token the shared bucket gave up.
    tokens: u32,
    /// What Redis had left at the last grant: the rest of `X-RateLimit-Remaining`.
    shared_left: u32,
    /// Until when a refusal from Redis is reused without asking again.
    denied_until: Option<Instant>,
    /// When the shared bucket holds a token again, as of the last refusal.
    retry_at: Instant,
    /// Invariant: at most one acquire per key is in flight; requests that need tokens
    /// wait for it instead of sending their own.
    pending: Option<Pending>,
    /// Cost of the requests waiting for `pending` now (the next acquire asks for it).
    waiting: u32,
    last_used: Instant,
    limit: Limit,
}

impl Lease {
    fn new(now: Instant, limit: Limit) -> Lease {
        Lease {
            tokens: 0,
            shared_left: 0,
            denied_until: None,
            retry_at: now,
            pending: None,
            waiting: 0,
            last_used: now,
            limit,
        }
    }

    /// Adds a grant to the lease.
    fn absorb(&mut self, grant: Grant, now: Instant) {
        self.tokens = self.tokens.saturating_add(grant.granted);
        self.shared_left = grant.left;
        if grant.granted == 0 {
            self.deny(grant.retry, now);
        } else {
            self.denied_until = None;
        }
    }

    /// Remembers that the shared bucket refused, for at most [`DENIAL_RECHECK`].
    fn deny(&mut self, retry: Duration, now: Instant) {
        self.retry_at = now + retry;
        self.denied_until = Some(now + retry.min(DENIAL_RECHECK));
    }

    /// Spends `cost` leased tokens if the lease holds them.
    fn try_spend(&mut self, cost: u32) -> bool {
        match self.tokens.checked_sub(cost) {
            Some(left) => {
                self.tokens = left;
                true
            }
            None => false,
        }
    }

    fn remaining(&self) -> u32 {
        self.tokens
            .saturating_add(self.shared_left)
            .min(self.limit.burst.get())
    }

    /// True when the supervisor may drop this lease (and give its tokens back).
    fn idle(&self, now: Instant) -> bool {
        now.duration_since(self.last_used) >= LEASE_IDLE
            && self.pending.is_none()
            && self.waiting == 0
    }
}

/// The lease size of a limit: a tenth of the burst, between 1 and [`MAX_LEASE`].
pub fn lease_size(limit: &Limit) -> u32 {
    (limit.burst.get() / 10).clamp(1, MAX_LEASE)
}

/// The Redis side of rate limiting. One per process, shared by every worker.
pub struct RedisSync {
    client: redis::Client,
    connection: RwLock<Option<ConnectionManager>>,
    /// Invariant: true only after a successful probe and until a failure; while false the
    /// request path never touches Redis.
    available: AtomicBool,
    /// True from the first failure of an outage until Redis answers again, so an outage
    /// is logged once (also when Redis is already down at start-up).
    outage_logged: AtomicBool,
    health: watch::Sender<RedisHealth>,
    leases: DashMap<ClientKey, Lease>,
    /// Ids of [`Pending`] acquires.
    next_acquire: AtomicU64,
    /// Requests refused because Redis answered later than [`REQUEST_DEADLINE`].
    late_refusals: AtomicU64,
    acquire: redis::Script,
    give_back: redis::Script,
    wake: Notify,
}

impl RedisSync {
    /// A sync for `url` that publishes its state on `health`. Nothing connects until
    /// [`RedisSync::spawn_supervisor`] runs; until then Redis counts as unavailable.
    pub fn new(
        url: &str,
        health: watch::Sender<RedisHealth>,
    ) -> Result<RedisSync, redis::RedisError> {
        let client = redis::Client::open(url)?;
        health.send_replace(RedisHealth::Unavailable);
        Ok(RedisSync {
            client,
            connection: RwLock::new(None),
            available: AtomicBool::new(false),
            outage_logged: AtomicBool::new(false),
            health,
            leases: DashMap::new(),
            next_acquire: AtomicU64::new(0),
            late_refusals: AtomicU64::new(0),
            acquire: redis::Script::new(ACQUIRE_SCRIPT),
            give_back: redis::Script::new(GIVE_BACK_SCRIPT),
            wake: Notify::new(),
        })
    }

    /// True while requests are synced through Redis.
    pub fn is_available(&self) -> bool {
        self.available.load(Ordering::Acquire)
    }

    /// Keys holding a lease now.
    pub fn lease_count(&self) -> usize {
        self.leases.len()
    }

    /// Tokens this instance holds in its lease of `key` (0 without a lease).
    pub fn leased_tokens(&self, key: &ClientKey) -> u32 {
        self.leases.get(key).map_or(0, |lease| lease.tokens)
    }

    /// Requests refused so far because Redis answered later than [`REQUEST_DEADLINE`].
    pub fn late_refusals(&self) -> u64 {
        self.late_refusals.load(Ordering::Relaxed)
    }

    /// Starts the task that connects, probes, marks Redis available again and returns
    /// idle leases. It stops when the last strong reference to the sync is dropped.
    /// Needs a Tokio runtime.
    pub fn spawn_supervisor(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(supervise(weak))
    }

    /// Decides a request from the shared bucket: `None` when Redis is unavailable (or
    /// the lease table is full), and the caller's per-instance decision stands.
    ///
    /// Admits only on leased tokens. Without one, the request waits for the key's
    /// acquire (starting one if none is in flight) until [`REQUEST_DEADLINE`], and is
    /// refused with [`LATE_RETRY`] if the answer is not in by then.
    pub async fn check(
        self: &Arc<Self>,
        key: &ClientKey,
        limit: Limit,
        cost: NonZeroU32,
    ) -> Option<Decision> {
        if !self.is_available() {
            return None;
        }
        let cost = cost.get();
        let burst = limit.burst.get();
        let deadline = tokio::time::Instant::now() + REQUEST_DEADLINE;
        loop {
            let now = Instant::now();
            let mut answered = {
                let mut lease = match self.leases.get_mut(key) {
                    Some(lease) => lease,
                    // More live keys than leases: this one is limited per instance.
                    None if self.leases.len() >= LEASE_CAP => return None,
                    None => self
                        .leases
                        .entry(key.clone())
                        .or_insert_with(|| Lease::new(now, limit)),
                };
                lease.last_used = now;
                lease.limit = limit;
                if lease.try_spend(cost) {
                    // Top up before the lease runs dry, so the next request need not wait.
                    if lease.tokens <= lease_size(&limit) / 2 && lease.pending.is_none() {
                        lease.pending = Some(self.spawn_acquire(key, limit, lease_size(&limit)));
                    }
                    return Some(Decision::allow(burst, lease.remaining()));
                }
                if let Some(until) = lease.denied_until {
                    if now < until {
                        let retry = lease.retry_at.saturating_duration_since(now);
                        return Some(Decision::refuse(burst, retry));
                    }
                }
                let pending = match lease.pending.take() {
                    Some(pending) => pending,
                    None => {
                        // Ask for this request, the others already waiting, and a lease.
                        let want = cost
                            .saturating_add(lease.waiting)
                            .saturating_add(lease_size(&limit));
                        self.spawn_acquire(key, limit, want)
                    }
                };
                let answered = pending.answered.clone();
                lease.pending = Some(pending);
                lease.waiting = lease.waiting.saturating_add(cost);
                answered
            };
            let outcome = tokio::time::timeout_at(deadline, answered.wait_for(|done| *done))
                .await
                .map(|answer| answer.map(drop));
            if let Some(mut lease) = self.leases.get_mut(key) {
                lease.waiting = lease.waiting.saturating_sub(cost);
            }
            match outcome {
                // The answer is in the lease (or Redis failed): look again.
                Ok(Ok(_)) => {}
                // The acquire's task is gone without answering (the runtime is shutting
                // down): never admit on that.
                Ok(Err(_)) => {
                    if let Some(mut lease) = self.leases.get_mut(key) {
                        if lease
                            .pending
                            .as_ref()
                            .is_some_and(|p| p.answered.has_changed().is_err())
                        {
                            lease.pending = None;
                        }
                    }
                    return Some(Decision::refuse(burst, LATE_RETRY));
                }
                Err(_) => {
                    self.late_refusals.fetch_add(1, Ordering::Relaxed);
                    return Some(Decision::refuse(burst, LATE_RETRY));
                }
            }
            if !self.is_available() {
                return None;
            }
        }
    }

    /// Puts one acquire of `want` tokens for `key` in flight, as its own task: its answer
    /// lands in the lease whenever it comes, also after every waiting request gave up.
    fn spawn_acquire(self: &Arc<Self>, key: &ClientKey, limit: Limit, want: u32) -> Pending {
        let id = self.next_acquire.fetch_add(1, Ordering::Relaxed);
        let (done, answered) = watch::channel(false);
        let sync = Arc::clone(self);
        let key = key.clone();
        tokio::spawn(async move {
            let outcome = tokio::time::timeout(STALL_LIMIT, sync.run_acquire(&key, limit, want))
                .await
                .unwrap_or(Err(SyncError::Timeout(STALL_LIMIT)));
            let now = Instant::now();
            let failed = {
                let mut lease = sync
                    .leases
                    .entry(key)
                    .or_insert_with(|| Lease::new(now, limit));
                if lease.pending.as_ref().is_some_and(|p| p.id == id) {
                    lease.pending = None;
                }
                match outcome {
                    Ok(grant) => {
                        lease.absorb(grant, now);
                        None
                    }
                    Err(error) => Some(error),
                }
            };
            if let Some(error) = failed {
                sync.mark_unavailable(&error);
            }
            done.send_replace(true);
        });
        Pending { id, answered }
    }

    /// The shared bucket of `key`, read without spending; `None` when Redis has no
    /// state for it (a full bucket).
    pub async fn peek(
        &self,
        key: &ClientKey,
        limit: Limit,
    ) -> Result<Option<SharedView>, SyncError> {
        let exists: bool = self.key_command("EXISTS", key).await?;
        if !exists {
            return Ok(None);
        }
        let grant = within_background_deadline(self.run_acquire(key, limit, 0)).await?;
        Ok(Some(SharedView {
            remaining: grant.left,
            full_after: grant.full_after,
        }))
    }

    /// Deletes `key`'s shared bucket and this instance's lease of it. True if Redis had
    /// a bucket.
    pub async fn reset(&self, key: &ClientKey) -> Result<bool, SyncError> {
        self.leases.remove(key);
        let deleted: u32 = self.key_command("DEL", key).await?;
        Ok(deleted > 0)
    }

    /// Runs `command` on `key`'s Redis key within [`BACKGROUND_DEADLINE`].
    async fn key_command<T: redis::FromRedisValue>(
        &self,
        command: &str,
        key: &ClientKey,
    ) -> Result<T, SyncError> {
        let mut connection = self.connection()?;
        within_background_deadline(async move {
            redis::cmd(command)
                .arg(key.redis_key())
                .query_async(&mut connection)
                .await
                .map_err(SyncError::from)
        })
        .await
    }

    fn connection(&self) -> Result<ConnectionManager, SyncError> {
        if !self.is_available() {
            return Err(SyncError::Unavailable);
        }
        self.connection
            .read()
            .as_ref()
            .cloned()
            .ok_or(SyncError::Unavailable)
    }

    async fn run_acquire(
        &self,
        key: &ClientKey,
        limit: Limit,
        want: u32,
    ) -> Result<Grant, SyncError> {
        let mut connection = self.connection()?;
        let (granted, left, retry_ms, full_ms): (u32, u32, u64, u64) = self
            .acquire
            .key(key.redis_key())
            .arg(limit.burst.get())
            .arg(limit.tokens_per_ms())
            .arg(want)
            .invoke_async(&mut connection)
            .await?;
        Ok(Grant {
            granted,
            left,
            retry: Duration::from_millis(retry_ms),
            full_after: Duration::from_millis(full_ms),
        })
    }

    async fn run_give_back(
        &self,
        key: &ClientKey,
        limit: Limit,
        tokens: u32,
    ) -> Result<(), SyncError> {
        let mut connection = self.connection()?;
        let _: u32 = self
            .give_back
            .key(key.redis_key())
            .arg(limit.burst.get())
            .arg(tokens)
            .invoke_async(&mut connection)
            .await?;
        Ok(())
    }

    fn mark_unavailable(&self, error: &SyncError) {
        self.available.store(false, Ordering::Release);
        if !self.outage_logged.swap(true, Ordering::AcqRel) {
            tracing::warn!(%error, "redis unavailable: rate limits are per instance until it returns");
        }
        self.health.send_if_modified(|health| {
            let changed = *health != RedisHealth::Unavailable;
            *health = RedisHealth::Unavailable;
            changed
        });
        self.wake.notify_one();
    }

    fn mark_available(&self) {
        self.outage_logged.store(false, Ordering::Release);
        if !self.available.swap(true, Ordering::AcqRel) {
            tracing::info!("redis available: rate limits are shared between instances");
        }
        self.health.send_if_modified(|health| {
            let changed = *health != RedisHealth::Ok;
            *health = RedisHealth::Ok;
            changed
        });
    }

    /// One supervisor round: connect if needed, probe, return idle leases.
    async fn tend(&self) {
        let existing = self.connection.read().as_ref().cloned();
        let mut connection = match existing {
            Some(connection) => connection,
            None => match connect(&self.client).await {
                Ok(connection) => {
                    *self.connection.write() = Some(connection.clone());
                    connection
                }
                Err(error) => {
                    self.mark_unavailable(&error);
                    return;
                }
            },
        };
        // Coming back needs a prompt answer; staying needs any answer within a second.
        let deadline = if self.is_available() {
            BACKGROUND_DEADLINE
        } else {
            RESTORE_DEADLINE
        };
        let probe = tokio::time::timeout(
            deadline,
            redis::cmd("PING").query_async::<String>(&mut connection),
        )
        .await;
        match probe {
            Ok(Ok(_)) => {
                if !self.is_available() {
                    // Load the scripts before requests need them, so a request's first
                    // call is one EVALSHA round trip rather than three.
                    for script in [&self.acquire, &self.give_back] {
                        let loaded = tokio::time::timeout(
                            BACKGROUND_DEADLINE,
                            script.load_async(&mut connection),
                        )
                        .await;
                        if !matches!(loaded, Ok(Ok(_))) {
                            tracing::debug!("redis script not preloaded; loaded on first use");
                        }
                    }
                }
                self.mark_available();
            }
            Ok(Err(error)) => {
                self.mark_unavailable(&SyncError::Redis(error));
                return;
            }
            Err(_) => {
                self.mark_unavailable(&SyncError::Timeout(deadline));
                return;
            }
        }
        self.return_idle_leases().await;
    }

    async fn return_idle_leases(&self) {
        let now = Instant::now();
        let mut idle = Vec::new();
        self.leases.retain(|key, lease| {
            let quiet = lease.idle(now);
            if quiet && lease.tokens > 0 {
                idle.push((key.clone(), lease.limit, lease.tokens));
            }
            !quiet
        });
        for (key, limit, tokens) in idle {
            let returned =
                within_background_deadline(self.run_give_back(&key, limit, tokens)).await;
            tracing::debug!(%key, tokens, ?returned, "idle lease given back");
            if returned.is_err() {
                // Unreturned tokens are only a little under-admission until the shared
                // bucket refills; no need to keep them.
                break;
            }
        }
    }
}

/// Awaits `operation` for at most [`BACKGROUND_DEADLINE`].
async fn within_background_deadline<T>(
    operation: impl std::future::Future<Output = Result<T, SyncError>>,
) -> Result<T, SyncError> {
    tokio::time::timeout(BACKGROUND_DEADLINE, operation)
        .await
        .unwrap_or(Err(SyncError::Timeout(BACKGROUND_DEADLINE)))
}

/// True when a Redis at `url` answers `PING` within `limit` (tests use it to decide
/// whether to SKIP).
pub async fn redis_answers(url: &str, limit: Duration) -> bool {
    let ping = async {
        let client = redis::Client::open(url).ok()?;
        let mut connection = client.get_multiplexed_async_connection().await.ok()?;
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
            .ok()
    };
    matches!(tokio::time::timeout(limit, ping).await, Ok(Some(_)))
}

async fn connect(client: &redis::Client) -> Result<ConnectionManager, SyncError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(BACKGROUND_DEADLINE)
        .set_response_timeout(BACKGROUND_DEADLINE)
        .set_number_of_retries(1)
        .set_max_delay(200);
    tokio::time::timeout(
        BACKGROUND_DEADLINE * 2,
        ConnectionManager::new_with_config(client.clone(), config),
    )
    .await
    .map_err(|_| SyncError::Timeout(BACKGROUND_DEADLINE * 2))?
    .map_err(SyncError::from)
}

async fn supervise(weak: Weak<RedisSync>) {
    // A short pause after being woken keeps a flapping Redis from spinning this loop.
    const MIN_GAP: Duration = Duration::from_millis(100);
    loop {
        let Some(sync) = weak.upgrade() else { return };
        sync.tend().await;
        let woken = async {
            tokio::select! {
                _ = tokio::time::sleep(PROBE_INTERVAL) => {}
                _ = sync.wake.notified() => {}
            }
        };
        woken.await;
        drop(sync);
        tokio::time::sleep(MIN_GAP).await;
    }
}

/// Deletes one client's shared bucket from a process that does not serve (the
/// `amber rate-limit reset` command). True if Redis had a bucket for it.
pub async fn reset_in_redis(url: &str, key: &ClientKey) -> Result<bool, SyncError> {
    let client = redis::Client::open(url)?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(BACKGROUND_DEADLINE)
        .set_response_timeout(BACKGROUND_DEADLINE);
    let mut connection = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let deleted: u32 = redis::cmd("DEL")
        .arg(key.redis_key())
        .query_async(&mut connection)
        .await?;
    Ok(deleted > 0)
}
