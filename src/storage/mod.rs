//! Storage: the only code that names sled. One tree holds every key space (see
//! [`keys`]); each write is one [`ChangeSet`](change::ChangeSet) applied by
//! [`Store::apply`]: one atomic `apply_batch`, a flush, and only then the in-memory
//! state, so a write that returns is on disk and a crash never leaves half of one.
//!
//! [`Store`] is the writer, owned by the `PostStore` actor; its methods are split by
//! entity, one file each: `leaders`, `posts`, `reviews`, `import`, plus `snapshot`
//! (the feed index's fast restart). [`StoreReader`](reader::StoreReader) (`reader`) is a
//! cheap clone handed to readers, who ask for pages with a
//! [`PostQuery`](query::PostQuery) (`query`).

pub mod change;
pub mod codec;
pub mod damage;
pub mod disk;
mod feed_index;
pub mod import;
pub mod keys;
pub mod leaders;
pub mod notify;
pub mod posts;
pub mod query;
pub mod reader;
mod rendered;
pub mod replica;
pub mod reviews;
pub mod runs;
mod sled_files;
mod snapshot;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::domain::leader::Leader;
use crate::storage::change::ChangeSet;
use crate::storage::disk::DiskWatch;
use crate::storage::feed_index::FeedIndex;

pub use crate::storage::import::{ImportReport, Imported, Record};
pub use crate::storage::posts::{IngestMode, InsertReport, PostPatch, SourceDeletion};
pub use crate::storage::reader::{FeedPage, PageInfo, Stats, StoreReader};

/// Storage schema this build writes and reads.
pub const SCHEMA_VERSION: u64 = 1;
const TREE_NAME: &str = "amber";

/// The kinds of record that have ids of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Entity {
    Leader,
    Post,
    Review,
}

impl Entity {
    /// A one-byte code used in storage keys. Stable: never renumber.
    pub fn code(self) -> u8 {
        match self {
            Entity::Leader => b'l',
            Entity::Post => b'p',
            Entity::Review => b'r',
        }
    }

    /// The name in messages (`leader`, `post`, `review item`).
    pub fn name(self) -> &'static str {
        match self {
            Entity::Leader => "leader",
            Entity::Post => "post",
            Entity::Review => "review item",
        }
    }
}

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
    /// Free space is below the reserve (or a flush ran out of it): nothing was written.
    #[error("the disk is full: {available_mb} MiB free, {reserve_mb} MiB must stay free (DISK_RESERVE_MB); writes are refused until space is freed")]
    DiskFull { available_mb: u64, reserve_mb: u64 },
    /// The database is closed after a failed write and could not be reopened yet.
    #[error("{0}")]
    Unavailable(String),
    /// sled could not recover its log: it stopped (panicked) while replaying it.
    /// Replication is on and the write could not go through the shared stream.
    #[error("{0}")]
    Replication(String),
    #[error("sled could not recover its log ({0}): the log (db/db) is damaged in the part sled replays at start, the part written since sled's last snapshot, as after an unclean stop (kill -9, a crash, a power cut)")]
    LogDamaged(String),
}

/// Tests that close a store and open the same directory again: sled lets go of its file
/// lock only when its last background job has dropped its handle, a moment after the
/// store is dropped (seen on a loaded machine). Waits for the lock with a deadline.
#[cfg(test)]
pub(crate) fn reopen_for_test(path: &std::path::Path, cache_mb: u64) -> Store {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match Store::open(path, cache_mb) {
            Err(err) if err.is_locked() && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other.expect("store reopens"),
        }
    }
}

impl StoreError {
    /// True when the database could not be opened because another process holds it
    /// (sled allows one process per database). sled reports that only in the text of an
    /// `ErrorKind::Other` I/O error, so this is the one place that reads it.
    pub fn is_locked(&self) -> bool {
        matches!(self, StoreError::Sled(err) if sled_is_locked(err))
    }
}

/// [`StoreError::is_locked`] of a sled error, without the clone (sled's `Clone` of an I/O
/// error rewrites its text as the `Debug` form, which no longer reads as the lock error).
pub(crate) fn sled_is_locked(err: &sled::Error) -> bool {
    matches!(err, sled::Error::Io(io)
        if io.kind() == std::io::ErrorKind::WouldBlock
            || io.to_string().starts_with("could not acquire lock"))
}

/// State shared by the writer and every reader. Only [`Store::apply`] changes it, and
/// only after the change it mirrors is on disk.
#[derive(Debug, Default)]
struct Shared {
    index: RwLock<FeedIndex>,
    leaders: RwLock<BTreeMap<u64, Leader>>,
    newest_x: RwLock<HashMap<u64, String>>,
    review_items: AtomicU64,
    pending_reviews: AtomicU64,
    /// Bumped after every change readers can see; caches of rendered answers key on it.
    generation: AtomicU64,
    /// Posts rendered by readers, invalidated by every change that writes them.
    rendered: rendered::RenderedPosts,
    /// The tree readers read; `None` while the database is closed after a failed commit
    /// (see [`disk`]), so nothing of that commit can be read.
    tree: RwLock<Option<sled::Tree>>,
    /// Free space and the reserve, measured by the writer before each commit and by health.
    disk: DiskWatch,
    /// Notification targets and the outbox's wake-up counter.
    notify: notify::NotifyState,
    /// Records found damaged (skipped where met), for health.
    damage: damage::Damage,
    /// New and deleted posts, published by [`Store::apply`] once they are on disk.
    live: Arc<crate::live::Hub>,
    /// Keys commits write while a replication snapshot is read (`replica`).
    capture: replica::Capture,
}

impl Shared {
    fn tree(&self) -> Result<sled::Tree, StoreError> {
        self.tree.read().clone().ok_or_else(|| {
            StoreError::Unavailable("the database is closed after a failed write".into())
        })
    }
}

/// The next free id of each kind. Persisted under `M:seq:*` by the change that uses one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ids {
    pub leader: u64,
    pub post: u64,
    pub review: u64,
}

impl Ids {
    /// Takes the next leader id.
    pub fn take_leader(&mut self) -> u64 {
        let id = self.leader;
        self.leader += 1;
        id
    }

    /// Takes the next post id.
    pub fn take_post(&mut self) -> u64 {
        let id = self.post;
        self.post += 1;
        id
    }

    /// Takes the next review id.
    pub fn take_review(&mut self) -> u64 {
        let id = self.review;
        self.review += 1;
        id
    }
}

/// The single writer. Owned by the `PostStore` actor.
#[derive(Debug)]
pub struct Store {
    db: sled::Db,
    tree: sled::Tree,
    shared: Arc<Shared>,
    /// The database directory and page cache size, to reopen it (see [`disk`]); index
    /// snapshots sit next to it (`db.index-<tag>`).
    dir: PathBuf,
    cache_mb: u64,
    /// The writes of a commit whose flush failed: the store must be reopened.
    failed: Option<Vec<(sled::IVec, Option<sled::IVec>)>>,
    /// Where the index journal stands (see `snapshot`).
    journal: snapshot::Journal,
    /// Invariant: what `M:seq:*` holds on disk.
    ids: Ids,
    /// Posts on disk that the in-memory index leaves out, per platform slot (an offline
    /// import's, see [`ChangeSet::leave_unindexed`](change::ChangeSet)); counted in the
    /// post counters every commit writes.
    unindexed: [u64; 3],
    /// True once a commit left posts out of the index: no snapshot of it is saved, and
    /// sled names none, so the next open rebuilds it from the `T` keys.
    index_stale: bool,
    /// The replication stream position of the entry being applied: written by the next
    /// commit, in its batch (`crate::replication`).
    pub(crate) stamp: Option<Vec<u8>>,
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
    /// checks the schema version and rebuilds the in-memory indexes. Rendered posts are
    /// kept in an unlinked file beside the database (`storage::rendered`), not in memory.
    pub fn open(dir: &Path, cache_mb: u64) -> Result<Store, StoreError> {
        let (db, tree, set_aside) = Store::open_db(dir, cache_mb)?;
        let shared = Arc::new(Shared {
            disk: DiskWatch::new(dir),
            ..Default::default()
        });
        if let Some(path) = set_aside {
            shared.damage.set_snapshot_set_aside(path);
        }
        shared.rendered.attach(dir);
        Store::around(db, tree, dir, cache_mb, shared)
    }

    /// Opens sled and its one tree; also where sled's damaged snapshot was set aside, if
    /// it was (see [`sled_files`]).
    fn open_db(
        dir: &Path,
        cache_mb: u64,
    ) -> Result<(sled::Db, sled::Tree, Option<PathBuf>), StoreError> {
        let config = || {
            sled::Config::new()
                .path(dir)
                .cache_capacity(cache_mb.max(1) * 1024 * 1024)
                // Acknowledged writes are flushed explicitly; the timer adds nothing.
                .flush_every_ms(None)
        };
        let (db, set_aside) = sled_files::open(config, dir)?;
        let tree = disk::open_tree(&db)?;
        Ok((db, tree, set_aside))
    }

    /// Builds the store around open sled handles and `shared` (new, or kept from a store
    /// that was closed after a failed commit): checks the schema version, loads the
    /// in-memory state from disk and shows the tree to readers.
    fn around(
        db: sled::Db,
        tree: sled::Tree,
        dir: &Path,
        cache_mb: u64,
        shared: Arc<Shared>,
    ) -> Result<Store, StoreError> {
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
        let seq = |name: &str| get_u64(&tree, &keys::named_key(keys::META, name));
        let ids = Ids {
            leader: seq("seq:leader")?.unwrap_or(1),
            post: seq("seq:post")?.unwrap_or(1),
            review: seq("seq:review")?.unwrap_or(1),
        };
        let mut store = Store {
            db,
            tree,
            shared,
            dir: dir.to_path_buf(),
            cache_mb,
            failed: None,
            journal: Default::default(),
            ids,
            unindexed: [0; 3],
            index_stale: false,
            stamp: None,
        };
        store.load()?;
        // After a reopen, renderings made before it must not come back.
        let visible_at = store.shared.generation.load(Ordering::Acquire) + 1;
        store.shared.rendered.forget_all(visible_at);
        *store.shared.tree.write() = Some(store.tree.clone());
        store.shared.disk.set_closed(false);
        store.shared.generation.fetch_add(1, Ordering::Release);
        Ok(store)
    }

    /// Sets how much free space every commit must leave under the data directory.
    pub fn set_disk_reserve_mb(&self, mb: u64) {
        self.shared.disk.set_reserve(mb * 1024 * 1024);
    }

    /// Fills the in-memory state from disk: the feed index, leaders, `since_id`s and
    /// the review counters.
    fn load(&mut self) -> Result<(), StoreError> {
        let index = self.load_index()?;
        *self.shared.index.write() = index;
        *self.shared.leaders.write() =
            leaders::load(&self.tree, &self.shared.damage, self.ids.leader)?;
        *self.shared.newest_x.write() = leaders::load_newest_x(&self.tree)?;
        reviews::load_counters(&self.tree, &self.shared)?;
        *self.shared.notify.targets.write() = notify::load(&self.tree)?;
        posts::check_counters(&self.tree, &self.shared.index.read())
    }

    /// A read handle over the same data.
    pub fn reader(&self) -> StoreReader {
        StoreReader::new(self.shared.clone())
    }

    /// Flushes everything to disk (used at shutdown).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    /// Refuses new records once the id space an index slot can hold is used up.
    fn check_id_space(&self) -> Result<(), StoreError> {
        if self.ids.post >= feed_index::MAX_POST_ID || self.ids.leader >= feed_index::MAX_LEADER_ID
        {
            return Err(StoreError::Conflict(
                "the id space of this database is exhausted".into(),
            ));
        }
        Ok(())
    }

    /// Sets (or with `None` clears) a small metadata value.
    pub fn set_meta(&mut self, name: &str, value: Option<&[u8]>) -> Result<(), StoreError> {
        let key = keys::named_key(keys::META, &format!("app:{name}"));
        let mut change = ChangeSet::default();
        match value {
            Some(v) => change.put(key, v),
            None => change.remove(key),
        }
        self.apply(change)
    }
}

#[cfg(test)]
mod tests {
    use crate::storage::Store;

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
}
