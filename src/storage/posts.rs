//! Posts: ingestion batches with dedup and edits, the admin API's create / update /
//! delete, and the stored post record. Every post record is read and written through
//! [`read_post`] and [`ChangeSet`]-staging helpers here, which call `codec`.

use std::collections::{HashMap, HashSet};

use crate::domain::post::{Counts, NewPost, Platform, Post, Verification};
use crate::domain::review::{ReviewItem, ReviewState};
use crate::storage::change::ChangeSet;
use crate::storage::feed_index::{Entry, FeedIndex};
use crate::storage::{codec, get_u64, keys, x_id_newer, Shared, Store, StoreError};

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
    /// Stored posts whose counts a re-read or a re-delivery changed (id, review state,
    /// feed place kept; `revision` counts the change).
    pub refreshed: usize,
    /// Posts refused because they were deleted at their source (a tombstone).
    pub tombstoned: usize,
}

/// What a deletion at the source ([`Store::delete_at_source`]) did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceDeletion {
    /// The stored post removed (with its review item and dedup keys), if it was stored.
    pub removed: Option<Post>,
    /// Whether a tombstone was written now (false: the id was tombstoned already).
    pub tombstoned: bool,
}

/// Whether an ingestion batch announces its new posts to the notification targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub enum IngestMode {
    /// Posts newer than what was stored: a scheduled run, a refresh, the live stream.
    /// Each new post is queued for every target that wants it, in the same batch.
    New,
    /// History (a first sight of a leader, an explicit backfill): stored quietly, so a
    /// backfill never floods the targets.
    Backfill,
}

/// Changes to a stored post; `None` leaves a field alone.
#[derive(Debug, Clone, Default, PartialEq, bincode::Encode, bincode::Decode)]
pub struct PostPatch {
    pub content: Option<String>,
    pub timestamp_ms: Option<i64>,
    /// The client's `metrics` object (canonical JSON text).
    pub metrics: Option<String>,
    pub verification: Option<Verification>,
    pub leader_id: Option<u64>,
}

/// A post as stored: the post plus the older external ids that dedup to it.
#[derive(Debug, Clone, bincode::Encode, bincode::Decode)]
pub(crate) struct StoredPost {
    pub post: Post,
    pub aliases: Vec<String>,
}

/// Reads one stored post record.
pub(crate) fn read_post(tree: &sled::Tree, id: u64) -> Result<Option<StoredPost>, StoreError> {
    match tree.get(keys::id_key(keys::POST, id))? {
        Some(bytes) => Ok(Some(decode_post(&bytes)?)),
        None => Ok(None),
    }
}

/// Decodes a post record (`P` value).
pub(crate) fn decode_post(bytes: &[u8]) -> Result<StoredPost, StoreError> {
    Ok(codec::decode::<StoredPost>(bytes)?)
}

/// Stages a post record write.
pub(super) fn put_post(change: &mut ChangeSet, stored: &StoredPost) -> Result<(), StoreError> {
    change.put(
        &keys::id_key(keys::POST, stored.post.id)[..],
        codec::encode(stored)?,
    );
    Ok(())
}

/// A stored post X delivered again with `counts`: takes them when they moved and counts
/// the change in `revision`; returns whether the record changed. The one place a
/// re-delivery changes a stored post (a post entered through the API under its X id has
/// no counts yet: X's first delivery gives it some).
pub(crate) fn redelivered(stored: &mut StoredPost, counts: Counts) -> bool {
    if stored.post.details.counts == Some(counts) {
        return false;
    }
    stored.post.details.counts = Some(counts);
    stored.post.revision += 1;
    true
}

/// A post's place in the feed order.
pub(crate) fn entry_of(post: &Post) -> Entry {
    Entry {
        timestamp_ms: post.timestamp_ms,
        post_id: post.id,
        leader_id: post.leader_id,
        platform: post.platform,
        kind: post.details.kind,
    }
}

/// Warns (start-up) when the stored post counters disagree with the time index.
pub(super) fn check_counters(tree: &sled::Tree, index: &FeedIndex) -> Result<(), StoreError> {
    for p in Platform::ALL {
        let name = format!("posts:{}", p.as_str());
        let stored = get_u64(tree, &keys::named_key(keys::COUNTER, &name))?.unwrap_or(0);
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

/// Notes `ext` as a leader's newest X id if it is newer than what is stored or staged.
pub(super) fn note_newest(
    updates: &mut HashMap<u64, String>,
    shared: &Shared,
    leader: u64,
    ext: &str,
) {
    let current = updates
        .get(&leader)
        .cloned()
        .or_else(|| shared.newest_x.read().get(&leader).cloned());
    if current.as_deref().is_none_or(|cur| x_id_newer(ext, cur)) {
        updates.insert(leader, ext.to_string());
    }
}

impl Store {
    /// Stages a new post: record, time key, dedup keys, feed-index entry.
    pub(super) fn stage_new(
        &self,
        change: &mut ChangeSet,
        post: &Post,
        aliases: &[String],
    ) -> Result<(), StoreError> {
        put_post(
            change,
            &StoredPost {
                post: post.clone(),
                aliases: aliases.to_vec(),
            },
        )?;
        change.put(
            &keys::time_key(post.timestamp_ms, post.id)[..],
            &keys::time_value(post.leader_id, post.platform, post.details.kind)[..],
        );
        for ext in post.platform_post_id.iter().chain(aliases) {
            change.put(
                keys::dedup_key(post.platform, ext),
                &post.id.to_be_bytes()[..],
            );
        }
        change.index_insert(entry_of(post));
        Ok(())
    }

    /// Stages the removal of one post's keys (record, time key, dedup keys, review item)
    /// and counts its review item. The feed-index entry is the caller's to remove.
    pub(super) fn remove_post_keys(
        &self,
        change: &mut ChangeSet,
        post_id: u64,
    ) -> Result<(), StoreError> {
        let Some(stored) = read_post(&self.tree, post_id)? else {
            return Ok(());
        };
        let post = &stored.post;
        change.remove(&keys::id_key(keys::POST, post_id)[..]);
        change.remove(&keys::time_key(post.timestamp_ms, post_id)[..]);
        for ext in post.platform_post_id.iter().chain(stored.aliases.iter()) {
            change.remove(keys::dedup_key(post.platform, ext));
        }
        let by_post = keys::id_key(keys::REVIEW_BY_POST, post_id);
        if let Some(rid) = self.tree.get(by_post)? {
            if let Some(review_id) = <[u8; 8]>::try_from(rid.as_ref())
                .ok()
                .map(u64::from_be_bytes)
            {
                if let Some(rb) = self.tree.get(keys::id_key(keys::REVIEW, review_id))? {
                    let item: ReviewItem = codec::decode(&rb)?;
                    change.review_removed(item.state == ReviewState::Pending);
                }
                change.remove(&keys::id_key(keys::REVIEW, review_id)[..]);
            }
            change.remove(&by_post[..]);
        }
        Ok(())
    }

    /// [`Store::insert_posts_as`] for history: nothing is announced.
    pub fn insert_posts(&mut self, posts: Vec<NewPost>) -> Result<InsertReport, StoreError> {
        self.insert_timeline(posts, Vec::new(), IngestMode::Backfill)
    }

    /// [`Store::insert_timeline`] with no counts to refresh.
    pub fn insert_posts_as(
        &mut self,
        posts: Vec<NewPost>,
        mode: IngestMode,
    ) -> Result<InsertReport, StoreError> {
        self.insert_timeline(posts, Vec::new(), mode)
    }

    /// Stores a batch of posts with dedup on (platform, external id), all or nothing.
    /// A post whose edit history names a stored post updates that post instead. In the
    /// same batch, the counts X now reports for posts already stored (by X id): each such
    /// post keeps its id, review state and place in the feed; only its counts change and
    /// its `revision` goes up (unknown ids and unchanged counts are skipped). A post in
    /// `posts` that is already stored is such a re-delivery too. With [`IngestMode::New`] each post
    /// stored for the first time is queued for the notification targets that want it.
    pub fn insert_timeline(
        &mut self,
        posts: Vec<NewPost>,
        counts: Vec<(String, Counts)>,
        mode: IngestMode,
    ) -> Result<InsertReport, StoreError> {
        self.check_id_space()?;
        let mut report = InsertReport::default();
        let mut change = ChangeSet::default();
        let mut ids = self.ids;
        // External ids claimed earlier in this same batch.
        let mut claimed: HashMap<(Platform, String), u64> = HashMap::new();
        let mut newest_updates: HashMap<u64, String> = HashMap::new();
        let mut updated: HashMap<u64, StoredPost> = HashMap::new();
        // Stored posts delivered again, with the counts X now reports, and the X id when
        // they came as a post (a duplicate when nothing moved) rather than as counts.
        let mut redeliveries: Vec<(u64, Counts, Option<String>)> = Vec::new();
        {
            let leaders = self.shared.leaders.read();
            for new in posts {
                if !leaders.contains_key(&new.leader_id) {
                    report.orphans += 1;
                    continue;
                }
                let Some(ext) = new.platform_post_id.clone() else {
                    let post = new.into_post(ids.take_post());
                    self.stage_new(&mut change, &post, &[])?;
                    report.inserted.push(post);
                    continue;
                };
                let platform = new.platform;
                if claimed.contains_key(&(platform, ext.clone())) {
                    report.duplicates += 1;
                    continue;
                }
                if self.is_tombstoned(platform, &ext, &new.edit_history)? {
                    report.tombstoned += 1;
                    continue;
                }
                if let Some(post_id) = self
                    .tree
                    .get(keys::dedup_key(platform, &ext))?
                    .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
                    .map(u64::from_be_bytes)
                {
                    // Delivered again: its counts (if X sent some) are taken below.
                    match new.details.counts {
                        Some(now) => redeliveries.push((post_id, now, Some(ext))),
                        None => report.duplicates += 1,
                    }
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
                        None => match read_post(&self.tree, post_id)? {
                            Some(s) => s,
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
                        change.put(keys::dedup_key(platform, alias), &post_id.to_be_bytes()[..]);
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
                        stored.post.details = new.details;
                        stored.post.client_metrics = new.client_metrics;
                        stored.post.sentiment = new.sentiment;
                        stored.post.sentiment_score = new.sentiment_score;
                        stored.post.author = new.author;
                        stored.post.revision += 1;
                    }
                    put_post(&mut change, &stored)?;
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
                let post = new.into_post(ids.take_post());
                claimed.insert((platform, ext.clone()), post.id);
                for alias in &aliases {
                    claimed.insert((platform, alias.clone()), post.id);
                }
                self.stage_new(&mut change, &post, &aliases)?;
                if platform == Platform::X {
                    note_newest(&mut newest_updates, &self.shared, leader_id, &ext);
                }
                report.inserted.push(post);
            }
        }
        for (ext, now) in counts {
            let key = (Platform::X, ext);
            let post_id = match claimed.get(&key) {
                Some(id) => Some(*id),
                None => self
                    .tree
                    .get(keys::dedup_key(Platform::X, &key.1))?
                    .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
                    .map(u64::from_be_bytes),
            };
            if let Some(post_id) = post_id {
                redeliveries.push((post_id, now, None));
            }
        }
        // Each re-delivered post is read and written once, with the counts X sent last.
        let mut last: HashMap<u64, (StoredPost, Option<Counts>)> = HashMap::new();
        for (post_id, now, as_post) in redeliveries {
            // A post delivered again is a duplicate, whether or not its counts moved.
            report.duplicates += usize::from(as_post.is_some());
            // Posts new or edited in this batch already carry what X sent.
            if updated.contains_key(&post_id) || report.inserted.iter().any(|p| p.id == post_id) {
                continue;
            }
            let entry = match last.entry(post_id) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    match read_post(&self.tree, post_id)? {
                        Some(stored) => e.insert((stored, None)),
                        None => continue,
                    }
                }
            };
            // An older version of an edited post (an alias) does not carry its counts.
            if as_post.is_some_and(|ext| entry.0.post.platform_post_id.as_deref() != Some(&ext)) {
                continue;
            }
            entry.1 = Some(now);
        }
        for (mut stored, now) in last.into_values() {
            if now.is_some_and(|now| redelivered(&mut stored, now)) {
                put_post(&mut change, &stored)?;
                report.refreshed += 1;
            }
        }
        for (leader, ext) in &newest_updates {
            change.set_newest_x(*leader, ext);
        }
        let inserted_ids: HashSet<u64> = report.inserted.iter().map(|p| p.id).collect();
        report.updated = updated
            .into_iter()
            .filter(|(id, _)| !inserted_ids.contains(id))
            .map(|(_, s)| s.post)
            .collect();
        if report.inserted.is_empty()
            && report.updated.is_empty()
            && newest_updates.is_empty()
            && report.refreshed == 0
        {
            return Ok(report);
        }
        if mode == IngestMode::New {
            for post in &report.inserted {
                self.stage_outbox(&mut change, post, crate::notify::target::Event::New);
            }
        }
        change.set_ids(ids);
        self.apply(change)?;
        Ok(report)
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
            if self.is_tombstoned(new.platform, ext, &new.edit_history)? {
                return Err(StoreError::Conflict(format!(
                    "the {} post {ext} was deleted at its source, so it is kept out",
                    new.platform.as_str()
                )));
            }
        }
        let mut ids = self.ids;
        let mut post = new.into_post(ids.take_post());
        if requires_review {
            post.verification = Verification::Pending;
        }
        let mut change = ChangeSet::default();
        self.stage_new(&mut change, &post, &[])?;
        let review = requires_review.then(|| ReviewItem {
            id: ids.take_review(),
            post_id: post.id,
            state: ReviewState::Pending,
            notes: None,
            reviewed_by: None,
            reviewed_at_ms: None,
            updated_at_ms: now_ms,
        });
        if let Some(item) = &review {
            change.put(
                &keys::id_key(keys::REVIEW, item.id)[..],
                codec::encode(item)?,
            );
            change.put(
                &keys::id_key(keys::REVIEW_BY_POST, post.id)[..],
                &item.id.to_be_bytes()[..],
            );
            change.review_added(true);
        }
        change.set_ids(ids);
        self.apply(change)?;
        Ok((post, review))
    }

    /// Changes a stored post.
    pub fn update_post(&mut self, id: u64, patch: PostPatch) -> Result<Post, StoreError> {
        let mut stored = read_post(&self.tree, id)?.ok_or(StoreError::NotFound("post"))?;
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
        if let Some(m) = patch.metrics {
            p.client_metrics = Some(m);
        }
        if let Some(v) = patch.verification {
            p.verification = v;
        }
        if let Some(l) = patch.leader_id {
            p.leader_id = l;
        }
        p.revision += 1;
        let new_entry = entry_of(p);
        let mut change = ChangeSet::default();
        put_post(&mut change, &stored)?;
        if new_entry != old_entry {
            change.remove(&keys::time_key(old_entry.timestamp_ms, id)[..]);
            change.put(
                &keys::time_key(new_entry.timestamp_ms, id)[..],
                &keys::time_value(new_entry.leader_id, new_entry.platform, new_entry.kind)[..],
            );
            change.index_remove(old_entry);
            change.index_insert(new_entry);
        }
        self.apply(change)?;
        Ok(stored.post)
    }

    /// Deletes one post with its dedup keys and review item.
    pub fn delete_post(&mut self, id: u64) -> Result<(), StoreError> {
        let mut change = ChangeSet::default();
        self.stage_delete(&mut change, id)?
            .ok_or(StoreError::NotFound("post"))?;
        self.apply(change)
    }

    /// Stages the deletion of one stored post (record, time key, dedup keys, review
    /// item, feed-index entry): what [`Store::delete_post`] commits. Returns the post as
    /// it was; None when no such post is stored.
    fn stage_delete(
        &self,
        change: &mut ChangeSet,
        id: u64,
    ) -> Result<Option<StoredPost>, StoreError> {
        let Some(stored) = read_post(&self.tree, id)? else {
            return Ok(None);
        };
        self.remove_post_keys(change, id)?;
        change.index_remove(entry_of(&stored.post));
        Ok(Some(stored))
    }

    /// Whether `ext`, or an earlier version of it (`history`), was deleted at its source.
    pub(super) fn is_tombstoned(
        &self,
        platform: Platform,
        ext: &str,
        history: &[String],
    ) -> Result<bool, StoreError> {
        for id in std::iter::once(ext).chain(history.iter().map(String::as_str)) {
            if self.tree.contains_key(keys::tombstone_key(platform, id))? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// A post deleted at its source (X's `post.delete` for `ext`): the stored post, if
    /// any (found by any of its versions' ids), goes the way [`Store::delete_post`]
    /// removes it, and in the same batch a tombstone is written for `ext` and every id
    /// of the stored post, so no later poll, backfill or stream replay stores it again.
    pub fn delete_at_source(
        &mut self,
        platform: Platform,
        ext: &str,
        now_ms: i64,
    ) -> Result<SourceDeletion, StoreError> {
        let mut change = ChangeSet::default();
        let post_id = self
            .tree
            .get(keys::dedup_key(platform, ext))?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(u64::from_be_bytes);
        let stored = match post_id {
            Some(id) => self.stage_delete(&mut change, id)?,
            None => None,
        };
        let mut ids: Vec<String> = vec![ext.to_string()];
        if let Some(stored) = &stored {
            ids.extend(stored.post.platform_post_id.iter().cloned());
            ids.extend(stored.aliases.iter().cloned());
        }
        ids.sort();
        ids.dedup();
        let mut fresh = false;
        for id in &ids {
            let key = keys::tombstone_key(platform, id);
            if !self.tree.contains_key(&key)? {
                fresh = true;
                change.put(key, &now_ms.to_be_bytes()[..]);
            }
        }
        if stored.is_none() && !fresh {
            return Ok(SourceDeletion::default());
        }
        self.apply(change)?;
        Ok(SourceDeletion {
            removed: stored.map(|s| s.post),
            tombstoned: fresh,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use crate::domain::leader::LeaderDraft;
    use crate::domain::post::{Author, KindSet, PostKind};
    use crate::domain::sentiment::Sentiment;
    use crate::storage::query::PostQuery;
    use crate::storage::StoreReader;

    use super::*;

    pub(crate) fn draft(name: &str) -> LeaderDraft {
        LeaderDraft::parse(name, BTreeMap::new(), vec![], None).unwrap()
    }

    pub(crate) fn x_post(leader_id: u64, ext: &str, ts: i64, history: &[&str]) -> NewPost {
        NewPost {
            leader_id,
            platform: Platform::X,
            content: format!("post {ext}"),
            timestamp_ms: ts,
            sentiment: Sentiment::Neutral,
            sentiment_score: 0.0,
            platform_post_id: Some(ext.to_string()),
            verification: Verification::Unverified,
            author: Author::default(),
            details: Default::default(),
            client_metrics: None,
            edit_history: history.iter().map(|s| s.to_string()).collect(),
        }
    }

    pub(crate) fn all(reader: &StoreReader) -> Vec<Post> {
        reader.page(&PostQuery::newest(1000)).unwrap().posts
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
    fn a_redelivered_post_takes_its_new_counts_and_counts_a_revision() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path(), 8).unwrap();
        let leader = store.create_leader(draft("A"), 0).unwrap();
        let with_likes = |ext: &str, likes: u64, history: &[&str]| {
            let mut p = x_post(leader.id, ext, 5, history);
            p.details.counts = Some(Counts {
                likes,
                ..Counts::default()
            });
            p
        };
        let first = store.insert_posts(vec![with_likes("100", 1, &[])]).unwrap();
        let id = first.inserted[0].id;
        assert_eq!(first.inserted[0].revision, 0);
        let read = |store: &Store| store.reader().post(id).unwrap().unwrap();

        // Delivered again with the same counts: a duplicate, nothing written.
        let same = store.insert_posts(vec![with_likes("100", 1, &[])]).unwrap();
        assert_eq!((same.duplicates, same.refreshed), (1, 0));
        assert_eq!(read(&store).revision, 0);
        // Delivered again (twice in one batch) with moved counts: the last counts, one
        // revision, the same id.
        let moved = store
            .insert_posts(vec![with_likes("100", 5, &[]), with_likes("100", 9, &[])])
            .unwrap();
        assert_eq!((moved.duplicates, moved.refreshed), (2, 1));
        assert!(moved.inserted.is_empty());
        let post = read(&store);
        assert_eq!((post.revision, post.details.counts.unwrap().likes), (1, 9));
        // A re-read's counts (the fetcher's count updates) count too.
        let report = store
            .insert_timeline(
                Vec::new(),
                vec![(
                    "100".into(),
                    Counts {
                        likes: 10,
                        ..Counts::default()
                    },
                )],
                IngestMode::New,
            )
            .unwrap();
        assert_eq!((report.duplicates, report.refreshed), (0, 1));
        assert_eq!(read(&store).revision, 2);
        // An edit is a revision; the old version arriving late changes nothing.
        store
            .insert_posts(vec![with_likes("105", 11, &["100", "105"])])
            .unwrap();
        assert_eq!(read(&store).revision, 3);
        let late = store.insert_posts(vec![with_likes("100", 0, &[])]).unwrap();
        assert_eq!((late.duplicates, late.refreshed), (1, 0));
        let post = read(&store);
        assert_eq!((post.revision, post.details.counts.unwrap().likes), (3, 11));
        // So is a change through the API; and it survives a restart.
        store
            .update_post(
                id,
                PostPatch {
                    content: Some("changed".into()),
                    ..PostPatch::default()
                },
            )
            .unwrap();
        drop(store);
        let store = crate::storage::reopen_for_test(dir.path(), 8);
        assert_eq!(read(&store).revision, 4);
        assert_eq!(store.reader().stats().posts, 1);
    }

    /// A database written before post kinds and record version 2: its post records are
    /// version 1 and its time index values carry no kind byte.
    #[test]
    fn a_data_dir_of_version_1_records_opens_and_reads_as_before() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let mut store = crate::storage::reopen_for_test(&path, 8);
            for name in ["A", "B", "C"] {
                store.create_leader(draft(name), 0).unwrap();
            }
            // Writes the two records as the old build did: record, 9-byte time value,
            // dedup keys, counters.
            let mut change = ChangeSet::default();
            for bytes in crate::storage::codec::v1_post_records() {
                let stored = decode_post(&bytes).unwrap();
                let p = &stored.post;
                change.put(&keys::id_key(keys::POST, p.id)[..], bytes.clone());
                let mut old_value = [0u8; 9];
                old_value[..8].copy_from_slice(&p.leader_id.to_be_bytes());
                old_value[8] = p.platform.code();
                change.put(&keys::time_key(p.timestamp_ms, p.id)[..], &old_value[..]);
                for ext in p.platform_post_id.iter().chain(&stored.aliases) {
                    change.put(keys::dedup_key(p.platform, ext), &p.id.to_be_bytes()[..]);
                }
                change.index_insert(entry_of(p));
            }
            store.apply(change).unwrap();
        }
        let mut store = crate::storage::reopen_for_test(&path, 8);
        let posts = all(&store.reader());
        assert_eq!(posts.iter().map(|p| p.id).collect::<Vec<_>>(), [42, 43]);
        assert!(posts.iter().all(|p| p.kind() == PostKind::Post));
        assert_eq!(posts[0].details.counts.map(|c| c.likes), Some(259));
        assert_eq!(
            store
                .reader()
                .page(&PostQuery::newest(10).kinds(KindSet::of([PostKind::Post])))
                .unwrap()
                .total,
            2
        );
        // The old ids still dedup, the old edit alias included.
        let again = store
            .insert_posts(vec![
                x_post(3, "2007000000000000007", 1, &[]),
                x_post(3, "2006999999999999999", 1, &[]),
            ])
            .unwrap();
        assert_eq!(again.duplicates, 2);
    }

    #[test]
    fn a_deletion_at_the_source_removes_the_post_and_keeps_it_from_coming_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let mut store = crate::storage::reopen_for_test(&path, 8);
            let leader = store.create_leader(draft("A"), 0).unwrap();
            let (p, _) = store
                .create_post(x_post(leader.id, "700", 5, &[]), true, 0)
                .unwrap();
            store
                .insert_posts(vec![x_post(leader.id, "701", 6, &["699"])])
                .unwrap();
            assert_eq!(store.reader().stats().posts, 2);
            // By the id of an older version: the edited post goes, every id tombstoned.
            let gone = store.delete_at_source(Platform::X, "699", 10).unwrap();
            assert_eq!(
                gone.removed.map(|p| p.platform_post_id),
                Some(Some("701".into()))
            );
            assert!(gone.tombstoned);
            let gone = store.delete_at_source(Platform::X, "700", 11).unwrap();
            assert_eq!(gone.removed.map(|p| p.id), Some(p.id));
            let reader = store.reader();
            assert_eq!(reader.stats().posts, 0);
            assert_eq!(
                reader.stats().review_items,
                0,
                "the review item went with the post"
            );
            assert_eq!(
                reader.post_by_external_id(Platform::X, "700").unwrap(),
                None
            );
            // Twice: nothing more to do, nothing written.
            assert_eq!(
                store.delete_at_source(Platform::X, "700", 12).unwrap(),
                SourceDeletion::default()
            );
            // A deletion of a post never stored still keeps it out.
            assert!(
                store
                    .delete_at_source(Platform::X, "702", 12)
                    .unwrap()
                    .tombstoned
            );
        }
        // After a restart, no poll or backfill brings any of them back.
        let mut store = crate::storage::reopen_for_test(&path, 8);
        let leader = store.reader().leaders()[0].id;
        let again = store
            .insert_timeline(
                vec![
                    x_post(leader, "700", 5, &[]),
                    x_post(leader, "701", 6, &[]),
                    x_post(leader, "699", 4, &[]),
                    x_post(leader, "702", 7, &[]),
                    x_post(leader, "703", 8, &["702"]),
                    x_post(leader, "704", 9, &[]),
                ],
                vec![],
                IngestMode::New,
            )
            .unwrap();
        assert_eq!(again.tombstoned, 5);
        assert_eq!(again.inserted.len(), 1);
        assert_eq!(store.reader().stats().posts, 1);
        // Nor does the admin API or an old backup that still holds one.
        assert!(matches!(
            store.create_post(x_post(leader, "700", 5, &[]), false, 20),
            Err(StoreError::Conflict(_))
        ));
        let mut old_copy = x_post(leader, "701", 6, &[]).into_post(900);
        old_copy.leader_id = leader;
        let report = store
            .import([crate::storage::import::Record::Post(Box::new(old_copy))])
            .unwrap();
        assert_eq!(report.skipped, 1, "{report:?}");
        assert_eq!(store.reader().stats().posts, 1);
    }

    #[test]
    fn moving_and_deleting_posts_keeps_counters_and_the_index_in_step() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let (a, b);
        {
            let mut store = crate::storage::reopen_for_test(&path, 8);
            a = store.create_leader(draft("A"), 0).unwrap();
            b = store.create_leader(draft("B"), 0).unwrap();
            let report = store
                .insert_posts(
                    (0..10)
                        .map(|i| x_post(a.id, &format!("{}", 50 + i), i, &[]))
                        .collect(),
                )
                .unwrap();
            let moved = report.inserted[3].id;
            store
                .update_post(
                    moved,
                    PostPatch {
                        leader_id: Some(b.id),
                        timestamp_ms: Some(100),
                        ..PostPatch::default()
                    },
                )
                .unwrap();
            store.delete_post(report.inserted[0].id).unwrap();
            let reader = store.reader();
            assert_eq!(reader.stats().posts, 9);
            let first = reader.page(&PostQuery::newest(5).leaders([b.id])).unwrap();
            assert_eq!((first.total, first.posts[0].id), (1, moved));
            assert_eq!(
                reader
                    .page(&PostQuery::newest(50).leaders([a.id]))
                    .unwrap()
                    .total,
                8
            );
            assert_eq!(store.delete_leader(a.id).unwrap(), 8);
            assert_eq!(store.reader().stats().posts, 1);
        }
        // The counters written with each change agree with a rebuilt index.
        let store = crate::storage::reopen_for_test(&path, 8);
        let counter = get_u64(&store.tree, &keys::named_key(keys::COUNTER, "posts")).unwrap();
        assert_eq!(counter, Some(1));
        assert_eq!(all(&store.reader()).len(), 1);
        assert!(store.reader().leader(a.id).is_none());
        assert!(store.reader().leader(b.id).is_some());
    }
}
