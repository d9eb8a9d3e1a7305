//! Unit tests of the fake, through the real client.

use serde_json::json;

use super::render::{page_token, parse_page_token};
use super::*;
use crate::config::Secret;
use crate::x_api::client::{FetchError, RetryPolicy, XClient};

fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        max_tries: 3,
        base_delay: Duration::from_millis(5),
        max_reset_wait: Duration::from_secs(2),
        request_timeout: Duration::from_millis(500),
    }
}

fn client_for(fake: &FakeX) -> XClient {
    XClient::new(fake.base_url(), Secret::new(fake.token()), fast_policy()).unwrap()
}

fn fake(users: u32, posts: u32) -> FakeX {
    FakeX::start(FakeScript {
        users,
        posts_per_user: posts,
        ..FakeScript::default()
    })
    .unwrap()
}

#[test]
fn page_tokens_round_trip() {
    for id in [0u64, 1, 35, 36, 1_999_999_999_999_999_999, u64::MAX] {
        assert_eq!(parse_page_token(&page_token(id)), Some(id));
    }
    assert_eq!(parse_page_token("garbage!"), None);
}

#[actix_rt::test]
async fn a_handle_resolves_to_its_user_with_name_and_avatar() {
    let fake = fake(2, 0);
    let user = client_for(&fake).resolve_user("leader0001").await.unwrap();
    assert_eq!(user.username, "leader0001");
    assert_eq!(user.name, "Leader 1");
    assert!(user
        .profile_image_url
        .unwrap()
        .starts_with("https://pbs.twimg.com/"));
    assert_eq!(fake.stats().user_lookups, 1);
}

#[actix_rt::test]
async fn unknown_and_suspended_users_come_back_as_typed_errors() {
    let fake = fake(2, 5);
    let client = client_for(&fake);
    assert_eq!(
        client.resolve_user("nobody").await,
        Err(FetchError::NotFound("nobody".into()))
    );
    let id = client.resolve_user("leader0000").await.unwrap().id;
    fake.suspend("leader0000");
    assert!(matches!(
        client.resolve_user("leader0000").await,
        Err(FetchError::Suspended(_))
    ));
    assert!(matches!(
        client.timeline(&id, None, 10, None).await,
        Err(FetchError::Suspended(_))
    ));
}

#[actix_rt::test]
async fn the_timeline_request_carries_exactly_the_spec_parameters() {
    let fake = fake(1, 3);
    let client = client_for(&fake);
    let user = client.resolve_user("leader0000").await.unwrap();
    client
        .timeline(&user.id, Some("42"), 7, Some("pt1"))
        .await
        .unwrap();
    let line = fake.stats().recent_requests.last().cloned().unwrap();
    assert_eq!(
        line,
        format!(
            "GET /2/users/{}/tweets?max_results=7\
             &tweet.fields=created_at%2Cpublic_metrics%2Clang%2Cauthor_id%2Cedit_history_tweet_ids%2C\
             note_tweet%2Creferenced_tweets%2Cconversation_id%2Cin_reply_to_user_id%2C\
             attachments%2Centities\
             &expansions=attachments.media_keys%2Creferenced_tweets.id%2C\
             referenced_tweets.id.author_id%2Cauthor_id\
             &media.fields=type%2Curl%2Cpreview_image_url%2Cvariants%2Cduration_ms%2Cwidth%2Cheight\
             &user.fields=name%2Cprofile_image_url\
             &since_id=42&pagination_token=pt1",
            user.id
        )
    );
}

#[actix_rt::test]
async fn pagination_walks_every_post_once_newest_first() {
    let fake = fake(2, 23);
    let client = client_for(&fake);
    let user = client.resolve_user("leader0001").await.unwrap();
    let mut seen = Vec::new();
    let mut token = None;
    loop {
        let page = client
            .timeline(&user.id, None, 10, token.as_deref())
            .await
            .unwrap()
            .response;
        assert!(page.data.len() <= 10);
        seen.extend(page.data.iter().map(|t| t.id.parse::<u64>().unwrap()));
        token = page.meta.next_token;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(seen.len(), 23);
    assert!(
        seen.windows(2).all(|w| w[0] > w[1]),
        "newest first, no repeats"
    );
    assert_eq!(
        seen.iter().map(u64::to_string).collect::<Vec<_>>(),
        fake.post_ids("leader0001")
    );
}

#[actix_rt::test]
async fn since_id_returns_only_newer_posts_and_an_empty_answer_has_only_meta() {
    let fake = fake(1, 6);
    let client = client_for(&fake);
    let user = client.resolve_user("leader0000").await.unwrap();
    let newest = fake.post_ids("leader0000")[0].clone();
    let page = client
        .timeline(&user.id, Some(&newest), 100, None)
        .await
        .unwrap()
        .response;
    assert!(page.data.is_empty());
    assert_eq!(page.meta.result_count, 0);
    let added = fake.add_posts("leader0000", 2);
    let page = client
        .timeline(&user.id, Some(&newest), 100, None)
        .await
        .unwrap()
        .response;
    let got: Vec<_> = page.data.iter().map(|t| t.id.clone()).collect();
    assert_eq!(got, vec![added[1].clone(), added[0].clone()]);
    assert_eq!(page.meta.newest_id.as_deref(), Some(added[1].as_str()));
}

#[actix_rt::test]
async fn media_and_edit_chains_are_served_in_wire_format() {
    let fake = fake(1, 12);
    let client = client_for(&fake);
    let user = client.resolve_user("leader0000").await.unwrap();
    let page = client
        .timeline(&user.id, None, 100, None)
        .await
        .unwrap()
        .response;
    let media = page.media_by_key();
    let with_media = page.data.iter().filter(|t| t.attachments.is_some()).count();
    assert!(with_media >= 4, "{with_media}");
    for t in &page.data {
        for key in t.attachments.iter().flat_map(|a| a.media_keys.iter()) {
            assert!(media.contains_key(key.as_str()), "media {key} joined");
        }
    }
    assert!(page
        .data
        .iter()
        .any(|t| t.edit_history_tweet_ids.len() == 2));
    let old = page.data[0].id.clone();
    let new = fake.edit_post(&old, "fixed a typo").unwrap();
    let page = client
        .timeline(&user.id, None, 100, None)
        .await
        .unwrap()
        .response;
    assert_eq!(page.data[0].id, new);
    assert_eq!(page.data[0].edit_history_tweet_ids, vec![old, new]);
    assert_eq!(page.data.len(), 12);
}

#[actix_rt::test]
async fn a_wrong_token_is_an_auth_error_and_is_not_retried() {
    let fake = fake(1, 1);
    let client = XClient::new(fake.base_url(), Secret::new("wrong"), fast_policy()).unwrap();
    assert_eq!(
        client.resolve_user("leader0000").await,
        Err(FetchError::Auth { status: 401 })
    );
    assert_eq!(fake.api_calls(), 1);
}

#[actix_rt::test]
async fn server_errors_are_retried_up_to_three_tries() {
    let fake = fake(1, 1);
    let client = client_for(&fake);
    fake.inject(Fault::ServerError, Some(2));
    assert!(client.resolve_user("leader0000").await.is_ok());
    assert_eq!(fake.api_calls(), 3);
    fake.inject(Fault::ServerError, Some(3));
    assert_eq!(
        client.resolve_user("leader0000").await,
        Err(FetchError::Server { status: 500 })
    );
    assert_eq!(fake.api_calls(), 6);
}

#[actix_rt::test]
async fn slow_answers_time_out_and_are_retried() {
    let fake = fake(1, 1);
    let client = client_for(&fake);
    fake.inject(
        Fault::Slow {
            delay: Duration::from_secs(2),
        },
        Some(1),
    );
    assert!(client.resolve_user("leader0000").await.is_ok());
    assert_eq!(fake.api_calls(), 2);
    fake.inject(
        Fault::Slow {
            delay: Duration::from_secs(2),
        },
        Some(3),
    );
    assert_eq!(
        client.resolve_user("leader0000").await,
        Err(FetchError::Timeout)
    );
}

#[actix_rt::test]
async fn malformed_json_is_an_error_not_a_panic() {
    let fake = fake(1, 1);
    let client = client_for(&fake);
    fake.inject(Fault::Malformed, Some(1));
    assert!(matches!(
        client.resolve_user("leader0000").await,
        Err(FetchError::Malformed(_))
    ));
    assert_eq!(fake.api_calls(), 1, "malformed answers are not retried");
}

#[actix_rt::test]
async fn a_near_rate_limit_reset_is_waited_for_and_a_far_one_is_surfaced() {
    let fake = fake(1, 1);
    let client = client_for(&fake);
    fake.inject(
        Fault::RateLimited {
            reset_in: Duration::from_secs(1),
        },
        Some(1),
    );
    let started = std::time::Instant::now();
    assert!(client.resolve_user("leader0000").await.is_ok());
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(fake.api_calls(), 2);
    fake.inject(
        Fault::RateLimited {
            reset_in: Duration::from_secs(900),
        },
        Some(1),
    );
    match client.resolve_user("leader0000").await {
        Err(FetchError::RateLimited { reset_at: Some(at) }) => {
            let ahead = (at - Utc::now()).num_seconds();
            assert!((890..=901).contains(&ahead), "{ahead}");
        }
        other => panic!("expected a far rate limit, got {other:?}"),
    }
    assert_eq!(fake.api_calls(), 3);
}

#[actix_rt::test]
async fn a_bad_max_results_is_clamped_by_the_client_and_refused_by_the_fake() {
    let fake = fake(1, 30);
    let client = client_for(&fake);
    let user = client.resolve_user("leader0000").await.unwrap();
    let page = client
        .timeline(&user.id, None, 1, None)
        .await
        .unwrap()
        .response;
    assert_eq!(page.data.len(), 5);
    let page = client
        .timeline(&user.id, None, 500, None)
        .await
        .unwrap()
        .response;
    assert_eq!(page.data.len(), 30);
    let raw = reqwest::Client::new()
        .get(format!(
            "{}/users/{}/tweets?max_results=3",
            fake.base_url(),
            user.id
        ))
        .bearer_auth(fake.token())
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
}

#[actix_rt::test]
async fn faults_can_be_armed_over_http_and_stats_read_back() {
    let fake = fake(1, 1);
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{}/_fake/faults", fake.control_url()))
        .json(&json!({"kind": "server_error", "count": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let client = client_for(&fake);
    assert_eq!(
        client.resolve_user("leader0000").await,
        Err(FetchError::Server { status: 500 })
    );
    let stats: serde_json::Value = http
        .get(format!("{}/_fake/stats", fake.control_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["api_calls"], 3);
    assert_eq!(stats["faults_served"], 3);
    let bad = http
        .post(format!("{}/_fake/faults", fake.control_url()))
        .json(&json!({"kind": "gremlins"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    http.post(format!("{}/_fake/faults", fake.control_url()))
        .json(&json!({"kind": "unauthorized", "count": 0}))
        .send()
        .await
        .unwrap();
    assert!(client.resolve_user("leader0000").await.is_err());
    assert!(client.resolve_user("leader0000").await.is_err());
    http.delete(format!("{}/_fake/faults", fake.control_url()))
        .send()
        .await
        .unwrap();
    assert!(client.resolve_user("leader0000").await.is_ok());
}

#[actix_rt::test]
async fn every_answer_carries_rate_limit_headers() {
    let fake = fake(1, 1);
    let resp = reqwest::Client::new()
        .get(format!("{}/users/by/username/leader0000", fake.base_url()))
        .bearer_auth(fake.token())
        .send()
        .await
        .unwrap();
    let h = resp.headers();
    assert_eq!(h["x-rate-limit-limit"], "1500");
    assert_eq!(h["x-rate-limit-remaining"], "1499");
    let reset: i64 = h["x-rate-limit-reset"].to_str().unwrap().parse().unwrap();
    assert!(reset > Utc::now().timestamp());
}

async fn get_json(fake: &FakeX, path_and_query: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(format!("{}{path_and_query}", fake.base_url()))
        .bearer_auth(fake.token())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[actix_rt::test]
async fn without_fields_the_fake_sends_only_x_defaults() {
    let fake = fake(1, 6);
    let id = fake.add_user("leader0000", "unused");
    let body = get_json(&fake, &format!("/users/{id}/tweets")).await;
    assert!(body.get("includes").is_none(), "{body}");
    for post in body["data"].as_array().unwrap() {
        let mut keys: Vec<&String> = post.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, ["edit_history_tweet_ids", "id", "text"]);
    }
    // Media keys come with the expansion, media fields only when asked.
    let body = get_json(
        &fake,
        &format!("/users/{id}/tweets?expansions=attachments.media_keys"),
    )
    .await;
    for m in body["includes"]["media"].as_array().unwrap() {
        let mut keys: Vec<&String> = m.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, ["media_key", "type"]);
    }
}

#[actix_rt::test]
async fn posts_of_every_kind_are_scripted_over_http() {
    let fake = fake(1, 1);
    let http = reqwest::Client::new();
    let control = fake.control_url().to_string();
    let post = |path: String, body: serde_json::Value| {
        let req = http.post(format!("{control}{path}")).json(&body);
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (status, body) = post(
        "/_fake/users/other/posts".into(),
        json!({"text": "Original", "media": [{"type": "animated_gif"}]}),
    )
    .await;
    assert_eq!(status, 200);
    let original = body["ids"][0].as_str().unwrap().to_string();
    let (_, body) = post(
        "/_fake/users/leader0000/posts".into(),
        json!({"reposts": original}),
    )
    .await;
    let repost = body["ids"][0].as_str().unwrap().to_string();
    let (status, _) = post(
        "/_fake/users/leader0000/posts".into(),
        json!({"quotes": "12345"}),
    )
    .await;
    assert_eq!(status, 400, "an unknown referenced post is refused");
    let (status, body) = post(
        format!("/_fake/posts/{original}/counts"),
        json!({"like_count": 77}),
    )
    .await;
    assert_eq!((status, body["like_count"].clone()), (200, json!(77)));

    let ask = "tweet.fields=referenced_tweets,public_metrics&expansions=referenced_tweets.id,\
               attachments.media_keys&media.fields=variants,preview_image_url";
    let body = get_json(&fake, &format!("/tweets?ids={repost}&{ask}")).await;
    assert!(body["data"][0]["text"]
        .as_str()
        .unwrap()
        .starts_with("RT @other: Original"));
    assert_eq!(body["data"][0]["referenced_tweets"][0]["type"], "retweeted");
    assert_eq!(body["includes"]["tweets"][0]["id"], original.as_str());
    assert_eq!(
        body["includes"]["tweets"][0]["public_metrics"]["like_count"],
        77
    );
    let gif = &body["includes"]["media"][0];
    assert_eq!(gif["type"], "animated_gif");
    assert!(gif["preview_image_url"].is_string() && gif["variants"][0]["url"].is_string());

    let (status, _) = post(format!("/_fake/posts/{original}/delete"), json!({})).await;
    assert_eq!(status, 200);
    let body = get_json(&fake, &format!("/tweets?ids={repost},{original}&{ask}")).await;
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    // The repost carries the original's media keys, as X's repost objects do; the
    // deleted original itself is no longer included.
    assert!(body["includes"].get("tweets").is_none(), "{body}");
    assert_eq!(body["errors"].as_array().unwrap().len(), 2, "{body}");
    let (status, _) = post(
        format!("/_fake/posts/{repost}/withhold"),
        json!({"country_codes": ["FR"]}),
    )
    .await;
    assert_eq!(status, 200);
    let body = get_json(
        &fake,
        &format!("/users/{}/tweets", fake.add_user("leader0000", "x")),
    )
    .await;
    assert_eq!(
        body["meta"]["result_count"], 1,
        "the withheld repost left the timeline"
    );
}

#[actix_rt::test]
async fn every_kind_of_post_maps_to_the_real_post_through_the_client() {
    use crate::domain::post::{MediaKind, PostKind, Relation};
    use crate::domain::sentiment::Sentiment;
    use crate::x_api::dto::AuthorProfile;

    let fake = fake(1, 0);
    let spec = |text: &str| PostSpec {
        text: Some(text.to_string()),
        ..PostSpec::default()
    };
    let original = fake
        .add_post(
            "other",
            &PostSpec {
                media: vec![MediaSpec::video(9_000)],
                links: vec!["https://example.com/report".into()],
                ..spec("A wonderful, happy report")
            },
        )
        .unwrap();
    let leader = "leader0000";
    let long = "word ".repeat(240);
    let add = |s: PostSpec| fake.add_post(leader, &s).unwrap();
    let long_id = add(spec(&long));
    let repost = add(PostSpec {
        reposts: Some(original.clone()),
        ..PostSpec::default()
    });
    let quote = add(PostSpec {
        quotes: Some(original.clone()),
        ..spec("This is terrible and awful")
    });
    let reply = add(PostSpec {
        replies_to: Some(original.clone()),
        ..spec("Thanks")
    });
    let root = add(spec("Thread 1/2"));
    let next = add(PostSpec {
        replies_to: Some(root.clone()),
        ..spec("2/2")
    });
    let client = client_for(&fake);
    let user = client.resolve_user(leader).await.unwrap();
    let page = client.timeline(&user.id, None, 100, None).await.unwrap();
    assert!(
        page.includes_count() >= 3,
        "original, its author, its video"
    );
    let includes = page.response.includes.as_ref().unwrap();
    assert!(!includes.media.is_empty(), "the video is in includes.media");
    assert_eq!(
        page.billed_resources(),
        page.response.data.len() + includes.users.len() + includes.tweets.len(),
        "media are not billed"
    );
    let posts = page
        .response
        .to_new_posts(1, &AuthorProfile::from_user(&user));
    let by_id = |id: &str| {
        posts
            .iter()
            .find(|p| p.platform_post_id.as_deref() == Some(id))
            .unwrap()
    };
    // A 1,200-character post is whole.
    assert_eq!(by_id(&long_id).content, long);
    // A repost is the reposted post, credited to the leader, dated when reposted.
    let r = by_id(&repost);
    assert_eq!(r.details.kind, PostKind::Repost);
    assert_eq!(
        r.content,
        "A wonderful, happy report https://example.com/report"
    );
    assert_eq!(r.author.handle.as_deref(), Some("other"));
    assert_eq!(
        r.details.reposted_by.as_ref().unwrap().handle.as_deref(),
        Some(leader)
    );
    assert_eq!(
        r.sentiment,
        Sentiment::Neutral,
        "no words of the leader's own"
    );
    let original_ms = crate::x_api::dto::timestamp_ms(&crate::x_api::dto::Tweet {
        id: original.clone(),
        ..Default::default()
    })
    .unwrap();
    assert!(
        r.timestamp_ms >= original_ms,
        "dated when the leader reposted it"
    );
    assert_eq!(
        r.timestamp_ms,
        crate::x_api::fake::script::snowflake_ms(repost.parse().unwrap())
    );
    let video = &r.details.media[0];
    assert_eq!(video.kind, MediaKind::Video);
    assert!(video.preview_image_url.is_some() && !video.variants.is_empty());
    assert_eq!(video.duration_ms, Some(9_000));
    // A quote keeps the quoted post; the link X appends to it is not in the text.
    let q = by_id(&quote);
    assert_eq!(q.details.kind, PostKind::Quote);
    assert_eq!(q.content, "This is terrible and awful");
    assert_eq!(q.sentiment, Sentiment::Negative);
    let quoted = q.details.referenced.as_ref().unwrap();
    assert_eq!(quoted.relation, Relation::Quoted);
    assert_eq!(quoted.id, original);
    assert_eq!(quoted.author.handle.as_deref(), Some("other"));
    assert_eq!(
        quoted.text.as_deref(),
        Some("A wonderful, happy report https://example.com/report")
    );
    assert_eq!(quoted.media.len(), 1);
    // A reply keeps what it answers.
    let a = by_id(&reply);
    assert_eq!(a.details.kind, PostKind::Reply);
    assert_eq!(a.content, "@other Thanks");
    assert_eq!(
        a.details.referenced.as_ref().unwrap().relation,
        Relation::RepliedTo
    );
    assert_eq!(
        a.details.conversation_id.as_deref(),
        Some(original.as_str())
    );
    // A thread shares its first post's conversation.
    assert_eq!(
        by_id(&next).details.conversation_id.as_deref(),
        Some(root.as_str())
    );
    assert_eq!(
        by_id(&root).details.conversation_id.as_deref(),
        Some(root.as_str())
    );
}
