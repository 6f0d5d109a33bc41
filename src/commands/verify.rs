//! `verify CAP|NAME PATH`: compare a backup with a live tree and print every
//! difference, one per line (`docs/verify.md`). Exit status: 0 identical,
//! 4 different, 1 could not run, 2 usage.
//!
//! Caps never reach the output or the log: entries are named by their path.

use std::io::{self, Write};

use serde_json::json;
use tracing::info;

use super::list::show_name;
use crate::cache::Cache;
use crate::cli::{Cli, VerifyArgs};
use crate::config::Config;
use crate::exit::{Outcome, UsageError};
use crate::tahoe::Cap;
use crate::verify::{self, Difference, Options};

pub fn run(cli: &Cli, args: &VerifyArgs, config: &Config) -> anyhow::Result<Outcome> {
    let (root, label) = resolve(args, config)?;
    let (client, url) = super::gateway_client(config, args.gateway.as_deref())?;
    let client = super::interactive_client(client, args.timeout);
    info!("verifying {label} against {}", args.path.display());
    super::storage_servers(&client, url, super::Contact::Once)?;

    let stdout = io::stdout();
    let mut out = stdout.lock();
    let json = cli.json;
    let mut sink = |d: &Difference| -> io::Result<()> {
        if json {
            let line = json!({
                "type": "difference",
                "kind": d.kind,
                "path": d.path,
                "detail": d.detail,
            });
            writeln!(out, "{line}")
        } else {
            writeln!(out, "{d}")
        }
    };
    let options = Options {
        content: args.content,
    };
    let summary = verify::verify(&client, &root, &args.path, options, &mut sink)?;
    if json {
        let line = json!({
            "type": "verify",
            "differences": summary.differences,
            "entries": summary.entries,
        });
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    info!(
        "{} entries compared, {} difference(s)",
        summary.entries, summary.differences
    );
    Ok(if summary.differences == 0 {
        Outcome::Success
    } else {
        Outcome::Problems
    })
}

/// The root cap to verify, and how messages name it (the backup name, or
/// `#` and the cap's short id).
fn resolve(args: &VerifyArgs, config: &Config) -> anyhow::Result<(Cap, String)> {
    if args.backup.trim_start().starts_with("URI:") {
        if args.generation.is_some() {
            return Err(UsageError(
                "--generation selects a generation of a backup NAME; it cannot be used \
                 with a cap"
                    .into(),
            )
            .into());
        }
        let cap = Cap::parse(&args.backup).map_err(|e| UsageError(format!("CAP: {e}")))?;
        let label = format!("#{}", cap.short_id());
        return Ok((cap, label));
    }
    let cache_path = config.source.entry_cache.path.as_deref().ok_or_else(|| {
        UsageError(
            "config key source.entry_cache.path is required to verify a backup by NAME \
             (the cache that records the backups); give a root cap instead"
                .into(),
        )
    })?;
    let cache = Cache::open(cache_path, &config.source.entry_cache.commit_after)?;
    let name = args.backup.as_bytes();
    let shown = show_name(name);
    let rows = cache.backups()?;
    let row = rows
        .iter()
        .rev()
        .filter(|r| r.name == name)
        .find(|r| args.generation.is_none_or(|g| r.generation == g));
    match row {
        Some(r) => Ok((
            r.root_cap.clone(),
            format!("{shown} generation {}", r.generation),
        )),
        None => Err(UsageError(match args.generation {
            Some(g) => format!("the cache records no backup {shown} of generation {g}"),
            None => format!("the cache records no backup named {shown}"),
        })
        .into()),
    }
}
