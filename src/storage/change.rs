//! The unit of work. A writer describes its change as a [`ChangeSet`] — sled puts and
//! removes, feed-index additions and removals, leader and `since_id` updates, review
//! counter movements, the id sequences — and hands it to [`Store::apply`], the one
//! function that commits (`apply_batch` + flush) and only then updates the in-memory
//! state and bumps the generation. No writer locks the index, commits or undoes. Before
//! the batch it checks free space against the reserve; after a failed flush it hides the
//! database from readers and leaves the store to be reopened (`storage/disk.rs`).
//!
//! Anything else a later feature must write atomically with a change (a stream
//! position, a tombstone) is one [`ChangeSet::put`] or [`ChangeSet::remove`]; a
//! notification outbox entry is one [`ChangeSet::outbox_put`] (which also wakes delivery).

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use sled::IVec;

use crate::domain::leader::Leader;
use crate::domain::post::Platform;
use crate::live::{Change, PostRef};
use crate::storage::feed_index::{Entry, FeedIndex};
use crate::storage::{codec, disk, keys, snapshot, Ids, Store, StoreError};

/// Meta name of the replication stream position applied (`crate::replication`).
pub const REPL_POSITION: &str = "repl:position";

/// How a change moves the review counters. Decrements saturate, so counters that
/// drifted never underflow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ReviewCounts {
    added: u64,
    removed: u64,
    pending_added: u64,
    pending_removed: u64,
}

/// One write, described: everything [`Store::apply`] commits together.
#[derive(Debug, Default)]
pub struct ChangeSet {
    /// Raw key writes, in order (`None` removes the key).
    writes: Vec<(IVec, Option<IVec>)>,
    index_removed: Vec<Entry>,
    index_added: Vec<Entry>,
    leaders_put: Vec<Leader>,
    leaders_removed: Vec<u64>,
    newest_x: HashMap<u64, Option<String>>,
    reviews: ReviewCounts,
    /// True once the change moves posts or reviews: the counters are rewritten.
    counted: bool,
    ids: Option<Ids>,
    /// True once the change adds notification outbox entries: delivery is woken.
    outbox: bool,
    /// The posts it adds stay out of the in-memory feed index (an offline bulk import,
    /// see [`ChangeSet::leave_unindexed`]).
    unindexed: bool,
}

impl ChangeSet {
    /// Writes `value` under `key`.
    pub fn put(&mut self, key: impl Into<IVec>, value: impl Into<IVec>) {
        self.writes.push((key.into(), Some(value.into())));
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: impl Into<IVec>) {
        self.writes.push((key.into(), None));
    }

    /// Writes a notification outbox entry (`Q` key); the delivery actor is woken once
    /// the change is on disk.
    pub fn outbox_put(&mut self, key: impl Into<IVec>, value: impl Into<IVec>) {
        self.put(key, value);
        self.outbox = true;
    }

    /// Adds a post's place in the feed order (its `T` key is the caller's to write).
    pub(crate) fn index_insert(&mut self, entry: Entry) {
        self.index_added.push(entry);
        self.counted = true;
    }

    /// Removes a post's place in the feed order. Removals apply before additions.
    pub(crate) fn index_remove(&mut self, entry: Entry) {
        self.index_removed.push(entry);
        self.counted = true;
    }

    /// Stores a leader record and shows it to readers.
    pub fn put_leader(&mut self, leader: Leader) -> Result<(), StoreError> {
        self.put(
            &keys::id_key(keys::LEADER, leader.id)[..],
            codec::encode(&leader)?,
        );
        self.leaders_put.push(leader);
        Ok(())
    }

    /// Removes a leader record with its cached X user id and `since_id`.
    pub fn remove_leader(&mut self, id: u64) {
        self.remove(&keys::id_key(keys::LEADER, id)[..]);
        self.forget_x_account(id);
        self.leaders_removed.push(id);
    }

    /// Forgets what belonged to a leader's X account: the cached user id and `since_id`.
    pub fn forget_x_account(&mut self, leader_id: u64) {
        self.remove(&keys::id_key(keys::X_USER, leader_id)[..]);
        self.remove(&keys::id_key(keys::NEWEST, leader_id)[..]);
        self.newest_x.insert(leader_id, None);
    }

    /// Records `ext` as the newest X post id stored for a leader (its next `since_id`).
    pub fn set_newest_x(&mut self, leader_id: u64, ext: &str) {
        self.put(&keys::id_key(keys::NEWEST, leader_id)[..], ext.as_bytes());
        self.newest_x.insert(leader_id, Some(ext.to_string()));
    }

    /// Counts a new review item.
    pub fn review_added(&mut self, pending: bool) {
        self.reviews.added += 1;
        self.reviews.pending_added += u64::from(pending);
        self.counted = true;
    }

    /// Counts a removed review item.
    pub fn review_removed(&mut self, pending: bool) {
        self.reviews.removed += 1;
        self.reviews.pending_removed += u64::from(pending);
        self.counted = true;
    }

    /// Counts a review item that changed state.
    pub fn review_state_changed(&mut self, was_pending: bool, is_pending: bool) {
        self.reviews.pending_removed += u64::from(was_pending);
        self.reviews.pending_added += u64::from(is_pending);
        self.counted = true;
    }

    /// The posts this change adds get their `T` keys but stay out of the in-memory feed
    /// index, unjournaled and unannounced: for `amber import`, which has the database to
    /// itself, so the index (16 bytes a post, and more in its journal) does not grow
    /// with the backup. The commit removes `M:index_snapshot`, so whichever process opens
    /// the database next rebuilds the index from the `T` keys; the post counters still
    /// count them ([`Store::unindexed`]). Removals still apply to the index as usual.
    pub(crate) fn leave_unindexed(&mut self) {
        self.unindexed = true;
    }

    /// The id sequences after this change (persisted with it).
    pub(crate) fn set_ids(&mut self, ids: Ids) {
        self.ids = Some(ids);
    }

    /// How many raw key writes the change holds.
    pub(crate) fn write_count(&self) -> usize {
        self.writes.len()
    }

    /// True when applying would change nothing.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
            && !self.counted
            && self.leaders_put.is_empty()
            && self.leaders_removed.is_empty()
            && self.newest_x.is_empty()
            && self.ids.is_none()
    }
}

/// Posts per platform after removing then adding these entries, computed from the
/// index as it is (the index itself changes only after the commit). The index is a
/// set keyed by (timestamp, post id): re-adding a present key changes nothing.
fn platform_counts(index: &FeedIndex, removed: &[Entry], added: &[Entry]) -> [u64; 3] {
    let mut touched: HashMap<(i64, u64), Option<Platform>> = HashMap::new();
    let mut delta = [0i64; 3];
    let slot = |p: Platform| usize::from(p.code() - 1);
    for e in removed {
        let now = touched
            .entry((e.timestamp_ms, e.post_id))
            .or_insert_with(|| index.get(e.timestamp_ms, e.post_id).map(|x| x.platform));
        if let Some(p) = now.take() {
            delta[slot(p)] -= 1;
        }
    }
    for e in added {
        let now = touched
            .entry((e.timestamp_ms, e.post_id))
            .or_insert_with(|| index.get(e.timestamp_ms, e.post_id).map(|x| x.platform));
        if now.is_none() {
            delta[slot(e.platform)] += 1;
            *now = Some(e.platform);
        }
    }
    let mut out = [0u64; 3];
    for p in Platform::ALL {
        out[slot(p)] = (index.platform_len(p) as u64).saturating_add_signed(delta[slot(p)]);
    }
    out
}

/// The live events of a change, from the index as it was before it: a post that enters
/// the index is new, one that leaves it (and does not come back in the same change) is
/// deleted. A post the change moves (an edit of its time, leader or kind) is neither.
fn live_changes(
    index: &FeedIndex,
    removed: &[Entry],
    added: &[Entry],
) -> Vec<(Change, Option<PostRef>)> {
    use std::collections::HashSet;
    let as_ref = |e: &Entry| PostRef {
        post_id: e.post_id,
        leader_id: e.leader_id,
        platform: e.platform,
        kind: e.kind,
        timestamp_ms: e.timestamp_ms,
    };
    let added_ids: HashSet<u64> = added.iter().map(|e| e.post_id).collect();
    let removed_ids: HashSet<u64> = removed.iter().map(|e| e.post_id).collect();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for e in removed {
        if !added_ids.contains(&e.post_id)
            && index.get(e.timestamp_ms, e.post_id).is_some()
            && seen.insert(e.post_id)
        {
            out.push((Change::Deleted, Some(as_ref(e))));
        }
    }
    for e in added {
        if !removed_ids.contains(&e.post_id)
            && index.get(e.timestamp_ms, e.post_id).is_none()
            && seen.insert(e.post_id)
        {
            out.push((Change::New, Some(as_ref(e))));
        }
    }
    out
}

impl Store {
    /// Applies one change: commits it (one atomic batch, then a flush), and only once it
    /// is on disk updates the index, leaders, `since_id`s, counters and id sequences
    /// readers see, then bumps the generation. On error the in-memory state is untouched.
    pub fn apply(&mut self, mut change: ChangeSet) -> Result<(), StoreError> {
        if let Some(position) = self.stamp.take() {
            change.put(keys::named_key(keys::META, REPL_POSITION), position);
        }
        if change.is_empty() {
            return Ok(());
        }
        // Refuse before sled is touched while free space is below the reserve.
        self.shared.disk.check()?;
        let ChangeSet {
            writes,
            index_removed,
            index_added,
            leaders_put,
            leaders_removed,
            newest_x,
            reviews,
            counted,
            ids,
            outbox,
            unindexed,
        } = change;
        // Posts left out of the index (see `leave_unindexed`), per platform slot.
        let mut unindexed_added = [0u64; 3];
        let index_added = if unindexed {
            for e in &index_added {
                unindexed_added[usize::from(e.platform.code() - 1)] += 1;
            }
            Vec::new()
        } else {
            index_added
        };
        // Posts that existed before this change and whose record it writes: their
        // renderings go stale when it becomes visible (new posts have none yet).
        let rewritten: Vec<u64> = writes
            .iter()
            .filter(|(key, _)| key.len() == 9 && key[0] == keys::POST)
            .filter_map(|(key, _)| keys::id_from_key(key))
            .filter(|id| *id < self.ids.post)
            .collect();
        // A leader's name and handles are in its posts' renderings.
        let leaders_touched: Vec<u64> = leaders_put
            .iter()
            .map(|l| l.id)
            .chain(leaders_removed.iter().copied())
            .collect();
        let mut batch = sled::Batch::default();
        // Kept to tell, after a failed flush, whether the batch reached the disk.
        let written = writes.clone();
        for (key, value) in writes {
            match value {
                Some(v) => batch.insert(key, v),
                None => batch.remove(key),
            }
        }
        let review_items = self
            .shared
            .review_items
            .load(Ordering::Relaxed)
            .saturating_sub(reviews.removed)
            + reviews.added;
        let pending_reviews = self
            .shared
            .pending_reviews
            .load(Ordering::Relaxed)
            .saturating_sub(reviews.pending_removed)
            + reviews.pending_added;
        if counted {
            let mut counts =
                platform_counts(&self.shared.index.read(), &index_removed, &index_added);
            for (slot, n) in counts.iter_mut().enumerate() {
                *n += self.unindexed[slot] + unindexed_added[slot];
            }
            for (p, n) in Platform::ALL.iter().zip(counts) {
                let name = format!("posts:{}", p.as_str());
                batch.insert(keys::named_key(keys::COUNTER, &name), &n.to_be_bytes());
            }
            let posts: u64 = counts.iter().sum();
            batch.insert(
                keys::named_key(keys::COUNTER, "posts"),
                &posts.to_be_bytes(),
            );
            batch.insert(
                keys::named_key(keys::COUNTER, "reviews"),
                &review_items.to_be_bytes(),
            );
            batch.insert(
                keys::named_key(keys::COUNTER, "reviews:pending"),
                &pending_reviews.to_be_bytes(),
            );
        }
        if let Some(ids) = ids {
            for (name, next) in [
                ("seq:leader", ids.leader),
                ("seq:post", ids.post),
                ("seq:review", ids.review),
            ] {
                batch.insert(keys::named_key(keys::META, name), &next.to_be_bytes());
            }
        }
        if unindexed {
            // The index on disk no longer covers every post: the next open rebuilds it.
            batch.remove(keys::named_key(keys::META, "index_snapshot"));
        }
        let journaled = index_removed.len() + index_added.len();
        if journaled > 0 {
            batch.insert(
                &keys::id_key(keys::JOURNAL, self.journal.next)[..],
                snapshot::journal_record(&index_removed, &index_added),
            );
        }

        let committed = self.tree.apply_batch(batch).and_then(|()| self.db.flush());
        let visible_at = self.shared.generation.load(Ordering::Acquire) + 1;
        if let Err(err) = committed {
            // sled shows the batch in memory now and refuses every later write: hide the
            // database from readers at once; the writer closes and reopens it
            // (storage/disk.rs), so nothing of this change is seen unless it is on disk.
            // The reopen reloads the index and the journal's position from disk; readers'
            // renderings must not outlive the batch either.
            *self.shared.tree.write() = None;
            self.shared.disk.set_closed(true);
            self.failed = Some(written);
            self.shared.rendered.forget_all(visible_at);
            self.shared.generation.fetch_add(1, Ordering::Release);
            tracing::error!(error = %err, "a commit failed; the database is reopened");
            if disk::is_disk_full(&err) {
                return Err(self.shared.disk.space().map(|s| s.error()).unwrap_or(
                    StoreError::DiskFull {
                        available_mb: 0,
                        reserve_mb: 0,
                    },
                ));
            }
            return Err(err.into());
        }

        if journaled > 0 {
            self.journal.next += 1;
        }
        // A replication snapshot being read must learn which keys moved under it.
        self.shared.capture.note(&written);
        self.journal.pending += journaled;
        if unindexed {
            for (slot, n) in unindexed_added.iter().enumerate() {
                self.unindexed[slot] += n;
            }
            self.index_stale = true;
            // sled names no snapshot now: the file it named is dead.
            if let Some((tag, _)) = self.journal.snapshot.take() {
                let _ = std::fs::remove_file(self.snapshot_file(tag));
            }
        }
        // On disk: what it does to the feed, for the live hub (read before the index moves).
        let live = live_changes(&self.shared.index.read(), &index_removed, &index_added);
        // On disk: now show it.
        if !index_removed.is_empty() || !index_added.is_empty() {
            let mut index = self.shared.index.write();
            for e in &index_removed {
                index.remove(e);
            }
            for e in index_added {
                index.insert(e);
            }
        }
        if counted {
            self.shared
                .review_items
                .store(review_items, Ordering::Relaxed);
            self.shared
                .pending_reviews
                .store(pending_reviews, Ordering::Relaxed);
        }
        if !leaders_put.is_empty() || !leaders_removed.is_empty() {
            let mut leaders = self.shared.leaders.write();
            for id in leaders_removed {
                leaders.remove(&id);
            }
            for leader in leaders_put {
                leaders.insert(leader.id, leader);
            }
        }
        if !newest_x.is_empty() {
            let mut newest = self.shared.newest_x.write();
            for (leader, ext) in newest_x {
                match ext {
                    Some(ext) => newest.insert(leader, ext),
                    None => newest.remove(&leader),
                };
            }
        }
        if let Some(ids) = ids {
            self.ids = ids;
        }
        let mut stale = rewritten;
        if !leaders_touched.is_empty() {
            let index = self.shared.index.read();
            for id in leaders_touched {
                stale.extend(index.leader_entries(id).iter().map(|e| e.post_id));
            }
        }
        if !stale.is_empty() {
            self.shared.rendered.changed(stale, visible_at);
        }
        self.shared.generation.fetch_add(1, Ordering::Release);
        if outbox {
            self.shared.notify.wake();
        }
        // Visible to every reader now: tell the live feed (`crate::live`).
        self.shared
            .live
            .publish(live, self.ids.post.saturating_sub(1));
        // The change is durable with its journal record already; a snapshot only
        // shortens the next start's replay, so failing to write one is not an error.
        self.maybe_snapshot();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ts: i64, id: u64, platform: Platform) -> Entry {
        Entry {
            timestamp_ms: ts,
            post_id: id,
            leader_id: 1,
            platform,
            kind: crate::domain::post::PostKind::Post,
        }
    }

    #[test]
    fn counts_follow_removals_then_additions_like_the_index() {
        let mut index = FeedIndex::default();
        index.insert(entry(1, 1, Platform::X));
        index.insert(entry(2, 2, Platform::News));
        let counts = platform_counts(
            &index,
            // One present, one absent removal.
            &[entry(1, 1, Platform::X), entry(9, 9, Platform::X)],
            // A new post, a re-add of a present key, a moved post, an added twice.
            &[
                entry(3, 3, Platform::Facebook),
                entry(2, 2, Platform::News),
                entry(1, 1, Platform::News),
                entry(4, 4, Platform::X),
                entry(4, 4, Platform::X),
            ],
        );
        let mut after = FeedIndex::default();
        for e in [
            entry(2, 2, Platform::News),
            entry(3, 3, Platform::Facebook),
            entry(1, 1, Platform::News),
            entry(4, 4, Platform::X),
        ] {
            after.insert(e);
        }
        let want: Vec<u64> = Platform::ALL
            .iter()
            .map(|p| after.platform_len(*p) as u64)
            .collect();
        assert_eq!(counts.to_vec(), want);
    }

    #[test]
    fn a_change_with_nothing_in_it_is_empty() {
        let mut change = ChangeSet::default();
        assert!(change.is_empty());
        change.put(&b"Mx"[..], &b"1"[..]);
        assert!(!change.is_empty());
    }
}
