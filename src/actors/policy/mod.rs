//! The ingestion scheduler's policies, each a plain struct with its own unit tests and
//! no sled, HTTP or actor in sight (the way `breaker.rs` keeps `BreakerState` pure). The
//! `IngestScheduler` actor holds one of each and does only the messaging around them.
//!
//! - [`budget`]: usage and budget (X bills a resource once per UTC day; the month's
//!   `X_MONTHLY_READ_BUDGET` and the reservations of fetches in flight).
//! - [`backoff`]: per-leader backoff of failing leaders.
//! - [`run_book`]: what a leader's outcome does to the run (its record, the leader's
//!   backoff, a rate-limit pause, the end of the run).
//! - [`cooldown`]: the refresh cooldown per leader.

pub mod backoff;
pub mod budget;
pub mod cooldown;
pub mod run_book;
