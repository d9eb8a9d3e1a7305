//! Notification targets: where a new post is sent, in which format, and which posts.
//! Pure types and rules (validation, matching); no IO.

use bincode::{Decode, Encode};

use crate::domain::post::{Post, PostKind};

/// How a delivery is written for the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Encode, Decode)]
pub enum Format {
    /// `application/json`: `{"idempotencyKey","event","post"}` (the feed's post JSON).
    Json,
    /// ntfy (`https://ntfy.sh/topic` or a self-hosted one): the text as the body, with
    /// `Title`, `Click` (the permalink) and `Tags` (the post kind) headers.
    Ntfy,
    /// A Discord incoming webhook: `{"content"}` (at most 2000 characters).
    Discord,
    /// A Slack incoming webhook: `{"text"}`.
    Slack,
}

impl Format {
    /// Every format, in the order the API lists them.
    pub const ALL: [Format; 4] = [Format::Json, Format::Ntfy, Format::Discord, Format::Slack];

    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Ntfy => "ntfy",
            Format::Discord => "discord",
            Format::Slack => "slack",
        }
    }

    /// Parses the API spelling (case and surrounding space ignored; `webhook` is `json`).
    pub fn parse(s: &str) -> Option<Format> {
        match s.trim().to_ascii_lowercase().as_str() {
            "json" | "webhook" => Some(Format::Json),
            "ntfy" => Some(Format::Ntfy),
            "discord" => Some(Format::Discord),
            "slack" => Some(Format::Slack),
            _ => None,
        }
    }
}

/// Why an outbox entry exists: the post is new, or a reviewer approved it (for targets
/// that take only approved posts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    New,
    Approved,
}

impl Event {
    /// The byte stored as the outbox entry's value. Stable: never renumber.
    pub fn code(self) -> u8 {
        match self {
            Event::New => b'n',
            Event::Approved => b'a',
        }
    }

    /// The inverse of [`Event::code`]; unknown bytes read as `New`.
    pub fn from_code(code: u8) -> Event {
        if code == b'a' {
            Event::Approved
        } else {
            Event::New
        }
    }

    /// The name in JSON bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::New => "post.new",
            Event::Approved => "post.approved",
        }
    }
}

/// Why a target stopped receiving deliveries until an admin resumes it.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Paused {
    pub at_ms: i64,
    pub reason: String,
}

/// What an admin asks for: a target without its id and state.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct TargetDraft {
    pub url: String,
    pub format: Format,
    /// Only these leaders' posts (empty: every leader).
    pub leaders: Vec<u64>,
    /// Only these kinds (empty: every kind).
    pub kinds: Vec<PostKind>,
    /// Only posts whose text contains one of these, ignoring case (empty: every post).
    pub keywords: Vec<String>,
    /// Only posts a reviewer approved (sent when approved, not when ingested).
    pub approved_only: bool,
}

/// A stored target.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Target {
    pub id: u64,
    /// Where, how and which posts.
    pub spec: TargetDraft,
    /// Configured by `NOTIFY_URL` (kept in step with it at start-up), not by the API.
    pub from_env: bool,
    pub created_at_ms: i64,
    /// Set once deliveries kept failing; the queue is kept until an admin resumes.
    pub paused: Option<Paused>,
}

/// The most keywords or leaders a target can name.
pub const MAX_FILTER_ITEMS: usize = 100;
/// The longest keyword, in characters.
pub const MAX_KEYWORD_CHARS: usize = 200;
/// The longest URL.
pub const MAX_URL_CHARS: usize = 2048;

impl Target {
    /// A new target from a draft.
    pub fn new(id: u64, draft: TargetDraft, from_env: bool, created_at_ms: i64) -> Target {
        Target {
            id,
            spec: draft,
            from_env,
            created_at_ms,
            paused: None,
        }
    }

    /// True when this target takes `post` for `event`.
    pub fn wants(&self, post: &Post, event: Event) -> bool {
        self.spec.wants(post, event)
    }
}

impl TargetDraft {
    /// True when a target of this draft takes `post` for `event`.
    pub fn wants(&self, post: &Post, event: Event) -> bool {
        if self.approved_only != (event == Event::Approved) {
            return false;
        }
        if !self.leaders.is_empty() && !self.leaders.contains(&post.leader_id) {
            return false;
        }
        if !self.kinds.is_empty() && !self.kinds.contains(&post.details.kind) {
            return false;
        }
        if self.keywords.is_empty() {
            return true;
        }
        let text = post.content.to_lowercase();
        self.keywords
            .iter()
            .any(|k| text.contains(&k.to_lowercase()))
    }
}

/// The URLs a target may have, as one regular expression that the OpenAPI document states
/// and [`check_url`] enforces, so the two never disagree: `http` or `https`; a host name
/// (dot-separated labels of letters, digits and underscores — compose service names —
/// with single inner hyphens, the last one starting with a letter, so it is never read as
/// a number), a dotted IPv4 address or `[::1]`; an optional port; an optional path and query; no user name, password or
/// fragment; spaces, tabs and line breaks around it are ignored. Everything it matches is
/// a URL reqwest can parse, and the test below holds the document to the same text.
pub const URL_PATTERN: &str = concat!(
    r"^[ \t\n\r]*[hH][tT][tT][pP][sS]?://",
    r"(([a-zA-Z0-9_]+(-[a-zA-Z0-9_]+)*\.)*[a-zA-Z][a-zA-Z0-9_]*(-[a-zA-Z0-9_]+)*",
    r"|((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])",
    r"|\[::1\])",
    r"(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4}))?",
    r"([/?][^ \t\n\r#]*)?[ \t\n\r]*$"
);

fn url_pattern() -> &'static regex::Regex {
    static PATTERN: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    PATTERN.get_or_init(|| regex::Regex::new(URL_PATTERN).expect("URL_PATTERN compiles"))
}

/// Checks a target URL: [`URL_PATTERN`] (absolute `http` or `https` with a host, no user
/// name, password or fragment), at most 2048 characters. Loopback hosts are allowed:
/// self-hosters run ntfy on the same machine.
pub fn check_url(raw: &str) -> Result<String, String> {
    if raw.chars().count() > MAX_URL_CHARS {
        return Err(format!("url must be at most {MAX_URL_CHARS} characters"));
    }
    if !url_pattern().is_match(raw) {
        return Err(
            "url must be http:// or https:// with a host name, an IPv4 address or [::1], \
             an optional port, path and query, and no user name, password or fragment"
                .into(),
        );
    }
    let url = raw.trim_matches([' ', '\t', '\n', '\r']);
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("url is not a URL: {e}"))?;
    Ok(parsed.to_string())
}

/// Checks keywords: each 1 to 200 characters once trimmed (kept trimmed), at most 100.
pub fn check_keywords(raw: Vec<String>) -> Result<Vec<String>, String> {
    if raw.len() > MAX_FILTER_ITEMS {
        return Err(format!("keywords: at most {MAX_FILTER_ITEMS}"));
    }
    raw.into_iter()
        .map(|raw| {
            // Counted and checked as sent, so the OpenAPI document's `maxLength` and
            // pattern say the same: no control character, not blank, at most 200.
            let n = raw.chars().count();
            let k = raw.trim().to_string();
            if k.is_empty() || n > MAX_KEYWORD_CHARS || raw.chars().any(char::is_control) {
                Err(format!(
                    "keywords must be 1 to {MAX_KEYWORD_CHARS} printable characters"
                ))
            } else {
                Ok(k)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::post::{Author, Platform, PostDetails, Verification};
    use crate::domain::sentiment::Sentiment;

    fn post(leader: u64, kind: PostKind, text: &str) -> Post {
        Post {
            id: 1,
            leader_id: leader,
            platform: Platform::X,
            content: text.into(),
            timestamp_ms: 0,
            sentiment: Sentiment::Neutral,
            sentiment_score: 0.0,
            platform_post_id: Some("1".into()),
            verification: Verification::Unverified,
            author: Author::default(),
            details: PostDetails {
                kind,
                ..Default::default()
            },
            client_metrics: None,
            revision: 0,
        }
    }

    fn target(draft: TargetDraft) -> Target {
        Target::new(1, draft, false, 0)
    }

    fn draft() -> TargetDraft {
        TargetDraft {
            url: "http://127.0.0.1:1/".into(),
            format: Format::Json,
            leaders: vec![],
            kinds: vec![],
            keywords: vec![],
            approved_only: false,
        }
    }

    #[test]
    fn an_empty_filter_takes_every_new_post_and_no_approval() {
        let t = target(draft());
        assert!(t.wants(&post(3, PostKind::Reply, "x"), Event::New));
        assert!(!t.wants(&post(3, PostKind::Reply, "x"), Event::Approved));
    }

    #[test]
    fn leaders_kinds_and_keywords_all_must_match() {
        let t = target(TargetDraft {
            leaders: vec![2],
            kinds: vec![PostKind::Post, PostKind::Quote],
            keywords: vec!["Budget".into(), "rates".into()],
            ..draft()
        });
        assert!(t.wants(&post(2, PostKind::Post, "the BUDGET is out"), Event::New));
        assert!(t.wants(&post(2, PostKind::Quote, "interest rates"), Event::New));
        assert!(!t.wants(&post(3, PostKind::Post, "budget"), Event::New));
        assert!(!t.wants(&post(2, PostKind::Repost, "budget"), Event::New));
        assert!(!t.wants(&post(2, PostKind::Post, "weather"), Event::New));
    }

    #[test]
    fn approved_only_targets_take_approvals_only() {
        let t = target(TargetDraft {
            approved_only: true,
            ..draft()
        });
        assert!(t.wants(&post(1, PostKind::Post, "x"), Event::Approved));
        assert!(!t.wants(&post(1, PostKind::Post, "x"), Event::New));
    }

    #[test]
    fn urls_must_be_http_with_a_host_and_no_credentials() {
        assert_eq!(
            check_url(" http://127.0.0.1:8080/topic ").unwrap(),
            "http://127.0.0.1:8080/topic"
        );
        assert!(check_url("https://discord.com/api/webhooks/1/abc").is_ok());
        for bad in [
            "ftp://x/",
            "not a url",
            "http://user:pw@host/",
            "file:///etc/passwd",
            "http://h/#f",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
        assert!(check_url(&format!("http://h/{}", "a".repeat(3000))).is_err());
        // Found by schemathesis: the document allowed a URL with an empty host.
        assert!(check_url("   HTTPS://").is_err());
        for good in [
            "http://localhost:2586/amber",
            "http://ntfy_server:80/amber",
            "HTTP://[::1]:80/x?y=z",
            "https://a-b.c1.example/p%zz\\q@r",
            "http://0.a/",
            "\thttp://255.255.255.255:65535\r\n",
        ] {
            assert!(check_url(good).is_ok(), "{good}");
        }
        for bad in [
            "http://1.2.3.256/",
            "http://a..b/",
            "http://xn--a/",
            "http://a:65536/",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        /// Every URL the documented pattern allows, the server takes (schemathesis's
        /// "schema-valid request rejected", checked on strings made from the pattern).
        #[test]
        fn every_url_the_pattern_allows_is_accepted(
            url in proptest::string::string_regex(
                URL_PATTERN.trim_start_matches('^').trim_end_matches('$')
            ).unwrap()
        ) {
            // The document bounds the length with `maxLength`, not the pattern.
            proptest::prop_assume!(url.chars().count() <= MAX_URL_CHARS);
            proptest::prop_assert!(check_url(&url).is_ok(), "{url:?}: {:?}", check_url(&url));
        }
    }

    #[test]
    fn keywords_are_trimmed_and_bounded() {
        assert_eq!(
            check_keywords(vec![" a ".into()]).unwrap(),
            vec!["a".to_string()]
        );
        assert!(check_keywords(vec!["  ".into()]).is_err());
        assert!(check_keywords(vec!["a\u{7}".into()]).is_err());
        assert!(check_keywords(vec!["k".into(); 101]).is_err());
    }

    #[test]
    fn formats_parse_their_spellings() {
        for f in Format::ALL {
            assert_eq!(Format::parse(f.as_str()), Some(f));
        }
        assert_eq!(Format::parse(" Webhook"), Some(Format::Json));
        assert_eq!(Format::parse("matrix"), None);
    }
}
