//! `list`: the recorded backups, oldest first, from the entry cache alone
//! (no grid). See `docs/lifecycle.md`.

use std::collections::{HashMap, HashSet};

use serde_json::json;

use crate::cache::{BackupRow, Cache};
use crate::cli::{Cli, ListArgs};
use crate::config::Config;
use crate::escape;
use crate::exit::{Outcome, UsageError};
use crate::progress::human_bytes;

/// How many caps (visits) the per-backup breakdown of the lease warning may
/// walk: beyond this, only the total is given.
const PER_BACKUP_BUDGET: usize = 2_000_000;

/// How many objects the lease warning names (by short id).
const NAMED_OBJECTS: usize = 5;

pub(crate) fn run(cli: &Cli, args: &ListArgs, config: &Config) -> anyhow::Result<Outcome> {
    let cache = open_reader(config)?;
    let backups = cache.backups()?;
    let referenced = cache.reachable_from(backups.iter().map(|b| b.root_cap.as_str()))?;

    if cli.json {
        for b in &backups {
            println!("{}", backup_json(b));
        }
    } else {
        print_table(&backups);
    }

    if let Some(wanted) = &args.generations {
        print_dangling(cli.json, &cache, &backups, &referenced, wanted)?;
    }

    lease_warning(cli.json, config, &cache, &backups, &referenced)?;
    Ok(Outcome::Success)
}

/// Opens the cache of `source.entry_cache.path` read-only, without the run
/// lock (`list`, `restore NAME`): it works while a backup runs.
pub(crate) fn open_reader(config: &Config) -> anyhow::Result<Cache> {
    let path = existing_path(config)?;
    Ok(Cache::open_read_only(path)?)
}

/// Opens the cache of `source.entry_cache.path`, which must exist already:
/// `list` and `cleanup` never create one. Takes the run lock, waiting up to
/// `lock_wait` for it.
pub(crate) fn open_existing(
    config: &Config,
    lock_wait: std::time::Duration,
) -> anyhow::Result<Cache> {
    let path = existing_path(config)?;
    Ok(Cache::open_wait(
        path,
        &config.source.entry_cache.commit_after,
        lock_wait,
    )?)
}

fn existing_path(config: &Config) -> anyhow::Result<&std::path::Path> {
    let path = config.source.entry_cache.path.as_deref().ok_or_else(|| {
        UsageError(
            "config key source.entry_cache.path is required (the entry cache that records \
             the backups)"
                .into(),
        )
    })?;
    if !path.exists() {
        anyhow::bail!(
            "there is no entry cache at {} (source.entry_cache.path): no backup was recorded \
             with this configuration; check source.entry_cache.path",
            path.display()
        );
    }
    Ok(path)
}

/// A backup name as text: raw bytes escaped like queue paths (`\\`,
/// `\xNN`), so control bytes and invalid UTF-8 are visible and lossless.
pub(crate) fn show_name(name: &[u8]) -> String {
    String::from_utf8_lossy(&escape::escape(name)).into_owned()
}

/// Unix seconds as ISO 8601 local time with its offset.
pub(crate) fn iso_time(ts: i64) -> String {
    jiff::Timestamp::from_second(ts).map_or_else(
        |_| format!("@{ts}"),
        |t| {
            t.to_zoned(jiff::tz::TimeZone::system())
                .strftime("%Y-%m-%dT%H:%M:%S%:z")
                .to_string()
        },
    )
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
    })
}

fn print_table(backups: &[BackupRow]) {
    if backups.is_empty() {
        return;
    }
    let header = [
        "NAME", "GEN", "FINISHED", "ENTRIES", "SIZE", "CHECKED", "ROOT CAP",
    ];
    let rows: Vec<[String; 7]> = backups
        .iter()
        .map(|b| {
            [
                show_name(&b.name),
                b.generation.to_string(),
                iso_time(b.ts_end),
                b.entries.to_string(),
                human_bytes(b.bytes),
                b.ts_check.map_or_else(|| "never".to_owned(), iso_time),
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
    let right = [false, true, false, true, true, false, false];
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
    referenced: &HashSet<String>,
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
    referenced: &HashSet<String>,
) -> anyhow::Result<()> {
    let lease = &config.lease;
    let days = lease.duration_days.saturating_sub(lease.warn_days);
    let secs = i64::try_from(days.saturating_mul(86_400)).unwrap_or(i64::MAX);
    let cutoff = crate::cache::unix_now().saturating_sub(secs);
    let stale = cache.leases_not_renewed_since(referenced.iter().map(String::as_str), cutoff)?;
    if stale.is_empty() {
        return Ok(());
    }
    let stale_set: HashSet<&str> = stale.iter().map(String::as_str).collect();
    // Per backup when the walks stay cheap; one walk per distinct root
    // (the backups of an unchanged tree share their root cap).
    let mut per_backup = Vec::new();
    if backups.len().saturating_mul(referenced.len()) <= PER_BACKUP_BUDGET {
        let mut per_root: HashMap<&str, usize> = HashMap::new();
        for b in backups {
            let root = b.root_cap.as_str();
            let n = match per_root.get(root) {
                Some(&n) => n,
                None => {
                    let reach = cache.reachable_from([root])?;
                    let n = reach
                        .iter()
                        .filter(|c| stale_set.contains(c.as_str()))
                        .count();
                    per_root.insert(root, n);
                    n
                }
            };
            if n > 0 {
                per_backup.push((b, n));
            }
        }
    }
    let objects = if stale.len() == 1 {
        "object"
    } else {
        "objects"
    };
    eprintln!(
        "lafs-backup: WARNING: {} {objects} of the recorded backups had no lease renewed by this \
         cache in the last {days} days (lease.duration_days {} - lease.warn_days {}); the \
         storage servers may delete their shares when their leases lapse, after {} days. \
         Run `lafs-backup check --leases` to renew them.",
        stale.len(),
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
        .map(|c| format!("#{}", short_id(c)))
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

/// The short id of a cap read from the cache as text (the same as
/// [`crate::tahoe::Cap::short_id`]).
fn short_id(cap: &str) -> String {
    crate::tahoe::Cap::parse(cap).map_or_else(|_| "?".to_owned(), |c| c.short_id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_losslessly() {
        assert_eq!(show_name(b"weekly"), "weekly");
        assert_eq!(show_name(b"a\nb\xff\\"), "a\\x0ab\\xff\\\\");
    }

    #[test]
    fn times_are_iso_with_offset() {
        let t = iso_time(1_700_000_000);
        assert!(
            jiff::Timestamp::strptime("%Y-%m-%dT%H:%M:%S%:z", &t).is_ok(),
            "{t}"
        );
        assert_eq!(
            jiff::Timestamp::strptime("%Y-%m-%dT%H:%M:%S%:z", &t)
                .unwrap()
                .as_second(),
            1_700_000_000
        );
    }
}
