//! The fake against X's own schema: every kind of answer the fake gives is validated
//! against `testdata/x-api/openapi-subset.json` (a copy of X's OpenAPI document v2.167,
//! `/work/shared/x-api/`), so the fake cannot drift from X again.
//!
//! The document spells fields the new way; the fake answers in the spelling it was asked
//! in. A new-way answer is validated as it is; an established-way answer (what Amber's
//! client asks) is validated after renaming its established keys to the new ones, and
//! must hold no new-way key. Every object schema is made strict (no property it does not
//! name), so a misspelt or invented field fails.

use std::collections::HashMap;

use reqwest::header::CONTENT_TYPE;
use serde_json::{json, Value};

use super::*;
use crate::x_api::client::{EXPANSIONS, MEDIA_FIELDS, TWEET_FIELDS, USER_FIELDS};

const DOCUMENT: &str = include_str!("../../../testdata/x-api/openapi-subset.json");

/// Established key -> new-way key, wherever it appears.
const RENAMES: [(&str, &str); 5] = [
    ("note_tweet", "note_post"),
    ("referenced_tweets", "referenced_posts"),
    ("edit_history_tweet_ids", "edit_history_post_ids"),
    ("retweet_count", "repost_count"),
    ("tweets", "posts"),
];

/// Adds `additionalProperties: false` to every object schema that names its properties.
fn make_strict(v: &mut Value) {
    match v {
        Value::Object(o) => {
            let names_properties = o.get("properties").is_some_and(Value::is_object);
            if names_properties && !o.contains_key("additionalProperties") {
                o.insert("additionalProperties".into(), Value::Bool(false));
            }
            o.values_mut().for_each(make_strict);
        }
        Value::Array(a) => a.iter_mut().for_each(make_strict),
        _ => {}
    }
}

pub(super) struct Schemas {
    components: Value,
}

impl Schemas {
    pub(super) fn load() -> Schemas {
        let mut doc: Value = serde_json::from_str(DOCUMENT).expect("the OpenAPI document parses");
        make_strict(&mut doc);
        Schemas {
            components: doc["components"].clone(),
        }
    }

    /// The problems of `body` against `components/schemas/{name}` (empty: valid).
    fn check(&self, name: &str, body: &Value) -> Vec<String> {
        let schema = json!({
            "$ref": format!("#/components/schemas/{name}"),
            "components": self.components,
        });
        let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
        validator
            .iter_errors(body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect()
    }

    pub(super) fn assert_valid(&self, name: &str, body: &Value) {
        let problems = self.check(name, body);
        assert!(problems.is_empty(), "{name}: {problems:#?}\nbody: {body:#}");
    }
}

/// Renames established keys to the new way; returns how many new-way keys were already
/// there (an established answer must have none).
fn to_new_spelling(v: &Value, new_keys_seen: &mut usize) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| {
                    if RENAMES.iter().any(|(_, new)| new == k) {
                        *new_keys_seen += 1;
                    }
                    let key = RENAMES
                        .iter()
                        .find(|(old, _)| old == k)
                        .map_or(k.as_str(), |(_, new)| new);
                    (key.to_string(), to_new_spelling(v, new_keys_seen))
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|v| to_new_spelling(v, new_keys_seen))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Keys anywhere in `v`.
fn keys(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, v) in o {
                out.push(k.clone());
                keys(v, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| keys(v, out)),
        _ => {}
    }
}

/// Validates an answer given in `spelling`: new-way answers as they are, established
/// ones renamed (and checked to hold no new-way key).
pub(super) fn assert_answer(schemas: &Schemas, name: &str, body: &Value, new_spelling: bool) {
    if new_spelling {
        let mut all = Vec::new();
        keys(body, &mut all);
        for (old, _) in RENAMES {
            assert!(
                !all.iter().any(|k| k == old),
                "{old} in a new-way answer: {body:#}"
            );
        }
        schemas.assert_valid(name, body);
    } else {
        let mut new_keys = 0;
        let renamed = to_new_spelling(body, &mut new_keys);
        assert_eq!(
            new_keys, 0,
            "new-way keys in an established answer: {body:#}"
        );
        schemas.assert_valid(name, &renamed);
    }
}

/// The client's own timeline query, in either spelling, plus `more`.
fn client_query(new_spelling: bool, more: &str) -> String {
    let (fields, expansions) = if new_spelling {
        (
            TWEET_FIELDS
                .replace("note_tweet", "note_post")
                .replace("referenced_tweets", "referenced_posts")
                .replace("edit_history_tweet_ids", "edit_history_post_ids"),
            EXPANSIONS.replace("referenced_tweets.id", "referenced_posts.id"),
        )
    } else {
        (TWEET_FIELDS.to_string(), EXPANSIONS.to_string())
    };
    let key = if new_spelling {
        "post.fields"
    } else {
        "tweet.fields"
    };
    format!(
        "{key}={fields}&expansions={expansions}&media.fields={MEDIA_FIELDS}&user.fields={USER_FIELDS}{more}"
    )
}

struct Answer {
    status: u16,
    content_type: String,
    body: Value,
}

async fn get(fake: &FakeX, path_and_query: &str) -> Answer {
    let resp = reqwest::Client::new()
        .get(format!("{}{path_and_query}", fake.control_url()))
        .bearer_auth(fake.token())
        .send()
        .await
        .expect("the fake answers");
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = resp.json().await.expect("a JSON body");
    Answer {
        status,
        content_type,
        body,
    }
}

/// A fake holding one post of every kind the fake can script, for leader0000 (and a
/// second author, `other`, whose posts the leader reposts, quotes and answers).
struct World {
    fake: FakeX,
    leader_id: String,
    ids: HashMap<&'static str, String>,
}

fn world() -> World {
    let fake = FakeX::start(FakeScript {
        users: 1,
        posts_per_user: 12,
        ..FakeScript::default()
    })
    .expect("fake starts");
    let leader = username(0);
    let mut ids = HashMap::new();
    let spec = |text: &str| PostSpec {
        text: Some(text.to_string()),
        ..PostSpec::default()
    };
    let other = |s: PostSpec| fake.add_post("other", &s).expect("scripted");
    let original = other(PostSpec {
        media: vec![MediaSpec::video(9_000)],
        ..spec("The original, with a video")
    });
    let doomed = other(spec("Soon deleted"));
    let hidden = other(spec("Soon withheld"));
    let mine = |s: PostSpec| fake.add_post(&leader, &s).expect("scripted");
    ids.insert("long", mine(spec(&"long words ".repeat(120))));
    ids.insert(
        "repost",
        mine(PostSpec {
            reposts: Some(original.clone()),
            ..PostSpec::default()
        }),
    );
    ids.insert(
        "quote",
        mine(PostSpec {
            quotes: Some(original.clone()),
            links: vec!["https://example.com/a/very/long/path/to/a/page".into()],
            ..spec("Worth reading")
        }),
    );
    ids.insert(
        "reply",
        mine(PostSpec {
            replies_to: Some(original.clone()),
            media: vec![MediaSpec::photo(), MediaSpec::gif()],
            ..spec("I agree")
        }),
    );
    let root = mine(spec("A thread, 1/2"));
    ids.insert(
        "thread",
        mine(PostSpec {
            replies_to: Some(root.clone()),
            ..spec("2/2")
        }),
    );
    ids.insert("root", root);
    let edited = mine(spec("Typo"));
    ids.insert("edited_old", edited.clone());
    ids.insert(
        "edited",
        fake.edit_post(&edited, "No typo").expect("edited"),
    );
    // References that X can no longer include: errors beside the data.
    ids.insert(
        "quotes_deleted",
        mine(PostSpec {
            quotes: Some(doomed.clone()),
            ..spec("Quoting what goes away")
        }),
    );
    ids.insert(
        "reposts_withheld",
        mine(PostSpec {
            reposts: Some(hidden.clone()),
            ..PostSpec::default()
        }),
    );
    assert!(fake.delete_post(&doomed));
    assert!(fake.withhold_post(&hidden, &["DE"]));
    ids.insert("original", original);
    ids.insert("deleted", doomed);
    ids.insert("withheld", hidden);
    let leader_id = fake.add_user(&leader, "unused");
    World {
        fake,
        leader_id,
        ids,
    }
}

#[actix_rt::test]
async fn the_strict_schema_rejects_what_x_does_not_send() {
    let schemas = Schemas::load();
    // The test can fail: an invented field, a wrong type, a missing required count.
    let bad = [
        json!({"data": [{"id": "1", "text": "x", "invented": true}]}),
        json!({"data": [{"id": 1, "text": "x"}]}),
        json!({"data": [{"id": "1", "text": "x", "public_metrics": {"like_count": 1}}]}),
        json!({"meta": {"result_count": 0, "next": "x"}}),
    ];
    for body in bad {
        assert!(
            !schemas.check("GetUsersPostsResponse", &body).is_empty(),
            "{body}"
        );
    }
    // An established answer validated without renaming fails (the new way names the
    // edit chain `edit_history_post_ids`).
    let established = json!({"data": [{"id": "1", "text": "x", "edit_history_tweet_ids": ["1"]}]});
    assert!(!schemas
        .check("GetUsersPostsResponse", &established)
        .is_empty());
}

#[actix_rt::test]
async fn every_timeline_page_validates_in_both_spellings() {
    let schemas = Schemas::load();
    let w = world();
    for new_spelling in [false, true] {
        let mut token: Option<String> = None;
        let mut pages = 0;
        let mut with_errors = 0;
        let mut seen = 0;
        let mut all_keys = Vec::new();
        loop {
            let more = match &token {
                Some(t) => format!("&max_results=5&pagination_token={t}"),
                None => "&max_results=5".to_string(),
            };
            let a = get(
                &w.fake,
                &format!(
                    "/2/users/{}/tweets?{}",
                    w.leader_id,
                    client_query(new_spelling, &more)
                ),
            )
            .await;
            assert_eq!(a.status, 200);
            assert_eq!(a.content_type, "application/json");
            assert_answer(&schemas, "GetUsersPostsResponse", &a.body, new_spelling);
            keys(&a.body, &mut all_keys);
            pages += 1;
            seen += a.body["data"].as_array().map_or(0, Vec::len);
            with_errors += usize::from(a.body.get("errors").is_some());
            token = a.body["meta"]["next_token"].as_str().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        // 12 generated + 9 scripted posts, 5 to a page: 5 pages, the last one short.
        assert_eq!(seen, 21, "new spelling: {new_spelling}");
        assert_eq!(pages, 5);
        assert!(
            with_errors >= 1,
            "a deleted or withheld reference shows in errors"
        );
        // Every part of the rich answer was there to be validated.
        let mut expected = vec![
            "note_tweet",
            "referenced_tweets",
            "edit_history_tweet_ids",
            "retweet_count",
            "tweets",
        ];
        if new_spelling {
            expected = RENAMES.iter().map(|(_, new)| *new).collect();
        }
        expected.extend([
            "conversation_id",
            "in_reply_to_user_id",
            "attachments",
            "entities",
            "expanded_url",
            "media",
            "users",
            "profile_image_url",
            "variants",
            "duration_ms",
            "preview_image_url",
            "width",
            "bookmark_count",
            "next_token",
            "errors",
        ]);
        for key in expected {
            assert!(all_keys.iter().any(|k| k == key), "{key} never answered");
        }
        // Past the newest post: an answer with only meta.
        let newest = w.fake.post_ids(&username(0))[0].clone();
        let a = get(
            &w.fake,
            &format!(
                "/2/users/{}/tweets?{}",
                w.leader_id,
                client_query(new_spelling, &format!("&since_id={newest}"))
            ),
        )
        .await;
        assert_eq!(a.body, json!({"meta": {"result_count": 0}}));
        assert_answer(&schemas, "GetUsersPostsResponse", &a.body, new_spelling);
    }
}

#[actix_rt::test]
async fn the_posts_lookup_validates_with_errors_beside_partial_data() {
    let schemas = Schemas::load();
    let w = world();
    let ids = [
        "repost",
        "deleted",
        "withheld",
        "edited_old",
        "quote",
        "long",
        "reposts_withheld",
    ]
    .map(|k| w.ids[k].clone())
    .join(",");
    for new_spelling in [false, true] {
        let a = get(
            &w.fake,
            &format!("/2/tweets?ids={ids},1&{}", client_query(new_spelling, "")),
        )
        .await;
        assert_eq!(a.status, 200);
        assert_answer(&schemas, "GetPostsByIdsResponse", &a.body, new_spelling);
        let data = a.body["data"].as_array().unwrap();
        assert_eq!(
            data.len(),
            5,
            "repost, the old version, quote, long, a repost"
        );
        let errors = a.body["errors"].as_array().unwrap();
        let types: Vec<&str> = errors.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            [
                "https://api.x.com/2/problems/resource-not-found",
                "https://api.x.com/2/problems/resource-unavailable",
                "https://api.x.com/2/problems/resource-not-found",
                "https://api.x.com/2/problems/resource-unavailable",
            ],
            "deleted, withheld, unknown id 1, then the withheld post a repost names: {errors:#?}"
        );
    }
    let a = get(&w.fake, "/2/tweets?ids=abc").await;
    assert_eq!(a.status, 400);
    assert_eq!(a.content_type, "application/problem+json");
    schemas.assert_valid("Problem", &a.body);
}

#[actix_rt::test]
async fn user_lookups_validate_found_unknown_and_suspended() {
    let schemas = Schemas::load();
    let w = world();
    w.fake.add_user("banned", "Banned");
    w.fake.suspend("banned");
    for name in [username(0), "nobody".to_string(), "banned".to_string()] {
        for fields in ["", "?user.fields=name,profile_image_url"] {
            let a = get(&w.fake, &format!("/2/users/by/username/{name}{fields}")).await;
            assert_eq!(a.status, 200);
            schemas.assert_valid("GetUsersByUsernameResponse", &a.body);
        }
    }
    let a = get(&w.fake, &format!("/2/users/by/username/{}", username(0))).await;
    let mut keys: Vec<&String> = a.body["data"].as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["id", "name", "username"], "default user fields only");
}

#[actix_rt::test]
async fn error_answers_validate_as_their_content_type_says() {
    let schemas = Schemas::load();
    let w = world();
    let timeline = format!("/2/users/{}/tweets", w.leader_id);
    let cases = [
        (
            Fault::RateLimited {
                reset_in: Duration::from_secs(60),
            },
            429,
        ),
        (Fault::ServerError, 500),
        (Fault::Unauthorized, 401),
    ];
    for (fault, status) in cases {
        w.fake.inject(fault, Some(1));
        let a = get(&w.fake, &timeline).await;
        assert_eq!(a.status, status);
        // X's `default` answer: `Error` as application/json, `Problem` as problem+json.
        let schema = match a.content_type.as_str() {
            "application/json" => "Error",
            "application/problem+json" => "Problem",
            other => panic!("content type {other}"),
        };
        schemas.assert_valid(schema, &a.body);
    }
    let a = get(&w.fake, &format!("{timeline}?max_results=500")).await;
    assert_eq!(
        (a.status, a.content_type.as_str()),
        (400, "application/problem+json")
    );
    schemas.assert_valid("Problem", &a.body);
}
