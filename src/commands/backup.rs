//! `backup`: scan the source into the queue (or reuse the queue), then
//! upload it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use tracing::info;

use crate::cli::{BackupArgs, Cli};
use crate::config::Config;
use crate::exit::{Outcome, UsageError};
use crate::filter::Filter;
use crate::queue;
use crate::scan::{self, PickError};

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
    anyhow::bail!(
        "the upload phase is not implemented in this version; \
         the queue {} is ready (run with --queue-only to build queues only)",
        queue_path.display()
    )
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
    let pattern = config.source.path.as_deref().ok_or_else(|| {
        UsageError("config key source.path is required for backup (the tree to back up)".into())
    })?;
    let source = scan::pick_source(pattern).map_err(|e| match e {
        PickError::BadPattern { .. } => anyhow::Error::new(UsageError(e.to_string())),
        other => anyhow::Error::new(other),
    })?;
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
