//! Published status snapshots: the background parts (ingestion, Redis sync) publish what
//! health and status endpoints show through `tokio::sync::watch` channels, so a reader
//! never waits for an actor and the parts never know about HTTP.

use tokio::sync::watch;

/// Redis as the health check reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RedisHealth {
    /// `REDIS_URL` is not set.
    #[default]
    Disabled,
    Ok,
    Unavailable,
}

impl RedisHealth {
    /// The health JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RedisHealth::Disabled => "disabled",
            RedisHealth::Ok => "ok",
            RedisHealth::Unavailable => "unavailable",
        }
    }
}

/// The scheduler as the health check reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SchedulerHealth {
    /// Ingestion is not configured to run (`X_INGEST_ENABLED=false`).
    #[default]
    Disabled,
    Ok,
    /// Stopped by an admin (`POST /api/ingestion/stop`).
    Stopped,
}

impl SchedulerHealth {
    /// The health JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SchedulerHealth::Disabled => "disabled",
            SchedulerHealth::Ok => "ok",
            SchedulerHealth::Stopped => "stopped",
        }
    }
}

/// Circuit breaker state as published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BreakerHealth {
    #[default]
    Closed,
    Open,
    HalfOpen,
}

impl BreakerHealth {
    /// The API spelling: `closed`, `open`, `half-open`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerHealth::Closed => "closed",
            BreakerHealth::Open => "open",
            BreakerHealth::HalfOpen => "half-open",
        }
    }
}

/// What health shows of ingestion.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IngestSnapshot {
    pub enabled: bool,
    pub scheduler: SchedulerHealth,
    pub breaker: BreakerHealth,
    pub total_ingests: u64,
    pub last_ingest_ms: Option<u64>,
    /// The last finished run (persisted, so it survives a restart), as `/api/metrics` shows it.
    pub last_run: Option<LastRun>,
}

/// What `/api/metrics`' `ingest` object shows of the last finished run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LastRun {
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
    pub posts_ingested: u64,
    /// Leaders whose fetch failed in that run.
    pub errors: u64,
    /// The run's first leader error (`@handle: message`), else why it stopped early; None
    /// when it went through every leader without an error.
    pub error: Option<String>,
}

/// Where the Activity API stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StreamState {
    /// `X_ACTIVITY_STREAM` is off (or no bearer token is set).
    #[default]
    Disabled,
    /// Reconciling subscriptions and opening the stream.
    Connecting,
    /// The stream is open.
    Connected,
    /// Waiting before the next connect (backoff, a 429's reset, the breaker).
    Waiting,
    /// Another instance holds the stream's Redis lease.
    Standby,
}

impl StreamState {
    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamState::Disabled => "disabled",
            StreamState::Connecting => "connecting",
            StreamState::Connected => "connected",
            StreamState::Waiting => "waiting",
            StreamState::Standby => "standby",
        }
    }
}

/// The Activity API subscriptions as the last reconcile left them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SubscriptionStatus {
    /// Amber's subscriptions held at X (two per leader: `post.create`, `post.delete`).
    pub held: u64,
    /// Subscriptions the leaders call for.
    pub wanted: u64,
    /// Wanted but not held (X's cap reached, or a call failed).
    pub missing: u64,
    /// All of the app's subscriptions at X (`meta.total_subscriptions`), others' included.
    pub total_at_x: Option<u64>,
    /// X refused a subscription: the app's cap is reached.
    pub cap_reached: bool,
    /// Leaders with an X handle not yet resolved to a user id (not subscribed).
    pub unresolved_leaders: u64,
    pub created: u64,
    pub deleted: u64,
    pub reconciled_at: Option<chrono::DateTime<chrono::Utc>>,
    pub error: Option<String>,
}

/// What status, health and `/metrics` show of the Activity API stream.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StreamSnapshot {
    pub state: StreamState,
    /// Connected since (None while not connected).
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    pub last_event_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Anything (an event or a keep-alive) last read.
    pub last_data_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Connections opened after the first.
    pub reconnects: u64,
    pub events_post_create: u64,
    pub events_post_delete: u64,
    pub events_other: u64,
    /// Lines that were not an event X documents.
    pub malformed: u64,
    /// Posts stored from `post.create` (new to Amber).
    pub posts_stored: u64,
    /// Stored posts removed by `post.delete`.
    pub deletions: u64,
    pub retry_at: Option<chrono::DateTime<chrono::Utc>>,
    pub last_error: Option<String>,
    pub subscriptions: SubscriptionStatus,
}

impl StreamSnapshot {
    /// The JSON object status and health show.
    pub fn to_json(&self) -> serde_json::Value {
        let t = |v: &Option<chrono::DateTime<chrono::Utc>>| {
            v.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        };
        let s = &self.subscriptions;
        serde_json::json!({
            "state": self.state.as_str(),
            "connected": self.state == StreamState::Connected,
            "since": t(&self.since),
            "last_event_at": t(&self.last_event_at),
            "last_data_at": t(&self.last_data_at),
            "reconnects": self.reconnects,
            "events": {
                "post.create": self.events_post_create,
                "post.delete": self.events_post_delete,
                "other": self.events_other,
                "malformed": self.malformed,
            },
            "posts_stored": self.posts_stored,
            "deletions": self.deletions,
            "retry_at": t(&self.retry_at),
            "last_error": self.last_error,
            "subscriptions": {
                "held": s.held,
                "wanted": s.wanted,
                "missing": s.missing,
                "total_at_x": s.total_at_x,
                "cap_reached": s.cap_reached,
                "unresolved_leaders": s.unresolved_leaders,
                "created": s.created,
                "deleted": s.deleted,
                "reconciled_at": t(&s.reconciled_at),
                "error": s.error,
            },
        })
    }
}

/// The receiving ends that HTTP holds.
#[derive(Debug, Clone)]
pub struct StatusBoard {
    pub redis: watch::Receiver<RedisHealth>,
    pub ingest: watch::Receiver<IngestSnapshot>,
    pub stream: watch::Receiver<StreamSnapshot>,
}

impl StatusBoard {
    /// A board whose parts are all disabled, with the senders dropped: what runs until
    /// the rate-limit sync and ingestion parts publish their own.
    pub fn disabled() -> StatusBoard {
        StatusBoard {
            redis: watch::channel(RedisHealth::Disabled).1,
            ingest: watch::channel(IngestSnapshot::default()).1,
            stream: watch::channel(StreamSnapshot::default()).1,
        }
    }
}
