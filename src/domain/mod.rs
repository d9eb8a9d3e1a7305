//! Pure domain types: leaders, posts, review items, cursors and sentiment.
//! Nothing in here does IO; storage and HTTP translate to and from these types.

pub mod crontab;
pub mod cursor;
pub mod leader;
pub mod post;
pub mod review;
pub mod sentiment;
