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
//! comma, so the posts of a page rendered together are one read. A rendering can have a
//! second place, a copy laid out in its leader's order (a leader's whole list, in
//! batches: [`RenderedPosts::put_second_whole`]), so a page of one leader is one read too; the copy is only ever of the valid bytes and is
//! dropped with them. Replaced renderings are
//! dead bytes; when they outweigh the live ones the file starts over (empty). It never
//! grows into `DISK_RESERVE_MB` (free space is measured every few MB of growth).

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::OnceLock;

use parking_lot::{Mutex, RwLock};

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
    /// Second places (offset + 1; 0: none; 4 bytes a slot, so copies past 4 GiB into
    /// the file are not kept), in chunks like `chunks`: a copy of a fresh rendering in
    /// its leader's order, made by [`RenderedPosts::put_second_whole`]. Only ever set while the
    /// post's slot is fresh and names the same bytes; cleared with it.
    seconds: HashMap<u64, Box<[u32]>, foldhash::fast::RandomState>,
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

    /// Where the second copy of a fresh rendering starts, if it has one.
    fn second(&self, id: u64) -> Option<u64> {
        self.seconds
            .get(&(id >> CHUNK_BITS))
            .map_or(0, |c| u64::from(c[(id as usize) & (CHUNK - 1)]))
            .checked_sub(1)
    }

    /// Drops the second copy of `id` (its bytes become dead): `len` is the rendering's.
    fn drop_second(&mut self, id: u64, len: u64) {
        if let Some(c) = self.seconds.get_mut(&(id >> CHUNK_BITS)) {
            let slot = &mut c[(id as usize) & (CHUNK - 1)];
            if *slot != 0 {
                *slot = 0;
                self.live -= len + 1;
            }
        }
    }

    /// Remembers a second place; false (nothing kept) past what a slot holds.
    fn set_second(&mut self, id: u64, offset: u64) -> bool {
        let Ok(raw) = u32::try_from(offset + 1) else {
            return false;
        };
        self.seconds
            .entry(id >> CHUNK_BITS)
            .or_insert_with(|| vec![0; CHUNK].into_boxed_slice())[(id as usize) & (CHUNK - 1)] =
            raw;
        true
    }

    /// Reserves `total` bytes at the end of the file, unless free space is short (see
    /// [`ROOM_MARGIN`]) or the offsets would not fit a slot.
    fn reserve(&self, total: u64, disk: &DiskWatch) -> Option<u64> {
        let grown = self.end.load(Ordering::Relaxed) + total;
        if grown > self.room_until.load(Ordering::Relaxed) {
            match disk.space() {
                Some(s) if s.available > s.reserve.saturating_add(ROOM_MARGIN) => {
                    self.room_until
                        .fetch_max(grown + ROOM_STEP, Ordering::Relaxed);
                }
                _ => return None,
            }
        }
        let start = self.end.fetch_add(total, Ordering::Relaxed);
        (start + total <= MAX_OFFSET).then_some(start)
    }

    /// Starts the file over when dead bytes outweigh the live ones (plus the slack).
    fn collect(&mut self) {
        let dead = self.end.load(Ordering::Relaxed).saturating_sub(self.live);
        if dead > self.live.max(DEAD_SLACK) {
            let floor = self.last_mark;
            self.start_over(floor);
        }
    }

    /// Forgets every rendering and mark, and empties the file: nothing read before
    /// `floor` is kept again.
    fn start_over(&mut self, floor: u64) {
        self.floor = self.floor.max(floor);
        self.last_mark = self.last_mark.max(floor);
        self.chunks = HashMap::default();
        self.seconds = HashMap::default();
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

/// The slots of `ids` in turn in a map of chunks (`Inner::chunks` or `Inner::seconds`),
/// 0 where none: one hash lookup per run of ids in the same chunk, not one per id (a
/// page's ids mostly share one).
fn slots<'a, T: Copy + Default>(
    map: &'a HashMap<u64, Box<[T]>, foldhash::fast::RandomState>,
    ids: &'a [u64],
) -> impl Iterator<Item = T> + 'a {
    let mut last: Option<(u64, Option<&'a [T]>)> = None;
    ids.iter().map(move |&id| {
        let key = id >> CHUNK_BITS;
        let chunk = match last {
            Some((k, chunk)) if k == key => chunk,
            _ => {
                let chunk = map.get(&key).map(|c| &c[..]);
                last = Some((key, chunk));
                chunk
            }
        };
        chunk.map_or(T::default(), |c| c[(id as usize) & (CHUNK - 1)])
    })
}

/// Renderings by post id, with their validity rules (see the module comment). One lock:
/// a page takes it once for all its posts.
#[derive(Debug, Default)]
pub(crate) struct RenderedPosts {
    inner: RwLock<Inner>,
    /// Leaders whose whole list to copy into its own order (see
    /// [`put_second_whole`](Self::put_second_whole)), for the thread that does it off
    /// the request path (started by the reader at the first page that asks,
    /// `storage::reader`).
    pub(crate) layouts: OnceLock<SyncSender<u64>>,
    /// The leaders queued for that thread or being laid out by it: one is not queued
    /// twice.
    pub(crate) laying_out: Mutex<Vec<u64>>,
}

/// What [`RenderedPosts::append_page`] does for a post it does not hold (or cannot read
/// without waiting): fetch and render it (`Ok(None)`: the post is gone, skip it), or give
/// up.
pub(crate) type Fallback<'a, E> = dyn FnMut(u64) -> Result<Option<Vec<u8>>, E> + 'a;

/// What [`RenderedPosts::append_page`] read from the file for a page.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct PageReads {
    /// Reads (one span of the file each).
    pub reads: usize,
    /// Bytes those reads covered.
    pub bytes: u64,
    /// Bytes of the renderings on the page that were in the file (with their commas).
    pub wanted: u64,
}

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
    /// an async executor. Each rendering is read from its first place or, where it has
    /// one, its second (see [`put_second_whole`](Self::put_second_whole)): whichever layout costs
    /// fewer and smaller reads. Reserves, in one go, room in `out` for every rendering it
    /// holds and [`TAIL_ROOM`] more. Returns what it read from the file.
    pub fn append_page<E>(
        &self,
        ids: &[u64],
        out: &mut Vec<u8>,
        wait: bool,
        fallback: &mut Fallback<'_, E>,
    ) -> Result<PageReads, E> {
        let inner = self.inner.read();
        let Some(file) = inner.file.as_ref() else {
            let mut first = true;
            for &id in ids {
                if let Some(bytes) = fallback(id)? {
                    if !first {
                        out.push(b',');
                    }
                    first = false;
                    out.extend_from_slice(&bytes);
                }
            }
            return Ok(PageReads::default());
        };
        let mut places: Vec<Place> = slots(&inner.chunks, ids)
            .map(|raw| match Slot::of(raw) {
                Slot::Fresh { offset, len } => Some((offset, len)),
                _ => None,
            })
            .collect();
        // The whole page in one allocation: what the renderings held take (with a comma
        // each) and room for the caller's closing bytes, so `out` never grows (and copies
        // itself) while the reads fill it (issue 14, seventh session: a page of 20 is
        // ~21 KB, over the 20.6 KB the feed started with, so every page was copied once
        // by a realloc).
        out.reserve(
            places
                .iter()
                .flatten()
                .map(|(_, l)| *l as usize + 1)
                .sum::<usize>()
                + TAIL_ROOM,
        );
        let mut runs = stretches(&places);
        let mut layout = match (
            places.iter().flatten().next(),
            places.iter().flatten().next_back(),
        ) {
            // Side by side in page order: one span from the first to the last (read in
            // order, so the renderings' file order is not needed).
            (Some((start, _)), Some((offset, len))) if runs == 1 => Layout {
                spans: vec![(*start, offset + len)],
                order: Vec::new(),
            },
            _ => spans_of(&places),
        };
        debug_assert_eq!(layout.spans, spans_of(&places).spans);
        // A page in one stretch of the file (the usual page without a leader filter) is
        // read at the least cost already: every rendering is followed by its comma in
        // the file, so no other layout's span is shorter. Its second places are not
        // looked at.
        if runs > 1 && !inner.seconds.is_empty() {
            let seconds: Vec<Place> = slots(&inner.seconds, ids)
                .zip(&places)
                .map(|(raw, p)| p.map(|(o, l)| (u64::from(raw).checked_sub(1).unwrap_or(o), l)))
                .collect();
            if seconds != places {
                let other = spans_of(&seconds);
                if cost(&other.spans) < cost(&layout.spans) {
                    places = seconds;
                    layout = other;
                    runs = stretches(&places);
                }
            }
        }
        let spans = &layout.spans;
        if runs == spans.len() {
            read_in_order(file, &places, ids, out, wait, fallback)?;
        } else if !read_scattered(file, &places, &layout, out, wait) {
            read_spans(file, &places, spans, ids, out, wait, fallback)?;
        }
        Ok(PageReads {
            reads: spans.len(),
            bytes: spans.iter().map(|(s, e)| e - s).sum(),
            wanted: places.iter().flatten().map(|(_, l)| l + 1).sum(),
        })
    }

    /// The positions in `ids` of posts with a fresh rendering but no second place.
    pub fn unlaid(&self, ids: &[u64]) -> Vec<usize> {
        let inner = self.inner.read();
        (0..ids.len())
            .filter(|&i| {
                matches!(inner.get(ids[i]), Slot::Fresh { .. }) && inner.second(ids[i]).is_none()
            })
            .collect()
    }

    /// Copies the fresh renderings of `ids` (in this order, from the first up to the
    /// first one that already has a second place; posts not rendered are passed over)
    /// side by side to the end of the file, and remembers each copy as the post's second
    /// place, so a page of them is one read. The copy is of bytes already valid, and is
    /// kept only for posts whose rendering is still the one copied (a change or a start
    /// over in between drops it). Returns how many copies it kept.
    #[cfg(test)]
    pub fn put_second(&self, ids: &[u64], disk: &DiskWatch) -> usize {
        self.copy_side_by_side(ids, false, disk).unwrap_or(0)
    }

    /// Like `put_second` (tests only), but copies every fresh rendering of `ids`
    /// (a batch of a leader's whole list), moving the copies it already has, so the batch
    /// is one piece; nothing when it already is (every fresh rendering has a second place
    /// right after the previous one's). A moved copy's old bytes turn dead (start-over
    /// rule). Returns how many copies it kept, `None` when it could not copy (free space
    /// short, a start over, a failed read or write).
    pub fn put_second_whole(&self, ids: &[u64], disk: &DiskWatch) -> Option<usize> {
        self.copy_side_by_side(ids, true, disk)
    }

    fn copy_side_by_side(&self, ids: &[u64], whole: bool, disk: &DiskWatch) -> Option<usize> {
        let (epoch, file, wanted, start) = {
            let inner = self.inner.read();
            let file = inner.file.as_ref()?;
            let mut wanted = Vec::new();
            // Whether the fresh renderings met so far lie side by side in second places,
            // and where the next one would then start.
            let mut in_one_piece = (true, None);
            for &id in ids {
                let second = inner.second(id);
                if second.is_some() && !whole {
                    break;
                }
                if let Slot::Fresh { offset, len } = inner.get(id) {
                    in_one_piece = match (in_one_piece, second) {
                        ((true, None), Some(at)) => (true, Some(at + len + 1)),
                        ((true, Some(next)), Some(at)) if at == next => (true, Some(at + len + 1)),
                        _ => (false, None),
                    };
                    wanted.push((id, offset, len));
                }
            }
            if wanted.is_empty() || (whole && in_one_piece.0) {
                return Some(0);
            }
            let total = wanted.iter().map(|(_, _, len)| len + 1).sum();
            let start = inner.reserve(total, disk)?;
            let Ok(file) = file.try_clone() else {
                return None;
            };
            (inner.epoch, file, wanted, start)
        };
        // Off the lock: the places read are checked again before anything is kept.
        let mut blob = Vec::new();
        for &(_, offset, len) in &wanted {
            let at = blob.len();
            blob.resize(at + len as usize, 0);
            if file.read_exact_at(&mut blob[at..], offset).is_err() {
                return None;
            }
            blob.push(b',');
        }
        {
            // Under the lock, as in `put`: a start over (which needs the write lock) must
            // not let this land on renderings written after it.
            let inner = self.inner.read();
            if inner.epoch != epoch || file.write_all_at(&blob, start).is_err() {
                return None;
            }
        }
        let mut inner = self.inner.write();
        if inner.epoch != epoch {
            return None;
        }
        let mut kept = 0;
        let mut at = start;
        for (id, offset, len) in wanted {
            let had = inner.second(id).is_some();
            if inner.get(id) == (Slot::Fresh { offset, len })
                && (whole || !had)
                && inner.set_second(id, at)
            {
                // A moved copy: its old bytes are dead, the new ones live.
                if !had {
                    inner.live += len + 1;
                }
                kept += 1;
            }
            at += len + 1;
        }
        inner.collect();
        Some(kept)
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
            let Some(start) = inner.reserve(blob.len() as u64, disk) else {
                return;
            };
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
        inner.collect();
    }

    /// Marks posts as changed by the change that becomes visible at `generation` (the
    /// writer calls this after the commit, before bumping the generation to it).
    pub fn changed(&self, post_ids: impl IntoIterator<Item = u64>, generation: u64) {
        let mut inner = self.inner.write();
        inner.last_mark = inner.last_mark.max(generation);
        for id in post_ids {
            if let Slot::Fresh { len, .. } = inner.get(id) {
                inner.live -= len + 1;
                inner.drop_second(id, len);
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

/// Bytes [`RenderedPosts::append_page`] leaves free after a page for what its caller
/// appends (the feed's closing fields take under 160).
pub(crate) const TAIL_ROOM: usize = 256;

/// A post's place in the file (offset, length), if it has a fresh rendering.
type Place = Option<(u64, u64)>;

/// Renderings this close in the file are read in one piece, the bytes between skipped.
const GAP: u64 = 1 << 10;
/// What one read costs beyond its bytes, counted in bytes copied (the syscall, the file
/// and page-cache lookups): a layout of fewer reads wins even if it copies a little more.
const READ_COST: u64 = 2 << 10;

/// How a page's renderings lie in the file: the spans to read and the renderings in
/// file order.
#[derive(Debug, PartialEq)]
struct Layout {
    /// The spans (start, end) of the file covering the renderings, in file order,
    /// renderings closer than [`GAP`] in one span.
    spans: Vec<(u64, u64)>,
    /// Every rendering (offset, length, its position on the page), in file order: what
    /// `read_scattered` walks, so it does not sort them again.
    // Only `read_scattered` reads it, and it reads only on Linux (`preadv2`).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    order: Vec<(u64, u64, usize)>,
}

/// The [`Layout`] of `places`.
fn spans_of(places: &[Place]) -> Layout {
    let mut order: Vec<(u64, u64, usize)> = Vec::with_capacity(places.len());
    order.extend(
        places
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.map(|(offset, len)| (offset, len, i))),
    );
    // Mostly in file order already (a page's renderings side by side, a leader's in its
    // second places): one pass says so.
    // By offset alone (two renderings never share one): a cheaper compare than the
    // whole triple's.
    if !order.is_sorted_by_key(|&(offset, _, _)| offset) {
        order.sort_unstable_by_key(|&(offset, _, _)| offset);
    }
    let mut spans: Vec<(u64, u64)> = Vec::with_capacity(order.len());
    for &(offset, len, _) in &order {
        match spans.last_mut() {
            Some((_, end)) if offset <= *end + GAP => *end = (*end).max(offset + len),
            _ => spans.push((offset, offset + len)),
        }
    }
    Layout { spans, order }
}

fn cost(spans: &[(u64, u64)]) -> u64 {
    spans.iter().map(|(s, e)| READ_COST + e - s).sum()
}

/// How many stretches of renderings side by side (commas between) `places` make in
/// page order.
fn stretches(places: &[Place]) -> usize {
    let mut count = 0;
    let mut end = None;
    for p in places {
        match (p, end) {
            (Some((o, l)), Some(e)) if *o == e + 1 => end = Some(o + l),
            (Some((o, l)), _) => {
                count += 1;
                end = Some(o + l);
            }
            (None, _) => end = None,
        }
    }
    count
}

/// Reads a page whose renderings lie in page order, stretch after stretch, straight
/// into `out` (the usual case of a page without a leader filter).
fn read_in_order<E>(
    file: &File,
    places: &[Place],
    ids: &[u64],
    out: &mut Vec<u8>,
    wait: bool,
    fallback: &mut Fallback<'_, E>,
) -> Result<(), E> {
    let mut stretches: Vec<Stretch> = Vec::with_capacity(ids.len());
    for p in places {
        match (p, stretches.last_mut()) {
            (Some((offset, len)), Some(Stretch::File { end, ids, .. })) if *offset == *end + 1 => {
                *end = offset + len;
                *ids += 1;
            }
            (Some((offset, len)), _) => stretches.push(Stretch::File {
                start: *offset,
                end: offset + len,
                ids: 1,
            }),
            (None, _) => stretches.push(Stretch::Fetch),
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
                next += n;
                if read_onto(file, out, (end - start) as usize, start, wait).is_ok() {
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

/// Reads each span once (in file order) and then writes the renderings out in page
/// order: a page whose posts lie in several places out of page order (several
/// leaders' second places, or a subset of one leader's with small gaps).
fn read_spans<E>(
    file: &File,
    places: &[Place],
    spans: &[(u64, u64)],
    ids: &[u64],
    out: &mut Vec<u8>,
    wait: bool,
    fallback: &mut Fallback<'_, E>,
) -> Result<(), E> {
    let mut buf = Vec::with_capacity(spans.iter().map(|(s, e)| (e - s) as usize).sum());
    let mut bases = Vec::with_capacity(spans.len());
    for &(start, end) in spans {
        let at = buf.len();
        let read = read_onto(file, &mut buf, (end - start) as usize, start, wait);
        bases.push(read.ok().map(|()| at));
    }
    let mut first = true;
    for (place, &id) in places.iter().zip(ids) {
        let held = place.and_then(|(offset, len)| {
            let k = spans.partition_point(|&(s, _)| s <= offset) - 1;
            let base = bases[k]? + (offset - spans[k].0) as usize;
            Some(&buf[base..base + len as usize])
        });
        let fetched;
        let bytes = match held {
            Some(bytes) => bytes,
            None => match fallback(id)? {
                Some(bytes) => {
                    fetched = bytes;
                    &fetched[..]
                }
                None => continue,
            },
        };
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(bytes);
    }
    Ok(())
}

#[cfg(target_os = "linux")]
#[repr(C)]
struct IoVec {
    base: *mut std::os::raw::c_void,
    len: usize,
}

#[cfg(target_os = "linux")]
extern "C" {
    fn preadv2(
        fd: std::os::raw::c_int,
        iov: *const IoVec,
        iovcnt: std::os::raw::c_int,
        offset: i64,
        flags: std::os::raw::c_int,
    ) -> isize;
}

/// `preadv2` without waiting for the disk (`RWF_NOWAIT`: only what the page cache holds).
#[cfg(target_os = "linux")]
const RWF_NOWAIT: std::os::raw::c_int = 0x8;

/// Appends `len` bytes of the file at `offset` to `out`, read straight into its spare
/// capacity (nothing is written there first): `out` grows only once every byte has been
/// read, so a failed or short read leaves it as it was. Without `wait`, fails with
/// `WouldBlock` rather than wait for the disk (`preadv2` with `RWF_NOWAIT`: only what the
/// page cache holds).
#[cfg(target_os = "linux")]
fn read_onto(
    file: &File,
    out: &mut Vec<u8>,
    len: usize,
    offset: u64,
    wait: bool,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    out.reserve(len);
    let flags = if wait { 0 } else { RWF_NOWAIT };
    let mut done = 0;
    while done < len {
        let spare = &mut out.spare_capacity_mut()[done..len];
        let iov = IoVec {
            base: spare.as_mut_ptr().cast(),
            len: spare.len(),
        };
        let at = offset
            .checked_add(done as u64)
            .and_then(|at| i64::try_from(at).ok())
            .ok_or(io::ErrorKind::InvalidInput)?;
        // SAFETY: one iovec naming `spare`, spare capacity of `out` (reserved above, and
        // `out` is not touched during the call), valid for writes of its length; the
        // kernel only writes there. The fd is open (borrowed from `file`).
        let n = unsafe { preadv2(file.as_raw_fd(), &iov, 1, at, flags) };
        match n {
            n if n < 0 => {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            // Never more than asked for (`spare.len()`).
            n => done += (n as usize).min(len - done),
        }
    }
    // SAFETY: `len` <= the spare capacity (reserved above), and the reads initialised
    // all of `out[out.len()..out.len() + len]`: each read wrote its `n` bytes at `done`,
    // which only grew by them, until `done` reached `len`.
    unsafe { out.set_len(out.len() + len) };
    Ok(())
}

/// Reads a page whose renderings all have places, none overlapping, span by span
/// straight into their places in `out` (page order, commas between): one `preadv2` per
/// span with an iovec per rendering, so the bytes are copied once, into `out`'s spare
/// capacity (nothing is written there first but the commas between renderings). A
/// rendering followed in the span by the next one takes its comma from the file with it
/// (every rendering in the file is followed by a comma), into the comma after it on the
/// page (unless it is the page's last), and renderings side by side both in the file and
/// on the page share one iovec; other gaps between renderings go to a scratch buffer.
/// The commas read are checked once the reads are done. `out` grows only once every
/// span came back whole. False (and `out` as it was) when a read fails or comes back
/// short, a comma read is not one, or the page does not qualify: `read_spans` does it
/// then.
#[cfg(target_os = "linux")]
fn read_scattered(
    file: &File,
    places: &[Place],
    layout: &Layout,
    out: &mut Vec<u8>,
    wait: bool,
) -> bool {
    use std::mem::MaybeUninit;
    use std::os::fd::AsRawFd;
    let order = &layout.order;
    // `order` holds the renderings of `places` only: a post without one is not for here.
    if order.len() != places.len() {
        return false;
    }
    // Where each rendering goes, counted from `out.len()`.
    let mut pos = Vec::with_capacity(places.len());
    let mut total = 0;
    for (i, place) in places.iter().enumerate() {
        let Some((_, len)) = place else {
            return false;
        };
        if i > 0 {
            total += 1;
        }
        pos.push(total);
        total += *len as usize;
    }
    let base = out.len();
    out.reserve(total);
    let spare = &mut out.spare_capacity_mut()[..total];
    // The commas between renderings; the reads fill the rest (and overwrite the commas
    // they read from the file).
    for &p in pos.iter().skip(1) {
        spare[p - 1].write(b',');
    }
    let spare_ptr = spare.as_mut_ptr();
    // Never read: the gaps between renderings in a span are read into it and dropped.
    const SINK: usize = GAP as usize + 1;
    let mut sink = [MaybeUninit::<u8>::uninit(); SINK];
    let sink_ptr = sink.as_mut_ptr();
    let last = places.len().saturating_sub(1);
    let mut k = 0;
    let mut iov: Vec<IoVec> = Vec::with_capacity(2 * places.len());
    for &(start, end) in &layout.spans {
        iov.clear();
        let mut cursor = start;
        // Where in `out` (from `base`) the last iovec ends; `None`: it is the sink's.
        let mut iov_end = None;
        while k < order.len() && order[k].0 < end {
            let (offset, len, i) = order[k];
            let gap = offset.wrapping_sub(cursor);
            if offset < cursor || gap > SINK as u64 || i >= pos.len() {
                return false;
            }
            if gap > 0 {
                iov.push(IoVec {
                    base: sink_ptr.cast(),
                    len: gap as usize,
                });
                iov_end = None;
            }
            // The next rendering of the span right after this one's comma: the comma
            // is read with this one, in place of a one-byte sink (not after the page's
            // last rendering, which has no comma after it on the page).
            let comma = i != last
                && order
                    .get(k + 1)
                    .is_some_and(|&(next, _, _)| next == offset + len + 1 && next < end);
            let n = len as usize + usize::from(comma);
            match (iov_end, iov.last_mut()) {
                // Right after the previous rendering both in the file (no sink between)
                // and on the page: the same iovec.
                (Some(at), Some(prev)) if at == pos[i] => prev.len += n,
                _ => iov.push(IoVec {
                    // pos[i] + n <= total (with the comma, n ends at pos[i + 1] - 1 + 1):
                    // inside `spare`.
                    base: spare_ptr.wrapping_add(pos[i]).cast(),
                    len: n,
                }),
            }
            iov_end = Some(pos[i] + n);
            cursor = offset + n as u64;
            k += 1;
        }
        let Ok(at) = i64::try_from(start) else {
            return false;
        };
        if cursor != end || iov.len() > 1024 {
            return false;
        }
        let flags = if wait { 0 } else { RWF_NOWAIT };
        let read = loop {
            // SAFETY: every iovec names memory valid for writes of its length for the
            // whole call: disjoint ranges of `out`'s spare capacity (reserved above; `out`
            // is not touched until the reads are done) or the scratch `sink` (several may
            // name it: its bytes are never read); the kernel only writes there. The fd is
            // open (borrowed from `file`).
            let n = unsafe { preadv2(file.as_raw_fd(), iov.as_ptr(), iov.len() as i32, at, flags) };
            if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            break n;
        };
        if read != (end - start) as isize {
            return false;
        }
    }
    if k != order.len() {
        // A rendering outside every span (never, as `spans` are made of `places`).
        return false;
    }
    // SAFETY: `total` <= the spare capacity (reserved above), and every byte of
    // `out[base..base + total]` was written: the commas above (some of them again by a
    // read), and each rendering (pos[i]..pos[i] + len, which with the commas tile
    // 0..total) by a span's read that came back whole (its iovecs cover exactly the
    // span, `cursor == end`), every rendering in some span (`k` reached the end of
    // `order`, which holds one entry per rendering on the page).
    unsafe { out.set_len(base + total) };
    // Every comma between renderings, the ones read from the file among them (a pass
    // over a page's 19 commas costs less than keeping a list of the ones read).
    if pos.iter().skip(1).any(|&p| out[base + p - 1] != b',') {
        // Not a comma after a rendering in the file (never, see `put`): not this way.
        out.truncate(base);
        return false;
    }
    true
}

#[cfg(not(target_os = "linux"))]
fn read_scattered(_: &File, _: &[Place], _: &Layout, _: &mut Vec<u8>, _: bool) -> bool {
    false
}

/// [`read_onto`] where `preadv2` is not at hand: every read waits (so without `wait`
/// nothing is read), into zeroed bytes.
#[cfg(not(target_os = "linux"))]
fn read_onto(
    file: &File,
    out: &mut Vec<u8>,
    len: usize,
    offset: u64,
    wait: bool,
) -> io::Result<()> {
    if !wait {
        return Err(io::ErrorKind::WouldBlock.into());
    }
    let at = out.len();
    out.resize(at + len, 0);
    let read = file.read_exact_at(&mut out[at..], offset);
    if read.is_err() {
        out.truncate(at);
    }
    read
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
                .map(|_| out)
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

    /// A file holding `bytes`, in a temporary directory (kept alive by the guard).
    fn file_of(bytes: &[u8]) -> (File, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, bytes).unwrap();
        (File::open(&path).unwrap(), dir)
    }

    #[test]
    fn a_read_that_comes_back_short_leaves_the_buffer_as_it_was() {
        let (file, _dir) = file_of(b"0123456789");
        for wait in [true, false] {
            let mut out = b"[".to_vec();
            read_onto(&file, &mut out, 4, 3, wait).unwrap();
            assert_eq!(out, b"[3456");
            // Past the end: the first read is short (6 of 8), the next one finds the end.
            let err = read_onto(&file, &mut out, 8, 4, wait).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
            assert_eq!(out, b"[3456");
            // Wholly past the end.
            assert!(read_onto(&file, &mut out, 1, 10, wait).is_err());
            assert!(read_onto(&file, &mut out, 1, u64::MAX, wait).is_err());
            assert_eq!(out, b"[3456");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_scattered_page_with_a_read_failing_midway_leaves_the_buffer_as_it_was() {
        let (file, _dir) = file_of(b"AAA,BBBB,CC,DDDDD");
        for wait in [true, false] {
            // Page order C, A, D, a span each (B is not on the page).
            let places = [Some((9, 2)), Some((0, 3)), Some((12, 5))];
            let layout = Layout {
                spans: vec![(0, 3), (9, 11), (12, 17)],
                order: vec![(0, 3, 1), (9, 2, 0), (12, 5, 2)],
            };
            let mut out = b"[".to_vec();
            assert!(read_scattered(&file, &places, &layout, &mut out, wait));
            assert_eq!(out, b"[CC,AAA,DDDDD");
            // One span over all: B and the commas read into the sink.
            assert!(read_scattered(
                &file,
                &places,
                &spans_of(&places),
                &mut out,
                wait
            ));
            assert_eq!(out, b"[CC,AAA,DDDDDCC,AAA,DDDDD");
            // The last span reaches past the end of the file: the first two reads are
            // whole, the last short.
            let places = [Some((9, 2)), Some((0, 3)), Some((12, 7))];
            let spans = [(0, 3), (9, 11), (12, 19)];
            let layout = Layout {
                spans: spans.to_vec(),
                order: vec![(0, 3, 1), (9, 2, 0), (12, 7, 2)],
            };
            out.truncate(1);
            assert!(!read_scattered(&file, &places, &layout, &mut out, wait));
            assert_eq!(out, b"[");
            // Through the page: the reads of every span again, into the buffer from where
            // they started (`read_spans`), the span that failed from the fallback.
            let mut fetched = Vec::new();
            let mut fetch = |id: u64| {
                fetched.push(id);
                Ok::<_, ()>(Some(format!("<{id}>").into_bytes()))
            };
            read_spans(
                &file,
                &places,
                &spans,
                &[1, 2, 3],
                &mut out,
                wait,
                &mut fetch,
            )
            .unwrap();
            assert_eq!(out, b"[CC,AAA,<3>");
            assert_eq!(fetched, [3]);
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_scattered_page_takes_the_commas_from_the_file_and_checks_them() {
        let (file, _dir) = file_of(b"AAA,BBB,CCC,DDD,");
        for wait in [true, false] {
            // Page order C, A, B, D: A's comma and B are read in one piece with A, B's
            // comma with B, C's with C (D is the page's last: none), in one span.
            let places = [Some((8, 3)), Some((0, 3)), Some((4, 3)), Some((12, 3))];
            let layout = spans_of(&places);
            assert_eq!(layout.spans, [(0, 15)]);
            assert_eq!(layout.order, [(0, 3, 1), (4, 3, 2), (8, 3, 0), (12, 3, 3)]);
            let mut out = b"[".to_vec();
            assert!(read_scattered(&file, &places, &layout, &mut out, wait));
            assert_eq!(out, b"[CCC,AAA,BBB,DDD");
        }
        // A rendering followed by something else than a comma (never in the file the
        // cache writes): refused, and the buffer as it was.
        let (file, _dir) = file_of(b"AAA;BBB,CCC,");
        for wait in [true, false] {
            let places = [Some((4, 3)), Some((0, 3)), Some((8, 3))];
            let mut out = b"[".to_vec();
            assert!(!read_scattered(
                &file,
                &places,
                &spans_of(&places),
                &mut out,
                wait
            ));
            assert_eq!(out, b"[");
            // Through the page's fallback: the renderings alone, from their places.
            let layout = spans_of(&places);
            let mut fetch = |id: u64| Err::<Option<Vec<u8>>, u64>(id);
            read_spans(
                &file,
                &places,
                &layout.spans,
                &[1, 2, 3],
                &mut out,
                wait,
                &mut fetch,
            )
            .unwrap();
            assert_eq!(out, b"[BBB,AAA,CCC");
        }
    }

    proptest::proptest! {
        /// However a page's renderings lie in the file (side by side or not, in page
        /// order or not, with any byte after them), a scattered read gives the page's
        /// renderings comma-separated, or refuses and leaves the buffer as it was.
        #[cfg(target_os = "linux")]
        #[test]
        fn a_scattered_read_gives_the_page_or_nothing(
            pieces in proptest::collection::vec((1usize..6, 0usize..3, proptest::bool::weighted(0.9)), 1..16),
            page in proptest::collection::vec(0usize..16, 1..16),
            wait in proptest::bool::ANY,
        ) {
            // Each piece: a rendering of its length, its separator (a comma, or not),
            // and a gap after it.
            let mut bytes = Vec::new();
            let mut at = Vec::new();
            for (n, (len, gap, comma)) in pieces.iter().enumerate() {
                at.push((bytes.len() as u64, *len as u64));
                bytes.extend(std::iter::repeat_n(b'a' + n as u8, *len));
                bytes.push(if *comma { b',' } else { b';' });
                bytes.extend(std::iter::repeat_n(b'-', *gap));
            }
            let (file, _dir) = file_of(&bytes);
            // A page: distinct pieces in any order.
            let mut seen = vec![false; pieces.len()];
            let places: Vec<Place> = page
                .iter()
                .map(|&k| k % pieces.len())
                .filter(|&k| !std::mem::replace(&mut seen[k], true))
                .map(|k| Some(at[k]))
                .collect();
            let want = places
                .iter()
                .map(|p| {
                    let (o, l) = p.unwrap();
                    &bytes[o as usize..(o + l) as usize]
                })
                .collect::<Vec<_>>()
                .join(&b","[..]);
            let mut out = b"[".to_vec();
            if read_scattered(&file, &places, &spans_of(&places), &mut out, wait) {
                proptest::prop_assert_eq!(&out[1..], &want[..]);
            } else {
                proptest::prop_assert_eq!(&out[..], b"[");
                // Only ever for a separator that is not a comma.
                proptest::prop_assert!(pieces.iter().any(|p| !p.2));
            }
        }
    }

    #[test]
    fn a_page_whose_file_was_cut_short_asks_for_what_it_could_not_read() {
        let (cache, disk, _dir) = cache();
        let page: Vec<(u64, Vec<u8>)> = (1..=4)
            .map(|i| (i, format!("{{{i}}}").into_bytes()))
            .collect();
        cache.put(0, &page[..2], &disk);
        // Further apart than a gap read through: two spans.
        cache.put(0, &one(9, &[b'x'; 2 * GAP as usize]), &disk);
        cache.put(0, &page[2..], &disk);
        // The second span (3 and 4) loses its last bytes.
        let len = cache.file_len();
        cache
            .inner
            .read()
            .file
            .as_ref()
            .unwrap()
            .set_len(len - 2)
            .unwrap();
        for wait in [true, false] {
            // In page order: the first stretch read, the second (short) fetched instead.
            let (_, shown) = page_of(&cache, &[1, 2, 3, 4], wait);
            assert_eq!(shown, "{1},{2},<3>,<4>");
            // Out of order: a scattered read (short), then span by span.
            let (_, shown) = page_of(&cache, &[4, 1, 3, 2], wait);
            assert_eq!(shown, "<4>,{1},<3>,{2}");
            // Without a fallback the page fails (the caller drops what it appended).
            let mut out = Vec::new();
            let mut miss = |_| Err(());
            assert!(cache
                .append_page(&[1, 2, 3, 4], &mut out, wait, &mut miss)
                .is_err());
            assert_eq!(out, b"{1},{2}");
        }
    }

    /// The reads a page of `ids` takes and its bytes (misses shown as `<id>`).
    fn page_of(cache: &RenderedPosts, ids: &[u64], wait: bool) -> (PageReads, String) {
        let mut out = Vec::new();
        let mut miss = |id: u64| Ok::<_, ()>(Some(format!("<{id}>").into_bytes()));
        let reads = cache.append_page(ids, &mut out, wait, &mut miss).unwrap();
        (reads, String::from_utf8(out).unwrap())
    }

    #[test]
    fn a_leaders_posts_copied_side_by_side_are_one_read() {
        let (cache, disk, _dir) = cache();
        // Newest first over the whole store: 40 posts of 4 leaders in turn, ~1.5 KB each
        // (so one leader's are further apart than a gap read through).
        let all: Vec<(u64, Vec<u8>)> = (0..40)
            .map(|i| {
                (
                    i,
                    format!("{{{i}:{}}}", "x".repeat(1500 + i as usize % 7)).into_bytes(),
                )
            })
            .collect();
        cache.put(0, &all, &disk);
        let text = |ids: &[u64]| {
            ids.iter()
                .map(|&i| String::from_utf8(all[i as usize].1.clone()).unwrap())
                .collect::<Vec<_>>()
                .join(",")
        };
        let leader = |l: u64| (0..40).filter(move |i| i % 4 == l).collect::<Vec<u64>>();
        let a = leader(0);
        let (reads, shown) = page_of(&cache, &a[2..8], false);
        assert_eq!((reads.reads, shown.as_str()), (6, text(&a[2..8]).as_str()));
        // Copied from its third post on: that page, and any later one, is one read.
        assert_eq!(cache.put_second(&a[2..], &disk), 8);
        assert_eq!(cache.put_second(&a[2..], &disk), 0, "already copied");
        for wait in [false, true] {
            let (reads, shown) = page_of(&cache, &a[2..8], wait);
            assert_eq!((reads.reads, shown.as_str()), (1, text(&a[2..8]).as_str()));
        }
        // Half before the copy: the first places (one read each) or the copy, fewer reads.
        let (reads, shown) = page_of(&cache, &a[0..5], false);
        assert_eq!((reads.reads, shown.as_str()), (3, text(&a[0..5]).as_str()));
        // Unfiltered pages keep reading the first places: one read.
        let (reads, shown) = page_of(&cache, &(10..30).collect::<Vec<_>>(), false);
        assert_eq!(reads.reads, 1);
        assert_eq!(shown, text(&(10..30).collect::<Vec<_>>()));
        // Two leaders interleaved: one span per leader, page order kept.
        let b = leader(1);
        cache.put_second(&b, &disk);
        let mixed: Vec<u64> = (8..32).filter(|i| i % 4 < 2).collect();
        let (reads, shown) = page_of(&cache, &mixed, false);
        assert_eq!((reads.reads, shown.as_str()), (2, text(&mixed).as_str()));
        // A missing post in between is fetched in its place.
        let with_miss = [a[3], 99, a[4], b[2]];
        let (_, shown) = page_of(&cache, &with_miss, true);
        assert_eq!(
            shown,
            format!(
                "{},<99>,{},{}",
                text(&a[3..4]),
                text(&a[4..5]),
                text(&b[2..3])
            )
        );
        // A change drops both places; the post is rendered again and copied again.
        let live = cache.held();
        cache.changed([a[4]], 1);
        assert_eq!(
            cache.held(),
            live - 2 * (all[a[4] as usize].1.len() as u64 + 1)
        );
        let (_, shown) = page_of(&cache, &a[3..6], false);
        assert_eq!(
            shown,
            format!("{},<{}>,{}", text(&a[3..4]), a[4], text(&a[5..6]))
        );
        cache.put(1, &one(a[4], b"{new}"), &disk);
        assert_eq!(cache.unlaid(&a[3..6]), vec![1]);
        assert_eq!(
            cache.put_second(&a[4..], &disk),
            1,
            "up to the next copied post"
        );
        let (_, shown) = page_of(&cache, &a[3..6], false);
        assert_eq!(
            shown,
            format!("{},{{new}},{}", text(&a[3..4]), text(&a[5..6]))
        );
        // Forgetting everything forgets the copies too.
        cache.forget_all(2);
        assert_eq!(cache.inner.read().seconds.len(), 0);
        assert_eq!(cache.put_second(&a, &disk), 0);
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Render these posts (read at the current generation) and keep them.
        Put(Vec<u64>),
        /// Keep a rendering read before the post's last change (must be refused).
        StalePut(u64),
        Changed(Vec<u64>),
        /// Copy these posts side by side, in this order.
        Second(Vec<u64>),
        Page(Vec<u64>, bool),
        ForgetAll,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        let ids = || proptest::collection::vec(0u64..48, 1..24);
        prop_oneof![
            3 => ids().prop_map(Op::Put),
            1 => (0u64..48).prop_map(Op::StalePut),
            2 => proptest::collection::vec(0u64..48, 1..4).prop_map(Op::Changed),
            3 => ids().prop_map(Op::Second),
            4 => (ids(), any::<bool>()).prop_map(|(ids, wait)| Op::Page(ids, wait)),
            1 => Just(Op::ForgetAll),
        ]
    }

    proptest::proptest! {
        /// Whatever was kept, copied, changed or forgotten, a page shows each post's
        /// rendering of its current version or asks for it: never an older one.
        #[test]
        fn pages_show_only_current_renderings(ops in proptest::collection::vec(op(), 1..60)) {
            let (cache, disk, _dir) = cache();
            let mut version = [0u64; 48];
            let mut changed_at = [0u64; 48];
            let mut generation = 1u64;
            let bytes = |id: u64, v: u64| {
                format!("{{{id}v{v}{}}}", "y".repeat(((id * 7 + v * 13) % 300 * 17) as usize)).into_bytes()
            };
            for op in ops {
                match op {
                    Op::Put(ids) => {
                        let r: Vec<_> = ids.iter().map(|&id| (id, bytes(id, version[id as usize]))).collect();
                        cache.put(generation, &r, &disk);
                    }
                    Op::StalePut(id) => {
                        let at = changed_at[id as usize];
                        if at > 0 {
                            cache.put(at - 1, &[(id, bytes(id, version[id as usize] - 1))], &disk);
                        }
                    }
                    Op::Changed(ids) => {
                        generation += 1;
                        for &id in &ids {
                            version[id as usize] += 1;
                            changed_at[id as usize] = generation;
                        }
                        cache.changed(ids, generation);
                    }
                    Op::Second(ids) => {
                        cache.put_second(&ids, &disk);
                        if ids.len() % 2 == 0 {
                            // Moves the copies just made (and older ones) into one piece.
                            cache.put_second_whole(&ids, &disk);
                        }
                    }
                    Op::Page(ids, wait) => {
                        let (_, shown) = page_of(&cache, &ids, wait);
                        let parts: Vec<&str> = shown.split(',').collect();
                        proptest::prop_assert_eq!(parts.len(), ids.len());
                        for (part, &id) in parts.iter().zip(&ids) {
                            let current = String::from_utf8(bytes(id, version[id as usize])).unwrap();
                            let miss = format!("<{id}>");
                            proptest::prop_assert!(*part == current || *part == miss,
                                "post {} shown as {:?}", id, part);
                            proptest::prop_assert_eq!(cache.missing(&[id]).is_empty(), *part == current);
                        }
                    }
                    Op::ForgetAll => {
                        generation += 1;
                        cache.forget_all(generation);
                    }
                }
                let inner = cache.inner.read();
                // Every second place belongs to a fresh rendering, and `live` counts both.
                let mut live = 0;
                for (&chunk, slots) in &inner.chunks {
                    for (i, &raw) in slots.iter().enumerate() {
                        if let Slot::Fresh { len, .. } = Slot::of(raw) {
                            live += len + 1;
                            if inner.second(chunk << CHUNK_BITS | i as u64).is_some() {
                                live += len + 1;
                            }
                        }
                    }
                }
                for (&chunk, slots) in &inner.seconds {
                    for (i, &raw) in slots.iter().enumerate() {
                        let id = chunk << CHUNK_BITS | i as u64;
                        let fresh = matches!(inner.get(id), Slot::Fresh { .. });
                        proptest::prop_assert!(raw == 0 || fresh, "a copy of {} without a rendering", id);
                    }
                }
                proptest::prop_assert_eq!(live, inner.live);
            }
        }
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

    #[test]
    fn a_leaders_scattered_page_has_its_posts_copied_in_its_order() {
        use crate::storage::posts::tests::{draft, x_post};
        use crate::storage::query::{PageStart, PostQuery};
        use crate::storage::Store;

        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("db"), 8).unwrap();
        let leaders: Vec<u64> = (0..4)
            .map(|i| store.create_leader(draft(&format!("L{i}")), 0).unwrap().id)
            .collect();
        let posts = (0..200)
            .map(|i| x_post(leaders[i % 4], &format!("{}", 1000 + i), i as i64, &[]))
            .collect();
        store.insert_posts(posts).unwrap();
        let reader = store.reader();
        let render = |p: &crate::domain::post::Post, _: Option<&crate::domain::leader::Leader>| {
            Some(format!("<{}>", p.id).into_bytes())
        };
        reader.check_integrity(Some(&render)).unwrap();
        let expected = |q: &PostQuery| {
            let ids: Vec<String> = reader
                .page(q)
                .unwrap()
                .posts
                .iter()
                .map(|p| format!("<{}>", p.id))
                .collect();
            ids.join(",")
        };
        let reads = |q: &PostQuery| {
            let ids: Vec<u64> = reader.page(q).unwrap().posts.iter().map(|p| p.id).collect();
            let mut out = Vec::new();
            let mut miss = |_| Err(());
            let reads = reader
                .shared
                .rendered
                .append_page(&ids, &mut out, false, &mut miss)
                .unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), expected(q));
            (reads, ids)
        };
        let q = PostQuery::newest(10)
            .leaders([leaders[1]])
            .starting(PageStart::Offset(10));
        // One span covering four leaders' posts: four times the bytes the page needs.
        let (before, ids) = reads(&q);
        assert!(before.bytes > 2 * before.wanted, "{before:?}");
        // Served from memory, the page asks the layout thread to copy the leader's posts.
        let mut out = Vec::new();
        assert!(reader.rendered_page_without_waiting(&q, &mut out).is_some());
        assert_eq!(String::from_utf8(out).unwrap(), expected(&q));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !reader.shared.rendered.unlaid(&ids).is_empty() {
            assert!(std::time::Instant::now() < deadline, "never copied");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let (after, _) = reads(&q);
        assert_eq!((after.reads, after.bytes + 1), (1, after.wanted));
        // Later pages of the leader too, and two leaders: one span each.
        let later = q.clone().starting(PageStart::Offset(25));
        assert_eq!(reads(&later).0.reads, 1);
        let two = PostQuery::newest(12)
            .leaders([leaders[1], leaders[2]])
            .starting(PageStart::Offset(50));
        let shown = reader.page(&two).unwrap().posts;
        let of_2 = shown.iter().find(|p| p.leader_id == leaders[2]).unwrap();
        let entry = reader.shared.index.read().get(of_2.timestamp_ms, of_2.id);
        let _ = entry.unwrap();
        assert!(reader.lay_out(leaders[2]) > 0);
        let (two_reads, _) = reads(&two);
        assert!(two_reads.reads <= 2, "{two_reads:?}");
        // Laid out whole: any window of a leader's list is one read, and a page of three
        // leaders one read per leader at most; laying out again copies nothing.
        assert!(reader.lay_out(leaders[0]) > 0);
        assert_eq!(reader.lay_out(leaders[1]), 0, "already in one piece");
        for leader in [leaders[0], leaders[1], leaders[2]] {
            for offset in 0..45 {
                let window = PostQuery::newest(1 + offset % 9)
                    .leaders([leader])
                    .starting(PageStart::Offset(offset));
                let (r, _) = reads(&window);
                assert_eq!((r.reads, r.bytes + 1), (1, r.wanted), "{offset}");
            }
        }
        for offset in [0, 7, 40, 100] {
            let three = PostQuery::newest(20)
                .leaders([leaders[0], leaders[1], leaders[2]])
                .starting(PageStart::Offset(offset));
            let (r, _) = reads(&three);
            assert!(r.reads <= 3, "{offset}: {r:?}");
        }
        // An edit drops the copy of that post only; the page still shows the new bytes.
        let edited = reader.page(&later).unwrap().posts[3].id;
        store
            .update_post(
                edited,
                crate::storage::PostPatch {
                    content: Some("edited".into()),
                    ..crate::storage::PostPatch::default()
                },
            )
            .unwrap();
        assert!(reader
            .rendered_page_without_waiting(&later, &mut Vec::new())
            .is_none());
    }
}
