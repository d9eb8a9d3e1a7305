//! The run book: what one leader's outcome does to the run. Pure: given the outcome (and
//! whether the budget is spent and the breaker open), it updates the run's record and
//! says what follows: the leader's backoff, a pause for X's rate-limit reset, or the end
//! of the run at the next leader boundary.
//!
//! - A success adds its counts and ends the leader's backoff.
//! - A leader's own failure (not found, suspended, malformed answer, store error) is
//!   recorded and backs the leader off; X's trouble (an outage the breaker saw, a refused
//!   token, a rate limit) is recorded but backs nobody off.
//! - A refused token, a rate limit or an open breaker stops the run; a rate limit also
//!   pauses scheduled runs until its reset (15 minutes when X gives none).
//! - A fetch stopped while it waited for X's reset is not a fetch of the leader: only its
//!   reads count, and the run is stopping.
//! - After any leader: the budget spent, or the breaker open, stops the run.

use chrono::{DateTime, Utc};

use crate::actors::breaker::BreakerSnapshot;
use crate::actors::fetcher::{FetchOutcome, LeaderError};
use crate::domain::run::{RunError, RunRecord};
use crate::status::BreakerHealth;
use crate::x_api::client::FetchError;

/// How long a rate limit without a reset time pauses scheduled runs.
pub const RATE_LIMIT_DEFAULT_PAUSE_MINUTES: i64 = 15;

/// What a leader's outcome does to its backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackoffChange {
    /// Fetched: the backoff ends.
    Clear,
    /// The leader's own failure: one more.
    Fail,
    /// Neither (X's trouble, or the fetch was stopped).
    Keep,
}

/// What follows one leader's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub backoff: BackoffChange,
    /// X asked us to wait until then: scheduled runs pause.
    pub rate_limited_until: Option<DateTime<Utc>>,
    /// The run stops at the next leader boundary, for this reason.
    pub stop: Option<String>,
}

/// The state of the world after a leader, as far as the run cares.
#[derive(Debug, Clone, Copy)]
pub struct After {
    pub budget_exhausted: bool,
    pub breaker: BreakerSnapshot,
}

/// The book of one run: its record as it goes.
#[derive(Debug, Clone, PartialEq)]
pub struct RunBook {
    record: RunRecord,
}

/// The reason an open breaker gives.
pub fn breaker_open_reason(breaker: &BreakerSnapshot) -> String {
    format!(
        "circuit breaker open until {}",
        breaker
            .open_until
            .map(|t| t.to_rfc3339())
            .unwrap_or_else(|| "its reset".into())
    )
}

impl RunBook {
    /// A run started at `now` by `trigger`.
    pub fn new(trigger: &str, backfill: bool, now: DateTime<Utc>) -> RunBook {
        RunBook {
            record: RunRecord {
                started_at: Some(now),
                trigger: trigger.to_string(),
                backfill,
                ..RunRecord::default()
            },
        }
    }

    /// The record so far.
    pub fn record(&self) -> &RunRecord {
        &self.record
    }

    /// Books one leader's outcome (`handle`: the leader's X handle, for the record).
    pub fn leader_done(
        &mut self,
        outcome: &FetchOutcome,
        handle: Option<String>,
        after: After,
        now: DateTime<Utc>,
    ) -> Verdict {
        let record = &mut self.record;
        record.posts_read += outcome.reads.posts;
        record.users_read += outcome.reads.users;
        if let Err(LeaderError::X(FetchError::Stopped)) = &outcome.result {
            return Verdict {
                backoff: BackoffChange::Keep,
                rate_limited_until: None,
                stop: Some(FetchError::Stopped.to_string()),
            };
        }
        record.leaders += 1;
        let mut verdict = Verdict {
            backoff: BackoffChange::Clear,
            rate_limited_until: None,
            stop: None,
        };
        match &outcome.result {
            Ok(report) => {
                record.posts_ingested += report.inserted.len() as u64;
                record.posts_updated += report.updated as u64;
                record.posts_refreshed += report.refreshed as u64;
                record.duplicates += report.duplicates as u64;
            }
            Err(err) => {
                let x_wide = matches!(err, LeaderError::X(e) if e.stops_run() || e.is_outage());
                verdict.backoff = if x_wide {
                    BackoffChange::Keep
                } else {
                    BackoffChange::Fail
                };
                if let LeaderError::X(FetchError::RateLimited { reset_at }) = err {
                    verdict.rate_limited_until = Some(reset_at.unwrap_or(
                        now + chrono::Duration::minutes(RATE_LIMIT_DEFAULT_PAUSE_MINUTES),
                    ));
                }
                if let LeaderError::X(e) = err {
                    if e.stops_run() {
                        verdict.stop = Some(e.to_string());
                    }
                }
                record.errors.push(RunError {
                    leader_id: outcome.leader_id,
                    handle,
                    kind: err.kind().to_string(),
                    message: err.to_string(),
                });
            }
        }
        if verdict.stop.is_none() && after.budget_exhausted {
            verdict.stop = Some("monthly read budget reached".to_string());
        }
        if verdict.stop.is_none() && after.breaker.state == BreakerHealth::Open {
            verdict.stop = Some(breaker_open_reason(&after.breaker));
        }
        verdict
    }

    /// The run is stopping for `reason`; the first reason given is the one recorded.
    /// Returns whether this was the first.
    pub fn stop(&mut self, reason: String) -> bool {
        if self.record.stopped_reason.is_some() {
            return false;
        }
        self.record.stopped_reason = Some(reason);
        true
    }

    /// The finished record.
    pub fn finish(mut self, now: DateTime<Utc>, duration_ms: u64) -> RunRecord {
        self.record.finished_at = Some(now);
        self.record.duration_ms = Some(duration_ms);
        self.record
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::fetcher::{LeaderReport, Reads};
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 2, 10, 0, 0).unwrap()
    }

    fn calm() -> After {
        After {
            budget_exhausted: false,
            breaker: BreakerSnapshot {
                state: BreakerHealth::Closed,
                failures: 0,
                open_until: None,
            },
        }
    }

    fn outcome(leader: u64, result: Result<LeaderReport, LeaderError>) -> FetchOutcome {
        FetchOutcome {
            leader_id: leader,
            reads: Reads { posts: 5, users: 1 },
            resources: Vec::new(),
            result,
        }
    }

    #[test]
    fn a_success_adds_its_counts_and_clears_the_backoff() {
        let mut book = RunBook::new("schedule", false, now());
        let report = LeaderReport {
            updated: 1,
            refreshed: 3,
            duplicates: 2,
            ..LeaderReport::default()
        };
        let v = book.leader_done(&outcome(1, Ok(report)), None, calm(), now());
        assert_eq!(
            v,
            Verdict {
                backoff: BackoffChange::Clear,
                rate_limited_until: None,
                stop: None
            }
        );
        let r = book.record();
        assert_eq!((r.leaders, r.posts_updated, r.posts_refreshed), (1, 1, 3));
        assert_eq!((r.duplicates, r.posts_read, r.users_read), (2, 5, 1));
        let done = book.finish(now(), 1234);
        assert_eq!(done.duration_ms, Some(1234));
        assert_eq!(done.finished_at, Some(now()));
        assert_eq!(done.trigger, "schedule");
    }

    #[test]
    fn a_leaders_own_failure_backs_it_off_and_xs_trouble_does_not() {
        let mut book = RunBook::new("manual", false, now());
        let gone = LeaderError::X(FetchError::NotFound("nobody".into()));
        let v = book.leader_done(&outcome(1, Err(gone)), Some("nobody".into()), calm(), now());
        assert_eq!(v.backoff, BackoffChange::Fail);
        assert_eq!(v.stop, None, "one leader's trouble does not stop the run");
        let outage = LeaderError::X(FetchError::Timeout);
        let v = book.leader_done(&outcome(2, Err(outage)), None, calm(), now());
        assert_eq!(v.backoff, BackoffChange::Keep);
        assert_eq!(v.stop, None);
        let r = book.record();
        assert_eq!(r.leaders, 2);
        assert_eq!(r.errors.len(), 2);
        assert_eq!(r.errors[0].handle.as_deref(), Some("nobody"));
        assert_eq!(r.errors[0].kind, "not_found");
        assert_eq!(r.errors[1].kind, "timeout");
    }

    #[test]
    fn a_rate_limit_stops_the_run_and_pauses_until_its_reset() {
        let mut book = RunBook::new("schedule", false, now());
        let reset = now() + chrono::Duration::minutes(40);
        let limited = LeaderError::X(FetchError::RateLimited {
            reset_at: Some(reset),
        });
        let v = book.leader_done(&outcome(1, Err(limited)), None, calm(), now());
        assert_eq!(v.rate_limited_until, Some(reset));
        assert_eq!(v.backoff, BackoffChange::Keep);
        assert!(v.stop.is_some());
        let unknown = LeaderError::X(FetchError::RateLimited { reset_at: None });
        let v = book.leader_done(&outcome(2, Err(unknown)), None, calm(), now());
        assert_eq!(
            v.rate_limited_until,
            Some(now() + chrono::Duration::minutes(15))
        );
    }

    #[test]
    fn a_fetch_stopped_while_waiting_counts_its_reads_but_is_no_leader() {
        let mut book = RunBook::new("schedule", false, now());
        let stopped = LeaderError::X(FetchError::Stopped);
        let v = book.leader_done(&outcome(1, Err(stopped)), None, calm(), now());
        assert!(v.stop.is_some());
        assert_eq!(v.backoff, BackoffChange::Keep);
        let r = book.record();
        assert_eq!((r.leaders, r.posts_read, r.errors.len()), (0, 5, 0));
    }

    #[test]
    fn a_spent_budget_or_an_open_breaker_stops_the_run_and_the_first_reason_stays() {
        let mut book = RunBook::new("schedule", false, now());
        let spent = After {
            budget_exhausted: true,
            ..calm()
        };
        let v = book.leader_done(&outcome(1, Ok(LeaderReport::default())), None, spent, now());
        assert_eq!(v.stop.as_deref(), Some("monthly read budget reached"));
        let open = After {
            breaker: BreakerSnapshot {
                state: BreakerHealth::Open,
                failures: 5,
                open_until: Some(now()),
            },
            ..calm()
        };
        let v = book.leader_done(&outcome(2, Ok(LeaderReport::default())), None, open, now());
        assert!(v
            .stop
            .unwrap()
            .starts_with("circuit breaker open until 2026-12-02"));
        assert!(book.stop("first".into()));
        assert!(!book.stop("second".into()));
        assert_eq!(book.record().stopped_reason.as_deref(), Some("first"));
    }
}
