//! The integration tests of lafs-backup: ONE test binary with a module per
//! topic, so cargo links one executable instead of one a file, and
//! `tests/common` is compiled once, where every helper is used: the
//! compiler reports a helper no topic needs.
//!
//! Every test runs the binary through [`common::lafs`], which checks on
//! every run that no capability reaches stderr (nor stdout, unless the test
//! says caps are the answer there) and that nothing panicked.
//!
//! Run one topic with a filter on its module path, e.g.
//! `scripts/test --test it restore_grid::`, or one test with
//! `scripts/test --test it restore_grid::NAME -- --exact` (docs/test-grid.md).

// Test helpers may unwrap: a failure there is a failed test, with its message.
#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;

mod btrfs;
mod builder;
mod catalog;
mod chunked_files;
mod config_cli;
mod dumps;
mod edge_golden;
mod encode_grid;
mod filters;
mod finishing;
mod grid_harness;
mod hardening_cli;
mod healthchecks;
mod history_browse;
mod history_diff;
mod history_select;
mod history_versions;
mod hooks;
mod hostile_gateway;
mod https;
mod jobs;
mod labels;
mod lifecycle_check;
mod lifecycle_list_cleanup;
mod lit_caps;
mod long_paths;
mod mount;
mod native;
mod native_check;
mod native_faults;
mod native_read;
mod rebuild;
mod restore_formats;
mod restore_grid;
mod restore_options;
mod retention;
mod sample;
mod scan_queue;
mod scheduling;
mod selector_context;
mod state_safety;
mod status;
mod streams;
mod streams_tar;
mod subtrees;
mod tahoe_client;
mod tarsplit;
mod throughput;
mod upload_grid;
mod verify_grid;
mod walks_grid;
