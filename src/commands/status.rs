//! `status`: per job the last successful backup and its age, the last run,
//! the kept backups and the last check; per cache the lease horizon and
//! the verification coverage; exit 4 when a `monitor` threshold is crossed,
//! so that `status` itself is the dead-man's switch (`docs/monitoring.md`).
//! Reads the cache read-only, never contacts the gateway, never shows a cap.
//!
//! The same collection feeds the Prometheus textfile ([`write_textfile`]).

mod collect;
mod textfile;

use serde_json::json;
use tracing::{debug, warn};

use super::Context;
use super::show::{name as show_name, time as iso_time};
use crate::cache::Cache;
use crate::cli::StatusArgs;
use crate::clock;
use crate::config::Config;
use crate::exit::{Outcome, UsageError};
use collect::{Crossing, Status, collect, human_age};

/// Opens the recorded cache read-only, or `None` when there is none yet
/// (every job is "never"); an unset `source.entry_cache.path` is the usage
/// error of every reader.
fn open_cache(ctx: &Context<'_>) -> anyhow::Result<Option<Cache>> {
    match &ctx.config().source.entry_cache.path {
        Some(path) if !path.exists() => Ok(None),
        _ => Ok(Some(ctx.read_cache()?)),
    }
}

pub(crate) fn run(ctx: &Context<'_>, args: &StatusArgs) -> anyhow::Result<Outcome> {
    if args.prometheus && ctx.json() {
        // `--json` is global, so clap's `conflicts_with` does not see it.
        return Err(UsageError("status: give --prometheus or --json, not both".into()).into());
    }
    let cache = open_cache(ctx)?;
    let status = collect(ctx.config(), cache.as_ref(), clock::unix_now())?;
    if args.prometheus {
        print!("{}", textfile::render(&status));
    } else if ctx.json() {
        print_json(ctx.config(), &status);
    } else {
        print_human(ctx.config(), &status);
    }
    for c in &status.crossed {
        eprintln!("lafs-backup: THRESHOLD CROSSED: {}", c.message);
    }
    Ok(if status.crossed.is_empty() {
        Outcome::Success
    } else {
        Outcome::Problems
    })
}

/// After a `backup` run: writes `monitor.prometheus_textfile`, if set.
/// Never fails the run: a problem is a warning.
pub(crate) fn write_textfile(config: &Config) {
    let Some(path) = &config.monitor.prometheus_textfile else {
        return;
    };
    let text = (|| -> anyhow::Result<String> {
        let cache = match &config.source.entry_cache.path {
            Some(p) if p.exists() => Some(Cache::open_read_only(p)?),
            _ => None,
        };
        let status = collect(config, cache.as_ref(), clock::unix_now())?;
        Ok(textfile::render(&status))
    })();
    let written = text.and_then(|t| Ok(textfile::write_atomically(path, &t)?));
    match written {
        Ok(()) => debug!("wrote monitor.prometheus_textfile {}", path.display()),
        Err(e) => warn!(
            "could not write monitor.prometheus_textfile {}: {}",
            path.display(),
            crate::exit::message(&e)
        ),
    }
}

fn crossing_json(c: &Crossing) -> serde_json::Value {
    json!({
        "job": c.job.as_deref().map(show_name),
        "threshold": c.threshold,
        "value": c.value,
        "limit": c.limit,
        "message": c.message,
    })
}

fn print_json(config: &Config, status: &Status) {
    let now = status.now;
    for job in &status.jobs {
        let crossed: Vec<_> = status
            .crossed
            .iter()
            .filter(|c| c.job.as_ref() == Some(&job.name))
            .map(crossing_json)
            .collect();
        let last_run = job.last_run.as_ref().map(|r| {
            json!({
                "started": iso_time(r.ts_start),
                "finished": iso_time(r.ts_end),
                "exit": r.exit,
                "skipped": r.skipped,
                "entries": r.entries,
                "bytes_uploaded": r.bytes_uploaded,
                "objects_reused": r.objects_reused,
            })
        });
        println!(
            "{}",
            json!({
                "type": "status",
                "job": show_name(&job.name),
                "last_success": job.last_success.map(iso_time),
                "last_success_age_seconds": job.last_success.map(|t| now.saturating_sub(t)),
                "last_run": last_run,
                "kept_backups": job.kept,
                "last_check": job.last_check.map(iso_time),
                "crossed": crossed,
            })
        );
    }
    let c = status.cache.unwrap_or_default();
    let monitor = &config.monitor;
    println!(
        "{}",
        json!({
            "type": "status_cache",
            "cache": status.cache.is_some(),
            "objects": c.leases.objects,
            "lease_horizon": c.horizon(now).map(iso_time),
            "lease_horizon_days": c.horizon_days(now).map(round3),
            "lease_duration_days": config.lease.duration_days,
            "never_renewed": c.leases.never,
            "oldest_renewal": c.leases.oldest.map(iso_time),
            "verified": c.coverage.verified,
            "verified_ratio": c.verified_ratio().map(round3),
            "oldest_verification": c.coverage.oldest.map(iso_time),
            "unverified_since": c.unverified_since.map(iso_time),
            "unverified_days": c.unverified_days(now).map(round3),
            "thresholds": {
                "max_backup_age": monitor.max_backup_age.map(|a| a.0.to_string()),
                "min_lease_days": monitor.min_lease_days,
                "max_unverified_days": monitor.max_unverified_days,
            },
            "crossed": status.crossed.iter().map(crossing_json).collect::<Vec<_>>(),
            "ok": status.crossed.is_empty(),
        })
    );
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn print_human(config: &Config, status: &Status) {
    let now = status.now;
    let header = [
        "JOB",
        "LAST SUCCESS",
        "AGE",
        "LAST RUN",
        "KEPT",
        "LAST CHECK",
    ];
    let rows: Vec<[String; 6]> = status
        .jobs
        .iter()
        .map(|j| {
            let last_run = j.last_run.as_ref().map_or_else(
                || "never".to_owned(),
                |r| match &r.skipped {
                    Some(why) => format!("skipped {} ({why})", iso_time(r.ts_start)),
                    None => format!("exit {} {}", r.exit, iso_time(r.ts_end)),
                },
            );
            [
                show_name(&j.name),
                j.last_success.map_or_else(|| "never".to_owned(), iso_time),
                j.last_success
                    .map_or_else(|| "-".to_owned(), |t| human_age(now - t)),
                last_run,
                j.kept.to_string(),
                j.last_check.map_or_else(|| "never".to_owned(), iso_time),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 6]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    if rows.is_empty() {
        println!("no jobs: the config has no source.path or jobs, and the cache no backups");
    } else {
        println!("{}", line(header));
        for row in &rows {
            println!("{}", line(row.each_ref().map(String::as_str)));
        }
    }
    let Some(c) = status.cache else {
        println!("cache: none yet (no backup has run)");
        return;
    };
    match c.horizon(now) {
        None => println!("lease horizon: - (no objects)"),
        Some(h) => {
            let mut text = format!(
                "lease horizon: {} (in {:.1} days; {} objects, lease.duration_days {})",
                iso_time(h),
                c.horizon_days(now).unwrap_or(0.0),
                c.leases.objects,
                config.lease.duration_days
            );
            if c.leases.never > 0 {
                text.push_str(&format!("; {} with no renewal recorded", c.leases.never));
            }
            println!("{text}");
        }
    }
    let ratio = c.verified_ratio().map_or(0.0, |r| r * 100.0);
    println!(
        "verified: {}/{} objects ({ratio:.1}%), oldest verification {}, unverified since {}",
        c.coverage.verified,
        c.coverage.objects,
        c.coverage
            .oldest
            .map_or_else(|| "never".to_owned(), iso_time),
        c.unverified_since.map_or_else(|| "-".to_owned(), iso_time),
    );
}
