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
use crate::filter::Filter;
use crate::selector::BackupArg;
use crate::tahoe::Cap;
use crate::verify::{self, Difference, Options, SourceRules};

pub(crate) fn run(cli: &Cli, args: &VerifyArgs, config: &Config) -> anyhow::Result<Outcome> {
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
    // The config's source rules, unless --unfiltered: entries a backup of
    // the source never takes are not differences.
    let rules = if args.unfiltered {
        None
    } else {
        Some(SourceRules {
            filter: Filter::new(&config.filter)?,
            exclude_caches: config.source.exclude_caches,
            one_file_system: config.source.one_file_system,
        })
    };
    let options = Options {
        content: args.content,
        rules,
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
    let name = match BackupArg::parse(&args.backup, "BACKUP")? {
        BackupArg::Cap(cap) => {
            if args.generation.is_some() {
                return Err(UsageError(
                    "--generation selects a generation of a backup NAME; it cannot be used \
                     with a cap"
                        .into(),
                )
                .into());
            }
            let label = format!("#{}", cap.short_id());
            return Ok((cap, label));
        }
        BackupArg::Name(name) => name,
    };
    let cache_path = config.source.entry_cache.path.as_deref().ok_or_else(|| {
        UsageError(
            "config key source.entry_cache.path is required to verify a backup by NAME \
             (the cache that records the backups); give a root cap instead"
                .into(),
        )
    })?;
    let cache = Cache::open_read_only(cache_path)?;
    let name = name.as_bytes();
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
