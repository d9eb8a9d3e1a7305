//! The moving parts, as actix actors talking by messages.
//!
//! ```text
//!  HTTP handlers ──(CreateLeader, InsertPosts, DecideReview, ...)──▶ PostStore (SyncArbiter, 1 thread)
//!        │                                                             │ sled apply_batch + flush
//!        └──── StoreReader (clone of the trees + feed index) ◀──────────┘ reads never queue
//!
//!  IngestScheduler ──Tick──▶ CircuitBreaker ──permit──▶ XFetcher ──FetchTimeline──▶ X API
//!          └───────────────────── InsertPosts ─────────────────────▶ PostStore
//! ```

pub mod breaker;
pub mod clock;
pub mod fetcher;
pub mod lease;
pub mod policy;
pub mod scheduler;
pub mod signal;
pub mod store;
pub mod stream;
pub mod usage;
