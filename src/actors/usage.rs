//! What X bills: the pure rules behind `usage` (no sled, no HTTP).
//!
//! X charges a resource (a post, a user, anything in `includes`) once per UTC day however
//! often it is returned ("Deduplication" in X's pricing page). [`DailyReads`] remembers
//! which resources were returned today and bills only the first return of each; it
//! forgets everything when the UTC day turns. It is persisted by the scheduler (meta
//! [`DailyReads::META`]) so a restart the same day does not bill again.
//!
//! Memory is bounded: at most [`DAILY_READS_CAP`] keys are remembered. Beyond that every
//! further resource is billed as new (an overestimate, never an underestimate: the
//! budget stays safe).

use std::collections::HashSet;

use chrono::{DateTime, NaiveTime, Utc};
use serde::{Deserialize, Serialize};

/// Most resource keys remembered per day (a key is ~20 bytes: about 10 MB at the cap).
pub const DAILY_READS_CAP: usize = 500_000;

/// What kind of resource X returned (billed at different prices).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    /// A post in `data` or `includes.tweets`, or a media object in `includes.media`.
    Post,
    /// A user (a lookup, or `includes.users`).
    User,
}

/// One resource X returned: its kind and its id (media: its `media_key`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Resource {
    pub kind: ResourceKind,
    pub id: String,
}

impl Resource {
    /// A post (or media) resource.
    pub fn post(id: impl Into<String>) -> Resource {
        Resource {
            kind: ResourceKind::Post,
            id: id.into(),
        }
    }

    /// A user resource.
    pub fn user(id: impl Into<String>) -> Resource {
        Resource {
            kind: ResourceKind::User,
            id: id.into(),
        }
    }

    fn key(&self) -> String {
        match self.kind {
            ResourceKind::Post => format!("p:{}", self.id),
            ResourceKind::User => format!("u:{}", self.id),
        }
    }
}

/// Resources billed (first returned today), by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Billed {
    pub posts: u64,
    pub users: u64,
}

/// The UTC day of `t` as `YYYY-MM-DD`.
pub fn day_of(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

/// The start (00:00 UTC) of the day of `t`, unix milliseconds.
pub fn day_start_ms(t: DateTime<Utc>) -> i64 {
    t.date_naive()
        .and_time(NaiveTime::MIN)
        .and_utc()
        .timestamp_millis()
}

/// The resources returned during one UTC day.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DailyReads {
    /// `YYYY-MM-DD` (UTC).
    day: String,
    seen: HashSet<String>,
}

impl DailyReads {
    /// The meta name it is persisted under.
    pub const META: &'static str = "x_reads_today";

    /// Nothing read yet on the day of `now`.
    pub fn new(now: DateTime<Utc>) -> DailyReads {
        DailyReads {
            day: day_of(now),
            seen: HashSet::new(),
        }
    }

    /// A persisted value, kept only if it is of the day of `now`.
    pub fn restore(bytes: Option<&[u8]>, now: DateTime<Utc>) -> DailyReads {
        bytes
            .and_then(|b| serde_json::from_slice::<DailyReads>(b).ok())
            .filter(|r| r.day == day_of(now))
            .unwrap_or_else(|| DailyReads::new(now))
    }

    /// The persisted form.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// How many resources are remembered today.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether nothing was read today.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Books resources returned at `now`; bills those not yet returned this UTC day.
    pub fn bill<'a>(
        &mut self,
        resources: impl IntoIterator<Item = &'a Resource>,
        now: DateTime<Utc>,
    ) -> Billed {
        let today = day_of(now);
        if self.day != today {
            self.day = today;
            self.seen.clear();
            self.seen.shrink_to_fit();
        }
        let mut billed = Billed::default();
        for r in resources {
            let key = r.key();
            let new = if self.seen.contains(&key) {
                false
            } else {
                if self.seen.len() < DAILY_READS_CAP {
                    self.seen.insert(key);
                }
                true
            };
            if new {
                match r.kind {
                    ResourceKind::Post => billed.posts += 1,
                    ResourceKind::User => billed.users += 1,
                }
            }
        }
        billed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, d, h, 0, 0).unwrap()
    }

    #[test]
    fn a_resource_read_twice_in_one_utc_day_is_billed_once() {
        let mut reads = DailyReads::new(at(2, 10));
        let page = [
            Resource::post("1"),
            Resource::post("2"),
            Resource::user("9"),
        ];
        assert_eq!(reads.bill(&page, at(2, 10)), Billed { posts: 2, users: 1 });
        assert_eq!(reads.bill(&page, at(2, 11)), Billed::default());
        let more = [Resource::post("2"), Resource::post("3")];
        assert_eq!(reads.bill(&more, at(2, 23)), Billed { posts: 1, users: 0 });
        // A post and a user with the same id are different resources.
        assert_eq!(
            reads.bill(&[Resource::user("1")], at(2, 23)),
            Billed { posts: 0, users: 1 }
        );
    }

    #[test]
    fn the_day_turns_at_utc_midnight_and_bills_again() {
        let mut reads = DailyReads::new(at(2, 23));
        let page = [Resource::post("1")];
        assert_eq!(reads.bill(&page, at(2, 23)).posts, 1);
        assert_eq!(reads.bill(&page, at(3, 0)).posts, 1);
        assert_eq!(reads.len(), 1);
        assert_eq!(day_start_ms(at(3, 15)), at(3, 0).timestamp_millis());
    }

    #[test]
    fn a_restart_the_same_day_does_not_bill_again_but_a_new_day_does() {
        let mut reads = DailyReads::new(at(2, 10));
        reads.bill(&[Resource::post("1")], at(2, 10));
        let bytes = reads.to_bytes();
        let mut same = DailyReads::restore(Some(&bytes), at(2, 11));
        assert_eq!(same.bill(&[Resource::post("1")], at(2, 11)).posts, 0);
        let next = DailyReads::restore(Some(&bytes), at(3, 1));
        assert!(next.is_empty());
        assert!(DailyReads::restore(Some(b"garbage"), at(2, 11)).is_empty());
    }

    #[test]
    fn beyond_the_cap_everything_is_billed_and_memory_stops_growing() {
        let mut reads = DailyReads::new(at(2, 10));
        let many: Vec<Resource> = (0..DAILY_READS_CAP + 10)
            .map(|i| Resource::post(i.to_string()))
            .collect();
        assert_eq!(reads.bill(&many, at(2, 10)).posts, many.len() as u64);
        assert_eq!(reads.len(), DAILY_READS_CAP);
        let tail = &many[DAILY_READS_CAP..];
        assert_eq!(reads.bill(tail, at(2, 10)).posts, 10, "overestimates");
    }
}
