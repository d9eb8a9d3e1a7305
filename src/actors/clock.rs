//! `Clock`: the wall clock the ingestion books are kept by (the UTC day X bills by, the
//! month of the budget, the run records' times).
//!
//! In production it is the system clock. Tests and benchmarks may shift it: a clock
//! [`starting_at`](Clock::starting_at) a given instant runs at the system clock's pace
//! from there, and [`set`](Clock::set) moves it. The server shifts it only when the
//! test-only setting `AMBER_TEST_CLOCK` is given (see README, "Configuration"), so a
//! black-box test can read the same posts at 10:00 and 11:00 UTC of one day.
//! Timers and deadlines never use it: they use `Instant`.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};

/// A wall clock: the system clock plus an offset shared by every clone.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// Nanoseconds (exact: a clock set to `t` never reads earlier than `t` afterwards).
    offset_ns: Arc<AtomicI64>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock::default()
    }

    /// A clock that reads `start` now and runs on at the system clock's pace.
    pub fn starting_at(start: DateTime<Utc>) -> Clock {
        let clock = Clock::default();
        clock.set(start);
        clock
    }

    /// Now, by this clock.
    pub fn now(&self) -> DateTime<Utc> {
        let offset = self.offset_ns.load(Ordering::Relaxed);
        let now = Utc::now();
        if offset == 0 {
            return now;
        }
        now + chrono::Duration::nanoseconds(offset)
    }

    /// Makes this clock (and every clone) read `t` now.
    pub fn set(&self, t: DateTime<Utc>) {
        let ahead = t - Utc::now();
        // Beyond ±292 years of nanoseconds: milliseconds rounded up.
        let offset = ahead.num_nanoseconds().unwrap_or_else(|| {
            ahead
                .num_milliseconds()
                .saturating_add(1)
                .saturating_mul(1_000_000)
        });
        self.offset_ns.store(offset, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_shifted_clock_reads_its_start_and_clones_move_together() {
        let start = Utc.with_ymd_and_hms(2026, 3, 4, 10, 0, 0).unwrap();
        let clock = Clock::starting_at(start);
        let twin = clock.clone();
        let read = clock.now();
        assert!(
            read >= start && read - start < chrono::Duration::seconds(5),
            "{read}"
        );
        let later = start + chrono::Duration::hours(1);
        twin.set(later);
        let read = clock.now();
        assert!(
            read >= later && read - later < chrono::Duration::seconds(5),
            "{read}"
        );
        let system = Clock::system().now();
        assert!((system - Utc::now()).num_seconds().abs() < 5);
    }
}
