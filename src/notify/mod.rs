//! Notifications: targets an admin configures (`target`), and the delivery of each new
//! post to them from the durable outbox the store writes in the post's own batch.

pub mod target;
