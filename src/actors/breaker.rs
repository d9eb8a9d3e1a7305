//! `CircuitBreaker`: guards every try of every call to the X API.
//!
//! Closed → open after `X_CIRCUIT_FAIL_MAX` consecutive failed tries → after
//! `X_CIRCUIT_RESET_SECONDS` half-open, where exactly one trial try is let through →
//! closed when it succeeds, open again when it fails. While open no try is permitted, so
//! no request reaches X. The transitions are the pure [`BreakerState`] functions (property
//! tested below); the actor only adds the clock, a timer, the queue of callers waiting
//! for a permit, and publishing.
//!
//! Every try asks, retries included (see `actors::fetcher`), and a try in flight counts
//! against the failures still allowed: while closed, at most `fail_max - failures` tries
//! are out at once, so however many leaders are fetched concurrently, no try leaves that
//! could be failure number `fail_max + 1`. A caller beyond that waits for a permit (as do
//! callers during the half-open trial), and is refused once the breaker opens.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use tokio::sync::{oneshot, watch};

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
        // Invariant: failures + in_flight <= fail_max, failures < fail_max.
        failures: u32,
        /// Tries permitted and not reported yet.
        in_flight: u32,
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
    /// Not yet: every try the breaker can afford is in flight (or the half-open trial
    /// is); ask again when one reports.
    Wait,
    /// Not now; ask again at `retry_at`.
    Refused {
        retry_at: Instant,
    },
}

impl Default for BreakerState {
    fn default() -> BreakerState {
        BreakerState::Closed {
            failures: 0,
            in_flight: 0,
        }
    }
}

const CLOSED: BreakerState = BreakerState::Closed {
    failures: 0,
    in_flight: 0,
};

impl BreakerState {
    /// Asks to make one try at `now`.
    pub fn permit(self, cfg: &BreakerConfig, now: Instant) -> (BreakerState, Decision) {
        match self {
            BreakerState::Closed {
                failures,
                in_flight,
            } if failures.saturating_add(in_flight) < cfg.fail_max.max(1) => (
                BreakerState::Closed {
                    failures,
                    in_flight: in_flight + 1,
                },
                Decision::Allowed,
            ),
            BreakerState::Closed { .. } => (self, Decision::Wait),
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
                Some(since) if now.saturating_duration_since(since) < TRIAL_TIMEOUT => {
                    (self, Decision::Wait)
                }
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

    /// A permitted try succeeded.
    pub fn on_success(self) -> BreakerState {
        match self {
            // A try let through before the breaker opened says nothing about now.
            BreakerState::Open { .. } => self,
            BreakerState::Closed { in_flight, .. } => BreakerState::Closed {
                failures: 0,
                in_flight: in_flight.saturating_sub(1),
            },
            BreakerState::HalfOpen { .. } => CLOSED,
        }
    }

    /// A permitted try failed at `now`.
    pub fn on_failure(self, cfg: &BreakerConfig, now: Instant) -> BreakerState {
        match self {
            BreakerState::Closed {
                failures,
                in_flight,
            } => {
                let failures = failures.saturating_add(1);
                if failures >= cfg.fail_max.max(1) {
                    BreakerState::Open {
                        failures,
                        until: now + cfg.reset,
                    }
                } else {
                    BreakerState::Closed {
                        failures,
                        in_flight: in_flight.saturating_sub(1),
                    }
                }
            }
            // Late failures of tries let through before opening do not extend it.
            BreakerState::Open { .. } => self,
            BreakerState::HalfOpen { failures, .. } => BreakerState::Open {
                failures: failures.saturating_add(1),
                until: now + cfg.reset,
            },
        }
    }

    /// A permitted try was not made after all, or its outcome says nothing about X (the
    /// caller was stopped, or X answered about one user): its permit comes back.
    pub fn on_release(self) -> BreakerState {
        match self {
            BreakerState::Closed {
                failures,
                in_flight,
            } => BreakerState::Closed {
                failures,
                in_flight: in_flight.saturating_sub(1),
            },
            BreakerState::HalfOpen { failures, .. } => BreakerState::HalfOpen {
                failures,
                trial_since: None,
            },
            open @ BreakerState::Open { .. } => open,
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
            BreakerState::Closed { failures, .. }
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

/// The breaker actor. Every try of an X call asks it first ([`AskPermit`]) and reports
/// its outcome through the [`Permit`] it got.
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: BreakerState,
    publish: watch::Sender<BreakerSnapshot>,
    /// Callers waiting for a permit, first come first served.
    waiting: VecDeque<oneshot::Sender<Result<Permit, BreakerOpen>>>,
    /// Bumped when the state changes phase and at every half-open trial: a report
    /// carrying an older epoch is about a try of another phase and is ignored.
    epoch: u64,
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
                waiting: VecDeque::new(),
                epoch: 0,
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
        if was.health() != next.health() {
            self.epoch += 1;
        }
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
                    act.serve_waiting(ctx);
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

    /// Asks the state for one permit now.
    fn decide(&mut self, ctx: &mut Context<Self>) -> Result<Option<Permit>, BreakerOpen> {
        let now = Instant::now();
        let (next, decision) = self.state.permit(&self.config, now);
        self.transition(next, ctx);
        match decision {
            Decision::Allowed => {
                if matches!(self.state, BreakerState::HalfOpen { .. }) {
                    self.epoch += 1;
                }
                Ok(Some(Permit {
                    breaker: Some(ctx.address()),
                    epoch: self.epoch,
                }))
            }
            Decision::Wait => Ok(None),
            Decision::Refused { retry_at } => Err(BreakerOpen {
                retry_at: wall_clock(retry_at, now),
            }),
        }
    }

    /// Hands permits to waiting callers while the state allows, refuses them all once
    /// it is open.
    fn serve_waiting(&mut self, ctx: &mut Context<Self>) {
        while let Some(front) = self.waiting.front() {
            if front.is_closed() {
                self.waiting.pop_front();
                continue;
            }
            match self.decide(ctx) {
                Ok(None) => return,
                Ok(Some(permit)) => {
                    if let Some(tx) = self.waiting.pop_front() {
                        if let Err(Ok(mut unused)) = tx.send(Ok(permit)) {
                            // The caller gave up in the meantime: the permit comes back.
                            unused.breaker = None;
                            let next = self.state.on_release();
                            self.transition(next, ctx);
                        }
                    }
                }
                Err(open) => {
                    for tx in self.waiting.drain(..) {
                        let _ = tx.send(Err(open));
                    }
                    return;
                }
            }
        }
    }
}

impl Actor for CircuitBreaker {
    type Context = Context<Self>;
}

/// Refusal: the breaker is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker open until {}", retry_at.to_rfc3339())]
pub struct BreakerOpen {
    pub retry_at: DateTime<Utc>,
}

/// What a permitted try came to, for the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryOutcome {
    /// X answered (a correct answer, even "no such user").
    Success,
    /// X failed (5xx, timeout, connection, refused token, malformed answer, 429).
    Failure,
    /// The try was not made or says nothing about X: the permit comes back.
    Released,
}

/// Leave to make one try. Report its outcome with [`Permit::report`]; a permit dropped
/// unreported is released, so a cancelled caller never holds a slot.
#[derive(Debug)]
pub struct Permit {
    /// None once reported.
    breaker: Option<Addr<CircuitBreaker>>,
    epoch: u64,
}

impl Permit {
    /// Tells the breaker what the try came to.
    pub fn report(mut self, outcome: TryOutcome) {
        if let Some(breaker) = self.breaker.take() {
            breaker.do_send(Report {
                epoch: self.epoch,
                outcome,
            });
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(breaker) = self.breaker.take() {
            breaker.do_send(Report {
                epoch: self.epoch,
                outcome: TryOutcome::Released,
            });
        }
    }
}

/// May I make one try now? Answers at once while the breaker can afford the try or is
/// open; otherwise once a try in flight has reported.
#[derive(Debug, Message)]
#[rtype(result = "Result<Permit, BreakerOpen>")]
pub struct AskPermit;

impl Handler<AskPermit> for CircuitBreaker {
    type Result = ResponseFuture<Result<Permit, BreakerOpen>>;
    fn handle(&mut self, _: AskPermit, ctx: &mut Context<Self>) -> Self::Result {
        // Callers already waiting go first.
        let answer = if self.waiting.is_empty() {
            self.decide(ctx)
        } else {
            Ok(None)
        };
        match answer {
            Ok(Some(permit)) => Box::pin(std::future::ready(Ok(permit))),
            Err(open) => Box::pin(std::future::ready(Err(open))),
            Ok(None) => {
                let (tx, rx) = oneshot::channel();
                self.waiting.push_back(tx);
                Box::pin(async move {
                    rx.await.unwrap_or(Err(BreakerOpen {
                        retry_at: Utc::now(),
                    }))
                })
            }
        }
    }
}

/// A permitted try's outcome (sent by [`Permit`]).
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct Report {
    epoch: u64,
    outcome: TryOutcome,
}

impl Handler<Report> for CircuitBreaker {
    type Result = ();
    fn handle(&mut self, msg: Report, ctx: &mut Context<Self>) {
        if msg.epoch != self.epoch {
            return;
        }
        let next = match msg.outcome {
            TryOutcome::Success => self.state.on_success(),
            TryOutcome::Failure => self.state.on_failure(&self.config, Instant::now()),
            TryOutcome::Released => self.state.on_release(),
        };
        self.transition(next, ctx);
        self.serve_waiting(ctx);
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
        assert_eq!(
            s,
            BreakerState::Closed {
                failures: 2,
                in_flight: 0
            }
        );
        s = s.on_success();
        assert_eq!(s, CLOSED, "a success resets the run");
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
        assert_eq!(second, Decision::Wait, "the others wait for the trial");
        assert_eq!(half.on_success(), CLOSED);
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

    #[test]
    fn while_closed_no_more_tries_are_out_than_failures_still_allowed() {
        let c = cfg(5, 1000);
        let t0 = Instant::now();
        let mut s = BreakerState::default();
        for _ in 0..5 {
            let (next, d) = s.permit(&c, t0);
            assert_eq!(d, Decision::Allowed);
            s = next;
        }
        assert_eq!(s.permit(&c, t0).1, Decision::Wait, "a sixth try waits");
        // Four fail: one more may still be out, and it is.
        for _ in 0..4 {
            s = s.on_failure(&c, t0);
        }
        assert_eq!(
            s,
            BreakerState::Closed {
                failures: 4,
                in_flight: 1
            }
        );
        assert_eq!(s.permit(&c, t0).1, Decision::Wait);
        // A released permit comes back; the fifth failure opens.
        s = s.on_release();
        let (s2, d) = s.permit(&c, t0);
        assert_eq!(d, Decision::Allowed);
        assert!(matches!(
            s2.on_failure(&c, t0),
            BreakerState::Open { failures: 5, .. }
        ));
    }

    #[derive(Debug, Clone)]
    enum Event {
        Permit,
        Success,
        Failure,
        Release,
        Advance(u64),
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            4 => Just(Event::Permit),
            2 => Just(Event::Success),
            3 => Just(Event::Failure),
            1 => Just(Event::Release),
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
            // Permits granted and not reported, as the actor's callers hold them.
            let mut out = 0u32;
            // Failed tries since the breaker last closed or a try succeeded: never more
            // than fail_max, however many permits were out.
            let mut failed_since_close = 0u32;
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
                        if d == Decision::Allowed {
                            out += 1;
                            if matches!(next, BreakerState::HalfOpen { .. }) {
                                trials_this_half_open += 1;
                            }
                        }
                        s = next;
                    }
                    // Outcomes only come from permits held.
                    Event::Success | Event::Failure | Event::Release if out == 0 => {}
                    Event::Success => {
                        out -= 1;
                        s = s.on_success();
                        failed_since_close = 0;
                    }
                    Event::Failure => {
                        out -= 1;
                        s = s.on_failure(&c, now);
                        failed_since_close += 1;
                    }
                    Event::Release => {
                        out -= 1;
                        s = s.on_release();
                        // A trial not made gives its place to another.
                        trials_this_half_open = 0;
                    }
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
                if let BreakerState::Closed { failures, in_flight } = s {
                    prop_assert!(failures < fail_max);
                    prop_assert!(failures + in_flight <= fail_max,
                        "{} failures and {} in flight exceed {}", failures, in_flight, fail_max);
                    if !matches!(before, BreakerState::Closed { .. }) {
                        failed_since_close = 0;
                    }
                }
                if matches!(before, BreakerState::Closed { .. }) {
                    prop_assert!(failed_since_close <= fail_max,
                        "{} tries failed before the breaker opened at {}", failed_since_close, fail_max);
                }
                match (before, s) {
                    (BreakerState::Closed { .. }, BreakerState::Open { failures, until }) => {
                        prop_assert!(matches!(e, Event::Failure));
                        prop_assert_eq!(failures, fail_max, "opens exactly at fail_max");
                        prop_assert_eq!(until, now + c.reset);
                        prop_assert_eq!(out, 0, "nothing is in flight when it opens");
                    }
                    (BreakerState::HalfOpen { .. }, BreakerState::Open { until, .. }) => {
                        prop_assert!(matches!(e, Event::Failure));
                        prop_assert_eq!(until, now + c.reset);
                    }
                    (BreakerState::HalfOpen { .. }, BreakerState::Closed { failures, .. }) => {
                        prop_assert!(matches!(e, Event::Success));
                        prop_assert_eq!(failures, 0);
                    }
                    (BreakerState::Open { .. }, BreakerState::Closed { .. }) => {
                        prop_assert!(false, "open never closes without a half-open trial");
                    }
                    (BreakerState::Closed { .. }, BreakerState::HalfOpen { .. }) => {
                        prop_assert!(false, "closed never goes half-open");
                    }
                    _ => {}
                }
                if matches!(s, BreakerState::Open { .. }) {
                    // Permits of other phases are ignored by the actor (epochs).
                    out = 0;
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

    async fn fail_once(breaker: &Addr<CircuitBreaker>) {
        let permit = breaker.send(AskPermit).await.unwrap().expect("a permit");
        permit.report(TryOutcome::Failure);
    }

    #[actix::test]
    async fn the_actor_refuses_while_open_and_recovers_through_a_trial() {
        let (breaker, rx) = start(2, 150);
        fail_once(&breaker).await;
        fail_once(&breaker).await;
        let snap = breaker.send(GetBreaker).await.unwrap();
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
        let trial = breaker.send(AskPermit).await.unwrap().expect("the trial");
        // A second caller waits for the trial's outcome, then goes.
        let waiter = actix_rt::spawn({
            let breaker = breaker.clone();
            async move { breaker.send(AskPermit).await.unwrap() }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "waits during the trial");
        trial.report(TryOutcome::Success);
        let second = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("served after the trial")
            .unwrap();
        assert!(second.is_ok());
        drop(second);
        let snap = breaker.send(GetBreaker).await.unwrap();
        assert_eq!(snap.state, BreakerHealth::Closed);
        assert_eq!(snap.failures, 0);
        assert_eq!(*rx.borrow(), snap);
    }

    #[actix::test]
    async fn a_failed_trial_reopens_the_actor_and_refuses_the_waiting() {
        let (breaker, rx) = start(1, 100);
        fail_once(&breaker).await;
        let mut rx2 = rx.clone();
        tokio::time::timeout(
            Duration::from_secs(5),
            rx2.wait_for(|s| s.state == BreakerHealth::HalfOpen),
        )
        .await
        .expect("half-open")
        .unwrap();
        let trial = breaker.send(AskPermit).await.unwrap().expect("the trial");
        let waiter = actix_rt::spawn({
            let breaker = breaker.clone();
            async move { breaker.send(AskPermit).await.unwrap() }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        trial.report(TryOutcome::Failure);
        assert!(waiter.await.unwrap().is_err(), "refused once it reopened");
        assert_eq!(rx.borrow().state, BreakerHealth::Open);
        assert!(breaker.send(AskPermit).await.unwrap().is_err());
    }

    #[actix::test]
    async fn a_dropped_permit_gives_its_slot_back() {
        let (breaker, _) = start(1, 100);
        let permit = breaker.send(AskPermit).await.unwrap().unwrap();
        let waiter = actix_rt::spawn({
            let breaker = breaker.clone();
            async move { breaker.send(AskPermit).await.unwrap() }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "fail_max 1: one try at a time");
        drop(permit);
        let next = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the slot came back")
            .unwrap();
        assert!(next.is_ok());
        assert_eq!(breaker.send(GetBreaker).await.unwrap().failures, 0);
    }
}
