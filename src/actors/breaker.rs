//! `CircuitBreaker`: guards every call to the X API.
//!
//! Closed → open after `X_CIRCUIT_FAIL_MAX` consecutive failed calls → after
//! `X_CIRCUIT_RESET_SECONDS` half-open, where exactly one trial call is let through →
//! closed when it succeeds, open again when it fails. While open no call is permitted, so
//! no request reaches X. The transitions are the pure [`BreakerState`] functions (property
//! tested below); the actor only adds the clock, a timer and publishing.
//!
//! A "call" is one logical X request with its own retries (see `x_api::client`): three
//! failed tries of one request count once.

use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::status::BreakerHealth;

/// A half-open trial that has not reported back after this long is presumed lost (its
/// caller died), and another trial is allowed, so the breaker cannot wedge half-open.
pub const TRIAL_TIMEOUT: Duration = Duration::from_secs(120);

/// Thresholds from `X_CIRCUIT_FAIL_MAX` and `X_CIRCUIT_RESET_SECONDS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker (at least 1).
    pub fail_max: u32,
    /// How long the breaker stays open before a trial call.
    pub reset: Duration,
}

/// The breaker's state. `failures` is the run of consecutive failures (shown as
/// `circuit_breaker_failures`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed {
        // Invariant: failures < fail_max.
        failures: u32,
    },
    Open {
        failures: u32,
        until: Instant,
    },
    HalfOpen {
        failures: u32,
        /// When the one trial call was let through; None until someone asks.
        trial_since: Option<Instant>,
    },
}

/// The answer to a request for permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// Not now; ask again at `retry_at`.
    Refused {
        retry_at: Instant,
    },
}

impl Default for BreakerState {
    fn default() -> BreakerState {
        BreakerState::Closed { failures: 0 }
    }
}

impl BreakerState {
    /// Asks to make one call at `now`.
    pub fn permit(self, cfg: &BreakerConfig, now: Instant) -> (BreakerState, Decision) {
        match self {
            BreakerState::Closed { .. } => (self, Decision::Allowed),
            BreakerState::Open { failures, until } if now >= until => (
                BreakerState::HalfOpen {
                    failures,
                    trial_since: Some(now),
                },
                Decision::Allowed,
            ),
            BreakerState::Open { until, .. } => (self, Decision::Refused { retry_at: until }),
            BreakerState::HalfOpen {
                failures,
                trial_since,
            } => match trial_since {
                Some(since) if now.saturating_duration_since(since) < TRIAL_TIMEOUT => (
                    self,
                    Decision::Refused {
                        retry_at: since + TRIAL_TIMEOUT.min(cfg.reset),
                    },
                ),
                _ => (
                    BreakerState::HalfOpen {
                        failures,
                        trial_since: Some(now),
                    },
                    Decision::Allowed,
                ),
            },
        }
    }

    /// A permitted call succeeded.
    pub fn on_success(self) -> BreakerState {
        match self {
            // A call let through before the breaker opened says nothing about now.
            BreakerState::Open { .. } => self,
            _ => BreakerState::Closed { failures: 0 },
        }
    }

    /// A permitted call failed at `now`.
    pub fn on_failure(self, cfg: &BreakerConfig, now: Instant) -> BreakerState {
        match self {
            BreakerState::Closed { failures } => {
                let failures = failures.saturating_add(1);
                if failures >= cfg.fail_max.max(1) {
                    BreakerState::Open {
                        failures,
                        until: now + cfg.reset,
                    }
                } else {
                    BreakerState::Closed { failures }
                }
            }
            // Late failures of calls let through before opening do not extend it.
            BreakerState::Open { .. } => self,
            BreakerState::HalfOpen { failures, .. } => BreakerState::Open {
                failures: failures.saturating_add(1),
                until: now + cfg.reset,
            },
        }
    }

    /// The time has come (a timer fired): an open breaker whose reset passed becomes
    /// half-open, waiting for its trial.
    pub fn on_tick(self, now: Instant) -> BreakerState {
        match self {
            BreakerState::Open { failures, until } if now >= until => BreakerState::HalfOpen {
                failures,
                trial_since: None,
            },
            other => other,
        }
    }

    /// The state as health and status show it.
    pub fn health(&self) -> BreakerHealth {
        match self {
            BreakerState::Closed { .. } => BreakerHealth::Closed,
            BreakerState::Open { .. } => BreakerHealth::Open,
            BreakerState::HalfOpen { .. } => BreakerHealth::HalfOpen,
        }
    }

    /// The run of consecutive failures.
    pub fn failures(&self) -> u32 {
        match *self {
            BreakerState::Closed { failures }
            | BreakerState::Open { failures, .. }
            | BreakerState::HalfOpen { failures, .. } => failures,
        }
    }
}

/// What the breaker publishes for status and health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BreakerSnapshot {
    pub state: BreakerHealth,
    pub failures: u32,
    /// While open: when the trial call will be allowed.
    pub open_until: Option<DateTime<Utc>>,
}

fn wall_clock(at: Instant, now: Instant) -> DateTime<Utc> {
    let ahead = at.saturating_duration_since(now);
    Utc::now() + chrono::Duration::from_std(ahead).unwrap_or_default()
}

/// The breaker actor. Every X call asks it first ([`AskPermit`]) and reports back
/// ([`RecordSuccess`] / [`RecordFailure`]).
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: BreakerState,
    publish: watch::Sender<BreakerSnapshot>,
}

impl CircuitBreaker {
    /// A closed breaker, and the receiver of its published snapshots.
    pub fn new(config: BreakerConfig) -> (CircuitBreaker, watch::Receiver<BreakerSnapshot>) {
        let (publish, rx) = watch::channel(BreakerSnapshot::default());
        (
            CircuitBreaker {
                config,
                state: BreakerState::default(),
                publish,
            },
            rx,
        )
    }

    fn snapshot(&self, now: Instant) -> BreakerSnapshot {
        BreakerSnapshot {
            state: self.state.health(),
            failures: self.state.failures(),
            open_until: match self.state {
                BreakerState::Open { until, .. } => Some(wall_clock(until, now)),
                _ => None,
            },
        }
    }

    /// Moves to `next`, publishes, and when the breaker just opened, arms the timer that
    /// makes it half-open (so status shows `half-open` without waiting for a caller).
    fn transition(&mut self, next: BreakerState, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let was = self.state;
        self.state = next;
        if was != next {
            if let BreakerState::Open { until, .. } = next {
                if !matches!(was, BreakerState::Open { .. }) {
                    tracing::warn!(
                        failures = next.failures(),
                        reset_secs = self.config.reset.as_secs(),
                        "circuit breaker opened: X calls stop"
                    );
                }
                ctx.run_later(until.saturating_duration_since(now), |act, ctx| {
                    let next = act.state.on_tick(Instant::now());
                    act.transition(next, ctx);
                });
            } else if was.health() != next.health() {
                tracing::info!(
                    state = next.health().as_str(),
                    "circuit breaker changed state"
                );
            }
        }
        self.publish.send_replace(self.snapshot(now));
    }
}

impl Actor for CircuitBreaker {
    type Context = Context<Self>;
}

/// Refusal: the breaker is open (or its one half-open trial is in flight).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker open until {}", retry_at.to_rfc3339())]
pub struct BreakerOpen {
    pub retry_at: DateTime<Utc>,
}

/// May I call X now?
#[derive(Debug, Message)]
#[rtype(result = "Result<(), BreakerOpen>")]
pub struct AskPermit;

impl Handler<AskPermit> for CircuitBreaker {
    type Result = Result<(), BreakerOpen>;
    fn handle(&mut self, _: AskPermit, ctx: &mut Context<Self>) -> Self::Result {
        let now = Instant::now();
        let (next, decision) = self.state.permit(&self.config, now);
        self.transition(next, ctx);
        match decision {
            Decision::Allowed => Ok(()),
            Decision::Refused { retry_at } => Err(BreakerOpen {
                retry_at: wall_clock(retry_at, now),
            }),
        }
    }
}

/// A permitted call succeeded.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct RecordSuccess;

impl Handler<RecordSuccess> for CircuitBreaker {
    type Result = ();
    fn handle(&mut self, _: RecordSuccess, ctx: &mut Context<Self>) {
        let next = self.state.on_success();
        self.transition(next, ctx);
    }
}

/// A permitted call failed.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct RecordFailure;

impl Handler<RecordFailure> for CircuitBreaker {
    type Result = ();
    fn handle(&mut self, _: RecordFailure, ctx: &mut Context<Self>) {
        let next = self.state.on_failure(&self.config, Instant::now());
        self.transition(next, ctx);
    }
}

/// The current snapshot.
#[derive(Debug, Message)]
#[rtype(result = "BreakerSnapshot")]
pub struct GetBreaker;

impl Handler<GetBreaker> for CircuitBreaker {
    type Result = MessageResult<GetBreaker>;
    fn handle(&mut self, _: GetBreaker, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.snapshot(Instant::now()))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn cfg(fail_max: u32, reset_ms: u64) -> BreakerConfig {
        BreakerConfig {
            fail_max,
            reset: Duration::from_millis(reset_ms),
        }
    }

    #[test]
    fn the_breaker_opens_after_fail_max_consecutive_failures() {
        let c = cfg(3, 1000);
        let t0 = Instant::now();
        let mut s = BreakerState::default();
        s = s.on_failure(&c, t0).on_failure(&c, t0);
        assert_eq!(s, BreakerState::Closed { failures: 2 });
        s = s.on_success();
        assert_eq!(
            s,
            BreakerState::Closed { failures: 0 },
            "a success resets the run"
        );
        s = s.on_failure(&c, t0).on_failure(&c, t0).on_failure(&c, t0);
        assert_eq!(
            s,
            BreakerState::Open {
                failures: 3,
                until: t0 + Duration::from_millis(1000)
            }
        );
        assert_eq!(
            s.permit(&c, t0 + Duration::from_millis(999)).1,
            Decision::Refused {
                retry_at: t0 + Duration::from_millis(1000)
            }
        );
    }

    #[test]
    fn half_open_lets_exactly_one_trial_through_then_closes_on_success() {
        let c = cfg(1, 100);
        let t0 = Instant::now();
        let open = BreakerState::default().on_failure(&c, t0);
        let later = t0 + Duration::from_millis(100);
        let (half, first) = open.permit(&c, later);
        assert_eq!(first, Decision::Allowed);
        assert_eq!(half.health(), BreakerHealth::HalfOpen);
        let (half, second) = half.permit(&c, later);
        assert!(matches!(second, Decision::Refused { .. }));
        assert_eq!(half.on_success(), BreakerState::Closed { failures: 0 });
    }

    #[test]
    fn a_failed_trial_opens_the_breaker_again_for_a_full_reset() {
        let c = cfg(1, 100);
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(150);
        let (half, _) = BreakerState::default().on_failure(&c, t0).permit(&c, t1);
        let reopened = half.on_failure(&c, t1);
        assert_eq!(
            reopened,
            BreakerState::Open {
                failures: 2,
                until: t1 + Duration::from_millis(100)
            }
        );
    }

    #[test]
    fn a_lost_trial_does_not_wedge_the_breaker_half_open() {
        let c = cfg(1, 100);
        let t0 = Instant::now();
        let (half, _) = BreakerState::default()
            .on_failure(&c, t0)
            .permit(&c, t0 + Duration::from_millis(100));
        let much_later = t0 + TRIAL_TIMEOUT + Duration::from_secs(1);
        assert_eq!(half.permit(&c, much_later).1, Decision::Allowed);
    }

    #[test]
    fn the_timer_makes_an_expired_open_breaker_half_open_awaiting_a_trial() {
        let c = cfg(1, 100);
        let t0 = Instant::now();
        let open = BreakerState::default().on_failure(&c, t0);
        assert_eq!(open.on_tick(t0 + Duration::from_millis(50)), open);
        let half = open.on_tick(t0 + Duration::from_millis(100));
        assert_eq!(
            half,
            BreakerState::HalfOpen {
                failures: 1,
                trial_since: None
            }
        );
        assert_eq!(half.permit(&c, t0).1, Decision::Allowed);
    }

    #[derive(Debug, Clone)]
    enum Event {
        Permit,
        Success,
        Failure,
        Advance(u64),
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            3 => Just(Event::Permit),
            2 => Just(Event::Success),
            3 => Just(Event::Failure),
            2 => (0u64..400).prop_map(Event::Advance),
        ]
    }

    proptest! {
        #[test]
        fn transitions_keep_the_breaker_invariants(
            fail_max in 1u32..6,
            reset_ms in 1u64..300,
            events in proptest::collection::vec(event(), 0..200),
        ) {
            let c = cfg(fail_max, reset_ms);
            let t0 = Instant::now();
            let mut now = t0;
            let mut s = BreakerState::default();
            // Consecutive failures while closed, as a reference model counts them.
            let mut run = 0u32;
            let mut trials_this_half_open = 0u32;
            for e in events {
                let before = s;
                match e {
                    Event::Permit => {
                        let (next, d) = s.permit(&c, now);
                        if let BreakerState::Open { until, .. } = before {
                            prop_assert_eq!(d == Decision::Allowed, now >= until,
                                "open refuses before its reset and allows at it");
                        }
                        if matches!(next, BreakerState::HalfOpen { .. }) && d == Decision::Allowed {
                            trials_this_half_open += 1;
                        }
                        s = next;
                    }
                    Event::Success => s = s.on_success(),
                    Event::Failure => s = s.on_failure(&c, now),
                    Event::Advance(ms) => {
                        now += Duration::from_millis(ms);
                        s = s.on_tick(now);
                    }
                }
                // Time never jumps past TRIAL_TIMEOUT here, so half-open allows one trial.
                prop_assert!(trials_this_half_open <= 1, "more than one half-open trial");
                if !matches!(s, BreakerState::HalfOpen { .. }) {
                    trials_this_half_open = 0;
                }
                match (before, s) {
                    (BreakerState::Closed { .. }, BreakerState::Closed { failures }) => {
                        run = match e { Event::Failure => run + 1, Event::Success => 0, _ => run };
                        prop_assert_eq!(failures, run);
                        prop_assert!(failures < fail_max);
                    }
                    (BreakerState::Closed { .. }, BreakerState::Open { failures, until }) => {
                        prop_assert!(matches!(e, Event::Failure));
                        prop_assert_eq!(failures, fail_max, "opens exactly at fail_max");
                        prop_assert_eq!(until, now + c.reset);
                    }
                    (BreakerState::HalfOpen { .. }, BreakerState::Open { until, .. }) => {
                        prop_assert!(matches!(e, Event::Failure));
                        prop_assert_eq!(until, now + c.reset);
                    }
                    (BreakerState::HalfOpen { .. }, BreakerState::Closed { failures }) => {
                        prop_assert!(matches!(e, Event::Success));
                        prop_assert_eq!(failures, 0);
                        run = 0;
                    }
                    (BreakerState::Open { .. }, BreakerState::Closed { .. }) => {
                        prop_assert!(false, "open never closes without a half-open trial");
                    }
                    (BreakerState::Closed { .. }, BreakerState::HalfOpen { .. }) => {
                        prop_assert!(false, "closed never goes half-open");
                    }
                    _ => {}
                }
                if matches!(s, BreakerState::Closed { .. }) && !matches!(before, BreakerState::Closed { .. }) {
                    run = 0;
                }
            }
        }
    }

    fn start(
        fail_max: u32,
        reset_ms: u64,
    ) -> (Addr<CircuitBreaker>, watch::Receiver<BreakerSnapshot>) {
        let (actor, rx) = CircuitBreaker::new(cfg(fail_max, reset_ms));
        (actor.start(), rx)
    }

    #[actix::test]
    async fn the_actor_refuses_while_open_and_recovers_through_a_trial() {
        let (breaker, rx) = start(2, 150);
        assert_eq!(breaker.send(AskPermit).await.unwrap(), Ok(()));
        breaker.send(RecordFailure).await.unwrap();
        breaker.send(RecordFailure).await.unwrap();
        let snap = *rx.borrow();
        assert_eq!(snap.state, BreakerHealth::Open);
        assert_eq!(snap.failures, 2);
        assert!(snap.open_until.is_some());
        assert!(breaker.send(AskPermit).await.unwrap().is_err());

        // The timer turns it half-open without anybody asking.
        let mut rx2 = rx.clone();
        tokio::time::timeout(
            Duration::from_secs(5),
            rx2.wait_for(|s| s.state == BreakerHealth::HalfOpen),
        )
        .await
        .expect("half-open within the reset")
        .unwrap();
        assert_eq!(breaker.send(AskPermit).await.unwrap(), Ok(()), "the trial");
        assert!(
            breaker.send(AskPermit).await.unwrap().is_err(),
            "only one trial"
        );
        breaker.send(RecordSuccess).await.unwrap();
        let snap = breaker.send(GetBreaker).await.unwrap();
        assert_eq!(snap.state, BreakerHealth::Closed);
        assert_eq!(snap.failures, 0);
        assert_eq!(*rx.borrow(), snap);
    }

    #[actix::test]
    async fn a_failed_trial_reopens_the_actor() {
        let (breaker, rx) = start(1, 100);
        breaker.send(RecordFailure).await.unwrap();
        let mut rx2 = rx.clone();
        tokio::time::timeout(
            Duration::from_secs(5),
            rx2.wait_for(|s| s.state == BreakerHealth::HalfOpen),
        )
        .await
        .expect("half-open")
        .unwrap();
        assert_eq!(breaker.send(AskPermit).await.unwrap(), Ok(()));
        breaker.send(RecordFailure).await.unwrap();
        assert_eq!(rx.borrow().state, BreakerHealth::Open);
        assert!(breaker.send(AskPermit).await.unwrap().is_err());
    }
}
