//! Restoring a backup: records merged into the store with dedup, in one change.

use std::collections::{HashMap, HashSet};

use crate::domain::leader::Leader;
use crate::domain::post::{Platform, Post};
use crate::domain::review::{ReviewItem, ReviewState};
use crate::storage::change::ChangeSet;
use crate::storage::feed_index::{MAX_LEADER_ID, MAX_POST_ID};
use crate::storage::posts::note_newest;
use crate::storage::{codec, keys, Store, StoreError};

/// A record read from or written to a backup.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Leader(Leader),
    Post(Box<Post>),
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

impl Store {
    /// Merges backup records into the store. Leaders and reviews keep their ids when
    /// free; posts dedup on (platform, external id) and keep their ids when free.
    pub fn import(&mut self, records: Vec<Record>) -> Result<ImportReport, StoreError> {
        let mut report = ImportReport::default();
        let mut change = ChangeSet::default();
        let mut ids = self.ids;
        let mut staged_posts: HashSet<u64> = HashSet::new();
        let mut staged_dedup: HashSet<(Platform, String)> = HashSet::new();
        let mut new_leaders: HashSet<u64> = HashSet::new();
        let mut newest_updates: HashMap<u64, String> = HashMap::new();
        let mut post_id_map: HashMap<u64, u64> = HashMap::new();
        for record in records {
            match record {
                // Ids an index slot cannot hold (only a hand-made backup has them).
                Record::Leader(l) if l.id >= MAX_LEADER_ID => report.skipped += 1,
                Record::Post(p) if p.id >= MAX_POST_ID || p.leader_id >= MAX_LEADER_ID => {
                    report.skipped += 1
                }
                Record::Leader(leader) => {
                    if self.shared.leaders.read().contains_key(&leader.id)
                        || new_leaders.contains(&leader.id)
                    {
                        report.skipped += 1;
                        continue;
                    }
                    ids.leader = ids.leader.max(leader.id + 1);
                    new_leaders.insert(leader.id);
                    change.put_leader(leader)?;
                    report.leaders += 1;
                }
                Record::Post(mut post) => {
                    let leader_known = self.shared.leaders.read().contains_key(&post.leader_id)
                        || new_leaders.contains(&post.leader_id);
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
                        post.id = ids.post.max(staged_posts.iter().max().map_or(0, |m| m + 1));
                    }
                    post_id_map.insert(original_id, post.id);
                    ids.post = ids.post.max(post.id + 1);
                    if let Some(ext) = &post.platform_post_id {
                        staged_dedup.insert((post.platform, ext.clone()));
                        if post.platform == Platform::X {
                            note_newest(&mut newest_updates, &self.shared, post.leader_id, ext);
                        }
                    }
                    staged_posts.insert(post.id);
                    self.stage_new(&mut change, &post, &[])?;
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
                        item.id = ids.review;
                    }
                    item.post_id = post_id;
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
        self.apply(change)?;
        Ok(report)
    }
}
