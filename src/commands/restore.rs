//! `restore`: a backup (or part of it) back into a directory. See
//! `docs/restore.md`; the work is done by [`crate::restore`].

use std::io::{self, Write};

use serde_json::json;
use tracing::info;

use crate::cli::{Cli, RestoreArgs};
use crate::config::Config;
use crate::exit::{Outcome, UsageError};
use crate::progress::{self, Progress};
use crate::restore::{self, Options, Report, Selection};
use crate::selector::BackupArg;
use crate::tahoe::Cap;

use super::list::show_name;

pub(crate) fn run(cli: &Cli, args: &RestoreArgs, config: &Config) -> anyhow::Result<Outcome> {
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
        no_owner: args.no_owner,
        no_devices: args.no_devices,
        no_setuid: args.no_setuid,
        no_caps: args.no_caps,
        no_xattrs: args.no_xattrs,
    };
    // A bar on a terminal (nothing otherwise, and never with --json).
    let progress = Progress::new(progress::Mode::choose(cli.json, false));
    let report = restore::run(&client, &root, &args.target, &opts, &progress);
    progress.finish();
    let report = match report {
        Err(e @ restore::RestoreError::NotEmpty { .. }) => {
            return Err(UsageError(e.to_string()).into());
        }
        other => other?,
    };
    // Written through one locked handle whose errors end the command: a
    // closed stdout (`restore -n … | head`) is then a quiet exit, not a
    // panic in `println!`.
    let mut out = io::stdout().lock();
    if cli.json {
        print_json(&mut out, &report, opts.dry_run)?;
    } else {
        for line in &report.planned {
            writeln!(out, "{line}")?;
        }
        for (path, what) in &report.withheld {
            eprintln!("lafs-backup: {path}: not restored: {what}");
        }
        if !opts.dry_run {
            eprintln!("lafs-backup: {}", summary(&report));
        }
    }
    out.flush()?;
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

/// The summary line on stderr: what was written, and what a root restore
/// should be looked at for (device nodes, setuid/setgid files, capability
/// sets created; entries the safety options held back).
fn summary(report: &Report) -> String {
    let mut line = format!(
        "restored {} entries ({} of content), {} left as they were, {} problems; \
         created {} device nodes, {} setuid/setgid files, {} capability sets",
        report.written,
        progress::human_bytes(report.bytes),
        report.skipped,
        report.failures.len(),
        report.devices,
        report.setid,
        report.caps,
    );
    if !report.withheld.is_empty() {
        line.push_str(&format!(
            "; {} withheld by --no-* options",
            report.withheld.len()
        ));
    }
    line
}

/// `--json`: one line per planned entry (dry run), per problem and per
/// withheld entry, then a summary line (`docs/restore.md`).
fn print_json(out: &mut impl Write, report: &Report, dry_run: bool) -> io::Result<()> {
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
        writeln!(
            out,
            "{}",
            json!({"type": "planned", "kind": kind, "path": path})
        )?;
    }
    for (path, why) in &report.failures {
        writeln!(
            out,
            "{}",
            json!({"type": "problem", "path": path, "detail": why})
        )?;
    }
    for (path, what) in &report.withheld {
        writeln!(
            out,
            "{}",
            json!({"type": "withheld", "path": path, "detail": what})
        )?;
    }
    writeln!(
        out,
        "{}",
        json!({
            "type": "restore",
            "dry_run": dry_run,
            "written": report.written,
            "skipped": report.skipped,
            "bytes": report.bytes,
            "problems": report.failures.len(),
            "withheld": report.withheld.len(),
            "devices": report.devices,
            "setid": report.setid,
            "caps": report.caps,
        })
    )
}

/// The root cap: the argument itself, or the latest (or `--generation`)
/// backup of that name in the entry cache.
fn resolve(args: &RestoreArgs, config: &Config) -> anyhow::Result<Cap> {
    let name = match BackupArg::parse(&args.backup, "BACKUP")? {
        BackupArg::Cap(cap) => {
            if args.generation.is_some() {
                return Err(
                    UsageError("--generation goes with a backup NAME, not a cap".into()).into(),
                );
            }
            if !cap.is_dir() {
                return Err(UsageError("the cap is not a directory cap".into()).into());
            }
            return Ok(cap);
        }
        BackupArg::Name(name) => name,
    };
    let cache = super::list::open_reader(config)?;
    let rows = cache.backups()?;
    let shown = show_name(name.as_bytes());
    let name = name.as_bytes();
    let found = rows
        .into_iter()
        .filter(|r| r.name == name)
        .filter(|r| args.generation.is_none_or(|g| r.generation == g))
        .max_by_key(|r| r.generation);
    match found {
        Some(row) => {
            info!(
                "restoring {} generation {} (#{})",
                shown,
                row.generation,
                row.root_cap.short_id()
            );
            Ok(row.root_cap)
        }
        None => Err(UsageError(match args.generation {
            Some(g) => format!("no backup named {shown} with generation {g} in the entry cache"),
            None => format!("no backup named {shown} in the entry cache"),
        })
        .into()),
    }
}
