//! A governor state store with a hard cap on live keys: governor's own `DashMapStateStore`
//! keeps every key it ever saw, so an address-spraying client could grow it without end.
//!
//! At the cap, a key that is not yet tracked is measured against one shared *overflow*
//! bucket instead of getting its own: the flood of new keys shares a single bucket (and so
//! is mostly refused), keys already tracked are unaffected, and memory stays bounded. The
//! store also tells its owner that it is full, so the idle sweep can run early and make room.

use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use governor::nanos::Nanos;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed, StateStore};

/// The hasher of the store: foldhash with a random seed per map. SipHash cost a third of
/// a hot-key decision (see BENCHMARKS.md); foldhash's seeding is enough that a client
/// cannot precompute colliding keys, and the cap bounds what any collision could cost.
pub type StoreHasher = foldhash::fast::RandomState;

struct Inner<K> {
    map: DashMap<K, InMemoryState, StoreHasher>,
    /// Invariant: the number of entries in `map`, give or take concurrent inserts that
    /// are being counted; it never drifts because the sweep recounts it.
    live: AtomicUsize,
    cap: usize,
    overflow: InMemoryState,
    /// Set when a key was sent to the overflow bucket; cleared by [`BoundedStore::take_full`].
    full: AtomicBool,
}

/// The state store of one keyed limiter. Cheap to clone: clones share the map, so the
/// owner keeps a handle for inspection and reset after giving one to governor.
pub struct BoundedStore<K: Hash + Eq> {
    inner: Arc<Inner<K>>,
}

impl<K: Hash + Eq> Clone for BoundedStore<K> {
    fn clone(&self) -> Self {
        BoundedStore {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K: Hash + Eq + Clone> BoundedStore<K> {
    /// An empty store that tracks at most `cap` keys (at least one).
    pub fn with_cap(cap: usize) -> BoundedStore<K> {
        BoundedStore {
            inner: Arc::new(Inner {
                map: DashMap::with_hasher(StoreHasher::default()),
                live: AtomicUsize::new(0),
                cap: cap.max(1),
                overflow: InMemoryState::default(),
                full: AtomicBool::new(false),
            }),
        }
    }

    /// The most keys this store tracks.
    pub fn cap(&self) -> usize {
        self.inner.cap
    }

    /// The theoretical arrival time stored for `key`, if the key is tracked.
    pub fn peek(&self, key: &K) -> Option<Nanos> {
        self.inner.map.get(key).and_then(|state| peek_state(&state))
    }

    /// Forgets `key`: its next request starts from a full bucket. True if it was tracked.
    pub fn remove(&self, key: &K) -> bool {
        let removed = self.inner.map.remove(key).is_some();
        if removed {
            self.inner.live.fetch_sub(1, Ordering::Relaxed);
        }
        removed
    }

    /// True once since a key last had to share the overflow bucket.
    pub fn take_full(&self) -> bool {
        self.inner.full.swap(false, Ordering::Relaxed)
    }

    fn recount(&self) {
        self.inner
            .live
            .store(self.inner.map.len(), Ordering::Relaxed);
    }
}

/// Reads a state without changing it: the closure refuses, so nothing is written.
fn peek_state(state: &InMemoryState) -> Option<Nanos> {
    let read: Result<(), Option<Nanos>> = state.measure_and_replace(&NotKeyed::NonKey, Err);
    read.err().flatten()
}

impl<K: Hash + Eq + Clone> StateStore for BoundedStore<K> {
    type Key = K;

    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let inner = &*self.inner;
        if let Some(state) = inner.map.get(key) {
            return state.measure_and_replace(&NotKeyed::NonKey, f);
        }
        if inner.live.load(Ordering::Relaxed) >= inner.cap {
            inner.full.store(true, Ordering::Relaxed);
            return inner.overflow.measure_and_replace(&NotKeyed::NonKey, f);
        }
        match inner.map.entry(key.clone()) {
            Entry::Occupied(state) => state.get().measure_and_replace(&NotKeyed::NonKey, f),
            Entry::Vacant(vacant) => {
                inner.live.fetch_add(1, Ordering::Relaxed);
                vacant
                    .insert(InMemoryState::default())
                    .measure_and_replace(&NotKeyed::NonKey, f)
            }
        }
    }
}

impl<K: Hash + Eq + Clone> ShrinkableKeyedStateStore<K> for BoundedStore<K> {
    fn retain_recent(&self, drop_below: Nanos) {
        self.inner
            .map
            .retain(|_, state| peek_state(state).is_some_and(|tat| tat > drop_below));
        self.recount();
    }

    fn shrink_to_fit(&self) {
        self.inner.map.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.inner.map.len()
    }

    fn is_empty(&self) -> bool {
        self.inner.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::time::Duration;

    use governor::clock::FakeRelativeClock;
    use governor::middleware::NoOpMiddleware;
    use governor::nanos::Nanos;
    use governor::{Quota, RateLimiter};

    use super::*;

    type TestLimiter =
        RateLimiter<u32, BoundedStore<u32>, FakeRelativeClock, NoOpMiddleware<Nanos>>;

    fn limiter(cap: usize, clock: &FakeRelativeClock) -> (TestLimiter, BoundedStore<u32>) {
        let store = BoundedStore::with_cap(cap);
        let quota =
            Quota::per_second(NonZeroU32::new(1).unwrap()).allow_burst(NonZeroU32::new(2).unwrap());
        (RateLimiter::new(quota, store.clone(), clock.clone()), store)
    }

    #[test]
    fn keys_beyond_the_cap_share_one_overflow_bucket() {
        let clock = FakeRelativeClock::default();
        let (lim, store) = limiter(2, &clock);
        assert!(lim.check_key(&1).is_ok());
        assert!(lim.check_key(&2).is_ok());
        assert!(!store.take_full());
        // Keys 3, 4 and 5 are new at the cap: together they get one burst of 2.
        assert!(lim.check_key(&3).is_ok());
        assert!(lim.check_key(&4).is_ok());
        assert!(lim.check_key(&5).is_err());
        assert_eq!(lim.len(), 2);
        assert!(store.take_full());
        assert!(!store.take_full());
        // Tracked keys keep their own buckets.
        assert!(lim.check_key(&1).is_ok());
    }

    #[test]
    fn the_sweep_drops_idle_keys_and_makes_room() {
        let clock = FakeRelativeClock::default();
        let (lim, store) = limiter(2, &clock);
        assert!(lim.check_key(&1).is_ok());
        assert!(lim.check_key(&2).is_ok());
        clock.advance(Duration::from_secs(5));
        assert!(lim.check_key(&2).is_ok());
        lim.retain_recent();
        assert_eq!(lim.len(), 1, "key 1 was idle, key 2 was just used");
        assert!(store.peek(&1).is_none());
        assert!(store.peek(&2).is_some());
        assert!(lim.check_key(&3).is_ok());
        assert_eq!(lim.len(), 2);
    }

    #[test]
    fn peeking_does_not_spend_a_token() {
        let clock = FakeRelativeClock::default();
        let (lim, store) = limiter(8, &clock);
        assert!(lim.check_key(&7).is_ok());
        let before = store.peek(&7);
        for _ in 0..10 {
            assert_eq!(store.peek(&7), before);
        }
        assert!(lim.check_key(&7).is_ok());
        assert!(lim.check_key(&7).is_err());
    }

    #[test]
    fn a_removed_key_starts_again_from_a_full_bucket() {
        let clock = FakeRelativeClock::default();
        let (lim, store) = limiter(8, &clock);
        assert!(lim.check_key(&7).is_ok());
        assert!(lim.check_key(&7).is_ok());
        assert!(lim.check_key(&7).is_err());
        assert!(store.remove(&7));
        assert!(!store.remove(&7));
        assert!(lim.check_key(&7).is_ok());
    }
}
