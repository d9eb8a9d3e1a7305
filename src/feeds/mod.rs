//! Syndication feeds (issue 13): what one feed item says about a post, independent of
//! the format, and the formats themselves (`render`: RSS 2.0, Atom 1.0, JSON Feed 1.1,
//! OPML 2.0). Pure: no HTTP, no storage. `http::feeds` reads the posts and serves these.
//!
//! Every text that reaches a document passes [`xml_text`] first: XML 1.0 cannot carry
//! most control characters even escaped, so they are dropped; the writers (quick-xml,
//! under `rss` and `atom_syndication`) escape the rest.

pub mod render;
pub mod validators;

use std::fmt::Write as _;

use crate::domain::leader::Leader;
use crate::domain::post::{Author, MediaItem, MediaKind, Platform, Post, PostKind};

/// Longest item title, in characters (the text follows in full in the content).
const TITLE_CHARS: usize = 100;

/// A feed as every format shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Feed {
    /// `Amber: all leaders` or `Amber: <leader name>`.
    pub title: String,
    pub description: String,
    /// The web page this feed mirrors (absolute).
    pub home_url: String,
    /// This feed's own URL (absolute, with its query).
    pub self_url: String,
    /// Newest first.
    pub items: Vec<Item>,
}

impl Feed {
    /// The newest publication time among the items (unix ms), if any.
    pub fn newest_ms(&self) -> Option<i64> {
        self.items.iter().map(|i| i.published_ms).max()
    }
}

/// One item: one stored post (a repost is an item of its own).
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Stable for ever: see [`guid`].
    pub guid: String,
    /// The post on its platform (`https://x.com/<handle>/status/<id>`), if it has one.
    pub url: Option<String>,
    /// Plain text, one line, at most [`TITLE_CHARS`] characters.
    pub title: String,
    /// The full text, plain, with the quoted or reposted post after it.
    pub text: String,
    /// The full text as HTML, the quoted or reposted post inline as a blockquote, the
    /// media as images.
    pub html: String,
    pub author: Person,
    /// Unix milliseconds (a repost: when the leader reposted).
    pub published_ms: i64,
    pub kind: PostKind,
    pub enclosures: Vec<Enclosure>,
}

/// An author as feeds name them.
#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    pub name: String,
    /// The author's profile (`https://x.com/<handle>`), when known.
    pub url: Option<String>,
}

/// A media file attached to an item (photos, and the preview images of videos and GIFs).
#[derive(Debug, Clone, PartialEq)]
pub struct Enclosure {
    pub url: String,
    pub mime_type: &'static str,
}

/// `s` with every character XML 1.0 cannot carry removed: C0 controls other than tab,
/// line feed and carriage return, and U+FFFE / U+FFFF. (Rust strings hold no lone
/// surrogates.) Everything else is kept; the writers escape `&`, `<`, `>` and quotes.
pub fn xml_text(s: &str) -> String {
    s.chars().filter(|c| xml_char(*c)).collect()
}

fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// HTML-escapes `s` into `out` (text and attribute values alike).
fn push_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// `<p>` paragraphs of `text`, line breaks kept, `dir="auto"` for right-to-left scripts.
fn push_paragraphs(out: &mut String, text: &str) {
    out.push_str("<p dir=\"auto\">");
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push_str("<br>");
        }
        push_escaped(out, line);
    }
    out.push_str("</p>");
}

/// The GUID of a post, the same for ever: for a platform post, the platform's *first*
/// id of the post's edit chain (an edit keeps it), as
/// `https://x.com/i/status/<first id>` for X (a URI, as Atom requires, that X resolves
/// to the post's current version); for a post without a platform id, Amber's own id
/// (`tag:amber,2025:post/<id>`). `older_ids` are the ids the post had before its edits.
pub fn guid(post: &Post, older_ids: &[String]) -> String {
    let first = post
        .platform_post_id
        .iter()
        .chain(older_ids)
        .min_by(|a, b| (a.len(), a.as_str()).cmp(&(b.len(), b.as_str())));
    match (post.platform, first) {
        (Platform::X, Some(id)) => format!("https://x.com/i/status/{}", xml_text(id)),
        (platform, Some(id)) => format!(
            "tag:amber,2025:{}/{}",
            platform.as_str().to_ascii_lowercase(),
            xml_text(id)
        ),
        (_, None) => format!("tag:amber,2025:post/{}", post.id),
    }
}

/// How an author is named: `Name (@handle)`, or whichever is known.
fn display_name(author: &Author, fallback: &str) -> String {
    let name = author.name.as_deref().map(xml_text);
    let handle = author.handle.as_deref().map(xml_text);
    match (name, handle) {
        (Some(n), Some(h)) if !n.trim().is_empty() => format!("{n} (@{h})"),
        (_, Some(h)) => format!("@{h}"),
        (Some(n), None) if !n.trim().is_empty() => n,
        _ => xml_text(fallback),
    }
}

fn profile_url(platform: Platform, author: &Author) -> Option<String> {
    match platform {
        Platform::X => author
            .handle
            .as_deref()
            .map(|h| format!("https://x.com/{}", xml_text(h))),
        _ => None,
    }
}

/// The text on one line, cut at [`TITLE_CHARS`] characters (with `…`).
fn title_of(prefix: &str, text: &str) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut title = xml_text(prefix);
    let cut = flat.chars().count() > TITLE_CHARS;
    title.extend(flat.chars().take(TITLE_CHARS));
    if cut {
        title.push('…');
    }
    if title.trim().is_empty() {
        title = "(no text)".to_string();
    }
    title
}

fn mime_of_image(url: &str) -> &'static str {
    let path = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .to_ascii_lowercase();
    if path.ends_with(".png") {
        "image/png"
    } else if path.ends_with(".gif") {
        "image/gif"
    } else if path.ends_with(".webp") {
        "image/webp"
    } else {
        "image/jpeg"
    }
}

/// The enclosures of some media: each photo, each video's or GIF's preview image.
fn enclosures(media: &[MediaItem]) -> Vec<Enclosure> {
    media
        .iter()
        .filter_map(|m| m.display_url())
        .map(|url| Enclosure {
            url: xml_text(url),
            mime_type: mime_of_image(url),
        })
        .collect()
}

/// Images of the media, as HTML (videos link to their best variant).
fn push_media(out: &mut String, media: &[MediaItem]) {
    for m in media {
        let Some(src) = m.display_url() else { continue };
        let best = m
            .variants
            .iter()
            .filter(|v| v.content_type.starts_with("video/"))
            .max_by_key(|v| v.bit_rate.unwrap_or(0));
        out.push_str("<p>");
        if let (MediaKind::Video | MediaKind::AnimatedGif, Some(v)) = (m.kind, best) {
            out.push_str("<a href=\"");
            push_escaped(out, &xml_text(&v.url));
            out.push_str("\">");
        }
        out.push_str("<img src=\"");
        push_escaped(out, &xml_text(src));
        out.push_str("\" alt=\"\">");
        if matches!(m.kind, MediaKind::Video | MediaKind::AnimatedGif) && best.is_some() {
            out.push_str("</a>");
        }
        out.push_str("</p>");
    }
}

/// The feed item of `post` (`leader`: its leader, if it still exists; `older_ids`: the
/// ids of its edit chain before the current one).
pub fn item(post: &Post, leader: Option<&Leader>, older_ids: &[String]) -> Item {
    let leader_name = leader.map(|l| l.name.as_str()).unwrap_or("Unknown leader");
    let leader_handle = leader.and_then(|l| l.handles.get("x")).map(String::as_str);
    let text = xml_text(&post.content);
    let referenced = post.details.referenced.as_deref();
    let kind = post.kind();
    // A repost's author is the reposted post's author; everything else is the leader's
    // (a post entered by an admin names no author: the leader, with its X handle).
    let leader_author;
    let written_by = if post.author.name.is_none() && post.author.handle.is_none() {
        leader_author = Author {
            name: Some(leader_name.to_string()),
            handle: leader_handle
                .filter(|_| post.platform == Platform::X)
                .map(str::to_string),
            ..Author::default()
        };
        &leader_author
    } else {
        &post.author
    };
    let author = Person {
        name: display_name(written_by, leader_name),
        url: profile_url(post.platform, written_by),
    };
    let mut html = String::with_capacity(text.len() * 2 + 256);
    let mut plain = String::with_capacity(text.len() + 64);
    let title;
    match (kind, referenced) {
        (PostKind::Repost, _) => {
            let by = post
                .details
                .reposted_by
                .as_deref()
                .map(|a| display_name(a, leader_name))
                .unwrap_or_else(|| xml_text(leader_name));
            title = title_of(
                &format!(
                    "RT {}: ",
                    post.author
                        .handle
                        .as_deref()
                        .map(|h| format!("@{h}"))
                        .unwrap_or_else(|| author.name.clone())
                ),
                &text,
            );
            html.push_str("<p>");
            push_escaped(&mut html, &by);
            html.push_str(" reposted ");
            push_escaped(&mut html, &author.name);
            html.push_str(":</p><blockquote>");
            push_paragraphs(&mut html, &text);
            let media = if post.details.media.is_empty() {
                referenced.map(|r| &r.media[..]).unwrap_or(&[])
            } else {
                &post.details.media[..]
            };
            push_media(&mut html, media);
            html.push_str("</blockquote>");
            let _ = write!(plain, "{by} reposted {}:\n{text}", author.name);
        }
        (_, r) => {
            title = title_of("", &text);
            push_paragraphs(&mut html, &text);
            push_media(&mut html, &post.details.media);
            plain.push_str(&text);
            if let Some(r) = r {
                let who = display_name(&r.author, "someone");
                let said = r.text.as_deref().map(xml_text);
                let lead = match kind {
                    PostKind::Reply => "In reply to",
                    _ => "Quoting",
                };
                html.push_str("<blockquote><p>");
                let _ = write!(plain, "\n\n{lead} {who}");
                html.push_str(lead);
                html.push(' ');
                push_escaped(&mut html, &who);
                html.push_str(":</p>");
                if let Some(said) = &said {
                    push_paragraphs(&mut html, said);
                    let _ = write!(plain, ":\n{said}");
                }
                push_media(&mut html, &r.media);
                if let Some(link) = r.permalink() {
                    html.push_str("<p><a href=\"");
                    push_escaped(&mut html, &xml_text(&link));
                    html.push_str("\">");
                    push_escaped(&mut html, &xml_text(&link));
                    html.push_str("</a></p>");
                    let _ = write!(plain, "\n{}", xml_text(&link));
                }
                html.push_str("</blockquote>");
            }
        }
    }
    let mut encl = enclosures(&post.details.media);
    if encl.is_empty() && kind == PostKind::Repost {
        encl = referenced.map(|r| enclosures(&r.media)).unwrap_or_default();
    }
    Item {
        guid: guid(post, older_ids),
        url: post.permalink(leader_handle).map(|u| xml_text(&u)),
        title,
        text: plain,
        html,
        author,
        published_ms: post.timestamp_ms,
        kind,
        enclosures: encl,
    }
}

/// True when `post` passes a keyword filter: every `all` word (lower case) appears in its
/// text or its referenced post's text, and no `none` word does (case-insensitively).
pub fn keywords_match(post: &Post, all: &[String], none: &[String]) -> bool {
    if all.is_empty() && none.is_empty() {
        return true;
    }
    let mut hay = post.content.to_lowercase();
    if let Some(t) = post
        .details
        .referenced
        .as_deref()
        .and_then(|r| r.text.as_deref())
    {
        hay.push('\n');
        hay.push_str(&t.to_lowercase());
    }
    all.iter().all(|w| hay.contains(w.as_str())) && !none.iter().any(|w| hay.contains(w.as_str()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::domain::post::{PostDetails, ReferencedPost, Relation, Verification};
    use crate::domain::sentiment::Sentiment;

    pub(crate) fn post(id: u64, text: &str) -> Post {
        Post {
            id,
            leader_id: 1,
            platform: Platform::X,
            content: text.to_string(),
            timestamp_ms: 1_735_689_600_000 + id as i64 * 1000,
            sentiment: Sentiment::Neutral,
            sentiment_score: 0.0,
            platform_post_id: Some(format!("18{id:017}")),
            verification: Verification::Unverified,
            author: Author {
                handle: Some("ann".into()),
                name: Some("Ann".into()),
                ..Author::default()
            },
            details: PostDetails::default(),
            client_metrics: None,
            revision: 0,
        }
    }

    pub(crate) fn leader() -> Leader {
        Leader {
            id: 1,
            name: "Ann Lee".into(),
            handles: BTreeMap::from([("x".to_string(), "ann".to_string())]),
            tracking_topics: vec![],
            created_at_ms: 0,
            avatar_url: None,
        }
    }

    #[test]
    fn xml_text_drops_what_xml_cannot_carry_and_keeps_the_rest() {
        let s = "a\u{0}b\u{1}\u{8}\u{b}\u{c}\u{1f}\t\n\r & < \u{1F600} שלום \u{FFFE}\u{FFFF}\u{7f}";
        assert_eq!(xml_text(s), "ab\t\n\r & < \u{1F600} שלום \u{7f}");
    }

    #[test]
    fn the_guid_is_the_first_id_of_the_edit_chain() {
        let mut p = post(5, "v3");
        p.platform_post_id = Some("1900000000000000003".into());
        let older = vec!["1900000000000000002".into(), "999".into()];
        assert_eq!(guid(&p, &older), "https://x.com/i/status/999");
        assert_eq!(guid(&p, &[]), "https://x.com/i/status/1900000000000000003");
        p.platform_post_id = None;
        p.platform = Platform::News;
        assert_eq!(guid(&p, &[]), "tag:amber,2025:post/5");
    }

    #[test]
    fn a_quote_shows_the_quoted_post_inline_escaped() {
        let mut p = post(1, "look <b>&amp; this</b>\nline two");
        p.details.kind = PostKind::Quote;
        p.details.referenced = Some(Box::new(ReferencedPost {
            id: "77".into(),
            relation: Relation::Quoted,
            author: Author {
                handle: Some("bob".into()),
                name: Some("Bob <script>".into()),
                ..Author::default()
            },
            text: Some("original \"words\"".into()),
            created_at_ms: None,
            media: vec![],
        }));
        let it = item(&p, Some(&leader()), &[]);
        assert!(it.html.starts_with(
            "<p dir=\"auto\">look &lt;b&gt;&amp;amp; this&lt;/b&gt;<br>line two</p><blockquote>"
        ));
        assert!(it.html.contains("Quoting Bob &lt;script&gt; (@bob):"));
        assert!(it.html.contains("original &quot;words&quot;"));
        assert!(it.html.contains("https://x.com/bob/status/77"));
        assert!(it.text.contains("original \"words\""));
        assert_eq!(it.title, "look <b>&amp; this</b> line two");
        assert_eq!(
            it.url.as_deref(),
            Some("https://x.com/ann/status/1800000000000000001")
        );
    }

    #[test]
    fn keywords_need_every_word_and_none_of_the_excluded() {
        let p = post(1, "Rust and Feeds");
        let w = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(keywords_match(&p, &w(&["rust"]), &[]));
        assert!(keywords_match(&p, &w(&["rust", "feeds"]), &w(&["go"])));
        assert!(!keywords_match(&p, &w(&["rust", "go"]), &[]));
        assert!(!keywords_match(&p, &[], &w(&["feeds"])));
    }

    #[test]
    fn a_long_title_is_cut_at_a_character_boundary() {
        let p = post(1, &"é".repeat(300));
        let it = item(&p, None, &[]);
        assert_eq!(it.title.chars().count(), TITLE_CHARS + 1);
        assert!(it.title.ends_with('…'));
        assert_eq!(it.text.chars().count(), 300);
    }
}
