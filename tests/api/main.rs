//! Black-box tests: each test spawns the real `amber` binary on a random port with a
//! temp `DATA_DIR` and talks HTTP to it.

mod auth;
mod browser;
mod cli;
mod connections;
mod damage;
mod disk;
mod docs;
mod durability;
mod errors;
mod feed;
mod feeds;
mod health;
mod healthcheck;
mod helpers;
mod import;
mod ingestion;
mod leaders;
mod live;
mod logs;
mod methods;
mod migrate;
mod notify;
mod original;
mod posts;
mod rate_limit;
mod replication;
mod review;
mod schemathesis;
mod stream;
mod web;
