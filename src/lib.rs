//! Amber: follow public figures on X from one self-hosted binary.
//!
//! Reading order: `config` (settings), `domain` (pure types), `storage` (sled),
//! `actors` (the moving parts), `http` (the API), `startup` (wiring).

pub mod actors;
pub mod config;
pub mod domain;
pub mod status;
pub mod storage;
pub mod x_api;
