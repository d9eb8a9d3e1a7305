//! The feed index: an in-memory, newest-first ordering of every post, with counts, so a
//! page at any offset or cursor costs about the same however large the store grows.
//!
//! sled keeps the durable time index (`T` keys); this is a read model rebuilt from it at
//! start-up and updated by the store's single writer after each committed batch.
//! Lists are split into blocks of at most [`MAX_BLOCK`] entries: inserting costs one
//! block's memmove, and finding offset `k` walks block lengths, not entries.

use std::collections::HashMap;

use crate::domain::cursor::Cursor;
use crate::domain::post::{KindSet, Platform, PostKind};
use crate::storage::query::{PageStart, PostQuery};

/// First bytes of an index snapshot (format version in the last byte).
const SNAPSHOT_MAGIC: &[u8; 8] = b"AMBRIDX2";
/// Largest block before it splits in two.
const MAX_BLOCK: usize = 1024;
/// Post ids must stay below this to fit an index slot (40 bits: a trillion posts).
pub const MAX_POST_ID: u64 = 1 << 40;
/// Leader ids must stay below this to fit an index slot (20 bits: a million leaders).
pub const MAX_LEADER_ID: u64 = 1 << 20;
const ID_BITS: u32 = 40;
const LEADER_BITS: u32 = 20;
/// Where the two bits of the post kind sit (the platform's two bits follow).
const KIND_SHIFT: u32 = ID_BITS + LEADER_BITS;
const PLATFORM_SHIFT: u32 = KIND_SHIFT + 2;

type OrderKey = (std::cmp::Reverse<i64>, std::cmp::Reverse<u64>);

/// One post's place in the order. Sorts newest first: later timestamp first, then the
/// higher id first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Entry {
    pub timestamp_ms: i64,
    pub post_id: u64,
    pub leader_id: u64,
    pub platform: Platform,
    pub kind: PostKind,
}

impl Entry {
    /// The cursor that resumes right after this entry.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            timestamp_ms: self.timestamp_ms,
            post_id: self.post_id,
        }
    }

    /// True when the ids fit an index slot (see [`MAX_POST_ID`], [`MAX_LEADER_ID`]).
    pub fn fits(&self) -> bool {
        self.post_id < MAX_POST_ID && self.leader_id < MAX_LEADER_ID
    }
}

/// An entry packed into 16 bytes: timestamp, and post id (40 bits) | leader id (20) |
/// kind code (2) | platform code (2).
/// Half the memory of [`Entry`], which matters with a million posts on a Pi.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    timestamp_ms: i64,
    packed: u64,
}

impl Slot {
    fn pack(e: &Entry) -> Slot {
        debug_assert!(e.fits());
        let packed = (e.post_id & (MAX_POST_ID - 1))
            | ((e.leader_id & (MAX_LEADER_ID - 1)) << ID_BITS)
            | (u64::from(e.kind.code() & 3) << KIND_SHIFT)
            | (u64::from(e.platform.code() & 3) << PLATFORM_SHIFT);
        Slot {
            timestamp_ms: e.timestamp_ms,
            packed,
        }
    }

    fn post_id(&self) -> u64 {
        self.packed & (MAX_POST_ID - 1)
    }

    fn unpack(&self) -> Entry {
        Entry {
            timestamp_ms: self.timestamp_ms,
            post_id: self.post_id(),
            leader_id: (self.packed >> ID_BITS) & (MAX_LEADER_ID - 1),
            // Codes 1..=3 round-trip through two bits; 0 never occurs.
            platform: Platform::from_code((self.packed >> PLATFORM_SHIFT) as u8)
                .unwrap_or(Platform::X),
            kind: PostKind::from_code((self.packed >> KIND_SHIFT) as u8),
        }
    }

    fn order_key(&self) -> OrderKey {
        (
            std::cmp::Reverse(self.timestamp_ms),
            std::cmp::Reverse(self.post_id()),
        )
    }
}

fn entry_key(e: &Entry) -> OrderKey {
    (
        std::cmp::Reverse(e.timestamp_ms),
        std::cmp::Reverse(e.post_id),
    )
}

fn cursor_key(c: &Cursor) -> OrderKey {
    (
        std::cmp::Reverse(c.timestamp_ms),
        std::cmp::Reverse(c.post_id),
    )
}

/// A sorted list kept as blocks, with offset access in O(blocks) and insert in O(block).
#[derive(Debug, Default, Clone)]
struct BlockList {
    blocks: Vec<Vec<Slot>>,
    len: usize,
}

impl BlockList {
    fn block_for(&self, key: OrderKey) -> usize {
        // The first block whose last entry sorts at or after `key`; else the last block.
        let idx = self
            .blocks
            .partition_point(|b| b.last().map(|l| l.order_key() < key).unwrap_or(true));
        idx.min(self.blocks.len().saturating_sub(1))
    }

    fn insert(&mut self, e: &Entry) {
        if self.blocks.is_empty() {
            self.blocks.push(Vec::with_capacity(16));
        }
        let key = entry_key(e);
        let b = self.block_for(key);
        let block = &mut self.blocks[b];
        let pos = block.partition_point(|x| x.order_key() < key);
        let slot = Slot::pack(e);
        if block.get(pos).map(|x| x.order_key() == key) == Some(true) {
            block[pos] = slot;
            return;
        }
        block.insert(pos, slot);
        self.len += 1;
        if block.len() > MAX_BLOCK {
            let tail = block.split_off(block.len() / 2);
            self.blocks.insert(b + 1, tail);
        }
    }

    /// Appends an entry that sorts after every entry already present (bulk loading).
    fn push_back(&mut self, slot: Slot) {
        match self.blocks.last_mut() {
            Some(block) if block.len() < MAX_BLOCK => block.push(slot),
            _ => {
                let mut block = Vec::with_capacity(MAX_BLOCK);
                block.push(slot);
                self.blocks.push(block);
            }
        }
        self.len += 1;
    }

    fn remove(&mut self, e: &Entry) -> bool {
        if self.blocks.is_empty() {
            return false;
        }
        let key = entry_key(e);
        let b = self.block_for(key);
        let block = &mut self.blocks[b];
        let pos = block.partition_point(|x| x.order_key() < key);
        if block.get(pos).map(|x| x.order_key() == key) != Some(true) {
            return false;
        }
        block.remove(pos);
        self.len -= 1;
        if block.is_empty() {
            self.blocks.remove(b);
        }
        true
    }

    /// Position of the first entry that sorts strictly after `c`.
    fn position_after(&self, c: &Cursor) -> usize {
        let key = cursor_key(c);
        let mut pos = 0;
        for block in &self.blocks {
            match block.last() {
                Some(last) if last.order_key() <= key => pos += block.len(),
                _ => {
                    pos += block.partition_point(|x| x.order_key() <= key);
                    break;
                }
            }
        }
        pos
    }

    /// Up to `n` entries starting at position `start`.
    fn slice(&self, mut start: usize, n: usize) -> Vec<Entry> {
        let mut out = Vec::with_capacity(n.min(self.len));
        for block in &self.blocks {
            if out.len() == n {
                break;
            }
            if start >= block.len() {
                start -= block.len();
                continue;
            }
            let take = (n - out.len()).min(block.len() - start);
            out.extend(block[start..start + take].iter().map(Slot::unpack));
            start = 0;
        }
        out
    }

    fn iter_from(&self, start: usize) -> impl Iterator<Item = Entry> + '_ {
        self.blocks.iter().flatten().skip(start).map(Slot::unpack)
    }
}

/// One page of the order: post positions only; the store fills in the posts.
#[derive(Debug, Clone, PartialEq)]
pub struct PageRef {
    pub entries: Vec<Entry>,
    /// How many posts match the filter in all.
    pub total: usize,
    pub has_next: bool,
}

/// The index itself: one list of everything, one per platform, one per leader.
#[derive(Debug, Default)]
pub struct FeedIndex {
    all: BlockList,
    by_platform: HashMap<Platform, BlockList>,
    by_leader: HashMap<u64, BlockList>,
    /// Posts per (leader, platform, kind): every count a filter can ask for is a sum of
    /// these, over at most every leader.
    counts: HashMap<(u64, Platform, PostKind), usize>,
}

fn count_key(e: &Entry) -> (u64, Platform, PostKind) {
    (e.leader_id, e.platform, e.kind)
}

impl FeedIndex {
    /// Adds (or re-adds) one post's entry.
    pub fn insert(&mut self, e: Entry) {
        let before = self.all.len;
        self.all.insert(&e);
        if self.all.len == before {
            return; // already present
        }
        self.by_platform.entry(e.platform).or_default().insert(&e);
        self.by_leader.entry(e.leader_id).or_default().insert(&e);
        *self.counts.entry(count_key(&e)).or_default() += 1;
    }

    /// Removes one post's entry; false when it was not there.
    pub fn remove(&mut self, e: &Entry) -> bool {
        if !self.all.remove(e) {
            return false;
        }
        if let Some(list) = self.by_platform.get_mut(&e.platform) {
            list.remove(e);
        }
        if let Some(list) = self.by_leader.get_mut(&e.leader_id) {
            list.remove(e);
            if list.len == 0 {
                self.by_leader.remove(&e.leader_id);
            }
        }
        if let Some(n) = self.counts.get_mut(&count_key(e)) {
            *n -= 1;
            if *n == 0 {
                self.counts.remove(&count_key(e));
            }
        }
        true
    }

    /// Serialises the index for a fast restart: a magic string, the caller's `tag`, the
    /// slots newest first, and a CRC32 of all of it.
    pub fn to_snapshot(&self, tag: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(28 + self.all.len * 16);
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&(self.all.len as u64).to_le_bytes());
        for slot in self.all.blocks.iter().flatten() {
            out.extend_from_slice(&slot.timestamp_ms.to_le_bytes());
            out.extend_from_slice(&slot.packed.to_le_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Rebuilds an index from [`FeedIndex::to_snapshot`] output, or `None` when the bytes
    /// are not a whole, uncorrupted snapshot carrying `tag`.
    pub fn from_snapshot(bytes: &[u8], tag: u64) -> Option<FeedIndex> {
        let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
        if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().ok()?) {
            return None;
        }
        let rest = body.strip_prefix(SNAPSHOT_MAGIC)?;
        let (tag_bytes, rest) = rest.split_at_checked(8)?;
        let (count_bytes, slots) = rest.split_at_checked(8)?;
        if u64::from_le_bytes(tag_bytes.try_into().ok()?) != tag {
            return None;
        }
        let count = u64::from_le_bytes(count_bytes.try_into().ok()?) as usize;
        if slots.len() != count.checked_mul(16)? {
            return None;
        }
        let mut index = FeedIndex::default();
        let mut previous: Option<OrderKey> = None;
        for chunk in slots.chunks_exact(16) {
            let slot = Slot {
                timestamp_ms: i64::from_le_bytes(chunk[..8].try_into().ok()?),
                packed: u64::from_le_bytes(chunk[8..].try_into().ok()?),
            };
            // Strictly newest first, or it is not a snapshot of ours.
            if previous.is_some_and(|p| p >= slot.order_key()) {
                return None;
            }
            previous = Some(slot.order_key());
            let e = slot.unpack();
            index.all.push_back(slot);
            index
                .by_platform
                .entry(e.platform)
                .or_default()
                .push_back(slot);
            index
                .by_leader
                .entry(e.leader_id)
                .or_default()
                .push_back(slot);
            *index.counts.entry(count_key(&e)).or_default() += 1;
        }
        Some(index)
    }

    /// The entry of the post at (timestamp, id), if indexed.
    pub fn get(&self, timestamp_ms: i64, post_id: u64) -> Option<Entry> {
        let list = &self.all;
        if list.blocks.is_empty() {
            return None;
        }
        let key = (std::cmp::Reverse(timestamp_ms), std::cmp::Reverse(post_id));
        let block = &list.blocks[list.block_for(key)];
        let pos = block.partition_point(|x| x.order_key() < key);
        block
            .get(pos)
            .filter(|x| x.order_key() == key)
            .map(Slot::unpack)
    }

    /// Every entry of one leader, newest first.
    pub fn leader_entries(&self, leader_id: u64) -> Vec<Entry> {
        self.by_leader
            .get(&leader_id)
            .map(|l| l.iter_from(0).collect())
            .unwrap_or_default()
    }

    /// Number of posts in all.
    pub fn len(&self) -> usize {
        self.all.len
    }

    /// Number of posts of one platform.
    pub fn platform_len(&self, p: Platform) -> usize {
        self.by_platform.get(&p).map(|l| l.len).unwrap_or(0)
    }

    /// The newest entry, if any.
    pub fn newest(&self) -> Option<Entry> {
        self.all.slice(0, 1).first().copied()
    }

    /// Counts the posts of these leaders (none: all), platform and kinds, from maintained
    /// counts only. `leaders` must hold no duplicates.
    pub fn count(&self, leaders: &[u64], platform: Option<Platform>, kinds: KindSet) -> usize {
        if kinds.is_all() {
            match (leaders, platform) {
                ([], None) => return self.all.len,
                ([], Some(p)) => return self.platform_len(p),
                (leaders, None) => {
                    return leaders
                        .iter()
                        .map(|l| self.by_leader.get(l).map(|x| x.len).unwrap_or(0))
                        .sum()
                }
                _ => {}
            }
        }
        let platforms: Vec<Platform> = match platform {
            Some(p) => vec![p],
            None => Platform::ALL.to_vec(),
        };
        let sum_for = |l: u64| -> usize {
            platforms
                .iter()
                .flat_map(|p| kinds.iter().map(move |k| (l, *p, k)))
                .map(|key| self.counts.get(&key).copied().unwrap_or(0))
                .sum()
        };
        match leaders {
            [] => self
                .counts
                .iter()
                .filter(|((_, p, k), _)| {
                    platform.is_none_or(|want| *p == want) && kinds.contains(*k)
                })
                .map(|(_, n)| n)
                .sum(),
            leaders => leaders.iter().map(|l| sum_for(*l)).sum(),
        }
    }

    /// One page of the query's posts.
    pub fn page(&self, query: &PostQuery) -> PageRef {
        let leaders = query.leader_ids();
        let platform = query.platform_filter();
        let kinds = query.kinds_filter();
        let start = query.start();
        let limit = query.limit();
        let total = self.count(leaders, platform, kinds);
        let single: Option<Option<&BlockList>> = match (leaders, platform, kinds.is_all()) {
            ([], None, true) => Some(Some(&self.all)),
            ([], Some(p), true) => Some(self.by_platform.get(&p)),
            ([l], None, true) => Some(self.by_leader.get(l)),
            _ => None,
        };
        if let Some(list) = single {
            let empty = BlockList::default();
            let list = list.unwrap_or(&empty);
            let pos = match start {
                PageStart::Offset(n) => n,
                PageStart::Before(c) => list.position_after(&c),
            };
            let entries = list.slice(pos, limit);
            let has_next = pos + entries.len() < list.len;
            return PageRef {
                entries,
                total,
                has_next,
            };
        }
        // Several leaders, a leader and a platform, or a kinds filter: merge the candidate
        // lists (the leaders', or the one list of everything or of the platform) and filter
        // as they are walked. A cursor still starts each list by binary search; an offset
        // has to walk (documented).
        let candidates: Vec<&BlockList> = match (leaders, platform) {
            ([], None) => vec![&self.all],
            ([], Some(p)) => self.by_platform.get(&p).into_iter().collect(),
            (leaders, _) => leaders
                .iter()
                .filter_map(|l| self.by_leader.get(l))
                .collect(),
        };
        let mut iters: Vec<_> = candidates
            .into_iter()
            .map(|list| {
                let pos = match start {
                    PageStart::Before(c) => list.position_after(&c),
                    PageStart::Offset(_) => 0,
                };
                list.iter_from(pos)
                    .filter(move |e| platform.is_none_or(|p| e.platform == p))
                    .filter(move |e| kinds.contains(e.kind))
                    .peekable()
            })
            .collect();
        let mut skip = match start {
            PageStart::Offset(n) => n,
            PageStart::Before(_) => 0,
        };
        let mut entries = Vec::with_capacity(limit);
        let mut has_next = false;
        loop {
            let best = iters
                .iter_mut()
                .enumerate()
                .filter_map(|(i, it)| it.peek().map(|e| (entry_key(e), i)))
                .min()
                .map(|(_, i)| i);
            let Some(best) = best else { break };
            if entries.len() == limit {
                has_next = true;
                break;
            }
            let Some(e) = iters[best].next() else {
                break;
            };
            if skip > 0 {
                skip -= 1;
            } else {
                entries.push(e);
            }
        }
        PageRef {
            entries,
            total,
            has_next,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn entry(ts: i64, id: u64, leader: u64, platform: Platform) -> Entry {
        Entry {
            timestamp_ms: ts,
            post_id: id,
            leader_id: leader,
            platform,
            // Spread over the kinds, deterministically.
            kind: PostKind::from_code((id % 7 % 4) as u8),
        }
    }

    /// The slow, obviously right answer: filter and sort everything.
    fn naive(all: &[Entry], q: &PostQuery) -> (Vec<Entry>, usize, bool) {
        let (leaders, platform, limit) = (q.leader_ids(), q.platform_filter(), q.limit());
        let kinds = q.kinds_filter();
        let mut v: Vec<Entry> = all
            .iter()
            .filter(|e| leaders.is_empty() || leaders.contains(&e.leader_id))
            .filter(|e| platform.is_none_or(|p| e.platform == p))
            .filter(|e| kinds.contains(e.kind))
            .copied()
            .collect();
        v.sort_by_key(entry_key);
        let total = v.len();
        let from = match q.start() {
            PageStart::Offset(n) => n.min(total),
            PageStart::Before(c) => v
                .iter()
                .take_while(|e| entry_key(e) <= cursor_key(&c))
                .count(),
        };
        let page: Vec<Entry> = v[from..].iter().take(limit).copied().collect();
        let has_next = from + page.len() < total;
        (page, total, has_next)
    }

    proptest! {
        #[test]
        fn pages_match_a_naive_sort(
            raw in proptest::collection::vec((0i64..50, 0u64..4, 0u8..3), 0..3000),
            leaders in proptest::collection::vec(0u64..4, 0..3),
            platform in proptest::option::of(0u8..3),
            kinds in 1u8..16,
            offset in 0usize..3100,
            limit in 1usize..40,
            cursor in (0i64..50, 0u64..4000),
        ) {
            let mut index = FeedIndex::default();
            let mut all = Vec::new();
            for (id, (ts, leader, p)) in raw.into_iter().enumerate() {
                let e = entry(ts, id as u64, leader, Platform::ALL[p as usize]);
                index.insert(e);
                all.push(e);
            }
            let kinds = KindSet::of(PostKind::ALL.into_iter().filter(|k| kinds & (1 << k.code()) != 0));
            let q = PostQuery::newest(limit)
                .leaders(leaders)
                .platform(platform.map(|p| Platform::ALL[p as usize]))
                .kinds(kinds);
            for start in [PageStart::Offset(offset), PageStart::Before(Cursor { timestamp_ms: cursor.0, post_id: cursor.1 })] {
                let q = q.clone().starting(start);
                let got = index.page(&q);
                let (want, total, has_next) = naive(&all, &q);
                prop_assert_eq!(&got.entries, &want);
                prop_assert_eq!(got.has_next, has_next);
                prop_assert_eq!(got.total, total);
            }
        }
    }

    #[test]
    fn removing_keeps_counts_and_order() {
        let mut index = FeedIndex::default();
        for id in 0..5000u64 {
            index.insert(entry(
                (id % 97) as i64,
                id,
                id % 3,
                Platform::ALL[(id % 3) as usize],
            ));
        }
        for id in (0..5000u64).step_by(2) {
            assert!(index.remove(&entry(
                (id % 97) as i64,
                id,
                id % 3,
                Platform::ALL[(id % 3) as usize]
            )));
        }
        assert_eq!(index.len(), 2500);
        assert_eq!(
            index.count(&[1], None, KindSet::ALL),
            index.leader_entries(1).len()
        );
        let page = index.page(&PostQuery::newest(2500));
        assert!(page
            .entries
            .windows(2)
            .all(|w| entry_key(&w[0]) < entry_key(&w[1])));
        assert!(!index.remove(&entry(0, 0, 0, Platform::X)));
    }

    #[test]
    fn a_snapshot_round_trips_and_refuses_damage() {
        let mut index = FeedIndex::default();
        for id in 0..3000u64 {
            index.insert(entry(
                (id % 500) as i64,
                id,
                id % 7,
                Platform::ALL[(id % 3) as usize],
            ));
        }
        let bytes = index.to_snapshot(42);
        let back = FeedIndex::from_snapshot(&bytes, 42).expect("valid snapshot");
        let q = PostQuery::newest(50)
            .leaders([3])
            .platform(Some(Platform::News))
            .starting(PageStart::Offset(5));
        assert_eq!(
            back.page(&PostQuery::newest(3000)),
            index.page(&PostQuery::newest(3000))
        );
        assert_eq!(back.page(&q), index.page(&q));
        assert_eq!(
            back.count(&[3], Some(Platform::News), KindSet::ALL),
            index.count(&[3], Some(Platform::News), KindSet::ALL)
        );
        assert!(
            FeedIndex::from_snapshot(&bytes, 43).is_none(),
            "another tag"
        );
        let mut flipped = bytes.clone();
        flipped[100] ^= 1;
        assert!(
            FeedIndex::from_snapshot(&flipped, 42).is_none(),
            "a flipped bit"
        );
        assert!(
            FeedIndex::from_snapshot(&bytes[..bytes.len() - 20], 42).is_none(),
            "truncated"
        );
        assert!(FeedIndex::from_snapshot(&[], 42).is_none());
    }

    #[test]
    fn slots_keep_large_ids_and_every_platform_and_kind() {
        for p in Platform::ALL {
            for kind in PostKind::ALL {
                let e = Entry {
                    kind,
                    ..entry(-5, MAX_POST_ID - 1, MAX_LEADER_ID - 1, p)
                };
                assert_eq!(Slot::pack(&e).unpack(), e);
            }
        }
    }

    #[test]
    fn inserting_twice_is_idempotent() {
        let mut index = FeedIndex::default();
        let e = entry(1, 1, 1, Platform::X);
        index.insert(e);
        index.insert(e);
        assert_eq!(index.len(), 1);
        assert_eq!(index.count(&[1], Some(Platform::X), KindSet::ALL), 1);
    }
}
