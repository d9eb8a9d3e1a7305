//! Synthetic posts for benches and load tests: deterministic, X-shaped, spread over
//! leaders and one post a minute going back in time.

#![allow(dead_code)]

use std::collections::BTreeMap;

use amber::domain::leader::LeaderDraft;
use amber::domain::post::{Author, Counts, NewPost, Platform, PostDetails, Verification};
use amber::domain::sentiment::Sentiment;
use amber::storage::Store;

/// Leaders every synthetic store has.
pub const LEADERS: u64 = 10;
/// First X id used; ids grow by one per post.
pub const FIRST_X_ID: u64 = 1_800_000_000_000_000_000;
/// Timestamp of post 0 (2025-01-01T00:00:00Z), ms.
pub const T0_MS: i64 = 1_735_689_600_000;

/// Post number `n` as an ingested X post.
pub fn x_post(n: u64) -> NewPost {
    let leader_id = n % LEADERS + 1;
    let ext = (FIRST_X_ID + n).to_string();
    let handle = format!("leader{leader_id}");
    NewPost {
        leader_id,
        platform: Platform::X,
        content: format!(
            "Post number {n}: good progress on the district roads and water supply today. #update"
        ),
        timestamp_ms: T0_MS + (n as i64) * 60_000,
        sentiment: Sentiment::Positive,
        sentiment_score: 0.4404,
        platform_post_id: Some(ext),
        verification: Verification::Unverified,
        author: Author {
            id: Some(format!("{}", 9_000 + leader_id)),
            handle: Some(handle),
            name: Some(format!("Leader {leader_id}")),
            avatar_url: Some(format!(
                "https://pbs.twimg.com/profile_images/{leader_id}.jpg"
            )),
        },
        details: PostDetails {
            counts: Some(Counts {
                likes: n % 1000,
                comments: n % 97,
                shares: n % 31,
                quotes: 0,
                bookmarks: None,
                impressions: None,
            }),
            language: Some("en".into()),
            ..PostDetails::default()
        },
        client_metrics: None,
        edit_history: Vec::new(),
    }
}

/// Creates the synthetic leaders in an empty store.
pub fn add_leaders(store: &mut Store) {
    for i in 1..=LEADERS {
        let mut handles = BTreeMap::new();
        handles.insert("x".to_string(), format!("leader{i}"));
        let draft = LeaderDraft::parse(&format!("Leader {i}"), handles, vec!["roads".into()], None)
            .expect("draft");
        store.create_leader(draft, T0_MS).expect("leader");
    }
}

/// Fills a store with posts `0..n` in batches of `batch`.
pub fn fill(store: &mut Store, n: u64, batch: u64) {
    let mut start = 0;
    while start < n {
        let end = (start + batch).min(n);
        store
            .insert_posts((start..end).map(x_post).collect())
            .expect("insert");
        start = end;
    }
}
