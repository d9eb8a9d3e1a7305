//! The live feed: what reaches browsers when posts are stored or deleted.
//!
//! [`Hub`] is an in-process ring of the latest [`LiveEvent`]s with a `watch` of the newest
//! sequence number. Only `Store::apply` publishes into it (`storage/change.rs`), after the
//! change is on disk and visible to readers, so an event always names a post a reader can
//! find (or, for a deletion, no longer finds); a failed write publishes nothing. Whatever
//! wrote the change — a scheduled run, a refresh, `POST /api/posts`, an admin delete, an
//! import, the Activity stream — is published the same way.
//!
//! Subscribers (`GET /api/feed/events`, `http/feed_events.rs`) keep a cursor and read
//! [`Hub::after`] when woken: one buffer for every subscriber, so a thousand open streams
//! cost a cursor each, not a queue each. A subscriber that falls more than [`RING`] events
//! behind gets a gap ([`Lagged`]) and is told to reload.
//!
//! Sequence numbers start at the microseconds since the epoch when the process started,
//! so a number handed out by an earlier run of the server is (short of a clock set back)
//! below every number of this run and is recognised as not this run's.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::domain::post::{Platform, PostKind};

/// Events kept for subscribers that are behind and for `Last-Event-ID` resumes.
pub const RING: usize = 4096;
/// A change that would publish more events than this (a leader deleted with its posts, an
/// import) publishes one [`Change::Reset`] instead: subscribers reload.
pub const MAX_EVENTS_PER_CHANGE: usize = 1000;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A post was stored for the first time.
    New,
    /// A stored post was removed.
    Deleted,
    /// Too much changed at once to say post by post: reload.
    Reset,
}

impl Change {
    /// The SSE event name.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::New => "new",
            Change::Deleted => "deleted",
            Change::Reset => "reset",
        }
    }
}

/// The post an event is about: what the feed's filters look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostRef {
    pub post_id: u64,
    pub leader_id: u64,
    pub platform: Platform,
    pub kind: PostKind,
    pub timestamp_ms: i64,
}

/// One published event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveEvent {
    /// Unique and increasing within a run (see the module docs).
    pub seq: u64,
    /// The highest post id taken when the event was published: every post stored before
    /// it has an id at most this (a resume from another run replays posts above it).
    pub high_water: u64,
    pub change: Change,
    /// `None` for [`Change::Reset`].
    pub post: Option<PostRef>,
}

/// A subscriber's cursor is older than the ring (or not of this run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lagged;

#[derive(Debug)]
struct Ring {
    events: VecDeque<LiveEvent>,
    /// The sequence number the next event gets.
    next: u64,
    high_water: u64,
}

/// The in-process hub (see the module docs). One per store; shared by `Arc`.
#[derive(Debug)]
pub struct Hub {
    ring: Mutex<Ring>,
    latest: watch::Sender<u64>,
    closed: AtomicBool,
}

impl Default for Hub {
    fn default() -> Hub {
        let start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 2))
            .unwrap_or(1)
            .max(1);
        Hub::starting_at(start)
    }
}

impl Hub {
    /// A hub whose first event gets sequence number `first` (at least 1).
    pub fn starting_at(first: u64) -> Hub {
        let first = first.max(1);
        Hub {
            ring: Mutex::new(Ring {
                events: VecDeque::new(),
                next: first,
                high_water: 0,
            }),
            latest: watch::Sender::new(first - 1),
            closed: AtomicBool::new(false),
        }
    }

    /// Publishes the events of one committed change, in order. `high_water` is the highest
    /// post id taken once the change is applied. More than [`MAX_EVENTS_PER_CHANGE`]
    /// events become one reset.
    pub fn publish(&self, changes: Vec<(Change, Option<PostRef>)>, high_water: u64) {
        if changes.is_empty() {
            return;
        }
        let changes = if changes.len() > MAX_EVENTS_PER_CHANGE {
            vec![(Change::Reset, None)]
        } else {
            changes
        };
        let latest = {
            let mut ring = self.ring.lock();
            ring.high_water = ring.high_water.max(high_water);
            for (change, post) in changes {
                let event = LiveEvent {
                    seq: ring.next,
                    high_water: ring.high_water,
                    change,
                    post,
                };
                ring.next += 1;
                if ring.events.len() == RING {
                    ring.events.pop_front();
                }
                ring.events.push_back(event);
            }
            ring.next - 1
        };
        // Works with no subscriber at all (unlike `send`).
        self.latest.send_replace(latest);
    }

    /// A receiver woken at every publish (and at [`Hub::close`]). Subscribe before
    /// reading [`Hub::after`], so nothing published in between is missed.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.latest.subscribe()
    }

    /// The newest sequence number handed out (or one below the first, before any) and
    /// the high-water post id: where a new subscriber starts.
    pub fn position(&self) -> (u64, u64) {
        let ring = self.ring.lock();
        (ring.next - 1, ring.high_water)
    }

    /// True when `seq` is a position of this run that the ring still covers: every event
    /// after it is in the ring.
    pub fn covers(&self, seq: u64) -> bool {
        let ring = self.ring.lock();
        Hub::covered(&ring, seq)
    }

    fn covered(ring: &Ring, seq: u64) -> bool {
        let oldest = ring.events.front().map_or(ring.next, |e| e.seq);
        seq < ring.next && seq.saturating_add(1) >= oldest
    }

    /// The events after `seq`, oldest first, at most `limit`; [`Lagged`] when the ring
    /// no longer holds all of them.
    pub fn after(&self, seq: u64, limit: usize) -> Result<Vec<LiveEvent>, Lagged> {
        let ring = self.ring.lock();
        if !Hub::covered(&ring, seq) {
            return Err(Lagged);
        }
        let oldest = ring.events.front().map_or(ring.next, |e| e.seq);
        let skip = usize::try_from(seq + 1 - oldest).unwrap_or(usize::MAX);
        Ok(ring.events.iter().skip(skip).take(limit).copied().collect())
    }

    /// Ends every subscription (shutdown): subscribers see [`Hub::is_closed`] when woken.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.latest.send_modify(|_| {});
    }

    /// True once [`Hub::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(id: u64) -> Option<PostRef> {
        Some(PostRef {
            post_id: id,
            leader_id: 1,
            platform: Platform::X,
            kind: PostKind::Post,
            timestamp_ms: 0,
        })
    }

    #[test]
    fn events_get_increasing_numbers_and_subscribers_read_what_follows_their_cursor() {
        let hub = Hub::starting_at(100);
        assert_eq!(hub.position(), (99, 0));
        assert_eq!(hub.after(99, 10), Ok(vec![]));
        let mut rx = hub.subscribe();
        hub.publish(vec![(Change::New, post(1)), (Change::Deleted, post(2))], 5);
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), 101);
        let all = hub.after(99, 10).unwrap();
        assert_eq!(
            all.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![100, 101]
        );
        assert_eq!(all[1].change, Change::Deleted);
        assert_eq!(all[1].high_water, 5);
        assert_eq!(hub.after(100, 10).unwrap().len(), 1);
        assert_eq!(hub.after(101, 10), Ok(vec![]));
        assert_eq!(hub.after(99, 1).unwrap().len(), 1);
        // Not of this run: before its first number, or beyond its newest.
        assert_eq!(hub.after(5, 10), Err(Lagged));
        assert_eq!(hub.after(102, 10), Err(Lagged));
    }

    #[test]
    fn a_cursor_older_than_the_ring_is_a_gap() {
        let hub = Hub::starting_at(1);
        for i in 0..(RING as u64 + 10) {
            hub.publish(vec![(Change::New, post(i))], i);
        }
        // Events 1..=RING+10 were published; the ring holds 11 onwards.
        assert!(!hub.covers(0));
        assert!(!hub.covers(9));
        assert!(hub.covers(10));
        assert_eq!(hub.after(9, 1), Err(Lagged));
        assert_eq!(hub.after(10, usize::MAX).unwrap().len(), RING);
        assert_eq!(hub.after(10, 1).unwrap()[0].seq, 11);
    }

    #[test]
    fn a_huge_change_is_one_reset_and_an_empty_one_nothing() {
        let hub = Hub::starting_at(1);
        hub.publish(vec![], 3);
        assert_eq!(hub.position(), (0, 0));
        hub.publish(
            (0..=MAX_EVENTS_PER_CHANGE as u64)
                .map(|i| (Change::Deleted, post(i)))
                .collect(),
            9,
        );
        let events = hub.after(0, 10).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].change, Change::Reset);
        assert_eq!(events[0].post, None);
    }

    #[test]
    fn closing_wakes_subscribers() {
        let hub = Hub::starting_at(1);
        let mut rx = hub.subscribe();
        assert!(!hub.is_closed());
        hub.close();
        assert!(rx.has_changed().unwrap());
        rx.borrow_and_update();
        assert!(hub.is_closed());
    }
}
