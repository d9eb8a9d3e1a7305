//! Review items: the verdict on a post (approve / reject) and the review counters.

use std::sync::atomic::Ordering;

use crate::domain::post::Verification;
use crate::domain::review::{ReviewItem, ReviewState};
use crate::notify::target::Event;
use crate::storage::change::ChangeSet;
use crate::storage::posts::{put_post, read_post};
use crate::storage::{codec, get_u64, keys, Shared, Store, StoreError};

/// Loads the maintained review counters (start-up).
pub(super) fn load_counters(tree: &sled::Tree, shared: &Shared) -> Result<(), StoreError> {
    let counter = |name: &str| get_u64(tree, &keys::named_key(keys::COUNTER, name));
    shared
        .review_items
        .store(counter("reviews")?.unwrap_or(0), Ordering::Relaxed);
    shared
        .pending_reviews
        .store(counter("reviews:pending")?.unwrap_or(0), Ordering::Relaxed);
    Ok(())
}

impl Store {
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
        let newly_approved = state == ReviewState::Approved && item.state != ReviewState::Approved;
        item.state = state;
        if notes.is_some() {
            item.notes = notes;
        }
        item.reviewed_by = Some(by.to_string());
        item.reviewed_at_ms = Some(now_ms);
        item.updated_at_ms = now_ms;
        let mut change = ChangeSet::default();
        change.put(&keys::id_key(keys::REVIEW, id)[..], codec::encode(&item)?);
        if let Some(mut stored) = read_post(&self.tree, item.post_id)? {
            stored.post.verification = match state {
                ReviewState::Approved => Verification::Approved,
                ReviewState::Rejected => Verification::Rejected,
                ReviewState::Pending => Verification::Pending,
            };
            put_post(&mut change, &stored)?;
            if newly_approved {
                // Targets that take only approved posts hear of it now, in this batch.
                self.stage_outbox(&mut change, &stored.post, Event::Approved);
            }
        }
        change.review_state_changed(was_pending, state == ReviewState::Pending);
        self.apply(change)?;
        Ok(item)
    }
}
