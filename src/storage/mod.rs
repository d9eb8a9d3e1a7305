//! Storage: the only code that names sled. One tree holds every key space (see
//! [`keys`]); each write is one atomic `apply_batch` followed by a flush, so a write that
//! returns is on disk and a crash never leaves half of one.
//!
//! [`Store`] is the writer, owned by the `PostStore` actor. [`StoreReader`] is a cheap
//! clone handed to readers; it never waits for the writer except for the microseconds
//! the in-memory feed index is locked.

pub mod codec;
pub mod feed_index;
pub mod keys;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use sled::Batch;

use crate::domain::cursor::Cursor;
use crate::domain::leader::{Leader, LeaderDraft};
use crate::domain::post::{NewPost, Platform, Post, Verification};
use crate::domain::review::{ReviewItem, ReviewState};
use crate::storage::feed_index::{Entry, FeedIndex, Filter, Start};

/// Storage schema this build writes and reads.
pub const SCHEMA_VERSION: u64 = 1;
const TREE_NAME: &str = "amber";

/// Failures of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sled(#[from] sled::Error),
    #[error("corrupt record: {0}")]
    Codec(#[from] codec::CodecError),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("database schema version {found} is newer than this build understands ({supported})")]
    SchemaTooNew { found: u64, supported: u64 },
}

impl StoreError {
    /// True when the database could not be opened because another process holds it
    /// (sled allows one process per database). sled reports that only in the text of an
    /// `ErrorKind::Other` I/O error, so this is the one place that reads it.
    pub fn is_locked(&self) -> bool {
        matches!(self, StoreError::Sled(sled::Error::Io(io))
            if io.kind() == std::io::ErrorKind::WouldBlock
                || io.to_string().starts_with("could not acquire lock"))
    }
}

/// A post with the leader it belongs to (for rendering).
#[derive(Debug, Clone)]
pub struct FeedPage {
    pub posts: Vec<Post>,
    pub total: usize,
    pub has_next: bool,
    pub next_cursor: Option<Cursor>,
}

/// What an ingestion batch did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InsertReport {
    /// Posts stored for the first time.
    pub inserted: Vec<Post>,
    /// Stored posts replaced by a newer edit.
    pub updated: Vec<Post>,
    /// Posts already stored (same platform and external id), left alone.
    pub duplicates: usize,
    /// Posts refused because their leader does not exist (deleted mid-run).
    pub orphans: usize,
}

/// Store-wide numbers for health and metrics; all maintained, none scanned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub leaders: u64,
    pub posts: u64,
    pub review_items: u64,
    pub pending_reviews: u64,
    pub latest_post_ms: Option<i64>,
    pub posts_by_platform: Vec<(Platform, u64)>,
}

/// Changes to a stored post; `None` leaves a field alone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PostPatch {
    pub content: Option<String>,
    pub timestamp_ms: Option<i64>,
    pub metrics_json: Option<String>,
    pub verification: Option<Verification>,
    pub leader_id: Option<u64>,
}

/// A record read from or written to a backup.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Leader(Leader),
    Post(Post),
    Review(ReviewItem),
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportReport {
    pub leaders: usize,
    pub posts: usize,
    pub reviews: usize,
    pub skipped: usize,
}

/// State shared by the writer and every reader.
#[derive(Debug, Default)]
struct Shared {
    index: RwLock<FeedIndex>,
    leaders: RwLock<BTreeMap<u64, Leader>>,
    newest_x: RwLock<HashMap<u64, String>>,
    review_items: AtomicU64,
    pending_reviews: AtomicU64,
    /// Bumped after every change readers can see; caches of rendered answers key on it.
    generation: AtomicU64,
}

/// Read access: cheap to clone, safe to use from any thread.
#[derive(Debug, Clone)]
pub struct StoreReader {
    tree: sled::Tree,
    shared: Arc<Shared>,
}

/// The single writer. Owned by the `PostStore` actor.
#[derive(Debug)]
pub struct Store {
    db: sled::Db,
    tree: sled::Tree,
    shared: Arc<Shared>,
    /// Where [`Store::close`] writes the feed index for a fast restart.
    snapshot_path: PathBuf,
    /// True between writing a snapshot and the next commit, which must invalidate it.
    snapshot_live: AtomicBool,
    next_leader: u64,
    next_post: u64,
    next_review: u64,
}

fn get_u64(tree: &sled::Tree, key: &[u8]) -> Result<Option<u64>, StoreError> {
    Ok(tree
        .get(key)?
        .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
        .map(u64::from_be_bytes))
}

/// Compares two X ids (decimal strings of snowflakes) numerically.
pub fn x_id_newer(a: &str, b: &str) -> bool {
    (a.len(), a) > (b.len(), b)
}

impl Store {
    /// Opens (or creates) the database under `dir` with a page cache of `cache_mb` MiB,
    /// checks the schema version and rebuilds the in-memory indexes.
    pub fn open(dir: &Path, cache_mb: u64) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_mb.max(1) * 1024 * 1024)
            // Acknowledged writes are flushed explicitly; the timer adds nothing.
            .flush_every_ms(None)
            .open()?;
        let tree = db.open_tree(TREE_NAME)?;
        let version_key = keys::named_key(keys::META, "schema_version");
        match get_u64(&tree, &version_key)? {
            None => {
                tree.insert(&version_key, &SCHEMA_VERSION.to_be_bytes())?;
                db.flush()?;
            }
            Some(v) if v > SCHEMA_VERSION => {
                return Err(StoreError::SchemaTooNew {
                    found: v,
                    supported: SCHEMA_VERSION,
                })
            }
            Some(_) => {}
        }
        let shared = Arc::new(Shared::default());
        let mut store = Store {
            next_leader: get_u64(&tree, &keys::named_key(keys::META, "seq:leader"))?.unwrap_or(1),
            next_post: get_u64(&tree, &keys::named_key(keys::META, "seq:post"))?.unwrap_or(1),
            next_review: get_u64(&tree, &keys::named_key(keys::META, "seq:review"))?.unwrap_or(1),
            db,
            tree,
            shared,
            snapshot_path: dir.with_extension("index"),
            snapshot_live: AtomicBool::new(false),
        };
        store.load()?;
        Ok(store)
    }

    /// Loads the feed index: from the snapshot a clean shutdown left, or else by scanning
    /// the time index. A snapshot is used once: its marker is removed before any write.
    fn load_index(&mut self) -> Result<FeedIndex, StoreError> {
        let marker = keys::named_key(keys::META, "index_snapshot");
        let stored_posts = get_u64(&self.tree, &keys::named_key(keys::COUNTER, "posts"))?;
        if let Some(tag) = get_u64(&self.tree, &marker)? {
            self.tree.remove(&marker)?;
            self.db.flush()?;
            let loaded = std::fs::read(&self.snapshot_path)
                .ok()
                .and_then(|b| FeedIndex::from_snapshot(&b, tag));
            let _ = std::fs::remove_file(&self.snapshot_path);
            match loaded {
                // A store that never held a post has no counter yet: that is zero posts.
                Some(index) if index.len() as u64 == stored_posts.unwrap_or(0) => {
                    tracing::info!(
                        posts = index.len(),
                        "feed index loaded from the shutdown snapshot"
                    );
                    return Ok(index);
                }
                _ => tracing::warn!("feed index snapshot unusable; rebuilding from the time index"),
            }
        }
        let mut index = FeedIndex::default();
        // Newest first, so every insert appends to the end of its lists.
        for kv in self.tree.scan_prefix([keys::TIME]).rev() {
            let (k, v) = kv?;
            if let (Some((ts, id)), Some((leader, platform))) =
                (keys::parse_time_key(&k), keys::parse_time_value(&v))
            {
                index.insert(Entry {
                    timestamp_ms: ts,
                    post_id: id,
                    leader_id: leader,
                    platform,
                });
            }
        }
        tracing::info!(
            posts = index.len(),
            "feed index rebuilt from the time index"
        );
        Ok(index)
    }

    /// Flushes and writes the feed index snapshot so the next start skips the scan.
    /// Call at shutdown; a later write simply invalidates the snapshot again.
    pub fn close(&mut self) -> Result<(), StoreError> {
        self.db.flush()?;
        let tag: u64 = rand::random();
        let bytes = self.shared.index.read().to_snapshot(tag);
        let tmp = self.snapshot_path.with_extension("index.tmp");
        let written = (|| -> std::io::Result<()> {
            use std::io::Write;
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &self.snapshot_path)
        })();
        if let Err(err) = written {
            // Not fatal: the next start scans instead.
            tracing::warn!(error = %err, "could not write the feed index snapshot");
            return Ok(());
        }
        self.tree.insert(
            keys::named_key(keys::META, "index_snapshot"),
            &tag.to_be_bytes(),
        )?;
        self.db.flush()?;
        self.snapshot_live.store(true, Ordering::Relaxed);
        Ok(())
    }

    fn load(&mut self) -> Result<(), StoreError> {
        let index = self.load_index()?;
        *self.shared.index.write() = index;
        let mut leaders = BTreeMap::new();
        for kv in self.tree.scan_prefix([keys::LEADER]) {
            let (_, v) = kv?;
            let leader: Leader = codec::decode(&v)?;
            leaders.insert(leader.id, leader);
        }
        *self.shared.leaders.write() = leaders;
        let mut newest = HashMap::new();
        for kv in self.tree.scan_prefix([keys::NEWEST]) {
            let (k, v) = kv?;
            if let Some(id) = keys::id_from_key(&k) {
                newest.insert(id, String::from_utf8_lossy(&v).into_owned());
            }
        }
        *self.shared.newest_x.write() = newest;
        let reviews = get_u64(&self.tree, &keys::named_key(keys::COUNTER, "reviews"))?.unwrap_or(0);
        let pending = get_u64(
            &self.tree,
            &keys::named_key(keys::COUNTER, "reviews:pending"),
        )?
        .unwrap_or(0);
        self.shared.review_items.store(reviews, Ordering::Relaxed);
        self.shared
            .pending_reviews
            .store(pending, Ordering::Relaxed);
        let index = self.shared.index.read();
        for p in Platform::ALL {
            let stored = get_u64(
                &self.tree,
                &keys::named_key(keys::COUNTER, &format!("posts:{}", p.as_str())),
            )?
            .unwrap_or(0);
            if stored != index.platform_len(p) as u64 {
                tracing::warn!(
                    platform = p.as_str(),
                    stored,
                    indexed = index.platform_len(p),
                    "post counter disagrees with the time index; using the index"
                );
            }
        }
        Ok(())
    }

    /// A read handle over the same data.
    pub fn reader(&self) -> StoreReader {
        StoreReader {
            tree: self.tree.clone(),
            shared: self.shared.clone(),
        }
    }

    /// Applies one batch atomically and makes it durable before returning.
    fn commit(&self, mut batch: Batch) -> Result<(), StoreError> {
        if self.snapshot_live.swap(false, Ordering::Relaxed) {
            batch.remove(keys::named_key(keys::META, "index_snapshot"));
        }
        self.tree.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }

    /// Marks the end of a change: readers that cached an answer under an older
    /// generation will render it again. Call after the in-memory state is updated.
    pub fn touch(&self) {
        self.shared.generation.fetch_add(1, Ordering::Release);
    }

    /// Flushes everything to disk (used at shutdown).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    /// Refuses new records once the id space an index slot can hold is used up.
    fn check_id_space(&self) -> Result<(), StoreError> {
        if self.next_post >= feed_index::MAX_POST_ID
            || self.next_leader >= feed_index::MAX_LEADER_ID
        {
            return Err(StoreError::Conflict(
                "the id space of this database is exhausted".into(),
            ));
        }
        Ok(())
    }

    fn put_seq(&self, batch: &mut Batch) {
        batch.insert(
            keys::named_key(keys::META, "seq:leader"),
            &self.next_leader.to_be_bytes(),
        );
        batch.insert(
            keys::named_key(keys::META, "seq:post"),
            &self.next_post.to_be_bytes(),
        );
        batch.insert(
            keys::named_key(keys::META, "seq:review"),
            &self.next_review.to_be_bytes(),
        );
    }

    fn put_counters(&self, batch: &mut Batch, index: &FeedIndex, reviews: u64, pending: u64) {
        for p in Platform::ALL {
            let name = format!("posts:{}", p.as_str());
            batch.insert(
                keys::named_key(keys::COUNTER, &name),
                &(index.platform_len(p) as u64).to_be_bytes(),
            );
        }
        batch.insert(
            keys::named_key(keys::COUNTER, "posts"),
            &(index.len() as u64).to_be_bytes(),
        );
        batch.insert(
            keys::named_key(keys::COUNTER, "reviews"),
            &reviews.to_be_bytes(),
        );
        batch.insert(
            keys::named_key(keys::COUNTER, "reviews:pending"),
            &pending.to_be_bytes(),
        );
    }

    // ---- leaders ----

    /// A leader with the next id (the sequence is persisted by the caller's batch).
    fn next_leader_from(&mut self, draft: LeaderDraft, now_ms: i64) -> Leader {
        let leader = Leader {
            id: self.next_leader,
            name: draft.name,
            handles: draft.handles,
            tracking_topics: draft.tracking_topics,
            created_at_ms: now_ms,
            avatar_url: draft.avatar_url,
        };
        self.next_leader += 1;
        leader
    }

    /// Stores a new leader.
    pub fn create_leader(&mut self, draft: LeaderDraft, now_ms: i64) -> Result<Leader, StoreError> {
        self.check_id_space()?;
        let leader = self.next_leader_from(draft, now_ms);
        let mut batch = Batch::default();
        batch.insert(
            &keys::id_key(keys::LEADER, leader.id),
            codec::encode(&leader)?,
        );
        self.put_seq(&mut batch);
        self.commit(batch)?;
        self.shared
            .leaders
            .write()
            .insert(leader.id, leader.clone());
        Ok(leader)
    }

    /// Loads the seed list into an empty store, once in the life of the database.
    /// Returns how many leaders were added (0 when already seeded or not empty).
    pub fn seed_leaders(
        &mut self,
        drafts: Vec<LeaderDraft>,
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        self.check_id_space()?;
        let seeded_key = keys::named_key(keys::META, "seeded");
        if self.tree.contains_key(&seeded_key)? || !self.shared.leaders.read().is_empty() {
            return Ok(0);
        }
        let mut batch = Batch::default();
        let mut added = Vec::new();
        for draft in drafts {
            let leader = self.next_leader_from(draft, now_ms);
            batch.insert(
                &keys::id_key(keys::LEADER, leader.id),
                codec::encode(&leader)?,
            );
            added.push(leader);
        }
        batch.insert(seeded_key, &[1u8]);
        self.put_seq(&mut batch);
        self.commit(batch)?;
        let n = added.len();
        let mut leaders = self.shared.leaders.write();
        for leader in added {
            leaders.insert(leader.id, leader);
        }
        Ok(n)
    }

    /// Replaces a leader's fields. Changing the X handle forgets the cached X user id and
    /// the `since_id` position, which belonged to the old account.
    pub fn update_leader(&mut self, id: u64, draft: LeaderDraft) -> Result<Leader, StoreError> {
        let old = self
            .shared
            .leaders
            .read()
            .get(&id)
            .cloned()
            .ok_or(StoreError::NotFound("leader"))?;
        let leader = Leader {
            id,
            name: draft.name,
            handles: draft.handles,
            tracking_topics: draft.tracking_topics,
            created_at_ms: old.created_at_ms,
            avatar_url: draft.avatar_url,
        };
        let mut batch = Batch::default();
        batch.insert(&keys::id_key(keys::LEADER, id), codec::encode(&leader)?);
        let handle_changed = old.x_handle() != leader.x_handle();
        if handle_changed {
            batch.remove(&keys::id_key(keys::X_USER, id));
            batch.remove(&keys::id_key(keys::NEWEST, id));
        }
        self.commit(batch)?;
        if handle_changed {
            self.shared.newest_x.write().remove(&id);
        }
        self.shared.leaders.write().insert(id, leader.clone());
        Ok(leader)
    }

    /// Deletes a leader with all its posts, their review items and dedup keys, in one batch.
    pub fn delete_leader(&mut self, id: u64) -> Result<usize, StoreError> {
        if !self.shared.leaders.read().contains_key(&id) {
            return Err(StoreError::NotFound("leader"));
        }
        let entries = self.shared.index.read().leader_entries(id);
        let mut batch = Batch::default();
        let mut removed_reviews = 0u64;
        let mut removed_pending = 0u64;
        for e in &entries {
            let (r, p) = self.remove_post_keys(&mut batch, e.post_id)?;
            removed_reviews += r;
            removed_pending += p;
        }
        batch.remove(&keys::id_key(keys::LEADER, id));
        batch.remove(&keys::id_key(keys::X_USER, id));
        batch.remove(&keys::id_key(keys::NEWEST, id));
        let mut index = self.shared.index.write();
        for e in &entries {
            index.remove(e);
        }
        let reviews = self
            .shared
            .review_items
            .load(Ordering::Relaxed)
            .saturating_sub(removed_reviews);
        let pending = self
            .shared
            .pending_reviews
            .load(Ordering::Relaxed)
            .saturating_sub(removed_pending);
        self.put_counters(&mut batch, &index, reviews, pending);
        if let Err(err) = self.commit(batch) {
            // Put the index back as it was: nothing was written.
            for e in &entries {
                index.insert(*e);
            }
            return Err(err);
        }
        drop(index);
        self.shared.review_items.store(reviews, Ordering::Relaxed);
        self.shared
            .pending_reviews
            .store(pending, Ordering::Relaxed);
        self.shared.leaders.write().remove(&id);
        self.shared.newest_x.write().remove(&id);
        Ok(entries.len())
    }

    /// Adds the removal of one post (record, time key, dedup keys, review) to a batch.
    /// Returns (review items removed, of which pending).
    fn remove_post_keys(&self, batch: &mut Batch, post_id: u64) -> Result<(u64, u64), StoreError> {
        let Some(bytes) = self.tree.get(keys::id_key(keys::POST, post_id))? else {
            return Ok((0, 0));
        };
        let stored: StoredPost = codec::decode(&bytes)?;
        let post = &stored.post;
        batch.remove(&keys::id_key(keys::POST, post_id));
        batch.remove(&keys::time_key(post.timestamp_ms, post_id));
        for ext in post.platform_post_id.iter().chain(stored.aliases.iter()) {
            batch.remove(keys::dedup_key(post.platform, ext));
        }
        let mut counts = (0, 0);
        if let Some(rid) = self.tree.get(keys::id_key(keys::REVIEW_BY_POST, post_id))? {
            if let Some(review_id) = <[u8; 8]>::try_from(rid.as_ref())
                .ok()
                .map(u64::from_be_bytes)
            {
                if let Some(rb) = self.tree.get(keys::id_key(keys::REVIEW, review_id))? {
                    let item: ReviewItem = codec::decode(&rb)?;
                    counts = (1, u64::from(item.state == ReviewState::Pending));
                }
                batch.remove(&keys::id_key(keys::REVIEW, review_id));
            }
            batch.remove(&keys::id_key(keys::REVIEW_BY_POST, post_id));
        }
        Ok(counts)
    }

    /// Remembers the X user id resolved for a leader's handle.
    pub fn cache_x_user(
        &mut self,
        leader_id: u64,
        handle: &str,
        user_id: &str,
    ) -> Result<(), StoreError> {
        let mut batch = Batch::default();
        batch.insert(
            &keys::id_key(keys::X_USER, leader_id),
            format!("{handle}\0{user_id}").into_bytes(),
        );
        self.commit(batch)
    }

    /// Sets (or with `None` clears) a small metadata value.
    pub fn set_meta(&mut self, name: &str, value: Option<&[u8]>) -> Result<(), StoreError> {
        let mut batch = Batch::default();
        match value {
            Some(v) => batch.insert(keys::named_key(keys::META, &format!("app:{name}")), v),
            None => batch.remove(keys::named_key(keys::META, &format!("app:{name}"))),
        }
        self.commit(batch)
    }

    // ---- posts ----

    /// Stores a batch of posts with dedup on (platform, external id), all or nothing.
    /// A post whose edit history names a stored post updates that post instead.
    pub fn insert_posts(&mut self, posts: Vec<NewPost>) -> Result<InsertReport, StoreError> {
        self.check_id_space()?;
        let mut report = InsertReport::default();
        let mut batch = Batch::default();
        // External ids claimed earlier in this same batch.
        let mut claimed: HashMap<(Platform, String), u64> = HashMap::new();
        let mut new_entries = Vec::new();
        let mut newest_updates: HashMap<u64, String> = HashMap::new();
        let mut updated: HashMap<u64, StoredPost> = HashMap::new();
        let next_post_before = self.next_post;
        {
            let leaders = self.shared.leaders.read();
            for new in posts {
                if !leaders.contains_key(&new.leader_id) {
                    report.orphans += 1;
                    continue;
                }
                let Some(ext) = new.platform_post_id.clone() else {
                    let post = new.into_post(self.next_post);
                    self.next_post += 1;
                    self.stage_new(&mut batch, &post, &[])?;
                    new_entries.push(entry_of(&post));
                    report.inserted.push(post);
                    continue;
                };
                let platform = new.platform;
                if claimed.contains_key(&(platform, ext.clone()))
                    || self.tree.contains_key(keys::dedup_key(platform, &ext))?
                {
                    report.duplicates += 1;
                    continue;
                }
                // An edit: some earlier version is stored (or staged) already.
                let mut target = None;
                for old in new.edit_history.iter().filter(|h| **h != ext) {
                    if let Some(id) = claimed.get(&(platform, old.clone())) {
                        target = Some(*id);
                        break;
                    }
                    if let Some(v) = self.tree.get(keys::dedup_key(platform, old))? {
                        target = <[u8; 8]>::try_from(v.as_ref()).ok().map(u64::from_be_bytes);
                        break;
                    }
                }
                let aliases: Vec<String> = new
                    .edit_history
                    .iter()
                    .filter(|h| **h != ext)
                    .cloned()
                    .collect();
                if let Some(post_id) = target {
                    let mut stored = match updated.remove(&post_id) {
                        Some(s) => s,
                        None => match self.tree.get(keys::id_key(keys::POST, post_id))? {
                            Some(b) => codec::decode::<StoredPost>(&b)?,
                            None => {
                                // Staged as new in this batch: find it there.
                                match report.inserted.iter().find(|p| p.id == post_id) {
                                    Some(p) => StoredPost {
                                        post: p.clone(),
                                        aliases: Vec::new(),
                                    },
                                    None => continue,
                                }
                            }
                        },
                    };
                    let newer = stored
                        .post
                        .platform_post_id
                        .as_deref()
                        .is_none_or(|cur| x_id_newer(&ext, cur));
                    for alias in aliases.iter().chain(std::iter::once(&ext)) {
                        if Some(alias.as_str()) != stored.post.platform_post_id.as_deref()
                            && !stored.aliases.contains(alias)
                        {
                            stored.aliases.push(alias.clone());
                        }
                        batch.insert(keys::dedup_key(platform, alias), &post_id.to_be_bytes());
                        claimed.insert((platform, alias.clone()), post_id);
                    }
                    if newer {
                        if let Some(cur) = stored.post.platform_post_id.take() {
                            if !stored.aliases.contains(&cur) {
                                stored.aliases.push(cur);
                            }
                        }
                        stored.aliases.retain(|a| *a != ext);
                        stored.post.platform_post_id = Some(ext.clone());
                        stored.post.content = new.content;
                        stored.post.metrics_json = new.metrics_json;
                        stored.post.sentiment = new.sentiment;
                        stored.post.sentiment_score = new.sentiment_score;
                        stored.post.author = new.author;
                    }
                    batch.insert(&keys::id_key(keys::POST, post_id), codec::encode(&stored)?);
                    if platform == Platform::X {
                        note_newest(&mut newest_updates, &self.shared, new.leader_id, &ext);
                    }
                    // A post staged as new in this batch stays in `inserted`, refreshed.
                    if let Some(p) = report.inserted.iter_mut().find(|p| p.id == post_id) {
                        *p = stored.post.clone();
                    }
                    updated.insert(post_id, stored);
                    continue;
                }
                let leader_id = new.leader_id;
                let post = new.into_post(self.next_post);
                self.next_post += 1;
                claimed.insert((platform, ext.clone()), post.id);
                for alias in &aliases {
                    claimed.insert((platform, alias.clone()), post.id);
                }
                self.stage_new(&mut batch, &post, &aliases)?;
                if platform == Platform::X {
                    note_newest(&mut newest_updates, &self.shared, leader_id, &ext);
                }
                new_entries.push(entry_of(&post));
                report.inserted.push(post);
            }
        }
        for (leader, id) in &newest_updates {
            batch.insert(&keys::id_key(keys::NEWEST, *leader), id.as_bytes());
        }
        let inserted_ids: HashSet<u64> = report.inserted.iter().map(|p| p.id).collect();
        report.updated = updated
            .into_iter()
            .filter(|(id, _)| !inserted_ids.contains(id))
            .map(|(_, s)| s.post)
            .collect();
        if new_entries.is_empty() && report.updated.is_empty() && newest_updates.is_empty() {
            self.next_post = next_post_before;
            return Ok(report);
        }
        let mut index = self.shared.index.write();
        for e in &new_entries {
            index.insert(*e);
        }
        self.put_seq(&mut batch);
        let reviews = self.shared.review_items.load(Ordering::Relaxed);
        let pending = self.shared.pending_reviews.load(Ordering::Relaxed);
        self.put_counters(&mut batch, &index, reviews, pending);
        if let Err(err) = self.commit(batch) {
            for e in &new_entries {
                index.remove(e);
            }
            self.next_post = next_post_before;
            return Err(err);
        }
        drop(index);
        self.shared.newest_x.write().extend(newest_updates);
        Ok(report)
    }

    fn stage_new(
        &self,
        batch: &mut Batch,
        post: &Post,
        aliases: &[String],
    ) -> Result<(), StoreError> {
        let stored = StoredPost {
            post: post.clone(),
            aliases: aliases.to_vec(),
        };
        batch.insert(&keys::id_key(keys::POST, post.id), codec::encode(&stored)?);
        batch.insert(
            &keys::time_key(post.timestamp_ms, post.id),
            &keys::time_value(post.leader_id, post.platform),
        );
        if let Some(ext) = &post.platform_post_id {
            batch.insert(keys::dedup_key(post.platform, ext), &post.id.to_be_bytes());
        }
        for alias in aliases {
            batch.insert(
                keys::dedup_key(post.platform, alias),
                &post.id.to_be_bytes(),
            );
        }
        Ok(())
    }

    /// Creates one post from the admin API. A duplicate external id is a conflict.
    /// With `requires_review` a pending review item is created in the same batch.
    pub fn create_post(
        &mut self,
        new: NewPost,
        requires_review: bool,
        now_ms: i64,
    ) -> Result<(Post, Option<ReviewItem>), StoreError> {
        self.check_id_space()?;
        if !self.shared.leaders.read().contains_key(&new.leader_id) {
            return Err(StoreError::NotFound("leader"));
        }
        if let Some(ext) = &new.platform_post_id {
            if self.tree.contains_key(keys::dedup_key(new.platform, ext))? {
                return Err(StoreError::Conflict(format!(
                    "a {} post with id {ext} is already stored",
                    new.platform.as_str()
                )));
            }
        }
        let mut post = new.into_post(self.next_post);
        if requires_review {
            post.verification = Verification::Pending;
        }
        let mut batch = Batch::default();
        self.stage_new(&mut batch, &post, &[])?;
        let review = requires_review.then_some(ReviewItem {
            id: self.next_review,
            post_id: post.id,
            state: ReviewState::Pending,
            notes: None,
            reviewed_by: None,
            reviewed_at_ms: None,
            updated_at_ms: now_ms,
        });
        let mut reviews = self.shared.review_items.load(Ordering::Relaxed);
        let mut pending = self.shared.pending_reviews.load(Ordering::Relaxed);
        if let Some(item) = &review {
            batch.insert(&keys::id_key(keys::REVIEW, item.id), codec::encode(item)?);
            batch.insert(
                &keys::id_key(keys::REVIEW_BY_POST, post.id),
                &item.id.to_be_bytes(),
            );
            reviews += 1;
            pending += 1;
        }
        let mut index = self.shared.index.write();
        index.insert(entry_of(&post));
        self.next_post += 1;
        if review.is_some() {
            self.next_review += 1;
        }
        self.put_seq(&mut batch);
        self.put_counters(&mut batch, &index, reviews, pending);
        if let Err(err) = self.commit(batch) {
            index.remove(&entry_of(&post));
            self.next_post -= 1;
            if review.is_some() {
                self.next_review -= 1;
            }
            return Err(err);
        }
        drop(index);
        self.shared.review_items.store(reviews, Ordering::Relaxed);
        self.shared
            .pending_reviews
            .store(pending, Ordering::Relaxed);
        Ok((post, review))
    }

    /// Changes a stored post.
    pub fn update_post(&mut self, id: u64, patch: PostPatch) -> Result<Post, StoreError> {
        let bytes = self
            .tree
            .get(keys::id_key(keys::POST, id))?
            .ok_or(StoreError::NotFound("post"))?;
        let mut stored: StoredPost = codec::decode(&bytes)?;
        if let Some(leader) = patch.leader_id {
            if !self.shared.leaders.read().contains_key(&leader) {
                return Err(StoreError::NotFound("leader"));
            }
        }
        let old_entry = entry_of(&stored.post);
        let p = &mut stored.post;
        if let Some(c) = patch.content {
            let (score, label) = crate::domain::sentiment::analyze(&c);
            p.content = c;
            p.sentiment_score = score;
            p.sentiment = label;
        }
        if let Some(ts) = patch.timestamp_ms {
            p.timestamp_ms = ts;
        }
        if let Some(m) = patch.metrics_json {
            p.metrics_json = m;
        }
        if let Some(v) = patch.verification {
            p.verification = v;
        }
        if let Some(l) = patch.leader_id {
            p.leader_id = l;
        }
        let new_entry = entry_of(p);
        let mut batch = Batch::default();
        batch.insert(&keys::id_key(keys::POST, id), codec::encode(&stored)?);
        if new_entry != old_entry {
            batch.remove(&keys::time_key(old_entry.timestamp_ms, id));
            batch.insert(
                &keys::time_key(new_entry.timestamp_ms, id),
                &keys::time_value(new_entry.leader_id, new_entry.platform),
            );
        }
        let mut index = self.shared.index.write();
        if new_entry != old_entry {
            index.remove(&old_entry);
            index.insert(new_entry);
            let reviews = self.shared.review_items.load(Ordering::Relaxed);
            let pending = self.shared.pending_reviews.load(Ordering::Relaxed);
            self.put_counters(&mut batch, &index, reviews, pending);
        }
        if let Err(err) = self.commit(batch) {
            if new_entry != old_entry {
                index.remove(&new_entry);
                index.insert(old_entry);
            }
            return Err(err);
        }
        Ok(stored.post)
    }

    /// Deletes one post with its dedup keys and review item.
    pub fn delete_post(&mut self, id: u64) -> Result<(), StoreError> {
        let bytes = self
            .tree
            .get(keys::id_key(keys::POST, id))?
            .ok_or(StoreError::NotFound("post"))?;
        let stored: StoredPost = codec::decode(&bytes)?;
        let mut batch = Batch::default();
        let (r, p) = self.remove_post_keys(&mut batch, id)?;
        let reviews = self
            .shared
            .review_items
            .load(Ordering::Relaxed)
            .saturating_sub(r);
        let pending = self
            .shared
            .pending_reviews
            .load(Ordering::Relaxed)
            .saturating_sub(p);
        let entry = entry_of(&stored.post);
        let mut index = self.shared.index.write();
        index.remove(&entry);
        self.put_counters(&mut batch, &index, reviews, pending);
        if let Err(err) = self.commit(batch) {
            index.insert(entry);
            return Err(err);
        }
        self.shared.review_items.store(reviews, Ordering::Relaxed);
        self.shared
            .pending_reviews
            .store(pending, Ordering::Relaxed);
        Ok(())
    }

    // ---- review ----

    /// Approves or rejects a review item, recording who did it, and sets the post's
    /// verification status to match.
    pub fn decide_review(
        &mut self,
        id: u64,
        state: ReviewState,
        notes: Option<String>,
        by: &str,
        now_ms: i64,
    ) -> Result<ReviewItem, StoreError> {
        let bytes = self
            .tree
            .get(keys::id_key(keys::REVIEW, id))?
            .ok_or(StoreError::NotFound("review item"))?;
        let mut item: ReviewItem = codec::decode(&bytes)?;
        let was_pending = item.state == ReviewState::Pending;
        item.state = state;
        if notes.is_some() {
            item.notes = notes;
        }
        item.reviewed_by = Some(by.to_string());
        item.reviewed_at_ms = Some(now_ms);
        item.updated_at_ms = now_ms;
        let mut batch = Batch::default();
        batch.insert(&keys::id_key(keys::REVIEW, id), codec::encode(&item)?);
        if let Some(pb) = self.tree.get(keys::id_key(keys::POST, item.post_id))? {
            let mut stored: StoredPost = codec::decode(&pb)?;
            stored.post.verification = match state {
                ReviewState::Approved => Verification::Approved,
                ReviewState::Rejected => Verification::Rejected,
                ReviewState::Pending => Verification::Pending,
            };
            batch.insert(
                &keys::id_key(keys::POST, item.post_id),
                codec::encode(&stored)?,
            );
        }
        let reviews = self.shared.review_items.load(Ordering::Relaxed);
        let pending = self
            .shared
            .pending_reviews
            .load(Ordering::Relaxed)
            .saturating_sub(u64::from(was_pending))
            + u64::from(state == ReviewState::Pending);
        let index = self.shared.index.read();
        self.put_counters(&mut batch, &index, reviews, pending);
        drop(index);
        self.commit(batch)?;
        self.shared
            .pending_reviews
            .store(pending, Ordering::Relaxed);
        Ok(item)
    }

    // ---- backup ----

    /// Merges backup records into the store. Leaders and reviews keep their ids when
    /// free; posts dedup on (platform, external id) and keep their ids when free.
    pub fn import(&mut self, records: Vec<Record>) -> Result<ImportReport, StoreError> {
        let mut report = ImportReport::default();
        let mut batch = Batch::default();
        let mut entries = Vec::new();
        let mut staged_posts: HashSet<u64> = HashSet::new();
        let mut staged_dedup: HashSet<(Platform, String)> = HashSet::new();
        let mut reviews = self.shared.review_items.load(Ordering::Relaxed);
        let mut pending = self.shared.pending_reviews.load(Ordering::Relaxed);
        let mut new_leaders = Vec::new();
        let mut newest_updates: HashMap<u64, String> = HashMap::new();
        let mut post_id_map: HashMap<u64, u64> = HashMap::new();
        for record in records {
            match record {
                // Ids an index slot cannot hold (only a hand-made backup has them).
                Record::Leader(l) if l.id >= feed_index::MAX_LEADER_ID => report.skipped += 1,
                Record::Post(p)
                    if p.id >= feed_index::MAX_POST_ID
                        || p.leader_id >= feed_index::MAX_LEADER_ID =>
                {
                    report.skipped += 1
                }
                Record::Leader(leader) => {
                    if self.shared.leaders.read().contains_key(&leader.id)
                        || new_leaders.iter().any(|l: &Leader| l.id == leader.id)
                    {
                        report.skipped += 1;
                        continue;
                    }
                    self.next_leader = self.next_leader.max(leader.id + 1);
                    batch.insert(
                        &keys::id_key(keys::LEADER, leader.id),
                        codec::encode(&leader)?,
                    );
                    new_leaders.push(leader);
                    report.leaders += 1;
                }
                Record::Post(mut post) => {
                    let leader_known = self.shared.leaders.read().contains_key(&post.leader_id)
                        || new_leaders.iter().any(|l| l.id == post.leader_id);
                    let dup = match &post.platform_post_id {
                        Some(ext) => {
                            staged_dedup.contains(&(post.platform, ext.clone()))
                                || self
                                    .tree
                                    .contains_key(keys::dedup_key(post.platform, ext))?
                        }
                        None => false,
                    };
                    if !leader_known || dup {
                        report.skipped += 1;
                        continue;
                    }
                    let original_id = post.id;
                    if staged_posts.contains(&post.id)
                        || self.tree.contains_key(keys::id_key(keys::POST, post.id))?
                    {
                        if post.platform_post_id.is_none() {
                            // Same id and no external id: the same post, already here.
                            report.skipped += 1;
                            continue;
                        }
                        post.id = self
                            .next_post
                            .max(staged_posts.iter().max().map_or(0, |m| m + 1));
                    }
                    post_id_map.insert(original_id, post.id);
                    self.next_post = self.next_post.max(post.id + 1);
                    if let Some(ext) = &post.platform_post_id {
                        staged_dedup.insert((post.platform, ext.clone()));
                        if post.platform == Platform::X {
                            note_newest(&mut newest_updates, &self.shared, post.leader_id, ext);
                        }
                    }
                    staged_posts.insert(post.id);
                    self.stage_new(&mut batch, &post, &[])?;
                    entries.push(entry_of(&post));
                    report.posts += 1;
                }
                Record::Review(mut item) => {
                    let Some(post_id) = post_id_map.get(&item.post_id).copied() else {
                        report.skipped += 1;
                        continue;
                    };
                    if self
                        .tree
                        .contains_key(keys::id_key(keys::REVIEW, item.id))?
                        || self
                            .tree
                            .contains_key(keys::id_key(keys::REVIEW_BY_POST, post_id))?
                    {
                        item.id = self.next_review;
                    }
                    item.post_id = post_id;
                    self.next_review = self.next_review.max(item.id + 1);
                    batch.insert(&keys::id_key(keys::REVIEW, item.id), codec::encode(&item)?);
                    batch.insert(
                        &keys::id_key(keys::REVIEW_BY_POST, post_id),
                        &item.id.to_be_bytes(),
                    );
                    reviews += 1;
                    pending += u64::from(item.state == ReviewState::Pending);
                    report.reviews += 1;
                }
            }
        }
        for (leader, id) in &newest_updates {
            batch.insert(&keys::id_key(keys::NEWEST, *leader), id.as_bytes());
        }
        let mut index = self.shared.index.write();
        for e in &entries {
            index.insert(*e);
        }
        self.put_seq(&mut batch);
        self.put_counters(&mut batch, &index, reviews, pending);
        // An import is a restore: the seed list must not be added on top of it later.
        batch.insert(keys::named_key(keys::META, "seeded"), &[1u8]);
        if let Err(err) = self.commit(batch) {
            for e in &entries {
                index.remove(e);
            }
            return Err(err);
        }
        drop(index);
        self.shared.review_items.store(reviews, Ordering::Relaxed);
        self.shared
            .pending_reviews
            .store(pending, Ordering::Relaxed);
        self.shared.newest_x.write().extend(newest_updates);
        let mut leaders = self.shared.leaders.write();
        for l in new_leaders {
            leaders.insert(l.id, l);
        }
        Ok(report)
    }
}

fn note_newest(updates: &mut HashMap<u64, String>, shared: &Shared, leader: u64, ext: &str) {
    let current = updates
        .get(&leader)
        .cloned()
        .or_else(|| shared.newest_x.read().get(&leader).cloned());
    if current.as_deref().is_none_or(|cur| x_id_newer(ext, cur)) {
        updates.insert(leader, ext.to_string());
    }
}

fn entry_of(post: &Post) -> Entry {
    Entry {
        timestamp_ms: post.timestamp_ms,
        post_id: post.id,
        leader_id: post.leader_id,
        platform: post.platform,
    }
}

/// A post as stored: the post plus the older external ids that dedup to it.
#[derive(Debug, Clone, bincode::Encode, bincode::Decode)]
struct StoredPost {
    post: Post,
    aliases: Vec<String>,
}

impl StoreReader {
    /// Cheap liveness check of the database for health: one point read.
    pub fn check(&self) -> Result<(), StoreError> {
        self.tree
            .get(keys::named_key(keys::META, "schema_version"))?;
        Ok(())
    }

    /// The current generation: it changes after every write readers can see. Read it
    /// before rendering; an answer cached under it is valid while it stays the same.
    pub fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::Acquire)
    }

    /// One leader.
    pub fn leader(&self, id: u64) -> Option<Leader> {
        self.shared.leaders.read().get(&id).cloned()
    }

    /// Every leader, by id.
    pub fn leaders(&self) -> Vec<Leader> {
        self.shared.leaders.read().values().cloned().collect()
    }

    /// Runs `f` over the leader map without copying it.
    pub fn with_leaders<R>(&self, f: impl FnOnce(&BTreeMap<u64, Leader>) -> R) -> R {
        f(&self.shared.leaders.read())
    }

    /// One post.
    pub fn post(&self, id: u64) -> Result<Option<Post>, StoreError> {
        match self.tree.get(keys::id_key(keys::POST, id))? {
            Some(b) => Ok(Some(codec::decode::<StoredPost>(&b)?.post)),
            None => Ok(None),
        }
    }

    /// The stored post for (platform, external id), if any.
    pub fn post_by_external_id(
        &self,
        platform: Platform,
        ext: &str,
    ) -> Result<Option<Post>, StoreError> {
        match self.tree.get(keys::dedup_key(platform, ext))? {
            Some(v) => match <[u8; 8]>::try_from(v.as_ref()) {
                Ok(b) => self.post(u64::from_be_bytes(b)),
                Err(_) => Ok(None),
            },
            None => Ok(None),
        }
    }

    /// A page of the newest-first feed. Posts deleted between the index read and the
    /// record read are skipped.
    pub fn feed(
        &self,
        filter: &Filter,
        start: Start,
        limit: usize,
    ) -> Result<FeedPage, StoreError> {
        let page = self.shared.index.read().page(filter, start, limit);
        let mut posts = Vec::with_capacity(page.entries.len());
        for e in &page.entries {
            if let Some(p) = self.post(e.post_id)? {
                posts.push(p);
            }
        }
        let next_cursor = if page.has_next {
            page.entries.last().map(Entry::cursor)
        } else {
            None
        };
        Ok(FeedPage {
            posts,
            total: page.total,
            has_next: page.has_next,
            next_cursor,
        })
    }

    /// Review items, newest first, optionally of one state, at most `limit`.
    pub fn reviews(
        &self,
        state: Option<ReviewState>,
        limit: usize,
    ) -> Result<Vec<ReviewItem>, StoreError> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix([keys::REVIEW]).rev() {
            let (_, v) = kv?;
            let item: ReviewItem = codec::decode(&v)?;
            if state.is_none_or(|s| s == item.state) {
                out.push(item);
                if out.len() == limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// One review item.
    pub fn review(&self, id: u64) -> Result<Option<ReviewItem>, StoreError> {
        match self.tree.get(keys::id_key(keys::REVIEW, id))? {
            Some(b) => Ok(Some(codec::decode(&b)?)),
            None => Ok(None),
        }
    }

    /// Counts for health and metrics, from maintained counters.
    pub fn stats(&self) -> Stats {
        let index = self.shared.index.read();
        Stats {
            leaders: self.shared.leaders.read().len() as u64,
            posts: index.len() as u64,
            review_items: self.shared.review_items.load(Ordering::Relaxed),
            pending_reviews: self.shared.pending_reviews.load(Ordering::Relaxed),
            latest_post_ms: index.newest().map(|e| e.timestamp_ms),
            posts_by_platform: Platform::ALL
                .iter()
                .map(|p| (*p, index.platform_len(*p) as u64))
                .collect(),
        }
    }

    /// The newest X post id stored for a leader (the next `since_id`).
    pub fn newest_x_id(&self, leader_id: u64) -> Option<String> {
        self.shared.newest_x.read().get(&leader_id).cloned()
    }

    /// The cached X user id for a leader, if it was resolved for `handle`.
    pub fn x_user_id(&self, leader_id: u64, handle: &str) -> Result<Option<String>, StoreError> {
        let Some(v) = self.tree.get(keys::id_key(keys::X_USER, leader_id))? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&v);
        Ok(text
            .split_once('\0')
            .filter(|(h, _)| h.eq_ignore_ascii_case(handle))
            .map(|(_, id)| id.to_string()))
    }

    /// A metadata value set with [`Store::set_meta`].
    pub fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .tree
            .get(keys::named_key(keys::META, &format!("app:{name}")))?
            .map(|v| v.to_vec()))
    }

    /// Every record, for backup: leaders, then posts (oldest first), then review items.
    pub fn export(&self) -> impl Iterator<Item = Result<Record, StoreError>> + '_ {
        let leaders = self.tree.scan_prefix([keys::LEADER]).map(|kv| {
            let (_, v) = kv?;
            Ok(Record::Leader(codec::decode(&v)?))
        });
        let posts = self.tree.scan_prefix([keys::POST]).map(|kv| {
            let (_, v) = kv?;
            Ok(Record::Post(codec::decode::<StoredPost>(&v)?.post))
        });
        let reviews = self.tree.scan_prefix([keys::REVIEW]).map(|kv| {
            let (_, v) = kv?;
            Ok(Record::Review(codec::decode(&v)?))
        });
        leaders.chain(posts).chain(reviews)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::domain::post::Author;
    use crate::domain::sentiment::Sentiment;

    fn draft(name: &str) -> LeaderDraft {
        LeaderDraft::parse(name, BTreeMap::new(), vec![], None).unwrap()
    }

    fn x_post(leader_id: u64, ext: &str, ts: i64, history: &[&str]) -> NewPost {
        NewPost {
            leader_id,
            platform: Platform::X,
            content: format!("post {ext}"),
            timestamp_ms: ts,
            sentiment: Sentiment::Neutral,
            sentiment_score: 0.0,
            metrics_json: "{}".into(),
            platform_post_id: Some(ext.to_string()),
            verification: Verification::Unverified,
            author: Author::default(),
            edit_history: history.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn all(reader: &StoreReader) -> Vec<Post> {
        reader
            .feed(&Filter::default(), Start::Offset(0), 1000)
            .unwrap()
            .posts
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        #[test]
        fn dedup_is_idempotent_whatever_the_batches(
            batches in proptest::collection::vec(proptest::collection::vec(0u64..60, 0..40), 1..6)
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut store = Store::open(dir.path(), 8).unwrap();
            let leader = store.create_leader(draft("A"), 0).unwrap();
            let mut distinct = std::collections::HashSet::new();
            for batch in &batches {
                let posts = batch.iter().map(|n| x_post(leader.id, &format!("{}", 10_000 + n), *n as i64, &[])).collect();
                store.insert_posts(posts).unwrap();
                distinct.extend(batch.iter().copied());
            }
            let stored = all(&store.reader());
            proptest::prop_assert_eq!(stored.len(), distinct.len());
            let again: Vec<NewPost> = distinct.iter().map(|n| x_post(leader.id, &format!("{}", 10_000 + n), *n as i64, &[])).collect();
            let report = store.insert_posts(again).unwrap();
            proptest::prop_assert_eq!(report.duplicates, distinct.len());
            proptest::prop_assert!(report.inserted.is_empty());
            proptest::prop_assert_eq!(store.reader().stats().posts, distinct.len() as u64);
        }
    }

    #[test]
    fn duplicate_post_is_stored_once_within_and_across_batches() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path(), 8).unwrap();
        let leader = store.create_leader(draft("A"), 0).unwrap();
        let first = store
            .insert_posts(vec![
                x_post(leader.id, "10", 1, &[]),
                x_post(leader.id, "10", 1, &[]),
            ])
            .unwrap();
        assert_eq!((first.inserted.len(), first.duplicates), (1, 1));
        let again = store
            .insert_posts(vec![
                x_post(leader.id, "10", 1, &[]),
                x_post(leader.id, "11", 2, &[]),
            ])
            .unwrap();
        assert_eq!((again.inserted.len(), again.duplicates), (1, 1));
        assert_eq!(all(&store.reader()).len(), 2);
        assert_eq!(store.reader().newest_x_id(leader.id).as_deref(), Some("11"));
    }

    #[test]
    fn an_edit_updates_the_stored_post_in_either_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path(), 8).unwrap();
        let leader = store.create_leader(draft("A"), 0).unwrap();
        store
            .insert_posts(vec![x_post(leader.id, "100", 5, &["100"])])
            .unwrap();
        let edit = store
            .insert_posts(vec![x_post(leader.id, "105", 5, &["100", "105"])])
            .unwrap();
        assert_eq!((edit.inserted.len(), edit.updated.len()), (0, 1));
        let posts = all(&store.reader());
        assert_eq!(posts.len(), 1);
        assert_eq!(posts[0].platform_post_id.as_deref(), Some("105"));
        assert_eq!(posts[0].content, "post 105");
        // The original arriving late is a duplicate, not a second post or a rollback.
        let late = store
            .insert_posts(vec![x_post(leader.id, "100", 5, &["100"])])
            .unwrap();
        assert_eq!(late.duplicates, 1);
        assert_eq!(all(&store.reader())[0].content, "post 105");
        // Newer version first, then the older one: still one post, the newer content.
        store
            .insert_posts(vec![x_post(leader.id, "205", 9, &["200", "205"])])
            .unwrap();
        let old = store
            .insert_posts(vec![x_post(leader.id, "200", 9, &["200"])])
            .unwrap();
        assert_eq!(old.duplicates, 1);
        assert_eq!(all(&store.reader()).len(), 2);
    }

    #[test]
    fn a_database_held_by_another_handle_is_reported_as_locked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let _held = Store::open(&path, 1).unwrap();
        match Store::open(&path, 1) {
            Err(err) => assert!(err.is_locked(), "{err}"),
            Ok(_) => panic!("a second handle opened a held database"),
        }
    }

    #[test]
    fn a_clean_close_restarts_from_the_snapshot_and_a_later_write_invalidates_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let mut store = Store::open(&path, 8).unwrap();
            let leader = store.create_leader(draft("A"), 0).unwrap();
            store
                .insert_posts(
                    (0..50)
                        .map(|i| x_post(leader.id, &format!("{}", 1000 + i), i, &[]))
                        .collect(),
                )
                .unwrap();
            store.close().unwrap();
        }
        assert!(path.with_extension("index").exists());
        {
            let mut store = Store::open(&path, 8).unwrap();
            assert!(
                !path.with_extension("index").exists(),
                "a snapshot is used once"
            );
            assert_eq!(all(&store.reader()).len(), 50);
            store.close().unwrap();
            // A write after close, then a crash (no close): the snapshot must not be trusted.
            store
                .insert_posts(vec![x_post(1, "5000", 999, &[])])
                .unwrap();
        }
        let store = Store::open(&path, 8).unwrap();
        let posts = all(&store.reader());
        assert_eq!(posts.len(), 51);
        assert_eq!(posts[0].platform_post_id.as_deref(), Some("5000"));
    }
}
