//! Notifications: targets an admin configures (`target`), what one delivery sends in
//! each format (`message`), and the delivery actor that empties the durable outbox the
//! store writes in each new post's own batch (`delivery`).

pub mod delivery;
pub mod message;
pub mod target;
