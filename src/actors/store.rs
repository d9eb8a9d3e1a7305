//! `PostStore`: the one actor that writes to sled. It runs on a `SyncArbiter` thread,
//! so sled's blocking calls (and the flush behind every acknowledged write) never run
//! on an async executor. Readers do not talk to it: they use a `StoreReader`.

use std::sync::Arc;

use actix::prelude::*;
use parking_lot::Mutex;

use crate::domain::leader::{Leader, LeaderDraft};
use crate::domain::post::{Counts, NewPost, Platform, Post};
use crate::domain::review::{ReviewItem, ReviewState};
use crate::notify::target::{Paused, Target, TargetDraft};
use crate::storage::disk::Writer;
use crate::storage::{
    ImportReport, IngestMode, InsertReport, PostPatch, Record, SourceDeletion, Store, StoreError,
};

/// The writer actor. One instance only: the store assumes a single writer.
pub struct PostStore {
    // The lock is never contended (one thread); it lets the arbiter rebuild the actor
    // around the same store if a handler ever panicked.
    store: Arc<Mutex<Writer>>,
}

impl PostStore {
    /// Starts the actor on its own thread and returns its address.
    pub fn start(store: Store) -> Addr<PostStore> {
        let store = Arc::new(Mutex::new(Writer::Open(store)));
        SyncArbiter::start(1, move || PostStore {
            store: store.clone(),
        })
    }
}

impl PostStore {
    /// Runs one write against the store. Each `Store` method is one change set that
    /// commits, then updates what readers see and bumps the generation. A store closed
    /// after a failed commit is reopened first; one whose commit just failed is closed
    /// and reopened before the answer goes out (`storage/disk.rs`).
    fn write<T>(
        &self,
        change: impl FnOnce(&mut Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut writer = self.store.lock();
        let out = change(writer.open()?);
        writer.recover();
        out
    }
}

impl Actor for PostStore {
    type Context = SyncContext<Self>;

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        if let Writer::Open(store) = &*self.store.lock() {
            if let Err(err) = store.flush() {
                tracing::error!(error = %err, "final flush failed");
            }
        }
    }
}

/// Reopen a database closed after a failed write (sent by a timer while it is closed,
/// so reads come back without waiting for a write). Returns true when it is open.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Recover;

impl Handler<Recover> for PostStore {
    type Result = bool;
    fn handle(&mut self, _: Recover, _: &mut Self::Context) -> bool {
        self.store.lock().recover()
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Store posts with dedup (ingestion of X posts); `mode` says whether new posts are
/// announced to the notification targets (a backfill is not).
#[derive(Message)]
#[rtype(result = "Result<InsertReport, StoreError>")]
pub struct InsertPosts {
    pub posts: Vec<NewPost>,
    pub mode: IngestMode,
}

impl Handler<InsertPosts> for PostStore {
    type Result = Result<InsertReport, StoreError>;
    fn handle(&mut self, msg: InsertPosts, _: &mut Self::Context) -> Self::Result {
        self.write(|s| s.insert_posts_as(msg.posts, msg.mode))
    }
}

/// Store a leader's timeline read: new posts (with dedup, as [`InsertPosts`]) and the
/// current counts of posts already stored (by X id), in one batch.
#[derive(Message)]
#[rtype(result = "Result<InsertReport, StoreError>")]
pub struct StoreTimeline {
    pub posts: Vec<NewPost>,
    pub counts: Vec<(String, Counts)>,
    pub mode: IngestMode,
}

impl Handler<StoreTimeline> for PostStore {
    type Result = Result<InsertReport, StoreError>;
    fn handle(&mut self, msg: StoreTimeline, _: &mut Self::Context) -> Self::Result {
        self.write(|s| s.insert_timeline(msg.posts, msg.counts, msg.mode))
    }
}

/// Create a leader.
#[derive(Message)]
#[rtype(result = "Result<Leader, StoreError>")]
pub struct CreateLeader(pub LeaderDraft);

impl Handler<CreateLeader> for PostStore {
    type Result = Result<Leader, StoreError>;
    fn handle(&mut self, msg: CreateLeader, _: &mut Self::Context) -> Self::Result {
        self.write(|s| s.create_leader(msg.0, now_ms()))
    }
}

/// Load the seed list into an empty, never-seeded store.
#[derive(Message)]
#[rtype(result = "Result<usize, StoreError>")]
pub struct SeedLeaders(pub Vec<LeaderDraft>);

impl Handler<SeedLeaders> for PostStore {
    type Result = Result<usize, StoreError>;
    fn handle(&mut self, msg: SeedLeaders, _: &mut Self::Context) -> Self::Result {
        self.write(|s| s.seed_leaders(msg.0, now_ms()))
    }
}

/// Replace a leader's fields.
#[derive(Message)]
#[rtype(result = "Result<Leader, StoreError>")]
pub struct UpdateLeader {
    pub id: u64,
    pub draft: LeaderDraft,
}

impl Handler<UpdateLeader> for PostStore {
    type Result = Result<Leader, StoreError>;
    fn handle(&mut self, msg: UpdateLeader, _: &mut Self::Context) -> Self::Result {
        self.write(|s| s.update_leader(msg.id, msg.draft))
    }
}

/// Delete a leader and everything that hangs off it. Returns the number of posts removed.
#[derive(Message)]
#[rtype(result = "Result<usize, StoreError>")]
pub struct DeleteLeader(pub u64);

impl Handler<DeleteLeader> for PostStore {
    type Result = Result<usize, StoreError>;
    fn handle(&mut self, msg: DeleteLeader, _: &mut Self::Context) -> Self::Result {
        self.write(|s| s.delete_leader(msg.0))
    }
}

/// Create a post from the admin API, optionally with a review item.
#[derive(Message)]
#[rtype(result = "Result<(Post, Option<ReviewItem>), StoreError>")]
pub struct CreatePost {
    pub post: NewPost,
    pub requires_review: bool,
}

impl Handler<CreatePost> for PostStore {
    type Result = Result<(Post, Option<ReviewItem>), StoreError>;
    fn handle(&mut self, msg: CreatePost, _: &mut Self::Context) -> Self::Result {
        self.write(|s| s.create_post(msg.post, msg.requires_review, now_ms()))
    }
}

/// Change a post.
#[derive(Message)]
#[rtype(result = "Result<Post, StoreError>")]
pub struct UpdatePost {
    pub id: u64,
    pub patch: PostPatch,
}

impl Handler<UpdatePost> for PostStore {
    type Result = Result<Post, StoreError>;
    fn handle(&mut self, msg: UpdatePost, _: &mut Self::Context) -> Self::Result {
        self.write(|s| s.update_post(msg.id, msg.patch))
    }
}

/// Delete a post.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct DeletePost(pub u64);

impl Handler<DeletePost> for PostStore {
    type Result = Result<(), StoreError>;
    fn handle(&mut self, msg: DeletePost, _: &mut Self::Context) -> Self::Result {
        self.write(|s| s.delete_post(msg.0))
    }
}

/// A post deleted at its source (X's `post.delete`): the stored post goes the way
/// [`DeletePost`] removes it (record, time key, dedup keys, review item, feed entry), and
/// a tombstone for each of its ids is written in the same batch, so no later poll,
/// backfill or stream replay stores it again.
#[derive(Message)]
#[rtype(result = "Result<SourceDeletion, StoreError>")]
pub struct DeleteAtSource {
    pub platform: Platform,
    pub external_id: String,
}

impl Handler<DeleteAtSource> for PostStore {
    type Result = Result<SourceDeletion, StoreError>;
    fn handle(&mut self, msg: DeleteAtSource, _: &mut Self::Context) -> Self::Result {
        self.write(|s| s.delete_at_source(msg.platform, &msg.external_id, now_ms()))
    }
}

/// Approve or reject a review item.
#[derive(Message)]
#[rtype(result = "Result<ReviewItem, StoreError>")]
pub struct DecideReview {
    pub id: u64,
    pub state: ReviewState,
    pub notes: Option<String>,
    pub reviewer: String,
}

impl Handler<DecideReview> for PostStore {
    type Result = Result<ReviewItem, StoreError>;
    fn handle(&mut self, msg: DecideReview, _: &mut Self::Context) -> Self::Result {
        self.write(|s| s.decide_review(msg.id, msg.state, msg.notes, &msg.reviewer, now_ms()))
    }
}

/// Remember the X user id resolved for a leader's handle.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct CacheXUser {
    pub leader_id: u64,
    pub handle: String,
    pub user_id: String,
}

impl Handler<CacheXUser> for PostStore {
    type Result = Result<(), StoreError>;
    fn handle(&mut self, msg: CacheXUser, _: &mut Self::Context) -> Self::Result {
        self.write(|s| s.cache_x_user(msg.leader_id, &msg.handle, &msg.user_id))
    }
}

/// Set or clear a small persisted value (for example the ingestion stop switch).
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct SetMeta {
    pub name: String,
    pub value: Option<Vec<u8>>,
}

impl Handler<SetMeta> for PostStore {
    type Result = Result<(), StoreError>;
    fn handle(&mut self, msg: SetMeta, _: &mut Self::Context) -> Self::Result {
        self.write(|s| s.set_meta(&msg.name, msg.value.as_deref()))
    }
}

/// Merge backup records.
#[derive(Message)]
#[rtype(result = "Result<ImportReport, StoreError>")]
pub struct ImportRecords(pub Vec<Record>);

impl Handler<ImportRecords> for PostStore {
    type Result = Result<ImportReport, StoreError>;
    fn handle(&mut self, msg: ImportRecords, _: &mut Self::Context) -> Self::Result {
        self.write(|s| s.import(msg.0))
    }
}

/// Flush everything and write the feed index snapshot (shutdown). Writes after this
/// still work; they just make the next start rebuild the index.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct Close;

impl Handler<Close> for PostStore {
    type Result = Result<(), StoreError>;
    fn handle(&mut self, _: Close, _: &mut Self::Context) -> Self::Result {
        self.write(Store::close)
    }
}

/// Create a notification target (from the API).
#[derive(Message)]
#[rtype(result = "Result<Target, StoreError>")]
pub struct CreateNotifyTarget(pub TargetDraft);

impl Handler<CreateNotifyTarget> for PostStore {
    type Result = Result<Target, StoreError>;
    fn handle(&mut self, msg: CreateNotifyTarget, _: &mut Self::Context) -> Self::Result {
        self.write(|s| s.create_notify_target(msg.0, false, now_ms()))
    }
}

/// Keep the `NOTIFY_URL` target in step with the variables (start-up).
#[derive(Message)]
#[rtype(result = "Result<Option<Target>, StoreError>")]
pub struct SyncEnvNotifyTarget(pub Option<TargetDraft>);

impl Handler<SyncEnvNotifyTarget> for PostStore {
    type Result = Result<Option<Target>, StoreError>;
    fn handle(&mut self, msg: SyncEnvNotifyTarget, _: &mut Self::Context) -> Self::Result {
        self.write(|s| s.sync_env_notify_target(msg.0, now_ms()))
    }
}

/// Delete a notification target with its queue; returns how many deliveries it held.
#[derive(Message)]
#[rtype(result = "Result<usize, StoreError>")]
pub struct DeleteNotifyTarget(pub u64);

impl Handler<DeleteNotifyTarget> for PostStore {
    type Result = Result<usize, StoreError>;
    fn handle(&mut self, msg: DeleteNotifyTarget, _: &mut Self::Context) -> Self::Result {
        self.write(|s| s.delete_notify_target(msg.0))
    }
}

/// Pause (`Some`) or resume (`None`) a notification target.
#[derive(Message)]
#[rtype(result = "Result<Target, StoreError>")]
pub struct SetNotifyPaused {
    pub id: u64,
    pub paused: Option<Paused>,
}

impl Handler<SetNotifyPaused> for PostStore {
    type Result = Result<Target, StoreError>;
    fn handle(&mut self, msg: SetNotifyPaused, _: &mut Self::Context) -> Self::Result {
        self.write(|s| s.set_notify_paused(msg.id, msg.paused))
    }
}

/// Remove delivered entries from a target's outbox.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct OutboxDone {
    pub target_id: u64,
    pub post_ids: Vec<u64>,
}

impl Handler<OutboxDone> for PostStore {
    type Result = Result<(), StoreError>;
    fn handle(&mut self, msg: OutboxDone, _: &mut Self::Context) -> Self::Result {
        self.write(|s| s.outbox_done(msg.target_id, &msg.post_ids))
    }
}

impl Handler<crate::replication::ApplyEntry> for PostStore {
    type Result = Result<Result<crate::replication::Outcome, StoreError>, StoreError>;
    fn handle(
        &mut self,
        msg: crate::replication::ApplyEntry,
        _: &mut Self::Context,
    ) -> Self::Result {
        let mut writer = self.store.lock();
        let out = (|| {
            let store = writer.open()?;
            store.stamp = Some(crate::replication::stamp(&msg.position, msg.n));
            let result = msg.command.run(store);
            // The command's commit carried the stamp; when it wrote nothing (a refusal
            // every instance meets alike, a no-op), the position is stored on its own.
            let unused = store.stamp.take();
            match result {
                Err(err) if !crate::replication::is_deterministic(&err) => Err(err),
                result => {
                    if unused.is_some() {
                        store.stamp = unused;
                        store.apply(crate::storage::change::ChangeSet::default())?;
                    }
                    Ok(result)
                }
            }
        })();
        writer.recover();
        out
    }
}

/// The end of a replication snapshot's scan: the fix-up read on the writer, so it and the
/// position it names are of one moment (`storage::replica`).
#[derive(Message)]
#[rtype(result = "Result<crate::storage::replica::FixUp, StoreError>")]
pub struct FinishSnapshot;

impl Handler<FinishSnapshot> for PostStore {
    type Result = Result<crate::storage::replica::FixUp, StoreError>;
    fn handle(&mut self, _: FinishSnapshot, _: &mut Self::Context) -> Self::Result {
        self.write(Store::finish_capture)
    }
}

/// Switch to the database a bootstrap loaded into `DATA_DIR/db.bootstrap`.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct SwitchToLoaded;

impl Handler<SwitchToLoaded> for PostStore {
    type Result = Result<(), StoreError>;
    fn handle(&mut self, _: SwitchToLoaded, _: &mut Self::Context) -> Self::Result {
        self.store.lock().switch_to_loaded()
    }
}
