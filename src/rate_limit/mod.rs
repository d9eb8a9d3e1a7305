//! Rate limiting (SPEC "Rate limiting"): token buckets per client key, built once and
//! shared by every HTTP worker.
//!
//! ```text
//!  request ─▶ client_addr (peer, or forwarded hops behind TRUSTED_PROXIES)
//!          ─▶ ClientKey  (ip:<addr> with IPv6 by /64, or user:<sub> for a valid token)
//!          ─▶ RateLimits::check
//!               ├─ per-instance governor bucket (always measured; the decision when
//!               │  Redis is off or unavailable)
//!               └─ RedisSync lease (the decision while Redis is available)
//!  background: sweeper (idle keys out, memory back) · Redis supervisor (probe, resume,
//!              give back idle leases)
//! ```
//!
//! `key` and `client_addr` are pure; `limiter` and `store` wrap governor; `redis_sync`
//! holds the only Redis code. Nothing here knows about HTTP.

pub mod client_addr;
pub mod key;
pub mod limiter;
pub mod redis_sync;
pub mod store;

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use tokio::sync::watch;

use crate::config::RateLimitSettings;
use crate::rate_limit::key::{ClientKey, IpKey, UserKey};
use crate::rate_limit::limiter::{BucketView, ClockError, Decision, KeyedLimiter, Limit};
use crate::rate_limit::redis_sync::{RedisSync, SharedView, SyncError};
use crate::status::RedisHealth;

/// The most anonymous (`ip:`) buckets held at once; see [`store`] for what happens at
/// the cap. About 25 bytes each.
pub const IP_KEY_CAP: usize = 200_000;
/// The most `user:` buckets held at once (only valid tokens get one).
pub const USER_KEY_CAP: usize = 50_000;
/// The most addresses tracked by the token-endpoint limiter.
pub const TOKEN_ATTEMPT_KEY_CAP: usize = 50_000;
/// Tries of `POST /api/admin/token` per address: this many at once, refilled over
/// [`TOKEN_ATTEMPT_WINDOW`].
pub const TOKEN_ATTEMPTS: u32 = 5;
/// Window of the token-endpoint limiter.
pub const TOKEN_ATTEMPT_WINDOW: Duration = Duration::from_secs(60);
/// How often idle buckets are swept out.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(10);
/// How often the sweeper checks whether a store hit its cap (and sweeps early).
pub const FULL_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Keys a sweep must drop before freed heap pages are handed back to the OS.
pub const TRIM_AFTER_DROPPED_KEYS: usize = 10_000;

/// Why rate limiting could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RateLimitError {
    #[error("invalid rate limit for {0}: every number must be above zero")]
    InvalidLimit(&'static str),
    #[error("invalid REDIS_URL: {0}")]
    RedisUrl(#[from] redis::RedisError),
    #[error(transparent)]
    Clock(#[from] ClockError),
}

/// The Redis side of an inspection or reset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shared<T> {
    /// `REDIS_URL` is not set.
    Disabled,
    /// Redis did not answer; the text says why.
    Unavailable(String),
    Done(T),
}

impl<T> Shared<T> {
    fn from_result(result: Result<T, SyncError>) -> Shared<T> {
        match result {
            Ok(value) => Shared::Done(value),
            Err(error) => Shared::Unavailable(error.to_string()),
        }
    }
}

/// One client's buckets, for `GET /api/admin/rate-limits/...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientView {
    pub key: ClientKey,
    /// This instance's bucket.
    pub local: BucketView,
    /// The shared bucket; `Done(None)` when Redis holds none (a full bucket).
    pub shared: Shared<Option<SharedView>>,
}

/// What a reset cleared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetOutcome {
    pub key: ClientKey,
    /// True if this instance had a bucket for the key.
    pub local: bool,
    /// `Done(true)` if Redis had a bucket and it was deleted.
    pub shared: Shared<bool>,
}

/// Every limiter of the process. Built once at start-up and shared (behind an `Arc`) by
/// all workers; all of its state is internally synchronized.
pub struct RateLimits {
    enabled: bool,
    trusted_proxies: Vec<IpNet>,
    ip: KeyedLimiter<IpKey>,
    user: KeyedLimiter<UserKey>,
    token_attempts: KeyedLimiter<IpKey>,
    redis: Option<Arc<RedisSync>>,
}

impl RateLimits {
    /// Per-instance limiters from the settings, without Redis and without background
    /// tasks (benches and tests; the server uses [`RateLimits::start`]).
    pub fn new(settings: &RateLimitSettings) -> Result<RateLimits, RateLimitError> {
        let window = Duration::from_secs(u64::from(settings.window_seconds));
        let ip_limit = Limit::new(settings.burst_size, settings.requests_per_minute, window)
            .ok_or(RateLimitError::InvalidLimit("anonymous clients"))?;
        let user_limit = Limit::new(
            settings.user_burst_size,
            settings.user_requests_per_minute,
            window,
        )
        .ok_or(RateLimitError::InvalidLimit("token holders"))?;
        let token_limit = Limit::new(TOKEN_ATTEMPTS, TOKEN_ATTEMPTS, TOKEN_ATTEMPT_WINDOW)
            .ok_or(RateLimitError::InvalidLimit("the token endpoint"))?;
        Ok(RateLimits {
            enabled: settings.enabled,
            trusted_proxies: settings.trusted_proxies.clone(),
            ip: KeyedLimiter::new(ip_limit, IP_KEY_CAP)?,
            user: KeyedLimiter::new(user_limit, USER_KEY_CAP)?,
            token_attempts: KeyedLimiter::new(token_limit, TOKEN_ATTEMPT_KEY_CAP)?,
            redis: None,
        })
    }

    /// The limiters of the server: built once, with Redis sync when `redis_url` is set,
    /// the idle sweeper running, and Redis health published on `redis_health` (also
    /// when limiting is switched off, as long as `redis_url` is set).
    /// Needs a Tokio runtime (it spawns the background tasks).
    pub fn start(
        settings: &RateLimitSettings,
        redis_url: Option<&str>,
        redis_health: watch::Sender<RedisHealth>,
    ) -> Result<Arc<RateLimits>, RateLimitError> {
        let mut limits = RateLimits::new(settings)?;
        // With limiting switched off the sync still runs its probe, so health keeps
        // telling the truth about a configured Redis; no request consults it.
        match redis_url {
            Some(url) => limits.redis = Some(Arc::new(RedisSync::new(url, redis_health)?)),
            None => {
                redis_health.send_replace(RedisHealth::Disabled);
            }
        }
        let limits = Arc::new(limits);
        if let Some(sync) = &limits.redis {
            sync.spawn_supervisor();
        }
        spawn_sweeper(&limits);
        Ok(limits)
    }

    /// False when `RATE_LIMITING_ENABLED=false`: callers then skip limiting entirely.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// True when Redis sync is configured (whatever its health).
    pub fn redis_configured(&self) -> bool {
        self.redis.is_some()
    }

    /// True while Redis sync is configured and answering.
    pub fn redis_available(&self) -> bool {
        self.redis.as_ref().is_some_and(|sync| sync.is_available())
    }

    /// True when `peer` is one of `TRUSTED_PROXIES` (its forwarded headers are believed).
    pub fn trusts(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.trusted_proxies.iter().any(|net| net.contains(&peer))
    }

    /// The client address of a request: see [`client_addr::client_addr`].
    pub fn client_addr<'h>(
        &self,
        peer: IpAddr,
        x_forwarded_for: impl IntoIterator<Item = &'h str>,
        forwarded: impl IntoIterator<Item = &'h str>,
    ) -> IpAddr {
        client_addr::client_addr(peer, &self.trusted_proxies, x_forwarded_for, forwarded)
    }

    /// The limit of a kind of key.
    pub fn limit_of(&self, key: &ClientKey) -> Limit {
        match key {
            ClientKey::Ip(_) => self.ip.limit(),
            ClientKey::User(_) => self.user.limit(),
        }
    }

    /// Spends `cost` tokens of `key`'s bucket. The per-instance bucket is always
    /// measured; while Redis sync is available the shared bucket decides.
    pub async fn check(&self, key: &ClientKey, cost: NonZeroU32) -> Decision {
        let local = self.check_local(key, cost);
        if let Some(sync) = &self.redis {
            if let Some(shared) = sync.check(key, self.limit_of(key), cost).await {
                return shared;
            }
        }
        local
    }

    /// Spends from the per-instance bucket only.
    pub fn check_local(&self, key: &ClientKey, cost: NonZeroU32) -> Decision {
        match key {
            ClientKey::Ip(ip) => self.ip.check(ip, cost),
            ClientKey::User(user) => self.user.check(user, cost),
        }
    }

    /// One try at `POST /api/admin/token` from `addr`: a strict bucket of its own
    /// ([`TOKEN_ATTEMPTS`] per [`TOKEN_ATTEMPT_WINDOW`]), per instance.
    pub fn check_token_attempt(&self, addr: IpAddr) -> Decision {
        self.token_attempts
            .check(&IpKey::from_addr(addr), NonZeroU32::MIN)
    }

    /// `key`'s buckets, spending nothing.
    pub async fn inspect(&self, key: &ClientKey) -> ClientView {
        let local = match key {
            ClientKey::Ip(ip) => self.ip.peek(ip),
            ClientKey::User(user) => self.user.peek(user),
        };
        let shared = match &self.redis {
            None => Shared::Disabled,
            Some(sync) => Shared::from_result(sync.peek(key, self.limit_of(key)).await),
        };
        ClientView {
            key: key.clone(),
            local,
            shared,
        }
    }

    /// Clears `key`'s buckets: this instance's, and the shared one in Redis. Other
    /// instances pick the reset up within [`redis_sync::DENIAL_RECHECK`].
    pub async fn reset(&self, key: &ClientKey) -> ResetOutcome {
        let local = match key {
            ClientKey::Ip(ip) => self.ip.reset(ip),
            ClientKey::User(user) => self.user.reset(user),
        };
        let shared = match &self.redis {
            None => Shared::Disabled,
            Some(sync) => Shared::from_result(sync.reset(key).await),
        };
        ResetOutcome {
            key: key.clone(),
            local,
            shared,
        }
    }

    /// Drops idle buckets of every limiter and gives the memory back.
    pub fn sweep(&self) {
        self.ip.sweep();
        self.user.sweep();
        self.token_attempts.sweep();
    }

    /// Buckets held now, all limiters together.
    pub fn tracked_keys(&self) -> usize {
        self.ip.len() + self.user.len() + self.token_attempts.len()
    }

    /// True once after any limiter had to send a new key to its overflow bucket.
    fn take_full(&self) -> bool {
        // Evaluate all three so each flag is cleared.
        let ip = self.ip.take_full();
        let user = self.user.take_full();
        let token = self.token_attempts.take_full();
        ip || user || token
    }
}

/// Starts the idle sweep: every [`SWEEP_INTERVAL`], or within [`FULL_CHECK_INTERVAL`]
/// of a store reaching its cap. The sweep runs on Tokio's blocking pool so no worker
/// waits for it. The task ends when the limiters are dropped.
pub fn spawn_sweeper(limits: &Arc<RateLimits>) -> tokio::task::JoinHandle<()> {
    let weak = Arc::downgrade(limits);
    tokio::spawn(async move {
        let mut since_sweep = Duration::ZERO;
        loop {
            tokio::time::sleep(FULL_CHECK_INTERVAL).await;
            since_sweep += FULL_CHECK_INTERVAL;
            let Some(limits) = weak.upgrade() else { return };
            if limits.take_full() || since_sweep >= SWEEP_INTERVAL {
                since_sweep = Duration::ZERO;
                let swept = tokio::task::spawn_blocking(move || {
                    let before = limits.tracked_keys();
                    limits.sweep();
                    if before.saturating_sub(limits.tracked_keys()) >= TRIM_AFTER_DROPPED_KEYS {
                        // Hands the freed pages back: RSS would stay at the flood's peak.
                        crate::startup::trim_malloc();
                    }
                })
                .await;
                if let Err(error) = swept {
                    tracing::error!(%error, "rate-limit sweep failed");
                }
            }
        }
    })
}

#[cfg(test)]
mod tests;
