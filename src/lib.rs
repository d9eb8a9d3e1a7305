//! Amber: follow public figures on X from one self-hosted binary.
//!
//! Reading order: `config` (settings), `domain` (pure types), `storage` (sled),
//! `actors` (the moving parts), `http` (the API), `startup` (wiring), `cli`.

pub mod actors;
pub mod backup;
pub mod cli;
pub mod config;
pub mod domain;
pub mod error;
pub mod feeds;
pub mod healthcheck;
pub mod http;
pub mod live;
pub mod metrics;
pub mod notify;
pub mod rate_limit;
pub mod replication;
pub mod shape;
pub mod shutdown;
pub mod startup;
pub mod status;
pub mod storage;
pub mod telemetry;
pub mod web;
pub mod x_api;
