//! Pure domain types: leaders, posts, review items, cursors, sentiment and the strict
//! JSON objects clients may store.
//! Nothing in here does IO; storage and HTTP translate to and from these types.

pub mod crontab;
pub mod cursor;
pub mod json;
pub mod leader;
pub mod post;
pub mod review;
pub mod run;
pub mod sentiment;
