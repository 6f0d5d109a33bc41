//! `restore`: a backup (or part of it) back into a directory. See
//! `docs/restore.md`; the work is done by [`crate::restore`].

use std::io::{self, Write};

use anyhow::Context as _;
use serde_json::json;
use tracing::info;

use super::context::Gateway;
use super::{Context, show};
use crate::cli::RestoreArgs;
use crate::exit::{Outcome, UsageError};
use crate::progress;
use crate::restore::{self, Options, Report, Selection};
use crate::selector::Selector;
use crate::tahoe::Cap;

pub(crate) fn run(ctx: &Context<'_>, args: &RestoreArgs) -> anyhow::Result<Outcome> {
    let selection = Selection::parse(&args.paths).map_err(UsageError)?;
    let gateway = ctx.interactive_gateway(args.gateway.as_deref(), args.timeout)?;
    let (root, totals) = resolve(ctx, args, &gateway)?;
    gateway.storage_servers()?;
    let client = gateway.client;
    let target = match (&args.target, &args.stdout) {
        (_, Some(path)) => {
            use std::os::unix::ffi::OsStrExt as _;
            super::cat::write_file(&client, &root, path.as_bytes(), false)?;
            return Ok(Outcome::Success);
        }
        (Some(target), None) => target,
        // The command line requires one of them.
        (None, None) => {
            return Err(UsageError("restore needs a TARGET or --stdout PATH".into()).into());
        }
    };
    // At least 1: --concurrency's range and the config both refuse 0.
    let concurrency = args
        .concurrency
        .unwrap_or(ctx.config().operation.concurrency);
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
        totals,
    };
    // A bar on a terminal (nothing otherwise, and never with --json).
    let progress = ctx.progress(false);
    let report = restore::run(&client, &root, target, &opts, &progress);
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
    if ctx.json() {
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
    // Problems and withheld entries: a path and what happened to it.
    for (kind, entries) in [
        ("problem", &report.failures),
        ("withheld", &report.withheld),
    ] {
        for (path, detail) in entries {
            writeln!(
                out,
                "{}",
                json!({"type": kind, "path": path, "detail": detail})
            )?;
        }
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

/// The root cap: the argument itself, or the latest (or `--generation`,
/// `--label`, `--as-of`) backup of that name in the entry cache, or with
/// `--catalog` in the recovery catalog ([`crate::selector`]); with the
/// entries and content bytes recorded for that backup (the progress
/// display's totals), unknown for a bare cap.
fn resolve(
    ctx: &Context<'_>,
    args: &RestoreArgs,
    gateway: &Gateway<'_>,
) -> anyhow::Result<(Cap, Option<(u64, u64)>)> {
    let selector = Selector::of_args(
        &args.backup,
        args.generation,
        args.label.as_deref(),
        args.as_of.as_deref(),
    )?;
    let catalog = args
        .catalog
        .as_deref()
        .map(crate::selector::catalog_arg)
        .transpose()?;
    if let Some(cap) = selector.cap() {
        if catalog.is_some() {
            return Err(UsageError(
                "--catalog finds a backup NAME; give the NAME, or the root cap without --catalog"
                    .into(),
            )
            .into());
        }
        if !cap.is_dir() {
            return Err(UsageError("the cap is not a directory cap".into()).into());
        }
        return Ok((cap.clone(), None));
    }
    let (rows, origin) = match &catalog {
        Some(catalog) => {
            // First contact before reading: a stopped gateway is a clear
            // error at once.
            gateway.storage_servers()?;
            let entries = crate::catalog::read_index(&gateway.client, catalog)
                .context("reading the recovery catalog (--catalog)")?;
            let rows = entries.iter().zip(1..).map(|(e, id)| e.to_row(id));
            (rows.collect(), "the recovery catalog".to_owned())
        }
        None => {
            let cache = ctx.read_cache()?;
            let origin = format!("the entry cache {}", cache.path().display());
            (cache.backups()?, origin)
        }
    };
    let selected = selector
        .select_in(&rows, &origin)
        .map_err(UsageError::from)?;
    let mut totals = None;
    if let Some(row) = selected.latest() {
        // A stream backup has no tree to restore (`docs/streams.md`): its
        // bytes come back with `cat`. (Known from the record, so it costs
        // no request; a stream named by its bare cap is restored as the
        // directory of chunks it is.)
        if row.kind == crate::cache::BackupKind::Stream {
            return Err(UsageError(format!(
                "{}: is a stream backup, which restore cannot write as a tree: \
                 `lafs-backup cat {}` writes its bytes to stdout",
                crate::selector::quoted(&args.backup),
                crate::selector::quoted(&args.backup)
            ))
            .into());
        }
        info!(
            "restoring {} generation {} (#{})",
            show::name(&row.name),
            row.generation,
            row.root_cap.short_id()
        );
        totals = Some((row.entries, row.bytes));
    }
    Ok((selected.cap().clone(), totals))
}
