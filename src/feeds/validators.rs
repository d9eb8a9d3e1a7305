//! Conditional GET for feeds: rendered feeds with their validators, kept per feed key
//! (format, filters, size, base URL) under the store generation they were made at.
//!
//! - While the store generation is unchanged, an entry answers by itself: a `304` or the
//!   whole body from memory, no store read, no render.
//! - After any write the next request renders again; the `ETag` is a hash of the body,
//!   so it stays the same unless this feed's content changed (a write elsewhere, or to
//!   posts beyond this feed's size, leaves it as it was). The body depends on the items
//!   alone (no clock), so the `ETag` survives restarts too.
//! - `Last-Modified` is the newest item's time while nothing else is known; when the
//!   content of a feed this cache holds changes, it becomes the time of that change
//!   (never earlier than before, so `If-Modified-Since` never hides a change). An entry
//!   made without history (after a restart or an eviction) uses at least the time the
//!   cache lost its history, so a client's earlier date cannot match a change missed
//!   meanwhile: it gets one full answer, then 304s again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use parking_lot::RwLock;

/// Most feed keys held.
const MAX_ENTRIES: usize = 1024;
/// Most body bytes held.
const MAX_BYTES: usize = 32 * 1024 * 1024;

/// A rendered feed and its validators.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The store generation the body was rendered at.
    pub generation: u64,
    /// Quoted, strong: `"<16 hex digits>"`.
    pub etag: Arc<str>,
    /// Unix seconds.
    pub last_modified: i64,
    pub body: Bytes,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<String, Rendered>,
    bytes: usize,
    /// Unix seconds since which this cache has no history (created or cleared).
    floor: i64,
}

/// The feeds' cache (see the module comment).
#[derive(Debug)]
pub struct FeedCache {
    inner: RwLock<Inner>,
}

impl Default for FeedCache {
    fn default() -> FeedCache {
        FeedCache {
            inner: RwLock::new(Inner {
                floor: unix_now(),
                ..Inner::default()
            }),
        }
    }
}

/// Now, unix seconds.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// FNV-1a, 64 bits: a stable content hash (not for security).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl FeedCache {
    /// The entry of `key` if it was rendered at `generation` (still current).
    pub fn fresh(&self, key: &str, generation: u64) -> Option<Rendered> {
        self.inner
            .read()
            .map
            .get(key)
            .filter(|r| r.generation == generation)
            .cloned()
    }

    /// Keeps `body`, rendered at `generation` from items whose newest is `newest_ms`,
    /// and returns it with its validators. `now` is unix seconds.
    pub fn store(
        &self,
        key: &str,
        generation: u64,
        body: Bytes,
        newest_ms: Option<i64>,
        now: i64,
    ) -> Rendered {
        let etag: Arc<str> = format!("\"{:016x}\"", fnv1a(&body)).into();
        let newest = newest_ms.map(|ms| ms.div_euclid(1000)).unwrap_or(0);
        let mut inner = self.inner.write();
        let last_modified = match inner.map.get(key) {
            // Same content: the same validators.
            Some(prev) if prev.etag == etag => prev.last_modified,
            // Changed: now (and later than before, so the old date no longer matches).
            Some(prev) => newest.max(now).max(prev.last_modified + 1),
            None => newest.max(inner.floor),
        };
        // A render that lost a race with a newer one does not replace it.
        if inner
            .map
            .get(key)
            .is_some_and(|prev| prev.generation > generation)
        {
            return Rendered {
                generation,
                etag,
                last_modified,
                body,
            };
        }
        let rendered = Rendered {
            generation,
            etag,
            last_modified,
            body,
        };
        let len = rendered.body.len();
        if let Some(old) = inner.map.insert(key.to_string(), rendered.clone()) {
            inner.bytes -= old.body.len();
        }
        inner.bytes += len;
        if inner.map.len() > MAX_ENTRIES || inner.bytes > MAX_BYTES {
            // Stale generations first, then everything but this entry.
            inner.map.retain(|_, r| r.generation >= generation);
            if inner.map.len() > MAX_ENTRIES
                || inner.map.values().map(|r| r.body.len()).sum::<usize>() > MAX_BYTES
            {
                inner.map.retain(|k, _| k == key);
            }
            inner.bytes = inner.map.values().map(|r| r.body.len()).sum();
            inner.floor = now;
        }
        rendered
    }
}

/// True when a request with these validators already has `rendered`: `If-None-Match`
/// names its `ETag` (weak comparison, or `*`), or, only without `If-None-Match`,
/// `If-Modified-Since` is at or after its `Last-Modified` (RFC 9110, 13.1.1 and 13.1.3).
pub fn not_modified(
    if_none_match: Option<&str>,
    if_modified_since: Option<i64>,
    rendered: &Rendered,
) -> bool {
    match if_none_match {
        Some(tags) => tags
            .split(',')
            .map(str::trim)
            .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == &*rendered.etag),
        None => if_modified_since.is_some_and(|since| since >= rendered.last_modified),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_etag_changes_only_with_the_content_and_last_modified_only_forward() {
        let cache = FeedCache::default();
        let floor = cache.inner.read().floor;
        let a = cache.store(
            "k",
            1,
            Bytes::from_static(b"a"),
            Some(1_000_000),
            floor + 10,
        );
        // Without history: not before the cache's floor.
        assert_eq!(a.last_modified, floor.max(1000));
        assert!(cache.fresh("k", 1).is_some());
        assert!(cache.fresh("k", 2).is_none());
        // Another write, same content: same validators.
        let same = cache.store(
            "k",
            2,
            Bytes::from_static(b"a"),
            Some(1_000_000),
            floor + 20,
        );
        assert_eq!(
            (same.etag.clone(), same.last_modified),
            (a.etag.clone(), a.last_modified)
        );
        // Changed content (an edit: the newest time did not move): a later date.
        let edited = cache.store(
            "k",
            3,
            Bytes::from_static(b"b"),
            Some(1_000_000),
            floor + 30,
        );
        assert_ne!(edited.etag, a.etag);
        assert_eq!(edited.last_modified, floor + 30);
        // A stale render does not replace the newer one.
        cache.store("k", 2, Bytes::from_static(b"c"), None, floor + 40);
        assert_eq!(cache.fresh("k", 3).unwrap().etag, edited.etag);
    }

    #[test]
    fn validators_decide_by_etag_first_then_by_date() {
        let r = Rendered {
            generation: 1,
            etag: "\"00000000000000ab\"".into(),
            last_modified: 100,
            body: Bytes::new(),
        };
        assert!(not_modified(Some("\"00000000000000ab\""), None, &r));
        assert!(not_modified(
            Some("\"x\", W/\"00000000000000ab\""),
            None,
            &r
        ));
        assert!(not_modified(Some("*"), None, &r));
        assert!(!not_modified(Some("\"x\""), Some(200), &r));
        assert!(not_modified(None, Some(100), &r));
        assert!(!not_modified(None, Some(99), &r));
        assert!(!not_modified(None, None, &r));
    }
}
