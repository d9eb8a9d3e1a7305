//! One keyed token-bucket limiter: governor's GCRA over a [`BoundedStore`], with the
//! numbers the HTTP headers need (limit, remaining, retry after), a read-only look at one
//! key, reset of one key and the idle sweep.

use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::OnceLock;
use std::time::Duration;

use governor::clock::{Clock, QuantaUpkeepClock, Reference};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::Quota;

use crate::rate_limit::store::BoundedStore;

/// A bucket's size and refill: `burst` tokens, `per_window` tokens refilled every `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub burst: NonZeroU32,
    pub per_window: NonZeroU32,
    pub window: Duration,
}

impl Limit {
    /// A limit from the settings' numbers; `None` when any of them is zero.
    pub fn new(burst: u32, per_window: u32, window: Duration) -> Option<Limit> {
        if window.is_zero() {
            return None;
        }
        Some(Limit {
            burst: NonZeroU32::new(burst)?,
            per_window: NonZeroU32::new(per_window)?,
            window,
        })
    }

    /// The time one token takes to come back: `window / per_window` (at least 1 ns).
    pub fn refill_interval(&self) -> Duration {
        let nanos = self.window.as_nanos() / u128::from(self.per_window.get());
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX).max(1))
    }

    /// Tokens refilled per millisecond (what the Redis script computes with).
    pub fn tokens_per_ms(&self) -> f64 {
        f64::from(self.per_window.get()) / (self.window.as_secs_f64() * 1000.0)
    }

    /// How long an empty bucket takes to fill up again.
    pub fn time_to_full(&self) -> Duration {
        self.refill_interval().saturating_mul(self.burst.get())
    }

    /// The governor quota of this limit.
    pub fn quota(&self) -> Quota {
        // `refill_interval` is never zero, so `with_period` always has an answer; the
        // fallback only satisfies the type.
        Quota::with_period(self.refill_interval())
            .unwrap_or_else(|| Quota::per_second(self.per_window))
            .allow_burst(self.burst)
    }
}

/// The outcome of one rate-limit check, with what the response headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The bucket size (`X-RateLimit-Limit`).
    pub limit: u32,
    /// Tokens left after this request (`X-RateLimit-Remaining`); 0 when refused.
    pub remaining: u32,
    /// When refused, how long until a request can pass; zero when allowed.
    pub retry_after: Duration,
}

impl Decision {
    /// An allowed decision.
    pub fn allow(limit: u32, remaining: u32) -> Decision {
        Decision {
            allowed: true,
            limit,
            remaining,
            retry_after: Duration::ZERO,
        }
    }

    /// A refused decision.
    pub fn refuse(limit: u32, retry_after: Duration) -> Decision {
        Decision {
            allowed: false,
            limit,
            remaining: 0,
            retry_after,
        }
    }

    /// `Retry-After` in whole seconds, rounded up, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        let secs = self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0);
        secs.max(1)
    }
}

/// What one bucket holds right now, without spending from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketView {
    pub limit: u32,
    pub remaining: u32,
    /// How long until the bucket is full again.
    pub full_after: Duration,
    /// False when the key has no state (never seen, idle and swept, or reset).
    pub tracked: bool,
}

/// The clock of the server's limiters: quanta's "recent" time, which one upkeep thread
/// refreshes every [`CLOCK_RESOLUTION`]. Reading it is one atomic load; reading the TSC
/// instead cost a third of a hot-key decision on our VMs (BENCHMARKS.md).
pub type LimiterClock = QuantaUpkeepClock;

/// How stale [`LimiterClock`] may be. A refill shows up at most this much late; no
/// bucket refills faster than one token per 10 ms in practice, and `Retry-After` is in
/// whole seconds anyway.
pub const CLOCK_RESOLUTION: Duration = Duration::from_millis(5);

/// The upkeep thread could not be started.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot start the rate-limit clock: {0}")]
pub struct ClockError(String);

/// The process-wide limiter clock. quanta allows one upkeep thread per process, so every
/// limiter shares this one; it runs until the process exits.
pub fn shared_clock() -> Result<LimiterClock, ClockError> {
    static CLOCK: OnceLock<Result<LimiterClock, ClockError>> = OnceLock::new();
    CLOCK
        .get_or_init(|| {
            QuantaUpkeepClock::from_interval(CLOCK_RESOLUTION)
                .map_err(|e| ClockError(e.to_string()))
        })
        .clone()
}

/// A keyed limiter: one bucket per key, all with the same [`Limit`].
pub struct KeyedLimiter<K: Hash + Eq + Clone, C: Clock = LimiterClock> {
    limiter: governor::RateLimiter<K, BoundedStore<K>, C, StateInformationMiddleware>,
    store: BoundedStore<K>,
    clock: C,
    /// Invariant: taken just before governor's own start, so tat − (now − start) is what
    /// governor computes, up to the nanoseconds between the two readings.
    start: C::Instant,
    limit: Limit,
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    /// A limiter on the shared [`LimiterClock`] tracking at most `cap` keys.
    pub fn new(limit: Limit, cap: usize) -> Result<KeyedLimiter<K>, ClockError> {
        Ok(KeyedLimiter::with_clock(limit, cap, shared_clock()?))
    }
}

impl<K: Hash + Eq + Clone, C: Clock + Clone> KeyedLimiter<K, C> {
    /// A limiter on a given clock (tests use governor's fake clock).
    pub fn with_clock(limit: Limit, cap: usize, clock: C) -> KeyedLimiter<K, C> {
        let store = BoundedStore::with_cap(cap);
        let start = clock.now();
        let limiter = governor::RateLimiter::<_, _, _, StateInformationMiddleware>::new(
            limit.quota(),
            store.clone(),
            clock.clone(),
        );
        KeyedLimiter {
            limiter,
            store,
            clock,
            start,
            limit,
        }
    }

    /// The limit every bucket of this limiter has.
    pub fn limit(&self) -> Limit {
        self.limit
    }

    /// Spends `cost` tokens of `key`'s bucket if it holds them.
    pub fn check(&self, key: &K, cost: NonZeroU32) -> Decision {
        let burst = self.limit.burst.get();
        let outcome = if cost.get() == 1 {
            self.limiter.check_key(key)
        } else {
            match self.limiter.check_key_n(key, cost) {
                Ok(outcome) => outcome,
                // More than the bucket ever holds: never allowed, try again never sooner
                // than a full refill.
                Err(_) => return Decision::refuse(burst, self.limit.time_to_full()),
            }
        };
        match outcome {
            Ok(snapshot) => Decision::allow(burst, snapshot.remaining_burst_capacity()),
            Err(not_until) => Decision::refuse(burst, not_until.wait_time_from(self.clock.now())),
        }
    }

    /// `key`'s bucket as it is now; spends nothing.
    pub fn peek(&self, key: &K) -> BucketView {
        let burst = self.limit.burst.get();
        let Some(tat) = self.store.peek(key) else {
            return BucketView {
                limit: burst,
                remaining: burst,
                full_after: Duration::ZERO,
                tracked: false,
            };
        };
        let t = u64::from(Nanos::from(self.limit.refill_interval()));
        let capacity = t.saturating_mul(u64::from(burst));
        let now = u64::from(self.clock.now().duration_since(self.start));
        let tat = u64::from(tat);
        let used = tat.saturating_sub(now);
        BucketView {
            limit: burst,
            remaining: u32::try_from(capacity.saturating_sub(used) / t).unwrap_or(burst),
            full_after: Duration::from_nanos(used),
            tracked: true,
        }
    }

    /// Forgets `key`'s bucket; true if there was one.
    pub fn reset(&self, key: &K) -> bool {
        self.store.remove(key)
    }

    /// Drops the buckets that are full again (indistinguishable from a fresh one) and
    /// gives the memory back.
    pub fn sweep(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    /// True when no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }

    /// The most keys tracked at once.
    pub fn cap(&self) -> usize {
        self.store.cap()
    }

    /// True once after a new key had to share the overflow bucket because the store was
    /// full; the sweeper uses it to run early.
    pub fn take_full(&self) -> bool {
        self.store.take_full()
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    const ONE: NonZeroU32 = NonZeroU32::MIN;

    fn ten_per_minute() -> Limit {
        Limit::new(10, 10, Duration::from_secs(60)).unwrap()
    }

    fn limiter(limit: Limit) -> (KeyedLimiter<u32, FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (KeyedLimiter::with_clock(limit, 1000, clock.clone()), clock)
    }

    #[test]
    fn ten_rapid_requests_pass_and_the_eleventh_is_refused() {
        let (lim, _clock) = limiter(ten_per_minute());
        for n in 0..10 {
            let decision = lim.check(&1, ONE);
            assert!(decision.allowed, "request {n}");
            assert_eq!(decision.limit, 10);
            assert_eq!(decision.remaining, 9 - n);
        }
        let refused = lim.check(&1, ONE);
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        assert_eq!(refused.retry_after, Duration::from_secs(6));
        assert_eq!(refused.retry_after_secs(), 6);
    }

    #[test]
    fn refill_follows_requests_per_window() {
        let (lim, clock) = limiter(ten_per_minute());
        for _ in 0..10 {
            assert!(lim.check(&1, ONE).allowed);
        }
        clock.advance(Duration::from_secs(5));
        assert!(!lim.check(&1, ONE).allowed, "one token takes 6 s");
        clock.advance(Duration::from_secs(1));
        assert!(lim.check(&1, ONE).allowed);
        assert!(!lim.check(&1, ONE).allowed);
        clock.advance(Duration::from_secs(18));
        for _ in 0..3 {
            assert!(lim.check(&1, ONE).allowed);
        }
        assert!(!lim.check(&1, ONE).allowed);
    }

    #[test]
    fn keys_have_separate_buckets() {
        let (lim, _clock) = limiter(ten_per_minute());
        for _ in 0..10 {
            assert!(lim.check(&1, ONE).allowed);
        }
        assert!(!lim.check(&1, ONE).allowed);
        assert!(lim.check(&2, ONE).allowed);
    }

    #[test]
    fn a_cost_spends_that_many_tokens() {
        let (lim, _clock) = limiter(ten_per_minute());
        let decision = lim.check(&1, NonZeroU32::new(4).unwrap());
        assert!(decision.allowed);
        assert_eq!(decision.remaining, 6);
        let too_much = lim.check(&1, NonZeroU32::new(11).unwrap());
        assert!(!too_much.allowed);
        assert_eq!(too_much.retry_after, Duration::from_secs(60));
    }

    #[test]
    fn peek_reports_without_spending() {
        let (lim, clock) = limiter(ten_per_minute());
        assert_eq!(
            lim.peek(&1),
            BucketView {
                limit: 10,
                remaining: 10,
                full_after: Duration::ZERO,
                tracked: false
            }
        );
        for _ in 0..3 {
            lim.check(&1, ONE);
        }
        let view = lim.peek(&1);
        assert_eq!(view.remaining, 7);
        assert_eq!(view.full_after, Duration::from_secs(18));
        assert_eq!(lim.peek(&1), view);
        clock.advance(Duration::from_secs(6));
        assert_eq!(lim.peek(&1).remaining, 8);
        assert_eq!(lim.check(&1, ONE).remaining, 7);
    }

    #[test]
    fn reset_gives_a_full_bucket_back() {
        let (lim, _clock) = limiter(ten_per_minute());
        for _ in 0..10 {
            lim.check(&1, ONE);
        }
        assert!(!lim.check(&1, ONE).allowed);
        assert!(lim.reset(&1));
        assert_eq!(lim.check(&1, ONE).remaining, 9);
    }

    #[test]
    fn the_sweep_forgets_only_full_buckets() {
        let (lim, clock) = limiter(ten_per_minute());
        lim.check(&1, ONE);
        clock.advance(Duration::from_secs(30));
        lim.check(&2, ONE);
        clock.advance(Duration::from_secs(7));
        lim.sweep();
        assert_eq!(lim.len(), 1);
        assert!(!lim.peek(&1).tracked);
        assert!(lim.peek(&2).tracked);
    }

    #[test]
    fn limits_need_positive_numbers() {
        assert!(Limit::new(0, 10, Duration::from_secs(60)).is_none());
        assert!(Limit::new(10, 0, Duration::from_secs(60)).is_none());
        assert!(Limit::new(10, 10, Duration::ZERO).is_none());
        let limit = Limit::new(60, 60, Duration::from_secs(60)).unwrap();
        assert_eq!(limit.refill_interval(), Duration::from_secs(1));
        assert_eq!(limit.time_to_full(), Duration::from_secs(60));
        assert!((limit.tokens_per_ms() - 0.001).abs() < 1e-12);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(
            Decision::refuse(1, Duration::from_millis(1)).retry_after_secs(),
            1
        );
        assert_eq!(
            Decision::refuse(1, Duration::from_millis(2001)).retry_after_secs(),
            3
        );
        assert_eq!(Decision::refuse(1, Duration::ZERO).retry_after_secs(), 1);
    }
}
