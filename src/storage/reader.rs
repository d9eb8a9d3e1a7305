//! [`StoreReader`]: read access for every thread. A cheap clone of the sled tree and the
//! in-memory state; it never waits for the writer except for the microseconds the
//! in-memory feed index is locked.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::domain::cursor::Cursor;
use crate::domain::leader::Leader;
use crate::domain::post::{Platform, Post};
use crate::domain::review::{ReviewItem, ReviewState};
use crate::notify::target::{Event, Target};
use crate::storage::damage::{DamageReport, RecordScan};
use crate::storage::disk::Space;
use crate::storage::feed_index::{Entry, PageRef};
use crate::storage::import::Record;
use crate::storage::posts::{decode_post, read_post};
use crate::storage::query::PostQuery;
use crate::storage::rendered::PageReads;
use crate::storage::{codec, get_u64, keys, Entity, Shared, StoreError};

/// How many of a leader's posts the layout thread copies side by side at a time (about
/// 0.5 MB: what it holds in memory, and a write lock over as many slots).
const LAYOUT_RUN: usize = 512;
/// Layout requests waiting for the thread at most; more are dropped.
const LAYOUT_QUEUE: usize = 64;

/// One page of posts, newest first.
#[derive(Debug, Clone)]
pub struct FeedPage {
    pub posts: Vec<Post>,
    /// How many posts match the query's filter in all.
    pub total: usize,
    pub has_next: bool,
    pub next_cursor: Option<Cursor>,
}

/// A page whose posts were written as rendered bytes: the rest of what a page shows.
#[derive(Debug, Clone, PartialEq)]
pub struct PageInfo {
    /// How many posts match the query's filter in all.
    pub total: usize,
    pub has_next: bool,
    pub next_cursor: Option<Cursor>,
}

/// How a post is rendered for feed pages: its JSON from the post and its leader (if it
/// still exists); `None` keeps nothing.
pub type Render = dyn Fn(&Post, Option<&Leader>) -> Option<Vec<u8>> + Sync;

/// A post and the older external ids of its edit chain.
pub type PostWithHistory = (Post, Vec<String>);

/// Store-wide numbers for health and metrics; all maintained, none scanned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub leaders: u64,
    pub posts: u64,
    pub review_items: u64,
    pub pending_reviews: u64,
    pub latest_post_ms: Option<i64>,
    pub posts_by_platform: Vec<(Platform, u64)>,
}

/// Where the page after `page` starts, if there is one.
fn next_cursor(page: &PageRef) -> Option<Cursor> {
    if page.has_next {
        page.entries.last().map(Entry::cursor)
    } else {
        None
    }
}

fn info(page: &PageRef) -> PageInfo {
    PageInfo {
        total: page.total,
        has_next: page.has_next,
        next_cursor: next_cursor(page),
    }
}

/// Read access: cheap to clone, safe to use from any thread.
#[derive(Debug, Clone)]
pub struct StoreReader {
    pub(super) shared: Arc<Shared>,
}

/// sled's cache capacity while the integrity check scans (4 MiB, or the configured one
/// if smaller); the configured capacity comes back when this is dropped.
struct ScanCache<'a> {
    tree: &'a sled::Tree,
    configured: u64,
}

impl<'a> ScanCache<'a> {
    const BYTES: u64 = 4 << 20;

    fn lower(tree: &'a sled::Tree) -> ScanCache<'a> {
        let configured = tree.set_cache_capacity(Self::BYTES);
        if configured < Self::BYTES {
            tree.set_cache_capacity(configured);
        }
        ScanCache { tree, configured }
    }
}

impl Drop for ScanCache<'_> {
    fn drop(&mut self) {
        self.tree.set_cache_capacity(self.configured);
    }
}

impl StoreReader {
    pub(super) fn new(shared: Arc<Shared>) -> StoreReader {
        StoreReader { shared }
    }

    /// The tree to read; an error while the database is closed after a failed write.
    pub(super) fn tree(&self) -> Result<sled::Tree, StoreError> {
        self.shared.tree()
    }

    /// Cheap liveness check of the database for health: one point read.
    pub fn check(&self) -> Result<(), StoreError> {
        self.tree()?
            .get(keys::named_key(keys::META, "schema_version"))?;
        Ok(())
    }

    /// Free space under the data directory against the reserve, measured now.
    pub fn space(&self) -> Option<Space> {
        self.shared.disk.space()
    }

    /// True while the database is closed after a failed write (the writer reopens it).
    pub fn is_closed(&self) -> bool {
        self.shared.disk.is_closed()
    }

    /// The current generation: it changes after every write readers can see. Read it
    /// before rendering; an answer cached under it is valid while it stays the same.
    pub fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::Acquire)
    }

    /// One leader.
    pub fn leader(&self, id: u64) -> Option<Leader> {
        self.shared.leaders.read().get(&id).cloned()
    }

    /// Every leader, by id.
    pub fn leaders(&self) -> Vec<Leader> {
        self.shared.leaders.read().values().cloned().collect()
    }

    /// Runs `f` over the leader map without copying it.
    pub fn with_leaders<R>(&self, f: impl FnOnce(&BTreeMap<u64, Leader>) -> R) -> R {
        f(&self.shared.leaders.read())
    }

    /// One post; `None` when it does not exist, or when its record is damaged (skipped
    /// and counted, see [`damage`](crate::storage::damage)).
    pub fn post(&self, id: u64) -> Result<Option<Post>, StoreError> {
        let read = read_post(&self.tree()?, id);
        let read = self
            .shared
            .damage
            .skip(&keys::id_key(keys::POST, id), read)?;
        Ok(read.flatten().map(|s| s.post))
    }

    /// The damage found so far (records skipped because they cannot be read).
    pub fn damage(&self) -> DamageReport {
        self.shared.damage.report()
    }

    /// The next free id of a kind (`seq:leader`, `seq:post`, `seq:review`): the end of
    /// a [`RecordScan`].
    fn next_id(&self, tree: &sled::Tree, name: &str) -> u64 {
        get_u64(tree, &keys::named_key(keys::META, name))
            .ok()
            .flatten()
            .unwrap_or(1)
    }

    /// Reads every record once to find damage, and says what it found in the log (and,
    /// from then on, in health): every leader and review item, and every post the feed
    /// index names (a post named there whose record is gone counts as missing). With
    /// `render`, each post read is also rendered and kept (see
    /// [`rendered_page`](Self::rendered_page): the same function), newest first, so
    /// feed pages are ready without a first reader paying for them. Run once after
    /// start-up, off the request path.
    pub fn check_integrity(&self, render: Option<&Render>) -> Result<DamageReport, StoreError> {
        let started = std::time::Instant::now();
        let mut kept = Vec::new();
        let mut rendered = 0u64;
        let tree = self.tree()?;
        // sled's cache is small for the scan (restored when this returns, however it
        // returns): every node is read once, so a large cache only fills with nodes no
        // reader asked for, and the allocator cannot give back what that churn leaves
        // scattered (issue 14, idle memory).
        let _small_cache = ScanCache::lower(&tree);
        let damage = &self.shared.damage;
        let mut records = 0u64;
        for prefix in [keys::LEADER, keys::REVIEW] {
            let name = if prefix == keys::LEADER {
                "seq:leader"
            } else {
                "seq:review"
            };
            for kv in RecordScan::new(&tree, damage, prefix, self.next_id(&tree, name)) {
                let (k, v) = kv?;
                let decoded = if prefix == keys::LEADER {
                    codec::decode::<Leader>(&v).map(drop)
                } else {
                    codec::decode::<ReviewItem>(&v).map(drop)
                };
                records += u64::from(damage.skip(&k, decoded.map_err(Into::into))?.is_some());
            }
        }
        // The index in pages of 10,000 (a cursor each), so it is never locked for long.
        let mut query = PostQuery::newest(10_000);
        loop {
            // Before the reads: renderings of posts that change meanwhile are refused.
            let read_at = self.generation();
            let page = self.shared.index.read().page(&query);
            let missing: std::collections::HashSet<u64> = match render {
                Some(_) => {
                    let ids: Vec<u64> = page.entries.iter().map(|e| e.post_id).collect();
                    self.shared.rendered.missing(&ids).into_iter().collect()
                }
                None => Default::default(),
            };
            for e in &page.entries {
                let key = keys::id_key(keys::POST, e.post_id);
                match damage.skip(&key, read_post(&tree, e.post_id))? {
                    Some(Some(stored)) => {
                        records += 1;
                        if let Some(render) = render.filter(|_| missing.contains(&e.post_id)) {
                            let bytes = self.with_leaders(|leaders| {
                                render(&stored.post, leaders.get(&stored.post.leader_id))
                            });
                            if let Some(bytes) = bytes {
                                kept.push((e.post_id, bytes));
                            }
                        }
                        if kept.len() >= 256 {
                            rendered += kept.len() as u64;
                            self.shared.rendered.put(read_at, &kept, &self.shared.disk);
                            kept.clear();
                        }
                    }
                    // Deleted since the page was read, or missing for good.
                    Some(None)
                        if self
                            .shared
                            .index
                            .read()
                            .get(e.timestamp_ms, e.post_id)
                            .is_some() =>
                    {
                        damage.note_missing_post(e.post_id)
                    }
                    Some(None) | None => {}
                }
            }
            if !kept.is_empty() {
                rendered += kept.len() as u64;
                self.shared.rendered.put(read_at, &kept, &self.shared.disk);
                kept.clear();
            }
            match (page.has_next, page.entries.last()) {
                (true, Some(last)) => {
                    query = query.starting(crate::storage::query::PageStart::Before(last.cursor()))
                }
                _ => break,
            }
        }
        // The scan read every node once, so sled's cache is now full of the oldest posts'
        // nodes (up to `SLED_CACHE_MB`, and more in memory than sled counts): no reader
        // asked for them. Empty it; requests fill it with what they read (issue 14, idle
        // memory). Nothing is lost: a node paged out is read from the log again.
        if let Err(err) = tree.page_out_cache() {
            tracing::warn!(error = %err, "emptying sled's cache after the integrity check failed");
        }
        let report = damage.report();
        let ms = started.elapsed().as_millis() as u64;
        if report.total() == 0 {
            tracing::info!(
                records,
                rendered,
                ms,
                "integrity check: every record reads back"
            );
        } else {
            tracing::error!(
                records,
                ms,
                damaged_leaders = report.leaders,
                damaged_posts = report.posts,
                damaged_review_items = report.review_items,
                missing_posts = report.missing_posts,
                "integrity check: damaged records found; they are skipped, the rest is served. Restore them from a backup (amber import) or export what is intact"
            );
        }
        // Health says "checked" only once the log says what was found.
        damage.set_checked();
        Ok(damage.report())
    }

    /// The stored post for (platform, external id), if any.
    pub fn post_by_external_id(
        &self,
        platform: Platform,
        ext: &str,
    ) -> Result<Option<Post>, StoreError> {
        match self.tree()?.get(keys::dedup_key(platform, ext))? {
            Some(v) => match <[u8; 8]>::try_from(v.as_ref()) {
                Ok(b) => self.post(u64::from_be_bytes(b)),
                Err(_) => Ok(None),
            },
            None => Ok(None),
        }
    }

    /// Amber's id of a record imported under a foreign id (see [`keys::FOREIGN`]).
    pub fn foreign_id(&self, entity: Entity, foreign: &str) -> Result<Option<u64>, StoreError> {
        Ok(self
            .tree()?
            .get(keys::foreign_key(entity.code(), foreign))?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(u64::from_be_bytes))
    }

    /// A page of posts, newest first. Posts deleted between the index read and the
    /// record read are skipped.
    pub fn page(&self, query: &PostQuery) -> Result<FeedPage, StoreError> {
        let page = self.shared.index.read().page(query);
        let mut posts = Vec::with_capacity(page.entries.len());
        for e in &page.entries {
            if let Some(p) = self.post(e.post_id)? {
                posts.push(p);
            }
        }
        Ok(FeedPage {
            next_cursor: next_cursor(&page),
            posts,
            total: page.total,
            has_next: page.has_next,
        })
    }

    /// A page of posts, newest first, each with the older external ids of its edit
    /// chain (the ids it had before its edits, in no particular order). Reads sled: call it
    /// off the async executor. Posts deleted between the index read and the record read
    /// are skipped.
    pub fn page_with_history(
        &self,
        query: &PostQuery,
    ) -> Result<(Vec<PostWithHistory>, PageInfo), StoreError> {
        let page = self.shared.index.read().page(query);
        let tree = self.tree()?;
        let mut posts = Vec::with_capacity(page.entries.len());
        for e in &page.entries {
            if let Some(s) = read_post(&tree, e.post_id)? {
                posts.push((s.post, s.aliases));
            }
        }
        Ok((posts, info(&page)))
    }

    /// Appends the page's posts, comma-separated, as rendered before, to `out` without
    /// waiting for anything: `None` (and `out` as it was) when some post on it was not
    /// rendered yet, changed since, or its rendering is not in the OS page cache. Never
    /// touches sled and never waits for a disk, so it can run on an async executor.
    pub fn rendered_page_without_waiting(
        &self,
        query: &PostQuery,
        out: &mut Vec<u8>,
    ) -> Option<PageInfo> {
        // Closed after a failed commit: the slow path answers (unavailable).
        if self.shared.disk.is_closed() {
            return None;
        }
        let page = self.shared.index.read().page(query);
        let ids: Vec<u64> = page.entries.iter().map(|e| e.post_id).collect();
        let start = out.len();
        let mut not_at_hand = |_| Err(());
        match self
            .shared
            .rendered
            .append_page(&ids, out, false, &mut not_at_hand)
        {
            Ok(reads) => self.lay_out_later(query, &page, &ids, reads),
            Err(()) => {
                out.truncate(start);
                return None;
            }
        }
        Some(info(&page))
    }

    /// After a page of a leader filter that took more reads than two per leader on it,
    /// or read more than twice the bytes it used: asks the layout thread to lay out each
    /// such leader whose posts on the page are not all copied yet (see
    /// [`lay_out_batches`]), so every later page of that leader is one read, and
    /// each leader's part of a page of several. Never waits: a leader already queued or
    /// being laid out is not queued again, and when the queue is full the request is
    /// dropped (a later page asks again).
    fn lay_out_later(&self, query: &PostQuery, page: &PageRef, ids: &[u64], read: PageReads) {
        let scattered = |leaders: usize| read.reads > 2 * leaders || read.bytes > 2 * read.wanted;
        if query.leader_ids().is_empty() || read.reads == 0 {
            return;
        }
        // Every post on the page is of a leader of the query's (kept sorted and without
        // duplicates): the leaders on the page are counted from those, without a list
        // and a sort, which only a page read scattered needs (issue 14, ninth session).
        let on_page = query
            .leader_ids()
            .iter()
            .filter(|&&l| page.entries.iter().any(|e| e.leader_id == l))
            .count();
        if !scattered(on_page) {
            return;
        }
        let mut leaders: Vec<u64> = page.entries.iter().map(|e| e.leader_id).collect();
        leaders.sort_unstable();
        leaders.dedup();
        debug_assert_eq!(leaders.len(), on_page);
        let rendered = &self.shared.rendered;
        let queue = rendered.layouts.get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<u64>(LAYOUT_QUEUE);
            let shared = Arc::downgrade(&self.shared);
            let spawned = std::thread::Builder::new()
                .name("renderings-layout".into())
                .spawn(move || {
                    while let Ok(leader) = rx.recv() {
                        // The store is held one batch at a time, so a store dropped
                        // meanwhile (its sled handle with it) is let go of at once.
                        lay_out_batches(|| shared.upgrade(), leader);
                        let Some(shared) = shared.upgrade() else {
                            break;
                        };
                        shared.rendered.laying_out.lock().retain(|&l| l != leader);
                    }
                });
            if let Err(err) = spawned {
                tracing::warn!(error = %err, "cannot start the renderings layout thread; leader pages read each post apart");
            }
            tx
        });
        let unlaid = rendered.unlaid(ids);
        for leader in leaders {
            if !unlaid.iter().any(|&i| page.entries[i].leader_id == leader) {
                // Its posts here are all copied: scattered only with the others'.
                continue;
            }
            let mut laying_out = rendered.laying_out.lock();
            if laying_out.contains(&leader) {
                continue;
            }
            if queue.try_send(leader).is_ok() {
                laying_out.push(leader);
            }
        }
    }

    /// [`lay_out_batches`] of `leader` on this store, at once (for tests).
    #[cfg(test)]
    pub(crate) fn lay_out(&self, leader: u64) -> usize {
        lay_out_batches(|| Some(self.shared.clone()), leader)
    }

    /// Appends the page's posts, comma-separated, to `out`, rendering with `render` (from
    /// the post and its leader, if it still exists) every post not rendered yet and
    /// keeping those renderings for later pages. `render` must be the same function every
    /// time: renderings are shared. Reads sled and files: call it off the async executor.
    /// Posts deleted meanwhile are skipped.
    pub fn rendered_page<E: From<StoreError>>(
        &self,
        query: &PostQuery,
        render: impl Fn(&Post, Option<&Leader>) -> Result<Vec<u8>, E>,
        out: &mut Vec<u8>,
    ) -> Result<PageInfo, E> {
        // Before any read: a rendering is kept only if its post has not changed since.
        let read_at = self.generation();
        let page = self.shared.index.read().page(query);
        let ids: Vec<u64> = page.entries.iter().map(|e| e.post_id).collect();
        let rendered = &self.shared.rendered;
        let fetch = |id: u64| -> Result<Option<Vec<u8>>, E> {
            match self.post(id)? {
                Some(post) => {
                    let bytes =
                        self.with_leaders(|leaders| render(&post, leaders.get(&post.leader_id)))?;
                    Ok(Some(bytes))
                }
                None => Ok(None),
            }
        };
        // In page order, so the page's posts are kept side by side.
        let mut fresh: Vec<(u64, Vec<u8>)> = Vec::new();
        for id in rendered.missing(&ids) {
            if let Some(bytes) = fetch(id)? {
                fresh.push((id, bytes));
            }
        }
        rendered.put(read_at, &fresh, &self.shared.disk);
        // Usually every post is either held or just rendered; one dropped in between (the
        // file started over, a change) is rendered again.
        let mut fallback = |id: u64| match fresh.iter_mut().find(|(i, _)| *i == id) {
            Some((_, bytes)) => Ok(Some(std::mem::take(bytes))),
            None => fetch(id),
        };
        let reads = rendered.append_page(&ids, out, true, &mut fallback)?;
        self.lay_out_later(query, &page, &ids, reads);
        Ok(info(&page))
    }

    /// Review items, most recently updated first (ties: newest item first), optionally
    /// of one state, at most `limit`. Reads every item (the queue has no index by update
    /// time) but holds only `limit` of them.
    pub fn reviews(
        &self,
        state: Option<ReviewState>,
        limit: usize,
    ) -> Result<Vec<ReviewItem>, StoreError> {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        struct ByUpdate(ReviewItem);
        impl ByUpdate {
            fn key(&self) -> (i64, u64) {
                (self.0.updated_at_ms, self.0.id)
            }
        }
        impl PartialEq for ByUpdate {
            fn eq(&self, other: &Self) -> bool {
                self.key() == other.key()
            }
        }
        impl Eq for ByUpdate {}
        impl PartialOrd for ByUpdate {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }
        impl Ord for ByUpdate {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                self.key().cmp(&other.key())
            }
        }
        // A min-heap of the `limit` most recent: the least recent is dropped first.
        let mut top: BinaryHeap<Reverse<ByUpdate>> = BinaryHeap::with_capacity(limit + 1);
        let tree = self.tree()?;
        let damage = &self.shared.damage;
        for kv in RecordScan::new(
            &tree,
            damage,
            keys::REVIEW,
            self.next_id(&tree, "seq:review"),
        ) {
            let (k, v) = kv?;
            let Some(item) =
                damage.skip::<ReviewItem>(&k, codec::decode(&v).map_err(Into::into))?
            else {
                continue;
            };
            if state.is_none_or(|s| s == item.state) {
                top.push(Reverse(ByUpdate(item)));
                if top.len() > limit {
                    top.pop();
                }
            }
        }
        let mut out: Vec<ReviewItem> = top.into_iter().map(|Reverse(b)| b.0).collect();
        out.sort_by_key(|b| Reverse((b.updated_at_ms, b.id)));
        Ok(out)
    }

    /// One review item.
    /// A damaged one is `None` (skipped and counted).
    pub fn review(&self, id: u64) -> Result<Option<ReviewItem>, StoreError> {
        let key = keys::id_key(keys::REVIEW, id);
        let read = self
            .tree()?
            .get(key)
            .map_err(StoreError::from)
            .and_then(|b| {
                b.map(|b| codec::decode::<ReviewItem>(&b).map_err(StoreError::from))
                    .transpose()
            });
        Ok(self.shared.damage.skip(&key, read)?.flatten())
    }

    /// Counts for health and metrics, from maintained counters.
    pub fn stats(&self) -> Stats {
        let index = self.shared.index.read();
        Stats {
            leaders: self.shared.leaders.read().len() as u64,
            posts: index.len() as u64,
            review_items: self.shared.review_items.load(Ordering::Relaxed),
            pending_reviews: self.shared.pending_reviews.load(Ordering::Relaxed),
            latest_post_ms: index.newest().map(|e| e.timestamp_ms),
            posts_by_platform: Platform::ALL
                .iter()
                .map(|p| (*p, index.platform_len(*p) as u64))
                .collect(),
        }
    }

    /// The newest X post id stored for a leader (the next `since_id`).
    pub fn newest_x_id(&self, leader_id: u64) -> Option<String> {
        self.shared.newest_x.read().get(&leader_id).cloned()
    }

    /// The cached X user id for a leader, if it was resolved for `handle`.
    pub fn x_user_id(&self, leader_id: u64, handle: &str) -> Result<Option<String>, StoreError> {
        let Some(v) = self.tree()?.get(keys::id_key(keys::X_USER, leader_id))? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&v);
        Ok(text
            .split_once('\0')
            .filter(|(h, _)| h.eq_ignore_ascii_case(handle))
            .map(|(_, id)| id.to_string()))
    }

    /// A metadata value set with [`Store::set_meta`](crate::storage::Store::set_meta).
    pub fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .tree()?
            .get(keys::named_key(keys::META, &format!("app:{name}")))?
            .map(|v| v.to_vec()))
    }

    /// The replication stream position applied (`<id> <n>`), if any.
    pub fn repl_position(&self) -> Result<Option<(String, u64)>, StoreError> {
        let key = keys::named_key(keys::META, crate::storage::change::REPL_POSITION);
        Ok(self
            .tree()?
            .get(key)?
            .and_then(|v| crate::replication::parse_stamp(&v)))
    }

    /// Every notification target, by id.
    pub fn notify_targets(&self) -> Vec<Target> {
        self.shared
            .notify
            .targets
            .read()
            .values()
            .cloned()
            .collect()
    }

    /// One notification target.
    pub fn notify_target(&self, id: u64) -> Option<Target> {
        self.shared.notify.targets.read().get(&id).cloned()
    }

    /// Up to `limit` of a target's queued deliveries after post `after`, oldest first.
    pub fn outbox_after(
        &self,
        target_id: u64,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, Event)>, StoreError> {
        let prefix = crate::storage::notify::outbox_prefix(target_id);
        let start = match after {
            Some(u64::MAX) => return Ok(Vec::new()),
            Some(post) => keys::outbox_key(target_id, post + 1),
            None => keys::outbox_key(target_id, 0),
        };
        let mut out = Vec::new();
        for kv in self.tree()?.range(start..) {
            let (k, v) = kv?;
            if !k.starts_with(&prefix) || out.len() >= limit {
                break;
            }
            if let Some((_, post)) = keys::parse_outbox_key(&k) {
                out.push((post, Event::from_code(v.first().copied().unwrap_or(b'n'))));
            }
        }
        Ok(out)
    }

    /// How many deliveries a target has queued.
    pub fn outbox_len(&self, target_id: u64) -> Result<usize, StoreError> {
        let prefix = crate::storage::notify::outbox_prefix(target_id);
        Ok(self.tree()?.scan_prefix(prefix).keys().count())
    }

    /// The live feed's hub: new and deleted posts, published once they are on disk.
    pub fn live(&self) -> std::sync::Arc<crate::live::Hub> {
        self.shared.live.clone()
    }

    /// Posts with ids above `after`, lowest id first (a `Last-Event-ID` resume from
    /// another run of the server): `None` when more than `limit` ids were taken since
    /// (the caller tells its client to reload instead). Point reads, so a damaged record
    /// is skipped and counted like everywhere else.
    pub fn posts_after(&self, after: u64, limit: usize) -> Result<Option<Vec<Post>>, StoreError> {
        let next = self.next_id(&self.tree()?, "seq:post");
        let taken = next.saturating_sub(after.saturating_add(1));
        if taken > limit as u64 {
            return Ok(None);
        }
        let mut out = Vec::new();
        for id in after.saturating_add(1)..next {
            if let Some(post) = self.post(id)? {
                out.push(post);
            }
        }
        Ok(Some(out))
    }

    /// Changes after every commit that queued deliveries (and when a target resumes).
    pub fn outbox_wake(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.notify.wake.subscribe()
    }

    /// Every record, for backup: leaders, then posts (oldest first), then review items.
    /// Damaged records are skipped and counted in `skipped` (and in health); any other
    /// failure is an error item.
    pub fn export<'a>(
        &'a self,
        skipped: &'a Cell<u64>,
    ) -> impl Iterator<Item = Result<Record, StoreError>> + 'a {
        // While the database is closed the export is that one error.
        let (tree, closed): (_, Option<Result<Option<Record>, StoreError>>) = match self.tree() {
            Ok(tree) => (Some(tree), None),
            Err(err) => (None, Some(Err(err))),
        };
        let damage = &self.shared.damage;
        let scan = move |prefix: u8, seq: &str| {
            let end = tree.as_ref().map_or(0, |t| self.next_id(t, seq));
            tree.clone()
                .into_iter()
                .flat_map(move |t| RecordScan::new(&t, damage, prefix, end).counting(skipped))
        };
        let decode = move |kv: Result<(sled::IVec, sled::IVec), StoreError>,
                           f: fn(&[u8]) -> Result<Record, StoreError>| {
            let (k, v) = kv?;
            let record = damage.skip(&k, f(&v))?;
            if record.is_none() {
                skipped.set(skipped.get() + 1);
            }
            Ok(record)
        };
        let leaders = scan(keys::LEADER, "seq:leader")
            .map(move |kv| decode(kv, |v| Ok(Record::Leader(codec::decode(v)?))));
        let posts = scan(keys::POST, "seq:post")
            .map(move |kv| decode(kv, |v| Ok(Record::Post(Box::new(decode_post(v)?.post)))));
        let reviews = scan(keys::REVIEW, "seq:review")
            .map(move |kv| decode(kv, |v| Ok(Record::Review(codec::decode(v)?))));
        closed
            .into_iter()
            .chain(leaders)
            .chain(posts)
            .chain(reviews)
            .filter_map(Result::transpose)
    }
}

/// Copies `leader`'s renderings side by side in the renderings file in its list's order,
/// newest first, [`LAYOUT_RUN`] posts at a time (`RenderedPosts::put_second_whole`; a batch
/// already in one piece is left as it is), taking the store from `store` for each batch
/// (`None`: it is gone, stop), so a later page of that leader is one read. Stops where a
/// batch cannot be copied (free space short, a start over). Returns how many it copied.
fn lay_out_batches(store: impl Fn() -> Option<Arc<Shared>>, leader: u64) -> usize {
    let mut copied = 0;
    let mut start = crate::storage::query::PageStart::Offset(0);
    while let Some(shared) = store() {
        let query = PostQuery::newest(LAYOUT_RUN)
            .leaders([leader])
            .starting(start);
        let page = shared.index.read().page(&query);
        let ids: Vec<u64> = page.entries.iter().map(|e| e.post_id).collect();
        let Some(last) = page.entries.last() else {
            break;
        };
        let Some(n) = shared.rendered.put_second_whole(&ids, &shared.disk) else {
            break;
        };
        copied += n;
        if !page.has_next {
            break;
        }
        start = crate::storage::query::PageStart::Before(Cursor {
            timestamp_ms: last.timestamp_ms,
            post_id: last.post_id,
        });
    }
    copied
}
