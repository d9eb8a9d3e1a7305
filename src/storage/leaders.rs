//! Leaders: create, seed, update, delete (with everything that hangs off them), and the
//! X account facts cached per leader (user id, `since_id`).

use std::collections::{BTreeMap, HashMap};

use crate::domain::leader::{Leader, LeaderDraft};
use crate::storage::change::ChangeSet;
use crate::storage::damage::{Damage, RecordScan};
use crate::storage::{codec, keys, Store, StoreError};

/// Every stored leader, by id (start-up); damaged records are skipped and noted.
pub(super) fn load(
    tree: &sled::Tree,
    damage: &Damage,
    next_id: u64,
) -> Result<BTreeMap<u64, Leader>, StoreError> {
    let mut leaders = BTreeMap::new();
    for kv in RecordScan::new(tree, damage, keys::LEADER, next_id) {
        let (k, v) = kv?;
        if let Some(leader) = damage.skip::<Leader>(&k, codec::decode(&v).map_err(Into::into))? {
            leaders.insert(leader.id, leader);
        }
    }
    Ok(leaders)
}

/// Every leader's newest stored X post id (start-up).
pub(super) fn load_newest_x(tree: &sled::Tree) -> Result<HashMap<u64, String>, StoreError> {
    let mut newest = HashMap::new();
    for kv in tree.scan_prefix([keys::NEWEST]) {
        let (k, v) = kv?;
        if let Some(id) = keys::id_from_key(&k) {
            newest.insert(id, String::from_utf8_lossy(&v).into_owned());
        }
    }
    Ok(newest)
}

fn leader_from(id: u64, draft: LeaderDraft, created_at_ms: i64) -> Leader {
    Leader {
        id,
        name: draft.name,
        handles: draft.handles,
        tracking_topics: draft.tracking_topics,
        created_at_ms,
        avatar_url: draft.avatar_url,
    }
}

impl Store {
    /// Stores a new leader.
    pub fn create_leader(&mut self, draft: LeaderDraft, now_ms: i64) -> Result<Leader, StoreError> {
        self.check_id_space()?;
        let mut ids = self.ids;
        let leader = leader_from(ids.take_leader(), draft, now_ms);
        let mut change = ChangeSet::default();
        change.put_leader(leader.clone())?;
        change.set_ids(ids);
        self.apply(change)?;
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
        let mut ids = self.ids;
        let mut change = ChangeSet::default();
        let n = drafts.len();
        for draft in drafts {
            change.put_leader(leader_from(ids.take_leader(), draft, now_ms))?;
        }
        change.put(seeded_key, &[1u8]);
        change.set_ids(ids);
        self.apply(change)?;
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
        let leader = leader_from(id, draft, old.created_at_ms);
        let mut change = ChangeSet::default();
        if old.x_handle() != leader.x_handle() {
            change.forget_x_account(id);
        }
        change.put_leader(leader.clone())?;
        self.apply(change)?;
        Ok(leader)
    }

    /// Deletes a leader with all its posts, their review items and dedup keys, in one batch.
    /// Returns how many posts went.
    pub fn delete_leader(&mut self, id: u64) -> Result<usize, StoreError> {
        if !self.shared.leaders.read().contains_key(&id) {
            return Err(StoreError::NotFound("leader"));
        }
        let entries = self.shared.index.read().leader_entries(id);
        let mut change = ChangeSet::default();
        for e in &entries {
            self.remove_post_keys(&mut change, e.post_id)?;
            change.index_remove(*e);
        }
        change.remove_leader(id);
        self.apply(change)?;
        Ok(entries.len())
    }

    /// Remembers the X user id resolved for a leader's handle.
    pub fn cache_x_user(
        &mut self,
        leader_id: u64,
        handle: &str,
        user_id: &str,
    ) -> Result<(), StoreError> {
        let mut change = ChangeSet::default();
        change.put(
            &keys::id_key(keys::X_USER, leader_id)[..],
            format!("{handle}\0{user_id}").into_bytes(),
        );
        self.apply(change)
    }
}
