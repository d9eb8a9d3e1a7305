//! What a test scripts: the generated users and posts of a [`FakeScript`], and the
//! changes made at run time (new posts, edits).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use chrono::{TimeZone, Utc};

use crate::x_api::dto::{Attachments, Media, NoteTweet, PublicMetrics, Tweet, User};
use crate::x_api::fake::State;

/// X's snowflake epoch, unix milliseconds.
const SNOWFLAKE_EPOCH_MS: i64 = 1_288_834_974_657;
/// Generated posts start here (2026-01-01T00:00:00Z) and are one second apart.
const GENERATED_START_MS: i64 = 1_767_225_600_000;

/// Deterministic content for the fake: `users` accounts with `posts_per_user` posts each.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeScript {
    pub users: u32,
    pub posts_per_user: u32,
    /// The bearer token the fake accepts.
    pub token: String,
    /// Latency added to every API call.
    pub latency: Duration,
    /// actix-web workers (threads) serving the fake.
    pub workers: usize,
}

impl Default for FakeScript {
    fn default() -> FakeScript {
        FakeScript {
            users: 3,
            posts_per_user: 20,
            token: "fake-bearer-token".to_string(),
            latency: Duration::ZERO,
            workers: 1,
        }
    }
}

/// The username of generated user number `idx` (`leader0000`, `leader0001`, ...).
pub fn username(idx: u32) -> String {
    format!("leader{idx:04}")
}

#[derive(Debug, Clone)]
pub(super) struct FakeTweet {
    pub(super) tweet: Tweet,
    pub(super) media: Vec<Media>,
}

#[derive(Debug)]
pub(super) struct FakeUser {
    pub(super) user: User,
    pub(super) idx: u64,
    pub(super) suspended: bool,
    /// Posts by id (ids grow with time, as snowflakes do).
    pub(super) tweets: BTreeMap<u64, FakeTweet>,
}

fn snowflake(ts_ms: i64, low: u64) -> u64 {
    let since = u64::try_from(ts_ms - SNOWFLAKE_EPOCH_MS).unwrap_or(0);
    (since << 22) | (low & 0x1F_FFFF)
}

fn snowflake_ms(id: u64) -> i64 {
    i64::try_from(id >> 22).unwrap_or(0) + SNOWFLAKE_EPOCH_MS
}

fn rfc3339(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

const POSITIVE: [&str; 3] = [
    "Proud of our wonderful volunteers, a great day for the city",
    "Thank you all, what a fantastic and happy turnout",
    "Excellent news: the new park opens, I love it",
];
const NEGATIVE: [&str; 2] = [
    "This decision is terrible and the delays are awful",
    "Sad and angry about the failed vote, a bad day",
];
const NEUTRAL: [&str; 3] = [
    "Meeting the transport committee at noon",
    "The budget hearing moved to Thursday",
    "Statement on the harbour report",
];

/// Where X cuts `text` of a long post (the rest is in `note_tweet`).
const LONG_POST_CHARS: usize = 280;

fn generated_text(user: u64, seq: u64) -> String {
    let pick = (user * 7 + seq * 13) % 8;
    let base = match pick {
        0..=2 => POSITIVE[(pick % 3) as usize],
        3..=4 => NEGATIVE[(pick % 2) as usize],
        _ => NEUTRAL[(pick % 3) as usize],
    };
    format!("{base} (#{seq})")
}

fn make_tweet(user: &User, user_idx: u64, id: u64, seq: u64, history: Vec<String>) -> FakeTweet {
    let mut media = Vec::new();
    if seq.is_multiple_of(3) {
        media.push(Media {
            media_key: format!("3_{id}"),
            kind: "photo".into(),
            url: Some(format!("https://pbs.twimg.com/media/{id}.jpg")),
            preview_image_url: None,
        });
    }
    if seq % 10 == 5 {
        media.push(Media {
            media_key: format!("7_{id}"),
            kind: "video".into(),
            url: None,
            preview_image_url: Some(format!("https://pbs.twimg.com/ext_tw_video_thumb/{id}.jpg")),
        });
    }
    let history = if history.is_empty() {
        vec![id.to_string()]
    } else {
        history
    };
    FakeTweet {
        tweet: Tweet {
            id: id.to_string(),
            text: generated_text(user_idx, seq),
            created_at: Some(rfc3339(snowflake_ms(id))),
            author_id: Some(user.id.clone()),
            lang: Some("en".into()),
            public_metrics: Some(PublicMetrics {
                retweet_count: (seq * 3 + user_idx) % 500,
                reply_count: (seq * 5 + user_idx) % 200,
                like_count: (seq * 37 + user_idx * 11) % 5000,
                quote_count: seq % 17,
                bookmark_count: None,
                impression_count: None,
            }),
            edit_history_tweet_ids: history,
            attachments: (!media.is_empty()).then(|| Attachments {
                media_keys: media.iter().map(|m| m.media_key.clone()).collect(),
            }),
            ..Tweet::default()
        },
        media,
    }
}

impl State {
    pub(super) fn generate(script: &FakeScript) -> State {
        let mut state = State {
            token: script.token.clone(),
            users: Vec::new(),
            by_name: HashMap::new(),
            by_id: HashMap::new(),
            faults: VecDeque::new(),
            latency: script.latency,
            window_start_ms: Utc::now().timestamp_millis(),
            window_used: 0,
            recent: VecDeque::new(),
        };
        for u in 0..script.users {
            state.add_user(&username(u), &format!("Leader {u}"));
        }
        let n_users = i64::from(script.users.max(1));
        for (u_pos, user) in state.users.iter_mut().enumerate() {
            for seq in 0..u64::from(script.posts_per_user) {
                let ts = GENERATED_START_MS + (seq as i64 * n_users + u_pos as i64) * 1000;
                let id = snowflake(ts, user.idx);
                // Every eleventh post was edited once before we first see it: its chain
                // names an earlier id that the timeline no longer shows.
                let history = if seq % 11 == 7 {
                    vec![snowflake(ts - 1, user.idx).to_string(), id.to_string()]
                } else {
                    Vec::new()
                };
                let t = make_tweet(&user.user, user.idx, id, seq, history);
                user.tweets.insert(id, t);
            }
        }
        state
    }

    pub(super) fn add_user(&mut self, username: &str, name: &str) -> usize {
        if let Some(pos) = self.by_name.get(&username.to_ascii_lowercase()) {
            return *pos;
        }
        let idx = self.users.len() as u64;
        let id = (2_000_000 + idx).to_string();
        let user = User {
            id: id.clone(),
            name: name.to_string(),
            username: username.to_string(),
            profile_image_url: Some(format!(
                "https://pbs.twimg.com/profile_images/{id}/avatar_normal.jpg"
            )),
        };
        let pos = self.users.len();
        self.users.push(FakeUser {
            user,
            idx,
            suspended: false,
            tweets: BTreeMap::new(),
        });
        self.by_name.insert(username.to_ascii_lowercase(), pos);
        self.by_id.insert(id, pos);
        pos
    }

    pub(super) fn next_id(user: &FakeUser) -> u64 {
        let last_ms = user
            .tweets
            .keys()
            .next_back()
            .map(|id| snowflake_ms(*id))
            .unwrap_or(0);
        let ts = Utc::now().timestamp_millis().max(last_ms + 1);
        snowflake(ts, user.idx)
    }

    pub(super) fn add_posts(&mut self, pos: usize, count: u32) -> Vec<String> {
        let user = &mut self.users[pos];
        let mut ids = Vec::new();
        for _ in 0..count {
            let id = State::next_id(user);
            let seq = user.tweets.len() as u64;
            let t = make_tweet(&user.user, user.idx, id, seq, Vec::new());
            user.tweets.insert(id, t);
            ids.push(id.to_string());
        }
        ids
    }

    /// A new post saying `text`. Longer than 280 characters, it is sent as X sends a long
    /// post: `text` holds the first 280 characters and `note_tweet.text` the whole.
    pub(super) fn add_text_post(&mut self, pos: usize, text: &str) -> String {
        let user = &mut self.users[pos];
        let id = State::next_id(user);
        let seq = user.tweets.len() as u64;
        let mut t = make_tweet(&user.user, user.idx, id, seq, Vec::new());
        if text.chars().count() > LONG_POST_CHARS {
            t.tweet.text = text.chars().take(LONG_POST_CHARS).collect();
            t.tweet.note_tweet = Some(NoteTweet {
                text: text.to_string(),
            });
        } else {
            t.tweet.text = text.to_string();
        }
        user.tweets.insert(id, t);
        id.to_string()
    }

    pub(super) fn edit_post(&mut self, old_id: u64, text: &str) -> Option<String> {
        let user = self
            .users
            .iter_mut()
            .find(|u| u.tweets.contains_key(&old_id))?;
        let mut t = user.tweets.remove(&old_id)?;
        let new_id = State::next_id(user);
        t.tweet.id = new_id.to_string();
        t.tweet.text = text.to_string();
        t.tweet.created_at = Some(rfc3339(snowflake_ms(new_id)));
        t.tweet.edit_history_tweet_ids.push(new_id.to_string());
        user.tweets.insert(new_id, t);
        Some(new_id.to_string())
    }
}
