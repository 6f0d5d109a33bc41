//! `backup`: scan the source into the queue (or reuse the queue), then
//! upload it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use tracing::info;

use crate::cache::Cache;
use crate::cli::{BackupArgs, Cli};
use crate::config::Config;
use crate::encode::Encoder;
use crate::exit::{Outcome, UsageError};
use crate::filter::Filter;
use crate::names;
use crate::progress::{self, Progress};
use crate::queue;
use crate::ratelimit::{self, Limits};
use crate::result;
use crate::scan::{self, PickError};
use crate::tahoe::{CheckOptions, Client};
use crate::upload::{self, Uploader};

/// Where the queue for this run comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueuePlan {
    /// Scan the source into a new queue.
    Scan,
    /// Upload an existing queue because the user asked for it.
    Reuse,
    /// Upload an existing queue whose earlier upload did not complete.
    Resume,
}

/// Decides between scanning and reusing; see `docs/queue-format.md`.
///
/// The original tool reused any queue newer than the source's top directory,
/// so new files deep in a live tree were missed for as long as the top
/// directory did not change. Here only an unfinished queue is resumed.
pub fn plan(config: &Config, queue_path: &Path) -> QueuePlan {
    if config.operation.reuse_queue {
        QueuePlan::Reuse
    } else if config.operation.queue_only || !config.source.queue.check_mtime {
        QueuePlan::Scan
    } else if queue_path.exists() && !queue::is_done(queue_path) {
        QueuePlan::Resume
    } else {
        QueuePlan::Scan
    }
}

/// Applies the command-line flags on top of the configuration, as the
/// original tool did (each flag sets its config key).
fn apply_flags(args: &BackupArgs, config: &mut Config) {
    if let Some(path) = &args.queue_only {
        config.operation.queue_only = true;
        if let Some(path) = path {
            config.source.queue.path = Some(path.clone());
        }
    }
    if let Some(path) = &args.reuse_queue {
        config.operation.reuse_queue = true;
        if let Some(path) = path {
            config.source.queue.path = Some(path.clone());
        }
    }
    if args.force_queue_rebuild {
        config.source.queue.check_mtime = false;
    }
    if args.disable_deduplication {
        config.operation.disable_deduplication = true;
    }
    if args.try_resume {
        config.operation.try_resume = true;
    }
    if let Some(n) = args.concurrency {
        config.operation.concurrency = n;
    }
}

pub fn run(cli: &Cli, args: &BackupArgs, mut config: Config) -> anyhow::Result<Outcome> {
    apply_flags(args, &mut config);
    if config.operation.queue_only && config.operation.reuse_queue {
        return Err(UsageError(
            "operation.queue_only and operation.reuse_queue are both set: \
             that would neither scan nor upload"
                .into(),
        )
        .into());
    }
    let queue_path = config.source.queue.path.clone().ok_or_else(|| {
        UsageError(
            "config key source.queue.path is required for backup \
             (where the queue file is written; or give --queue-only PATH)"
                .into(),
        )
    })?;

    let plan = plan(&config, &queue_path);
    let mut outcome = Outcome::Success;
    let entries = match plan {
        QueuePlan::Scan => {
            let report = scan_source(&config, &queue_path)?;
            if report.stats.problems > 0 {
                outcome = Outcome::Partial;
            }
            report.print(cli.json);
            report.stats.entries
        }
        QueuePlan::Reuse | QueuePlan::Resume => {
            if plan == QueuePlan::Resume {
                info!(
                    "resuming the unfinished queue {} (use -f to scan again)",
                    queue_path.display()
                );
            }
            count_entries(&queue_path)?
        }
    };
    info!("queue {} holds {entries} entries", queue_path.display());

    if config.operation.queue_only {
        return Ok(outcome);
    }
    let uploaded = upload_queue(cli, args, &config, &queue_path)?;
    Ok(outcome.max(uploaded))
}

/// Resolves `source.path` the same way the scan does: the queue's paths are
/// relative to it.
fn pick_source(config: &Config) -> anyhow::Result<PathBuf> {
    let pattern = config.source.path.as_deref().ok_or_else(|| {
        UsageError("config key source.path is required for backup (the tree to back up)".into())
    })?;
    scan::pick_source(pattern).map_err(|e| match e {
        PickError::BadPattern { .. } => anyhow::Error::new(UsageError(e.to_string())),
        other => anyhow::Error::new(other),
    })
}

/// Makes sure the cache's caps are worth something on this grid: a new cache
/// gets a probe object; an existing one must find its probe recoverable.
fn check_grid(
    client: &Client,
    url: &str,
    cache: &mut Cache,
    allow_foreign: bool,
) -> anyhow::Result<()> {
    let (connected, known) = super::storage_servers(client, url, super::Contact::Retried)?;
    match cache.probe()? {
        None => {
            let cap = client
                .upload_bytes(&upload::random_probe())
                .context("uploading the grid probe for a new cache")?;
            let (k, n) = cap.k_n().unwrap_or((0, 0));
            cache.set_probe(&cap, k, n)?;
            cache.commit()?;
        }
        Some(probe) => {
            let report = client
                .check(&probe.cap, CheckOptions::default())
                .context("checking the cache's grid probe")?;
            if !report.recoverable {
                let reason = format!(
                    "the entry cache's probe object is not recoverable on this grid \
                     ({}; the gateway sees {connected} of {known} storage servers): \
                     the cache was probably made against another grid, whose caps \
                     would point at shares this grid lacks, or the servers holding \
                     the probe are down",
                    report.summary
                );
                if !allow_foreign {
                    return Err(UsageError(format!(
                        "{reason}. Refusing to deduplicate through it; use another \
                         source.entry_cache.path, or --allow-foreign-cache to use it anyway"
                    ))
                    .into());
                }
                tracing::warn!("{reason}; using it anyway (--allow-foreign-cache)");
            }
        }
    }
    Ok(())
}

fn upload_queue(
    cli: &Cli,
    args: &BackupArgs,
    config: &Config,
    queue_path: &Path,
) -> anyhow::Result<Outcome> {
    let cache_path = config.source.entry_cache.path.as_deref().ok_or_else(|| {
        UsageError(
            "config key source.entry_cache.path is required for backup \
             (the deduplication database)"
                .into(),
        )
    })?;
    let source = pick_source(config)?;
    let encoder = Encoder::new(&config.destination.encoding).map_err(UsageError)?;
    if config.operation.concurrency == 0 {
        return Err(UsageError("operation.concurrency must be at least 1".into()).into());
    }
    let bytes_limit = match &args.limit_upload {
        Some(text) => Some(ratelimit::parse_rate(text).map_err(UsageError)?),
        None => config.operation.rate_limit.bytes,
    };
    let limits = Limits::new(
        bytes_limit.as_ref(),
        config.operation.rate_limit.objects.as_ref(),
    );
    let (client, url) = super::gateway_client(config, None)?;
    let mut cache = Cache::open(cache_path, &config.source.entry_cache.commit_after)?;
    check_grid(&client, url, &mut cache, args.allow_foreign_cache)?;
    let generation = cache.begin_run(config.operation.try_resume)?;
    let name = scan::backup_name(&source);
    info!(
        "uploading {} (generation {generation}) from {}",
        String::from_utf8_lossy(name.as_encoded_bytes()),
        queue_path.display()
    );
    let options = upload::Options {
        dedup: !config.operation.disable_deduplication,
        reuse_check_secs: i64::try_from(config.lease.reuse_check_days.saturating_mul(86_400))
            .unwrap_or(i64::MAX),
        concurrency: usize::try_from(config.operation.concurrency).unwrap_or(usize::MAX),
    };
    let progress = Arc::new(Progress::new(progress::Mode::choose(
        cli.json,
        args.json_progress,
    )));
    let mut uploader = Uploader::new(
        &client,
        &mut cache,
        &encoder,
        limits,
        Arc::clone(&progress),
        &source,
        options,
    );
    if progress.mode() != progress::Mode::Off {
        let (objects, bytes) = uploader
            .estimate(queue_path)
            .with_context(|| format!("reading the queue {}", queue_path.display()))?;
        progress.set_total(objects, bytes);
    }
    let finished = uploader.run(queue_path);
    progress.finish();
    let finished =
        finished.with_context(|| format!("uploading the queue {}", queue_path.display()))?;
    let stats = finished.stats;
    cache.finish_backup(
        name.as_encoded_bytes(),
        &finished.root,
        stats.entries,
        stats.bytes_total,
    )?;
    drop(cache);

    let results = &config.destination.result;
    if results.print_to_stdout && !cli.json {
        println!("{}", finished.root.as_str());
    }
    if let Some(file) = &results.append_to_file {
        result::append_to_file(file, source.as_os_str().as_encoded_bytes(), &finished.root)
            .with_context(|| format!("appending the result to {}", file.display()))?;
    }
    if let Some(dir) = &results.append_to_lafs_dir {
        let link = names::edge_name(name.as_encoded_bytes(), false).name;
        client
            .link(dir.trim_matches('/'), &link, &finished.root)
            .with_context(|| {
                format!("linking the backup as {link:?} into destination.result.append_to_lafs_dir")
            })?;
    }
    queue::mark_done(queue_path)?;

    let name_text = String::from_utf8_lossy(name.as_encoded_bytes()).into_owned();
    if cli.json {
        let line = serde_json::json!({
            "type": "summary",
            "name": name_text,
            "generation": generation,
            "root_cap": finished.root.as_str(),
            "entries": stats.entries,
            "files_uploaded": stats.files_uploaded,
            "dirs_created": stats.dirs_created,
            "unchanged": stats.unchanged,
            "content_reused": stats.content_reused,
            "skipped": stats.skipped,
            "bytes_read": stats.bytes_read,
            "bytes_total": stats.bytes_total,
            "seconds": (finished.seconds * 1000.0).round() / 1000.0,
        });
        println!("{line}");
    } else {
        eprintln!(
            "lafs-backup: backup {name_text} (generation {generation}): {} entries, \
             {} uploaded ({} files, {} dirs), {} unchanged, {} found by content, {} skipped; \
             read {}; {:.1}s",
            stats.entries,
            stats.files_uploaded + stats.dirs_created,
            stats.files_uploaded,
            stats.dirs_created,
            stats.unchanged,
            stats.content_reused,
            stats.skipped,
            progress::human_bytes(stats.bytes_read),
            finished.seconds,
        );
    }
    Ok(if stats.skipped > 0 {
        Outcome::Partial
    } else {
        Outcome::Success
    })
}

/// Reads the whole queue once, so that a damaged queue is refused before any
/// work starts.
fn count_entries(queue_path: &Path) -> anyhow::Result<u64> {
    let mut count = 0;
    for entry in queue::Reader::open(queue_path)? {
        entry?;
        count += 1;
    }
    Ok(count)
}

struct ScanReport {
    source: PathBuf,
    queue: PathBuf,
    stats: scan::Stats,
    seconds: f64,
}

fn scan_source(config: &Config, queue_path: &Path) -> anyhow::Result<ScanReport> {
    let source = pick_source(config)?;
    let filter = Filter::new(&config.filter)?;
    let options = scan::Options {
        one_file_system: config.source.one_file_system,
        exclude_caches: config.source.exclude_caches,
    };
    let started = Instant::now();
    info!(
        "scanning {} into {}",
        source.display(),
        queue_path.display()
    );
    let mut writer = queue::Writer::create(queue_path)?;
    let stats = scan::scan(&source, &filter, options, &mut writer)
        .with_context(|| format!("scanning {}", source.display()))?;
    writer.finish()?;
    Ok(ScanReport {
        source,
        queue: queue_path.to_owned(),
        stats,
        seconds: started.elapsed().as_secs_f64(),
    })
}

impl ScanReport {
    fn print(&self, json: bool) {
        let s = &self.stats;
        if json {
            let line = serde_json::json!({
                "type": "scan",
                "source": self.source.to_string_lossy(),
                "queue": self.queue.to_string_lossy(),
                "entries": s.entries,
                "excluded": s.excluded,
                "problems": s.problems,
                "other_filesystems": s.other_filesystems,
                "caches": s.caches,
                "seconds": (self.seconds * 1000.0).round() / 1000.0,
            });
            println!("{line}");
        } else {
            eprintln!(
                "lafs-backup: scanned {} into {}: {} entries, {} excluded, {} problem{} ({:.1}s)",
                self.source.display(),
                self.queue.display(),
                s.entries,
                s.excluded,
                s.problems,
                if s.problems == 1 { "" } else { "s" },
                self.seconds,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::EntryMeta;

    fn write_queue(path: &Path) {
        let mut w = queue::Writer::create(path).unwrap();
        w.push(b"", &EntryMeta::parse_queue_field(b"0:0:40755").unwrap())
            .unwrap();
        w.finish().unwrap();
    }

    #[test]
    fn only_unfinished_queues_are_resumed() {
        let dir = tempfile::tempdir().unwrap();
        let q = dir.path().join("queue");
        let mut config = Config::default();
        assert!(config.source.queue.check_mtime);
        // No queue yet: scan.
        assert_eq!(plan(&config, &q), QueuePlan::Scan);
        // A queue whose upload never completed: resume it.
        write_queue(&q);
        assert_eq!(plan(&config, &q), QueuePlan::Resume);
        // Completed: scan again, however fresh the queue is.
        queue::mark_done(&q).unwrap();
        assert_eq!(plan(&config, &q), QueuePlan::Scan);
        // --reuse-queue always reuses, even a completed queue.
        config.operation.reuse_queue = true;
        assert_eq!(plan(&config, &q), QueuePlan::Reuse);
        config.operation.reuse_queue = false;
        // -f (check_mtime false) and --queue-only always scan.
        write_queue(&q);
        config.source.queue.check_mtime = false;
        assert_eq!(plan(&config, &q), QueuePlan::Scan);
        config.source.queue.check_mtime = true;
        config.operation.queue_only = true;
        assert_eq!(plan(&config, &q), QueuePlan::Scan);
    }
}
