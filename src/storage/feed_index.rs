//! The feed index: an in-memory, newest-first ordering of every post, with counts, so a
//! page at any offset or cursor costs about the same however large the store grows.
//!
//! sled keeps the durable time index (`T` keys); this is a read model rebuilt from it (or
//! from a snapshot and the index journal, see `snapshot.rs`) at start-up and updated by
//! the store's single writer after each committed batch. There is one list of every post,
//! split into blocks of at most [`MAX_BLOCK`] entries; every block counts its entries per
//! *class* (platform × kind) and per leader and class (a few tallies per leader present),
//! and per class the entries of every block before it. So inserting costs one block's
//! memmove (plus a count bump in each later block), finding offset `k` without a leader
//! filter or a cursor is a binary search over the blocks and one within a block, and a
//! leader filter walks (and skips) groups and blocks on their tallies instead of keeping
//! a list of its own: 16 bytes per post in all (issue 14: the per-leader lists it had
//! before doubled that). The groups come in [`LEVELS`] levels of [`GROUP`] each (8, 64
//! and 512 blocks), so the walk to offset `k` looks at a few groups a level and a few
//! blocks, not up to 31 blocks of one group (issue 14, ninth session). Inside a block, a filter's test of a slot is picked once per
//! page (one leader id, a 64-bit set of ids, or a search for leaders far apart; see
//! [`LeaderTest`]), the `n`th match is counted a chunk of slots at a time from the
//! block's nearer end, and a page's entries are taken by one loop per block.

use std::collections::HashMap;

use crate::domain::cursor::Cursor;
use crate::domain::post::{Platform, PostKind};
use crate::storage::query::{PageStart, PostQuery};

/// First bytes of an index snapshot (format version in the last byte).
const SNAPSHOT_MAGIC: &[u8; 8] = b"AMBRIDX3";
/// Largest block before it splits in two (small in tests, so they span many blocks).
/// (Blocks of 256 would count a quarter of the slots for a leader filter's `n`th match,
/// but make an insert's count bump in every later block four times dearer: at 1M posts
/// ~6 µs an insert, so a journal of 200,000 entries would take over a second to replay
/// at start-up; issue 14, ninth session.)
const MAX_BLOCK: usize = if cfg!(test) { 16 } else { 1024 };
/// Groups of a level of [`BlockList::levels`] (or blocks, at level 0) a group of the
/// level above spans.
const GROUP: usize = if cfg!(test) { 4 } else { 8 };
/// Levels of groups above the blocks (see [`BlockList::levels`]): level `k` sums the
/// tallies of `GROUP^(k + 1)` blocks a group.
const LEVELS: usize = 3;

/// Blocks a group of level `k` spans.
const fn span(k: usize) -> usize {
    GROUP.pow(k as u32 + 1)
}
/// Post ids must stay below this to fit an index slot (40 bits: a trillion posts).
pub const MAX_POST_ID: u64 = 1 << 40;
/// Leader ids must stay below this to fit an index slot (20 bits: a million leaders).
pub const MAX_LEADER_ID: u64 = 1 << 20;
const ID_BITS: u32 = 40;
const LEADER_BITS: u32 = 20;
/// Bits 60–61: platform code (1..=3); bits 62–63: the post's kind (0..=3).
const PLATFORM_SHIFT: u32 = ID_BITS + LEADER_BITS;
const KIND_SHIFT: u32 = PLATFORM_SHIFT + 2;
/// Classes an entry can fall in: platform code (two bits) × kind (two bits).
const CLASSES: usize = 16;

type OrderKey = (std::cmp::Reverse<i64>, std::cmp::Reverse<u64>);

/// One post's place in the order. Sorts newest first: later timestamp first, then the
/// higher id first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Entry {
    pub timestamp_ms: i64,
    pub post_id: u64,
    pub leader_id: u64,
    pub platform: Platform,
    /// The post's kind (two bits of the slot).
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

    /// The entry as 16 bytes (its slot, little-endian), for the index journal.
    pub fn to_bytes(self) -> [u8; 16] {
        let slot = Slot::pack(&self);
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&slot.timestamp_ms.to_le_bytes());
        out[8..].copy_from_slice(&slot.packed.to_le_bytes());
        out
    }

    /// The inverse of [`Entry::to_bytes`]; `None` for bytes that are not an entry.
    pub fn from_bytes(b: &[u8]) -> Option<Entry> {
        let slot = Slot {
            timestamp_ms: i64::from_le_bytes(b.get(..8)?.try_into().ok()?),
            packed: u64::from_le_bytes(b.get(8..16)?.try_into().ok()?),
        };
        (slot.class() & 3 != 0).then(|| slot.unpack())
    }

    #[cfg(test)]
    fn class(&self) -> usize {
        usize::from(self.kind.code() & 3) << 2 | usize::from(self.platform.code() & 3)
    }
}

/// A set of classes (platform × kind) a query accepts: bit `kind * 4 + platform code`,
/// the top four bits of a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClassMask(u16);

impl ClassMask {
    /// Every class: no filter.
    pub const ALL: ClassMask = ClassMask(u16::MAX);

    /// The classes of a query: its platform (if any) and its kinds (`kinds=`).
    pub fn of(query: &PostQuery) -> ClassMask {
        let platforms: u16 = match query.platform_filter() {
            None => 0xf,
            Some(p) => 1 << (p.code() & 3),
        };
        let kinds = query.kinds_filter();
        if query.platform_filter().is_none() && kinds.is_all() {
            return ClassMask::ALL;
        }
        ClassMask(
            kinds
                .iter()
                .map(|k| platforms << (4 * u16::from(k.code() & 3)))
                .fold(0, |a, b| a | b),
        )
    }

    fn has(self, class: usize) -> bool {
        self.0 & (1 << class) != 0
    }

    fn count(self, counts: &[u32; CLASSES]) -> usize {
        if self == ClassMask::ALL {
            return counts.iter().map(|&c| c as usize).sum();
        }
        (0..CLASSES)
            .filter(|c| self.has(*c))
            .map(|c| counts[c] as usize)
            .sum()
    }
}

/// An entry packed into 16 bytes: timestamp, and post id | leader id | platform | kind.
/// A third of the memory the unpacked lists took, which matters with a million posts on
/// a Pi.
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
            | (u64::from(e.platform.code() & 3) << PLATFORM_SHIFT)
            | (u64::from(e.kind.code() & 3) << KIND_SHIFT);
        Slot {
            timestamp_ms: e.timestamp_ms,
            packed,
        }
    }

    fn post_id(&self) -> u64 {
        self.packed & (MAX_POST_ID - 1)
    }

    fn leader(&self) -> u64 {
        (self.packed >> ID_BITS) & (MAX_LEADER_ID - 1)
    }

    fn class(&self) -> usize {
        (self.packed >> PLATFORM_SHIFT) as usize
    }

    fn unpack(&self) -> Entry {
        Entry {
            timestamp_ms: self.timestamp_ms,
            post_id: self.post_id(),
            leader_id: self.leader(),
            // Codes 1..=3 round-trip through two bits; 0 never occurs.
            platform: Platform::from_code(((self.packed >> PLATFORM_SHIFT) & 3) as u8)
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

/// A block's tally of one (leader, class): `(leader << 4 | class) << TALLY_BITS | count`.
/// A group of the top level holds at most `span(LEVELS - 1) * (MAX_BLOCK + 1)` entries,
/// so a count fits [`TALLY_BITS`].
const TALLY_BITS: u32 = 20;
const _: () = assert!(span(LEVELS - 1) * (MAX_BLOCK + 1) < 1 << TALLY_BITS);

fn tally_key(slot: &Slot) -> u64 {
    slot.leader() << 4 | slot.class() as u64
}

/// Which entries a page takes: a set of classes and, unless empty, a set of leaders
/// (sorted, no duplicates).
#[derive(Debug, Clone, Copy)]
struct Filter<'a> {
    leaders: &'a [u64],
    mask: ClassMask,
    /// How a leader is tested: see [`LeaderTest`].
    test: LeaderTest,
}

/// A filter's test of a leader id, picked once per page so the loops over slots and
/// tallies test each with a few instructions, no search and no branch (issue 14, eighth
/// session).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LeaderTest {
    /// No leader filter.
    Any,
    /// One leader.
    One(u64),
    /// Leaders all within 64 ids of the first: bit `leader - base` of `bits`.
    Span { base: u64, bits: u64 },
    /// Leaders further apart: a binary search of [`Filter::leaders`].
    Search,
}

impl LeaderTest {
    fn of(leaders: &[u64]) -> LeaderTest {
        match leaders {
            [] => LeaderTest::Any,
            [one] => LeaderTest::One(*one),
            [base, .., last] if last - base < 64 => LeaderTest::Span {
                base: *base,
                bits: leaders.iter().fold(0, |bits, l| bits | 1 << (l - base)),
            },
            _ => LeaderTest::Search,
        }
    }
}

/// Bit `leader - base` of `bits`, 0 when `leader` is below `base` or 64 or more above.
#[inline(always)]
fn span_bit(leader: u64, base: u64, bits: u64) -> u64 {
    let d = leader.wrapping_sub(base);
    u64::from(d < 64) & (bits >> (d & 63))
}

/// Slots counted at a time when seeking the `n`th match in a block.
const CHUNK: usize = 32;

impl<'a> Filter<'a> {
    fn new(leaders: &'a [u64], mask: ClassMask) -> Filter<'a> {
        Filter {
            leaders,
            mask,
            test: LeaderTest::of(leaders),
        }
    }

    /// Runs `job` with this filter's test of a slot (its `packed` half), a closure of its
    /// own per kind of filter so the loops `job` runs compile without a branch on it.
    #[inline(always)]
    fn with_test<R>(&self, job: impl SlotJob<Out = R>) -> R {
        let mask = self.mask.0;
        let class_ok = move |p: u64| u64::from(mask >> (p >> PLATFORM_SHIFT)) & 1 != 0;
        let leader = |p: u64| (p >> ID_BITS) & (MAX_LEADER_ID - 1);
        let all = self.mask == ClassMask::ALL;
        match self.test {
            LeaderTest::Any if all => job.run(|_: u64| true),
            LeaderTest::Any => job.run(class_ok),
            LeaderTest::One(l) => {
                let field = l << ID_BITS;
                let one = move |p: u64| p & ((MAX_LEADER_ID - 1) << ID_BITS) == field;
                if all {
                    job.run(one)
                } else {
                    job.run(move |p: u64| one(p) & class_ok(p))
                }
            }
            LeaderTest::Span { base, bits } => {
                let hit = move |p: u64| span_bit(leader(p), base, bits) != 0;
                if all {
                    job.run(hit)
                } else {
                    job.run(move |p: u64| hit(p) & class_ok(p))
                }
            }
            LeaderTest::Search => {
                let leaders = self.leaders;
                job.run(move |p: u64| class_ok(p) && leaders.binary_search(&leader(p)).is_ok())
            }
        }
    }
}

/// Work over slots that takes a filter's test (see [`Filter::with_test`]).
trait SlotJob {
    type Out;
    fn run(self, test: impl Fn(u64) -> bool + Copy) -> Self::Out;
}

/// Where the `n`th (from 0) of a block's `matching` slots the filter takes is: counted
/// a chunk at a time from whichever end is nearer, then found slot by slot in its chunk.
struct Nth<'a> {
    slots: &'a [Slot],
    n: usize,
    matching: usize,
}

impl SlotJob for Nth<'_> {
    type Out = Option<usize>;

    #[inline(always)]
    fn run(self, test: impl Fn(u64) -> bool + Copy) -> Option<usize> {
        let count = |c: &[Slot]| c.iter().map(|s| usize::from(test(s.packed))).sum::<usize>();
        let Nth { slots, n, matching } = self;
        if n >= matching {
            return None;
        }
        if n < matching / 2 {
            let mut left = n;
            for (c, chunk) in slots.chunks(CHUNK).enumerate() {
                let here = count(chunk);
                if left < here {
                    let i = chunk
                        .iter()
                        .enumerate()
                        .filter(|(_, s)| test(s.packed))
                        .nth(left)?
                        .0;
                    return Some(c * CHUNK + i);
                }
                left -= here;
            }
            None
        } else {
            // The (matching - 1 - n)th from the end.
            let mut left = matching - 1 - n;
            for (c, chunk) in slots.rchunks(CHUNK).enumerate() {
                let here = count(chunk);
                if left < here {
                    let i = chunk
                        .iter()
                        .enumerate()
                        .rev()
                        .filter(|(_, s)| test(s.packed))
                        .nth(left)?
                        .0;
                    return Some(slots.len() - (c * CHUNK + chunk.len()) + i);
                }
                left -= here;
            }
            None
        }
    }
}

/// Appends the slots the filter takes, in order, until `out` holds `limit`.
struct Take<'a, 'o> {
    slots: &'a [Slot],
    out: &'o mut Vec<Entry>,
    limit: usize,
}

impl SlotJob for Take<'_, '_> {
    type Out = ();

    #[inline(always)]
    fn run(self, test: impl Fn(u64) -> bool + Copy) {
        for s in self.slots {
            if self.out.len() == self.limit {
                return;
            }
            if test(s.packed) {
                self.out.push(s.unpack());
            }
        }
    }
}

/// Up to [`MAX_BLOCK`] slots in order, with how many fall in each class, how many of
/// each class the blocks before it hold (so an offset is found by binary search), and
/// how many each leader has in each class.
#[derive(Debug, Default, Clone)]
struct Block {
    slots: Vec<Slot>,
    counts: [u32; CLASSES],
    /// Per class, the entries of every block before this one.
    before: [u32; CLASSES],
    /// Sorted tallies (see [`TALLY_BITS`]): a few per leader present in the block.
    tallies: Vec<u64>,
}

impl Block {
    fn recount(&mut self) {
        self.counts = [0; CLASSES];
        for s in &self.slots {
            self.counts[s.class()] += 1;
        }
        let mut keys: Vec<u64> = self.slots.iter().map(tally_key).collect();
        keys.sort_unstable();
        self.tallies.clear();
        for key in keys {
            match self.tallies.last_mut() {
                Some(t) if *t >> TALLY_BITS == key => *t += 1,
                _ => self.tallies.push(key << TALLY_BITS | 1),
            }
        }
    }

    fn add(&mut self, slot: &Slot) {
        self.counts[slot.class()] += 1;
        tally_add(&mut self.tallies, slot);
    }

    fn sub(&mut self, slot: &Slot) {
        self.counts[slot.class()] -= 1;
        tally_sub(&mut self.tallies, slot);
    }

    /// Entries matching `mask` in this block and every block before it.
    fn matching_through(&self, mask: ClassMask) -> usize {
        mask.count(&self.before) + mask.count(&self.counts)
    }

    /// How many of the block's entries the filter takes, from the counts alone.
    fn matching(&self, f: &Filter<'_>) -> usize {
        if f.leaders.is_empty() {
            return if f.mask == ClassMask::ALL {
                self.slots.len()
            } else {
                f.mask.count(&self.counts)
            };
        }
        tallies_matching(&self.tallies, f)
    }
}

fn tally_add(tallies: &mut Vec<u64>, slot: &Slot) {
    tally_merge(tallies, tally_key(slot) << TALLY_BITS | 1, true);
}

fn tally_sub(tallies: &mut Vec<u64>, slot: &Slot) {
    tally_merge(tallies, tally_key(slot) << TALLY_BITS | 1, false);
}

/// Adds (or takes away) one tally's count in a sorted tally list.
fn tally_merge(tallies: &mut Vec<u64>, tally: u64, add: bool) {
    const COUNT: u64 = (1 << TALLY_BITS) - 1;
    let (key, n) = (tally >> TALLY_BITS, tally & COUNT);
    let at = tallies.partition_point(|t| *t >> TALLY_BITS < key);
    match tallies.get_mut(at) {
        Some(t) if *t >> TALLY_BITS == key => {
            if add {
                *t += n;
            } else {
                *t -= n;
                if *t & COUNT == 0 {
                    tallies.remove(at);
                }
            }
        }
        _ if add => tallies.insert(at, tally),
        _ => {}
    }
}

/// How many entries of a tally list a filter with leaders takes.
fn tallies_matching(tallies: &[u64], f: &Filter<'_>) -> usize {
    const COUNT: u64 = (1 << TALLY_BITS) - 1;
    let count = |t: &u64| {
        let class = ((t >> TALLY_BITS) & 0xf) as usize;
        if f.mask.has(class) {
            (t & COUNT) as usize
        } else {
            0
        }
    };
    // One pass, a few instructions a tally and no branch (each test its own loop). A
    // count is kept or dropped by a mask, not multiplied by the test's 0 or 1 (LLVM
    // vectorises the loop, and SSE2 has no 64-bit multiply), and without a class filter
    // the class is not looked at (issue 14, ninth session).
    #[inline(always)]
    fn pass(tallies: &[u64], mask: ClassMask, hit: impl Fn(u64) -> u64) -> usize {
        if mask == ClassMask::ALL {
            return tallies
                .iter()
                .map(|t| (t & COUNT) & hit(t >> (TALLY_BITS + 4)).wrapping_neg())
                .sum::<u64>() as usize;
        }
        let mask = u64::from(mask.0);
        tallies
            .iter()
            .map(|t| {
                let class_ok = (mask >> ((t >> TALLY_BITS) & 0xf)) & 1;
                (t & COUNT) & (hit(t >> (TALLY_BITS + 4)) & class_ok).wrapping_neg()
            })
            .sum::<u64>() as usize
    }
    match f.test {
        LeaderTest::One(one) if f.leaders.len() * 8 >= tallies.len() => {
            return pass(tallies, f.mask, |l| u64::from(l == one));
        }
        LeaderTest::Span { base, bits } if f.leaders.len() * 8 >= tallies.len() => {
            return pass(tallies, f.mask, |l| span_bit(l, base, bits));
        }
        _ => {}
    }
    if f.leaders.len() * 8 < tallies.len() {
        // A few leaders among many: look each one up.
        f.leaders
            .iter()
            .map(|l| {
                let from = tallies.partition_point(|t| *t >> (TALLY_BITS + 4) < *l);
                tallies[from..]
                    .iter()
                    .take_while(|t| *t >> (TALLY_BITS + 4) == *l)
                    .map(count)
                    .sum::<usize>()
            })
            .sum()
    } else {
        tallies
            .iter()
            .filter(|t| f.leaders.binary_search(&(*t >> (TALLY_BITS + 4))).is_ok())
            .map(count)
            .sum()
    }
}

/// The sorted list of every entry, kept as blocks: a cursor, or an offset without
/// leaders, in O(log blocks + block); an offset with leaders in O(top groups + GROUP *
/// LEVELS + block); insert in O(block + blocks).
#[derive(Debug, Default, Clone)]
struct BlockList {
    blocks: Vec<Block>,
    /// Per level `k` (0 the lowest), the tallies of blocks `span(k) * g .. span(k) * (g +
    /// 1)` summed, group `g` after group: a leader filter finds its `n`th entry's block
    /// by walking at most `GROUP` groups a level down from the top, and skips a span
    /// without its leaders in one look.
    levels: [Vec<Vec<u64>>; LEVELS],
    len: usize,
    counts: [u32; CLASSES],
}

impl BlockList {
    fn block_for(&self, key: OrderKey) -> usize {
        // The first block whose last entry sorts at or after `key`; else the last block.
        let idx = self
            .blocks
            .partition_point(|b| b.slots.last().map(|l| l.order_key() < key).unwrap_or(true));
        idx.min(self.blocks.len().saturating_sub(1))
    }

    /// Inserts `e`, or replaces the entry at its (timestamp, id); returns the replaced
    /// slot, if any.
    fn insert(&mut self, e: &Entry) -> Option<Slot> {
        if self.blocks.is_empty() {
            self.blocks.push(Block::default());
        }
        let key = entry_key(e);
        let b = self.block_for(key);
        let block = &mut self.blocks[b];
        let pos = block.slots.partition_point(|x| x.order_key() < key);
        let slot = Slot::pack(e);
        if let Some(old) = block
            .slots
            .get(pos)
            .filter(|x| x.order_key() == key)
            .copied()
        {
            block.sub(&old);
            self.counts[old.class()] -= 1;
            block.add(&slot);
            self.counts[slot.class()] += 1;
            block.slots[pos] = slot;
            self.levels_sub(b, &old);
            self.levels_add(b, &slot);
            if old.class() != slot.class() {
                self.bump_after(b, old.class(), -1);
                self.bump_after(b, slot.class(), 1);
            }
            return Some(old);
        }
        block.slots.insert(pos, slot);
        block.add(&slot);
        self.counts[slot.class()] += 1;
        self.len += 1;
        let split = block.slots.len() > MAX_BLOCK;
        self.levels_add(b, &slot);
        let block = &mut self.blocks[b];
        if split {
            let tail = block.slots.split_off(block.slots.len() / 2);
            block.recount();
            let mut before = block.before;
            for (n, c) in before.iter_mut().zip(block.counts) {
                *n += c;
            }
            let mut tail = Block {
                slots: tail,
                before,
                ..Block::default()
            };
            tail.recount();
            self.blocks.insert(b + 1, tail);
            // The two halves hold what the one block held: the blocks after them count
            // the same before them but for the new slot.
            self.bump_after(b + 1, slot.class(), 1);
            self.shifted_right(b);
        } else {
            self.bump_after(b, slot.class(), 1);
        }
        None
    }

    /// Adds `delta` to the count of `class` before every block after block `b`.
    fn bump_after(&mut self, b: usize, class: usize, delta: i32) {
        for block in self.blocks.iter_mut().skip(b + 1) {
            block.before[class] = block.before[class].wrapping_add_signed(delta);
        }
    }

    /// Counts `slot` in every level's group of block `b` (made when missing).
    fn levels_add(&mut self, b: usize, slot: &Slot) {
        for (k, level) in self.levels.iter_mut().enumerate() {
            let g = b / span(k);
            if level.len() <= g {
                level.resize_with(g + 1, Vec::new);
            }
            tally_add(&mut level[g], slot);
        }
    }

    /// Takes `slot` out of every level's group of block `b`.
    fn levels_sub(&mut self, b: usize, slot: &Slot) {
        for (k, level) in self.levels.iter_mut().enumerate() {
            tally_sub(&mut level[b / span(k)], slot);
        }
    }

    /// After a block was inserted right after block `b` (every later block moved one
    /// place on): at every level, each group from `b`'s on hands its last block to the
    /// next.
    fn shifted_right(&mut self, b: usize) {
        for (k, level) in self.levels.iter_mut().enumerate() {
            let w = span(k);
            let mut g = b / w;
            while w * (g + 1) < self.blocks.len() {
                if g + 1 == level.len() {
                    level.push(Vec::new());
                }
                for t in &self.blocks[w * (g + 1)].tallies {
                    tally_merge(&mut level[g], *t, false);
                    tally_merge(&mut level[g + 1], *t, true);
                }
                g += 1;
            }
        }
    }

    /// After an empty block `b` was removed (every later block moved one place back):
    /// at every level, each group from `b`'s on takes the first block of the next.
    fn shifted_left(&mut self, b: usize) {
        for (k, level) in self.levels.iter_mut().enumerate() {
            let w = span(k);
            let mut g = b / w;
            while w * (g + 1) - 1 < self.blocks.len() {
                for t in &self.blocks[w * (g + 1) - 1].tallies {
                    tally_merge(&mut level[g + 1], *t, false);
                    tally_merge(&mut level[g], *t, true);
                }
                g += 1;
            }
            level.truncate(self.blocks.len().div_ceil(w));
        }
    }

    /// Appends a slot that sorts after every slot already present (bulk loading).
    fn push_back(&mut self, slot: Slot) {
        match self.blocks.last_mut() {
            Some(block) if block.slots.len() < MAX_BLOCK => {
                block.slots.push(slot);
                block.add(&slot);
            }
            _ => {
                let mut block = Block {
                    slots: Vec::with_capacity(MAX_BLOCK),
                    before: self.counts,
                    ..Block::default()
                };
                block.slots.push(slot);
                block.add(&slot);
                self.blocks.push(block);
            }
        }
        self.levels_add(self.blocks.len() - 1, &slot);
        self.counts[slot.class()] += 1;
        self.len += 1;
    }

    /// Gives back the spare capacity of bulk-loaded blocks.
    fn shrink(&mut self) {
        for b in &mut self.blocks {
            b.slots.shrink_to_fit();
            b.tallies.shrink_to_fit();
        }
        self.blocks.shrink_to_fit();
        for level in &mut self.levels {
            for g in level.iter_mut() {
                g.shrink_to_fit();
            }
            level.shrink_to_fit();
        }
    }

    /// Removes the entry at `e`'s (timestamp, id); returns it, if there was one.
    fn remove(&mut self, e: &Entry) -> Option<Slot> {
        if self.blocks.is_empty() {
            return None;
        }
        let key = entry_key(e);
        let b = self.block_for(key);
        let block = &mut self.blocks[b];
        let pos = block.slots.partition_point(|x| x.order_key() < key);
        if block.slots.get(pos).map(|x| x.order_key() == key) != Some(true) {
            return None;
        }
        let old = block.slots.remove(pos);
        block.sub(&old);
        self.counts[old.class()] -= 1;
        self.len -= 1;
        let emptied = block.slots.is_empty();
        self.levels_sub(b, &old);
        self.bump_after(b, old.class(), -1);
        if emptied {
            // It counts nothing now: the blocks after it count the same without it.
            self.blocks.remove(b);
            self.shifted_left(b);
        }
        Some(old)
    }

    /// How many entries match `mask`.
    fn count(&self, mask: ClassMask) -> usize {
        if mask == ClassMask::ALL {
            self.len
        } else {
            mask.count(&self.counts)
        }
    }

    /// Position of the first entry that sorts strictly after `key`, as (block, index in
    /// block): a binary search.
    fn seek_key(&self, key: OrderKey) -> (usize, usize) {
        let b = self
            .blocks
            .partition_point(|b| b.slots.last().is_some_and(|l| l.order_key() <= key));
        match self.blocks.get(b) {
            Some(block) => (b, block.slots.partition_point(|x| x.order_key() <= key)),
            None => (b, 0),
        }
    }

    /// Position of the `n`th entry (from 0) the filter takes, as (block, index in block).
    /// Without leaders, a binary search over the blocks' counts before them; with
    /// leaders, a walk over the top level's group tallies, then at most `GROUP` groups'
    /// a level down, then block tallies. Inside the block, a count a chunk at a time from
    /// its nearer end (see [`Nth`]).
    fn seek_matching(&self, mut n: usize, f: &Filter<'_>) -> (usize, usize) {
        let end = (self.blocks.len(), 0);
        let nth = |b: usize, block: &Block, n: usize, matching: usize| {
            if matching == block.slots.len() {
                return (b, n);
            }
            f.with_test(Nth {
                slots: &block.slots,
                n,
                matching,
            })
            .map_or(end, |i| (b, i))
        };
        if f.leaders.is_empty() {
            let b = self
                .blocks
                .partition_point(|b| b.matching_through(f.mask) <= n);
            let Some(block) = self.blocks.get(b) else {
                return end;
            };
            let k = n - f.mask.count(&block.before);
            return nth(b, block, k, block.matching(f));
        }
        // Whole groups first, from the top level down: the group holding the `n`th is
        // one of the `GROUP` a level down from the one found above it.
        let mut first = 0;
        for k in (0..LEVELS).rev() {
            let w = span(k);
            let mut g = first / w;
            while let Some(tallies) = self.levels[k].get(g) {
                let here = tallies_matching(tallies, f);
                if n < here {
                    break;
                }
                n -= here;
                g += 1;
            }
            first = g * w;
        }
        for (b, block) in self.blocks.iter().enumerate().skip(first) {
            let here = block.matching(f);
            if n >= here {
                n -= here;
                continue;
            }
            return nth(b, block, n, here);
        }
        end
    }

    /// Up to `limit` entries the filter takes from position (block, index) on, in order;
    /// groups and blocks with none are skipped on their tallies and counts.
    fn take_from(
        &self,
        (mut b, mut index): (usize, usize),
        f: &Filter<'_>,
        limit: usize,
    ) -> Vec<Entry> {
        let mut out = Vec::with_capacity(limit.min(self.len));
        while out.len() < limit {
            let Some(block) = self.blocks.get(b) else {
                break;
            };
            if index == 0 {
                if !f.leaders.is_empty() {
                    // The largest span starting here without the leaders, if any.
                    let skip = (0..LEVELS).rev().find(|&k| {
                        b.is_multiple_of(span(k))
                            && tallies_matching(&self.levels[k][b / span(k)], f) == 0
                    });
                    if let Some(k) = skip {
                        b += span(k);
                        continue;
                    }
                }
                if block.matching(f) == 0 {
                    b += 1;
                    continue;
                }
            }
            f.with_test(Take {
                slots: block.slots.get(index..).unwrap_or_default(),
                out: &mut out,
                limit,
            });
            b += 1;
            index = 0;
        }
        out
    }

    fn iter(&self) -> impl Iterator<Item = Entry> + '_ {
        self.blocks
            .iter()
            .flat_map(|b| b.slots.iter())
            .map(Slot::unpack)
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

/// The index itself: one list of every entry, newest first. Leader filters use the
/// blocks' tallies (a block without the leader is skipped whole) and platform (and
/// kind) filters their class counts; the totals per leader are kept here.
#[derive(Debug, Default)]
pub struct FeedIndex {
    all: BlockList,
    /// Per leader, its entries per class (`total` of a leader filter); foldhash, as a
    /// page looks up each of its leaders here.
    by_leader: HashMap<u64, [u32; CLASSES], foldhash::fast::RandomState>,
}

impl FeedIndex {
    fn counted(&mut self, slot: &Slot) {
        self.by_leader.entry(slot.leader()).or_insert([0; CLASSES])[slot.class()] += 1;
    }

    fn uncounted(&mut self, slot: &Slot) {
        if let Some(counts) = self.by_leader.get_mut(&slot.leader()) {
            counts[slot.class()] -= 1;
            if counts.iter().all(|c| *c == 0) {
                self.by_leader.remove(&slot.leader());
            }
        }
    }

    /// Adds one post's entry, replacing the entry at the same (timestamp, id) if any.
    pub fn insert(&mut self, e: Entry) {
        let slot = Slot::pack(&e);
        match self.all.insert(&e) {
            Some(old) if old == slot => return,
            Some(old) => self.uncounted(&old),
            None => {}
        }
        self.counted(&slot);
    }

    /// Removes the entry at `e`'s (timestamp, id); false when there was none.
    pub fn remove(&mut self, e: &Entry) -> bool {
        match self.all.remove(e) {
            Some(old) => {
                self.uncounted(&old);
                true
            }
            None => false,
        }
    }

    /// Writes the index for a fast restart: a magic string, the caller's `tag`, the
    /// journal sequence `seq` it includes, the entry count, the slots newest first, and a
    /// CRC32 of all of it.
    pub fn write_snapshot(
        &self,
        w: &mut impl std::io::Write,
        tag: u64,
        seq: u64,
    ) -> std::io::Result<()> {
        let mut crc = crc32fast::Hasher::new();
        let mut put = |w: &mut dyn std::io::Write, bytes: &[u8]| -> std::io::Result<()> {
            crc.update(bytes);
            w.write_all(bytes)
        };
        put(w, SNAPSHOT_MAGIC)?;
        put(w, &tag.to_le_bytes())?;
        put(w, &seq.to_le_bytes())?;
        put(w, &(self.all.len as u64).to_le_bytes())?;
        for block in &self.all.blocks {
            let mut bytes = Vec::with_capacity(block.slots.len() * 16);
            for slot in &block.slots {
                bytes.extend_from_slice(&slot.timestamp_ms.to_le_bytes());
                bytes.extend_from_slice(&slot.packed.to_le_bytes());
            }
            put(w, &bytes)?;
        }
        let crc = crc.finalize();
        w.write_all(&crc.to_le_bytes())
    }

    /// Rebuilds an index from [`FeedIndex::write_snapshot`] output, or `None` when the
    /// bytes are not a whole, uncorrupted snapshot carrying `tag` and `seq`.
    pub fn from_snapshot(bytes: &[u8], tag: u64, seq: u64) -> Option<FeedIndex> {
        let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
        if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().ok()?) {
            return None;
        }
        let rest = body.strip_prefix(SNAPSHOT_MAGIC)?;
        let (tag_bytes, rest) = rest.split_at_checked(8)?;
        let (seq_bytes, rest) = rest.split_at_checked(8)?;
        let (count_bytes, slots) = rest.split_at_checked(8)?;
        if u64::from_le_bytes(tag_bytes.try_into().ok()?) != tag
            || u64::from_le_bytes(seq_bytes.try_into().ok()?) != seq
        {
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
            // Strictly newest first, with a platform code, or it is not a snapshot of ours.
            if previous.is_some_and(|p| p >= slot.order_key()) || slot.class() & 3 == 0 {
                return None;
            }
            previous = Some(slot.order_key());
            index.all.push_back(slot);
            index.counted(&slot);
        }
        index.shrink();
        Some(index)
    }

    /// Gives back the spare capacity bulk loading left.
    pub fn shrink(&mut self) {
        self.all.shrink();
        self.by_leader.shrink_to_fit();
    }

    /// Appends an entry that sorts after every entry already present (bulk loading,
    /// newest first); falls back to an insert when it does not.
    pub fn push_oldest(&mut self, e: Entry) {
        let older = self
            .all
            .blocks
            .last()
            .and_then(|b| b.slots.last())
            .is_none_or(|last| last.order_key() < entry_key(&e));
        if !older {
            return self.insert(e);
        }
        let slot = Slot::pack(&e);
        self.all.push_back(slot);
        self.counted(&slot);
    }

    /// The entry of the post at (timestamp, id), if indexed.
    pub fn get(&self, timestamp_ms: i64, post_id: u64) -> Option<Entry> {
        let list = &self.all;
        if list.blocks.is_empty() {
            return None;
        }
        let key = (std::cmp::Reverse(timestamp_ms), std::cmp::Reverse(post_id));
        let block = &list.blocks[list.block_for(key)];
        let pos = block.slots.partition_point(|x| x.order_key() < key);
        block
            .slots
            .get(pos)
            .filter(|x| x.order_key() == key)
            .map(Slot::unpack)
    }

    /// Every entry of one leader, newest first.
    pub fn leader_entries(&self, leader_id: u64) -> Vec<Entry> {
        if !self.by_leader.contains_key(&leader_id) {
            return Vec::new();
        }
        let leaders = [leader_id];
        let filter = Filter::new(&leaders, ClassMask::ALL);
        let n = self.count(&leaders, ClassMask::ALL);
        self.all.take_from((0, 0), &filter, n)
    }

    /// Number of posts in all.
    pub fn len(&self) -> usize {
        self.all.len
    }

    /// Number of posts of one platform.
    pub fn platform_len(&self, p: Platform) -> usize {
        self.all.count(ClassMask(0x1111 << (p.code() & 3)))
    }

    /// The newest entry, if any.
    pub fn newest(&self) -> Option<Entry> {
        self.all.iter().next()
    }

    /// Counts the posts of these leaders (none: all) in these classes, from maintained
    /// counts only. `leaders` must hold no duplicates.
    pub fn count(&self, leaders: &[u64], mask: ClassMask) -> usize {
        if leaders.is_empty() {
            return self.all.count(mask);
        }
        leaders
            .iter()
            .filter_map(|l| self.by_leader.get(l))
            .map(|counts| mask.count(counts))
            .sum()
    }

    /// One page of the query's posts.
    pub fn page(&self, query: &PostQuery) -> PageRef {
        self.page_of(
            query.leader_ids(),
            ClassMask::of(query),
            query.start(),
            query.limit(),
        )
    }

    /// `leaders` sorted, without duplicates (as [`PostQuery`] keeps them).
    fn page_of(&self, leaders: &[u64], mask: ClassMask, start: PageStart, limit: usize) -> PageRef {
        debug_assert!(leaders.windows(2).all(|w| w[0] < w[1]));
        let total = self.count(leaders, mask);
        let filter = Filter::new(leaders, mask);
        let (entries, has_next) = match start {
            _ if total == 0 => (Vec::new(), false),
            PageStart::Before(c) => {
                // Right after the cursor, found by binary search; one entry more says
                // whether a next page exists.
                let at = self.all.seek_key(cursor_key(&c));
                let mut entries = self.all.take_from(at, &filter, limit.saturating_add(1));
                let has_next = entries.len() > limit;
                entries.truncate(limit);
                (entries, has_next)
            }
            PageStart::Offset(n) if n >= total => (Vec::new(), false),
            PageStart::Offset(n) => {
                let at = self.all.seek_matching(n, &filter);
                let entries = self.all.take_from(at, &filter, limit);
                let has_next = n + entries.len() < total;
                (entries, has_next)
            }
        };
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
            kind: PostKind::Post,
        }
    }

    /// The slow, obviously right answer: filter and sort everything.
    fn naive(
        all: &[Entry],
        leaders: &[u64],
        mask: ClassMask,
        start: PageStart,
        limit: usize,
    ) -> (Vec<Entry>, usize, bool) {
        let mut v: Vec<Entry> = all
            .iter()
            .filter(|e| leaders.is_empty() || leaders.contains(&e.leader_id))
            .filter(|e| mask.has(e.class()))
            .copied()
            .collect();
        v.sort_by_key(entry_key);
        let total = v.len();
        let from = match start {
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
            raw in proptest::collection::vec((0i64..50, 0u64..4, 0u8..3, 0u8..4), 0..3000),
            leaders in proptest::collection::vec(0u64..4, 0..4),
            mask in proptest::option::of(1u16..),
            offset in 0usize..3100,
            limit in 1usize..40,
            cursor in (0i64..50, 0u64..4000),
        ) {
            let mut index = FeedIndex::default();
            let mut all = Vec::new();
            for (id, (ts, leader, p, kind)) in raw.into_iter().enumerate() {
                let e = Entry { kind: PostKind::from_code(kind), ..entry(ts, id as u64, leader, Platform::ALL[p as usize]) };
                index.insert(e);
                all.push(e);
            }
            let mut leaders = leaders;
            leaders.sort_unstable();
            leaders.dedup();
            let mask = mask.map_or(ClassMask::ALL, ClassMask);
            for start in [PageStart::Offset(offset), PageStart::Before(Cursor { timestamp_ms: cursor.0, post_id: cursor.1 })] {
                let got = index.page_of(&leaders, mask, start, limit);
                let (want, total, has_next) = naive(&all, &leaders, mask, start, limit);
                prop_assert_eq!(&got.entries, &want);
                prop_assert_eq!(got.has_next, has_next);
                prop_assert_eq!(got.total, total);
            }
        }

        #[test]
        fn removals_and_replacements_keep_the_counts_before_each_block(
            // Timestamps far apart, unlike the test above.
            raw in proptest::collection::vec((0i64..100_000, 0usize..5, 0u8..3, 0u8..4), 0..1500),
            gone in proptest::collection::vec(0usize..1500, 0..600),
            changed in proptest::collection::vec((0usize..1500, 0u8..3, proptest::option::of(0usize..5)), 0..300),
            leaders in proptest::collection::vec(0usize..6, 0..7),
            mask in proptest::option::of(1u16..),
            offset in 0usize..1600,
            cursor in (0i64..100_000, 0u64..1500),
        ) {
            // Leader ids near and far apart (a filter of them tests one id, a set within
            // 64 ids, or searches), and one no post has.
            const IDS: [u64; 6] = [0, 3, 63, 70, 1000, 64];
            let mut index = FeedIndex::default();
            let mut all: Vec<Option<Entry>> = Vec::new();
            for (id, (ts, leader, p, kind)) in raw.into_iter().enumerate() {
                let e = Entry { kind: PostKind::from_code(kind), ..entry(ts, id as u64, IDS[leader], Platform::ALL[p as usize]) };
                index.insert(e);
                all.push(Some(e));
            }
            for i in gone {
                if let Some(e) = all.get_mut(i).and_then(Option::take) {
                    prop_assert!(index.remove(&e));
                }
            }
            // The same post again with another platform (or leader): its entry is replaced
            // in place.
            for (i, p, leader) in changed {
                if let Some(Some(e)) = all.get_mut(i) {
                    e.platform = Platform::ALL[p as usize];
                    if let Some(l) = leader {
                        e.leader_id = IDS[l];
                    }
                    index.insert(*e);
                }
            }
            assert_counts_hold(&index);
            let all: Vec<Entry> = all.into_iter().flatten().collect();
            let mut leaders: Vec<u64> = leaders.into_iter().map(|l| IDS[l]).collect();
            leaders.sort_unstable();
            leaders.dedup();
            let mask = mask.map_or(ClassMask::ALL, ClassMask);
            for start in [PageStart::Offset(offset), PageStart::Before(Cursor { timestamp_ms: cursor.0, post_id: cursor.1 })] {
                let got = index.page_of(&leaders, mask, start, 20);
                let (want, total, has_next) = naive(&all, &leaders, mask, start, 20);
                prop_assert_eq!(&got.entries, &want);
                prop_assert_eq!(got.has_next, has_next);
                prop_assert_eq!(got.total, total);
            }
            for l in IDS {
                let (want, _, _) = naive(&all, &[l], ClassMask::ALL, PageStart::Offset(0), usize::MAX);
                prop_assert_eq!(index.leader_entries(l), want);
            }
        }
    }

    /// Every block's counts and tallies, and every group's tallies, recomputed from the
    /// slots.
    fn assert_counts_hold(index: &FeedIndex) {
        let list = &index.all;
        for (k, level) in list.levels.iter().enumerate() {
            let w = span(k);
            assert_eq!(level.len(), list.blocks.len().div_ceil(w), "level {k}");
            for (g, group) in level.iter().enumerate() {
                let mut want = Block {
                    slots: list.blocks[g * w..list.blocks.len().min((g + 1) * w)]
                        .iter()
                        .flat_map(|b| b.slots.iter().copied())
                        .collect(),
                    ..Block::default()
                };
                want.recount();
                assert_eq!(group, &want.tallies, "level {k} group {g}");
            }
        }
        let mut seen = [0u32; CLASSES];
        for (b, block) in list.blocks.iter().enumerate() {
            let mut want = block.clone();
            want.recount();
            assert_eq!((block.counts, &block.tallies), (want.counts, &want.tallies));
            assert_eq!(block.before, seen, "counts before block {b}");
            for (s, c) in seen.iter_mut().zip(block.counts) {
                *s += c;
            }
        }
        assert_eq!(seen, list.counts);
        let mut leaders: HashMap<u64, [u32; CLASSES], _> = HashMap::default();
        for s in list.blocks.iter().flat_map(|b| b.slots.iter()) {
            leaders.entry(s.leader()).or_insert([0; CLASSES])[s.class()] += 1;
        }
        assert_eq!(leaders, index.by_leader);
    }

    proptest! {
        #[test]
        fn counts_hold_through_inserts_and_removals(
            raw in proptest::collection::vec((0i64..40, 0u64..5, 0u8..3, 0u8..4), 0..1500),
            removals in proptest::collection::vec(0usize..1500, 0..1500),
            bulk in any::<bool>(),
        ) {
            let mut index = FeedIndex::default();
            let entries: Vec<Entry> = raw
                .into_iter()
                .enumerate()
                .map(|(id, (ts, leader, p, kind))| Entry {
                    kind: PostKind::from_code(kind),
                    ..entry(ts, id as u64, leader, Platform::ALL[p as usize])
                })
                .collect();
            if bulk {
                let mut sorted = entries.clone();
                sorted.sort_by_key(entry_key);
                sorted.into_iter().for_each(|e| index.push_oldest(e));
            } else {
                entries.iter().for_each(|e| index.insert(*e));
            }
            assert_counts_hold(&index);
            for r in removals {
                if let Some(e) = entries.get(r) {
                    index.remove(e);
                }
            }
            assert_counts_hold(&index);
        }
    }

    #[test]
    fn a_leader_test_takes_exactly_its_leaders() {
        for leaders in [
            vec![],
            vec![7],
            vec![0, 63],
            vec![5, 6, 68],
            vec![0, 64],
            vec![3, 1000, MAX_LEADER_ID - 1],
        ] {
            let f = Filter::new(&leaders, ClassMask::ALL);
            for l in [0, 1, 5, 6, 7, 63, 64, 68, 69, 1000, MAX_LEADER_ID - 1] {
                let slot = Slot::pack(&entry(1, 1, l, Platform::X));
                struct One(u64);
                impl SlotJob for One {
                    type Out = bool;
                    fn run(self, test: impl Fn(u64) -> bool + Copy) -> bool {
                        test(self.0)
                    }
                }
                let want = leaders.is_empty() || leaders.contains(&l);
                assert_eq!(f.with_test(One(slot.packed)), want, "{leaders:?} {l}");
                if leaders.is_empty() {
                    continue; // tallies are read for leader filters only
                }
                let tallies = [(tally_key(&slot) << TALLY_BITS) | 3];
                assert_eq!(
                    tallies_matching(&tallies, &f),
                    if want { 3 } else { 0 },
                    "{leaders:?} {l}"
                );
            }
        }
    }

    #[test]
    fn a_platform_filter_is_the_platforms_posts() {
        let mut index = FeedIndex::default();
        for id in 0..5000u64 {
            index.insert(entry(
                id as i64,
                id,
                id % 3,
                Platform::ALL[(id % 7 % 3) as usize],
            ));
        }
        let q = PostQuery::newest(30)
            .platform(Some(Platform::News))
            .starting(PageStart::Offset(900));
        let page = index.page(&q);
        assert_eq!(page.total, index.platform_len(Platform::News));
        assert!(page.entries.iter().all(|e| e.platform == Platform::News));
        let q = q.leaders([1, 2]);
        let page = index.page(&q);
        assert!(page
            .entries
            .iter()
            .all(|e| e.platform == Platform::News && e.leader_id != 0));
        assert_eq!(page.entries.len(), 30);
    }

    #[test]
    fn a_kinds_filter_is_the_kinds_posts() {
        use crate::domain::post::KindSet;
        let mut index = FeedIndex::default();
        for id in 0..4000u64 {
            index.insert(Entry {
                kind: PostKind::from_code((id % 5 % 4) as u8),
                ..entry(id as i64, id, id % 3, Platform::ALL[(id % 7 % 3) as usize])
            });
        }
        let kinds = KindSet::of([PostKind::Quote, PostKind::Reply]);
        for (leaders, platform) in [
            (vec![], None),
            (vec![], Some(Platform::News)),
            (vec![1u64], None),
            (vec![0, 2], Some(Platform::X)),
        ] {
            let q = PostQuery::newest(25)
                .leaders(leaders.clone())
                .platform(platform)
                .kinds(kinds)
                .starting(PageStart::Offset(300));
            let page = index.page(&q);
            let want: Vec<Entry> = index
                .page(&PostQuery::newest(4000))
                .entries
                .into_iter()
                .filter(|e| leaders.is_empty() || leaders.contains(&e.leader_id))
                .filter(|e| platform.is_none_or(|p| e.platform == p))
                .filter(|e| kinds.contains(e.kind))
                .collect();
            assert_eq!(page.total, want.len());
            assert_eq!(page.entries, want[300..325].to_vec());
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
            index.count(&[1], ClassMask::ALL),
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
            index.insert(Entry {
                kind: PostKind::from_code((id % 4) as u8),
                ..entry(
                    (id % 500) as i64,
                    id,
                    id % 7,
                    Platform::ALL[(id % 3) as usize],
                )
            });
        }
        let mut bytes = Vec::new();
        index.write_snapshot(&mut bytes, 42, 9).unwrap();
        let back = FeedIndex::from_snapshot(&bytes, 42, 9).expect("valid snapshot");
        // Its counts, tallies and every level's groups rebuilt as inserting made them.
        assert_counts_hold(&back);
        let q = PostQuery::newest(50)
            .leaders([3])
            .platform(Some(Platform::News))
            .starting(PageStart::Offset(5));
        assert_eq!(
            back.page(&PostQuery::newest(3000)),
            index.page(&PostQuery::newest(3000))
        );
        assert_eq!(back.page(&q), index.page(&q));
        assert_eq!(back.leader_entries(3), index.leader_entries(3));
        assert!(
            FeedIndex::from_snapshot(&bytes, 43, 9).is_none(),
            "another tag"
        );
        assert!(
            FeedIndex::from_snapshot(&bytes, 42, 8).is_none(),
            "another journal position"
        );
        for e in index.leader_entries(3) {
            assert_eq!(Entry::from_bytes(&e.to_bytes()), Some(e));
        }
        let mut flipped = bytes.clone();
        flipped[100] ^= 1;
        assert!(
            FeedIndex::from_snapshot(&flipped, 42, 9).is_none(),
            "a flipped bit"
        );
        assert!(
            FeedIndex::from_snapshot(&bytes[..bytes.len() - 20], 42, 9).is_none(),
            "truncated"
        );
        assert!(FeedIndex::from_snapshot(&[], 42, 9).is_none());
    }

    #[test]
    fn slots_keep_large_ids_every_platform_and_kind() {
        for p in Platform::ALL {
            for kind in PostKind::ALL {
                let e = Entry {
                    kind,
                    ..entry(-5, MAX_POST_ID - 1, MAX_LEADER_ID - 1, p)
                };
                assert_eq!(Slot::pack(&e).unpack(), e);
                assert_eq!(Slot::pack(&e).class(), e.class());
            }
        }
    }

    #[test]
    fn inserting_twice_is_idempotent_and_a_re_add_replaces() {
        let mut index = FeedIndex::default();
        let e = entry(1, 1, 1, Platform::X);
        index.insert(e);
        index.insert(e);
        assert_eq!(index.len(), 1);
        assert_eq!(index.count(&[1], ClassMask::ALL), 1);
        index.insert(Entry { leader_id: 2, ..e });
        assert_eq!(index.len(), 1);
        assert_eq!(
            (
                index.count(&[1], ClassMask::ALL),
                index.count(&[2], ClassMask::ALL)
            ),
            (0, 1)
        );
    }

    #[test]
    fn bulk_loading_newest_first_equals_inserting() {
        let mut a = FeedIndex::default();
        let mut b = FeedIndex::default();
        for id in (0..4000u64).rev() {
            let e = entry(id as i64 / 3, id, id % 5, Platform::ALL[(id % 3) as usize]);
            a.push_oldest(e);
            b.insert(e);
        }
        a.push_oldest(entry(5000, 9999, 1, Platform::X)); // out of order: inserted
        b.insert(entry(5000, 9999, 1, Platform::X));
        assert_eq!(
            a.page(&PostQuery::newest(5000)),
            b.page(&PostQuery::newest(5000))
        );
        assert_eq!(a.leader_entries(1), b.leader_entries(1));
    }
}

/// Instructions per page, for callgrind (`--toggle-collect=*feed_bench_page*`): a 100k
/// index shaped like `examples/seed_store`'s (post n: id n + 1, leader n % 10 + 1, one a
/// minute, all X) and 2,000 pages of the shape `FEED_BENCH_SHAPE` drawn like
/// `benches/load/feed_pages.lua`. Meaningful only with `MAX_BLOCK` and `GROUP` at their
/// release values.
#[cfg(test)]
mod bench {
    use super::*;

    #[inline(never)]
    fn feed_bench_page(index: &FeedIndex, q: &PostQuery) -> PageRef {
        index.page(q)
    }

    #[test]
    #[ignore]
    fn feed_bench() {
        const T0: i64 = 1_735_689_600_000;
        let posts: u64 = std::env::var("FEED_BENCH_POSTS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(100_000);
        let shape = std::env::var("FEED_BENCH_SHAPE").unwrap_or_else(|_| "page".into());
        let mut index = FeedIndex::default();
        for n in (0..posts).rev() {
            index.push_oldest(Entry {
                timestamp_ms: T0 + n as i64 * 60_000,
                post_id: n + 1,
                leader_id: n % 10 + 1,
                platform: Platform::X,
                kind: PostKind::Post,
            });
        }
        index.shrink();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move |lo: u64, hi: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            lo + seed % (hi - lo + 1)
        };
        let three = |rand: &mut dyn FnMut(u64, u64) -> u64| {
            let a = rand(1, 10);
            let b = (a + rand(0, 8)) % 10 + 1;
            let mut c = b;
            while c == a || c == b {
                c = rand(1, 10);
            }
            [a, b, c]
        };
        let cursor = |rand: &mut dyn FnMut(u64, u64) -> u64| {
            let n = posts - rand(1, posts);
            PageStart::Before(Cursor {
                timestamp_ms: T0 + n as i64 * 60_000,
                post_id: n + 1,
            })
        };
        let pages = posts / 20;
        let mut sum = 0usize;
        for _ in 0..2000 {
            let q = PostQuery::newest(20);
            let q = match shape.as_str() {
                "page" => q.starting(PageStart::Offset((rand(1, pages) as usize - 1) * 20)),
                "cursor" => q.starting(cursor(&mut rand)),
                "leader" => q
                    .leaders([rand(1, 10)])
                    .starting(PageStart::Offset((rand(1, pages / 10) as usize - 1) * 20)),
                "leaders" => q.leaders(three(&mut rand)).starting(PageStart::Offset(
                    (rand(1, pages * 3 / 10) as usize - 1) * 20,
                )),
                "source" => q
                    .platform(Some(Platform::X))
                    .starting(PageStart::Offset((rand(1, pages) as usize - 1) * 20)),
                "leader_source" => q
                    .platform(Some(Platform::X))
                    .leaders([rand(1, 10)])
                    .starting(PageStart::Offset((rand(1, pages / 10) as usize - 1) * 20)),
                "leaders_cursor" => q.leaders(three(&mut rand)).starting(cursor(&mut rand)),
                other => panic!("unknown shape {other}"),
            };
            let page = feed_bench_page(&index, &q);
            sum += page.total + usize::from(page.has_next);
            sum += page
                .entries
                .iter()
                .map(|e| e.post_id as usize)
                .sum::<usize>();
        }
        eprintln!("{shape}: checksum {sum}");
    }

    /// Wall-clock cost of the write side at `FEED_BENCH_POSTS` posts (default 1M): a
    /// snapshot read back, then inserts of new posts (newest first, so every block's
    /// counts before it are bumped) and removals. Indicative only (a shared machine).
    #[test]
    #[ignore]
    fn feed_bench_writes() {
        let posts: u64 = std::env::var("FEED_BENCH_POSTS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1_000_000);
        let entry = |n: u64| Entry {
            timestamp_ms: n as i64 * 60_000,
            post_id: n + 1,
            leader_id: n % 10 + 1,
            platform: Platform::X,
            kind: PostKind::Post,
        };
        let mut index = FeedIndex::default();
        for n in (0..posts).rev() {
            index.push_oldest(entry(n));
        }
        let mut bytes = Vec::new();
        index.write_snapshot(&mut bytes, 1, 1).unwrap();
        let t = std::time::Instant::now();
        let mut index = FeedIndex::from_snapshot(&bytes, 1, 1).unwrap();
        let load = t.elapsed();
        let t = std::time::Instant::now();
        for n in posts..posts + 10_000 {
            index.insert(entry(n));
        }
        let insert = t.elapsed() / 10_000;
        let t = std::time::Instant::now();
        for n in (posts..posts + 10_000).step_by(2) {
            assert!(index.remove(&entry(n)));
        }
        let remove = t.elapsed() / 5_000;
        eprintln!(
            "{} blocks: snapshot loaded in {load:?}, insert {insert:?}, removal {remove:?}",
            index.all.blocks.len()
        );
    }
}
