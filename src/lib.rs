//! lafs-backup: incremental, deduplicated, compressed backups of file trees
//! into a Tahoe-LAFS grid.
//!
//! A backup has two phases. The *scan* walks the source tree, applies the
//! ordered `+`/`-` filter rules, captures ownership, mode, ACLs and file
//! capabilities, and writes a lossless queue file (children before parents).
//! The *upload* reads the queue and builds immutable Tahoe nodes from it.
//!
//! `src/main.rs` only parses arguments and reports errors; everything else
//! lives in the modules below, named after the domain concepts they own.

pub mod cache;
pub mod cli;
pub mod commands;
pub mod config;
pub mod edge;
pub mod encode;
pub mod escape;
pub mod exit;
pub mod filter;
pub mod logging;
pub mod meta;
pub mod names;
pub mod parallel;
pub mod progress;
pub mod queue;
pub mod ratelimit;
pub mod restore;
pub mod result;
pub mod scan;
pub mod selector;
pub mod tahoe;
pub mod tree;
pub mod upload;
pub mod verify;
