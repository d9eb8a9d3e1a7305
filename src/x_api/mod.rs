//! The X API v2, as Amber uses it: the wire format (`dto`), the HTTP client (`client`)
//! and a faithful fake server (`fake`) shared by tests, benches and `amber demo`.
//!
//! Nothing here knows about actors or sled: `XFetcher` wraps the client, `PostStore`
//! stores what `dto` maps.

pub mod activity;
pub mod client;
pub mod dto;
pub mod fake;
