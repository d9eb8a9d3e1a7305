//! `XClient`: the X API v2 over reqwest (rustls). It knows the two endpoints Amber
//! reads, the exact query parameters SPEC lists, how X reports errors, and the retry
//! rules ([`RetryPolicy::after_failure`]): 5xx, timeouts and connection failures are
//! retried with exponential backoff and jitter (at most [`RetryPolicy::max_tries`] tries
//! in all); a 429 whose `x-rate-limit-reset` is at most [`RetryPolicy::max_reset_wait`]
//! away is waited out, a later one is returned as [`FetchError::RateLimited`] so the run
//! can stop and record when it may resume; 401/403 are never retried.
//!
//! Each endpoint has a one-try form (`*_once`), which `XFetcher` drives through its own
//! retry loop (every try asks the circuit breaker, and waits can be stopped), and a
//! retrying form for callers without a breaker (tests, tools).
//!
//! The bearer token is only ever put in the `Authorization` header: `Debug` hides it and
//! no log line or error carries it.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use rand::Rng;
use reqwest::{header, StatusCode, Url};
use serde::de::DeserializeOwned;

use crate::config::Secret;
use crate::x_api::activity;
use crate::x_api::dto::{ApiError, ApiErrorKind, TimelineResponse, User, UserResponse};

/// The fields asked for on every timeline request: SPEC's, plus what makes the stored post
/// the real post (`note_tweet`: the full text of a long post; the kind, the conversation
/// and the reply target; the media keys; `entities`, whose links replace `t.co`).
pub const TWEET_FIELDS: &str = "created_at,public_metrics,lang,author_id,edit_history_tweet_ids,\
                                note_tweet,referenced_tweets,conversation_id,in_reply_to_user_id,\
                                attachments,entities";
/// The expansions: media, the referenced posts (reposted, quoted, answered), their
/// authors, and the page's author.
pub const EXPANSIONS: &str =
    "attachments.media_keys,referenced_tweets.id,referenced_tweets.id.author_id,author_id";
/// The media fields: SPEC's, plus what shows a video (its files, length and size).
pub const MEDIA_FIELDS: &str = "type,url,preview_image_url,variants,duration_ms,width,height";
/// The user fields asked for when resolving a handle and for the users a timeline
/// includes (name and avatar go on each post and on each referenced post).
pub const USER_FIELDS: &str = "name,profile_image_url";
/// Largest answer body accepted (a page of 100 posts with media is about 60 KB).
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// X's bounds for `max_results` on a user timeline.
pub const MIN_PAGE: u32 = 5;
/// See [`MIN_PAGE`].
pub const MAX_PAGE: u32 = 100;

/// Why a call to X failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FetchError {
    /// 401 or 403: the token is wrong, revoked, or lacks access. Not retried.
    #[error("X rejected the bearer token (HTTP {status})")]
    Auth { status: u16 },
    /// 429. `reset_at` comes from `x-rate-limit-reset` (None when X did not send it).
    #[error("rate limited by X until {}", reset_at.map(|t| t.to_rfc3339()).unwrap_or_else(|| "an unknown time".into()))]
    RateLimited { reset_at: Option<DateTime<Utc>> },
    /// 5xx after every retry.
    #[error("X answered HTTP {status}")]
    Server { status: u16 },
    /// No answer within the request timeout, after every retry.
    #[error("X did not answer in time")]
    Timeout,
    /// The body was not the JSON X documents. Never a panic.
    #[error("malformed answer from X: {0}")]
    Malformed(String),
    /// The `errors` array says the user does not exist.
    #[error("X user not found: {0}")]
    NotFound(String),
    /// The `errors` array says the user is suspended.
    #[error("X user suspended: {0}")]
    Suspended(String),
    /// Any other 4xx (a request X refused).
    #[error("X refused the request (HTTP {status}): {detail}")]
    Rejected { status: u16, detail: String },
    /// The connection failed (refused, reset, DNS), after every retry.
    #[error("could not reach X: {0}")]
    Transport(String),
    /// The circuit breaker is open: the call was not made. Produced by `XFetcher`.
    #[error("circuit breaker open until {}", retry_at.to_rfc3339())]
    CircuitOpen { retry_at: DateTime<Utc> },
    /// Ingestion was stopped while the call waited (for a permit, a retry, a rate-limit
    /// reset): it was not made. Produced by `XFetcher`.
    #[error("stopped while waiting to call X")]
    Stopped,
    /// 403 `subscription-limit`: the app holds as many Activity API subscriptions as its
    /// tier allows. Not retried.
    #[error("X's cap on activity subscriptions is reached: {0}")]
    SubscriptionCap(String),
}

impl FetchError {
    /// Whether this outcome counts as a failed call for the circuit breaker. An unknown or
    /// suspended user is a correct answer from a healthy API, and a call that was never
    /// made cannot fail.
    pub fn counts_as_failure(&self) -> bool {
        !matches!(
            self,
            FetchError::NotFound(_)
                | FetchError::Suspended(_)
                | FetchError::CircuitOpen { .. }
                | FetchError::Stopped
                | FetchError::SubscriptionCap(_)
        )
    }

    /// Whether this error is X's as a whole (an outage: 5xx, no answer, no connection, or
    /// the breaker that saw one) rather than one leader's: it says nothing about the
    /// leader, so it must not put the leader into backoff.
    pub fn is_outage(&self) -> bool {
        matches!(
            self,
            FetchError::Server { .. }
                | FetchError::Timeout
                | FetchError::Transport(_)
                | FetchError::CircuitOpen { .. }
        )
    }

    /// Whether the rest of the run is pointless after this error: the token is refused,
    /// X asked us to wait, or the breaker forbids calls. Other errors concern one leader.
    pub fn stops_run(&self) -> bool {
        matches!(
            self,
            FetchError::Auth { .. }
                | FetchError::RateLimited { .. }
                | FetchError::CircuitOpen { .. }
                | FetchError::Stopped
        )
    }

    /// A stable snake_case name for the run record and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            FetchError::Auth { .. } => "auth",
            FetchError::RateLimited { .. } => "rate_limited",
            FetchError::Server { .. } => "server",
            FetchError::Timeout => "timeout",
            FetchError::Malformed(_) => "malformed",
            FetchError::NotFound(_) => "not_found",
            FetchError::Suspended(_) => "suspended",
            FetchError::Rejected { .. } => "rejected",
            FetchError::Transport(_) => "transport",
            FetchError::CircuitOpen { .. } => "circuit_open",
            FetchError::Stopped => "stopped",
            FetchError::SubscriptionCap(_) => "subscription_cap",
        }
    }

    fn is_retryable(&self) -> bool {
        matches!(
            self,
            FetchError::Server { .. } | FetchError::Timeout | FetchError::Transport(_)
        )
    }
}

/// Retry and timeout rules. `Default` holds the production values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Tries per call, the first included.
    pub max_tries: u32,
    /// Backoff before the second try; doubled for each later one, with jitter.
    pub base_delay: Duration,
    /// A 429 whose reset is at most this far away is waited for; a later one stops the run.
    /// One minute: short enough that a run does not stall, long enough to ride out the
    /// end of a 15-minute X window without losing the run.
    pub max_reset_wait: Duration,
    /// Time allowed for one HTTP request, body included.
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_tries: 3,
            base_delay: Duration::from_millis(500),
            max_reset_wait: Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The pause before try number `next_try` (2, 3, ...): `base * 2^(next_try-2)`, of
    /// which the upper half is random (jitter), so many clients do not retry in step.
    pub fn backoff(&self, next_try: u32) -> Duration {
        let exp = next_try.saturating_sub(2).min(16);
        let full = self.base_delay.saturating_mul(1u32 << exp);
        let half = full / 2;
        let jitter_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        let jitter = if jitter_ms == 0 {
            0
        } else {
            rand::rng().random_range(0..=jitter_ms)
        };
        half + Duration::from_millis(jitter)
    }
}

/// What to do after a failed try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Return the error.
    GiveUp,
    /// Try again after this pause (backoff with jitter).
    Retry(Duration),
    /// X's rate limit resets at `until`, near enough to wait for: try again after
    /// `pause` (the wait plus a little slack, X's reset is whole seconds).
    WaitForReset {
        until: DateTime<Utc>,
        pause: Duration,
    },
}

impl RetryPolicy {
    /// The rule after try number `tries` failed with `err` at `now`.
    pub fn after_failure(&self, tries: u32, err: &FetchError, now: DateTime<Utc>) -> Step {
        if tries >= self.max_tries {
            return Step::GiveUp;
        }
        match err {
            FetchError::RateLimited {
                reset_at: Some(reset_at),
            } => {
                let wait = (*reset_at - now).to_std().unwrap_or_default();
                if wait > self.max_reset_wait {
                    Step::GiveUp
                } else {
                    Step::WaitForReset {
                        until: *reset_at,
                        pause: wait + Duration::from_millis(250),
                    }
                }
            }
            e if e.is_retryable() => Step::Retry(self.backoff(tries + 1)),
            _ => Step::GiveUp,
        }
    }
}

/// One page of a user's timeline, with how many HTTP tries it took.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelinePage {
    pub response: TimelineResponse,
    pub tries: u32,
}

impl TimelinePage {
    /// Resources X bills for this page: the posts in `data` and, in `includes`, the
    /// referenced posts and the users. Media objects are no read resource on X's price list.
    pub fn billed_resources(&self) -> usize {
        self.response.data.len()
            + self
                .response
                .includes
                .as_ref()
                .map_or(0, |i| i.users.len() + i.tweets.len())
    }

    /// Resources in `includes`.
    pub fn includes_count(&self) -> usize {
        self.response.includes.as_ref().map_or(0, |i| i.count())
    }
}

/// The X API v2 client. Cheap to clone (reqwest pools connections).
#[derive(Clone)]
pub struct XClient {
    http: reqwest::Client,
    /// For the Activity API's stream: a connect timeout, no whole-request timeout (the
    /// body never ends; the stream's reader detects a stall itself).
    stream_http: reqwest::Client,
    base_url: Url,
    token: Secret,
    policy: RetryPolicy,
}

impl fmt::Debug for XClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XClient")
            .field("base_url", &self.base_url.as_str())
            .field("token", &"***")
            .field("policy", &self.policy)
            .finish()
    }
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("X API base URL {0:?} is not an http(s) URL")]
    BadBaseUrl(String),
    #[error("could not build the HTTP client: {0}")]
    Build(String),
}

impl XClient {
    /// A client for `base_url` (for example `https://api.twitter.com/2`) with `token`.
    pub fn new(base_url: &str, token: Secret, policy: RetryPolicy) -> Result<XClient, ClientError> {
        let base = Url::parse(base_url.trim_end_matches('/'))
            .ok()
            .filter(|u| (u.scheme() == "http" || u.scheme() == "https") && !u.cannot_be_a_base())
            .ok_or_else(|| ClientError::BadBaseUrl(base_url.to_string()))?;
        let http = reqwest::Client::builder()
            .timeout(policy.request_timeout)
            .connect_timeout(policy.request_timeout)
            .user_agent(concat!("amber/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(32)
            .build()
            .map_err(|e| ClientError::Build(e.to_string()))?;
        let stream_http = reqwest::Client::builder()
            .connect_timeout(policy.request_timeout)
            .user_agent(concat!("amber/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Build(e.to_string()))?;
        Ok(XClient {
            http,
            stream_http,
            base_url: base,
            token,
            policy,
        })
    }

    /// The retry rules in force.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base_url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// `GET /users/by/username/{handle}`: the user behind a handle, with the retry rules.
    pub async fn resolve_user(&self, handle: &str) -> Result<User, FetchError> {
        self.retrying(|| self.resolve_user_once(handle))
            .await
            .map(|(user, _)| user)
    }

    /// `GET /users/by/username/{handle}`, one try.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn resolve_user_once(&self, handle: &str) -> Result<User, FetchError> {
        let mut url = self.url(&["users", "by", "username", handle]);
        url.query_pairs_mut()
            .append_pair("user.fields", USER_FIELDS);
        let resp: UserResponse = self.get_once(&url).await?;
        match resp.data {
            Some(user) => Ok(user),
            None => Err(errors_to_fetch_error(&resp.errors, handle)),
        }
    }

    /// `GET /users/{id}/tweets`: one page, newest first, with the retry rules.
    /// `max_results` is clamped to X's 5..=100; `since_id` limits to newer posts;
    /// `pagination_token` is a `meta.next_token`.
    pub async fn timeline(
        &self,
        user_id: &str,
        since_id: Option<&str>,
        max_results: u32,
        pagination_token: Option<&str>,
    ) -> Result<TimelinePage, FetchError> {
        self.retrying(|| self.timeline_once(user_id, since_id, max_results, pagination_token))
            .await
            .map(|(response, tries)| TimelinePage { response, tries })
    }

    /// `GET /users/{id}/tweets`, one try.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn timeline_once(
        &self,
        user_id: &str,
        since_id: Option<&str>,
        max_results: u32,
        pagination_token: Option<&str>,
    ) -> Result<TimelineResponse, FetchError> {
        let mut url = self.url(&["users", user_id, "tweets"]);
        {
            let mut q = url.query_pairs_mut();
            q.append_pair(
                "max_results",
                &max_results.clamp(MIN_PAGE, MAX_PAGE).to_string(),
            );
            q.append_pair("tweet.fields", TWEET_FIELDS);
            q.append_pair("expansions", EXPANSIONS);
            q.append_pair("media.fields", MEDIA_FIELDS);
            q.append_pair("user.fields", USER_FIELDS);
            if let Some(since) = since_id {
                q.append_pair("since_id", since);
            }
            if let Some(token) = pagination_token {
                q.append_pair("pagination_token", token);
            }
        }
        let response: TimelineResponse = self.get_once(&url).await?;
        if response.data.is_empty() && !response.errors.is_empty() {
            return Err(errors_to_fetch_error(&response.errors, user_id));
        }
        Ok(response)
    }

    /// `once` under the retry rules, without a breaker; returns the answer and the
    /// tries used.
    async fn retrying<T, F, Fut>(&self, mut once: F) -> Result<(T, u32), FetchError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, FetchError>>,
    {
        let mut tries = 0;
        loop {
            tries += 1;
            let err = match once().await {
                Ok(body) => return Ok((body, tries)),
                Err(err) => err,
            };
            let pause = match self.policy.after_failure(tries, &err, Utc::now()) {
                Step::GiveUp => return Err(err),
                Step::Retry(pause) | Step::WaitForReset { pause, .. } => pause,
            };
            tracing::warn!(error = %err, try_no = tries, pause_ms = pause.as_millis() as u64, "X call failed, retrying");
            tokio::time::sleep(pause).await;
        }
    }

    async fn get_once<T: DeserializeOwned>(&self, url: &Url) -> Result<T, FetchError> {
        self.call_once(self.http.get(url.clone())).await
    }

    /// `GET /2/activity/subscriptions`, one page, one try.
    pub async fn activity_subscriptions_once(
        &self,
        pagination_token: Option<&str>,
    ) -> Result<activity::ListResponse, FetchError> {
        let mut url = self.url(&["activity", "subscriptions"]);
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("max_results", "1000");
            if let Some(token) = pagination_token {
                q.append_pair("pagination_token", token);
            }
        }
        self.call_once(self.http.get(url)).await
    }

    /// `POST /2/activity/subscriptions` for `event_type` of `user_id`, tagged as Amber's;
    /// one try. [`FetchError::SubscriptionCap`] when the app's cap is reached.
    pub async fn create_activity_subscription_once(
        &self,
        event_type: &str,
        user_id: &str,
    ) -> Result<activity::CreateResponse, FetchError> {
        let url = self.url(&["activity", "subscriptions"]);
        let body = serde_json::json!({
            "event_type": event_type,
            "filter": {"user_id": user_id},
            "tag": activity::TAG,
        });
        self.call_once(self.http.post(url).json(&body)).await
    }

    /// `DELETE /2/activity/subscriptions/{id}`, one try. An id X no longer knows (404)
    /// is gone already: `Ok`.
    pub async fn delete_activity_subscription_once(&self, id: &str) -> Result<(), FetchError> {
        let url = self.url(&["activity", "subscriptions", id]);
        match self
            .call_once::<serde_json::Value>(self.http.delete(url))
            .await
        {
            Ok(_) | Err(FetchError::Rejected { status: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Opens `GET /2/activity/stream` (replaying the last `backfill_minutes`, at most 5):
    /// the answer, once X said 200, whose body is the stream. One try.
    pub async fn open_activity_stream(
        &self,
        backfill_minutes: u32,
    ) -> Result<reqwest::Response, FetchError> {
        let mut url = self.url(&["activity", "stream"]);
        if backfill_minutes > 0 {
            url.query_pairs_mut()
                .append_pair("backfill_minutes", &backfill_minutes.min(5).to_string());
        }
        let resp = self
            .stream_http
            .get(url)
            .bearer_auth(self.token.expose())
            .send()
            .await
            .map_err(transport_error)?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        // Not a stream: an error answer, read (with a deadline) and mapped as any other.
        match tokio::time::timeout(
            self.policy.request_timeout,
            answer_of::<serde_json::Value>(resp),
        )
        .await
        {
            Ok(Ok(_)) => Err(FetchError::Malformed("a non-2xx stream answer".into())),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(FetchError::Timeout),
        }
    }

    async fn call_once<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, FetchError> {
        let resp = request
            .bearer_auth(self.token.expose())
            .header(header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(transport_error)?;
        answer_of(resp).await
    }
}

/// Maps an answer of X to its body or a typed error.
async fn answer_of<T: DeserializeOwned>(resp: reqwest::Response) -> Result<T, FetchError> {
    {
        let status = resp.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Err(FetchError::RateLimited {
                reset_at: reset_header(resp.headers()),
            });
        }
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_BODY_BYTES as u64)
        {
            return Err(FetchError::Malformed(format!(
                "answer larger than {MAX_BODY_BYTES} bytes"
            )));
        }
        let body = resp.bytes().await.map_err(transport_error)?;
        if body.len() > MAX_BODY_BYTES {
            return Err(FetchError::Malformed(format!(
                "answer larger than {MAX_BODY_BYTES} bytes"
            )));
        }
        match status.as_u16() {
            200..=299 => serde_json::from_slice(&body)
                .map_err(|e| FetchError::Malformed(format!("{e} (status {status})"))),
            403 if is_subscription_cap(&body) => Err(FetchError::SubscriptionCap(
                String::from_utf8_lossy(&body).chars().take(200).collect(),
            )),
            401 | 403 => Err(FetchError::Auth {
                status: status.as_u16(),
            }),
            500..=599 => Err(FetchError::Server {
                status: status.as_u16(),
            }),
            code => {
                let detail = serde_json::from_slice::<ApiError>(&body)
                    .map(|e| e.describe())
                    .unwrap_or_else(|_| String::from_utf8_lossy(&body).chars().take(200).collect());
                Err(FetchError::Rejected {
                    status: code,
                    detail,
                })
            }
        }
    }
}

/// Whether a 403 body is X's `subscription-limit` problem (not a refused token).
fn is_subscription_cap(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_string))
        .is_some_and(|t| t.ends_with("/subscription-limit"))
}

fn transport_error(err: reqwest::Error) -> FetchError {
    if err.is_timeout() {
        FetchError::Timeout
    } else if err.is_decode() || err.is_body() {
        FetchError::Malformed(err.to_string())
    } else {
        // reqwest's message names the URL, never the headers.
        FetchError::Transport(err.without_url().to_string())
    }
}

fn reset_header(headers: &header::HeaderMap) -> Option<DateTime<Utc>> {
    let secs: i64 = headers
        .get("x-rate-limit-reset")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Utc.timestamp_opt(secs, 0).single()
}

fn errors_to_fetch_error(errors: &[ApiError], subject: &str) -> FetchError {
    let Some(first) = errors.first() else {
        return FetchError::Malformed(format!("no data and no errors for {subject}"));
    };
    match first.classify() {
        ApiErrorKind::NotFound => FetchError::NotFound(subject.to_string()),
        ApiErrorKind::Suspended => FetchError::Suspended(subject.to_string()),
        ApiErrorKind::Other => FetchError::Rejected {
            status: 200,
            detail: first.describe(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_token() {
        let client = XClient::new(
            "http://127.0.0.1:9/2",
            Secret::new("super-secret-token"),
            RetryPolicy::default(),
        )
        .unwrap();
        let text = format!("{client:?}");
        assert!(!text.contains("super-secret-token"), "{text}");
        assert!(text.contains("***"));
    }

    #[test]
    fn a_base_url_that_is_not_http_is_refused() {
        for bad in ["ftp://x/2", "not a url", "mailto:a@b"] {
            assert!(
                XClient::new(bad, Secret::new("t"), RetryPolicy::default()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn urls_escape_handles_and_keep_the_base_path() {
        let client =
            XClient::new("http://h:1/2/", Secret::new("t"), RetryPolicy::default()).unwrap();
        let url = client.url(&["users", "by", "username", "a/b?c"]);
        assert_eq!(url.as_str(), "http://h:1/2/users/by/username/a%2Fb%3Fc");
    }

    #[test]
    fn backoff_doubles_and_stays_within_its_jitter_band() {
        let policy = RetryPolicy {
            base_delay: Duration::from_millis(100),
            ..RetryPolicy::default()
        };
        for _ in 0..50 {
            let second = policy.backoff(2);
            let third = policy.backoff(3);
            assert!(second >= Duration::from_millis(50) && second <= Duration::from_millis(100));
            assert!(third >= Duration::from_millis(100) && third <= Duration::from_millis(200));
        }
    }

    #[test]
    fn after_a_failure_the_policy_retries_waits_for_a_near_reset_or_gives_up() {
        let policy = RetryPolicy::default();
        let now = Utc.with_ymd_and_hms(2026, 12, 2, 10, 0, 0).unwrap();
        assert!(matches!(
            policy.after_failure(1, &FetchError::Server { status: 500 }, now),
            Step::Retry(_)
        ));
        assert_eq!(
            policy.after_failure(3, &FetchError::Server { status: 500 }, now),
            Step::GiveUp,
            "max_tries reached"
        );
        let near = now + chrono::Duration::seconds(30);
        assert_eq!(
            policy.after_failure(
                1,
                &FetchError::RateLimited {
                    reset_at: Some(near)
                },
                now
            ),
            Step::WaitForReset {
                until: near,
                pause: Duration::from_millis(30_250)
            }
        );
        let far = now + chrono::Duration::seconds(900);
        assert_eq!(
            policy.after_failure(
                1,
                &FetchError::RateLimited {
                    reset_at: Some(far)
                },
                now
            ),
            Step::GiveUp
        );
        assert_eq!(
            policy.after_failure(1, &FetchError::Auth { status: 401 }, now),
            Step::GiveUp
        );
        assert!(FetchError::Server { status: 503 }.is_outage());
        assert!(FetchError::Timeout.is_outage());
        assert!(!FetchError::Malformed("x".into()).is_outage());
        assert!(!FetchError::NotFound("a".into()).is_outage());
    }

    #[test]
    fn only_transient_errors_are_retried_and_only_api_failures_trip_the_breaker() {
        assert!(FetchError::Server { status: 503 }.is_retryable());
        assert!(FetchError::Timeout.is_retryable());
        assert!(!FetchError::Auth { status: 401 }.is_retryable());
        assert!(!FetchError::Malformed("x".into()).is_retryable());
        assert!(FetchError::Auth { status: 401 }.counts_as_failure());
        assert!(!FetchError::NotFound("a".into()).counts_as_failure());
        assert!(!FetchError::Suspended("a".into()).counts_as_failure());
        assert!(FetchError::Auth { status: 403 }.stops_run());
        assert!(!FetchError::Server { status: 500 }.stops_run());
    }
}
