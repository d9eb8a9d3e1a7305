//! A full disk, and a commit that failed.
//!
//! **Before a commit** [`Store::apply`] asks the file system how much space is left under
//! `DATA_DIR` and refuses ([`StoreError::DiskFull`]) when less than the reserve
//! (`DISK_RESERVE_MB`) would remain: the common case of a filling disk never reaches sled.
//!
//! **When a flush fails anyway** (a batch larger than the reserve, another process filling
//! the disk, an I/O error), sled has already applied the batch in memory and keeps
//! refusing every later write (its error is sticky). Nothing of the failed change may be
//! seen, so the commit hides the database from readers at once (they answer 503 until it
//! is back) and the writer closes and reopens sled: what sled recovers from disk is then
//! the truth, and the in-memory state (feed index, leaders, counters, sequences) is
//! reloaded from it. The failed batch is normally not on disk (sled recovers batches
//! whole or not at all), so no read, dedup check or restart shows it, and a retry stores
//! it. If it did reach the disk after all, the reload shows it consistently and the
//! commit is logged as such. While sled cannot be reopened (the disk is still full) the
//! writer stays [`Writer::Closed`] and tries again before each write and on
//! [`Writer::recover`] (a timer in `startup`); writes resume by themselves once space is back.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sled::IVec;

use crate::storage::{Shared, Store, StoreError, TREE_NAME};

/// Free space under the data directory, measured against the reserve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// Bytes an unprivileged writer may still use.
    pub available: u64,
    /// Bytes that must stay free.
    pub reserve: u64,
}

impl Space {
    /// True when a write would eat into the reserve.
    pub fn low(&self) -> bool {
        self.available < self.reserve
    }

    /// The refusal for a write while space is low.
    pub fn error(&self) -> StoreError {
        StoreError::DiskFull {
            available_mb: self.available / (1024 * 1024),
            reserve_mb: self.reserve.div_ceil(1024 * 1024),
        }
    }
}

/// Where the database lives and how much space it must leave free; shared with readers
/// so health measures the same thing the writer does.
#[derive(Debug, Default)]
pub(crate) struct DiskWatch {
    dir: PathBuf,
    reserve: std::sync::atomic::AtomicU64,
    /// True while the database is closed after a failed commit.
    closed: AtomicBool,
}

impl DiskWatch {
    pub(crate) fn new(dir: &Path) -> DiskWatch {
        DiskWatch {
            // The database directory may not exist yet at the first measure; its parent does.
            dir: dir.to_path_buf(),
            ..Default::default()
        }
    }

    pub(crate) fn set_reserve(&self, bytes: u64) {
        self.reserve.store(bytes, Ordering::Relaxed);
    }

    /// Measures free space now (one `statvfs`). `None` when the file system does not say.
    pub(crate) fn space(&self) -> Option<Space> {
        let reserve = self.reserve.load(Ordering::Relaxed);
        let at = if self.dir.exists() {
            self.dir.as_path()
        } else {
            self.dir.parent().unwrap_or(Path::new("."))
        };
        fs2::available_space(at)
            .ok()
            .map(|available| Space { available, reserve })
    }

    /// Refuses a write when the reserve would be touched.
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        match self.space() {
            Some(space) if space.low() => Err(space.error()),
            _ => Ok(()),
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(crate) fn set_closed(&self, closed: bool) {
        self.closed.store(closed, Ordering::Release);
    }
}

/// True when sled's error means the disk is full.
pub(crate) fn is_disk_full(err: &sled::Error) -> bool {
    matches!(err, sled::Error::Io(io) if io.kind() == std::io::ErrorKind::StorageFull
        || io.raw_os_error() == Some(28)
        || io.to_string().contains("No space left on device"))
}

/// What is left of a [`Store`] whose sled handles were dropped after a failed commit:
/// everything needed to open it again around the same shared state.
#[derive(Debug)]
pub struct Closed {
    dir: PathBuf,
    cache_mb: u64,
    shared: Arc<Shared>,
    /// The writes of the commit that failed, to tell afterwards whether they reached disk.
    failed: Vec<(IVec, Option<IVec>)>,
    /// Why the last reopen failed.
    last_error: String,
}

/// The writer as the `PostStore` actor holds it: an open store, or a closed one that
/// reopens as soon as it can.
#[derive(Debug)]
pub enum Writer {
    Open(Store),
    Closed(Closed),
    /// Only while switching between the two.
    Switching,
}

impl Writer {
    /// The open store, reopening a closed one first. Refuses while free space is below
    /// the reserve (nothing is touched then) or while sled cannot be opened.
    pub fn open(&mut self) -> Result<&mut Store, StoreError> {
        if let Writer::Closed(closed) = self {
            closed.shared.disk.check()?;
            self.recover();
        }
        match self {
            Writer::Open(store) => Ok(store),
            Writer::Closed(closed) => Err(StoreError::Unavailable(closed.last_error.clone())),
            Writer::Switching => Err(StoreError::Unavailable("the database is reopening".into())),
        }
    }

    /// After each write: closes and reopens a store whose commit failed; tries to reopen
    /// a closed one. Returns true when the store is open afterwards.
    pub fn recover(&mut self) -> bool {
        let needs = match self {
            Writer::Open(store) => store.failed.is_some(),
            Writer::Closed(_) => true,
            Writer::Switching => false,
        };
        if needs {
            let closed = match std::mem::replace(self, Writer::Switching) {
                Writer::Open(store) => store.into_closed(),
                Writer::Closed(closed) => closed,
                Writer::Switching => unreachable!("checked above"),
            };
            *self = match closed.reopen() {
                Ok(store) => Writer::Open(store),
                Err(closed) => Writer::Closed(closed),
            };
        }
        matches!(self, Writer::Open(_))
    }
}

impl Store {
    /// Drops sled's handles (readers see the database as unavailable from here on).
    fn into_closed(self) -> Closed {
        let Store {
            db,
            tree,
            shared,
            dir,
            cache_mb,
            failed,
            ..
        } = self;
        *shared.tree.write() = None;
        shared.disk.set_closed(true);
        drop(tree);
        drop(db);
        Closed {
            dir,
            cache_mb,
            shared,
            failed: failed.unwrap_or_default(),
            last_error: "the database is closed after a failed write".into(),
        }
    }
}

impl Closed {
    /// A store closed by a bootstrap switch that could not open the new database yet:
    /// the next open tries again (and completes the switch first).
    pub(super) fn after_switch(
        dir: PathBuf,
        cache_mb: u64,
        shared: Arc<Shared>,
        last_error: String,
    ) -> Closed {
        *shared.tree.write() = None;
        shared.disk.set_closed(true);
        Closed {
            dir,
            cache_mb,
            shared,
            failed: Vec::new(),
            last_error,
        }
    }

    /// Opens sled again and reloads the in-memory state from what it recovered. Readers
    /// that still hold the old handle keep its file lock for a moment: a few short waits.
    fn reopen(mut self) -> Result<Store, Closed> {
        // A bootstrap switch that stopped after its commit point ends first.
        if let Some(data_dir) = self.dir.parent() {
            if let Err(err) = crate::storage::replica::finish_pending_switch(data_dir) {
                self.last_error = format!("the bootstrap switch could not be completed: {err}");
                return Err(self);
            }
        }
        let mut wait = Duration::from_millis(5);
        let opened = loop {
            match Store::open_db(&self.dir, self.cache_mb) {
                Err(err) if err.is_locked() && wait < Duration::from_millis(1000) => {
                    std::thread::sleep(wait);
                    wait *= 2;
                }
                other => break other,
            }
        };
        let (db, tree) = match opened {
            Ok((db, tree, set_aside)) => {
                if let Some(path) = set_aside {
                    self.shared.damage.set_snapshot_set_aside(path);
                }
                (db, tree)
            }
            Err(err) => {
                tracing::warn!(error = %err, "the database could not be reopened yet");
                self.last_error = format!("the database could not be reopened: {err}");
                return Err(self);
            }
        };
        let reached_disk = !self.failed.is_empty()
            && self
                .failed
                .iter()
                .all(|(k, v)| tree.get(k).ok().flatten().as_ref() == v.as_ref());
        if reached_disk {
            tracing::error!("a commit reported as failed reached the disk after all; showing it");
        }
        match Store::around(db, tree, &self.dir, self.cache_mb, self.shared.clone()) {
            Ok(store) => {
                tracing::info!("the database is open again after a failed write");
                Ok(store)
            }
            Err(err) => {
                tracing::warn!(error = %err, "the reopened database could not be loaded");
                self.last_error = format!("the database could not be reopened: {err}");
                Err(self)
            }
        }
    }
}

/// Opens the one tree of a sled database (used by [`Store::open`] and the reopen).
pub(crate) fn open_tree(db: &sled::Db) -> Result<sled::Tree, StoreError> {
    Ok(db.open_tree(TREE_NAME)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn space_below_the_reserve_is_low_and_refused_as_disk_full() {
        let space = Space {
            available: 3 * 1024 * 1024,
            reserve: 64 * 1024 * 1024,
        };
        assert!(space.low());
        assert!(matches!(
            space.error(),
            StoreError::DiskFull {
                available_mb: 3,
                reserve_mb: 64
            }
        ));
        assert!(!Space {
            available: 1,
            reserve: 0
        }
        .low());
    }

    #[test]
    fn enospc_is_recognised() {
        let io = std::io::Error::from_raw_os_error(28);
        assert!(is_disk_full(&sled::Error::Io(io)));
        let other = std::io::Error::other("boom");
        assert!(!is_disk_full(&sled::Error::Io(other)));
    }
}
