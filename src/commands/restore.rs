//! `restore`: a backup (or part of it) back into a directory. See
//! `docs/restore.md`; the work is done by [`crate::restore`].

use serde_json::json;
use tracing::info;

use crate::cli::{Cli, RestoreArgs};
use crate::config::Config;
use crate::exit::{Outcome, UsageError};
use crate::progress::{self, Progress};
use crate::restore::{self, Options, Report, Selection};
use crate::tahoe::Cap;

pub fn run(cli: &Cli, args: &RestoreArgs, config: &Config) -> anyhow::Result<Outcome> {
    let selection = Selection::parse(&args.paths).map_err(UsageError)?;
    let (client, url) = super::gateway_client(config, args.gateway.as_deref())?;
    let client = super::interactive_client(client, args.timeout);
    let root = resolve(args, config)?;
    super::storage_servers(&client, url, super::Contact::Once)?;
    let concurrency = args
        .concurrency
        .unwrap_or(config.operation.concurrency)
        .max(1);
    let opts = Options {
        overwrite: args.overwrite,
        skip_existing: args.skip_existing,
        dry_run: args.dry_run,
        concurrency: usize::try_from(concurrency).unwrap_or(1),
        selection,
    };
    // A bar on a terminal (nothing otherwise, and never with --json).
    let progress = Progress::new(progress::Mode::choose(cli.json, false));
    let report = restore::run(&client, &root, &args.target, &opts, &progress);
    progress.finish();
    let report = report?;
    if cli.json {
        print_json(&report, opts.dry_run);
    } else {
        for line in &report.planned {
            println!("{line}");
        }
        if !opts.dry_run {
            eprintln!(
                "lafs-backup: restored {} entries ({} of content), {} left as they were, {} problems",
                report.written,
                progress::human_bytes(report.bytes),
                report.skipped,
                report.failures.len()
            );
        }
    }
    info!(
        "restored {} entries ({} bytes of content), {} left as they were",
        report.written, report.bytes, report.skipped
    );
    if report.failures.is_empty() {
        Ok(Outcome::Success)
    } else {
        info!(
            "{} entries could not be restored completely (each named above)",
            report.failures.len()
        );
        Ok(Outcome::Partial)
    }
}

/// `--json`: one line per planned entry (dry run) and per problem, then a
/// summary line (`docs/restore.md`).
fn print_json(report: &Report, dry_run: bool) {
    for line in &report.planned {
        let (code, path) = line.split_once(' ').unwrap_or(("?", line.as_str()));
        let kind = match code {
            "d" => "directory",
            "f" => "file",
            "l" => "symlink",
            "s" => "special",
            "h" => "hardlink",
            _ => "unknown",
        };
        println!("{}", json!({"type": "planned", "kind": kind, "path": path}));
    }
    for (path, why) in &report.failures {
        println!(
            "{}",
            json!({"type": "problem", "path": path, "detail": why})
        );
    }
    println!(
        "{}",
        json!({
            "type": "restore",
            "dry_run": dry_run,
            "written": report.written,
            "skipped": report.skipped,
            "bytes": report.bytes,
            "problems": report.failures.len(),
        })
    );
}

/// The root cap: the argument itself, or the latest (or `--generation`)
/// backup of that name in the entry cache.
fn resolve(args: &RestoreArgs, config: &Config) -> anyhow::Result<Cap> {
    if args.backup.trim_start().starts_with("URI:") {
        if args.generation.is_some() {
            return Err(
                UsageError("--generation goes with a backup NAME, not a cap".into()).into(),
            );
        }
        let cap = Cap::parse(&args.backup).map_err(|e| UsageError(e.to_string()))?;
        if !cap.is_dir() {
            return Err(UsageError("the cap is not a directory cap".into()).into());
        }
        return Ok(cap);
    }
    let cache = super::list::open_existing(config)?;
    let rows = cache.backups()?;
    let name = args.backup.as_bytes();
    let found = rows
        .into_iter()
        .filter(|r| r.name == name)
        .filter(|r| args.generation.is_none_or(|g| r.generation == g))
        .max_by_key(|r| r.generation);
    match found {
        Some(row) => {
            info!(
                "restoring {} generation {} (#{})",
                args.backup,
                row.generation,
                row.root_cap.short_id()
            );
            Ok(row.root_cap)
        }
        None => Err(UsageError(match args.generation {
            Some(g) => format!(
                "no backup named {:?} with generation {g} in the entry cache",
                args.backup
            ),
            None => format!("no backup named {:?} in the entry cache", args.backup),
        })
        .into()),
    }
}
