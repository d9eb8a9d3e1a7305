//! Rendered posts: the bytes a reader made from a post and its leader (the feed's post
//! JSON), kept in a file of their own beside the database so that a page is a few reads
//! of ready bytes (usually from the OS page cache) instead of 20 sled reads, decodes and
//! renders. The file is a cache, never data: it is unlinked as soon as it is opened (so
//! nothing of it outlives the process, a crash included), starts empty at every open, and
//! only an in-memory table (8 bytes per post id seen) says what in it is valid. Storage
//! does not know what the bytes are; it guarantees they are never older than the post and
//! its leader:
//!
//! - [`Store::apply`](crate::storage::Store::apply) marks every post whose record it
//!   writes as *changed at* the generation the change becomes visible at, before it
//!   bumps the generation, and every post of a leader it writes or removes the same
//!   way (a leader's name and handles are in its posts' renderings);
//! - a reader reads the generation *before* it reads a post, and its rendering is kept
//!   only if the post has not changed since (checked and stored under the table's lock).
//!
//! So a rendering made from a record that a later commit replaced is refused or
//! overwritten, whichever comes second. Renderings are appended, each followed by a
//! comma, so the posts of a page rendered together are one read. Replaced renderings are
//! dead bytes; when they outweigh the live ones the file starts over (empty). It never
//! grows into `DISK_RESERVE_MB` (free space is measured every few MB of growth).

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;

use crate::storage::disk::DiskWatch;

/// Table slots per chunk: the table is a map of chunks of consecutive post ids, so its
/// size follows the ids in use (imported ids may be sparse), 8 bytes a slot.
const CHUNK_BITS: u32 = 12;
const CHUNK: usize = 1 << CHUNK_BITS;
/// A slot with this bit is a change mark (the rest: the generation).
const CHANGED: u64 = 1 << 63;
/// A fresh slot is offset << LEN_BITS | length (never 0: a rendering is never empty).
const LEN_BITS: u32 = 24;
const LEN_MASK: u64 = (1 << LEN_BITS) - 1;
const MAX_OFFSET: u64 = 1 << (63 - LEN_BITS);
/// Dead bytes tolerated (beyond as many as are live) before the file starts over.
const DEAD_SLACK: u64 = if cfg!(test) { 1 << 20 } else { 64 << 20 };
/// The file grows this far between two measures of free space.
const ROOM_STEP: u64 = 8 << 20;
/// Free space the file leaves beyond `DISK_RESERVE_MB`, for the database.
const ROOM_MARGIN: u64 = 64 << 20;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Slot {
    Empty,
    Fresh {
        offset: u64,
        len: u64,
    },
    /// The post's record was written by the change that became visible at this
    /// generation: a rendering read before it is stale.
    Changed(u64),
}

impl Slot {
    fn of(raw: u64) -> Slot {
        if raw == 0 {
            Slot::Empty
        } else if raw & CHANGED != 0 {
            Slot::Changed(raw & !CHANGED)
        } else {
            Slot::Fresh {
                offset: raw >> LEN_BITS,
                len: raw & LEN_MASK,
            }
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    chunks: HashMap<u64, Box<[u64]>, foldhash::fast::RandomState>,
    file: Option<File>,
    /// Where the next rendering goes; reserved under the read lock (`fetch_add`).
    end: AtomicU64,
    /// The file may grow up to here before free space is measured again.
    room_until: AtomicU64,
    /// Bumped each time the file starts over: bytes written before it are gone.
    epoch: u64,
    /// Bytes (with their commas) the table points at.
    live: u64,
    /// No rendering read before this generation is kept.
    floor: u64,
    /// The newest generation a mark names (the floor when the table starts over).
    last_mark: u64,
}

impl Inner {
    fn get(&self, id: u64) -> Slot {
        self.chunks
            .get(&(id >> CHUNK_BITS))
            .map_or(Slot::Empty, |c| Slot::of(c[(id as usize) & (CHUNK - 1)]))
    }

    fn set(&mut self, id: u64, raw: u64) {
        self.chunks
            .entry(id >> CHUNK_BITS)
            .or_insert_with(|| vec![0; CHUNK].into_boxed_slice())[(id as usize) & (CHUNK - 1)] =
            raw;
    }

    /// Forgets every rendering and mark, and empties the file: nothing read before
    /// `floor` is kept again.
    fn start_over(&mut self, floor: u64) {
        self.floor = self.floor.max(floor);
        self.last_mark = self.last_mark.max(floor);
        self.chunks = HashMap::default();
        self.live = 0;
        self.epoch += 1;
        *self.end.get_mut() = 0;
        *self.room_until.get_mut() = 0;
        if let Some(file) = &self.file {
            if let Err(err) = file.set_len(0) {
                tracing::warn!(error = %err, "could not empty the rendered-post file; renderings are off");
                self.file = None;
            }
        }
    }
}

/// Renderings by post id, with their validity rules (see the module comment). One lock:
/// a page takes it once for all its posts.
#[derive(Debug, Default)]
pub(crate) struct RenderedPosts {
    inner: RwLock<Inner>,
}

/// What [`RenderedPosts::append_page`] does for a post it does not hold (or cannot read
/// without waiting): fetch and render it (`Ok(None)`: the post is gone, skip it), or give
/// up.
pub(crate) type Fallback<'a, E> = dyn FnMut(u64) -> Result<Option<Vec<u8>>, E> + 'a;

/// A stretch of a page: consecutive renderings in the file, or one post to fetch.
enum Stretch {
    File { start: u64, end: u64, ids: usize },
    Fetch,
}

impl RenderedPosts {
    /// Keeps renderings from now on in an unlinked file in the directory holding `db`
    /// (the database directory). Without it (or if it cannot be made) nothing is kept
    /// and every page renders its posts.
    pub fn attach(&self, db: &Path) {
        let dir = db.parent().unwrap_or(Path::new("."));
        let stem = db
            .file_name()
            .map_or("db".into(), |n| n.to_string_lossy().into_owned());
        let prefix = format!("{stem}.renderings-");
        // Left behind by a crash between creating and unlinking (a tiny window).
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let path = dir.join(format!("{prefix}{}", std::process::id()));
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .and_then(|f| std::fs::remove_file(&path).map(|()| f));
        let mut inner = self.inner.write();
        match opened {
            Ok(file) => inner.file = Some(file),
            Err(err) => {
                let _ = std::fs::remove_file(&path);
                tracing::warn!(error = %err, path = %path.display(), "cannot keep rendered posts; every page renders its posts");
            }
        }
        let floor = inner.floor;
        inner.start_over(floor);
    }

    /// The ids among `ids` without a fresh rendering.
    pub fn missing(&self, ids: &[u64]) -> Vec<u64> {
        let inner = self.inner.read();
        ids.iter()
            .copied()
            .filter(|id| !matches!(inner.get(*id), Slot::Fresh { .. }))
            .collect()
    }

    /// Appends the renderings of `ids`, comma-separated, to `out`, asking `fallback` for
    /// any it does not hold. Without `wait`, a read that would wait for the disk (the
    /// bytes are not in the OS page cache) is left to `fallback` too, so this can run on
    /// an async executor.
    pub fn append_page<E>(
        &self,
        ids: &[u64],
        out: &mut Vec<u8>,
        wait: bool,
        fallback: &mut Fallback<'_, E>,
    ) -> Result<(), E> {
        let inner = self.inner.read();
        let mut stretches: Vec<Stretch> = Vec::with_capacity(ids.len());
        for &id in ids {
            let file = inner.file.is_some();
            match (inner.get(id), stretches.last_mut()) {
                (Slot::Fresh { offset, len }, Some(Stretch::File { end, ids, .. }))
                    if file && offset == *end + 1 =>
                {
                    *end = offset + len;
                    *ids += 1;
                }
                (Slot::Fresh { offset, len }, _) if file => stretches.push(Stretch::File {
                    start: offset,
                    end: offset + len,
                    ids: 1,
                }),
                _ => stretches.push(Stretch::Fetch),
            }
        }
        let mut first = true;
        let mut next = 0;
        for stretch in stretches {
            let (from, count) = match stretch {
                Stretch::File { start, end, ids: n } => {
                    let at = out.len();
                    if !first {
                        out.push(b',');
                    }
                    let body = out.len();
                    out.resize(body + (end - start) as usize, 0);
                    let read = match &inner.file {
                        Some(f) => read_at(f, &mut out[body..], start, wait),
                        None => Err(io::ErrorKind::NotFound.into()),
                    };
                    next += n;
                    if read.is_ok() {
                        first = false;
                        continue;
                    }
                    // Not in memory (or unreadable): these posts the slow way.
                    out.truncate(at);
                    (next - n, n)
                }
                Stretch::Fetch => {
                    next += 1;
                    (next - 1, 1)
                }
            };
            for &id in &ids[from..from + count] {
                if let Some(bytes) = fallback(id)? {
                    if !first {
                        out.push(b',');
                    }
                    first = false;
                    out.extend_from_slice(&bytes);
                }
            }
        }
        Ok(())
    }

    /// Keeps renderings made from records read at generation `read_at` (or later),
    /// except of posts that changed since; in the order given, so posts rendered for one
    /// page are read back in one piece. Keeps nothing while free space under the data
    /// directory is short (see [`ROOM_MARGIN`]).
    pub fn put(&self, read_at: u64, renderings: &[(u64, Vec<u8>)], disk: &DiskWatch) {
        let (epoch, placed) = {
            let inner = self.inner.read();
            let Some(file) = inner.file.as_ref().filter(|_| read_at >= inner.floor) else {
                return;
            };
            let mut blob = Vec::new();
            let mut placed = Vec::new();
            for (id, bytes) in renderings {
                let wanted = match inner.get(*id) {
                    Slot::Fresh { .. } => false,
                    Slot::Changed(at) => at <= read_at,
                    Slot::Empty => true,
                };
                if wanted && !bytes.is_empty() && bytes.len() as u64 <= LEN_MASK {
                    placed.push((*id, blob.len() as u64, bytes.len() as u64));
                    blob.extend_from_slice(bytes);
                    blob.push(b',');
                }
            }
            if placed.is_empty() {
                return;
            }
            let total = blob.len() as u64;
            let grown = inner.end.load(Ordering::Relaxed) + total;
            if grown > inner.room_until.load(Ordering::Relaxed) {
                match disk.space() {
                    Some(s) if s.available > s.reserve.saturating_add(ROOM_MARGIN) => {
                        inner
                            .room_until
                            .fetch_max(grown + ROOM_STEP, Ordering::Relaxed);
                    }
                    _ => return,
                }
            }
            let start = inner.end.fetch_add(total, Ordering::Relaxed);
            if start + total > MAX_OFFSET {
                return;
            }
            if file.write_all_at(&blob, start).is_err() {
                return;
            }
            for p in &mut placed {
                p.1 += start;
            }
            (inner.epoch, placed)
        };
        let mut inner = self.inner.write();
        if inner.epoch != epoch || read_at < inner.floor {
            return;
        }
        for (id, offset, len) in placed {
            match inner.get(id) {
                Slot::Changed(at) if at > read_at => continue,
                Slot::Fresh { .. } => continue,
                _ => {}
            }
            inner.set(id, offset << LEN_BITS | len);
            inner.live += len + 1;
        }
        let dead = inner.end.load(Ordering::Relaxed).saturating_sub(inner.live);
        if dead > inner.live.max(DEAD_SLACK) {
            let floor = inner.last_mark;
            inner.start_over(floor);
        }
    }

    /// Marks posts as changed by the change that becomes visible at `generation` (the
    /// writer calls this after the commit, before bumping the generation to it).
    pub fn changed(&self, post_ids: impl IntoIterator<Item = u64>, generation: u64) {
        let mut inner = self.inner.write();
        inner.last_mark = inner.last_mark.max(generation);
        for id in post_ids {
            if let Slot::Fresh { len, .. } = inner.get(id) {
                inner.live -= len + 1;
            }
            inner.set(id, CHANGED | generation);
        }
    }

    /// Forgets every rendering and mark, and empties the file: nothing read before
    /// `generation` is kept again (a failed commit, a reopened database).
    pub fn forget_all(&self, generation: u64) {
        self.inner.write().start_over(generation);
    }

    /// Bytes of renderings held (with their separators), for tests.
    #[cfg(test)]
    pub fn held(&self) -> u64 {
        self.inner.read().live
    }
}

/// Reads `buf.len()` bytes at `offset`; without `wait`, fails with `WouldBlock` rather
/// than wait for the disk (`preadv2` with `RWF_NOWAIT`: only what the page cache holds).
fn read_at(file: &File, buf: &mut [u8], offset: u64, wait: bool) -> io::Result<()> {
    if wait {
        return file.read_exact_at(buf, offset);
    }
    read_now(file, buf, offset)
}

#[cfg(target_os = "linux")]
fn read_now(file: &File, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::raw::{c_int, c_void};
    #[repr(C)]
    struct IoVec {
        base: *mut c_void,
        len: usize,
    }
    extern "C" {
        fn preadv2(fd: c_int, iov: *const IoVec, iovcnt: c_int, offset: i64, flags: c_int)
            -> isize;
    }
    const RWF_NOWAIT: c_int = 0x8;
    while !buf.is_empty() {
        let iov = IoVec {
            base: buf.as_mut_ptr().cast(),
            len: buf.len(),
        };
        let at = i64::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: one iovec naming `buf`, which is valid for writes of its length for the
        // whole call; the fd is open (borrowed from `file`).
        let n = unsafe { preadv2(file.as_raw_fd(), &iov, 1, at, RWF_NOWAIT) };
        match n {
            n if n < 0 => {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => {
                let n = n as usize;
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn read_now(_: &File, _: &mut [u8], _: u64) -> io::Result<()> {
    Err(io::ErrorKind::WouldBlock.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cache with its file in a temporary directory (kept alive by the guard).
    fn cache() -> (RenderedPosts, DiskWatch, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let cache = RenderedPosts::default();
        cache.attach(&dir.path().join("db"));
        (cache, DiskWatch::new(dir.path()), dir)
    }

    fn one(id: u64, bytes: &[u8]) -> [(u64, Vec<u8>); 1] {
        [(id, bytes.to_vec())]
    }

    impl RenderedPosts {
        fn get(&self, id: u64) -> Option<Vec<u8>> {
            let mut out = Vec::new();
            let mut miss = |_| Err(());
            self.append_page(&[id], &mut out, true, &mut miss)
                .ok()
                .map(|()| out)
        }

        fn file_len(&self) -> u64 {
            self.inner
                .read()
                .file
                .as_ref()
                .unwrap()
                .metadata()
                .unwrap()
                .len()
        }
    }

    #[test]
    fn a_rendering_read_before_a_change_is_refused_or_overwritten() {
        let (cache, disk, _dir) = cache();
        // Read at generation 5, the post changes at 6 before the reader stores: refused.
        cache.changed([1], 6);
        cache.put(5, &one(1, b"old"), &disk);
        assert_eq!(cache.get(1), None);
        // Read at 6 (after the change): kept.
        cache.put(6, &one(1, b"new"), &disk);
        assert_eq!(cache.get(1).as_deref(), Some(&b"new"[..]));
        // Stored first, then the change: the mark overwrites it.
        cache.put(6, &one(2, b"two"), &disk);
        cache.changed([2], 7);
        assert_eq!(cache.get(2), None);
        assert_eq!(cache.held(), 3 + 1);
        assert_eq!(cache.missing(&[1, 2, 3]), vec![2, 3]);
    }

    #[test]
    fn forgetting_everything_refuses_older_reads_and_empties_the_file() {
        let (cache, disk, _dir) = cache();
        cache.put(3, &one(1, b"a"), &disk);
        assert_eq!(cache.file_len(), 2);
        cache.forget_all(4);
        assert_eq!(cache.get(1), None);
        assert_eq!(cache.file_len(), 0);
        cache.put(3, &one(1, b"a"), &disk);
        assert_eq!(cache.get(1), None, "read before the floor");
        cache.put(4, &one(1, b"b"), &disk);
        assert_eq!(cache.get(1).as_deref(), Some(&b"b"[..]));
    }

    #[test]
    fn the_file_is_unlinked_and_nothing_is_left_in_the_directory() {
        let (cache, disk, dir) = cache();
        cache.put(0, &one(1, b"{1}"), &disk);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert!(names.is_empty(), "{names:?}");
        // A file a crash left behind is removed by the next attach.
        std::fs::write(dir.path().join("db.renderings-1"), b"old").unwrap();
        RenderedPosts::default().attach(&dir.path().join("db"));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert_eq!(cache.get(1).as_deref(), Some(&b"{1}"[..]));
    }

    #[test]
    fn a_page_joins_renderings_and_asks_for_the_rest() {
        let (cache, disk, _dir) = cache();
        cache.put(0, &[(1, b"{1}".to_vec()), (3, b"{3}".to_vec())], &disk);
        for wait in [true, false] {
            let mut out = b"[".to_vec();
            let mut fetch = |id: u64| Ok::<_, ()>((id == 2).then(|| b"{2}".to_vec()));
            cache
                .append_page(&[1, 2, 4, 3], &mut out, wait, &mut fetch)
                .unwrap();
            assert_eq!(out, b"[{1},{2},{3}");
        }
        // Without the file nothing is kept, and every post is fetched.
        let bare = RenderedPosts::default();
        bare.put(0, &one(1, b"{1}"), &disk);
        let mut out = Vec::new();
        let mut fetch = |id: u64| Ok::<_, ()>(Some(format!("<{id}>").into_bytes()));
        bare.append_page(&[1, 2], &mut out, false, &mut fetch)
            .unwrap();
        assert_eq!(out, b"<1>,<2>");
    }

    #[test]
    fn posts_rendered_together_are_read_in_one_piece_in_any_order_asked() {
        let (cache, disk, _dir) = cache();
        let page: Vec<(u64, Vec<u8>)> = (10..15)
            .map(|i| (i, format!("{{{i}}}").into_bytes()))
            .collect();
        cache.put(0, &page, &disk);
        cache.put(0, &one(20, b"{20}"), &disk);
        let mut stretches = 0;
        let mut out = Vec::new();
        let mut miss = |_| Err(());
        {
            let inner = cache.inner.read();
            let mut end = None;
            for id in [10, 11, 12, 13, 14, 20] {
                if let Slot::Fresh { offset, len } = inner.get(id) {
                    if end != Some(offset.saturating_sub(1)) {
                        stretches += 1;
                    }
                    end = Some(offset + len);
                }
            }
        }
        // Written one after the other: one stretch, commas included.
        assert_eq!(stretches, 1);
        cache
            .append_page(&[10, 11, 12, 13, 14, 20], &mut out, false, &mut miss)
            .unwrap();
        assert_eq!(out, b"{10},{11},{12},{13},{14},{20}");
        out.clear();
        cache
            .append_page(&[14, 10, 12], &mut out, true, &mut miss)
            .unwrap();
        assert_eq!(out, b"{14},{10},{12}");
    }

    #[test]
    fn dead_bytes_past_the_live_ones_start_the_file_over() {
        let (cache, disk, _dir) = cache();
        let big = vec![b'x'; 64 * 1024];
        let mut generation = 1;
        // Rewriting the same posts again and again: each change leaves dead bytes.
        for _ in 0..40 {
            for id in 0..4 {
                cache.put(generation, &one(id, &big), &disk);
            }
            generation += 1;
            cache.changed(0..4, generation);
        }
        assert!(cache.file_len() < 2 * DEAD_SLACK + 4 * (big.len() as u64 + 1));
        // Still correct afterwards.
        cache.put(generation, &one(7, b"{7}"), &disk);
        assert_eq!(cache.get(7).as_deref(), Some(&b"{7}"[..]));
        assert_eq!(cache.get(0), None);
        // A rendering read before the last change is refused after the start-over too.
        cache.put(generation - 1, &one(0, b"stale"), &disk);
        assert_eq!(cache.get(0), None);
    }

    #[test]
    fn nothing_is_kept_when_free_space_is_short() {
        let (cache, _, dir) = cache();
        let disk = DiskWatch::new(dir.path());
        disk.set_reserve(u64::MAX / 2);
        cache.put(0, &one(1, b"{1}"), &disk);
        assert_eq!(cache.get(1), None);
        assert_eq!(cache.file_len(), 0);
    }

    #[test]
    fn pages_reuse_renderings_until_a_post_or_its_leader_changes() {
        use crate::storage::posts::tests::{draft, x_post};
        use crate::storage::query::{PageStart, PostQuery};
        use crate::storage::{PostPatch, Store, StoreError};
        use std::sync::atomic::{AtomicUsize, Ordering};

        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path(), 8).unwrap();
        let leader = store.create_leader(draft("A"), 0).unwrap();
        let ids: Vec<u64> = store
            .insert_posts(
                (0..30)
                    .map(|i| x_post(leader.id, &format!("{}", 100 + i), i, &[]))
                    .collect(),
            )
            .unwrap()
            .inserted
            .iter()
            .map(|p| p.id)
            .collect();
        let reader = store.reader();
        let renders = AtomicUsize::new(0);
        let render = |p: &crate::domain::post::Post, l: Option<&crate::domain::leader::Leader>| {
            renders.fetch_add(1, Ordering::Relaxed);
            Ok::<_, StoreError>(
                format!("{}|{}|{}", p.id, p.content, l.map_or("-", |l| &l.name)).into_bytes(),
            )
        };
        let page = |q: &PostQuery| {
            let mut out = Vec::new();
            reader.rendered_page(q, render, &mut out).unwrap();
            String::from_utf8(out).unwrap()
        };
        let in_memory = |q: &PostQuery| {
            let mut out = Vec::new();
            reader
                .rendered_page_without_waiting(q, &mut out)
                .map(|_| String::from_utf8(out).unwrap())
        };
        let q = PostQuery::newest(10);
        assert!(in_memory(&q).is_none());
        let first = page(&q);
        assert_eq!(
            (first.split(',').count(), renders.load(Ordering::Relaxed)),
            (10, 10)
        );
        assert_eq!(in_memory(&q).as_deref(), Some(first.as_str()));
        // New posts need no invalidation of the old ones: the page just shifts.
        store
            .insert_posts(vec![x_post(leader.id, "900", 99, &[])])
            .unwrap();
        let shifted = q.clone().starting(PageStart::Offset(1));
        assert!(in_memory(&shifted).is_some());
        // An edited post is rendered again; the others are not.
        store
            .update_post(
                ids[29],
                PostPatch {
                    content: Some("edited".into()),
                    ..PostPatch::default()
                },
            )
            .unwrap();
        assert!(in_memory(&shifted).is_none());
        let before = renders.load(Ordering::Relaxed);
        assert!(page(&shifted).starts_with(&format!("{}|edited|A", ids[29])));
        assert_eq!(renders.load(Ordering::Relaxed), before + 1);
        // A renamed leader shows in every post rendered after.
        store.update_leader(leader.id, draft("B")).unwrap();
        assert!(in_memory(&q).is_none());
        assert!(page(&q).split(',').all(|p| p.ends_with("|B")));
        // A deleted post is gone from the page, not served from memory.
        store.delete_post(ids[28]).unwrap();
        let all = page(&PostQuery::newest(40));
        assert_eq!(all.split(',').count(), 30);
        assert!(!all
            .split(',')
            .any(|p| p.starts_with(&format!("{}|", ids[28]))));
    }

    #[test]
    fn a_leader_change_renders_only_that_leaders_posts_again() {
        use crate::storage::posts::tests::{draft, x_post};
        use crate::storage::query::PostQuery;
        use crate::storage::{Store, StoreError};
        use std::sync::atomic::{AtomicUsize, Ordering};

        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("db"), 8).unwrap();
        let a = store.create_leader(draft("A"), 0).unwrap();
        let b = store.create_leader(draft("B"), 0).unwrap();
        let posts = (0..20)
            .map(|i| {
                x_post(
                    if i % 2 == 0 { a.id } else { b.id },
                    &format!("{}", 500 + i),
                    i,
                    &[],
                )
            })
            .collect();
        store.insert_posts(posts).unwrap();
        let reader = store.reader();
        let renders = AtomicUsize::new(0);
        let render = |p: &crate::domain::post::Post, l: Option<&crate::domain::leader::Leader>| {
            renders.fetch_add(1, Ordering::Relaxed);
            Ok::<_, StoreError>(format!("{}|{}", p.id, l.map_or("-", |l| &l.name)).into_bytes())
        };
        let page = |q: &PostQuery| {
            let mut out = Vec::new();
            reader.rendered_page(q, render, &mut out).unwrap();
            String::from_utf8(out).unwrap()
        };
        let all = PostQuery::newest(20);
        page(&all);
        assert_eq!(renders.load(Ordering::Relaxed), 20);
        store.update_leader(a.id, draft("A2")).unwrap();
        let mut out = Vec::new();
        assert!(
            reader
                .rendered_page_without_waiting(&PostQuery::newest(20).leaders(vec![b.id]), &mut out)
                .is_some(),
            "B's posts are still rendered"
        );
        assert!(
            reader
                .rendered_page_without_waiting(&PostQuery::newest(20).leaders(vec![a.id]), &mut out)
                .is_none(),
            "A's are not"
        );
        let shown = page(&all);
        assert_eq!(renders.load(Ordering::Relaxed), 30, "A's ten posts again");
        assert_eq!(shown.matches("|A2").count(), 10);
        assert_eq!(shown.matches("|B").count(), 10);
        assert!(!shown.contains("|A,") && !shown.ends_with("|A"));
        // A deleted leader's posts go with it.
        store.delete_leader(b.id).unwrap();
        assert_eq!(page(&all).split(',').count(), 10);
        // Nothing of the file is left in the data directory.
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| n.to_string_lossy().contains("renderings"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn the_start_up_check_renders_every_post_newest_first_in_one_piece() {
        use crate::storage::posts::tests::{draft, x_post};
        use crate::storage::query::{PageStart, PostQuery};
        use crate::storage::Store;

        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("db"), 8).unwrap();
        let a = store.create_leader(draft("A"), 0).unwrap();
        let posts = (0..50)
            .map(|i| x_post(a.id, &format!("{}", 700 + i), i, &[]))
            .collect();
        store.insert_posts(posts).unwrap();
        let reader = store.reader();
        let mut out = Vec::new();
        assert!(reader
            .rendered_page_without_waiting(&PostQuery::newest(20), &mut out)
            .is_none());
        let render = |p: &crate::domain::post::Post, _: Option<&crate::domain::leader::Leader>| {
            Some(format!("<{}>", p.id).into_bytes())
        };
        let report = reader.check_integrity(Some(&render)).unwrap();
        assert_eq!(report.total(), 0);
        let all = reader.page(&PostQuery::newest(50)).unwrap().posts;
        let bytes: usize = all.iter().map(|p| format!("<{}>,", p.id).len()).sum();
        assert_eq!(reader.shared.rendered.held(), bytes as u64);
        let q = PostQuery::newest(20).starting(PageStart::Offset(20));
        assert!(reader.rendered_page_without_waiting(&q, &mut out).is_some());
        let ids: Vec<String> = reader
            .page(&q)
            .unwrap()
            .posts
            .iter()
            .map(|p| format!("<{}>", p.id))
            .collect();
        assert_eq!(String::from_utf8(out).unwrap(), ids.join(","));
        // Newest first, side by side: the whole feed is one stretch of the file.
        let inner = reader.shared.rendered.inner.read();
        let mut end = None;
        for id in reader
            .page(&PostQuery::newest(50))
            .unwrap()
            .posts
            .iter()
            .map(|p| p.id)
        {
            let Slot::Fresh { offset, len } = inner.get(id) else {
                panic!("{id} not kept")
            };
            if let Some(end) = end {
                assert_eq!(offset, end + 1);
            }
            end = Some(offset + len);
        }
    }
}
