//! Rendered posts: the bytes a reader made from a post and its leader (the feed's post
//! JSON), kept in memory so a page can be assembled from them without a sled read, a
//! decode or a render. Storage does not know what the bytes are; it guarantees they are
//! never older than the post and its leader:
//!
//! - [`Store::apply`](crate::storage::Store::apply) marks every post whose record it
//!   writes as *changed at* the generation the change becomes visible at, before it
//!   bumps the generation, and forgets everything when a leader changes;
//! - a reader reads the generation *before* it reads a post, and its rendering is kept
//!   only if the post has not changed since (checked and stored under the map's lock).
//!
//! So a rendering made from a record that a later commit replaced is refused or
//! overwritten, whichever comes second. Bounded by a byte budget: past it, renderings
//! are dropped (marks survive the drop, or are superseded by a raised floor).

use std::collections::HashMap;

use parking_lot::RwLock;

/// Bytes of renderings kept at most, unless [`RenderedPosts::set_budget`] says otherwise
/// (the store sets it to `SLED_CACHE_MB`, the one memory knob).
pub const BUDGET_BYTES: usize = 64 * 1024 * 1024;
/// What one entry costs beyond its bytes (map slot, allocation header).
const ENTRY_OVERHEAD: usize = 48;
/// Change marks kept before they are folded into the floor.
const MAX_MARKS: usize = 65_536;
/// Renderings are shed by blocks of 2^8 consecutive post ids. Ids are given out in the
/// order posts arrive, so a block is posts stored close together in time: the posts a
/// page of any shape shows together. Shedding single posts at random would leave almost
/// every page with one missing post (and the whole slow path) once the store outgrows
/// the budget; shedding blocks leaves most pages whole.
const SHED_BLOCK_BITS: u32 = 8;

#[derive(Debug)]
enum Slot {
    Fresh(Box<[u8]>),
    /// The post's record was written by the change that became visible at this
    /// generation: a rendering read before it is stale.
    Changed(u64),
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<u64, Slot, foldhash::fast::RandomState>,
    /// Bytes of fresh renderings held, with overhead.
    bytes: usize,
    marks: usize,
    /// No rendering read before this generation is kept.
    floor: u64,
    /// Bytes kept at most; 0: [`BUDGET_BYTES`].
    budget: usize,
    /// Sheds so far: each drops the next quarter of the blocks.
    sheds: u64,
}

/// Renderings by post id, with their validity rules (see the module comment). One lock:
/// a page takes it once to copy all its posts (a lock per post, or a shared count per
/// rendering, costs more in atomics between cores than the copy itself).
#[derive(Debug, Default)]
pub(crate) struct RenderedPosts {
    inner: RwLock<Inner>,
}

/// What [`RenderedPosts::append_page`] does for a post it does not hold: fetch and
/// render it (`Ok(None)`: the post is gone, skip it), or give up.
pub(crate) type Fallback<'a, E> = dyn FnMut(u64) -> Result<Option<Vec<u8>>, E> + 'a;

impl RenderedPosts {
    /// Keeps at most `bytes` of renderings from now on.
    pub fn set_budget(&self, bytes: usize) {
        let mut inner = self.inner.write();
        inner.budget = bytes.max(1);
        shed_to_budget(&mut inner);
    }

    /// The ids among `ids` without a fresh rendering.
    pub fn missing(&self, ids: &[u64]) -> Vec<u64> {
        let inner = self.inner.read();
        ids.iter()
            .copied()
            .filter(|id| !matches!(inner.map.get(id), Some(Slot::Fresh(_))))
            .collect()
    }

    /// Appends the renderings of `ids`, comma-separated, to `out`, asking `fallback` for
    /// any it does not hold.
    pub fn append_page<E>(
        &self,
        ids: &[u64],
        out: &mut Vec<u8>,
        fallback: &mut Fallback<'_, E>,
    ) -> Result<(), E> {
        let inner = self.inner.read();
        let mut first = true;
        for id in ids {
            let fetched;
            let bytes: &[u8] = match inner.map.get(id) {
                Some(Slot::Fresh(b)) => b,
                _ => match fallback(*id)? {
                    Some(b) => {
                        fetched = b;
                        &fetched
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

    /// Keeps renderings made from records read at generation `read_at` (or later),
    /// except of posts that changed since.
    pub fn put(&self, read_at: u64, renderings: impl IntoIterator<Item = (u64, Vec<u8>)>) {
        let mut inner = self.inner.write();
        if read_at < inner.floor {
            return;
        }
        for (id, bytes) in renderings {
            match inner.map.get(&id) {
                Some(Slot::Changed(at)) if *at > read_at => continue,
                Some(Slot::Fresh(_)) => continue,
                Some(Slot::Changed(_)) => inner.marks -= 1,
                None => {}
            }
            inner.bytes += bytes.len() + ENTRY_OVERHEAD;
            inner.map.insert(id, Slot::Fresh(bytes.into_boxed_slice()));
        }
        shed_to_budget(&mut inner);
    }

    /// Marks posts as changed by the change that becomes visible at `generation` (the
    /// writer calls this after the commit, before bumping the generation to it).
    pub fn changed(&self, post_ids: impl IntoIterator<Item = u64>, generation: u64) {
        let mut inner = self.inner.write();
        for id in post_ids {
            match inner.map.insert(id, Slot::Changed(generation)) {
                Some(Slot::Changed(_)) => {}
                Some(Slot::Fresh(b)) => {
                    inner.bytes -= b.len() + ENTRY_OVERHEAD;
                    inner.marks += 1;
                }
                None => inner.marks += 1,
            }
        }
        if inner.marks > MAX_MARKS {
            forget(&mut inner, generation);
        }
    }

    /// Forgets every rendering and mark: nothing read before `generation` is kept again.
    /// For changes that touch renderings in general (a leader's name is in its posts).
    pub fn forget_all(&self, generation: u64) {
        forget(&mut self.inner.write(), generation);
    }

    /// Bytes held (with overhead), for tests and metrics.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.inner.read().bytes
    }
}

fn forget(inner: &mut Inner, generation: u64) {
    inner.floor = inner.floor.max(generation);
    inner.map.clear();
    inner.map.shrink_to(0);
    inner.bytes = 0;
    inner.marks = 0;
}

/// Sheds quarters until the renderings fit the budget: four sheds drop everything.
fn shed_to_budget(inner: &mut Inner) {
    let budget = if inner.budget == 0 {
        BUDGET_BYTES
    } else {
        inner.budget
    };
    for _ in 0..4 {
        if inner.bytes <= budget {
            break;
        }
        shed(inner);
    }
}

/// Drops about a quarter of the renderings, whole blocks of ids at a time (see
/// [`SHED_BLOCK_BITS`]), keeping every mark. Successive sheds drop successive quarters.
fn shed(inner: &mut Inner) {
    inner.sheds = inner.sheds.wrapping_add(1);
    let round = inner.sheds;
    let mut freed = 0;
    inner.map.retain(|id, slot| match slot {
        Slot::Fresh(b) => {
            let keep = !quarter(*id).wrapping_add(round).is_multiple_of(4);
            if !keep {
                freed += b.len() + ENTRY_OVERHEAD;
            }
            keep
        }
        Slot::Changed(_) => true,
    });
    inner.bytes -= freed;
}

/// Which quarter (0..4) of the blocks post `id` is in: the block number scrambled, so
/// neighbouring blocks fall in different quarters.
fn quarter(id: u64) -> u64 {
    (id >> SHED_BLOCK_BITS).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 62
}

#[cfg(test)]
mod tests {
    use super::*;

    impl RenderedPosts {
        fn get(&self, id: u64) -> Option<Vec<u8>> {
            let mut out = Vec::new();
            let mut miss = |_| Err(());
            self.append_page(&[id], &mut out, &mut miss)
                .ok()
                .map(|()| out)
        }
    }

    #[test]
    fn a_rendering_read_before_a_change_is_refused_or_overwritten() {
        let cache = RenderedPosts::default();
        // Read at generation 5, the post changes at 6 before the reader stores: refused.
        cache.changed([1], 6);
        cache.put(5, [(1, b"old".to_vec())]);
        assert_eq!(cache.get(1), None);
        // Read at 6 (after the change): kept.
        cache.put(6, [(1, b"new".to_vec())]);
        assert_eq!(cache.get(1).as_deref(), Some(&b"new"[..]));
        // Stored first, then the change: the mark overwrites it.
        cache.put(6, [(2, b"two".to_vec())]);
        cache.changed([2], 7);
        assert_eq!(cache.get(2), None);
        assert_eq!(cache.held(), 3 + ENTRY_OVERHEAD);
        assert_eq!(cache.missing(&[1, 2, 3]), vec![2, 3]);
    }

    #[test]
    fn forgetting_everything_refuses_older_reads() {
        let cache = RenderedPosts::default();
        cache.put(3, [(1, b"a".to_vec())]);
        cache.forget_all(4);
        assert_eq!(cache.get(1), None);
        cache.put(3, [(1, b"a".to_vec())]);
        assert_eq!(cache.get(1), None, "read before the floor");
        cache.put(4, [(1, b"b".to_vec())]);
        assert!(cache.get(1).is_some());
    }

    #[test]
    fn a_page_joins_renderings_and_asks_for_the_rest() {
        let cache = RenderedPosts::default();
        cache.put(0, [(1, b"{1}".to_vec()), (3, b"{3}".to_vec())]);
        let mut out = b"[".to_vec();
        let mut fetch = |id: u64| Ok::<_, ()>((id == 2).then(|| b"{2}".to_vec()));
        cache
            .append_page(&[1, 2, 4, 3], &mut out, &mut fetch)
            .unwrap();
        assert_eq!(out, b"[{1},{2},{3}");
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
                .rendered_page_in_memory(q, &mut out)
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
    fn shedding_drops_whole_blocks_of_neighbouring_posts() {
        let cache = RenderedPosts::default();
        let block = 1u64 << SHED_BLOCK_BITS;
        let posts = 64 * block;
        cache.set_budget((posts as usize) * (100 + ENTRY_OVERHEAD));
        for id in 0..posts {
            cache.put(0, [(id, vec![b'x'; 100])]);
        }
        // One more post is over the budget: a quarter of the blocks go, each as a whole.
        cache.put(0, [(posts, vec![b'x'; 100])]);
        let held: Vec<bool> = (0..posts)
            .map(|id| cache.missing(&[id]).is_empty())
            .collect();
        let dropped = held.iter().filter(|h| !**h).count() as u64;
        assert!(
            dropped >= posts / 8 && dropped <= posts / 2,
            "dropped {dropped} of {posts}"
        );
        for b in held.chunks(block as usize) {
            assert!(b.iter().all(|h| *h == b[0]), "a block shed in part");
        }
        // So a page of 20 neighbouring posts is most often whole.
        let whole = (0..posts - 20)
            .step_by(20)
            .filter(|&start| {
                let ids: Vec<u64> = (start..start + 20).collect();
                cache.missing(&ids).is_empty()
            })
            .count();
        let pages = (posts - 20).div_ceil(20) as usize;
        assert!(whole * 2 > pages, "{whole} of {pages} pages whole");
    }

    #[test]
    fn the_budget_holds() {
        let cache = RenderedPosts::default();
        for id in 0..(2 * BUDGET_BYTES / 4096) as u64 {
            cache.put(0, [(id, vec![b'x'; 4096])]);
        }
        assert!(cache.held() <= BUDGET_BYTES);
        assert!(cache.held() > BUDGET_BYTES / 2);
        // A smaller budget (SLED_CACHE_MB) sheds at once and holds from then on.
        cache.set_budget(4 << 20);
        assert!(cache.held() <= 4 << 20);
        for id in 0..4096 {
            cache.put(0, [(id, vec![b'x'; 4096])]);
        }
        assert!(cache.held() <= 4 << 20 && cache.held() > 1 << 20);
    }
}
