//! What one delivery sends, per format (pure): body, content type and headers, and the
//! retry rules (backoff with jitter, `Retry-After`).

use std::time::Duration;

use crate::domain::leader::Leader;
use crate::domain::post::Post;
use crate::notify::target::{Event, Format};
use crate::shape::post::FeedPostJson;

/// Discord refuses `content` longer than this.
const DISCORD_MAX_CHARS: usize = 2000;
/// ntfy turns a longer message into an attachment.
const NTFY_MAX_BYTES: usize = 4096;

/// One HTTP POST, ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub content_type: &'static str,
    /// Extra headers (the `Idempotency-Key` is always among them).
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// `Name (@handle)`, or the name alone.
fn byline(post: &Post, leader: Option<&Leader>) -> String {
    let name = leader
        .map(|l| l.name.clone())
        .or_else(|| post.author.name.clone())
        .unwrap_or_else(|| format!("leader {}", post.leader_id));
    match post
        .author
        .handle
        .as_deref()
        .or(leader.and_then(Leader::x_handle))
    {
        Some(h) => format!("{name} (@{h})"),
        None => name,
    }
}

fn cut(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn cut_bytes(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// A header value: ASCII as it is; anything else as an RFC 2047 encoded word ("Q"
/// encoding, which ntfy decodes), so names in any script survive.
fn header_text(text: &str) -> String {
    let clean: String = text.chars().filter(|c| !c.is_control()).collect();
    if clean.is_ascii() {
        return clean;
    }
    let mut out = String::from("=?UTF-8?Q?");
    for b in clean.bytes() {
        match b {
            b' ' => out.push('_'),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'@' | b'(' | b')' => {
                out.push(char::from(b))
            }
            _ => out.push_str(&format!("={b:02X}")),
        }
    }
    out.push_str("?=");
    out
}

/// Slack's three escapes (`&`, `<`, `>`), so post text is never read as markup.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Builds the delivery of `post` for `format`. The idempotency key is Amber's post id.
pub fn build(format: Format, post: &Post, leader: Option<&Leader>, event: Event) -> Request {
    let key = post.id.to_string();
    let permalink = post.permalink(leader.and_then(Leader::x_handle));
    let byline = byline(post, leader);
    let mut headers = vec![("Idempotency-Key", key.clone())];
    let link_line = permalink
        .as_deref()
        .map(|l| format!("\n{l}"))
        .unwrap_or_default();
    match format {
        Format::Json => {
            let body = serde_json::json!({
                "idempotencyKey": key,
                "event": event.as_str(),
                "post": FeedPostJson::from(post, leader),
            });
            Request {
                content_type: "application/json",
                headers,
                body: body.to_string().into_bytes(),
            }
        }
        Format::Ntfy => {
            headers.push(("Title", header_text(&byline)));
            headers.push(("Tags", post.kind().as_str().to_string()));
            if let Some(link) = &permalink {
                headers.push(("Click", link.clone()));
            }
            Request {
                content_type: "text/plain; charset=utf-8",
                headers,
                body: cut_bytes(&post.content, NTFY_MAX_BYTES).into_bytes(),
            }
        }
        Format::Discord => {
            // "**" byline "**: " text link: six characters besides the three parts.
            let room = DISCORD_MAX_CHARS
                .saturating_sub(byline.chars().count() + link_line.chars().count() + 6);
            let text = format!("**{}**: {}{}", byline, cut(&post.content, room), link_line);
            let body = serde_json::json!({
                "content": text,
                // Post text never pings anyone in the channel.
                "allowed_mentions": {"parse": []},
            });
            Request {
                content_type: "application/json",
                headers,
                body: body.to_string().into_bytes(),
            }
        }
        Format::Slack => {
            let text = format!(
                "*{}*: {}{}",
                slack_escape(&byline),
                slack_escape(&post.content),
                link_line
            );
            let body = serde_json::json!({"text": text});
            Request {
                content_type: "application/json",
                headers,
                body: body.to_string().into_bytes(),
            }
        }
    }
}

/// The longest wait a `Retry-After` can ask for.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Reads `Retry-After`: delay-seconds or an HTTP date; capped at an hour.
pub fn retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    let wait = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
        (when.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// The wait before try `failures + 1`: `base · 2^(failures-1)` capped at `max`, with
/// jitter (a uniform draw from the upper half), or what the receiver asked for.
pub fn backoff(
    failures: u32,
    base: Duration,
    max: Duration,
    asked: Option<Duration>,
    unit: f64,
) -> Duration {
    if let Some(wait) = asked {
        return wait;
    }
    let exp = base
        .saturating_mul(1u32 << failures.saturating_sub(1).min(20))
        .min(max);
    exp.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::post::{Author, Platform, PostDetails, Verification};
    use crate::domain::sentiment::Sentiment;

    fn post(text: &str) -> Post {
        Post {
            id: 42,
            leader_id: 7,
            platform: Platform::X,
            content: text.into(),
            timestamp_ms: 0,
            sentiment: Sentiment::Neutral,
            sentiment_score: 0.0,
            platform_post_id: Some("1800".into()),
            verification: Verification::Unverified,
            author: Author {
                handle: Some("jdoe".into()),
                name: Some("Jane Doë".into()),
                ..Default::default()
            },
            details: PostDetails::default(),
            client_metrics: None,
            revision: 0,
        }
    }

    fn header<'a>(r: &'a Request, name: &str) -> Option<&'a str> {
        r.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn every_format_carries_the_post_id_as_idempotency_key() {
        for f in Format::ALL {
            let r = build(f, &post("hi"), None, Event::New);
            assert_eq!(header(&r, "Idempotency-Key"), Some("42"), "{f:?}");
        }
        let r = build(Format::Json, &post("a <b> & c"), None, Event::New);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["idempotencyKey"], "42");
        assert_eq!(v["event"], "post.new");
        assert_eq!(v["post"]["id"], "42");
        assert_eq!(v["post"]["content"], "a <b> & c");
    }

    #[test]
    fn ntfy_has_title_click_and_tags_headers() {
        let r = build(Format::Ntfy, &post("hello"), None, Event::New);
        assert_eq!(r.body, b"hello");
        assert_eq!(header(&r, "Click"), Some("https://x.com/jdoe/status/1800"));
        assert_eq!(header(&r, "Tags"), Some("post"));
        // "Jane Doë (@jdoe)" is not ASCII: an encoded word.
        let title = header(&r, "Title").unwrap();
        assert_eq!(title, "=?UTF-8?Q?Jane_Do=C3=AB_(@jdoe)?=");
    }

    #[test]
    fn discord_is_cut_to_its_limit_and_pings_nobody() {
        let r = build(Format::Discord, &post(&"é".repeat(5000)), None, Event::New);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let content = v["content"].as_str().unwrap();
        assert!(content.chars().count() <= DISCORD_MAX_CHARS);
        assert!(content.ends_with("https://x.com/jdoe/status/1800"));
        assert_eq!(v["allowed_mentions"]["parse"], serde_json::json!([]));
    }

    #[test]
    fn slack_text_is_escaped() {
        let r = build(Format::Slack, &post("<!channel> & co"), None, Event::New);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert!(v["text"]
            .as_str()
            .unwrap()
            .contains("&lt;!channel&gt; &amp; co"));
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(
            retry_after("Thu, 01 Jan 2026 00:00:10 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(retry_after("999999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after("soon", now), None);
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        assert_eq!(backoff(1, base, max, None, 1.0), base);
        assert_eq!(backoff(1, base, max, None, 0.0), base / 2);
        assert_eq!(backoff(3, base, max, None, 1.0), base * 4);
        assert_eq!(backoff(30, base, max, None, 1.0), max);
        let asked = Some(Duration::from_secs(7));
        assert_eq!(backoff(2, base, max, asked, 0.3), Duration::from_secs(7));
    }
}
