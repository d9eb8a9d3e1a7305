//! What readers ask storage for: a [`PostQuery`] names the posts (leaders, platform, kinds),
//! where the page starts (an offset or a cursor) and how many. Normalised on the way in
//! (leader ids sorted, duplicates dropped), so equal queries compare and hash equal and
//! a cache can key on them.

use crate::domain::cursor::Cursor;
use crate::domain::post::{KindSet, Platform};

/// Where a page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PageStart {
    /// Skip this many posts (page-number paging).
    Offset(usize),
    /// The posts strictly older than this cursor.
    Before(Cursor),
}

/// A page of posts, newest first: which posts, from where, how many.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PostQuery {
    /// Invariant: sorted, no duplicates. Empty: every leader.
    leaders: Vec<u64>,
    platform: Option<Platform>,
    kinds: KindSet,
    start: PageStart,
    limit: usize,
}

impl PostQuery {
    /// The newest `limit` posts of every leader and platform.
    pub fn newest(limit: usize) -> PostQuery {
        PostQuery {
            leaders: Vec::new(),
            platform: None,
            kinds: KindSet::ALL,
            start: PageStart::Offset(0),
            limit,
        }
    }

    /// Only these leaders' posts (none: every leader).
    pub fn leaders(mut self, leaders: impl IntoIterator<Item = u64>) -> PostQuery {
        self.leaders = leaders.into_iter().collect();
        self.leaders.sort_unstable();
        self.leaders.dedup();
        self
    }

    /// Only posts of this platform (`None`: every platform).
    pub fn platform(mut self, platform: Option<Platform>) -> PostQuery {
        self.platform = platform;
        self
    }

    /// Only posts of these kinds (`KindSet::ALL`: every kind).
    pub fn kinds(mut self, kinds: KindSet) -> PostQuery {
        self.kinds = kinds;
        self
    }

    /// Starts the page at `start`.
    pub fn starting(mut self, start: PageStart) -> PostQuery {
        self.start = start;
        self
    }

    /// The leaders asked for, sorted (empty: every leader).
    pub fn leader_ids(&self) -> &[u64] {
        &self.leaders
    }

    /// The platform asked for, if any.
    pub fn platform_filter(&self) -> Option<Platform> {
        self.platform
    }

    /// The kinds asked for (`KindSet::ALL` when not filtered).
    pub fn kinds_filter(&self) -> KindSet {
        self.kinds
    }

    /// Where the page starts.
    pub fn start(&self) -> PageStart {
        self.start
    }

    /// Most posts on the page.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_filters_in_another_spelling_are_the_same_query() {
        let a = PostQuery::newest(20).leaders([3, 1, 3]);
        let b = PostQuery::newest(20).leaders([1, 3]);
        assert_eq!(a, b);
        assert_eq!(a.leader_ids(), &[1, 3]);
        assert_ne!(a, b.clone().starting(PageStart::Offset(20)));
    }
}
