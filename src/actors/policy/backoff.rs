//! Per-leader backoff: a leader whose own fetch fails is skipped by scheduled runs for a
//! backoff that doubles per consecutive failure, from [`LEADER_BACKOFF_BASE`] up to
//! [`LEADER_BACKOFF_MAX`], and then retried: never dropped. A success clears it. Manual
//! runs ignore it. Pure: the time is an argument.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// First backoff of a failing leader; doubled per consecutive failure.
pub const LEADER_BACKOFF_BASE: Duration = Duration::from_secs(5 * 60);
/// Longest backoff of a failing leader: it is retried at least this often, forever.
pub const LEADER_BACKOFF_MAX: Duration = Duration::from_secs(6 * 60 * 60);

/// The backoff of a leader after `failures` consecutive failures.
pub fn leader_backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    LEADER_BACKOFF_BASE
        .saturating_mul(1u32 << exp)
        .min(LEADER_BACKOFF_MAX)
}

/// One leader in backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Consecutive failures.
    pub failures: u32,
    /// Scheduled runs take the leader again from then.
    pub retry_after: DateTime<Utc>,
}

/// The leaders in backoff.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LeaderBackoff {
    leaders: HashMap<u64, Backoff>,
}

impl LeaderBackoff {
    pub fn new() -> LeaderBackoff {
        LeaderBackoff::default()
    }

    /// Whether a scheduled run at `now` takes `leader`.
    pub fn is_due(&self, leader: u64, now: DateTime<Utc>) -> bool {
        self.leaders
            .get(&leader)
            .is_none_or(|b| b.retry_after <= now)
    }

    /// The leader was fetched: its backoff ends.
    pub fn succeeded(&mut self, leader: u64) {
        self.leaders.remove(&leader);
    }

    /// The leader's own fetch failed at `now`: one more failure, a longer backoff.
    pub fn failed(&mut self, leader: u64, now: DateTime<Utc>) -> Backoff {
        let entry = self.leaders.entry(leader).or_insert(Backoff {
            failures: 0,
            retry_after: now,
        });
        entry.failures += 1;
        entry.retry_after =
            now + chrono::Duration::from_std(leader_backoff(entry.failures)).unwrap_or_default();
        *entry
    }

    /// The leader's backoff, if any.
    pub fn get(&self, leader: u64) -> Option<Backoff> {
        self.leaders.get(&leader).copied()
    }

    /// Every leader in backoff as (id, failures, retry after), by id (status
    /// `failing_leaders`).
    pub fn list(&self) -> Vec<(u64, u32, DateTime<Utc>)> {
        let mut all: Vec<_> = self
            .leaders
            .iter()
            .map(|(id, b)| (*id, b.failures, b.retry_after))
            .collect();
        all.sort_by_key(|b| b.0);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn leader_backoff_doubles_and_is_capped_so_no_leader_is_dropped() {
        assert_eq!(leader_backoff(1), LEADER_BACKOFF_BASE);
        assert_eq!(leader_backoff(2), LEADER_BACKOFF_BASE * 2);
        assert_eq!(leader_backoff(3), LEADER_BACKOFF_BASE * 4);
        assert_eq!(leader_backoff(1000), LEADER_BACKOFF_MAX);
    }

    #[test]
    fn a_failing_leader_waits_longer_each_time_and_a_success_clears_it() {
        let now = Utc.with_ymd_and_hms(2026, 12, 2, 10, 0, 0).unwrap();
        let mut b = LeaderBackoff::new();
        assert!(b.is_due(7, now));
        let first = b.failed(7, now);
        assert_eq!(first.failures, 1);
        assert_eq!(first.retry_after, now + chrono::Duration::minutes(5));
        assert!(!b.is_due(7, now + chrono::Duration::minutes(4)));
        assert!(b.is_due(7, now + chrono::Duration::minutes(5)));
        assert!(b.is_due(8, now), "other leaders are not affected");
        let second = b.failed(7, now);
        assert_eq!(second.retry_after, now + chrono::Duration::minutes(10));
        b.failed(3, now);
        assert_eq!(
            b.list().iter().map(|l| (l.0, l.1)).collect::<Vec<_>>(),
            vec![(3, 1), (7, 2)]
        );
        b.succeeded(7);
        assert!(b.is_due(7, now));
        assert_eq!(b.get(7), None);
        // Never dropped: however many failures, the next try is at most six hours away.
        for _ in 0..100 {
            b.failed(3, now);
        }
        assert!(b.is_due(3, now + chrono::Duration::hours(6)));
    }
}
