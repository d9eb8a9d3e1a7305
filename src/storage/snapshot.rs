//! The feed index's fast restart, after a clean stop or a crash alike: a snapshot file
//! plus the index journal.
//!
//! - Every change that moves the index writes, in its own sled batch, a journal record
//!   `J` + sequence number holding the entries it removed and added ([`Store::apply`]).
//! - Every [`SNAPSHOT_EVERY`] journaled entries, and at a clean shutdown, the writer saves
//!   the whole index to `$DATA_DIR/db.index-<tag>` (tag, the journal sequence it includes,
//!   the entries, a CRC) and fsyncs it; then sled points `M:index_snapshot` at it (tag and
//!   sequence) and flushes; only then is the previous file deleted, and the journal
//!   records the snapshot includes removed, [`DROP_BATCH`] to a sled batch (start-up
//!   reads only the records after the sequence sled names, so a crash between these steps
//!   leaves nothing wrong, only dead records the next snapshot removes). So sled always
//!   names a file that exists, and holds every journal record after it.
//! - At start the index is that snapshot plus the journal records after it, used only if
//!   the file is whole (CRC), carries the tag and sequence sled names, the records follow
//!   it without a gap and the result holds as many posts as the post counter written with
//!   every change. Anything else rebuilds it from the time index (`T` keys) and saves a
//!   snapshot at once. So a crash can never bring back a stale index: what sled holds
//!   decides, and sled commits a change and its journal record together.

use std::path::PathBuf;

use crate::storage::feed_index::{Entry, FeedIndex};
use crate::storage::{get_u64, keys, Store, StoreError};

/// Journaled index entries after which the writer saves a new snapshot: at most this
/// many are replayed at start.
pub const SNAPSHOT_EVERY: usize = 200_000;

/// Journal records removed per sled batch after a snapshot.
const DROP_BATCH: usize = 1_000;

/// Where the journal stands; kept by the writer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Journal {
    /// Sequence number of the next journal record.
    pub next: u64,
    /// Entries journaled since the snapshot sled names.
    pub pending: usize,
    /// The snapshot sled names: (tag, last journal sequence it includes).
    pub snapshot: Option<(u64, u64)>,
}

/// Encodes one change's index movement: removed count, added count, then 16 bytes each.
pub(crate) fn journal_record(removed: &[Entry], added: &[Entry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + 16 * (removed.len() + added.len()));
    out.extend_from_slice(&(removed.len() as u32).to_le_bytes());
    out.extend_from_slice(&(added.len() as u32).to_le_bytes());
    for e in removed.iter().chain(added) {
        out.extend_from_slice(&e.to_bytes());
    }
    out
}

/// Applies a journal record to `index`; false when it is not one.
fn replay(index: &mut FeedIndex, record: &[u8]) -> bool {
    let (Some(removed), Some(added)) = (record.get(..4), record.get(4..8)) else {
        return false;
    };
    let removed = u32::from_le_bytes(removed.try_into().unwrap_or_default()) as usize;
    let added = u32::from_le_bytes(added.try_into().unwrap_or_default()) as usize;
    let body = &record[8..];
    if Some(body.len()) != (removed + added).checked_mul(16) {
        return false;
    }
    let mut entries = body.chunks_exact(16).map(Entry::from_bytes);
    for _ in 0..removed {
        match entries.next().flatten() {
            Some(e) => {
                index.remove(&e);
            }
            None => return false,
        }
    }
    for e in entries {
        match e {
            Some(e) => index.insert(e),
            None => return false,
        }
    }
    true
}

impl Store {
    pub(super) fn snapshot_file(&self, tag: u64) -> PathBuf {
        self.dir.with_extension(format!("index-{tag:016x}"))
    }

    /// Loads the feed index: the snapshot sled names plus the journal after it, or else
    /// by scanning the time index (and then saves a snapshot).
    pub(super) fn load_index(&mut self) -> Result<FeedIndex, StoreError> {
        // A file of the format before the journal: never trusted, just removed.
        let _ = std::fs::remove_file(self.dir.with_extension("index"));
        let stored_posts = get_u64(&self.tree, &keys::named_key(keys::COUNTER, "posts"))?;
        let marker = self
            .tree
            .get(keys::named_key(keys::META, "index_snapshot"))?
            .and_then(|v| <[u8; 16]>::try_from(v.as_ref()).ok())
            .map(|v| {
                let (tag, seq) = v.split_at(8);
                (
                    u64::from_be_bytes(tag.try_into().unwrap_or_default()),
                    u64::from_be_bytes(seq.try_into().unwrap_or_default()),
                )
            });
        if let Some((tag, seq)) = marker {
            match self.load_snapshot_and_journal(tag, seq)? {
                Some((index, journal)) if index.len() as u64 == stored_posts.unwrap_or(0) => {
                    tracing::info!(
                        posts = index.len(),
                        replayed = journal.pending,
                        "feed index loaded from its snapshot and journal"
                    );
                    self.journal = journal;
                    return Ok(index);
                }
                _ => tracing::warn!(
                    "feed index snapshot or journal unusable; rebuilding from the time index"
                ),
            }
        }
        let index = self.scan_time_index()?;
        tracing::info!(
            posts = index.len(),
            "feed index rebuilt from the time index"
        );
        // Journal records (if any) describe an index that is now rebuilt: start afresh.
        let last = self
            .tree
            .scan_prefix([keys::JOURNAL])
            .keys()
            .next_back()
            .transpose()?
            .and_then(|k| keys::id_from_key(&k));
        self.journal = Journal {
            next: last.map_or(1, |l| l + 1),
            pending: 0,
            snapshot: marker,
        };
        self.save_index_snapshot(&index)?;
        Ok(index)
    }

    /// The index from the file `tag` names and the journal after `seq`, or `None` when
    /// either is not what sled says it is.
    fn load_snapshot_and_journal(
        &self,
        tag: u64,
        seq: u64,
    ) -> Result<Option<(FeedIndex, Journal)>, StoreError> {
        let Some(mut index) = std::fs::read(self.snapshot_file(tag))
            .ok()
            .and_then(|b| FeedIndex::from_snapshot(&b, tag, seq))
        else {
            return Ok(None);
        };
        let mut journal = Journal {
            next: seq + 1,
            pending: 0,
            snapshot: Some((tag, seq)),
        };
        let from = keys::id_key(keys::JOURNAL, seq + 1);
        for kv in self.tree.range(from..) {
            let (k, v) = kv?;
            if k.first() != Some(&keys::JOURNAL) {
                break;
            }
            // Records follow the snapshot one by one, or something is missing.
            if keys::id_from_key(&k) != Some(journal.next) || !replay(&mut index, &v) {
                return Ok(None);
            }
            journal.next += 1;
            journal.pending += (v.len() - 8) / 16;
        }
        Ok(Some((index, journal)))
    }

    /// Rebuilds the index from the `T` keys, newest first (so every entry appends).
    pub(crate) fn scan_time_index(&self) -> Result<FeedIndex, StoreError> {
        let mut index = FeedIndex::default();
        for kv in self.tree.scan_prefix([keys::TIME]).rev() {
            let (k, v) = kv?;
            if let (Some((ts, id)), Some((leader, platform, kind))) =
                (keys::parse_time_key(&k), keys::parse_time_value(&v))
            {
                index.push_oldest(Entry {
                    timestamp_ms: ts,
                    post_id: id,
                    leader_id: leader,
                    platform,
                    kind,
                });
            }
        }
        index.shrink();
        Ok(index)
    }

    /// Saves `index` (what readers see after journal record `next - 1`) as the snapshot,
    /// then points sled at it and drops the journal records it includes, in one batch.
    pub(crate) fn save_index_snapshot(&mut self, index: &FeedIndex) -> Result<(), StoreError> {
        let seq = self.journal.next - 1;
        let tag: u64 = rand::random();
        let path = self.snapshot_file(tag);
        let written = (|| -> std::io::Result<()> {
            let mut file =
                std::io::BufWriter::with_capacity(1 << 16, std::fs::File::create(&path)?);
            index.write_snapshot(&mut file, tag, seq)?;
            let file = file.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            // The file's name must be durable before sled names it.
            if let Some(parent) = path.parent() {
                std::fs::File::open(parent)?.sync_all()?;
            }
            Ok(())
        })();
        if let Err(err) = written {
            // Not fatal: the journal keeps growing and the next try may succeed.
            tracing::warn!(error = %err, "could not write the feed index snapshot");
            let _ = std::fs::remove_file(&path);
            return Ok(());
        }
        let mut marker = [0u8; 16];
        marker[..8].copy_from_slice(&tag.to_be_bytes());
        marker[8..].copy_from_slice(&seq.to_be_bytes());
        if let Err(err) = self
            .tree
            .insert(keys::named_key(keys::META, "index_snapshot"), &marker[..])
            .and_then(|_| self.db.flush().map(drop))
        {
            // Whichever marker sled holds names a file that still exists.
            tracing::warn!(error = %err, "could not record the feed index snapshot");
            return Ok(());
        }
        // sled names the new file now and starts replay after `seq`, so the records it
        // includes are dead: drop them in small batches (one batch of 200,000 removals
        // took sled's memory up by hundreds of MB, and glibc kept it). A crash half-way
        // leaves some behind; the next snapshot drops them (its range starts at 0).
        if let Err(err) = self.drop_journal_through(seq) {
            tracing::warn!(error = %err, "could not drop the journal the snapshot includes");
        }
        if let Some((old, _)) = self.journal.snapshot.replace((tag, seq)) {
            let _ = std::fs::remove_file(self.snapshot_file(old));
        }
        self.journal.pending = 0;
        Ok(())
    }

    /// Removes the journal records up to `seq`, [`DROP_BATCH`] to a sled batch.
    fn drop_journal_through(&self, seq: u64) -> Result<(), StoreError> {
        let end = keys::id_key(keys::JOURNAL, seq);
        loop {
            let mut batch = sled::Batch::default();
            let mut n = 0;
            for k in self
                .tree
                .range(keys::id_key(keys::JOURNAL, 0)..=end)
                .keys()
                .take(DROP_BATCH)
            {
                batch.remove(k?);
                n += 1;
            }
            if n == 0 {
                return Ok(());
            }
            self.tree.apply_batch(batch)?;
            if n < DROP_BATCH {
                self.db.flush()?;
                return Ok(());
            }
        }
    }

    /// Saves a snapshot when enough of the journal has built up since the last one.
    /// Failing is not an error (the journal keeps growing; the next change tries again).
    pub(crate) fn maybe_snapshot(&mut self) {
        // An index that misses posts is never saved (the next open rebuilds it).
        if self.journal.pending < SNAPSHOT_EVERY || self.index_stale {
            return;
        }
        let shared = self.shared.clone();
        let index = shared.index.read();
        if let Err(err) = self.save_index_snapshot(&index) {
            tracing::warn!(error = %err, "could not save the feed index snapshot");
        }
    }

    /// Flushes and saves a snapshot of the index so the next start replays nothing.
    /// Call at shutdown.
    /// After an offline import that left posts out of the index
    /// ([`ChangeSet::leave_unindexed`](crate::storage::change::ChangeSet)) no snapshot
    /// is saved: sled names none, and the next open rebuilds the index from the `T` keys.
    pub fn close(&mut self) -> Result<(), StoreError> {
        self.db.flush()?;
        if self.index_stale {
            return Ok(());
        }
        if self.journal.pending > 0 || self.journal.snapshot.is_none() {
            let shared = self.shared.clone();
            let index = shared.index.read();
            self.save_index_snapshot(&index)?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::storage::posts::tests::{all, draft, x_post};
    use crate::storage::query::PostQuery;
    use crate::storage::PostPatch;

    /// How many feed index snapshot files `dir` holds.
    pub(crate) fn snapshot_files(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("db.index-")
            })
            .count()
    }

    fn whole(store: &Store) -> Vec<Entry> {
        store
            .shared
            .index
            .read()
            .page(&PostQuery::newest(100_000))
            .entries
    }

    #[test]
    fn a_crash_restarts_from_the_snapshot_and_journal_with_the_same_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let (a, b);
        {
            let mut store = crate::storage::reopen_for_test(&path, 8);
            a = store.create_leader(draft("A"), 0).unwrap();
            b = store.create_leader(draft("B"), 0).unwrap();
            let report = store
                .insert_posts(
                    (0..50)
                        .map(|i| x_post(a.id, &format!("{}", 1000 + i), i, &[]))
                        .collect(),
                )
                .unwrap();
            // A snapshot in the middle, then moves, deletes and inserts after it.
            {
                // Dropped before the crash: `Shared` holds sled's tree (and its lock).
                let shared = store.shared.clone();
                store.save_index_snapshot(&shared.index.read()).unwrap();
            }
            store
                .update_post(
                    report.inserted[3].id,
                    PostPatch {
                        leader_id: Some(b.id),
                        timestamp_ms: Some(500),
                        ..PostPatch::default()
                    },
                )
                .unwrap();
            store.delete_post(report.inserted[7].id).unwrap();
            store
                .insert_posts(vec![x_post(b.id, "5000", 999, &[])])
                .unwrap();
            // No close: a crash.
            let want = whole(&store);
            drop(store);
            let store = crate::storage::reopen_for_test(&path, 8);
            assert_eq!(store.journal.pending, 4, "three changes replayed");
            assert_eq!(whole(&store), want);
            assert_eq!(
                *store
                    .scan_time_index()
                    .unwrap()
                    .page(&PostQuery::newest(100))
                    .entries,
                want[..]
            );
        }
        assert_eq!(
            snapshot_files(dir.path()),
            1,
            "the older snapshot file is gone"
        );
        let mut store = crate::storage::reopen_for_test(&path, 8);
        assert_eq!(all(&store.reader()).len(), 50);
        store.close().unwrap();
        assert_eq!(store.journal.pending, 0);
        drop(store);
        let store = crate::storage::reopen_for_test(&path, 8);
        assert_eq!(
            store.journal.pending, 0,
            "a clean close leaves nothing to replay"
        );
        assert_eq!(snapshot_files(dir.path()), 1);
    }

    #[test]
    fn a_crash_after_the_marker_but_before_the_journal_is_dropped_restarts_right() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let (want, dead);
        {
            let mut store = crate::storage::reopen_for_test(&path, 8);
            let a = store.create_leader(draft("A"), 0).unwrap();
            for i in 0..(DROP_BATCH as i64 + 5) {
                store
                    .insert_posts(vec![x_post(a.id, &format!("{}", 1000 + i), i, &[])])
                    .unwrap();
            }
            // What sled holds if the process dies between the marker and the removals:
            // every record the snapshot includes is still there.
            let records: Vec<_> = store
                .tree
                .scan_prefix([keys::JOURNAL])
                .map(|kv| kv.unwrap())
                .collect();
            dead = records.len();
            assert!(dead > DROP_BATCH, "more records than one removal batch");
            {
                let shared = store.shared.clone();
                store.save_index_snapshot(&shared.index.read()).unwrap();
            }
            assert_eq!(store.tree.scan_prefix([keys::JOURNAL]).count(), 0);
            for (k, v) in records {
                store.tree.insert(k, v).unwrap();
            }
            // One change after the snapshot, then a crash.
            store
                .insert_posts(vec![x_post(a.id, "9999", 9999, &[])])
                .unwrap();
            want = whole(&store);
        }
        let mut store = crate::storage::reopen_for_test(&path, 8);
        assert_eq!(whole(&store), want, "dead records are not replayed");
        assert_eq!(
            store.journal.pending, 1,
            "only the record after the snapshot"
        );
        assert_eq!(store.tree.scan_prefix([keys::JOURNAL]).count(), dead + 1);
        store.close().unwrap();
        assert_eq!(
            store.tree.scan_prefix([keys::JOURNAL]).count(),
            0,
            "the next snapshot drops the dead records too"
        );
        drop(store);
        let store = crate::storage::reopen_for_test(&path, 8);
        assert_eq!(whole(&store), want);
    }

    #[test]
    fn a_damaged_or_missing_snapshot_or_journal_rebuilds_from_the_time_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let want;
        {
            let mut store = crate::storage::reopen_for_test(&path, 8);
            let a = store.create_leader(draft("A"), 0).unwrap();
            store
                .insert_posts(
                    (0..20)
                        .map(|i| x_post(a.id, &format!("{}", 1000 + i), i, &[]))
                        .collect(),
                )
                .unwrap();
            store.close().unwrap();
            store
                .insert_posts(vec![x_post(a.id, "77", 77, &[])])
                .unwrap();
            want = whole(&store);
        }
        // Flip a byte of the snapshot file: the CRC refuses it.
        let file = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().contains("db.index-"))
            .unwrap();
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[40] ^= 1;
        std::fs::write(&file, &bytes).unwrap();
        {
            let store = crate::storage::reopen_for_test(&path, 8);
            assert_eq!(whole(&store), want);
        }
        // A journal record lost (a gap): rebuilt, not replayed past it.
        {
            let mut store = crate::storage::reopen_for_test(&path, 8);
            let a = store.reader().leaders()[0].id;
            store.insert_posts(vec![x_post(a, "78", 78, &[])]).unwrap();
            store.insert_posts(vec![x_post(a, "79", 79, &[])]).unwrap();
            let first = store.journal.next - 2;
            store
                .tree
                .remove(keys::id_key(keys::JOURNAL, first))
                .unwrap();
            store.db.flush().unwrap();
        }
        let store = crate::storage::reopen_for_test(&path, 8);
        assert_eq!(all(&store.reader()).len(), 23);
        assert_eq!(store.journal.pending, 0);
    }
}

#[cfg(test)]
mod memory_probe {
    use super::*;

    fn rss_mb() -> f64 {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        let pages: f64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
        pages * 4096.0 / 1048576.0
    }

    /// Measures RSS around a snapshot that drops `SNAPSHOT_EVERY` one-entry journal
    /// records (what a soak of single-post creates builds up). By hand:
    /// `cargo test --release --lib memory_probe -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn rss_around_a_snapshot_of_a_full_journal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut store = crate::storage::reopen_for_test(&path, 8);
        let record = journal_record(&[], &[]);
        let mut record = record;
        record.extend_from_slice(&[0u8; 16]);
        let n = SNAPSHOT_EVERY as u64;
        for chunk in 0..n / 1000 {
            let mut batch = sled::Batch::default();
            for i in 0..1000 {
                batch.insert(
                    &keys::id_key(keys::JOURNAL, 1 + chunk * 1000 + i)[..],
                    &record[..],
                );
            }
            store.tree.apply_batch(batch).unwrap();
        }
        store.db.flush().unwrap();
        store.journal.next = n + 1;
        store.journal.pending = n as usize;
        eprintln!("RSS after journaling {n} records: {:.1} MB", rss_mb());
        let t = std::time::Instant::now();
        store.save_index_snapshot(&FeedIndex::default()).unwrap();
        eprintln!(
            "RSS after the snapshot: {:.1} MB ({:?})",
            rss_mb(),
            t.elapsed()
        );
        assert_eq!(store.tree.scan_prefix([keys::JOURNAL]).count(), 0);
        store.db.flush().unwrap();
        eprintln!("RSS after a flush: {:.1} MB", rss_mb());
    }
}
