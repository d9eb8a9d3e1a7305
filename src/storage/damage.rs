//! Damaged records: what sled cannot read back (`Error::Corruption`) or what fails its
//! checksum or decoding ([`codec`](crate::storage::codec)). A damaged record is skipped
//! where it is met, counted once per key here, logged once, and shown by health; the
//! rest of the database keeps serving. Start-up checks every record in the background
//! ([`StoreReader::check_integrity`](crate::storage::StoreReader::check_integrity)).

use std::cell::Cell;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::storage::{keys, StoreError};

/// Distinct damaged keys remembered (so a record read again is not counted again); past
/// it, every further finding is counted.
const REMEMBERED: usize = 10_000;

/// True when `err` means the record itself is unreadable (not a closed database or a
/// full disk).
pub fn is_damage(err: &StoreError) -> bool {
    matches!(
        err,
        StoreError::Codec(_) | StoreError::Sled(sled::Error::Corruption { .. })
    )
}

/// True when sled could not read a tree node (its checksum failed).
fn sled_damage(err: &sled::Error) -> bool {
    matches!(err, sled::Error::Corruption { .. })
}

/// Every record under an id-keyed `prefix` (`L`, `P`, `R`), in id order, read past
/// damage: it yields `(key, value)` of each readable record. A tree node sled cannot
/// read stops sled's own iterator for good (it retries the same node), so past one the
/// scan probes the ids after the last good one (up to `max_id`, the next free id) with
/// point reads, noting each unreadable id in `damage`, and resumes the scan after the
/// first readable one. Other errors (a closed database) end the scan with that error.
pub struct RecordScan<'a> {
    tree: sled::Tree,
    damage: &'a Damage,
    prefix: u8,
    max_id: u64,
    /// The id to resume from; `None` once finished.
    next: Option<u64>,
    iter: Option<sled::Iter>,
    /// Also counts each unreadable id met here (an export's own count).
    skipped: Option<&'a Cell<u64>>,
}

impl<'a> RecordScan<'a> {
    pub fn new(tree: &sled::Tree, damage: &'a Damage, prefix: u8, max_id: u64) -> RecordScan<'a> {
        RecordScan {
            tree: tree.clone(),
            damage,
            prefix,
            max_id,
            next: Some(0),
            iter: None,
            skipped: None,
        }
    }

    /// Also counts every unreadable id this scan meets in `skipped`.
    pub fn counting(mut self, skipped: &'a Cell<u64>) -> RecordScan<'a> {
        self.skipped = Some(skipped);
        self
    }

    /// Point reads from `from` until a readable record (returned, and the scan resumes
    /// after it) or `max_id`.
    fn probe(&mut self, from: u64) -> Option<Result<(sled::IVec, sled::IVec), StoreError>> {
        for id in from..=self.max_id {
            let key = keys::id_key(self.prefix, id);
            match self.tree.get(key) {
                Ok(Some(v)) => {
                    self.next = id.checked_add(1);
                    return Some(Ok((sled::IVec::from(&key[..]), v)));
                }
                Ok(None) => {}
                Err(err) if sled_damage(&err) => {
                    self.damage.note(&key, &err.into());
                    if let Some(c) = self.skipped {
                        c.set(c.get() + 1);
                    }
                }
                Err(err) => {
                    self.next = None;
                    return Some(Err(err.into()));
                }
            }
        }
        self.next = None;
        None
    }
}

impl Iterator for RecordScan<'_> {
    type Item = Result<(sled::IVec, sled::IVec), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        let from = self.next?;
        let iter = self.iter.get_or_insert_with(|| {
            let start = keys::id_key(self.prefix, from).to_vec();
            self.tree.range(start..vec![self.prefix + 1])
        });
        match iter.next() {
            Some(Ok((k, v))) => {
                self.next = keys::id_from_key(&k).and_then(|id| id.checked_add(1));
                if self.next.is_none() {
                    self.iter = None;
                }
                Some(Ok((k, v)))
            }
            None => {
                self.next = None;
                None
            }
            Some(Err(err)) if sled_damage(&err) => {
                self.iter = None;
                self.probe(from)
            }
            Some(Err(err)) => {
                self.next = None;
                Some(Err(err.into()))
            }
        }
    }
}

/// What health shows of the damage found so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DamageReport {
    pub leaders: u64,
    pub posts: u64,
    pub review_items: u64,
    /// Posts the feed index names whose record is gone from sled.
    pub missing_posts: u64,
    /// Other keys (indexes, metadata) that could not be read.
    pub other: u64,
    /// True once the start-up check of every record has finished.
    pub checked: bool,
    /// Where sled's damaged page-table snapshot was moved when the database was
    /// recovered from sled's whole log instead (see `sled_files`).
    pub snapshot_set_aside: Option<std::path::PathBuf>,
}

impl DamageReport {
    /// Damaged or missing records in all.
    pub fn total(&self) -> u64 {
        self.leaders + self.posts + self.review_items + self.missing_posts + self.other
    }
}

/// The damage tracker, shared by the writer and every reader.
#[derive(Debug, Default)]
pub struct Damage {
    seen: Mutex<BTreeSet<Vec<u8>>>,
    leaders: AtomicU64,
    posts: AtomicU64,
    review_items: AtomicU64,
    missing_posts: AtomicU64,
    other: AtomicU64,
    checked: AtomicBool,
    snapshot_set_aside: Mutex<Option<std::path::PathBuf>>,
}

impl Damage {
    /// Records that the value under `key` cannot be read (`err`); counted and logged the
    /// first time only.
    pub fn note(&self, key: &[u8], err: &StoreError) {
        if !self.first_time(key, b'd') {
            return;
        }
        let counter = match key.first() {
            Some(&keys::LEADER) => &self.leaders,
            Some(&keys::POST) => &self.posts,
            Some(&keys::REVIEW) => &self.review_items,
            _ => &self.other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(record = %describe(key), error = %err, "damaged record skipped");
    }

    /// `Ok(None)` (and the damage noted) when `result` failed because the record under
    /// `key` is damaged; any other result as it is.
    pub fn skip<T>(
        &self,
        key: &[u8],
        result: Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        match result {
            Ok(v) => Ok(Some(v)),
            Err(err) if is_damage(&err) => {
                self.note(key, &err);
                Ok(None)
            }
            Err(err) => Err(err),
        }
    }

    /// Records that the feed index names post `id` but sled holds no record of it.
    pub fn note_missing_post(&self, id: u64) {
        if self.first_time(&keys::id_key(keys::POST, id), b'm') {
            self.missing_posts.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                post = id,
                "post record missing although the feed index names it"
            );
        }
    }

    fn first_time(&self, key: &[u8], kind: u8) -> bool {
        let mut seen = self.seen.lock();
        let mut k = Vec::with_capacity(key.len() + 1);
        k.push(kind);
        k.extend_from_slice(key);
        if seen.contains(&k) {
            return false;
        }
        if seen.len() < REMEMBERED {
            seen.insert(k);
        }
        true
    }

    /// Records that sled's damaged snapshot was moved to `path` and the database
    /// recovered from the log.
    pub fn set_snapshot_set_aside(&self, path: std::path::PathBuf) {
        *self.snapshot_set_aside.lock() = Some(path);
    }

    /// Marks the start-up check finished.
    pub fn set_checked(&self) {
        self.checked.store(true, Ordering::Release);
    }

    /// The counts so far.
    pub fn report(&self) -> DamageReport {
        DamageReport {
            leaders: self.leaders.load(Ordering::Relaxed),
            posts: self.posts.load(Ordering::Relaxed),
            review_items: self.review_items.load(Ordering::Relaxed),
            missing_posts: self.missing_posts.load(Ordering::Relaxed),
            other: self.other.load(Ordering::Relaxed),
            checked: self.checked.load(Ordering::Acquire),
            snapshot_set_aside: self.snapshot_set_aside.lock().clone(),
        }
    }
}

/// A key as a person reads it: `post 17`, or the key bytes.
fn describe(key: &[u8]) -> String {
    let name = match key.first() {
        Some(&keys::LEADER) => "leader",
        Some(&keys::POST) => "post",
        Some(&keys::REVIEW) => "review item",
        _ => return format!("key {}", String::from_utf8_lossy(key).escape_debug()),
    };
    match key.get(1..9).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
        Some(id) if key.len() == 9 => format!("{name} {}", u64::from_be_bytes(id)),
        _ => format!("{name} key {:?}", key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::codec::CodecError;

    #[test]
    fn a_damaged_record_is_counted_once_by_kind() {
        let damage = Damage::default();
        let err = StoreError::Codec(CodecError::Checksum);
        assert!(is_damage(&err));
        damage.note(&keys::id_key(keys::POST, 7), &err);
        damage.note(&keys::id_key(keys::POST, 7), &err);
        damage.note(&keys::id_key(keys::POST, 8), &err);
        damage.note(&keys::id_key(keys::LEADER, 1), &err);
        damage.note_missing_post(9);
        damage.note_missing_post(9);
        let r = damage.report();
        assert_eq!((r.posts, r.leaders, r.missing_posts), (2, 1, 1));
        assert_eq!(r.total(), 4);
        assert!(!r.checked);
        assert!(!is_damage(&StoreError::Unavailable("closed".into())));
        assert_eq!(describe(&keys::id_key(keys::POST, 7)), "post 7");
    }
}
