//! What a test scripts: the generated users and posts of a [`FakeScript`], and the
//! changes made at run time (new posts of every kind, edits, deletions, withholdings,
//! moving counts). The posts are kept as X's model, not as wire JSON: `render.rs` turns
//! one into X's JSON for the fields a request asks.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Duration;

use chrono::Utc;
use serde::Deserialize;

use crate::x_api::dto::User;
use crate::x_api::fake::State;

/// X's snowflake epoch, unix milliseconds.
const SNOWFLAKE_EPOCH_MS: i64 = 1_288_834_974_657;
/// Generated posts start here (2026-01-01T00:00:00Z) and are one second apart.
const GENERATED_START_MS: i64 = 1_767_225_600_000;
/// Where X cuts `text` of a long post (the rest is in `note_tweet`).
pub(super) const LONG_POST_CHARS: usize = 280;
/// Where X cuts the `RT @handle: ` text of a repost.
const REPOST_TEXT_CHARS: usize = 140;

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

/// One media item to attach to a scripted post.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MediaSpec {
    /// `photo`, `video` or `animated_gif`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A video's length (default 30 s for a video; GIFs have none).
    #[serde(default)]
    pub duration_ms: Option<u64>,
}

impl MediaSpec {
    pub fn photo() -> MediaSpec {
        MediaSpec {
            kind: "photo".into(),
            duration_ms: None,
        }
    }

    pub fn video(duration_ms: u64) -> MediaSpec {
        MediaSpec {
            kind: "video".into(),
            duration_ms: Some(duration_ms),
        }
    }

    pub fn gif() -> MediaSpec {
        MediaSpec {
            kind: "animated_gif".into(),
            duration_ms: None,
        }
    }
}

/// A post to script (`POST /_fake/users/{username}/posts` with a `post` body, or
/// [`FakeX::add_post`](crate::x_api::fake::FakeX::add_post)). At most one of `reposts`,
/// `quotes`, `replies_to` is set; a repost's own text is X's `RT @handle: ...`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct PostSpec {
    /// What the author wrote (over 280 characters: a long post with `note_tweet`).
    #[serde(default)]
    pub text: Option<String>,
    /// The id of the post this one reposts.
    #[serde(default)]
    pub reposts: Option<String>,
    /// The id of the post this one quotes.
    #[serde(default)]
    pub quotes: Option<String>,
    /// The id of the post this one answers (an answer to one's own post continues a thread).
    #[serde(default)]
    pub replies_to: Option<String>,
    #[serde(default)]
    pub media: Vec<MediaSpec>,
    /// Links in the text: each is appended as a `https://t.co/...` link, with its
    /// `expanded_url` and `display_url` in `entities.urls`.
    #[serde(default)]
    pub links: Vec<String>,
}

/// How a post refers to another (`referenced_tweets[].type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RefKind {
    Retweeted,
    Quoted,
    RepliedTo,
}

impl RefKind {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            RefKind::Retweeted => "retweeted",
            RefKind::Quoted => "quoted",
            RefKind::RepliedTo => "replied_to",
        }
    }
}

/// `public_metrics`, all six counts (X's schema requires every one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub struct FakeCounts {
    #[serde(default, alias = "repost_count")]
    pub retweet_count: u64,
    #[serde(default)]
    pub reply_count: u64,
    #[serde(default)]
    pub like_count: u64,
    #[serde(default)]
    pub quote_count: u64,
    #[serde(default)]
    pub bookmark_count: u64,
    #[serde(default)]
    pub impression_count: u64,
}

#[derive(Debug, Clone)]
pub(super) struct FakeVariant {
    pub(super) bit_rate: Option<u64>,
    pub(super) content_type: &'static str,
    pub(super) url: String,
}

#[derive(Debug, Clone)]
pub(super) struct FakeMedia {
    pub(super) media_key: String,
    pub(super) kind: String,
    pub(super) url: Option<String>,
    pub(super) preview_image_url: Option<String>,
    pub(super) width: u32,
    pub(super) height: u32,
    pub(super) duration_ms: Option<u64>,
    pub(super) variants: Vec<FakeVariant>,
}

/// A link of the text: `url` (t.co) is what the text says, `expanded_url` where it goes.
#[derive(Debug, Clone)]
pub(super) struct FakeLink {
    pub(super) url: String,
    pub(super) expanded_url: String,
    pub(super) display_url: String,
}

/// One post as X holds it.
#[derive(Debug, Clone)]
pub(super) struct FakePost {
    pub(super) id: u64,
    pub(super) author_id: String,
    /// The whole text, links as their t.co form.
    pub(super) text: String,
    pub(super) lang: &'static str,
    pub(super) counts: FakeCounts,
    pub(super) edit_history: Vec<String>,
    pub(super) media: Vec<FakeMedia>,
    pub(super) referenced: Vec<(RefKind, u64)>,
    pub(super) conversation_id: u64,
    pub(super) in_reply_to_user_id: Option<String>,
    pub(super) links: Vec<FakeLink>,
}

#[derive(Debug)]
pub(super) struct FakeUser {
    pub(super) user: User,
    pub(super) idx: u64,
    pub(super) suspended: bool,
    /// Posts by id (ids grow with time, as snowflakes do).
    pub(super) tweets: BTreeMap<u64, FakePost>,
}

pub(super) fn snowflake(ts_ms: i64, low: u64) -> u64 {
    let since = u64::try_from(ts_ms - SNOWFLAKE_EPOCH_MS).unwrap_or(0);
    (since << 22) | (low & 0x1F_FFFF)
}

pub(super) fn snowflake_ms(id: u64) -> i64 {
    i64::try_from(id >> 22).unwrap_or(0) + SNOWFLAKE_EPOCH_MS
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

fn generated_text(user: u64, seq: u64) -> String {
    let pick = (user * 7 + seq * 13) % 8;
    let base = match pick {
        0..=2 => POSITIVE[(pick % 3) as usize],
        3..=4 => NEGATIVE[(pick % 2) as usize],
        _ => NEUTRAL[(pick % 3) as usize],
    };
    format!("{base} (#{seq})")
}

fn media_item(id: u64, n: usize, spec: &MediaSpec) -> FakeMedia {
    let base = format!("{id}{n}");
    match spec.kind.as_str() {
        "video" => FakeMedia {
            media_key: format!("7_{base}"),
            kind: "video".into(),
            url: None,
            preview_image_url: Some(format!(
                "https://pbs.twimg.com/ext_tw_video_thumb/{base}/pu/img/thumb.jpg"
            )),
            width: 1280,
            height: 720,
            duration_ms: Some(spec.duration_ms.unwrap_or(30_000)),
            variants: vec![
                FakeVariant {
                    bit_rate: Some(2_176_000),
                    content_type: "video/mp4",
                    url: format!(
                        "https://video.twimg.com/ext_tw_video/{base}/pu/vid/1280x720/v.mp4"
                    ),
                },
                FakeVariant {
                    bit_rate: Some(832_000),
                    content_type: "video/mp4",
                    url: format!(
                        "https://video.twimg.com/ext_tw_video/{base}/pu/vid/640x360/v.mp4"
                    ),
                },
                FakeVariant {
                    bit_rate: None,
                    content_type: "application/x-mpegURL",
                    url: format!("https://video.twimg.com/ext_tw_video/{base}/pu/pl/v.m3u8"),
                },
            ],
        },
        "animated_gif" => FakeMedia {
            media_key: format!("16_{base}"),
            kind: "animated_gif".into(),
            url: None,
            preview_image_url: Some(format!(
                "https://pbs.twimg.com/tweet_video_thumb/{base}.jpg"
            )),
            width: 480,
            height: 270,
            duration_ms: None,
            variants: vec![FakeVariant {
                bit_rate: Some(0),
                content_type: "video/mp4",
                url: format!("https://video.twimg.com/tweet_video/{base}.mp4"),
            }],
        },
        _ => FakeMedia {
            media_key: format!("3_{base}"),
            kind: "photo".into(),
            url: Some(format!("https://pbs.twimg.com/media/{base}.jpg")),
            preview_image_url: None,
            width: 1200,
            height: 800,
            duration_ms: None,
            variants: Vec::new(),
        },
    }
}

/// A t.co link for `expanded` (display text: the address without scheme, cut at 25).
fn link(id: u64, n: usize, expanded: &str) -> FakeLink {
    let bare = expanded
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_start_matches("www.");
    let display_url = if bare.chars().count() > 25 {
        format!("{}…", bare.chars().take(24).collect::<String>())
    } else {
        bare.to_string()
    };
    FakeLink {
        url: format!("https://t.co/{:x}{n}", id % 0xFF_FFFF_FFFF),
        expanded_url: expanded.to_string(),
        display_url,
    }
}

fn generated_post(user: &User, user_idx: u64, id: u64, seq: u64, history: Vec<String>) -> FakePost {
    let mut media = Vec::new();
    if seq.is_multiple_of(3) {
        media.push(media_item(id, 0, &MediaSpec::photo()));
    }
    if seq % 10 == 5 {
        media.push(media_item(id, 1, &MediaSpec::video(12_000)));
    }
    let history = if history.is_empty() {
        vec![id.to_string()]
    } else {
        history
    };
    FakePost {
        id,
        author_id: user.id.clone(),
        text: generated_text(user_idx, seq),
        lang: "en",
        counts: FakeCounts {
            retweet_count: (seq * 3 + user_idx) % 500,
            reply_count: (seq * 5 + user_idx) % 200,
            like_count: (seq * 37 + user_idx * 11) % 5000,
            quote_count: seq % 17,
            bookmark_count: seq % 7,
            impression_count: (seq * 101 + user_idx * 13) % 90_000,
        },
        edit_history: history,
        media,
        referenced: Vec::new(),
        conversation_id: id,
        in_reply_to_user_id: None,
        links: Vec::new(),
    }
}

impl State {
    pub(super) fn generate(script: &FakeScript) -> State {
        let mut state = State {
            token: script.token.clone(),
            users: Vec::new(),
            by_name: HashMap::new(),
            by_id: HashMap::new(),
            owner: HashMap::new(),
            old_versions: HashMap::new(),
            deleted: HashSet::new(),
            withheld: HashMap::new(),
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
        for u_pos in 0..state.users.len() {
            for seq in 0..u64::from(script.posts_per_user) {
                let user = &state.users[u_pos];
                let ts = GENERATED_START_MS + (seq as i64 * n_users + u_pos as i64) * 1000;
                let id = snowflake(ts, user.idx);
                // Every eleventh post was edited once before we first see it: its chain
                // names an earlier id that the timeline no longer shows.
                let history = if seq % 11 == 7 {
                    vec![snowflake(ts - 1, user.idx).to_string(), id.to_string()]
                } else {
                    Vec::new()
                };
                let post = generated_post(&user.user, user.idx, id, seq, history);
                state.insert(u_pos, post);
            }
        }
        state
    }

    fn insert(&mut self, pos: usize, post: FakePost) {
        self.owner.insert(post.id, pos);
        self.users[pos].tweets.insert(post.id, post);
    }

    /// The live post with this id (deleted and superseded versions excluded).
    pub(super) fn post(&self, id: u64) -> Option<&FakePost> {
        self.users[*self.owner.get(&id)?].tweets.get(&id)
    }

    fn post_mut(&mut self, id: u64) -> Option<&mut FakePost> {
        let pos = *self.owner.get(&id)?;
        self.users[pos].tweets.get_mut(&id)
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
        let mut ids = Vec::new();
        for _ in 0..count {
            let user = &self.users[pos];
            let id = State::next_id(user);
            let seq = user.tweets.len() as u64;
            let post = generated_post(&user.user, user.idx, id, seq, Vec::new());
            self.insert(pos, post);
            ids.push(id.to_string());
        }
        ids
    }

    /// A new post saying `text`. Longer than 280 characters, it is sent as X sends a long
    /// post: `text` holds the first 280 characters and `note_tweet.text` the whole.
    pub(super) fn add_text_post(&mut self, pos: usize, text: &str) -> String {
        let spec = PostSpec {
            text: Some(text.to_string()),
            ..PostSpec::default()
        };
        self.add_post(pos, &spec).unwrap_or_default()
    }

    /// A new post as `spec` says; `Err` names what is wrong with the spec.
    pub(super) fn add_post(&mut self, pos: usize, spec: &PostSpec) -> Result<String, String> {
        let refs = [
            (RefKind::Retweeted, &spec.reposts),
            (RefKind::Quoted, &spec.quotes),
            (RefKind::RepliedTo, &spec.replies_to),
        ];
        let mut referenced = Vec::new();
        for (kind, id) in refs {
            if let Some(id) = id {
                let target = id
                    .parse::<u64>()
                    .ok()
                    .filter(|id| self.post(*id).is_some())
                    .ok_or_else(|| format!("no post {id:?} to reference"))?;
                referenced.push((kind, target));
            }
        }
        if referenced.len() > 1 {
            return Err("at most one of reposts, quotes, replies_to".into());
        }
        let user = &self.users[pos];
        let id = State::next_id(user);
        let mut post = generated_post(
            &user.user,
            user.idx,
            id,
            user.tweets.len() as u64,
            Vec::new(),
        );
        post.media = spec
            .media
            .iter()
            .enumerate()
            .map(|(n, m)| media_item(id, n, m))
            .collect();
        let mut text = spec.text.clone().unwrap_or(post.text);
        post.links = spec
            .links
            .iter()
            .enumerate()
            .map(|(n, l)| link(id, n, l))
            .collect();
        for l in &post.links {
            text.push(' ');
            text.push_str(&l.url);
        }
        if let Some(&(kind, target)) = referenced.first() {
            let original = self.post(target).cloned().ok_or("referenced post gone")?;
            let original_author = self.author_of(&original);
            match kind {
                RefKind::Retweeted => {
                    // X's repost object: `RT @handle: ` and the cut original text, the
                    // original's media keys and links, zero counts but its repost count.
                    let full = format!("RT @{}: {}", original_author.username, original.text);
                    text = cut(&full, REPOST_TEXT_CHARS);
                    post.media = original.media.clone();
                    post.links = original.links.clone();
                    post.counts = FakeCounts {
                        retweet_count: original.counts.retweet_count,
                        ..FakeCounts::default()
                    };
                }
                RefKind::Quoted => {
                    let permalink = format!(
                        "https://twitter.com/{}/status/{}",
                        original_author.username, original.id
                    );
                    let l = link(id, post.links.len(), &permalink);
                    text.push(' ');
                    text.push_str(&l.url);
                    post.links.push(l);
                }
                RefKind::RepliedTo => {
                    post.conversation_id = original.conversation_id;
                    post.in_reply_to_user_id = Some(original.author_id.clone());
                    if original.author_id != post.author_id {
                        text = format!("@{} {text}", original_author.username);
                    }
                }
            }
        }
        post.text = text;
        post.referenced = referenced;
        let id_text = id.to_string();
        self.insert(pos, post);
        Ok(id_text)
    }

    /// The user who wrote `post`.
    pub(super) fn author_of(&self, post: &FakePost) -> &User {
        let pos = self.by_id.get(&post.author_id).copied().unwrap_or(0);
        &self.users[pos].user
    }

    pub(super) fn edit_post(&mut self, old_id: u64, text: &str) -> Option<String> {
        let pos = *self.owner.get(&old_id)?;
        let user = &mut self.users[pos];
        let mut post = user.tweets.remove(&old_id)?;
        self.old_versions.insert(old_id, post.clone());
        let new_id = State::next_id(user);
        post.id = new_id;
        post.text = text.to_string();
        if post.conversation_id == old_id {
            post.conversation_id = new_id;
        }
        post.edit_history.push(new_id.to_string());
        // Every version of the chain now names the whole chain, as X shows it.
        for old in &post.edit_history {
            if let Some(v) = old
                .parse()
                .ok()
                .and_then(|id| self.old_versions.get_mut(&id))
            {
                v.edit_history = post.edit_history.clone();
            }
        }
        self.owner.remove(&old_id);
        self.insert(pos, post);
        Some(new_id.to_string())
    }

    /// Deletes a post: it leaves its timeline and lookups answer it in `errors`.
    pub(super) fn delete_post(&mut self, id: u64) -> bool {
        let Some(pos) = self.owner.remove(&id) else {
            return false;
        };
        self.users[pos].tweets.remove(&id);
        self.deleted.insert(id);
        true
    }

    /// Withholds a post in `countries`: the fake's viewer is among them, so the post leaves
    /// its timeline and lookups answer it in `errors`.
    pub(super) fn withhold_post(&mut self, id: u64, countries: Vec<String>) -> bool {
        if self.post(id).is_none() {
            return false;
        }
        self.withheld.insert(id, countries);
        true
    }

    /// Sets a post's counts (the fields given; the others keep their value).
    pub(super) fn set_counts(&mut self, id: u64, counts: &CountsUpdate) -> Option<FakeCounts> {
        let post = self.post_mut(id)?;
        let c = &mut post.counts;
        let fields = [
            (&mut c.retweet_count, counts.retweet_count),
            (&mut c.reply_count, counts.reply_count),
            (&mut c.like_count, counts.like_count),
            (&mut c.quote_count, counts.quote_count),
            (&mut c.bookmark_count, counts.bookmark_count),
            (&mut c.impression_count, counts.impression_count),
        ];
        for (field, value) in fields {
            if let Some(v) = value {
                *field = v;
            }
        }
        Some(*c)
    }
}

/// Some of a post's counts (`POST /_fake/posts/{id}/counts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub struct CountsUpdate {
    #[serde(default, alias = "repost_count")]
    pub retweet_count: Option<u64>,
    #[serde(default)]
    pub reply_count: Option<u64>,
    #[serde(default)]
    pub like_count: Option<u64>,
    #[serde(default)]
    pub quote_count: Option<u64>,
    #[serde(default)]
    pub bookmark_count: Option<u64>,
    #[serde(default)]
    pub impression_count: Option<u64>,
}

/// The first `n` characters of `s`, with `…` when cut.
pub(super) fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(n - 1).collect();
        out.push('…');
        out
    }
}
