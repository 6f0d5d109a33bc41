//! `list`: the recorded backups, oldest first, from the entry cache alone
//! (no grid). See `docs/lifecycle.md`.

use std::collections::HashMap;

use anyhow::Context as _;
use serde_json::json;

use super::Context;
use super::show::{self, LeaseWindow, name as show_name, time as iso_time};
use crate::cache::{BackupKind, BackupRow, Cache, Reach, ReachTable};
use crate::cli::ListArgs;
use crate::config::Config;
use crate::exit::Outcome;
use crate::progress::human_bytes;

/// How many caps (visits) the per-backup breakdown of the lease warning may
/// walk: beyond this, only the total is given.
const PER_BACKUP_BUDGET: usize = 2_000_000;

/// How many objects the lease warning names (by short id).
const NAMED_OBJECTS: usize = 5;

pub(crate) fn run(ctx: &Context<'_>, args: &ListArgs) -> anyhow::Result<Outcome> {
    let json = ctx.json();
    if let Some(text) = &args.catalog {
        return from_catalog(ctx, text);
    }
    let cache = ctx.read_cache()?;
    let backups = cache.backups()?;
    // In a temporary table of the cache (computed in SQLite, not held).
    let referenced = cache.reach(
        ReachTable::Recorded,
        backups.iter().map(|b| b.root_cap.as_str()),
    )?;

    if json {
        for b in &backups {
            println!("{}", backup_json(b));
        }
    } else {
        print_table(&backups);
    }

    if let Some(wanted) = &args.generations {
        print_dangling(json, &cache, &backups, &referenced, wanted)?;
    }

    lease_warning(json, ctx.config(), &cache, &backups, &referenced)?;
    Ok(Outcome::Success)
}

/// `list --catalog CAP`: the backups the recovery catalog records, from
/// the grid alone (no cache, result file or queue; docs/recovery.md). The
/// catalog knows nothing of checks or pins: those columns say so.
fn from_catalog(ctx: &Context<'_>, text: &str) -> anyhow::Result<Outcome> {
    let catalog = crate::selector::catalog_arg(text)?;
    let gateway = ctx.gateway(None)?;
    gateway.storage_servers()?;
    let entries = crate::catalog::read_index(&gateway.client, &catalog)
        .context("reading the recovery catalog (--catalog)")?;
    let rows: Vec<BackupRow> = entries
        .iter()
        .zip(1..)
        .map(|(e, id)| e.to_row(id))
        .collect();
    if ctx.json() {
        for (b, e) in rows.iter().zip(&entries) {
            let mut line = backup_json(b);
            if let Some(map) = line.as_object_mut() {
                map.insert(
                    "catalog_link".into(),
                    json!(format!("{}/{}", crate::catalog::dir_name(&e.name), e.link)),
                );
            }
            println!("{line}");
        }
    } else {
        print_table(&rows);
    }
    Ok(Outcome::Success)
}

fn backup_json(b: &BackupRow) -> serde_json::Value {
    json!({
        "type": "backup",
        "name": show_name(&b.name),
        "generation": b.generation,
        "started": iso_time(b.ts_start),
        "finished": iso_time(b.ts_end),
        "root_cap": b.root_cap.as_str(),
        "entries": b.entries,
        "bytes": b.bytes,
        "checked": b.ts_check.map(iso_time),
        "label": b.label,
        "priority": b.priority,
        "pinned": b.pinned,
        "kind": b.kind.as_str(),
    })
}

fn print_table(backups: &[BackupRow]) {
    if backups.is_empty() {
        return;
    }
    let header = [
        "NAME", "GEN", "FINISHED", "ENTRIES", "SIZE", "CHECKED", "PIN", "LABEL", "ROOT CAP",
    ];
    let rows: Vec<[String; 9]> = backups
        .iter()
        .map(|b| {
            [
                show_name(&b.name),
                b.generation.to_string(),
                iso_time(b.ts_end),
                // A stream's entries are its chunks, and say so: that is
                // how the table tells a stream from a tree.
                match b.kind {
                    BackupKind::Tree => b.entries.to_string(),
                    BackupKind::Stream => format!("{} chunks", b.entries),
                },
                human_bytes(b.bytes),
                b.ts_check.map_or_else(|| "never".to_owned(), iso_time),
                if b.pinned { "*" } else { "-" }.to_owned(),
                // Escaped like a name: a `tiers` format may hold anything.
                b.label
                    .as_deref()
                    .map_or_else(|| "-".to_owned(), |l| show_name(l.as_bytes())),
                b.root_cap.as_str().to_owned(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    // Numbers are right-aligned; the last column is not padded.
    let right = [false, true, false, true, true, false, false, false, false];
    let line = |cells: &[&str]| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            let pad = widths[i].saturating_sub(cell.chars().count());
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else if right[i] {
                out.extend(std::iter::repeat_n(' ', pad));
                out.push_str(cell);
            } else {
                out.push_str(cell);
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out
    };
    println!("{}", line(&header));
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        println!("{}", line(&cells));
    }
}

fn print_dangling(
    json: bool,
    cache: &Cache,
    backups: &[BackupRow],
    referenced: &Reach,
    wanted: &[u64],
) -> anyhow::Result<()> {
    let dangling: Vec<_> = cache
        .dangling_generations(referenced)?
        .into_iter()
        .filter(|d| wanted.is_empty() || wanted.contains(&d.generation))
        .collect();
    for &g in wanted {
        if dangling.iter().any(|d| d.generation == g) {
            continue;
        }
        if backups.iter().any(|b| b.generation == g) {
            eprintln!("lafs-backup: generation {g} is a finished backup (listed above)");
        } else {
            eprintln!("lafs-backup: generation {g} has no cache entries outside the backups");
        }
    }
    if json {
        for d in &dangling {
            println!(
                "{}",
                json!({"type": "generation", "generation": d.generation, "entries": d.entries})
            );
        }
    } else if !dangling.is_empty() {
        if !backups.is_empty() {
            println!();
        }
        println!("Generations without a finished backup (interrupted runs):");
        let width = dangling
            .iter()
            .map(|d| d.generation.to_string().len())
            .max()
            .unwrap_or(1)
            .max(3);
        println!("{:>width$}  ENTRIES", "GEN");
        for d in &dangling {
            println!("{:>width$}  {}", d.generation, d.entries);
        }
    }
    Ok(())
}

/// Warns (on stderr, whatever the log level; with `--json` also as a JSON
/// line) about objects of the recorded backups whose lease this cache has
/// not renewed within `duration_days - warn_days` days.
fn lease_warning(
    json: bool,
    config: &Config,
    cache: &Cache,
    backups: &[BackupRow],
    referenced: &Reach,
) -> anyhow::Result<()> {
    let lease = &config.lease;
    let LeaseWindow { days, cutoff } = LeaseWindow::now(lease);
    let stale = cache.leases_not_renewed_since(referenced, cutoff)?;
    if stale.is_empty() {
        return Ok(());
    }
    // Per backup when the walks stay cheap; one walk per distinct root
    // (the backups of an unchanged tree share their root cap).
    let mut per_backup = Vec::new();
    let referenced_len = usize::try_from(referenced.len()).unwrap_or(usize::MAX);
    if backups.len().saturating_mul(referenced_len) <= PER_BACKUP_BUDGET {
        let mut per_root: HashMap<&str, u64> = HashMap::new();
        for b in backups {
            let root = b.root_cap.as_str();
            let n = match per_root.get(root) {
                Some(&n) => n,
                None => {
                    // The stale objects this backup reaches: its own
                    // reachable set (a subset of `referenced`) counted
                    // against the leases by the same rule, in SQLite.
                    let reach = cache.reach(ReachTable::One, [root])?;
                    let n = cache.count_leases_not_renewed_since(&reach, cutoff)?;
                    per_root.insert(root, n);
                    n
                }
            };
            if n > 0 {
                per_backup.push((b, n));
            }
        }
    }
    eprintln!(
        "lafs-backup: WARNING: {} object{} of the recorded backups had no lease renewed by this \
         cache in the last {days} days (lease.duration_days {} - lease.warn_days {}); the \
         storage servers may delete their shares when their leases lapse, after {} days. \
         Run `lafs-backup check --leases` to renew them.",
        stale.len(),
        show::plural(stale.len()),
        lease.duration_days,
        lease.warn_days,
        lease.duration_days,
    );
    for (b, n) in &per_backup {
        eprintln!(
            "lafs-backup: WARNING:   {} (generation {}): {n} of them",
            show_name(&b.name),
            b.generation
        );
    }
    let named: Vec<String> = stale
        .iter()
        .take(NAMED_OBJECTS)
        .map(|c| format!("#{}", show::short_id(c)))
        .collect();
    eprintln!(
        "lafs-backup: WARNING:   objects: {}{}",
        named.join(" "),
        if stale.len() > NAMED_OBJECTS {
            format!(" and {} more", stale.len() - NAMED_OBJECTS)
        } else {
            String::new()
        }
    );
    if json {
        let backups: Vec<_> = per_backup
            .iter()
            .map(|(b, n)| json!({"name": show_name(&b.name), "generation": b.generation, "objects": n}))
            .collect();
        println!(
            "{}",
            json!({
                "type": "lease_warning",
                "objects": stale.len(),
                "days": days,
                "backups": backups,
            })
        );
    }
    Ok(())
}
