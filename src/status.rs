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

/// The receiving ends that HTTP holds.
#[derive(Debug, Clone)]
pub struct StatusBoard {
    pub redis: watch::Receiver<RedisHealth>,
    pub ingest: watch::Receiver<IngestSnapshot>,
}

impl StatusBoard {
    /// A board whose parts are all disabled, with the senders dropped: what runs until
    /// the rate-limit sync and ingestion parts publish their own.
    pub fn disabled() -> StatusBoard {
        StatusBoard {
            redis: watch::channel(RedisHealth::Disabled).1,
            ingest: watch::channel(IngestSnapshot::default()).1,
        }
    }
}
