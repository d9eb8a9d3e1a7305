//! The refresh cooldown: `POST /api/leaders/{id}/refresh` calls X at most once per
//! `X_REFRESH_COOLDOWN_SECONDS` per leader; within it the answer is the stored posts.
//! Pure: the instant is an argument (monotonic time, not the wall clock).

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// When each leader was last refreshed from X.
#[derive(Debug, Clone)]
pub struct Cooldown {
    period: Duration,
    last: HashMap<u64, Instant>,
}

impl Cooldown {
    /// Refreshes of one leader at least `period` apart.
    pub fn new(period: Duration) -> Cooldown {
        Cooldown {
            period,
            last: HashMap::new(),
        }
    }

    /// Whether `leader` was refreshed from X less than the period before `now`.
    pub fn is_cooling(&self, leader: u64, now: Instant) -> bool {
        self.last
            .get(&leader)
            .is_some_and(|t| now.saturating_duration_since(*t) < self.period)
    }

    /// `leader` is refreshed from X at `now`; entries whose period is over are forgotten,
    /// so the map holds only leaders cooling down.
    pub fn start(&mut self, leader: u64, now: Instant) {
        let period = self.period;
        self.last
            .retain(|_, t| now.saturating_duration_since(*t) < period);
        self.last.insert(leader, now);
    }

    /// Leaders cooling down (remembered).
    pub fn len(&self) -> usize {
        self.last.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refresh_cools_its_leader_for_the_period_and_no_other() {
        let t0 = Instant::now();
        let mut c = Cooldown::new(Duration::from_secs(60));
        assert!(!c.is_cooling(1, t0));
        c.start(1, t0);
        assert!(c.is_cooling(1, t0 + Duration::from_secs(59)));
        assert!(!c.is_cooling(1, t0 + Duration::from_secs(60)));
        assert!(!c.is_cooling(2, t0));
        // A later start forgets leaders whose period is over.
        c.start(2, t0 + Duration::from_secs(61));
        assert_eq!(c.len(), 1);
        assert!(c.is_cooling(2, t0 + Duration::from_secs(62)));
        let none = Cooldown::new(Duration::ZERO);
        assert!(!none.is_cooling(2, t0));
    }
}
