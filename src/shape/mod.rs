//! The JSON shapes the API, backups and notifications share: ids on the wire (`id`), times
//! (`time`), and the leader, post and review forms (`leader`, `post`, `review`). Neither
//! `http` nor `backup` owns them: both depend on this module, and it depends on neither.

pub mod id;
pub mod leader;
pub mod post;
pub mod review;
pub mod time;
