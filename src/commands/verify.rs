//! `verify CAP|NAME PATH`: compare a backup with a live tree and print every
//! difference, one per line (`docs/verify.md`). Exit status: 0 identical,
//! 4 different, 1 could not run, 2 usage.
//!
//! Caps never reach the output or the log: entries are named by their path.

use std::io::{self, Read, Write};

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
    let Some(path) = args.path.as_deref().filter(|_| !args.stdin) else {
        info!("verifying {label} against stdin");
        gateway.storage_servers()?;
        return verify_stdin(&gateway.client, &root, &args.backup, ctx.json());
    };
    info!("verifying {label} against {}", path.display());
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
    let summary = verify::verify(&client, &root, path, options, &mut sink)?;
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

/// `verify SELECTOR --stdin`: compares the stream backup `root` with
/// standard input, chunk by chunk (memory: one chunk); reports the byte
/// counts and the first offset where they differ.
fn verify_stdin(
    client: &crate::tahoe::Client,
    root: &Cap,
    shown: &str,
    json: bool,
) -> anyhow::Result<Outcome> {
    let Some(layout) = crate::stream::read::open(client, root)? else {
        return Err(UsageError(format!(
            "{shown}: is a tree backup: --stdin compares a stream backup; give the PATH of a tree"
        ))
        .into());
    };
    let mut input = io::stdin().lock();
    let mut offset: u64 = 0;
    let mut first_difference: Option<u64> = None;
    let mut buf = Vec::new();
    let mut input_ended = false;
    crate::stream::read::for_each_chunk(client, &layout, |bytes| {
        if first_difference.is_some() || input_ended {
            return Ok(());
        }
        buf.clear();
        let got = (&mut input)
            .take(bytes.len() as u64)
            .read_to_end(&mut buf)?;
        if let Some(at) = bytes.iter().zip(&buf).position(|(a, b)| a != b) {
            first_difference = Some(offset + at as u64);
        } else if got < bytes.len() {
            input_ended = true;
            first_difference = Some(offset + got as u64);
        }
        offset += got as u64;
        Ok(())
    })?;
    // The rest of the input: its length counts, its bytes differ anyway.
    let rest = io::copy(&mut input, &mut io::sink())?;
    let input_len = offset + rest;
    if first_difference.is_none() && rest > 0 {
        first_difference = Some(offset);
    }
    let backup_len = layout.size;
    let mut out = io::stdout().lock();
    if json {
        let line = json!({
            "type": "verify",
            "kind": "stream",
            "backup_bytes": backup_len,
            "stdin_bytes": input_len,
            "first_difference": first_difference,
            "differences": u64::from(first_difference.is_some()),
        });
        writeln!(out, "{line}")?;
    } else if let Some(at) = first_difference {
        writeln!(
            out,
            "differ: the backup has {backup_len} bytes, stdin {input_len}; \
             first difference at byte offset {at}"
        )?;
    }
    out.flush()?;
    Ok(if first_difference.is_none() {
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
