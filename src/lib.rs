//! The `lifeos` binary: CLI, config loading and the console. The work itself lives in the
//! library crates: `lifeos-engine` (graph, keys, scheduler), `lifeos-tasks` (task kinds),
//! `lifeos-cache` (snapshot, records, blobs).

pub mod allocator;
pub mod cli;
pub mod commands;
pub mod config;
pub mod diagnostic;
pub mod exit;
pub mod out;
pub mod ui;
