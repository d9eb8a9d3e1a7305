//! The feed index's fast restart: a clean shutdown writes the index to
//! `$DATA_DIR/db.index` with a random tag stored under `M:index_snapshot`; the next start
//! uses the file only if the tag matches and its length equals the stored post counter,
//! and removes the marker before any write. Without a valid snapshot the index is rebuilt
//! from sled's time index (`T` keys), so a crash can never bring back a stale index.

use std::sync::atomic::Ordering;

use crate::storage::feed_index::{Entry, FeedIndex};
use crate::storage::{get_u64, keys, Store, StoreError};

impl Store {
    /// Loads the feed index: from the snapshot a clean shutdown left, or else by scanning
    /// the time index. A snapshot is used once: its marker is removed before any write.
    pub(super) fn load_index(&mut self) -> Result<FeedIndex, StoreError> {
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
            if let (Some((ts, id)), Some((leader, platform, kind))) =
                (keys::parse_time_key(&k), keys::parse_time_value(&v))
            {
                index.insert(Entry {
                    timestamp_ms: ts,
                    post_id: id,
                    leader_id: leader,
                    platform,
                    kind,
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
}

#[cfg(test)]
mod tests {
    use crate::storage::posts::tests::{all, draft, x_post};
    use crate::storage::Store;

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
