//! The formats: RSS 2.0 (`rss`), Atom 1.0 (`atom_syndication`), JSON Feed 1.1 (serde) and
//! OPML 2.0 (quick-xml's writer). Each output is a pure function of the [`Feed`]: no
//! clock, no random order, so equal content is equal bytes (the `ETag` is their hash).

use atom_syndication as atom;
use chrono::{DateTime, FixedOffset, Utc};
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use serde::Serialize;

use super::{xml_text, Feed, Item};

/// What the generator elements name.
const GENERATOR: &str = "Amber";

/// The formats a feed is served in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Rss,
    Atom,
    Json,
}

impl Format {
    /// The format of a path's extension (`rss`, `atom`, `json`).
    pub fn from_extension(ext: &str) -> Option<Format> {
        match ext {
            "rss" => Some(Format::Rss),
            "atom" => Some(Format::Atom),
            "json" => Some(Format::Json),
            _ => None,
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Rss => "rss",
            Format::Atom => "atom",
            Format::Json => "json",
        }
    }

    /// The media type of the document.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Rss => "application/rss+xml; charset=utf-8",
            Format::Atom => "application/atom+xml; charset=utf-8",
            Format::Json => "application/feed+json; charset=utf-8",
        }
    }

    /// Renders `feed` in this format.
    pub fn render(self, feed: &Feed) -> Vec<u8> {
        match self {
            Format::Rss => to_rss(feed),
            Format::Atom => to_atom(feed),
            Format::Json => to_json(feed),
        }
    }
}

fn utc(ms: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

fn fixed(ms: i64) -> DateTime<FixedOffset> {
    utc(ms).fixed_offset()
}

/// RFC 822 (as RFC 1123 updates it: four-digit year), in GMT: what RSS 2.0 requires.
pub fn rfc822(ms: i64) -> String {
    utc(ms).format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// RFC 3339 with seconds, UTC (`Z`): what Atom requires.
pub fn rfc3339(ms: i64) -> String {
    utc(ms).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// RSS 2.0, with `atom:link rel="self"`, `content:encoded` (HTML) and `dc:creator`.
pub fn to_rss(feed: &Feed) -> Vec<u8> {
    let items = feed.items.iter().map(rss_item).collect();
    let newest = feed.newest_ms().map(rfc822);
    let channel = rss::Channel {
        title: feed.title.clone(),
        link: feed.home_url.clone(),
        description: feed.description.clone(),
        generator: Some(GENERATOR.to_string()),
        last_build_date: newest.clone(),
        pub_date: newest,
        items,
        atom_ext: Some(rss::extension::atom::AtomExtension {
            links: vec![atom::Link {
                href: feed.self_url.clone(),
                rel: "self".into(),
                mime_type: Some("application/rss+xml".into()),
                ..atom::Link::default()
            }],
        }),
        ..rss::Channel::default()
    };
    // Writing into a Vec cannot fail.
    channel.write_to(Vec::new()).unwrap_or_default()
}

fn rss_item(item: &Item) -> rss::Item {
    rss::Item {
        title: Some(item.title.clone()),
        link: item.url.clone(),
        description: Some(item.html.clone()),
        content: Some(item.html.clone()),
        guid: Some(rss::Guid {
            value: item.guid.clone(),
            permalink: false,
        }),
        pub_date: Some(rfc822(item.published_ms)),
        // RSS's `author` is an e-mail address; the name goes into `dc:creator`.
        dublin_core_ext: Some(rss::extension::dublincore::DublinCoreExtension {
            creators: vec![item.author.name.clone()],
            ..Default::default()
        }),
        // RSS allows one enclosure per item; the others are images in the content.
        enclosure: item.enclosures.first().map(|e| rss::Enclosure {
            url: e.url.clone(),
            length: "0".into(),
            mime_type: e.mime_type.into(),
        }),
        ..rss::Item::default()
    }
}

/// Atom 1.0: HTML content, `link rel="alternate"` to the post, one `rel="enclosure"` link
/// per media file.
pub fn to_atom(feed: &Feed) -> Vec<u8> {
    let updated = fixed(feed.newest_ms().unwrap_or(0));
    let doc = atom::Feed {
        title: atom::Text::plain(feed.title.clone()),
        id: feed.self_url.clone(),
        updated,
        subtitle: Some(atom::Text::plain(feed.description.clone())),
        generator: Some(atom::Generator {
            value: GENERATOR.into(),
            uri: None,
            version: None,
        }),
        links: vec![
            atom::Link {
                href: feed.self_url.clone(),
                rel: "self".into(),
                mime_type: Some("application/atom+xml".into()),
                ..atom::Link::default()
            },
            atom::Link {
                href: feed.home_url.clone(),
                rel: "alternate".into(),
                mime_type: Some("text/html".into()),
                ..atom::Link::default()
            },
        ],
        entries: feed.items.iter().map(atom_entry).collect(),
        ..atom::Feed::default()
    };
    doc.write_to(Vec::new()).unwrap_or_default()
}

fn atom_entry(item: &Item) -> atom::Entry {
    let mut links: Vec<atom::Link> = item
        .url
        .iter()
        .map(|u| atom::Link {
            href: u.clone(),
            rel: "alternate".into(),
            mime_type: Some("text/html".into()),
            ..atom::Link::default()
        })
        .collect();
    links.extend(item.enclosures.iter().map(|e| atom::Link {
        href: e.url.clone(),
        rel: "enclosure".into(),
        mime_type: Some(e.mime_type.into()),
        ..atom::Link::default()
    }));
    atom::Entry {
        title: atom::Text::plain(item.title.clone()),
        id: item.guid.clone(),
        updated: fixed(item.published_ms),
        published: Some(fixed(item.published_ms)),
        authors: vec![atom::Person {
            name: item.author.name.clone(),
            email: None,
            uri: item.author.url.clone(),
            extensions: Default::default(),
        }],
        links,
        content: Some(atom::Content {
            value: Some(item.html.clone()),
            content_type: Some("html".into()),
            ..atom::Content::default()
        }),
        ..atom::Entry::default()
    }
}

#[derive(Serialize)]
struct JsonFeed<'a> {
    version: &'static str,
    title: &'a str,
    home_page_url: &'a str,
    feed_url: &'a str,
    description: &'a str,
    items: Vec<JsonItem<'a>>,
}

#[derive(Serialize)]
struct JsonItem<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<&'a str>,
    title: &'a str,
    content_html: &'a str,
    content_text: &'a str,
    date_published: String,
    authors: [JsonAuthor<'a>; 1],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    attachments: Vec<JsonAttachment<'a>>,
    /// Amber's kind of post (`post`, `repost`, `quote`, `reply`): a JSON Feed extension.
    #[serde(rename = "_amber")]
    amber: JsonExtension,
}

#[derive(Serialize)]
struct JsonAuthor<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<&'a str>,
}

#[derive(Serialize)]
struct JsonAttachment<'a> {
    url: &'a str,
    mime_type: &'a str,
}

#[derive(Serialize)]
struct JsonExtension {
    kind: &'static str,
}

/// JSON Feed 1.1.
pub fn to_json(feed: &Feed) -> Vec<u8> {
    let doc = JsonFeed {
        version: "https://jsonfeed.org/version/1.1",
        title: &feed.title,
        home_page_url: &feed.home_url,
        feed_url: &feed.self_url,
        description: &feed.description,
        items: feed
            .items
            .iter()
            .map(|i| JsonItem {
                id: &i.guid,
                url: i.url.as_deref(),
                title: &i.title,
                content_html: &i.html,
                content_text: &i.text,
                date_published: rfc3339(i.published_ms),
                authors: [JsonAuthor {
                    name: &i.author.name,
                    url: i.author.url.as_deref(),
                }],
                attachments: i
                    .enclosures
                    .iter()
                    .map(|e| JsonAttachment {
                        url: &e.url,
                        mime_type: e.mime_type,
                    })
                    .collect(),
                amber: JsonExtension {
                    kind: i.kind.as_str(),
                },
            })
            .collect(),
    };
    serde_json::to_vec(&doc).unwrap_or_default()
}

/// One line of an OPML document: a feed to subscribe to.
#[derive(Debug, Clone, PartialEq)]
pub struct Outline {
    pub title: String,
    /// The feed (`xmlUrl`).
    pub feed_url: String,
    /// The page it mirrors (`htmlUrl`).
    pub html_url: String,
}

/// OPML 2.0: one `rss` outline per feed, under a `head` with the title.
pub fn to_opml(title: &str, outlines: &[Outline]) -> Vec<u8> {
    let mut w = quick_xml::Writer::new(Vec::new());
    // Writing into a Vec cannot fail: the results carry no information.
    let _ = w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)));
    let mut opml = BytesStart::new("opml");
    opml.push_attribute(("version", "2.0"));
    let _ = w.write_event(Event::Start(opml));
    let _ = w.write_event(Event::Start(BytesStart::new("head")));
    let _ = w.write_event(Event::Start(BytesStart::new("title")));
    let title = xml_text(title);
    let _ = w.write_event(Event::Text(BytesText::new(&title)));
    let _ = w.write_event(Event::End(BytesEnd::new("title")));
    let _ = w.write_event(Event::End(BytesEnd::new("head")));
    let _ = w.write_event(Event::Start(BytesStart::new("body")));
    for o in outlines {
        let title = xml_text(&o.title);
        let feed_url = xml_text(&o.feed_url);
        let html_url = xml_text(&o.html_url);
        let mut el = BytesStart::new("outline");
        el.push_attribute(("type", "rss"));
        el.push_attribute(("text", title.as_str()));
        el.push_attribute(("title", title.as_str()));
        el.push_attribute(("xmlUrl", feed_url.as_str()));
        el.push_attribute(("htmlUrl", html_url.as_str()));
        let _ = w.write_event(Event::Empty(el));
    }
    let _ = w.write_event(Event::End(BytesEnd::new("body")));
    let _ = w.write_event(Event::End(BytesEnd::new("opml")));
    w.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feeds::tests::{leader, post};
    use crate::feeds::{item, Feed};

    fn feed(text: &str) -> Feed {
        Feed {
            title: "Amber: Ann & <Co>".into(),
            description: "d".into(),
            home_url: "http://h/".into(),
            self_url: "http://h/feeds/all.rss?q=a&exclude=b".into(),
            items: vec![item(&post(1, text), Some(&leader()), &[])],
        }
    }

    #[test]
    fn dates_follow_each_format() {
        assert_eq!(rfc822(1_735_689_600_000), "Wed, 01 Jan 2025 00:00:00 GMT");
        assert_eq!(rfc3339(1_735_689_600_000), "2025-01-01T00:00:00Z");
    }

    #[test]
    fn hostile_text_comes_out_escaped_in_every_format() {
        let hostile = "a & b < c ]]> \u{0}\u{1b} \u{1F600} مرحبا";
        for format in [Format::Rss, Format::Atom] {
            let body = String::from_utf8(format.render(&feed(hostile))).unwrap();
            assert!(
                !body.contains('\u{0}') && !body.contains('\u{1b}'),
                "{body}"
            );
            assert!(body.contains("\u{1F600} مرحبا"));
            assert!(body.contains("Ann &amp; &lt;Co&gt;"), "{body}");
            assert!(body.contains("q=a&amp;exclude=b"), "{body}");
            assert!(!body.contains("a & b"), "{body}");
            // Parsed back by the formats' own readers: well-formed, the text intact.
            let back = match format {
                Format::Rss => rss::Channel::read_from(body.as_bytes()).unwrap().items()[0]
                    .title()
                    .unwrap()
                    .to_string(),
                _ => atom::Feed::read_from(body.as_bytes()).unwrap().entries()[0]
                    .title()
                    .as_str()
                    .to_string(),
            };
            assert_eq!(back, "a & b < c ]]> \u{1F600} مرحبا");
        }
        let json: serde_json::Value = serde_json::from_slice(&to_json(&feed(hostile))).unwrap();
        assert_eq!(
            json["items"][0]["content_text"],
            "a & b < c ]]>  \u{1F600} مرحبا"
        );
    }

    #[test]
    fn equal_feeds_render_to_equal_bytes() {
        for format in [Format::Rss, Format::Atom, Format::Json] {
            assert_eq!(format.render(&feed("x")), format.render(&feed("x")));
            assert_ne!(format.render(&feed("x")), format.render(&feed("y")));
        }
    }

    #[test]
    fn opml_escapes_its_attributes() {
        let body = String::from_utf8(to_opml(
            "Amber",
            &[Outline {
                title: "A \"&\" <b>\u{1}".into(),
                feed_url: "http://h/feeds/leaders/1.rss".into(),
                html_url: "http://h/?leader=1".into(),
            }],
        ))
        .unwrap();
        assert!(
            body.contains("text=\"A &quot;&amp;&quot; &lt;b&gt;\""),
            "{body}"
        );
        assert!(
            body.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?><opml version=\"2.0\">")
        );
    }
}
