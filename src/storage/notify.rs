//! Notification targets (`W` keys) and the outbox (`Q` keys): one entry per target and
//! post, staged in the same change as the post it announces (so a post that is stored
//! is announced, and one that is not is never announced), removed once delivered.
//! Targets are few and live in memory too, so staging costs no read.

use std::collections::BTreeMap;

use parking_lot::RwLock;
use tokio::sync::watch;

use crate::domain::post::Post;
use crate::notify::target::{Event, Paused, Target, TargetDraft};
use crate::storage::change::ChangeSet;
use crate::storage::{codec, get_u64, keys, Store, StoreError};

impl codec::Versioned for Target {
    const VERSION: u8 = 1;
}

/// What readers see of the notification state: the targets, and a counter bumped after
/// every commit that added outbox entries (the delivery actor waits on it).
#[derive(Debug)]
pub(super) struct NotifyState {
    pub targets: RwLock<BTreeMap<u64, Target>>,
    pub wake: watch::Sender<u64>,
}

impl Default for NotifyState {
    fn default() -> NotifyState {
        NotifyState {
            targets: RwLock::default(),
            wake: watch::Sender::new(0),
        }
    }
}

impl NotifyState {
    /// Tells the delivery actor that the outbox has new entries.
    pub fn wake(&self) {
        self.wake.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Every stored target (start-up).
pub(super) fn load(tree: &sled::Tree) -> Result<BTreeMap<u64, Target>, StoreError> {
    let mut targets = BTreeMap::new();
    for kv in tree.scan_prefix([keys::NOTIFY_TARGET]) {
        let (_, v) = kv?;
        let target: Target = codec::decode(&v)?;
        targets.insert(target.id, target);
    }
    Ok(targets)
}

/// The `Q` key prefix of one target.
pub(super) fn outbox_prefix(target_id: u64) -> [u8; 9] {
    keys::id_key(keys::OUTBOX, target_id)
}

const SEQ_NAME: &str = "seq:notify";

impl Store {
    /// Stages one outbox entry for every target that wants `post` for `event` (paused
    /// targets too: their queue waits for them).
    pub(super) fn stage_outbox(&self, change: &mut ChangeSet, post: &Post, event: Event) {
        for target in self.shared.notify.targets.read().values() {
            if target.wants(post, event) {
                change.outbox_put(
                    &keys::outbox_key(target.id, post.id)[..],
                    &[event.code()][..],
                );
            }
        }
    }

    /// Stores a new target. Its queue starts empty: only posts stored from now on notify.
    pub fn create_notify_target(
        &mut self,
        draft: TargetDraft,
        from_env: bool,
        now_ms: i64,
    ) -> Result<Target, StoreError> {
        let seq_key = keys::named_key(keys::META, SEQ_NAME);
        let id = get_u64(&self.tree, &seq_key)?.unwrap_or(1);
        let target = Target::new(id, draft, from_env, now_ms);
        let mut change = ChangeSet::default();
        change.put(
            &keys::id_key(keys::NOTIFY_TARGET, id)[..],
            codec::encode(&target)?,
        );
        change.put(seq_key, &(id + 1).to_be_bytes()[..]);
        self.apply(change)?;
        self.shared
            .notify
            .targets
            .write()
            .insert(id, target.clone());
        Ok(target)
    }

    /// Replaces a stored target's record (filters, pause state); its queue is kept.
    pub fn update_notify_target(&mut self, target: Target) -> Result<(), StoreError> {
        if !self.shared.notify.targets.read().contains_key(&target.id) {
            return Err(StoreError::NotFound("notification target"));
        }
        let mut change = ChangeSet::default();
        change.put(
            &keys::id_key(keys::NOTIFY_TARGET, target.id)[..],
            codec::encode(&target)?,
        );
        self.apply(change)?;
        self.shared.notify.targets.write().insert(target.id, target);
        Ok(())
    }

    /// Pauses (`Some`) or resumes (`None`) a target.
    pub fn set_notify_paused(
        &mut self,
        id: u64,
        paused: Option<Paused>,
    ) -> Result<Target, StoreError> {
        let mut target = self
            .shared
            .notify
            .targets
            .read()
            .get(&id)
            .cloned()
            .ok_or(StoreError::NotFound("notification target"))?;
        target.paused = paused;
        self.update_notify_target(target.clone())?;
        if target.paused.is_none() {
            self.shared.notify.wake();
        }
        Ok(target)
    }

    /// Removes a target and its whole queue in one batch. Returns how many queued
    /// deliveries went with it.
    pub fn delete_notify_target(&mut self, id: u64) -> Result<usize, StoreError> {
        if !self.shared.notify.targets.read().contains_key(&id) {
            return Err(StoreError::NotFound("notification target"));
        }
        let mut change = ChangeSet::default();
        change.remove(&keys::id_key(keys::NOTIFY_TARGET, id)[..]);
        let mut dropped = 0;
        for kv in self.tree.scan_prefix(outbox_prefix(id)) {
            let (k, _) = kv?;
            change.remove(k);
            dropped += 1;
        }
        self.apply(change)?;
        self.shared.notify.targets.write().remove(&id);
        Ok(dropped)
    }

    /// Keeps the target configured by `NOTIFY_URL` in step with it: created when first
    /// set, changed in place (same id, queue kept) when the variables change, removed
    /// when they are unset.
    pub fn sync_env_notify_target(
        &mut self,
        draft: Option<TargetDraft>,
        now_ms: i64,
    ) -> Result<Option<Target>, StoreError> {
        let current = self
            .shared
            .notify
            .targets
            .read()
            .values()
            .find(|t| t.from_env)
            .cloned();
        match (current, draft) {
            (None, None) => Ok(None),
            (None, Some(d)) => self.create_notify_target(d, true, now_ms).map(Some),
            (Some(t), Some(d)) if t.spec == d => Ok(Some(t)),
            (Some(mut t), Some(d)) => {
                t.spec = d;
                self.update_notify_target(t.clone())?;
                Ok(Some(t))
            }
            (Some(t), None) => {
                let dropped = self.delete_notify_target(t.id)?;
                tracing::warn!(
                    target_id = t.id,
                    dropped,
                    "NOTIFY_URL is no longer set: its target is removed"
                );
                Ok(None)
            }
        }
    }

    /// Removes delivered entries from a target's queue.
    pub fn outbox_done(&mut self, target_id: u64, post_ids: &[u64]) -> Result<(), StoreError> {
        let mut change = ChangeSet::default();
        for post in post_ids {
            change.remove(&keys::outbox_key(target_id, *post)[..]);
        }
        self.apply(change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::post::{NewPost, PostKind};
    use crate::notify::target::Format;
    use crate::storage::posts::tests::draft as leader_draft;
    use crate::storage::posts::IngestMode;

    fn draft(kinds: Vec<PostKind>) -> TargetDraft {
        TargetDraft {
            url: "http://127.0.0.1:9/hook".into(),
            format: Format::Json,
            leaders: vec![],
            kinds,
            keywords: vec![],
            approved_only: false,
        }
    }

    fn x_post(leader: u64, ext: &str, ts: i64) -> NewPost {
        crate::storage::posts::tests::x_post(leader, ext, ts, &[])
    }

    #[test]
    fn new_posts_are_queued_in_their_batch_and_backfill_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let (a, b, leader) = {
            let mut store = Store::open(&path, 1).unwrap();
            let leader = store.create_leader(leader_draft("A"), 0).unwrap().id;
            let a = store.create_notify_target(draft(vec![]), false, 0).unwrap();
            let b = store
                .create_notify_target(draft(vec![PostKind::Reply]), false, 0)
                .unwrap();
            let reader = store.reader();
            let mut wake = reader.outbox_wake();
            wake.borrow_and_update();
            store
                .insert_posts_as(vec![x_post(leader, "10", 10)], IngestMode::Backfill)
                .unwrap();
            assert_eq!(reader.outbox_len(a.id).unwrap(), 0);
            assert!(!wake.has_changed().unwrap());
            let report = store
                .insert_posts_as(
                    vec![x_post(leader, "11", 11), x_post(leader, "12", 12)],
                    IngestMode::New,
                )
                .unwrap();
            assert!(wake.has_changed().unwrap());
            let ids: Vec<u64> = report.inserted.iter().map(|p| p.id).collect();
            let queued = reader.outbox_after(a.id, None, 10).unwrap();
            assert_eq!(
                queued,
                ids.iter().map(|id| (*id, Event::New)).collect::<Vec<_>>()
            );
            assert_eq!(
                reader.outbox_after(a.id, Some(ids[0]), 10).unwrap(),
                vec![(ids[1], Event::New)]
            );
            // The kinds filter: no reply was stored.
            assert_eq!(reader.outbox_len(b.id).unwrap(), 0);
            // A duplicate is not new.
            store
                .insert_posts_as(vec![x_post(leader, "12", 12)], IngestMode::New)
                .unwrap();
            assert_eq!(reader.outbox_len(a.id).unwrap(), 2);
            store.outbox_done(a.id, &ids[..1]).unwrap();
            (a, b, leader)
        };
        // A restart finds the targets and what is still queued.
        let mut store = crate::storage::reopen_for_test(&path, 1);
        let reader = store.reader();
        assert_eq!(reader.notify_targets().len(), 2);
        assert_eq!(reader.outbox_len(a.id).unwrap(), 1);
        // Ids are not reused; deleting a target drops its queue with it.
        let c = store.create_notify_target(draft(vec![]), false, 0).unwrap();
        assert!(c.id > b.id);
        assert_eq!(store.delete_notify_target(a.id).unwrap(), 1);
        assert_eq!(reader.outbox_len(a.id).unwrap(), 0);
        assert!(matches!(
            store.delete_notify_target(a.id),
            Err(StoreError::NotFound(_))
        ));
        let _ = leader;
    }

    #[test]
    fn a_paused_target_keeps_queueing_and_resuming_wakes_delivery() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("db"), 1).unwrap();
        let leader = store.create_leader(leader_draft("A"), 0).unwrap().id;
        let t = store.create_notify_target(draft(vec![]), false, 0).unwrap();
        let paused = Paused {
            at_ms: 5,
            reason: "HTTP 500".into(),
        };
        store.set_notify_paused(t.id, Some(paused.clone())).unwrap();
        store
            .insert_posts_as(vec![x_post(leader, "1", 1)], IngestMode::New)
            .unwrap();
        let reader = store.reader();
        assert_eq!(reader.outbox_len(t.id).unwrap(), 1);
        assert_eq!(reader.notify_target(t.id).unwrap().paused, Some(paused));
        let mut wake = reader.outbox_wake();
        wake.borrow_and_update();
        store.set_notify_paused(t.id, None).unwrap();
        assert!(wake.has_changed().unwrap());
        assert_eq!(reader.notify_target(t.id).unwrap().paused, None);
    }

    #[test]
    fn approved_only_targets_are_queued_by_the_approval() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("db"), 1).unwrap();
        let leader = store.create_leader(leader_draft("A"), 0).unwrap().id;
        let approved = store
            .create_notify_target(
                TargetDraft {
                    approved_only: true,
                    ..draft(vec![])
                },
                false,
                0,
            )
            .unwrap();
        let mut new = x_post(leader, "5", 5);
        new.platform_post_id = None;
        let (post, item) = store.create_post(new, true, 0).unwrap();
        let reader = store.reader();
        assert_eq!(reader.outbox_len(approved.id).unwrap(), 0);
        let item = item.unwrap().id;
        let approve = |store: &mut Store| {
            let state = crate::domain::review::ReviewState::Approved;
            store.decide_review(item, state, None, "r", 1).unwrap();
        };
        approve(&mut store);
        assert_eq!(
            reader.outbox_after(approved.id, None, 5).unwrap(),
            vec![(post.id, Event::Approved)]
        );
        // Approving again announces nothing more.
        approve(&mut store);
        assert_eq!(reader.outbox_len(approved.id).unwrap(), 1);
    }
}
