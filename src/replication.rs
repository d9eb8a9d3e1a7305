//! Replication (`REPLICATION=redis`): several instances, one set of posts. Every
//! replicated write is a [`Command`] appended to one Redis Stream
//! (`amber:repl:{<cluster>}`) by the instance that receives it; every instance, the
//! sender included, reads the stream in order and applies each entry through its
//! `PostStore` ([`ApplyEntry`]). Applying is deterministic (the sender chose the
//! timestamps; ids are assigned in stream order), so every instance holds the same data
//! with the same ids. The entry's position is written in the same sled batch as its
//! change (`Store::stamp`), so a crash never applies an entry twice or skips one.
//!
//! An append is a small script: `INCR` of a counter, then `XADD` with the counter as the
//! entry's number `n`, so a reader sees a gap (a stream trimmed past its position, a
//! Redis that lost its data) and stops instead of diverging. A write waits until its own
//! entry is applied here (read your writes), then answers; Redis unreachable → 503
//! `replication_unavailable` and nothing is written anywhere.
//!
//! Each instance reports its position in `amber:repl:{<cluster>}:members` every few
//! seconds; the stream is trimmed (`XTRIM MINID`) to what the slowest instance that
//! reported lately still needs.

pub mod bootstrap;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix::prelude::*;
use bincode::{Decode, Encode};
use parking_lot::Mutex;
use redis::Value;
use tokio::sync::oneshot;

use crate::actors::store::{
    CreateLeader, CreateNotifyTarget, CreatePost, DecideReview, DeleteAtSource, DeleteLeader,
    DeleteNotifyTarget, DeletePost, OutboxDone, PostStore, SeedLeaders, SetNotifyPaused,
    StoreTimeline, SyncEnvNotifyTarget, UpdateLeader, UpdatePost,
};
use crate::domain::leader::{Leader, LeaderDraft};
use crate::domain::post::{Counts, NewPost, Platform, Post};
use crate::domain::review::{ReviewItem, ReviewState};
use crate::notify::target::{Paused, Target, TargetDraft};
use crate::storage::{IngestMode, InsertReport, PostPatch, SourceDeletion, Store, StoreError};

/// Version byte in front of every encoded command. An entry of a newer version stops the
/// reader (with an error in status) until this instance is upgraded.
pub const COMMAND_VERSION: u8 = 1;
/// Time allowed for one Redis command (the blocking read gets this beyond its block).
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a read blocks waiting for new entries.
const BLOCK_MS: u64 = 1000;
/// Entries read at once.
const READ_COUNT: usize = 100;
/// How long a write waits for its own entry to be applied here.
const APPLY_WAIT: Duration = Duration::from_secs(10);
/// How often an instance reports its position (and trims).
const REPORT_EVERY: Duration = Duration::from_secs(2);
/// A member whose report is older than this is gone: trimming no longer waits for it.
const MEMBER_TTL_MS: i64 = 30_000;

/// How long the turn to deliver notifications lasts unless renewed (every report).
const DELIVERY_TURN_MS: u64 = 10_000;

/// Takes the turn to deliver notifications when it is free, or renews it when this
/// instance holds it: 1 when it is this instance's turn.
const TURN_SCRIPT: &str = r"local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0";

const APPEND_SCRIPT: &str = r"local n = redis.call('INCR', KEYS[2])
return {redis.call('XADD', KEYS[1], '*', 'n', n, 'o', ARGV[1], 'k', ARGV[2], 'c', ARGV[3]), n}";

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// One replicated write, with everything its application needs (times chosen by the
/// instance that received it).
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub enum Command {
    CreateLeader {
        draft: LeaderDraft,
        now_ms: i64,
    },
    SeedLeaders {
        drafts: Vec<LeaderDraft>,
        now_ms: i64,
    },
    UpdateLeader {
        id: u64,
        draft: LeaderDraft,
    },
    DeleteLeader {
        id: u64,
    },
    CreatePost {
        post: Box<NewPost>,
        requires_review: bool,
        now_ms: i64,
    },
    UpdatePost {
        id: u64,
        patch: PostPatch,
    },
    DeletePost {
        id: u64,
    },
    DecideReview {
        id: u64,
        state: ReviewState,
        notes: Option<String>,
        reviewer: String,
        now_ms: i64,
    },
    StoreTimeline {
        posts: Vec<NewPost>,
        counts: Vec<(String, Counts)>,
        mode: IngestMode,
    },
    DeleteAtSource {
        platform: Platform,
        external_id: String,
        now_ms: i64,
    },
    // New variants go at the end: an entry's variant index is in the stream.
    /// `POST /api/ingestion/stop` (`true`) and `/start` (`false`): every instance's
    /// schedule follows (the persisted switch is written in the entry's batch).
    IngestionStopped {
        stopped: bool,
    },
    CreateNotifyTarget {
        draft: TargetDraft,
        now_ms: i64,
    },
    /// The `NOTIFY_URL` target of an instance that has one set.
    SyncEnvNotifyTarget {
        draft: Option<TargetDraft>,
        now_ms: i64,
    },
    DeleteNotifyTarget {
        id: u64,
    },
    SetNotifyPaused {
        id: u64,
        paused: Option<Paused>,
    },
    /// Deliveries made by the instance whose turn it is to deliver: every instance drops
    /// them from its copy of the outbox.
    OutboxDone {
        target_id: u64,
        post_ids: Vec<u64>,
    },
    /// One bounded batch of `amber import` run `import`, in file order.
    ImportBatch {
        import: u64,
        records: Vec<crate::storage::Imported>,
    },
    /// The end of `amber import` run `import` (its post map is dropped).
    ImportFinish {
        import: u64,
    },
}

/// What applying a command returned (to the write that sent it).
#[derive(Debug)]
pub enum Outcome {
    Leader(Leader),
    Count(usize),
    Post(Post),
    Created(Post, Option<ReviewItem>),
    Unit,
    Review(ReviewItem),
    Inserted(InsertReport),
    Deleted(SourceDeletion),
    Target(Target),
    MaybeTarget(Option<Target>),
}

impl Command {
    /// Encodes the command with its version byte.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![COMMAND_VERSION];
        // Encoding plain data into a Vec cannot fail.
        let _ = bincode::encode_into_std_write(self, &mut out, bincode::config::standard());
        out
    }

    /// Decodes a command written by [`Command::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Command, String> {
        match bytes.split_first() {
            Some((&COMMAND_VERSION, body)) => {
                bincode::decode_from_slice(body, bincode::config::standard())
                    .map(|(c, _)| c)
                    .map_err(|e| format!("undecodable command: {e}"))
            }
            Some((v, _)) => Err(format!(
                "command version {v} is not understood by this build (it writes {COMMAND_VERSION}): upgrade this instance"
            )),
            None => Err("empty command".into()),
        }
    }

    /// Applies the command to the store (on the `PostStore` thread).
    pub fn run(self, s: &mut Store) -> Result<Outcome, StoreError> {
        Ok(match self {
            Command::CreateLeader { draft, now_ms } => {
                Outcome::Leader(s.create_leader(draft, now_ms)?)
            }
            Command::SeedLeaders { drafts, now_ms } => {
                Outcome::Count(s.seed_leaders(drafts, now_ms)?)
            }
            Command::UpdateLeader { id, draft } => Outcome::Leader(s.update_leader(id, draft)?),
            Command::DeleteLeader { id } => Outcome::Count(s.delete_leader(id)?),
            Command::CreatePost {
                post,
                requires_review,
                now_ms,
            } => {
                let (post, review) = s.create_post(*post, requires_review, now_ms)?;
                Outcome::Created(post, review)
            }
            Command::UpdatePost { id, patch } => Outcome::Post(s.update_post(id, patch)?),
            Command::DeletePost { id } => {
                s.delete_post(id)?;
                Outcome::Unit
            }
            Command::DecideReview {
                id,
                state,
                notes,
                reviewer,
                now_ms,
            } => Outcome::Review(s.decide_review(id, state, notes, &reviewer, now_ms)?),
            Command::StoreTimeline {
                posts,
                counts,
                mode,
            } => Outcome::Inserted(s.insert_timeline(posts, counts, mode)?),
            Command::DeleteAtSource {
                platform,
                external_id,
                now_ms,
            } => Outcome::Deleted(s.delete_at_source(platform, &external_id, now_ms)?),
            Command::IngestionStopped { stopped } => {
                let value: &[u8] = b"1";
                s.set_meta(
                    crate::actors::scheduler::META_STOPPED,
                    stopped.then_some(value),
                )?;
                Outcome::Unit
            }
            Command::CreateNotifyTarget { draft, now_ms } => {
                Outcome::Target(s.create_notify_target(draft, false, now_ms)?)
            }
            Command::SyncEnvNotifyTarget { draft, now_ms } => {
                Outcome::MaybeTarget(s.sync_env_notify_target(draft, now_ms)?)
            }
            Command::DeleteNotifyTarget { id } => Outcome::Count(s.delete_notify_target(id)?),
            Command::SetNotifyPaused { id, paused } => {
                Outcome::Target(s.set_notify_paused(id, paused)?)
            }
            Command::OutboxDone {
                target_id,
                post_ids,
            } => {
                s.outbox_done(target_id, &post_ids)?;
                Outcome::Unit
            }
            Command::ImportBatch { import, records } => {
                let mut run = s.import_run_replicated(import);
                s.import_batch(&mut run, records)?;
                Outcome::Unit
            }
            Command::ImportFinish { import } => {
                s.import_forget(import)?;
                Outcome::Unit
            }
        })
    }
}

/// True for the errors every instance meets alike when applying the same entry to the
/// same data (the entry is done: its position is stored); anything else (the disk, the
/// database) is this instance's own trouble and the entry is tried again.
pub fn is_deterministic(err: &StoreError) -> bool {
    matches!(err, StoreError::NotFound(_) | StoreError::Conflict(_))
}

/// A `PostStore` write that is replicated: how it becomes a [`Command`] and what its
/// answer is in an [`Outcome`].
pub trait Replicated: Message<Result = Result<Self::Out, StoreError>> + Send + 'static {
    type Out: Send + 'static;
    fn command(self) -> Command;
    fn out(outcome: Outcome) -> Option<Self::Out>;
}

macro_rules! replicated {
    ($msg:ty, $out:ty, |$m:ident| $cmd:expr, $pat:pat => $val:expr) => {
        impl Replicated for $msg {
            type Out = $out;
            fn command(self) -> Command {
                let $m = self;
                $cmd
            }
            fn out(outcome: Outcome) -> Option<$out> {
                match outcome {
                    $pat => Some($val),
                    _ => None,
                }
            }
        }
    };
}

replicated!(CreateLeader, Leader, |m| Command::CreateLeader { draft: m.0, now_ms: now_ms() }, Outcome::Leader(l) => l);
replicated!(SeedLeaders, usize, |m| Command::SeedLeaders { drafts: m.0, now_ms: now_ms() }, Outcome::Count(n) => n);
replicated!(UpdateLeader, Leader, |m| Command::UpdateLeader { id: m.id, draft: m.draft }, Outcome::Leader(l) => l);
replicated!(DeleteLeader, usize, |m| Command::DeleteLeader { id: m.0 }, Outcome::Count(n) => n);
replicated!(CreatePost, (Post, Option<ReviewItem>), |m| Command::CreatePost { post: Box::new(m.post), requires_review: m.requires_review, now_ms: now_ms() }, Outcome::Created(p, r) => (p, r));
replicated!(UpdatePost, Post, |m| Command::UpdatePost { id: m.id, patch: m.patch }, Outcome::Post(p) => p);
replicated!(DeletePost, (), |m| Command::DeletePost { id: m.0 }, Outcome::Unit => ());
replicated!(DecideReview, ReviewItem, |m| Command::DecideReview { id: m.id, state: m.state, notes: m.notes, reviewer: m.reviewer, now_ms: now_ms() }, Outcome::Review(r) => r);
replicated!(StoreTimeline, InsertReport, |m| Command::StoreTimeline { posts: m.posts, counts: m.counts, mode: m.mode }, Outcome::Inserted(r) => r);
replicated!(CreateNotifyTarget, Target, |m| Command::CreateNotifyTarget { draft: m.0, now_ms: now_ms() }, Outcome::Target(t) => t);
replicated!(SyncEnvNotifyTarget, Option<Target>, |m| Command::SyncEnvNotifyTarget { draft: m.0, now_ms: now_ms() }, Outcome::MaybeTarget(t) => t);
replicated!(DeleteNotifyTarget, usize, |m| Command::DeleteNotifyTarget { id: m.0 }, Outcome::Count(n) => n);
replicated!(SetNotifyPaused, Target, |m| Command::SetNotifyPaused { id: m.id, paused: m.paused }, Outcome::Target(t) => t);
replicated!(OutboxDone, (), |m| Command::OutboxDone { target_id: m.target_id, post_ids: m.post_ids }, Outcome::Unit => ());
replicated!(DeleteAtSource, SourceDeletion, |m| Command::DeleteAtSource { platform: m.platform, external_id: m.external_id, now_ms: now_ms() }, Outcome::Deleted(d) => d);

/// Where every write goes: straight to the `PostStore` on a single instance, through the
/// stream with replication on.
#[derive(Clone)]
pub struct Writes {
    store: Addr<PostStore>,
    repl: Option<Replicator>,
}

impl From<Addr<PostStore>> for Writes {
    fn from(store: Addr<PostStore>) -> Writes {
        Writes { store, repl: None }
    }
}

impl Writes {
    /// Writes through `repl` when given.
    pub fn new(store: Addr<PostStore>, repl: Option<Replicator>) -> Writes {
        Writes { store, repl }
    }

    /// The local writer, for what is not replicated (this instance's own state).
    pub fn local(&self) -> &Addr<PostStore> {
        &self.store
    }

    /// The replicator, when replication is on.
    pub fn replicator(&self) -> Option<&Replicator> {
        self.repl.as_ref()
    }

    /// Sends a replicated write; answers as `Addr::send` would.
    pub async fn send<M>(&self, msg: M) -> Result<Result<M::Out, StoreError>, MailboxError>
    where
        M: Replicated,
        PostStore: Handler<M>,
    {
        match &self.repl {
            None => self.store.send(msg).await,
            Some(repl) => Ok(repl.submit(msg.command()).await.and_then(|o| {
                M::out(o).ok_or_else(|| StoreError::Replication("unexpected apply outcome".into()))
            })),
        }
    }
}

/// Apply one stream entry: the command runs with the entry's position stamped into its
/// batch. The outer error is this instance's (retry the entry); the inner result is the
/// command's own answer (the entry is done).
#[derive(Message)]
#[rtype(result = "Result<Result<Outcome, StoreError>, StoreError>")]
pub struct ApplyEntry {
    pub position: String,
    pub n: u64,
    pub command: Command,
}

/// The stamp stored with an applied entry: `<stream id> <n>`.
pub fn stamp(position: &str, n: u64) -> Vec<u8> {
    format!("{position} {n}").into_bytes()
}

/// Parses a stored stamp.
pub fn parse_stamp(bytes: &[u8]) -> Option<(String, u64)> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (id, n) = text.split_once(' ')?;
    Some((id.to_string(), n.parse().ok()?))
}

/// A stream id as numbers, to compare.
fn id_key(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

/// What status, health and `/metrics` show of replication.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplState {
    pub stream: String,
    pub instance: String,
    /// Stream id of the last entry applied here (`0-0`: none).
    pub position: String,
    /// Number of entries applied (the stream's own count of the last one applied).
    pub applied: u64,
    /// The newest entry's number, as last seen.
    pub head: u64,
    pub lag_entries: u64,
    pub lag_seconds: f64,
    pub connected: bool,
    pub last_error: Option<String>,
    /// Set while this instance bootstraps from a snapshot (`bootstrap`).
    pub bootstrap: Option<bootstrap::Progress>,
    #[serde(skip)]
    applied_ms: i64,
    #[serde(skip)]
    head_ms: i64,
}

impl ReplState {
    fn update_lag(&mut self) {
        self.lag_entries = self.head.saturating_sub(self.applied);
        self.lag_seconds = if self.lag_entries == 0 {
            0.0
        } else {
            (self.head_ms - self.applied_ms).max(0) as f64 / 1000.0
        };
    }
}

type Waiter = oneshot::Sender<Result<Outcome, StoreError>>;

/// Called with every command once it is applied here (before its write answers), and
/// with `None` once a bootstrap has replaced the whole store (read everything again).
pub type AppliedHook = Arc<dyn Fn(Option<&Command>) + Send + Sync>;

struct Inner {
    client: redis::Client,
    cluster: String,
    bootstrap: OnceLock<bootstrap::Config>,
    stream: String,
    counter: String,
    members: String,
    /// Key of the turn to deliver notifications (one instance of the cluster at a time).
    delivery: String,
    instance: String,
    delivering: tokio::sync::watch::Sender<bool>,
    hook: std::sync::OnceLock<AppliedHook>,
    conn: tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>,
    waiters: Mutex<HashMap<u64, Waiter>>,
    nonce: AtomicU64,
    state: Mutex<ReplState>,
    store: Addr<PostStore>,
}

/// The replication handle: appends commands, runs the reader loop, reports state.
#[derive(Clone)]
pub struct Replicator {
    inner: Arc<Inner>,
}

async fn timed<T>(
    limit: Duration,
    fut: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("Redis: {e}")),
        Err(_) => Err("Redis did not answer in time".to_string()),
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// One entry of a read: its id and fields.
struct Entry {
    id: String,
    fields: HashMap<String, Vec<u8>>,
}

impl Entry {
    fn field(&self, name: &str) -> Option<&[u8]> {
        self.fields.get(name).map(Vec::as_slice)
    }

    fn number(&self, name: &str) -> Option<u64> {
        std::str::from_utf8(self.field(name)?).ok()?.parse().ok()
    }
}

/// The entries of an `XRANGE`-shaped array (`[[id, [f, v, ...]], ...]`).
fn entries(v: &Value) -> Vec<Entry> {
    let Value::Array(items) = v else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let Value::Array(pair) = item else {
                return None;
            };
            let id = text(pair.first()?)?;
            let mut fields = HashMap::new();
            if let Some(Value::Array(kv)) = pair.get(1) {
                for chunk in kv.chunks(2) {
                    if let [Value::BulkString(k), Value::BulkString(val)] = chunk {
                        fields.insert(String::from_utf8_lossy(k).into_owned(), val.clone());
                    }
                }
            }
            Some(Entry { id, fields })
        })
        .collect()
}

/// The entries of an `XREAD` answer for one stream (`[[key, entries]]`, or nil).
fn read_entries(v: &Value) -> Vec<Entry> {
    match v {
        Value::Array(streams) => streams
            .iter()
            .filter_map(|s| match s {
                Value::Array(pair) => pair.get(1).map(entries),
                _ => None,
            })
            .flatten()
            .collect(),
        Value::Map(streams) => streams.iter().flat_map(|(_, e)| entries(e)).collect(),
        _ => Vec::new(),
    }
}

impl Replicator {
    /// A replicator on `url` for `cluster`; `position` is what the store last applied.
    pub fn new(
        url: &str,
        cluster: &str,
        store: Addr<PostStore>,
        position: Option<(String, u64)>,
    ) -> Result<Replicator, String> {
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        let stream = format!("amber:repl:{{{cluster}}}");
        let instance = uuid::Uuid::new_v4().simple().to_string();
        let (position, applied) = position.unwrap_or_else(|| ("0-0".to_string(), 0));
        let state = ReplState {
            stream: stream.clone(),
            instance: instance.clone(),
            position,
            applied,
            head: applied,
            ..Default::default()
        };
        Ok(Replicator {
            inner: Arc::new(Inner {
                client,
                cluster: cluster.to_string(),
                bootstrap: OnceLock::new(),
                counter: format!("{stream}:n"),
                members: format!("{stream}:members"),
                delivery: format!("{stream}:delivery"),
                stream,
                instance,
                delivering: tokio::sync::watch::Sender::new(false),
                hook: std::sync::OnceLock::new(),
                conn: tokio::sync::Mutex::new(None),
                waiters: Mutex::new(HashMap::new()),
                nonce: AtomicU64::new(1),
                state: Mutex::new(state),
                store,
            }),
        })
    }

    /// Where a bootstrap fetches snapshots from; without it a gap stops replication.
    pub fn set_bootstrap(&self, config: bootstrap::Config) {
        let _ = self.inner.bootstrap.set(config);
    }

    /// The cluster name (`REPLICATION_CLUSTER`).
    pub fn cluster(&self) -> &str {
        &self.inner.cluster
    }

    /// What status, health and `/metrics` show.
    pub fn state(&self) -> ReplState {
        self.inner.state.lock().clone()
    }

    fn note_error(&self, err: &str) {
        {
            let mut st = self.inner.state.lock();
            st.connected = false;
            st.last_error = Some(err.to_string());
        }
        // Without Redis a delivery cannot be acknowledged to the others, and another
        // instance may take the turn once it expires.
        self.inner
            .delivering
            .send_if_modified(|d| std::mem::replace(d, false));
    }

    /// True while it is this instance's turn to deliver notifications (one instance of
    /// the cluster at a time; taken over within [`DELIVERY_TURN_MS`] when it stops).
    pub fn delivery_turn(&self) -> tokio::sync::watch::Receiver<bool> {
        self.inner.delivering.subscribe()
    }

    /// Sets what runs after each applied command (once; later calls are ignored).
    pub fn on_applied(&self, hook: AppliedHook) {
        let _ = self.inner.hook.set(hook);
    }

    /// Runs `f` on the shared connection (made on first use, dropped after an error).
    async fn with_conn<T>(
        &self,
        f: impl AsyncFnOnce(&mut redis::aio::MultiplexedConnection) -> Result<T, String>,
    ) -> Result<T, String> {
        let mut guard = self.inner.conn.lock().await;
        if guard.is_none() {
            *guard = Some(
                timed(
                    REDIS_TIMEOUT,
                    self.inner.client.get_multiplexed_async_connection(),
                )
                .await?,
            );
        }
        let Some(conn) = guard.as_mut() else {
            return Err("no connection".into());
        };
        let out = f(conn).await;
        if out.is_err() {
            *guard = None;
        }
        out
    }

    /// Appends `command` and waits until this instance has applied it.
    pub async fn submit(&self, command: Command) -> Result<Outcome, StoreError> {
        if self.inner.state.lock().bootstrap.is_some() {
            return Err(StoreError::Replication(
                "this instance is bootstrapping from a snapshot; the write was not accepted".into(),
            ));
        }
        let nonce = self.inner.nonce.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.inner.waiters.lock().insert(nonce, tx);
        let body = command.encode();
        let (stream, counter, instance) = (
            self.inner.stream.clone(),
            self.inner.counter.clone(),
            self.inner.instance.clone(),
        );
        let appended = self
            .with_conn(async |conn| {
                timed(
                    REDIS_TIMEOUT,
                    redis::Script::new(APPEND_SCRIPT)
                        .key(&stream)
                        .key(&counter)
                        .arg(&instance)
                        .arg(nonce)
                        .arg(body)
                        .invoke_async::<Value>(conn),
                )
                .await
            })
            .await;
        if let Err(err) = appended {
            self.inner.waiters.lock().remove(&nonce);
            self.note_error(&err);
            return Err(StoreError::Replication(format!(
                "the write was not accepted: the replication stream is unreachable ({err})"
            )));
        }
        match tokio::time::timeout(APPLY_WAIT, rx).await {
            Ok(Ok(result)) => result,
            _ => {
                self.inner.waiters.lock().remove(&nonce);
                let why = self.state().last_error.unwrap_or_default();
                Err(StoreError::Replication(format!(
                    "the write was appended to the replication stream but not applied here in time; it will be applied in stream order ({why})"
                )))
            }
        }
    }

    /// Starts the reader loop and the reporter on the current runtime.
    pub fn spawn(&self) {
        let reader = self.clone();
        actix_rt::spawn(async move { reader.read_loop().await });
        let reporter = self.clone();
        actix_rt::spawn(async move { reporter.report_loop().await });
        let advertiser = self.clone();
        actix_rt::spawn(async move { advertiser.advertise_loop().await });
    }

    async fn read_loop(self) {
        let mut conn: Option<redis::aio::MultiplexedConnection> = None;
        loop {
            if conn.is_none() {
                match timed(
                    REDIS_TIMEOUT,
                    self.inner.client.get_multiplexed_async_connection(),
                )
                .await
                {
                    Ok(c) => conn = Some(c),
                    Err(err) => {
                        self.note_error(&err);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
            }
            let Some(c) = conn.as_mut() else { continue };
            let position = self.inner.state.lock().position.clone();
            let read = timed(
                REDIS_TIMEOUT + Duration::from_millis(BLOCK_MS),
                redis::cmd("XREAD")
                    .arg("COUNT")
                    .arg(READ_COUNT)
                    .arg("BLOCK")
                    .arg(BLOCK_MS)
                    .arg("STREAMS")
                    .arg(&self.inner.stream)
                    .arg(&position)
                    .query_async::<Value>(c),
            )
            .await;
            match read {
                Ok(v) => {
                    {
                        let mut st = self.inner.state.lock();
                        st.connected = true;
                    }
                    for entry in read_entries(&v) {
                        if !self.apply(entry).await {
                            // Bootstrapped: read on from the snapshot's position.
                            break;
                        }
                    }
                }
                Err(err) => {
                    self.note_error(&err);
                    conn = None;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// Applies one entry, retrying while the failure is this instance's own; stops (for
    /// good, with the error in status) at an entry that cannot be applied safely. After a
    /// gap it bootstraps from a snapshot and returns false: read again from the new
    /// position.
    async fn apply(&self, entry: Entry) -> bool {
        let n = entry.number("n").unwrap_or(0);
        let applied = self.inner.state.lock().applied;
        let fail = |why: String| {
            let mut st = self.inner.state.lock();
            st.last_error = Some(why);
        };
        if n != applied + 1 {
            let why = if n <= applied {
                format!("the stream restarted (entry {} is number {n}, this instance applied {applied}): Redis lost the log (no AOF?); replication stopped here, bootstrap this instance again", entry.id)
            } else {
                let why = format!("the stream was trimmed past this instance's position (next entry is number {n}, applied {applied}): bootstrapping from a snapshot");
                self.bootstrap(why).await;
                return false;
            };
            tracing::error!(error = %why, "replication stopped");
            fail(why);
            std::future::pending::<()>().await;
        }
        let command = loop {
            match entry.field("c").map(Command::decode) {
                Some(Ok(c)) => break c,
                other => {
                    let why = match other {
                        Some(Err(e)) => e,
                        _ => "an entry without a command".into(),
                    };
                    tracing::error!(error = %why, entry = %entry.id, "replication entry not applied");
                    fail(why);
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
        };
        let result = loop {
            let msg = ApplyEntry {
                position: entry.id.clone(),
                n,
                command: command.clone(),
            };
            match self.inner.store.send(msg).await {
                Ok(Ok(result)) => break result,
                Ok(Err(err)) => fail(format!("applying entry {}: {err}", entry.id)),
                Err(err) => fail(format!("applying entry {}: {err}", entry.id)),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        {
            let mut st = self.inner.state.lock();
            st.position = entry.id.clone();
            st.applied = n;
            st.applied_ms = id_key(&entry.id).0 as i64;
            if n > st.head {
                st.head = n;
                st.head_ms = st.applied_ms;
            }
            st.update_lag();
        }
        if let Some(hook) = self.inner.hook.get() {
            hook(Some(&command));
        }
        let mine = entry.field("o") == Some(self.inner.instance.as_bytes());
        if let (true, Some(nonce)) = (mine, entry.number("k")) {
            if let Some(tx) = self.inner.waiters.lock().remove(&nonce) {
                let _ = tx.send(result);
            }
        }
        true
    }

    /// Every [`REPORT_EVERY`]: reads the newest entry (for the lag), reports this
    /// instance's position and trims what every live instance has applied.
    async fn report_loop(self) {
        let mut tick = tokio::time::interval(REPORT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(err) = self.report_once().await {
                self.note_error(&err);
            }
        }
    }

    async fn report_once(&self) -> Result<(), String> {
        let (position, instance) = {
            let st = self.inner.state.lock();
            (st.position.clone(), st.instance.clone())
        };
        let inner = &self.inner;
        let (head, members) = self
            .with_conn(async |conn| {
                let head: Value = timed(
                    REDIS_TIMEOUT,
                    redis::cmd("XREVRANGE")
                        .arg(&inner.stream)
                        .arg("+")
                        .arg("-")
                        .arg("COUNT")
                        .arg(1)
                        .query_async(conn),
                )
                .await?;
                let turn: i64 = timed(
                    REDIS_TIMEOUT,
                    redis::Script::new(TURN_SCRIPT)
                        .key(&inner.delivery)
                        .arg(&instance)
                        .arg(DELIVERY_TURN_MS)
                        .invoke_async(conn),
                )
                .await?;
                inner.delivering.send_if_modified(|d| {
                    let was = std::mem::replace(d, turn == 1);
                    was != *d
                });
                let members: HashMap<String, String> = timed(
                    REDIS_TIMEOUT,
                    redis::pipe()
                        .cmd("HSET")
                        .arg(&inner.members)
                        .arg(&instance)
                        .arg(format!("{} {position}", now_ms()))
                        .ignore()
                        .cmd("HGETALL")
                        .arg(&inner.members)
                        .query_async::<(HashMap<String, String>,)>(conn),
                )
                .await?
                .0;
                Ok((head, members))
            })
            .await?;
        if let Some(last) = entries(&head).pop() {
            let mut st = self.inner.state.lock();
            if let Some(n) = last.number("n") {
                st.head = n.max(st.applied);
                st.head_ms = id_key(&last.id).0 as i64;
            }
            st.update_lag();
        }
        // Trim to the slowest live member; forget members that stopped reporting.
        let now = now_ms();
        let mut gone = Vec::new();
        let mut slowest: Option<(u64, u64)> = None;
        for (member, value) in &members {
            let (at, pos) = value.split_once(' ').unwrap_or(("0", "0-0"));
            if now - at.parse::<i64>().unwrap_or(0) > MEMBER_TTL_MS {
                gone.push(member.clone());
            } else {
                let key = id_key(pos);
                slowest = Some(slowest.map_or(key, |s| s.min(key)));
            }
        }
        self.with_conn(async |conn| {
            let mut pipe = redis::pipe();
            for member in &gone {
                pipe.cmd("HDEL").arg(&inner.members).arg(member).ignore();
            }
            if let Some((ms, seq)) = slowest.filter(|s| *s > (0, 0)) {
                pipe.cmd("XTRIM")
                    .arg(&inner.stream)
                    .arg("MINID")
                    .arg(format!("{ms}-{seq}"))
                    .ignore();
            }
            timed(REDIS_TIMEOUT, pipe.query_async::<()>(conn)).await
        })
        .await?;
        let mut st = self.inner.state.lock();
        st.connected = true;
        Ok(())
    }
}

/// Appends commands from outside a server (`amber import`): no reader loop here; the
/// instances apply what it appends, and report how far they are in the members hash.
pub struct Appender {
    conn: redis::aio::MultiplexedConnection,
    stream: String,
    counter: String,
    members: String,
    origin: String,
    nonce: u64,
}

impl Appender {
    /// Connects to the stream of `cluster` on `url`.
    pub async fn connect(url: &str, cluster: &str) -> Result<Appender, String> {
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        let conn = timed(REDIS_TIMEOUT, client.get_multiplexed_async_connection()).await?;
        let stream = format!("amber:repl:{{{cluster}}}");
        Ok(Appender {
            conn,
            counter: format!("{stream}:n"),
            members: format!("{stream}:members"),
            stream,
            origin: format!("cli-{}", uuid::Uuid::new_v4().simple()),
            nonce: 0,
        })
    }

    /// The stream's key.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Appends `command`; returns the entry's id.
    pub async fn append(&mut self, command: &Command) -> Result<String, String> {
        self.nonce += 1;
        let answer: Value = timed(
            REDIS_TIMEOUT,
            redis::Script::new(APPEND_SCRIPT)
                .key(&self.stream)
                .key(&self.counter)
                .arg(&self.origin)
                .arg(self.nonce)
                .arg(command.encode())
                .invoke_async(&mut self.conn),
        )
        .await?;
        match &answer {
            Value::Array(parts) => parts.first().and_then(text),
            _ => None,
        }
        .ok_or_else(|| format!("unexpected answer to the append: {answer:?}"))
    }

    /// The instances that reported lately, each with whether it has applied entry `id`.
    pub async fn members(&mut self, id: &str) -> Result<Vec<(String, bool)>, String> {
        let all: HashMap<String, String> = timed(
            REDIS_TIMEOUT,
            redis::cmd("HGETALL")
                .arg(&self.members)
                .query_async(&mut self.conn),
        )
        .await?;
        let now = now_ms();
        let mut live: Vec<(String, bool)> = all
            .into_iter()
            .filter_map(|(member, value)| {
                let (at, pos) = value.split_once(' ')?;
                (now - at.parse::<i64>().ok()? <= MEMBER_TTL_MS)
                    .then(|| (member, id_key(pos) >= id_key(id)))
            })
            .collect();
        live.sort();
        Ok(live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_round_trips_and_a_newer_version_is_refused() {
        let cmd = Command::DeletePost { id: 7 };
        let bytes = cmd.encode();
        assert_eq!(Command::decode(&bytes).unwrap(), cmd);
        let mut newer = bytes.clone();
        newer[0] = COMMAND_VERSION + 1;
        assert!(Command::decode(&newer).unwrap_err().contains("upgrade"));
        assert!(Command::decode(&[]).is_err());
    }

    #[test]
    fn stamps_parse_back_and_ids_compare_as_numbers() {
        assert_eq!(
            parse_stamp(&stamp("1700-3", 42)),
            Some(("1700-3".to_string(), 42))
        );
        assert_eq!(parse_stamp(b"junk"), None);
        assert!(id_key("10-0") > id_key("9-5"));
        assert!(id_key("10-10") > id_key("10-9"));
    }
}
