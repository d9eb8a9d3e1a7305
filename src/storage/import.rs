//! Restoring a backup: records merged into the store with dedup, in bounded batches.
//!
//! An import is an [`ImportRun`]: [`Store::import_begin`], then [`Store::import_batch`]
//! for each batch of records in file order (each batch is one change, durable when the
//! call returns), then [`Store::import_finish`]. A run that stops part-way (a crash, a
//! full disk) leaves whole batches behind, and running the same file again completes it:
//! every record already stored is recognised and skipped.
//!
//! A record may carry *foreign* ids (the original system's UUIDs, or any id that is not
//! Amber's): such a record gets a fresh id, every reference to its foreign id is remapped,
//! and the foreign id is remembered in an `F` key written in the same change as the
//! record, so the record still answers at its old id, later batches (and later runs) find
//! it, and a second import of the same file adds nothing.
//!
//! A review naming its post by Amber id names the post *as the backup numbered it*; the
//! run remembers what each backup post id became (the same id, a fresh one when the id
//! was taken, or the stored copy of the same X post) across batches without holding a
//! map of every post: a bitset for the posts that kept their ids, and a scratch sled tree
//! ([`SCRATCH_TREE`], emptied at the start and dropped at the end of a run) for the rest.

use std::collections::{HashMap, HashSet};

use crate::domain::leader::Leader;
use crate::domain::post::{Platform, Post};
use crate::domain::review::{ReviewItem, ReviewState};
use crate::storage::change::ChangeSet;
use crate::storage::feed_index::{MAX_LEADER_ID, MAX_POST_ID};
use crate::storage::posts::note_newest;
use crate::storage::{codec, keys, Entity, Store, StoreError};

/// The scratch tree of a run: backup post id → the id it became, for posts that did not
/// keep their ids (8 bytes, big-endian). Rebuilt by every run, so not part of the data.
pub const SCRATCH_TREE: &str = "import-scratch";

/// Backup post ids below this that keep their ids are remembered in a bitset (at most
/// 2 MiB); larger ones go to the scratch tree.
const DENSE_IDS: u64 = 1 << 24;

/// A record read from or written to a backup.
#[derive(Debug, Clone, PartialEq, bincode::Encode, bincode::Decode)]
pub enum Record {
    Leader(Leader),
    Post(Box<Post>),
    Review(ReviewItem),
}

/// A record as a backup line names it: ids the record itself could not hold because they
/// are foreign travel beside it (the record's own id field is then a placeholder).
#[derive(Debug, Clone, PartialEq, bincode::Encode, bincode::Decode)]
pub struct Imported {
    pub record: Record,
    /// The record's own id, when foreign.
    pub foreign_id: Option<String>,
    /// The id of the record it belongs to (a post's `leaderId`, a review's `postId`),
    /// when foreign.
    pub foreign_parent: Option<String>,
}

impl From<Record> for Imported {
    fn from(record: Record) -> Imported {
        Imported {
            record,
            foreign_id: None,
            foreign_parent: None,
        }
    }
}

/// Foreign ids seen so far in one import: those already stored (`F` keys, including
/// earlier batches') and those staged in this change.
struct ForeignIds<'a> {
    tree: &'a sled::Tree,
    staged: HashMap<(u8, String), u64>,
}

impl ForeignIds<'_> {
    fn get(&self, entity: Entity, foreign: &str) -> Result<Option<u64>, StoreError> {
        if let Some(id) = self.staged.get(&(entity.code(), foreign.to_string())) {
            return Ok(Some(*id));
        }
        Ok(self
            .tree
            .get(keys::foreign_key(entity.code(), foreign))?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(u64::from_be_bytes))
    }

    fn remember(&mut self, change: &mut ChangeSet, entity: Entity, foreign: &str, id: u64) {
        change.put(
            keys::foreign_key(entity.code(), foreign),
            &id.to_be_bytes()[..],
        );
        self.staged.insert((entity.code(), foreign.to_string()), id);
    }
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportReport {
    pub leaders: usize,
    pub posts: usize,
    pub reviews: usize,
    pub skipped: usize,
}

/// What each backup post id of a run became (see the module's note).
struct PostIds {
    /// Bit `n`: backup post `n` (below [`DENSE_IDS`]) is stored as `n`.
    kept: Vec<u64>,
    /// Every other backup post id that was stored, and its id in the store.
    scratch: sled::Tree,
    /// True once `scratch` holds something (a kept id must then clear its entry).
    scratch_used: bool,
}

impl PostIds {
    /// Backup post `from` is stored as `to`.
    fn note(&mut self, from: u64, to: u64) -> Result<(), StoreError> {
        if from == to && from < DENSE_IDS {
            let (word, bit) = ((from / 64) as usize, from % 64);
            if self.kept.len() <= word {
                self.kept.resize(word + 1, 0);
            }
            self.kept[word] |= 1 << bit;
            if self.scratch_used {
                self.scratch.remove(from.to_be_bytes())?;
            }
        } else {
            self.scratch
                .insert(from.to_be_bytes(), &to.to_be_bytes()[..])?;
            self.scratch_used = true;
        }
        Ok(())
    }

    /// The stored id of backup post `from`, if a line of this run stored it.
    fn get(&self, from: u64) -> Result<Option<u64>, StoreError> {
        if self.scratch_used {
            if let Some(v) = self.scratch.get(from.to_be_bytes())? {
                return Ok(<[u8; 8]>::try_from(v.as_ref()).ok().map(u64::from_be_bytes));
            }
        }
        let (word, bit) = ((from / 64) as usize, from % 64);
        let kept = from < DENSE_IDS && self.kept.get(word).is_some_and(|w| w & (1 << bit) != 0);
        Ok(kept.then_some(from))
    }
}

/// Lets sled free what a batch of `writes` replaced. sled drops a replaced node (a copy
/// of a whole leaf per write) through crossbeam-epoch, which collects at most 8 bags of
/// 64 every 128 pins of a thread; `apply_batch` pins once for the whole batch, so an
/// import that reads little between batches piled garbage up across them (630 MB peak
/// at 100 k posts in batches of 2,000, against 49 MB when each batch is followed by
/// enough pins to collect it). Each pin is a few nanoseconds.
fn collect_garbage(writes: usize) {
    for _ in 0..(writes / 2 + 256) {
        drop(sled::pin());
    }
}

/// A set of keys that may give false positives, never false negatives: the `D` keys a
/// run wrote, so a dedup check of a key it never wrote needs no sled read.
struct Bloom {
    bits: Vec<u64>,
    mask: u64,
}

impl Bloom {
    /// Hashes per key.
    const HASHES: u64 = 7;

    /// The largest filter, in bits: 1 MiB whatever the backup's size. It was 8 MiB, and
    /// every bit of it is touched (each key sets 7 at random), so at 10 bits a key
    /// (rounded up to a power of two) it grew the import's peak RSS by 1.25-2.5 bytes a
    /// post up to 6.7 M posts. Past ~800 k keys the false positives rise (each one a sled
    /// read); a backup whose X ids ascend, as an export's do, asks the filter nothing (see
    /// `Known::dedup_max`).
    const MAX_BITS: u64 = 1 << 23;

    /// About 10 bits a key for `expected` keys (under 1 % false positives), at most
    /// [`Bloom::MAX_BITS`].
    fn new(expected: u64) -> Bloom {
        let bits = (expected.saturating_mul(10))
            .clamp(1 << 16, Self::MAX_BITS)
            .next_power_of_two();
        Bloom {
            bits: vec![0; (bits / 64) as usize],
            mask: bits - 1,
        }
    }

    /// The bits of `key` (double hashing of one 64-bit hash: FNV-1a, mixed; SipHash was
    /// 2 % of an import's CPU, and nothing here needs a keyed hash).
    fn probes(&self, key: &[u8]) -> [u64; Self::HASHES as usize] {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in key {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        let (a, b) = (h, (h >> 32) | 1);
        std::array::from_fn(|i| a.wrapping_add((i as u64).wrapping_mul(b)) & self.mask)
    }

    fn insert(&mut self, key: &[u8]) {
        for bit in self.probes(key) {
            self.bits[(bit / 64) as usize] |= 1 << (bit % 64);
        }
    }

    fn may_contain(&self, key: &[u8]) -> bool {
        self.probes(key)
            .into_iter()
            .all(|bit| self.bits[(bit / 64) as usize] & (1 << (bit % 64)) != 0)
    }
}

/// What a run knows about the keys it checks, so that most checks need no sled read:
/// the store has the database to itself for the run (the CLI's import is offline; the
/// writer actor's is one batch), so a key it found absent at the start is present later
/// only if the run wrote it.
struct Known {
    /// No tombstone (`Z` key) was stored when the run began; an import writes none.
    no_tombstones: bool,
    /// No dedup key (`D`) was stored when the run began: a `D` key is stored only if
    /// this run wrote it, so only if it is at most `dedup_max` and `dedup` may contain it.
    no_dedup_keys: bool,
    dedup: Bloom,
    /// The greatest `D` key this run wrote (empty: none). A key above it was not written,
    /// exactly, in constant memory: an export lists posts by id, and X ids grow with
    /// time, so nearly every post of a backup asks only this.
    dedup_max: Vec<u8>,
    /// Every stored post id was below this when the run began (the post sequence, checked
    /// against the last `P` key); `None` when that did not hold.
    new_posts_from: Option<u64>,
    /// Bit `n`: post `new_posts_from + n` was written by this run (below [`DENSE_IDS`]).
    written: Vec<u64>,
}

impl Known {
    /// Knows nothing: every key is read.
    fn nothing() -> Known {
        Known {
            no_tombstones: false,
            no_dedup_keys: false,
            dedup: Bloom::new(0),
            dedup_max: Vec::new(),
            new_posts_from: None,
            written: Vec::new(),
        }
    }

    fn note_written(&mut self, id: u64) {
        if let Some(n) = self.new_posts_from.and_then(|from| id.checked_sub(from)) {
            if n < DENSE_IDS {
                let (word, bit) = ((n / 64) as usize, n % 64);
                if self.written.len() <= word {
                    self.written.resize(word + 1, 0);
                }
                self.written[word] |= 1 << bit;
            }
        }
    }

    /// Dedup key `key` is stored now (this run wrote it).
    fn wrote_dedup_key(&mut self, key: Vec<u8>) {
        self.dedup.insert(&key);
        if key > self.dedup_max {
            self.dedup_max = key;
        }
    }

    /// Whether this run may have written dedup key `key` (false: it did not).
    fn may_have_written(&self, key: &[u8]) -> bool {
        key <= &self.dedup_max[..] && self.dedup.may_contain(key)
    }

    /// Whether post `id` is stored, when that is known without a read.
    fn post_stored(&self, id: u64) -> Option<bool> {
        let n = id.checked_sub(self.new_posts_from?)?;
        if n >= DENSE_IDS {
            return None;
        }
        let (word, bit) = ((n / 64) as usize, n % 64);
        Some(self.written.get(word).is_some_and(|w| w & (1 << bit) != 0))
    }
}

/// One import in progress: what it did so far, and what its backup's post ids became.
pub struct ImportRun {
    report: ImportReport,
    /// What each backup post id became: in memory and the scratch tree for a local run;
    /// for a replicated run ([`Store::import_run_replicated`]) `M` keys of the import
    /// written in each batch's own change, so a batch needs nothing but the store.
    posts: PostMap,
    known: Known,
    /// New posts stay out of the in-memory feed index (an offline import, see
    /// [`Store::import_begin_offline`]).
    unindexed: bool,
}

enum PostMap {
    Local(PostIds),
    Durable(u64),
}

/// Key prefix of a replicated import's post map: `M` + `import-map:` + import id.
fn import_map_prefix(import: u64) -> Vec<u8> {
    let mut k = keys::named_key(keys::META, "import-map:");
    k.extend_from_slice(&import.to_be_bytes());
    k
}

fn import_map_key(import: u64, from: u64) -> Vec<u8> {
    let mut k = import_map_prefix(import);
    k.extend_from_slice(&from.to_be_bytes());
    k
}

/// Map keys removed in one batch when a replicated import ends.
const FORGET_CHUNK: usize = 10_000;

impl ImportRun {
    /// What the run did so far.
    pub fn report(&self) -> &ImportReport {
        &self.report
    }
}

impl Store {
    /// Merges backup records into the store in one batch (one change): see
    /// [`Store::import_batch`].
    pub fn import<R: Into<Imported>>(
        &mut self,
        records: impl IntoIterator<Item = R>,
    ) -> Result<ImportReport, StoreError> {
        let mut run = self.import_begin()?;
        self.import_batch(&mut run, records)?;
        self.import_finish(run)
    }

    /// Starts an import: empties the scratch tree a run that stopped part-way left.
    /// The posts it stores join the in-memory feed index as each batch commits.
    pub fn import_begin(&mut self) -> Result<ImportRun, StoreError> {
        self.begin_run(0, false)
    }

    /// Starts an import of about `expected_posts` posts by a process that has the
    /// database to itself (`amber import`): the posts it stores stay out of the
    /// in-memory feed index, so memory does not grow with the backup, and the next open
    /// rebuilds the index from the time index (see `ChangeSet::leave_unindexed`). Readers
    /// of this store do not see the imported posts in pages; nothing should read it.
    pub fn import_begin_offline(&mut self, expected_posts: u64) -> Result<ImportRun, StoreError> {
        self.begin_run(expected_posts, true)
    }

    fn begin_run(&mut self, expected_posts: u64, unindexed: bool) -> Result<ImportRun, StoreError> {
        let scratch = self.db.open_tree(SCRATCH_TREE)?;
        scratch.clear()?;
        let none_under = |space: u8| -> Result<bool, StoreError> {
            Ok(self
                .tree
                .scan_prefix([space])
                .keys()
                .next()
                .transpose()?
                .is_none())
        };
        let last_post = self
            .tree
            .scan_prefix([keys::POST])
            .keys()
            .next_back()
            .transpose()?
            .and_then(|k| keys::id_from_key(&k));
        let known = Known {
            no_tombstones: none_under(keys::TOMBSTONE)?,
            no_dedup_keys: none_under(keys::DEDUP)?,
            dedup: Bloom::new(expected_posts),
            dedup_max: Vec::new(),
            new_posts_from: match last_post {
                Some(last) if last >= self.ids.post => None,
                _ => Some(self.ids.post),
            },
            written: Vec::new(),
        };
        Ok(ImportRun {
            report: ImportReport::default(),
            posts: PostMap::Local(PostIds {
                kept: Vec::new(),
                scratch,
                scratch_used: false,
            }),
            known,
            unindexed,
        })
    }

    /// The run of one batch of replicated import `import` (an entry of the replication
    /// stream): what earlier batches' posts became is read from, and this batch's written
    /// to, the import's map keys in the store, in the batch's own change; so applying the
    /// batches in stream order gives the same ids on every instance, across restarts.
    pub fn import_run_replicated(&self, import: u64) -> ImportRun {
        ImportRun {
            report: ImportReport::default(),
            posts: PostMap::Durable(import),
            // Nothing known without a read: a batch's outcome must depend on the store
            // alone, the same on every instance and after a restart.
            known: Known::nothing(),
            unindexed: false,
        }
    }

    /// Ends replicated import `import`: removes its map keys (in bounded batches; the
    /// last change carries the replication stamp, so an interrupted end is done again).
    pub fn import_forget(&mut self, import: u64) -> Result<(), StoreError> {
        let stamp = self.stamp.take();
        loop {
            let mut change = ChangeSet::default();
            let mut n = 0;
            for kv in self
                .tree
                .scan_prefix(import_map_prefix(import))
                .take(FORGET_CHUNK)
            {
                let (k, _) = kv?;
                change.remove(k);
                n += 1;
            }
            if n == 0 {
                break;
            }
            self.apply(change)?;
        }
        self.stamp = stamp;
        Ok(())
    }

    /// Ends an import: drops the scratch tree and returns what the run did.
    pub fn import_finish(&mut self, run: ImportRun) -> Result<ImportReport, StoreError> {
        let ImportRun { report, posts, .. } = run;
        drop(posts);
        self.db.drop_tree(SCRATCH_TREE)?;
        Ok(report)
    }

    /// Merges one batch of backup records (in file order, after the run's earlier
    /// batches) into the store as one change, durable when this returns. Leaders and
    /// reviews keep their ids when free; posts dedup on (platform, external id) and keep
    /// their ids when free. Records with foreign ids get fresh ids (see the module's
    /// note). A record already stored, or whose leader or post is in neither the store
    /// nor the run, is skipped.
    pub fn import_batch<R: Into<Imported>>(
        &mut self,
        run: &mut ImportRun,
        records: impl IntoIterator<Item = R>,
    ) -> Result<(), StoreError> {
        let mut report = ImportReport::default();
        let mut change = ChangeSet::default();
        let mut ids = self.ids;
        let mut foreign = ForeignIds {
            tree: &self.tree,
            staged: HashMap::new(),
        };
        let mut staged_posts: HashSet<u64> = HashSet::new();
        let mut staged_dedup: HashMap<(Platform, String), u64> = HashMap::new();
        let mut new_leaders: HashSet<u64> = HashSet::new();
        let mut newest_updates: HashMap<u64, String> = HashMap::new();
        // Backup post ids this batch stored: noted in the run once the change is durable.
        let mut post_id_map: HashMap<u64, u64> = HashMap::new();
        let mut reviewed_posts: HashSet<u64> = HashSet::new();
        let mut staged_reviews: HashSet<u64> = HashSet::new();
        for imported in records {
            let Imported {
                record,
                foreign_id,
                foreign_parent,
            } = imported.into();
            match record {
                Record::Leader(mut leader) => {
                    if let Some(old) = &foreign_id {
                        if foreign.get(Entity::Leader, old)?.is_some() {
                            report.skipped += 1;
                            continue;
                        }
                        leader.id = ids.leader;
                        foreign.remember(&mut change, Entity::Leader, old, leader.id);
                    } else if leader.id >= MAX_LEADER_ID
                        || self.shared.leaders.read().contains_key(&leader.id)
                        || new_leaders.contains(&leader.id)
                    {
                        // Already here, or an id an index slot cannot hold (only a
                        // hand-made backup has them).
                        report.skipped += 1;
                        continue;
                    }
                    ids.leader = ids.leader.max(leader.id + 1);
                    new_leaders.insert(leader.id);
                    change.put_leader(leader)?;
                    report.leaders += 1;
                }
                Record::Post(mut post) => {
                    if let Some(old) = &foreign_parent {
                        match foreign.get(Entity::Leader, old)? {
                            Some(id) => post.leader_id = id,
                            None => {
                                report.skipped += 1;
                                continue;
                            }
                        }
                    }
                    if let Some(old) = &foreign_id {
                        if foreign.get(Entity::Post, old)?.is_some() {
                            report.skipped += 1;
                            continue;
                        }
                    }
                    if (foreign_id.is_none() && post.id >= MAX_POST_ID)
                        || post.leader_id >= MAX_LEADER_ID
                    {
                        report.skipped += 1;
                        continue;
                    }
                    let leader_known = self.shared.leaders.read().contains_key(&post.leader_id)
                        || new_leaders.contains(&post.leader_id);
                    let dup = match &post.platform_post_id {
                        Some(ext) => match staged_dedup.get(&(post.platform, ext.clone())) {
                            Some(id) => Some(*id),
                            None => {
                                let key = keys::dedup_key(post.platform, ext);
                                if run.known.no_dedup_keys && !run.known.may_have_written(&key) {
                                    None
                                } else {
                                    self.tree
                                        .get(key)?
                                        .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
                                        .map(u64::from_be_bytes)
                                }
                            }
                        },
                        None => None,
                    };
                    if !leader_known {
                        report.skipped += 1;
                        continue;
                    }
                    // Deleted at its source (X's `post.delete`) since the backup was made:
                    // it stays out, as it does for polls.
                    if let Some(ext) = &post.platform_post_id {
                        if dup.is_none()
                            && !run.known.no_tombstones
                            && self.is_tombstoned(post.platform, ext, &[])?
                        {
                            report.skipped += 1;
                            continue;
                        }
                    }
                    if let Some(existing) = dup {
                        // The same X post, stored already: its foreign id (or the id the
                        // backup gave it, for its review) now names it.
                        match &foreign_id {
                            Some(old) => foreign.remember(&mut change, Entity::Post, old, existing),
                            None => {
                                post_id_map.insert(post.id, existing);
                            }
                        }
                        report.skipped += 1;
                        continue;
                    }
                    let original_id = post.id;
                    if let Some(old) = &foreign_id {
                        post.id = ids.post;
                        foreign.remember(&mut change, Entity::Post, old, post.id);
                    } else if staged_posts.contains(&post.id)
                        || match run.known.post_stored(post.id) {
                            Some(stored) => stored,
                            None => self.tree.contains_key(keys::id_key(keys::POST, post.id))?,
                        }
                    {
                        if post.platform_post_id.is_none() {
                            // Same id and no external id: the same post, already here.
                            post_id_map.insert(post.id, post.id);
                            report.skipped += 1;
                            continue;
                        }
                        // `ids.post` is past every id staged so far.
                        post.id = ids.post;
                    }
                    if foreign_id.is_none() {
                        post_id_map.insert(original_id, post.id);
                    }
                    ids.post = ids.post.max(post.id + 1);
                    if let Some(ext) = &post.platform_post_id {
                        staged_dedup.insert((post.platform, ext.clone()), post.id);
                        if post.platform == Platform::X {
                            note_newest(&mut newest_updates, &self.shared, post.leader_id, ext);
                        }
                    }
                    staged_posts.insert(post.id);
                    self.stage_new(&mut change, &post, &[])?;
                    report.posts += 1;
                }
                Record::Review(mut item) => {
                    if let Some(old) = &foreign_id {
                        if foreign.get(Entity::Review, old)?.is_some() {
                            report.skipped += 1;
                            continue;
                        }
                    }
                    let post_id = match &foreign_parent {
                        Some(old) => foreign.get(Entity::Post, old)?,
                        None => match post_id_map.get(&item.post_id) {
                            Some(id) => Some(*id),
                            None => match &run.posts {
                                PostMap::Local(posts) => posts.get(item.post_id)?,
                                PostMap::Durable(import) => self
                                    .tree
                                    .get(import_map_key(*import, item.post_id))?
                                    .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
                                    .map(u64::from_be_bytes),
                            },
                        },
                    };
                    let Some(post_id) = post_id else {
                        report.skipped += 1;
                        continue;
                    };
                    let post_has_review = reviewed_posts.contains(&post_id)
                        || self
                            .tree
                            .contains_key(keys::id_key(keys::REVIEW_BY_POST, post_id))?;
                    if let Some(old) = &foreign_id {
                        if post_has_review {
                            // The post (an X post stored before) has its review item.
                            report.skipped += 1;
                            continue;
                        }
                        item.id = ids.review;
                        foreign.remember(&mut change, Entity::Review, old, item.id);
                    } else if post_has_review {
                        // The post has its review item (this one, imported before).
                        report.skipped += 1;
                        continue;
                    } else if staged_reviews.contains(&item.id)
                        || self
                            .tree
                            .contains_key(keys::id_key(keys::REVIEW, item.id))?
                    {
                        // Taken, in the store or by a review staged in this batch.
                        item.id = ids.review;
                    }
                    item.post_id = post_id;
                    reviewed_posts.insert(post_id);
                    staged_reviews.insert(item.id);
                    ids.review = ids.review.max(item.id + 1);
                    change.put(
                        &keys::id_key(keys::REVIEW, item.id)[..],
                        codec::encode(&item)?,
                    );
                    change.put(
                        &keys::id_key(keys::REVIEW_BY_POST, post_id)[..],
                        &item.id.to_be_bytes()[..],
                    );
                    change.review_added(item.state == ReviewState::Pending);
                    report.reviews += 1;
                }
            }
        }
        for (leader, ext) in &newest_updates {
            change.set_newest_x(*leader, ext);
        }
        // An import is a restore: the seed list must not be added on top of it later.
        change.put(keys::named_key(keys::META, "seeded"), &[1u8][..]);
        change.set_ids(ids);
        if let PostMap::Durable(import) = &run.posts {
            for (from, to) in &post_id_map {
                change.put(import_map_key(*import, *from), &to.to_be_bytes()[..]);
            }
        }
        if run.unindexed {
            change.leave_unindexed();
        }
        let writes = change.write_count();
        self.apply(change)?;
        collect_garbage(writes);
        if let PostMap::Local(posts) = &mut run.posts {
            for (from, to) in post_id_map {
                posts.note(from, to)?;
            }
        }
        // On disk now: later batches need not read these keys.
        for id in staged_posts {
            run.known.note_written(id);
        }
        for (platform, ext) in staged_dedup.keys() {
            run.known.wrote_dedup_key(keys::dedup_key(*platform, ext));
        }
        let total = &mut run.report;
        total.leaders += report.leaders;
        total.posts += report.posts;
        total.reviews += report.reviews;
        total.skipped += report.skipped;
        Ok(())
    }
}

#[cfg(test)]
mod replicated_tests {
    use super::*;

    fn parse(lines: &[String]) -> Vec<Imported> {
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| crate::backup::parse_line(i + 1, l).unwrap())
            .collect()
    }

    /// A leader, `posts` X posts numbered from 1 and a review item for each, at the end.
    fn backup(posts: u64, ext_base: u64) -> Vec<Imported> {
        let mut lines = vec![
            r#"{"kind":"leader","id":900,"name":"L","createdAt":"2025-01-01T00:00:00.000Z"}"#
                .to_string(),
        ];
        for i in 1..=posts {
            lines.push(format!(
                r#"{{"kind":"post","id":{i},"leaderId":900,"platform":"X","content":"post {i}","timestamp":"2025-02-01T00:00:{:02}.000Z","sentiment":"Neutral","metrics":{{}},"platformPostId":"{}","verificationStatus":"Unverified"}}"#,
                i % 60,
                ext_base + i
            ));
        }
        for i in 1..=posts {
            lines.push(format!(
                r#"{{"kind":"review","id":{i},"postId":{i},"state":"pending","updatedAt":"2025-02-02T00:00:00.000Z"}}"#
            ));
        }
        parse(&lines)
    }

    #[test]
    fn a_replicated_import_in_batches_gives_a_local_runs_ids_across_a_reopen_and_leaves_no_map() {
        let dir = tempfile::tempdir().unwrap();
        let (pa, pb) = (dir.path().join("a"), dir.path().join("b"));
        // The same starting state: posts 1-4 taken, so the backup's 1-4 get fresh ids.
        for path in [&pa, &pb] {
            let mut s = Store::open(path, 1).unwrap();
            s.import(backup(4, 5_000)).unwrap();
        }
        let records = backup(12, 9_000);
        // Reopened: sled lets go of the first handle's lock a moment after it is dropped.
        let mut b = crate::storage::reopen_for_test(&pb, 1);
        let mut run = b.import_begin().unwrap();
        for chunk in records.chunks(5) {
            b.import_batch(&mut run, chunk.to_vec()).unwrap();
        }
        b.import_finish(run).unwrap();
        // Replicated: every batch on its own run, the store reopened in the middle (an
        // instance restarted mid-import).
        let mut a = crate::storage::reopen_for_test(&pa, 1);
        for (i, chunk) in records.chunks(5).enumerate() {
            if i == 3 {
                drop(a);
                a = crate::storage::reopen_for_test(&pa, 1);
            }
            let mut run = a.import_run_replicated(7);
            a.import_batch(&mut run, chunk.to_vec()).unwrap();
        }
        assert!(a.tree.scan_prefix(import_map_prefix(7)).next().is_some());
        a.import_forget(7).unwrap();
        assert!(a.tree.scan_prefix(import_map_prefix(7)).next().is_none());
        let (ra, rb) = (a.reader(), b.reader());
        for id in 1..=40 {
            assert_eq!(ra.post(id).unwrap(), rb.post(id).unwrap(), "post {id}");
            assert_eq!(
                ra.review(id).unwrap(),
                rb.review(id).unwrap(),
                "review {id}"
            );
        }
        // Each imported review names the imported post of its number.
        let mut reviewed = 0;
        for id in 1..=40 {
            if let Some(item) = ra.review(id).unwrap() {
                let post = ra.post(item.post_id).unwrap().unwrap();
                if post.content.starts_with("post ") {
                    reviewed += 1;
                }
            }
        }
        assert_eq!(reviewed, 16);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::posts::tests::{all, draft, x_post};
    use crate::storage::snapshot::tests::snapshot_files;
    use crate::storage::{get_u64, reopen_for_test};

    /// Backup post `id` of leader `leader`, X id `ext`.
    fn post(leader: u64, id: u64, ext: u64) -> Record {
        Record::Post(Box::new(
            x_post(leader, &ext.to_string(), ext as i64, &[]).into_post(id),
        ))
    }

    #[test]
    fn an_offline_import_leaves_the_index_to_the_next_open_which_rebuilds_it_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let mut store = reopen_for_test(&path, 8);
            let leader = store.create_leader(draft("A"), 0).unwrap().id;
            store
                .insert_posts(vec![x_post(leader, "1", 1, &[])])
                .unwrap();
            store.close().unwrap();
            assert_eq!(snapshot_files(dir.path()), 1, "a snapshot names one post");
            let mut run = store.import_begin_offline(40).unwrap();
            for batch in 0..4 {
                let posts =
                    (0..10).map(|i| post(leader, 1000 + batch * 10 + i, 100 + batch * 10 + i));
                store.import_batch(&mut run, posts).unwrap();
            }
            // The same lines again, as a rerun would send them: all known already.
            store
                .import_batch(&mut run, (0..40).map(|i| post(leader, 1000 + i, 100 + i)))
                .unwrap();
            let report = store.import_finish(run).unwrap();
            assert_eq!((report.posts, report.skipped), (40, 40), "{report:?}");
            assert_eq!(
                all(&store.reader()).len(),
                1,
                "the index in memory is left alone"
            );
            let counted = get_u64(&store.tree, &keys::named_key(keys::COUNTER, "posts"));
            assert_eq!(counted.unwrap(), Some(41), "the counters count every post");
            assert_eq!(
                snapshot_files(dir.path()),
                0,
                "sled names no snapshot, the file is gone"
            );
            store.close().unwrap();
            assert_eq!(
                snapshot_files(dir.path()),
                0,
                "no snapshot of an index that misses posts"
            );
        }
        let store = reopen_for_test(&path, 8);
        assert_eq!(
            all(&store.reader()).len(),
            41,
            "rebuilt from the time index"
        );
        assert_eq!(store.reader().stats().posts, 41);
        assert_eq!(snapshot_files(dir.path()), 1, "and saved at once");
        drop(store);
        let store = reopen_for_test(&path, 8);
        assert_eq!(store.journal.pending, 0);
        assert_eq!(
            all(&store.reader()).len(),
            41,
            "the next start loads the snapshot"
        );
    }

    #[test]
    fn the_dedup_filter_is_bounded_and_keys_above_the_greatest_written_need_no_filter() {
        for expected in [0, 1_000_000, 100_000_000, u64::MAX] {
            let bloom = Bloom::new(expected);
            assert!(
                bloom.bits.len() as u64 * 64 <= Bloom::MAX_BITS,
                "{expected}"
            );
        }
        let mut known = Known::nothing();
        let key = |ext: u64| keys::dedup_key(Platform::X, &ext.to_string());
        assert!(!known.may_have_written(&key(10)), "nothing written yet");
        for ext in (1_000..2_000).chain([1_500_000, 999]) {
            known.wrote_dedup_key(key(ext));
        }
        assert_eq!(known.dedup_max, key(999), "the greatest key, bytewise");
        for ext in (1_000..2_000).chain([1_500_000, 999]) {
            assert!(
                known.may_have_written(&key(ext)),
                "no false negative: {ext}"
            );
        }
        // "9990" > "999": above every key written, so not written, whatever the filter.
        assert!(!known.may_have_written(&key(9_990)));
        // A filter that says yes to everything still gives exact answers above the max.
        known.dedup.bits.iter_mut().for_each(|w| *w = u64::MAX);
        assert!(!known.may_have_written(&key(9_990)));
        assert!(known.may_have_written(&key(1_234)));
    }

    #[test]
    fn an_import_into_an_empty_store_finds_what_earlier_batches_stored_without_reading_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let mut store = reopen_for_test(&path, 8);
            let leader = store.create_leader(draft("A"), 0).unwrap().id;
            let mut run = store.import_begin_offline(0).unwrap();
            assert!(run.known.no_dedup_keys && run.known.no_tombstones);
            assert!(run.known.new_posts_from.is_some());
            store
                .import_batch(&mut run, (0..300).map(|i| post(leader, 10 + i, 5000 + i)))
                .unwrap();
            // A later batch: the same X posts under other ids (duplicates), and other X
            // posts under ids the first batch took (fresh ids).
            let later = (0..300)
                .map(|i| post(leader, 900 + i, 5000 + i))
                .chain((0..300).map(|i| post(leader, 10 + i, 7000 + i)));
            store.import_batch(&mut run, later).unwrap();
            let report = store.import_finish(run).unwrap();
            assert_eq!((report.posts, report.skipped), (600, 300), "{report:?}");
            store.close().unwrap();
        }
        let store = reopen_for_test(&path, 8);
        let reader = store.reader();
        let posts = reader
            .page(&crate::storage::query::PostQuery::newest(1000))
            .unwrap()
            .posts;
        assert_eq!(posts.len(), 600);
        let ids: HashSet<u64> = posts.iter().map(|p| p.id).collect();
        assert_eq!(ids.len(), 600, "no post overwrote another");
        let exts: HashSet<&str> = posts
            .iter()
            .filter_map(|p| p.platform_post_id.as_deref())
            .collect();
        assert_eq!(exts.len(), 600);
    }
}
