//! `verify CAP|NAME PATH`: compare a backup with a live tree and print every
//! difference, one per line (`docs/verify.md`). Exit status: 0 identical,
//! 4 different, 1 could not run, 2 usage.
//!
//! Caps never reach the output or the log: entries are named by their path.

use std::io::{self, Write};

use serde_json::json;
use tracing::info;

use super::{Context, show};
use crate::cli::VerifyArgs;
use crate::exit::{Outcome, UsageError};
use crate::selector::Selector;
use crate::tahoe::Cap;
use crate::verify::{self, Difference, Options, SourceRules};

pub(crate) fn run(ctx: &Context<'_>, args: &VerifyArgs) -> anyhow::Result<Outcome> {
    let config = ctx.config();
    let (root, label) = resolve(ctx, args)?;
    let gateway = ctx.interactive_gateway(args.gateway.as_deref(), args.timeout)?;
    info!("verifying {label} against {}", args.path.display());
    gateway.storage_servers()?;
    let client = gateway.client;

    let stdout = io::stdout();
    let mut out = stdout.lock();
    let json = ctx.json();
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
            filter: crate::filter::source_filter(config)?,
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

/// The root cap to verify, and how messages name it (the backup name and
/// generation, or `#` and the cap's short id).
fn resolve(ctx: &Context<'_>, args: &VerifyArgs) -> anyhow::Result<(Cap, String)> {
    let selector = Selector::of_args(
        &args.backup,
        args.generation,
        args.label.as_deref(),
        args.as_of.as_deref(),
    )?;
    if let Some(cap) = selector.cap() {
        return Ok((cap.clone(), format!("#{}", cap.short_id())));
    }
    let cache = ctx.read_cache()?;
    let rows = cache.backups()?;
    let selected = selector
        .select(&rows, cache.path())
        .map_err(UsageError::from)?;
    let label = match selected.latest() {
        Some(r) => format!("{} generation {}", show::name(&r.name), r.generation),
        None => format!("#{}", selected.cap().short_id()),
    };
    Ok((selected.cap().clone(), label))
}
