//! The JSON shapes the API and backups share: ids on the wire (`id`), and (issue 10)
//! the leader, post and review forms both write. Neither `http` nor `backup` owns them.

pub mod id;
