//! Usage and budget: what X bills this calendar month and how much of
//! `X_MONTHLY_READ_BUDGET` is left. Pure: no sled, no HTTP, the time is an argument.
//!
//! - X bills a resource (a post, a user, anything in `includes`) once per UTC day however
//!   often it is returned: [`DailyReads`] decides what is billed, [`Budget::book`] adds
//!   only that to the month's [`Usage`].
//! - Concurrent fetches reserve posts before they ask X ([`Budget::reserve`]), so
//!   together they never ask for more than the budget; [`Budget::book`] gives back what a
//!   fetch had reserved.
//! - The month turns at 00:00 UTC of its first day ([`Budget::roll`]); reaching the budget
//!   pauses scheduled runs until then ([`Budget::paused_until`]).

use chrono::{DateTime, Datelike, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::actors::usage::{Billed, DailyReads, Resource};

/// Estimated X API price per post read, USD (pay-per-use list price; adjust to your plan).
pub const COST_PER_POST_READ_USD: f64 = 0.005;
/// Estimated X API price per user read, USD.
pub const COST_PER_USER_READ_USD: f64 = 0.010;

/// Posts and users read from X this calendar month. Persisted as JSON under
/// [`usage_meta_name`] (its stored form since issue 4).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// `YYYY-MM` (UTC).
    pub month: String,
    pub posts_read: u64,
    pub users_read: u64,
}

impl Usage {
    /// Nothing read yet in the month of `now`.
    pub fn new(now: DateTime<Utc>) -> Usage {
        Usage {
            month: month_of(now),
            ..Usage::default()
        }
    }

    /// The estimated cost in USD at the `COST_PER_*` prices.
    pub fn estimated_cost_usd(&self) -> f64 {
        let dollars = self.posts_read as f64 * COST_PER_POST_READ_USD
            + self.users_read as f64 * COST_PER_USER_READ_USD;
        (dollars * 100.0).round() / 100.0
    }
}

/// The calendar month of `t` as `YYYY-MM` (UTC).
pub fn month_of(t: DateTime<Utc>) -> String {
    format!("{:04}-{:02}", t.year(), t.month())
}

/// 00:00 UTC on the first day of the month after `t`'s.
pub fn first_of_next_month(t: DateTime<Utc>) -> DateTime<Utc> {
    let (y, m) = if t.month() == 12 {
        (t.year() + 1, 1)
    } else {
        (t.year(), t.month() + 1)
    };
    Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single().unwrap_or(t)
}

/// The meta name a month's usage is persisted under.
pub fn usage_meta_name(month: &str) -> String {
    format!("x_usage:{month}")
}

/// The month's usage, today's billed resources, the budget and the reservations.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    /// `X_MONTHLY_READ_BUDGET` (posts); None: no cap.
    limit: Option<u64>,
    usage: Usage,
    daily: DailyReads,
    /// Posts reserved by fetches in flight.
    reserved: u64,
}

impl Budget {
    /// Nothing read yet at `now`.
    pub fn new(limit: Option<u64>, now: DateTime<Utc>) -> Budget {
        Budget {
            limit,
            usage: Usage::new(now),
            daily: DailyReads::new(now),
            reserved: 0,
        }
    }

    /// The persisted usage (JSON) and today's reads, each kept only if it is of `now`'s
    /// month and day.
    pub fn restore(
        limit: Option<u64>,
        usage: Option<&[u8]>,
        daily: Option<&[u8]>,
        now: DateTime<Utc>,
    ) -> Budget {
        let month = month_of(now);
        let usage = usage
            .and_then(|b| serde_json::from_slice::<Usage>(b).ok())
            .filter(|u| u.month == month)
            .unwrap_or_else(|| Usage::new(now));
        Budget {
            limit,
            usage,
            daily: DailyReads::restore(daily, now),
            reserved: 0,
        }
    }

    pub fn limit(&self) -> Option<u64> {
        self.limit
    }

    pub fn usage(&self) -> &Usage {
        &self.usage
    }

    /// Today's billed resources (persisted beside the usage).
    pub fn daily(&self) -> &DailyReads {
        &self.daily
    }

    /// The usage's stored form.
    pub fn usage_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.usage).unwrap_or_default()
    }

    /// Starts a new month when `now` is in a later one; returns the finished month's
    /// usage (to persist) when it did.
    pub fn roll(&mut self, now: DateTime<Utc>) -> Option<Usage> {
        if self.usage.month == month_of(now) {
            return None;
        }
        Some(std::mem::replace(&mut self.usage, Usage::new(now)))
    }

    /// The month's posts have reached the budget.
    pub fn exhausted(&self) -> bool {
        self.limit.is_some_and(|b| self.usage.posts_read >= b)
    }

    /// Until when the budget pauses scheduled runs (the first of the next month), if it is
    /// exhausted in `now`'s month.
    pub fn paused_until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        (self.exhausted() && self.usage.month == month_of(now)).then(|| first_of_next_month(now))
    }

    /// Posts that may still be read or reserved this month; u64::MAX without a budget.
    pub fn allowance(&self) -> u64 {
        match self.limit {
            Some(b) => b.saturating_sub(self.usage.posts_read + self.reserved),
            None => u64::MAX,
        }
    }

    /// The posts left of the budget (status `budget_remaining`), None without one.
    pub fn remaining(&self) -> Option<u64> {
        self.limit.map(|b| b.saturating_sub(self.usage.posts_read))
    }

    /// Reserves up to `want` posts for one fetch. None: no budget is set (no cap);
    /// Some(0): nothing is left.
    pub fn reserve(&mut self, want: u64) -> Option<u64> {
        self.limit?;
        let granted = want.min(self.allowance());
        self.reserved += granted;
        Some(granted)
    }

    /// Books what a fetch returned at `now` (only resources not yet returned that UTC day
    /// are billed) and gives back the posts it had reserved. Call [`roll`](Self::roll)
    /// first so a new month starts from zero.
    pub fn book(&mut self, resources: &[Resource], reserved: u64, now: DateTime<Utc>) -> Billed {
        let billed = self.daily.bill(resources, now);
        self.usage.posts_read += billed.posts;
        self.usage.users_read += billed.users;
        self.reserved = self.reserved.saturating_sub(reserved);
        billed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(d: u32, h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, d, h, m, 0).unwrap()
    }

    fn posts(ids: std::ops::Range<u32>) -> Vec<Resource> {
        ids.map(|i| Resource::post(i.to_string())).collect()
    }

    #[test]
    fn the_budget_pause_ends_on_the_first_of_the_next_month() {
        let dec = Utc.with_ymd_and_hms(2026, 12, 31, 23, 59, 0).unwrap();
        assert_eq!(
            first_of_next_month(dec),
            Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap()
        );
        assert_eq!(month_of(dec), "2026-12");
        let usage = Usage {
            month: "2026-12".into(),
            posts_read: 1000,
            users_read: 10,
        };
        assert_eq!(usage.estimated_cost_usd(), 5.1);
        let mut budget = Budget::new(Some(10), dec);
        budget.book(&posts(0..10), 0, dec);
        assert!(budget.exhausted());
        assert_eq!(
            budget.paused_until(dec),
            Some(Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap())
        );
        let jan = Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 1).unwrap();
        assert_eq!(budget.paused_until(jan), None, "a new month is not paused");
        let old = budget.roll(jan).expect("the month turned");
        assert_eq!((old.month.as_str(), old.posts_read), ("2026-12", 10));
        assert_eq!(budget.usage().posts_read, 0);
        assert!(!budget.exhausted());
        assert_eq!(budget.roll(jan), None);
    }

    #[test]
    fn reservations_keep_concurrent_fetches_within_the_budget() {
        let now = at(2, 10, 0);
        let mut budget = Budget::new(Some(30), now);
        assert_eq!(budget.reserve(20), Some(20));
        assert_eq!(budget.reserve(20), Some(10));
        assert_eq!(budget.reserve(20), Some(0));
        budget.book(&posts(0..5), 20, now);
        assert_eq!(budget.reserve(50), Some(15), "unused reservation came back");
        assert!(!budget.exhausted());
        assert_eq!(budget.remaining(), Some(25));
        let unlimited = &mut Budget::new(None, now);
        assert_eq!(unlimited.reserve(1_000_000), None);
        assert_eq!(unlimited.allowance(), u64::MAX);
    }

    #[test]
    fn a_post_read_at_ten_and_at_eleven_is_billed_once_and_again_the_next_day() {
        let mut budget = Budget::new(None, at(2, 10, 0));
        let page: Vec<Resource> = posts(0..20)
            .into_iter()
            .chain([Resource::user("42")])
            .collect();
        let billed = budget.book(&page, 0, at(2, 10, 0));
        assert_eq!((billed.posts, billed.users), (20, 1));
        // An hour later: the same posts (counts moved) and two new ones.
        let again: Vec<Resource> = posts(0..22)
            .into_iter()
            .chain([Resource::user("42")])
            .collect();
        let billed = budget.book(&again, 0, at(2, 11, 0));
        assert_eq!((billed.posts, billed.users), (2, 0));
        assert_eq!(budget.usage().posts_read, 22);
        // The next UTC day X bills them again.
        let billed = budget.book(&again, 0, at(3, 0, 5));
        assert_eq!((billed.posts, billed.users), (22, 1));
        assert_eq!(budget.usage().posts_read, 44);
    }

    #[test]
    fn restored_books_are_kept_only_in_their_month_and_day() {
        let ten = at(2, 10, 0);
        let mut budget = Budget::new(Some(100), ten);
        budget.book(&posts(0..3), 0, ten);
        let (usage, daily) = (budget.usage_bytes(), budget.daily().to_bytes());
        let same_day = Budget::restore(Some(100), Some(&usage), Some(&daily), at(2, 11, 0));
        assert_eq!(same_day.usage().posts_read, 3);
        assert_eq!(same_day.daily().len(), 3);
        let next_day = Budget::restore(Some(100), Some(&usage), Some(&daily), at(3, 9, 0));
        assert_eq!(next_day.usage().posts_read, 3, "same month");
        assert!(next_day.daily().is_empty(), "a new day bills again");
        let next_month = Utc.with_ymd_and_hms(2027, 1, 2, 0, 0, 0).unwrap();
        let later = Budget::restore(Some(100), Some(&usage), Some(&daily), next_month);
        assert_eq!(later.usage().posts_read, 0);
        assert_eq!(later.usage().month, "2027-01");
        let garbage = Budget::restore(None, Some(b"{"), Some(b"?"), ten);
        assert_eq!(garbage, Budget::new(None, ten));
    }
}
